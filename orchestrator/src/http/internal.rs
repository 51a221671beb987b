//! Endpoints other Switchyard services call with their service JWT.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use switchyard_api::events::{JoinedSignals, TeamEvent, TeamEventsQuery};
use switchyard_common::error::{Error, Result};
use switchyard_common::http::{ApiQuery, Service};
use switchyard_common::time::{now_ms, parse_rfc3339};

use crate::state::AppState;
use crate::store::EventQuery;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/internal/orgs/{org}/teams/{team}/events",
            get(team_events),
        )
        .route(
            "/api/v1/internal/orgs/{org}/events/{id}/joined-signals",
            post(joined_signals),
        )
}

/// The signals that joined the incident of the run this event started, since the run last
/// asked; from now on they are in its context (the agent-runner asks between the agent's turns).
/// Nothing when the event started no incident run, or its run has ended.
#[utoipa::path(post, path = "/api/v1/internal/orgs/{org}/events/{id}/joined-signals", tag = "internal",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = JoinedSignals), (status = 403, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn joined_signals(
    State(state): State<AppState>,
    service: Service,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<JoinedSignals>> {
    service.require(&["agent-runner"])?;
    Ok(Json(state.store.take_joined_signals(&org, &id).await?))
}

/// A team's recent events, newest first, without payloads: what else is happening, for its agent
/// (`switchyard_events`). The agent-runner only; the org and team are the run's, never the model's.
#[utoipa::path(get, path = "/api/v1/internal/orgs/{org}/teams/{team}/events", tag = "internal",
    params(("org" = String, Path), ("team" = String, Path), TeamEventsQuery),
    responses((status = 200, body = Vec<TeamEvent>), (status = 403, body = switchyard_common::problem::Problem),
        (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn team_events(
    State(state): State<AppState>,
    service: Service,
    Path((org, team)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<TeamEventsQuery>,
) -> Result<Json<Vec<TeamEvent>>> {
    service.require(&["agent-runner"])?;
    let since = match q.since.as_deref() {
        Some(s) => parse_rfc3339(s).map_err(|e| Error::invalid("/since", e))?,
        None => now_ms() - 3_600_000,
    };
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid("/limit", "must be from 1 to 100"));
    }
    let (events, _) = state
        .store
        .list_events(&EventQuery {
            org: Some(org),
            team: Some(team),
            source: q.source,
            status: None,
            since: Some(since),
            cursor: None,
            limit: Some(limit),
        })
        .await?;
    Ok(Json(
        events
            .into_iter()
            .map(|e| TeamEvent {
                id: e.id,
                received_at: e.received_at,
                source: e.source,
                event_type: e.event_type,
                correlation_key: e.correlation_key,
                status: e.status,
                run_id: e.run_id,
                last_error: e.last_error,
            })
            .collect(),
    ))
}
