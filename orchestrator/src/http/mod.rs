//! The orchestrator's HTTP surface: webhooks, integrations, events, incidents, provisioning,
//! outbound subscriptions and their deliveries, the internal endpoints other services call, health;
//! and the web console (`switchyard-console`) mounted at `/console`.

pub mod deliveries;
pub mod events;
pub mod incidents;
pub mod integrations;
pub mod internal;
pub mod provisioning;
pub mod subscriptions;
pub mod webhooks;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use switchyard_common::telemetry::metrics_response;

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
    let router = Router::new()
        .merge(webhooks)
        .merge(integrations::router())
        .merge(events::router())
        .merge(provisioning::router())
        .merge(subscriptions::router())
        .merge(deliveries::router())
        .merge(incidents::router())
        .merge(internal::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let metrics = state.metrics.clone();
    let console = console(&state, router.clone().with_state(state.clone()));
    let routes = router
        .with_state(state)
        .merge(switchyard_console::router(console));
    switchyard_common::http::standard_layers(routes, metrics)
}

/// The web console at `/console`: it calls this orchestrator's API in process (the routes without
/// the HTTP layers, so a page is one request in the logs and metrics) and the config-service over
/// HTTP, always with the signed-in user's token.
fn console(state: &AppState, api: Router) -> switchyard_console::Console {
    use switchyard_console::upstream::Upstream;
    switchyard_console::Console::new(
        state.keyring.clone(),
        Upstream::http(state.config.base()),
        Upstream::InProcess(api),
        state.limits.console_secure_cookies,
    )
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The event store is reachable (webhooks can be accepted).
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200), (status = 503)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
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
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics_response(&state.metrics)
}

/// The team a caller is limited to in `org`: a team token's own team, `None` for the org's
/// admins (and the platform admin). Another org answers 404.
pub(crate) fn team_scope(
    caller: &switchyard_common::http::Caller,
    org: &str,
) -> switchyard_common::error::Result<Option<String>> {
    match caller {
        switchyard_common::http::Caller::Team {
            org_id, node_id, ..
        } if org_id == org => Ok(Some(node_id.clone())),
        _ => caller.authorize_org_admin(org).map(|()| None),
    }
}
