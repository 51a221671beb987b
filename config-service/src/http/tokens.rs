//! Org admin tokens and team tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use switchyard_common::time::{now_ms, parse_duration};
use utoipa::ToSchema;

use super::extract::{ApiJson, OrgAdmin};
use super::orgs::check_name;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{IssuedToken, TokenInfo};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/orgs/{org}/admin-tokens",
            get(list_admin_tokens).post(create_admin_token),
        )
        .route(
            "/api/v1/orgs/{org}/admin-tokens/{id}",
            delete(revoke_admin_token),
        )
        .route(
            "/api/v1/orgs/{org}/nodes/{node}/tokens",
            get(list_team_tokens).post(create_team_token),
        )
        .route(
            "/api/v1/orgs/{org}/nodes/{node}/tokens/{id}",
            delete(revoke_team_token),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, e.g. `ci` or `alice`.
    pub label: String,
    /// The person or system that will hold the token, e.g. `alice@example.com` (required for
    /// admin tokens). Approvals compare subjects: nobody approves their own change with a second
    /// token.
    pub subject: Option<String>,
    /// Lifetime such as `30d`, `12h` or `90m`; absent: no expiry.
    pub expires_in: Option<String>,
}

fn expiry(req: &CreateToken) -> Result<Option<i64>> {
    req.expires_in
        .as_deref()
        .map(|s| {
            let d = parse_duration(s).map_err(|e| Error::invalid("/expires_in", e))?;
            if d.is_zero() {
                return Err(Error::invalid("/expires_in", "must be longer than zero"));
            }
            Ok(now_ms().saturating_add(d.as_millis().min(i64::MAX as u128) as i64))
        })
        .transpose()
}

/// Issue an org admin token. The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/admin-tokens", tag = "tokens", params(("org" = String, Path)), request_body = CreateToken,
    responses((status = 201, body = IssuedToken), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn create_admin_token(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<IssuedToken>)> {
    let label = check_name(&req.label, "/label")?;
    let expires = expiry(&req)?;
    let t = state
        .store
        .create_token(
            &admin.actor,
            &admin.org_id,
            None,
            &label,
            req.subject.as_deref(),
            expires,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Org admin tokens, without secrets.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/admin-tokens", tag = "tokens", params(("org" = String, Path)), responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_admin_tokens(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<Json<Vec<TokenInfo>>> {
    Ok(Json(state.store.list_tokens(&admin.org_id, None).await?))
}

/// Revoke an org admin token.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/admin-tokens/{id}", tag = "tokens", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn revoke_admin_token(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    state
        .store
        .revoke_token(&admin.actor, &admin.org_id, None, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a team token scoped to one node. The secret is in this response only.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/nodes/{node}/tokens", tag = "tokens", params(("org" = String, Path), ("node" = String, Path)),
    request_body = CreateToken, responses((status = 201, body = IssuedToken), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn create_team_token(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node)): Path<(String, String)>,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<IssuedToken>)> {
    let label = check_name(&req.label, "/label")?;
    let expires = expiry(&req)?;
    let t = state
        .store
        .create_token(
            &admin.actor,
            &admin.org_id,
            Some(&node),
            &label,
            req.subject.as_deref(),
            expires,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// A node's team tokens, without secrets.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/nodes/{node}/tokens", tag = "tokens", params(("org" = String, Path), ("node" = String, Path)),
    responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_team_tokens(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node)): Path<(String, String)>,
) -> Result<Json<Vec<TokenInfo>>> {
    if state.store.get_node(&admin.org_id, &node).await?.is_none() {
        return Err(Error::not_found(format!("node {node}")));
    }
    Ok(Json(
        state.store.list_tokens(&admin.org_id, Some(&node)).await?,
    ))
}

/// Revoke a team token.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/nodes/{node}/tokens/{id}", tag = "tokens",
    params(("org" = String, Path), ("node" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn revoke_team_token(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node, id)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    state
        .store
        .revoke_token(&admin.actor, &admin.org_id, Some(&node), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
