//! Recording runs in the config-service, batched (ADR 0019). The runs this runner starts and the
//! outcomes of those it finished go many to a call, and one transaction there, when they arrive
//! together, and alone when they do not: the batcher takes whatever is queued the moment its
//! previous call returned, so a lone run waits for nothing.

use std::sync::{Arc, OnceLock};

use switchyard_api::runs::{BatchOutcome, CreateRun, RunBatch, RunUpdate, UpdateRun};
use switchyard_common::batch::Batcher;
use switchyard_common::clients::{CallError, ConfigClient};

use crate::AppState;

enum Write {
    Create(CreateRun),
    Update(RunUpdate),
}

type Answer = Result<BatchOutcome, CallError>;

/// Most writes one call carries (the config-service takes up to 1,000), and most waiting.
const BATCH: usize = 256;
const QUEUE: usize = 8192;

/// The runner's batching recorder, started on first use.
#[derive(Clone, Default)]
pub struct Records(Arc<OnceLock<Batcher<Write, Answer>>>);

impl AppState {
    fn recorder(&self) -> &Batcher<Write, Answer> {
        let config = self.config.clone();
        self.records
            .0
            .get_or_init(|| Batcher::new(BATCH, QUEUE, move |w| flush(config.clone(), w)))
    }

    async fn record(&self, write: Write) -> Result<BatchOutcome, CallError> {
        let outcome = self.recorder().submit(write).await.unwrap_or_else(|| {
            Err(CallError::Unavailable(
                "the agent-runner is stopping".into(),
            ))
        })?;
        if outcome.is_success() {
            return Ok(outcome);
        }
        let detail = outcome.detail.unwrap_or_default();
        Err(if outcome.status >= 500 {
            CallError::Unavailable(detail)
        } else {
            CallError::Rejected(detail)
        })
    }

    /// Records a run; answers its id and whether it was created now (`false`: its idempotency
    /// key was used, and the id is the existing run's).
    pub(crate) async fn record_new_run(&self, run: CreateRun) -> Result<(String, bool), CallError> {
        let outcome = self.record(Write::Create(run)).await?;
        let id = outcome.run_id.ok_or_else(|| {
            CallError::Unavailable("the config-service answered no run id".into())
        })?;
        Ok((id, outcome.status == 201))
    }

    /// Moves a run (its outcome, with the transcript and usage).
    pub(crate) async fn record_update(&self, id: &str, update: UpdateRun) -> Result<(), CallError> {
        let id = id.to_owned();
        self.record(Write::Update(RunUpdate { id, update }))
            .await
            .map(drop)
    }
}

/// One call for everything queued; each write gets its own item's answer.
async fn flush(config: ConfigClient, writes: Vec<Write>) -> Vec<Answer> {
    let n = writes.len();
    let mut batch = RunBatch::default();
    let is_create: Vec<bool> = writes
        .into_iter()
        .map(|w| match w {
            Write::Create(c) => {
                batch.create.push(c);
                true
            }
            Write::Update(u) => {
                batch.update.push(u);
                false
            }
        })
        .collect();
    let (creates, updates) = (batch.create.len(), batch.update.len());
    match config.run_batch(&batch).await {
        Ok(r) if r.create.len() == creates && r.update.len() == updates => {
            let (mut created, mut updated) = (r.create.into_iter(), r.update.into_iter());
            is_create
                .into_iter()
                .map(|c| {
                    let next = if c { created.next() } else { updated.next() };
                    Ok(next.expect("counted above"))
                })
                .collect()
        }
        Ok(_) => vec![
            Err(CallError::Unavailable(
                "the config-service answered a batch with the wrong number of items".into()
            ));
            n
        ],
        Err(e) => vec![Err(e); n],
    }
}
