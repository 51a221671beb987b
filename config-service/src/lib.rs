//! Switchyard's config-service: the data plane and single source of truth.
//!
//! # Layout
//! - [`domain`]: pure rules (layer merge and validation, routing identifiers, run transitions).
//! - [`store`]: storage over PostgreSQL or SQLite, one portable implementation, one `impl Store`
//!   slice per area (orgs, config, approvals, tokens, routing, secrets, runs, audit).
//! - [`http`]: the REST API, one module per resource, and the auth extractors.
//! - [`error`]: the crate's error type and its problem+json rendering.
//! - [`settings`]: command-line and environment settings; [`state`]: what handlers share, built
//!   from the settings by `AppState::from_settings`; [`run`] serves it.
//! - [`openapi`]: the generated API contract.

pub mod domain;
pub mod error;
pub mod http;
pub mod openapi;
pub mod settings;
pub mod state;
pub mod store;

pub use http::{app, serve};
pub use state::AppState;

/// Runs the config-service as `switchyard config-service` does: [`AppState::from_settings`], then
/// [`serve`] until `shutdown`.
pub async fn run(
    settings: settings::Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::from_settings(&settings).await?;
    tracing::info!(addr = %listener.local_addr()?, database = state.store.backend().name(), "config-service listening");
    serve(listener, state, shutdown).await?;
    Ok(())
}
