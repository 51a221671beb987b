//! A team's recent events as its agent reads them (agent-runner → orchestrator, the
//! `switchyard_events` tool).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One event of the team: what arrived and what became of it, without its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TeamEvent {
    pub id: String,
    /// RFC 3339.
    pub received_at: String,
    pub source: String,
    pub event_type: String,
    pub correlation_key: String,
    /// received, dispatching, throttled, retrying, dispatched, unrouted, dead_lettered.
    pub status: String,
    pub run_id: Option<String>,
    pub last_error: Option<String>,
}

/// Which of the team's events, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct TeamEventsQuery {
    /// RFC 3339: events received at or after (default: the last hour).
    pub since: Option<String>,
    /// Only this sender's (`alertmanager`, `pagerduty`...).
    pub source: Option<String>,
    /// Most events (default 20, at most 100).
    pub limit: Option<u32>,
}

/// How a run the orchestrator dispatched for an event ended (agent-runner → orchestrator), for the
/// event's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunOutcome {
    pub run_id: String,
    /// succeeded, failed or cancelled.
    pub status: String,
    /// Why it failed (a budget used up, the deadline, the provider's refusal...).
    pub error: Option<String>,
}
