//! Provisioning API: onboard and offboard teams, start a pipeline now.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::{ApiJson, OrgAdmin};
use switchyard_common::ids::Slug;
use utoipa::ToSchema;

use crate::k8s;
use crate::provision::ProvisionRequest;
use crate::state::AppState;
use crate::store::Run;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/provisioning", get(list).post(provision))
        .route("/api/v1/orgs/{org}/provisioning/{run_id}", get(get_one))
        .route(
            "/api/v1/orgs/{org}/teams/{team}/deprovision",
            post(deprovision),
        )
        .route(
            "/api/v1/orgs/{org}/teams/{team}/pipelines/{name}/run",
            post(run_pipeline),
        )
}

/// The caller's bearer token, forwarded to the config-service.
fn bearer(headers: &HeaderMap) -> Result<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .ok_or_else(|| {
            Error::Unauthorized("send a token as `Authorization: Bearer <token>`".into())
        })
}

/// Onboard a team in one call: node, config, token, Kubernetes Secret and CronJobs, rolled back on
/// failure. 202 with the run; the same idempotency key answers the same run.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/provisioning", tag = "provisioning", params(("org" = String, Path)), request_body = ProvisionRequest,
    responses((status = 202, body = Run), (status = 200, description = "The run of this idempotency key", body = Run), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn provision(
    State(state): State<AppState>,
    admin: OrgAdmin,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ProvisionRequest>,
) -> Result<(StatusCode, Json<Run>)> {
    Slug::parse(&req.team_id).map_err(|e| Error::invalid("/team_id", e))?;
    if req.name.trim().is_empty() {
        return Err(Error::invalid("/name", "must not be empty"));
    }
    if req.idempotency_key.trim().is_empty() || req.idempotency_key.len() > 200 {
        return Err(Error::invalid(
            "/idempotency_key",
            "must be 1 to 200 characters",
        ));
    }
    if !req.config.is_null() && !req.config.is_object() {
        return Err(Error::invalid(
            "/config",
            "must be an object (a config layer)",
        ));
    }
    // Schedules are checked before anything is created.
    k8s::pipelines_of(&req.config)
        .map_err(|e| Error::invalid("/config/pipelines", e.to_string()))?;
    let request = serde_json::to_value(&req).map_err(|e| Error::Internal(e.into()))?;
    let (run, new) = state
        .provisioner
        .start_run(
            &admin.org_id,
            &req.team_id,
            "provision",
            &request,
            Some(&req.idempotency_key),
            &admin.actor,
            bearer(&headers)?,
        )
        .await?;
    Ok((
        if new {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        },
        Json(run),
    ))
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deprovision {
    /// The same key answers the same run.
    pub idempotency_key: Option<String>,
}

/// Offboard a team: its CronJobs and Secret are deleted, its tokens revoked, its routing removed
/// and its node deleted. Idempotent; itself a recorded run.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/teams/{team}/deprovision", tag = "provisioning", params(("org" = String, Path), ("team" = String, Path)),
    request_body(content = Option<Deprovision>), responses((status = 202, description = "A new run", body = Run),
        (status = 200, description = "The run this idempotency key already started", body = Run)))]
pub async fn deprovision(
    State(state): State<AppState>,
    admin: OrgAdmin,
    headers: HeaderMap,
    Path((_, team)): Path<(String, String)>,
    body: Option<ApiJson<Deprovision>>,
) -> Result<(StatusCode, Json<Run>)> {
    let key = body.and_then(|ApiJson(d)| d.idempotency_key);
    let (run, new) = state
        .provisioner
        .start_run(
            &admin.org_id,
            &team,
            "deprovision",
            &json!({"team_id": team}),
            key.as_deref(),
            &admin.actor,
            bearer(&headers)?,
        )
        .await?;
    Ok((
        if new {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        },
        Json(run),
    ))
}

/// One provisioning run with its steps.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/provisioning/{run_id}", tag = "provisioning", params(("org" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, body = Run), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Run>> {
    Ok(Json(
        state.store.provisioning_run(&admin.org_id, &id).await?,
    ))
}

/// The org's provisioning runs, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/provisioning", tag = "provisioning", params(("org" = String, Path)), responses((status = 200, body = Vec<Run>)))]
pub async fn list(State(state): State<AppState>, admin: OrgAdmin) -> Result<Json<Vec<Run>>> {
    Ok(Json(
        state.store.provisioning_runs(&admin.org_id, None).await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    /// The Job created from the CronJob's template.
    pub job: String,
}

/// Start a Job from the pipeline's CronJob now.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/teams/{team}/pipelines/{name}/run", tag = "provisioning",
    params(("org" = String, Path), ("team" = String, Path), ("name" = String, Path)),
    responses((status = 201, body = Started), (status = 404, body = switchyard_common::problem::Problem), (status = 409, description = "No cluster configured", body = switchyard_common::problem::Problem)))]
pub async fn run_pipeline(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, team, name)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Started>)> {
    let cluster = state
        .provisioner
        .cluster
        .as_ref()
        .ok_or_else(|| Error::conflict("no-cluster", "no Kubernetes cluster is configured"))?;
    let cj = k8s::cronjob_name(&admin.org_id, &team, &name);
    if cluster
        .get_cronjob(&cj)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?
        .is_none()
    {
        return Err(Error::not_found(format!("pipeline {name} of team {team}")));
    }
    let job = cluster
        .run_now(&cj)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(Started {
            job: job.metadata.name.unwrap_or_default(),
        }),
    ))
}
