//! What every Switchyard service shares, and nothing more.
//!
//! # Layout
//! - [`ids`]: validated identifiers (slugs) used for organisations and nodes.
//! - [`auth`]: opaque API tokens (generation, hashing, constant-time comparison) and the short-lived
//!   service JWT that services present to each other.
//! - [`error`]: the services' error type; [`http`]: callers, auth and body extractors, and the one
//!   middleware stack every service runs.
//! - [`problem`]: RFC 9457 `application/problem+json` bodies with stable `type` URIs.
//! - [`openapi`]: the last step of every service's OpenAPI document (security, every error status).
//! - [`crypto`]: secrets at rest (XChaCha20-Poly1305 under named, rotatable master keys).
//! - [`clients`]: typed calls between services (config-service, agent-runner) with service JWTs;
//!   their bodies are the `switchyard_api` wire types.
//! - `db` (the `db` feature: services with a database): connecting to PostgreSQL or SQLite by URL
//!   scheme, the SQLite write lock, and the migrations; `db::testing` (fresh test databases) with
//!   the `testing` feature only.
//! - `outbox` (the `db` feature): the transactional outbox of Switchyard's own events.
//! - [`telemetry`]: `tracing` set-up and Prometheus HTTP metrics.
//! - [`trace`]: W3C `traceparent` propagation between the services.
//! - [`routing`]: routing identifier kinds, their precedence and validation.
//! - [`time`]: millisecond timestamps as stored, RFC 3339 as shown.
//! - `k8s_fake` (the `k8s-fake` feature, tests only): a stateful in-process fake of the Kubernetes
//!   API server that `kube::Client` talks to through its real code path.

pub mod auth;
pub mod batch;
pub mod clients;
pub mod config_diff;
pub mod cron;
pub mod crypto;
#[cfg(feature = "db")]
pub mod db;
pub mod error;
pub mod http;
pub mod ids;
#[cfg(feature = "k8s-fake")]
pub mod k8s_fake;
pub mod net;
pub mod openapi;
pub mod otel;
#[cfg(feature = "db")]
pub mod outbox;
pub mod problem;
pub mod routing;
pub mod settings;
pub mod telemetry;
pub mod text;
pub mod time;
pub mod trace;
