//! Agent runs: asking for one (`POST /api/v1/run` on the agent-runner) or many at once
//! (`POST /api/v1/run/batch`), and recording them (the config-service's
//! `/api/v1/internal/agent-runs` endpoints).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// What the agent-runner is asked to run: the body of its `POST /api/v1/run`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub org_id: String,
    pub team_id: String,
    /// The event envelope that triggered the run.
    #[schema(value_type = Object)]
    pub trigger: Value,
    /// Where to post the result: `{"kind": "slack", "channel", "thread_ts"}` or
    /// `{"kind": "github", "repo", "issue_number"}`.
    #[schema(value_type = Option<Object>)]
    pub reply_to: Option<Value>,
    /// The same key always answers the same run.
    pub idempotency_key: String,
}

/// The agent-runner's answer to a run request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub run_id: String,
    /// False when the idempotency key had been seen: nothing new was started.
    pub started: bool,
}

/// Runs the agent-runner is asked to start in one call: the body of its `POST /api/v1/run/batch`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRuns {
    /// At most [`StartRuns::MOST`] runs, of different events.
    pub runs: Vec<StartRun>,
}

impl StartRuns {
    /// The most runs one batch may carry.
    pub const MOST: usize = 256;
}

/// One run of a batch, with the trace it continues.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    pub run: RunRequest,
    /// The W3C `traceparent` this run continues (each event of a batch has its own trace).
    #[serde(default)]
    pub traceparent: Option<String>,
}

/// The answers to a [`StartRuns`], one per run, in the request's order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StartedRuns {
    pub results: Vec<StartOutcome>,
}

/// What `POST /api/v1/run` would have answered for this run: its status, and the run (202) or why
/// not (the problem's `detail`, and `retry_after` in seconds for 429 and 503).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StartOutcome {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// False when the idempotency key had been seen: nothing new was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// A recorded run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentRun {
    pub id: String,
    pub org_id: String,
    pub team_id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    #[schema(value_type = Object)]
    pub trigger: Value,
    pub idempotency_key: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub summary: Option<String>,
    pub error: Option<String>,
    /// Where the result goes (a Slack thread, a GitHub issue), kept so a resumed run still replies.
    #[schema(value_type = Option<Object>)]
    pub reply_to: Option<Value>,
    /// The agent-runner executing it, while it holds the lease.
    pub lease_owner: Option<String>,
    pub lease_until: Option<String>,
    /// Executions started (a resumed run counts again).
    pub attempts: i64,
    /// After this the run is failed, whoever holds it.
    pub deadline_at: Option<String>,
    /// What the agent did: its steps (model turns with tokens, tool calls with arguments,
    /// durations and trimmed outputs), once recorded.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub transcript: Option<Value>,
    /// Tokens the run's model turns used.
    #[serde(default)]
    pub usage: RunUsage,
    /// The etag of the effective config the run ran with.
    #[serde(default)]
    pub config_etag: Option<String>,
}

/// Tokens used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    pub org_id: String,
    pub team_id: String,
    /// The event that triggered the run (the orchestrator's envelope).
    #[schema(value_type = Object)]
    pub trigger: Value,
    /// A repeated key returns the run already recorded.
    pub idempotency_key: Option<String>,
    /// Where the result goes; kept so a resumed run still replies.
    #[schema(value_type = Option<Object>)]
    pub reply_to: Option<Value>,
    /// The agent-runner that will execute the run: it holds the run's lease from the start.
    pub runner: Option<String>,
    /// How long the lease lasts without renewal (milliseconds, default 30 s).
    pub lease_ms: Option<i64>,
    /// How long the run may take in all, resumptions included.
    pub deadline_seconds: Option<i64>,
    /// Records the run `running` from the start (its runner executes it at once), instead of
    /// `queued`: one call fewer per run.
    #[serde(default)]
    pub running: bool,
    /// The etag of the effective config the run runs with.
    #[serde(default)]
    pub config_etag: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRun {
    /// queued -> running | failed | cancelled; running -> succeeded | failed | cancelled.
    pub status: String,
    pub summary: Option<String>,
    pub error: Option<String>,
    /// The run's steps so far (kept when absent).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub transcript: Option<Value>,
    /// Tokens used so far (kept when absent).
    #[serde(default)]
    pub usage: Option<RunUsage>,
    /// The etag of the effective config the run runs with (kept when absent).
    #[serde(default)]
    pub config_etag: Option<String>,
}

