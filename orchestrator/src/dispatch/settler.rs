//! Settling the events whose runs started, many chains' to one transaction (group commit, as
//! ingest does for deliveries): each chain hands its event's settlement over and waits for the
//! commit; one task writes whatever has queued meanwhile with [`Store::settle_dispatched_now`]
//! (one statement on PostgreSQL) and answers each. Under load a commit takes dozens of
//! settlements; alone, one waits for nothing.

use tokio::sync::{mpsc, oneshot};

use crate::store::{Settlement, Store};

/// Settlements one transaction takes at most.
const MOST: usize = 256;

/// `Ok(true)`: recorded; `Ok(false)`: the claim was lost (nothing recorded); `Err`: the
/// transaction failed (nothing recorded).
pub(super) type Answer = Result<bool, String>;

type Request = (String, Settlement, oneshot::Sender<Answer>);

/// The chains' side of the settler.
#[derive(Clone)]
pub(super) struct Settler(mpsc::Sender<Request>);

impl Settler {
    /// The settler and the task that writes for it (runs until every [`Settler`] is dropped).
    pub(super) fn start(store: Store, worker: String) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MOST * 4);
        (Self(tx), tokio::spawn(write(store, worker, rx)))
    }

    /// Records `settlement` of the event `id` (a plain dispatch) in the next transaction.
    pub(super) async fn settle(&self, id: String, settlement: Settlement) -> Answer {
        debug_assert!(settlement.is_plain_dispatch());
        let (answer, answered) = oneshot::channel();
        self.0
            .send((id, settlement, answer))
            .await
            .map_err(|_| "the dispatcher is stopping".to_owned())?;
        answered
            .await
            .map_err(|_| "the dispatcher is stopping".to_owned())?
    }
}

async fn write(store: Store, worker: String, mut rx: mpsc::Receiver<Request>) {
    let mut queued = Vec::with_capacity(MOST);
    while rx.recv_many(&mut queued, MOST).await > 0 {
        // A round's chains are answered by one call to the agent-runner and settle together:
        // let those still waking queue theirs.
        switchyard_common::batch::top_up(&mut rx, &mut queued, MOST).await;
        let (items, answers): (Vec<_>, Vec<_>) = queued
            .drain(..)
            .map(|(id, s, answer)| ((id, s), answer))
            .unzip();
        let result = store.settle_dispatched_now(&worker, &items).await;
        for ((id, _), answer) in items.iter().zip(answers) {
            let _ = answer.send(match &result {
                Ok(lost) => Ok(!lost.contains(id)),
                Err(e) => Err(e.to_string()),
            });
        }
    }
}
