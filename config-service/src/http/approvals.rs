//! The approval policy and pending changes to protected paths.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, OrgAdmin};
use crate::domain::config::SECTIONS;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{ChangeRequest, Policy, PolicyWrite};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/policy", get(get_policy).put(put_policy))
        .route("/api/v1/orgs/{org}/changes", get(list_changes))
        .route("/api/v1/orgs/{org}/changes/{id}", get(get_change))
        .route("/api/v1/orgs/{org}/changes/{id}/approve", post(approve))
        .route("/api/v1/orgs/{org}/changes/{id}/reject", post(reject))
}

/// The org's approval policy.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/policy", tag = "approvals", params(("org" = String, Path)), responses((status = 200, body = Policy)))]
pub async fn get_policy(State(state): State<AppState>, admin: OrgAdmin) -> Result<Json<Policy>> {
    Ok(Json(state.store.get_policy(&admin.org_id).await?))
}

/// Set the protected paths: JSON pointers into a layer, under a known section. While the current
/// policy protects anything, a change to it waits for another person's approval (202).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/policy", tag = "approvals", params(("org" = String, Path)), request_body = Policy,
    responses((status = 200, body = Policy), (status = 202, description = "Pending approval", body = ChangeRequest), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn put_policy(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiJson(policy): ApiJson<Policy>,
) -> Result<Response> {
    for (i, p) in policy.protected_paths.iter().enumerate() {
        let section = p.strip_prefix('/').and_then(|r| r.split('/').next());
        if !section.is_some_and(|s| SECTIONS.contains(&s)) {
            return Err(Error::invalid(
                &format!("/protected_paths/{i}"),
                format!(
                    "{p:?} must be a JSON pointer into a known section ({})",
                    SECTIONS.join(", ")
                ),
            ));
        }
    }
    Ok(
        match state
            .store
            .put_policy(&admin.actor, &admin.org_id, &policy)
            .await?
        {
            PolicyWrite::Applied(p) => Json(p).into_response(),
            PolicyWrite::Pending(c) => (StatusCode::ACCEPTED, Json(c)).into_response(),
        },
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// `pending`, `approved` or `rejected`.
    pub status: Option<String>,
}

/// Change requests, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/changes", tag = "approvals", params(("org" = String, Path), ChangesQuery),
    responses((status = 200, body = Vec<ChangeRequest>)))]
pub async fn list_changes(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Json<Vec<ChangeRequest>>> {
    if let Some(s) = &q.status
        && !matches!(s.as_str(), "pending" | "approved" | "rejected")
    {
        return Err(Error::invalid(
            "/status",
            "must be pending, approved or rejected",
        ));
    }
    Ok(Json(
        state
            .store
            .list_changes(&admin.org_id, q.status.as_deref())
            .await?,
    ))
}

/// One change request.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/changes/{id}", tag = "approvals", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = ChangeRequest), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_change(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<ChangeRequest>> {
    Ok(Json(state.store.get_change(&admin.org_id, &id).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub reason: Option<String>,
}

async fn decide(
    state: AppState,
    admin: OrgAdmin,
    id: String,
    approve: bool,
    body: Option<ApiJson<Decision>>,
) -> Result<Json<ChangeRequest>> {
    let reason = body.and_then(|ApiJson(d)| d.reason);
    Ok(Json(
        state
            .store
            .decide_change(&admin.actor, &admin.org_id, &id, approve, reason)
            .await?,
    ))
}

/// Approve and apply a pending change. The author cannot approve it (403).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/changes/{id}/approve", tag = "approvals", params(("org" = String, Path), ("id" = String, Path)),
    request_body(content = Option<Decision>),
    responses((status = 200, body = ChangeRequest), (status = 403, description = "Self-approval", body = switchyard_common::problem::Problem),
        (status = 409, description = "Already decided, or the layer moved on", body = switchyard_common::problem::Problem)))]
pub async fn approve(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
    body: Option<ApiJson<Decision>>,
) -> Result<Json<ChangeRequest>> {
    decide(state, admin, id, true, body).await
}

/// Reject (or, for its author, withdraw) a pending change.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/changes/{id}/reject", tag = "approvals", params(("org" = String, Path), ("id" = String, Path)),
    request_body(content = Option<Decision>),
    responses((status = 200, body = ChangeRequest), (status = 409, body = switchyard_common::problem::Problem)))]
pub async fn reject(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
    body: Option<ApiJson<Decision>>,
) -> Result<Json<ChangeRequest>> {
    decide(state, admin, id, false, body).await
}
