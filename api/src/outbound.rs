//! Switchyard's own events, as published to outbound subscriptions (ADR 0011), and the relay of
//! the config-service's run events to the orchestrator, which delivers them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The envelope every outbound delivery carries (version 1). Fields may be added to `data`, never
/// renamed or removed within a version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OutboundEvent {
    /// The event's id, sent as `webhook-id`: the same on every retry and resend.
    pub id: String,
    /// `run.succeeded`, `event.dead_lettered`, ...
    #[serde(rename = "type")]
    pub event_type: String,
    /// The envelope's version: 1.
    pub version: u32,
    /// When the change happened (RFC 3339, UTC).
    pub timestamp: String,
    pub org_id: String,
    /// The team the event is about; absent for org-wide events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The type's payload.
    pub data: Value,
}

/// The config-service's waiting run events, oldest first (orchestrator → config-service).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutboxBatch {
    pub events: Vec<OutboundEvent>,
}

/// Events the orchestrator has taken over; the config-service drops them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboxAck {
    pub ids: Vec<String>,
}
