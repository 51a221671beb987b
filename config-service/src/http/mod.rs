//! The REST API: one module per resource, merged here with the layers every request passes.

pub mod agent_runs;
pub mod approvals;
pub mod audit;
pub mod config;
/// The shared extractors, under the name the handlers use.
pub use switchyard_common::http as extract;
pub mod health;
pub mod internal;
pub mod me;
pub mod nodes;
pub mod orgs;
pub mod routing;
pub mod secrets;
pub mod tokens;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

use crate::state::AppState;

/// Largest request body accepted (config layers are small; this bounds memory per request).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The whole service as a router: what production, `switchyard dev` and tests all run.
pub fn app(state: AppState) -> Router {
    let router = Router::new()
        .merge(health::router())
        .merge(me::router())
        .merge(orgs::router())
        .merge(nodes::router())
        .merge(config::router())
        .merge(approvals::router())
        .merge(tokens::router())
        .merge(secrets::router())
        .merge(routing::router())
        .merge(audit::router())
        .merge(agent_runs::router())
        .merge(internal::router())
        // Config layers are small; this bounds memory per request.
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    switchyard_common::http::standard_layers(router, state.metrics.clone()).with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(switchyard_common::http::no_delay(listener), app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
