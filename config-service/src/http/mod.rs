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
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Router, middleware};
use switchyard_common::problem::Problem;
use switchyard_common::telemetry::track_http;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// Largest request body accepted (config layers are small; this bounds memory per request).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The whole service as a router: what production, `switchyard dev` and tests all run.
pub fn app(state: AppState) -> Router {
    Router::new()
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
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            track_http,
        ))
        .layer(middleware::from_fn(switchyard_common::trace::propagate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                method = %req.method(),
                route,
                request_id,
                org = tracing::field::Empty,
                node = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            )
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(CatchPanicLayer::custom(|_| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            )
            .into_response()
        }))
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail("no such endpoint")
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
