//! Natural batching ("group commit"): callers submit items one at a time; one worker hands
//! everything queued to a flush function at once, and each caller gets its own result.
//!
//! No item waits for a batch to fill. The worker takes whatever is queued the moment it is free:
//! alone when the load is light (one round trip, as without a batcher), and many at once when
//! callers arrive faster than a flush completes, which is when batching pays. One flush runs at a
//! time, so a batch holds everything that arrived while the previous one was in flight.
//!
//! Before flushing, the worker yields once and takes what was queued meanwhile: callers woken
//! together (the runs of one batch call, polled in turn by one task) then share a flush, instead
//! of the first going alone because the worker, woken on another thread, took it before the
//! others were queued (a steady rate's dispatch rounds made one call more each that way).

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

type Job<I, O> = (I, oneshot::Sender<O>);

/// Submits items to a worker that flushes them in batches of at most `max`.
#[derive(Debug)]
pub struct Batcher<I, O> {
    tx: mpsc::Sender<Job<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Spawns the worker (on the current Tokio runtime). `flush` answers one result per item, in
    /// the items' order. At most `queue` items wait; further submitters wait for room.
    pub fn new<F, Fut>(max: usize, queue: usize, flush: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        let max = max.max(1);
        let (tx, mut rx) = mpsc::channel::<Job<I, O>>(queue.max(1));
        tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(max);
            // Ends when every Batcher is dropped and the queue is drained.
            while rx.recv_many(&mut jobs, max).await > 0 {
                top_up(&mut rx, &mut jobs, max).await;
                let (items, waiting): (Vec<I>, Vec<oneshot::Sender<O>>) = jobs.drain(..).unzip();
                let results = flush(items).await;
                debug_assert_eq!(results.len(), waiting.len(), "one result per item");
                for (result, waiter) in results.into_iter().zip(waiting) {
                    // A submitter that gave up no longer listens: nothing to do.
                    let _ = waiter.send(result);
                }
            }
        });
        Self { tx }
    }

    /// Queues `item` for the next batch and waits for its result. `None`: the worker is gone (its
    /// runtime is shutting down) or the flush answered too few results.
    pub async fn submit(&self, item: I) -> Option<O> {
        let (done, result) = oneshot::channel();
        self.tx.send((item, done)).await.ok()?;
        result.await.ok()
    }
}

/// Yields once, then takes what was queued meanwhile, up to `max` items in all: after a
/// `recv_many`, so that callers woken together share a flush (see the module's description).
pub async fn top_up<T>(rx: &mut mpsc::Receiver<T>, items: &mut Vec<T>, max: usize) {
    tokio::task::yield_now().await;
    while items.len() < max {
        match rx.try_recv() {
            Ok(item) => items.push(item),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a task woken beside the worker queues while the worker yields joins the batch, up
    /// to the bound.
    #[tokio::test(flavor = "current_thread")]
    async fn a_top_up_takes_what_was_queued_while_it_yielded() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(0).await.unwrap();
        // Runs only when the test's task yields (one thread).
        let sender = tokio::spawn(async move {
            for i in 1..=5 {
                tx.send(i).await.unwrap();
            }
        });
        let mut items = Vec::new();
        rx.recv_many(&mut items, 8).await;
        assert_eq!(items, [0]);
        top_up(&mut rx, &mut items, 4).await;
        assert_eq!(
            items,
            [0, 1, 2, 3],
            "queued while it yielded, up to the bound"
        );
        sender.await.unwrap();
        top_up(&mut rx, &mut items, 8).await;
        assert_eq!(items, [0, 1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn each_caller_gets_its_own_result_and_waiting_callers_share_a_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        // The first flush is held until every other item is queued behind it.
        let (release, held) = tokio::sync::watch::channel(false);
        let b = {
            let sizes = sizes.clone();
            Batcher::new(8, 64, move |items: Vec<u32>| {
                let sizes = sizes.clone();
                let mut held = held.clone();
                async move {
                    sizes.lock().unwrap().push(items.len());
                    let _ = held.wait_for(|r| *r).await;
                    items.into_iter().map(|i| i * 10).collect()
                }
            })
        };
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.submit(1).await }
        });
        // Wait until the first item is being flushed alone.
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=11)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(i).await })
            })
            .collect();
        // Give the ten submitters the chance to queue (they cannot be flushed yet).
        while b.tx.capacity() > 64 - 10 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(10));
        for (i, r) in (2..=11).zip(rest) {
            assert_eq!(r.await.unwrap(), Some(i * 10));
        }
        // One alone, then the ten that waited in batches of at most eight.
        assert_eq!(*sizes.lock().unwrap(), [1, 8, 2]);
    }
}
