//! Incidents (ADR 0012): a team's correlated signals, with their runs and timeline. Org admins see
//! the org's; a team token its own team's (another team's answers 404, like another org's).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchyard_common::clients::CallError;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::{ApiJson, ApiQuery, Caller};
use utoipa::{IntoParams, ToSchema};

use crate::state::AppState;
use crate::store::{Incident, IncidentDetail, IncidentQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/incidents", get(list))
        .route("/api/v1/orgs/{org}/incidents/{id}", get(get_one))
        .route("/api/v1/orgs/{org}/incidents/{id}/resolve", post(resolve))
        .route("/api/v1/orgs/{org}/incidents/{id}/reopen", post(reopen))
        .route("/api/v1/orgs/{org}/incidents/{id}/merge", post(merge))
}

/// The incident, if the caller may see it.
async fn visible(state: &AppState, caller: &Caller, org: &str, id: &str) -> Result<Incident> {
    let team = super::team_scope(caller, org)?;
    let i = state.store.get_incident(org, id).await?;
    if team.is_some_and(|t| t != i.team_id) {
        return Err(Error::not_found(format!("incident {id}")));
    }
    Ok(i)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentParams {
    /// Only this team's (a team token: always its own).
    pub team: Option<String>,
    /// `open`, `resolved` or `merged`.
    pub status: Option<String>,
    /// RFC 3339: seen at or after.
    pub since: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 500, default 50.
    #[serde(default, deserialize_with = "switchyard_common::http::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentPage {
    pub items: Vec<Incident>,
    pub next_cursor: Option<String>,
}

/// The org's incidents, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/incidents", tag = "incidents", params(("org" = String, Path), IncidentParams),
    responses((status = 200, body = IncidentPage), (status = 404, body = switchyard_common::problem::Problem),
        (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    ApiQuery(p): ApiQuery<IncidentParams>,
) -> Result<Json<IncidentPage>> {
    let mut team = p.team;
    if let Some(own) = super::team_scope(&caller, &org)? {
        if team.as_ref().is_some_and(|t| *t != own) {
            return Ok(Json(IncidentPage {
                items: Vec::new(),
                next_cursor: None,
            }));
        }
        team = Some(own);
    }
    if let Some(s) = p.status.as_deref()
        && !matches!(s, "open" | "resolved" | "merged")
    {
        return Err(Error::invalid(
            "/status",
            "must be open, resolved or merged",
        ));
    }
    let since = p
        .since
        .as_deref()
        .map(|s| switchyard_common::time::parse_rfc3339(s).map_err(|e| Error::invalid("/since", e)))
        .transpose()?;
    let q = IncidentQuery {
        team,
        status: p.status,
        since,
        cursor: p.cursor,
        limit: i64::from(p.limit.unwrap_or(50).clamp(1, 500)),
    };
    let (items, next_cursor) = state.store.list_incidents(&org, &q).await?;
    Ok(Json(IncidentPage { items, next_cursor }))
}

/// One incident: its members, runs and timeline.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/incidents/{id}", tag = "incidents",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = IncidentDetail), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<IncidentDetail>> {
    visible(&state, &caller, &org, &id).await?;
    Ok(Json(state.store.incident_detail(&org, &id).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// Why, for the timeline.
    pub reason: Option<String>,
}

/// Resolve an open incident by hand, with an optional `reason` (no body is no reason);
/// `incident.resolved` is published. 409 unless it is open.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/incidents/{id}/resolve", tag = "incidents",
    params(("org" = String, Path), ("id" = String, Path)), request_body(content = Option<Resolve>),
    responses((status = 200, body = Incident), (status = 404, body = switchyard_common::problem::Problem),
        (status = 409, body = switchyard_common::problem::Problem)))]
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    body: Option<ApiJson<Resolve>>,
) -> Result<Json<Incident>> {
    visible(&state, &caller, &org, &id).await?;
    let by = caller.actor(None);
    let reason = body.and_then(|ApiJson(r)| r.reason);
    Ok(Json(
        state
            .store
            .resolve_incident(&by, &org, &id, reason.as_deref())
            .await?,
    ))
}

/// Reopen a resolved incident within the team's `incidents.reopen_grace` (1 h by default) of its
/// resolution. A new signal never reopens one: it opens a new incident that links here. 409
/// past the grace period, or when the team has been offboarded since.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/incidents/{id}/reopen", tag = "incidents",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Incident), (status = 404, body = switchyard_common::problem::Problem),
        (status = 409, body = switchyard_common::problem::Problem)))]
pub async fn reopen(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<Incident>> {
    let i = visible(&state, &caller, &org, &id).await?;
    let config = state
        .config
        .node_config(&org, &i.team_id)
        .await
        .map_err(|e| match e {
            // The team was offboarded since: nobody is left to reopen it for.
            CallError::Rejected(why) => Error::conflict(
                "team-gone",
                format!("the incident's team {} no longer exists ({why})", i.team_id),
            ),
            other => Error::Unavailable(format!("reading the team's incident rules: {other}")),
        })?;
    let grace = crate::incidents::Rules::from_config(&config).reopen_grace_ms;
    let by = caller.actor(None);
    Ok(Json(
        state.store.reopen_incident(&by, &org, &id, grace).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    /// The incident to merge into this one (of the same team); it becomes `merged`.
    pub from: String,
}

/// Merge another incident of the same team into this one: its members, runs and timeline move
/// here, and it becomes `merged`.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/incidents/{id}/merge", tag = "incidents",
    params(("org" = String, Path), ("id" = String, Path)), request_body = Merge,
    responses((status = 200, body = Incident), (status = 404, body = switchyard_common::problem::Problem),
        (status = 409, body = switchyard_common::problem::Problem), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn merge(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<Merge>,
) -> Result<Json<Incident>> {
    visible(&state, &caller, &org, &id).await?;
    visible(&state, &caller, &org, &req.from).await?;
    let by = caller.actor(None);
    Ok(Json(
        state
            .store
            .merge_incidents(&by, &org, &id, &req.from)
            .await?,
    ))
}
