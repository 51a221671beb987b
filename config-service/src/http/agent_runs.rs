//! Agent runs: recorded by the agent-runner (internal), read by admins and the team itself.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Caller, Service};
use crate::domain::runs::STATUSES;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{AgentRun, Page, RunQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/internal/agent-runs", post(create))
        .route("/api/v1/internal/agent-runs/{id}", patch(update))
        .route("/api/v1/orgs/{org}/agent-runs", get(list))
        .route("/api/v1/orgs/{org}/agent-runs/{id}", get(get_one))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    pub org_id: String,
    pub team_id: String,
    /// The event that triggered the run (the orchestrator's envelope).
    #[schema(value_type = Object)]
    pub trigger: Value,
    /// A repeated key returns the run already recorded.
    pub idempotency_key: Option<String>,
}

/// Record a queued run (service JWT). 201 when new, 200 with the existing run for a repeated key.
#[utoipa::path(post, path = "/api/v1/internal/agent-runs", tag = "internal", request_body = CreateRun,
    responses((status = 201, body = AgentRun), (status = 200, description = "Existing run for this idempotency key", body = AgentRun)),
    security(("service_jwt" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _service: Service,
    ApiJson(req): ApiJson<CreateRun>,
) -> Result<(StatusCode, Json<AgentRun>)> {
    let (run, created) = state
        .store
        .create_run(
            &req.org_id,
            &req.team_id,
            &req.trigger,
            req.idempotency_key.as_deref(),
        )
        .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(run),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRun {
    /// queued -> running | failed | cancelled; running -> succeeded | failed | cancelled.
    pub status: String,
    pub summary: Option<String>,
    pub error: Option<String>,
}

/// Move a run to a new status (service JWT). Invalid transitions answer 409.
#[utoipa::path(patch, path = "/api/v1/internal/agent-runs/{id}", tag = "internal", params(("id" = String, Path)), request_body = UpdateRun,
    responses((status = 200, body = AgentRun), (status = 409, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn update(
    State(state): State<AppState>,
    _service: Service,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateRun>,
) -> Result<Json<AgentRun>> {
    if !STATUSES.contains(&req.status.as_str()) {
        return Err(Error::invalid(
            "/status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    Ok(Json(
        state
            .store
            .update_run(
                &id,
                &req.status,
                req.summary.as_deref(),
                req.error.as_deref(),
            )
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct RunsParams {
    pub team: Option<String>,
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<u32>,
}

/// Runs of the org, newest first. A team token sees its own team's runs only.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/agent-runs", tag = "agent-runs", params(("org" = String, Path), RunsParams),
    responses((status = 200, body = Page<AgentRun>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    ApiQuery(p): ApiQuery<RunsParams>,
) -> Result<Json<Page<AgentRun>>> {
    let team = match &caller {
        Caller::Team {
            org_id, node_id, ..
        } if *org_id == org => {
            if p.team.as_ref().is_some_and(|t| t != node_id) {
                return Err(Error::not_found(format!(
                    "node {}",
                    p.team.unwrap_or_default()
                )));
            }
            Some(node_id.clone())
        }
        _ => {
            caller.authorize_org_admin(&org)?;
            p.team
        }
    };
    let q = RunQuery {
        team,
        status: p.status,
        cursor: p.cursor,
        limit: p.limit,
    };
    Ok(Json(state.store.list_runs(&org, &q).await?))
}

/// One run.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/agent-runs/{id}", tag = "agent-runs", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AgentRun), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<AgentRun>> {
    let run = match &caller {
        Caller::Team {
            org_id, node_id, ..
        } if *org_id == org => {
            let run = state.store.get_run(Some(&org), &id).await?;
            if run.team_id != *node_id {
                return Err(Error::not_found(format!("agent run {id}")));
            }
            run
        }
        _ => {
            caller.authorize_org_admin(&org)?;
            state.store.get_run(Some(&org), &id).await?
        }
    };
    Ok(Json(run))
}