impl UpdateRun {
    /// A move to `status` that records nothing else.
    pub fn to(status: &str) -> Self {
        Self {
            status: status.to_owned(),
            summary: None,
            error: None,
            transcript: None,
            usage: None,
            config_etag: None,
        }
    }
}

/// Runs to record and runs to move, in one call and one transaction: how the agent-runner records
/// the runs it starts and the outcomes of those it finished when many arrive together. Each item
/// is answered on its own, as its single-run call would be.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBatch {
    /// As `POST /api/v1/internal/agent-runs`, each.
    #[serde(default)]
    pub create: Vec<CreateRun>,
    /// As `PATCH /api/v1/internal/agent-runs/{id}`, each.
    #[serde(default)]
    pub update: Vec<RunUpdate>,
}

/// A move of one run, in a [`RunBatch`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunUpdate {
    pub id: String,
    pub update: UpdateRun,
}

/// The answers to a [`RunBatch`], one per item in its order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RunBatchResult {
    pub create: Vec<BatchOutcome>,
    pub update: Vec<BatchOutcome>,
}

/// One item's answer: the status its single-run call would have answered (201 created, 200
/// existing or moved, 404, 409 invalid transition, 422 invalid input) and the run's id, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchOutcome {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl BatchOutcome {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewLease {
    pub runner: String,
    pub lease_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// The runner that will execute what it resumes.
    pub runner: String,
    pub lease_ms: Option<i64>,
    /// Executions a run may have before a lapsed lease fails it (default 3).
    pub max_attempts: Option<i64>,
    /// Most runs to resume in one sweep (default 32).
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveredRuns {
    /// Runs whose runner stopped, now leased to the caller to execute again.
    pub resumed: Vec<AgentRun>,
    /// Runs failed: past their deadline, or out of attempts.
    pub failed: Vec<AgentRun>,
}

/// A token budget and what was used of it today (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Budget {
    /// `quotas.tokens_per_day`; `None`: no limit.
    pub limit: Option<i64>,
    /// Input and output tokens of the runs recorded since midnight UTC (counted only where there
    /// is a limit: 0 without one).
    pub used_today: i64,
}

impl Budget {
    /// Tokens left today (`None`: no limit).
    pub fn remaining(&self) -> Option<i64> {
        self.limit.map(|l| (l - self.used_today).max(0))
    }
}

/// The token budgets a team's runs draw on: its own (its effective `quotas.tokens_per_day`) and
/// its org's (the org root's `quotas.tokens_per_day`, over every team).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenBudgets {
    pub team: Budget,
    pub org: Budget,
}

impl TokenBudgets {
    /// Tokens a run may still use (`None`: no limit), and which budget binds.
    pub fn remaining(&self) -> Option<(i64, &'static str)> {
        match (self.team.remaining(), self.org.remaining()) {
            (Some(t), Some(o)) if o < t => Some((o, "org")),
            (Some(t), _) => Some((t, "team")),
            (None, Some(o)) => Some((o, "org")),
            (None, None) => None,
        }
    }
}

/// Everything a run starts with, read in one call by the agent-runner (`GET
/// /api/v1/internal/orgs/{org}/nodes/{team}/run-context`): the team's effective config, the day's
/// token budgets, and the org secrets the config refers to.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct RunContext {
    /// The team's effective config, unredacted.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Changes whenever any layer of the config changes.
    pub etag: String,
    pub budgets: TokenBudgets,
    /// Each `{"secret": "<name>"}` the config holds, resolved. A name the org does not have is
    /// absent: what needs it fails with that reason.
    pub secrets: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for RunContext {
    /// Never prints a secret's value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("etag", &self.etag)
            .field("budgets", &self.budgets)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The title every answer the agent-runner posts begins with. The orchestrator recognises its
/// own answers by it (a GitHub comment posted with a user's token comes back as that user's
/// comment) and never answers them.
pub const REPLY_TITLE: &str = "Switchyard investigation";
