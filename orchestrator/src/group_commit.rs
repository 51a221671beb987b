//! Group commit of verified deliveries (issue 11): webhook requests hand their event to one
//! writer task, which stores whatever has queued up meanwhile in one transaction
//! ([`Store::store_events`]) and answers each request after the commit. Nothing waits for a batch
//! to fill: an idle writer takes the first delivery at once, and under load the deliveries that
//! arrive while one batch commits make the next. The queue is bounded (senders wait when it is
//! full), so memory stays bounded whatever the load.
//!
//! The writer also keeps count of the deliveries it holds (queued or committing): its
//! [`Pressure`]. Work that can wait, dispatch, yields to them while they are many (ADR 0020):
//! a sender is answered as soon as its event is committed, and the durable backlog is run a
//! moment later.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use switchyard_common::error::{Error, Result};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::{MAX_BATCH, NewEvent, Store, Stored, WriterConn};

/// Deliveries waiting for the writer at most; beyond that, requests wait to queue.
const QUEUE: usize = 4 * MAX_BATCH;

type Job = (
    NewEvent,
    oneshot::Sender<std::result::Result<Stored, String>>,
);

/// Deliveries held by the writer (queued or committing) from which it counts as busy: more
/// than a closed-loop sender at concurrency 8 keeps there, fewer than a burst brings.
pub const BUSY: usize = 8;

/// How many deliveries the writer holds, and a way for work that can wait to yield to them.
#[derive(Default, Debug)]
pub struct Pressure {
    held: AtomicUsize,
    /// Notified when the count falls below [`BUSY`].
    eased: Notify,
}

/// One delivery held by the writer; counted until dropped (answered, failed or abandoned by its
/// request).
pub struct Held<'a>(&'a Pressure);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.0.held.fetch_sub(1, Ordering::AcqRel) == BUSY {
            self.0.eased.notify_waiters();
        }
    }
}

impl Pressure {
    /// Counts one delivery until the guard is dropped.
    pub fn hold(&self) -> Held<'_> {
        self.held.fetch_add(1, Ordering::AcqRel);
        Held(self)
    }

    /// The deliveries held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    pub fn busy(&self) -> bool {
        self.held() >= BUSY
    }

    /// Waits while the writer is busy, for at most `at_most`; returns how long it waited.
    pub async fn yield_to_deliveries(&self, at_most: Duration) -> Duration {
        if !self.busy() {
            return Duration::ZERO;
        }
        let start = tokio::time::Instant::now();
        let deadline = start + at_most;
        loop {
            let eased = self.eased.notified();
            tokio::pin!(eased);
            // Registered before the count is read again: a fall below BUSY in between still
            // wakes this waiter.
            eased.as_mut().enable();
            if !self.busy()
                || tokio::time::timeout_at(deadline, eased).await.is_err()
                || !self.busy()
            {
                return start.elapsed();
            }
        }
    }
}

/// The writer: started on first use (inside the runtime), stopped when the last handle is
/// dropped.
pub struct GroupCommit {
    store: Store,
    queue: OnceLock<mpsc::Sender<Job>>,
    pressure: Arc<Pressure>,
}

impl GroupCommit {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            queue: OnceLock::new(),
            pressure: Arc::default(),
        }
    }

    /// The count of deliveries this writer holds.
    pub fn pressure(&self) -> Arc<Pressure> {
        self.pressure.clone()
    }

    /// Stores `event` with the others queued beside it; answers after their commit.
    pub async fn store(&self, event: NewEvent) -> Result<Stored> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write(self.store.clone(), rx));
            tx
        });
        let _held = self.pressure.hold();
        let (done, answer) = oneshot::channel();
        let stopped = || Error::Unavailable("the event writer stopped".into());
        queue.send((event, done)).await.map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(Error::Unavailable)
    }
}

/// Stores what has queued, a batch at a time, until every handle is gone, on a connection it
/// keeps between batches (see [`WriterConn`]).
async fn write(store: Store, mut queue: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut conn = WriterConn::default();
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (events, answers): (Vec<NewEvent>, Vec<_>) = jobs.drain(..).unzip();
        match store.store_events_on(&mut conn, &events).await {
            Ok(stored) => {
                for (answer, s) in answers.into_iter().zip(stored) {
                    let _ = answer.send(Ok(s));
                }
            }
            // One delivery the database refuses must not fail the others of its batch: each is
            // stored alone then, and only what fails alone is answered 503.
            Err(e) if events.len() > 1 => {
                tracing::warn!(deliveries = events.len(), error = %e, "storing a batch of deliveries failed; storing each alone");
                for (event, answer) in events.into_iter().zip(answers) {
                    let alone = store
                        .store_events_on(&mut conn, std::slice::from_ref(&event))
                        .await;
                    let _ = answer.send(alone.map(|mut s| s.remove(0)).map_err(|e| e.to_string()));
                }
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(e.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter wakes when the held deliveries fall below `BUSY`, however long it may wait.
    #[tokio::test]
    async fn a_yield_ends_when_the_deliveries_are_answered() {
        let pressure = Arc::new(Pressure::default());
        assert_eq!(
            pressure
                .yield_to_deliveries(Duration::from_secs(3600))
                .await,
            Duration::ZERO,
            "an idle writer is not waited for"
        );
        let mut held: Vec<Held> = (0..BUSY).map(|_| pressure.hold()).collect();
        assert!(pressure.busy());
        let waiter = {
            let p = pressure.clone();
            tokio::spawn(async move { p.yield_to_deliveries(Duration::from_secs(3600)).await })
        };
        // Answered one by one: the waiter must still be waiting while BUSY are held.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        held.pop();
        let waited = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("the waiter woke when the count fell below BUSY")
            .unwrap();
        assert!(waited < Duration::from_secs(30));
        assert_eq!(pressure.held(), BUSY - 1);
        drop(held);
        assert_eq!(pressure.held(), 0);
    }

    /// A request that gives up (its future dropped) while its delivery waits is not counted on.
    #[tokio::test]
    async fn an_abandoned_delivery_is_not_counted() {
        let pressure = Arc::new(Pressure::default());
        let p = pressure.clone();
        let request = tokio::spawn(async move {
            let _held = p.hold();
            std::future::pending::<()>().await
        });
        while pressure.held() == 0 {
            tokio::task::yield_now().await;
        }
        request.abort();
        let _ = request.await;
        assert_eq!(pressure.held(), 0);
    }

    /// While the writer stays busy, a yield lasts its bound and no longer.
    #[tokio::test]
    async fn a_yield_is_bounded() {
        let pressure = Arc::new(Pressure::default());
        let _held: Vec<Held> = (0..BUSY + 3).map(|_| pressure.hold()).collect();
        let waited = pressure
            .yield_to_deliveries(Duration::from_millis(50))
            .await;
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_secs(30), "{waited:?}");
    }
}
