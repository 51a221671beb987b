//! Starting runs, many chains' to one call (as the settler does for their settlements): each
//! chain hands its run request over and waits for its answer; one task sends whatever has queued
//! meanwhile as one `POST /api/v1/run/batch` and answers each chain with its own run's outcome.
//! A round's chains start their runs together, so a round is one call to the agent-runner, not
//! one a chain (issue 11: the call's HTTP, token and JSON framing were paid per event).
//!
//! Each run keeps its own trace: a client span per run, whose context the batch carries for it.
//! A request too large to share a call (over [`MOST_BYTES`] alone) goes by itself to
//! `POST /api/v1/run`, and so does every request while the agent-runner has no batch endpoint
//! (an older version during a rolling upgrade; asked again after [`ASK_AGAIN`]).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchyard_api::runs::StartRun;
use switchyard_common::clients::{CallError, RunRequest, RunnerClient, run_outcome};
use switchyard_common::otel;
use switchyard_common::trace::TraceContext;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Runs one call carries at most (the agent-runner takes up to `StartRuns::MOST`).
const MOST: usize = 128;

/// The body one call carries at most: a batch never approaches the agent-runner's body limit.
const MOST_BYTES: usize = 1 << 20;

/// Calls in flight at once: while they are, requests queue and the next call takes them all.
const IN_FLIGHT: usize = 4;

/// How long to start runs one call each after the agent-runner answered that it has no batch
/// endpoint, before trying a batch again.
const ASK_AGAIN: Duration = Duration::from_secs(60);

type Answer = Result<String, CallError>;

struct Request {
    /// The serialised `StartRun` (parsed back for a call of its own, which is rare).
    item: Vec<u8>,
    /// The trace the run continues, for a call of its own.
    ctx: TraceContext,
    answer: oneshot::Sender<Answer>,
}

/// The chains' side of the starter.
#[derive(Clone)]
pub(super) struct Starter(mpsc::Sender<Request>);

impl Starter {
    /// The starter and the task that calls for it (runs until every [`Starter`] is dropped).
    pub(super) fn start(runner: RunnerClient) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MOST * 4);
        (Self(tx), tokio::spawn(call(runner, rx)))
    }

    /// Starts `run` in the next call; answers its run id, or why not, as `RunnerClient::run`
    /// would. Runs in the caller's trace, under a client span of its own.
    pub(super) async fn run(&self, run: RunRequest) -> Answer {
        let (mut span, ctx) =
            otel::Span::child("orchestrator", "call agent-runner", otel::SpanKind::Client);
        span.attr_str("peer.service", "agent-runner");
        // Serialised here, in the chain's task, straight from the typed request (no copy of the
        // payload into a `Value` first).
        let item = serde_json::to_vec(&StartRun {
            run,
            traceparent: Some(ctx.header()),
        })
        .map_err(|e| CallError::Rejected(format!("the run request does not serialise: {e}")))?;
        let (answer, answered) = oneshot::channel();
        let stopping = || CallError::Unavailable("the dispatcher is stopping".into());
        self.0
            .send(Request { item, ctx, answer })
            .await
            .map_err(|_| stopping())?;
        let outcome = answered.await.map_err(|_| stopping())?;
        if let Err(e) = &outcome {
            span.error(e.to_string());
        }
        span.end();
        outcome
    }
}

async fn call(runner: RunnerClient, mut rx: mpsc::Receiver<Request>) {
    let flights = Arc::new(Semaphore::new(IN_FLIGHT));
    // Since when the agent-runner has had no batch endpoint, if it has not.
    let single_since: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut queued = Vec::with_capacity(MOST);
    // A request waiting for the next call (it did not fit the last one's bytes).
    let mut carried: Option<Request> = None;
    loop {
        let Ok(permit) = flights.clone().acquire_owned().await else {
            return;
        };
        // One at a time from here on, so that the call's bytes are counted as it fills.
        match carried.take() {
            Some(r) => queued.push(r),
            None => match rx.recv().await {
                Some(r) => queued.push(r),
                None => return,
            },
        }
        // A round's chains decide their events together: let those still deciding queue theirs.
        tokio::task::yield_now().await;
        let mut bytes: usize = queued.iter().map(|r| r.item.len() + 1).sum();
        while queued.len() < MOST {
            match rx.try_recv() {
                Ok(r) if bytes + r.item.len() + 1 > MOST_BYTES && !queued.is_empty() => {
                    carried = Some(r);
                    break;
                }
                Ok(r) => {
                    bytes += r.item.len() + 1;
                    queued.push(r);
                }
                Err(_) => break,
            }
        }
        let batch = std::mem::take(&mut queued);
        let (runner, single_since) = (runner.clone(), single_since.clone());
        tokio::spawn(async move {
            send(&runner, &single_since, batch).await;
            drop(permit);
        });
    }
}

/// Sends `batch` as one call (or each alone, see the module's description) and answers each.
async fn send(runner: &RunnerClient, single_since: &Mutex<Option<Instant>>, batch: Vec<Request>) {
    let single = single_since
        .lock()
        .expect("poisoned")
        .is_some_and(|since| since.elapsed() < ASK_AGAIN);
    let alone = batch.len() == 1 && batch[0].item.len() > MOST_BYTES;
    if single || alone {
        return one_each(runner, batch).await;
    }
    let mut body = Vec::with_capacity(batch.iter().map(|r| r.item.len() + 1).sum::<usize>() + 16);
    body.extend_from_slice(b"{\"runs\":[");
    for (i, r) in batch.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&r.item);
    }
    body.extend_from_slice(b"]}");
    match runner.run_batch(body).await {
        Ok(answers) if answers.len() == batch.len() => {
            for (r, a) in batch.into_iter().zip(answers) {
                let _ = r.answer.send(run_outcome(a));
            }
        }
        Ok(answers) => {
            let why = format!(
                "agent-runner: {} answers to a batch of {} runs",
                answers.len(),
                batch.len()
            );
            for r in batch {
                let _ = r.answer.send(Err(CallError::Unavailable(why.clone())));
            }
        }
        Err(CallError::Rejected(why)) if why.starts_with("404") || why.starts_with("405") => {
            tracing::info!(
                "the agent-runner has no batch endpoint (an older version?): starting runs one call each"
            );
            *single_since.lock().expect("poisoned") = Some(Instant::now());
            one_each(runner, batch).await;
        }
        Err(e) => {
            for r in batch {
                let _ = r.answer.send(Err(e.clone()));
            }
        }
    }
}

/// Each request by itself to `POST /api/v1/run`, concurrently.
async fn one_each(runner: &RunnerClient, batch: Vec<Request>) {
    let calls = batch.into_iter().map(|r| async move {
        let outcome = match serde_json::from_slice::<StartRun>(&r.item) {
            Ok(one) => r.ctx.scope(runner.run(&one.run)).await,
            Err(e) => Err(CallError::Rejected(format!(
                "the run request does not parse: {e}"
            ))),
        };
        let _ = r.answer.send(outcome);
    });
    futures_util::future::join_all(calls).await;
}
