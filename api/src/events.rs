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
#[into_params(parameter_in = Query)]
pub struct TeamEventsQuery {
    /// RFC 3339: events received at or after (default: the last hour).
    pub since: Option<String>,
    /// Only this sender's (`alertmanager`, `pagerduty`...).
    pub source: Option<String>,
    /// Most events (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The signals that joined a run's incident since the run last asked (agent-runner →
/// orchestrator, between the agent's turns): from now on they are in that run's context, so no
/// follow-up run is started for them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JoinedSignals {
    /// The run's incident (`null`: the run has none, or it is no longer going).
    pub incident_id: Option<String>,
    pub signals: Vec<JoinedSignal>,
}

/// One signal that joined the incident, with what correlation compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JoinedSignal {
    pub event_id: String,
    /// RFC 3339: when it joined the incident.
    pub joined_at: String,
    pub source: String,
    pub event_type: String,
    pub service: Option<String>,
    pub severity: Option<String>,
    /// The sender's alert whose state it reports, and whether it says the alert resolved.
    pub alert: Option<String>,
    pub resolved: Option<bool>,
    /// The start of the sender's payload (at most 2 KB).
    pub excerpt: String,
}
