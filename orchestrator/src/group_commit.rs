//! Group commit of verified deliveries (issue 11): webhook requests hand their event to one
//! writer task, which stores whatever has queued up meanwhile in one transaction
//! ([`Store::store_events`]) and answers each request after the commit. Nothing waits for a batch
//! to fill: an idle writer takes the first delivery at once, and under load the deliveries that
//! arrive while one batch commits make the next. The queue is bounded (senders wait when it is
//! full), so memory stays bounded whatever the load.

use std::sync::OnceLock;

use switchyard_common::error::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use crate::store::{MAX_BATCH, NewEvent, Store, Stored};

/// Deliveries waiting for the writer at most; beyond that, requests wait to queue.
const QUEUE: usize = 4 * MAX_BATCH;

type Job = (
    NewEvent,
    oneshot::Sender<std::result::Result<Stored, String>>,
);

/// The writer: started on first use (inside the runtime), stopped when the last handle is
/// dropped.
pub struct GroupCommit {
    store: Store,
    queue: OnceLock<mpsc::Sender<Job>>,
}

impl GroupCommit {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            queue: OnceLock::new(),
        }
    }

    /// Stores `event` with the others queued beside it; answers after their commit.
    pub async fn store(&self, event: NewEvent) -> Result<Stored> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write(self.store.clone(), rx));
            tx
        });
        let (done, answer) = oneshot::channel();
        let stopped = || Error::Unavailable("the event writer stopped".into());
        queue.send((event, done)).await.map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(Error::Unavailable)
    }
}

/// Stores what has queued, a batch at a time, until every handle is gone.
async fn write(store: Store, mut queue: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (events, answers): (Vec<NewEvent>, Vec<_>) = jobs.drain(..).unzip();
        match store.store_events(&events).await {
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
                    let alone = store.store_events(std::slice::from_ref(&event)).await;
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
