//! The wire types between Switchyard's services, defined once and used by each server (which
//! derives its OpenAPI schema from them) and by its client in `switchyard_common::clients` (which
//! returns them typed). Serde, `serde_json` and utoipa only: no database driver, no web
//! framework, no HTTP client.
//!
//! # Layout
//! - [`routing`]: the routing lookup (orchestrator → config-service).
//! - [`auth`]: token introspection (orchestrator, agent-runner → config-service).
//! - [`runs`]: asking for a run (orchestrator → agent-runner) and recording it (agent-runner →
//!   config-service).
//! - [`config`]: effective config and pipelines as services read them.
//! - [`events`]: a team's recent events (agent-runner → orchestrator).
//! - [`outbound`]: the envelope of Switchyard's own events, and the relay of the config-service's
//!   run events to the orchestrator.

pub mod auth;
pub mod config;
pub mod events;
pub mod outbound;
pub mod routing;
pub mod runs;
