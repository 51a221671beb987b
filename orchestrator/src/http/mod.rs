//! The orchestrator's HTTP surface: webhooks, integrations, events, health.

pub mod events;
pub mod integrations;
pub mod provisioning;
pub mod webhooks;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde_json::json;
use switchyard_common::problem::Problem;
use switchyard_common::telemetry::{metrics_response, track_http};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

pub fn app(state: AppState) -> Router {
    let webhooks = Router::new()
        .route("/webhooks/slack/events", post(webhooks::slack_events))
        .route("/webhooks/slack/commands", post(webhooks::slack_commands))
        .route(
            "/webhooks/slack/interactions",
            post(webhooks::slack_interactions),
        )
        .route("/webhooks/github", post(webhooks::github_app))
        .route(
            "/webhooks/{source}/{integration_id}",
            post(webhooks::per_integration),
        )
        // The handler enforces the configured limit itself (413 as problem+json).
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .merge(webhooks)
        .merge(integrations::router())
        .merge(events::router())
        .merge(provisioning::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail("no such endpoint") })
        .layer(middleware::from_fn_with_state(state.metrics.clone(), track_http))
        .layer(middleware::from_fn(switchyard_common::trace::propagate))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("unmatched");
            let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id, org = tracing::field::Empty, node = tracing::field::Empty, trace_id = tracing::field::Empty,)
        }))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(CatchPanicLayer::custom(|_| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error").into_response()))
        .with_state(state)
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The event store is reachable (webhooks can be accepted).
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200), (status = 503)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.db().ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics_response(&state.metrics)
}
