//! Reading a run's context (`run-context`: effective config, token budgets, secrets), coalesced.
//!
//! Runs of one team that arrive together share one read: requests queue while a read is in
//! flight, and the next read serves all of them. Each read is issued after every request it
//! serves arrived, so a config change made before a run was asked for always applies to it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use switchyard_api::runs::RunContext;
use switchyard_common::batch::Batcher;
use switchyard_common::clients::{CallError, ConfigClient};

use crate::AppState;

type Key = (String, String);
type Answer = Result<Arc<RunContext>, CallError>;

/// Most requests one round of reads serves, and most waiting for the next.
const BATCH: usize = 512;
const QUEUE: usize = 8192;

/// The runner's coalescing reader, started on first use.
#[derive(Clone, Default)]
pub struct Contexts(Arc<OnceLock<Batcher<Key, Answer>>>);

impl AppState {
    /// The context a run of `team` starts with, read after this call began.
    pub(crate) async fn run_context(&self, org: &str, team: &str) -> Answer {
        let config = self.config.clone();
        let reader = self
            .contexts
            .0
            .get_or_init(|| Batcher::new(BATCH, QUEUE, move |keys| read(config.clone(), keys)));
        reader
            .submit((org.to_owned(), team.to_owned()))
            .await
            .unwrap_or_else(|| {
                Err(CallError::Unavailable(
                    "the agent-runner is stopping".into(),
                ))
            })
    }
}

/// One read per distinct team (at once), each answer shared by that team's requests.
async fn read(config: ConfigClient, keys: Vec<Key>) -> Vec<Answer> {
    let mut distinct: Vec<&Key> = keys.iter().collect();
    distinct.sort();
    distinct.dedup();
    let answers = futures_util::future::join_all(distinct.iter().map(|(org, team)| {
        let config = &config;
        async move { config.run_context(org, team).await.map(Arc::new) }
    }))
    .await;
    let by_key: HashMap<&Key, Answer> = distinct.into_iter().zip(answers).collect();
    keys.iter().map(|k| by_key[k].clone()).collect()
}
