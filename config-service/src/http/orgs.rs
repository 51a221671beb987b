//! Organisations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use switchyard_common::ids::Slug;
use utoipa::ToSchema;

use super::extract::{ApiJson, Caller, PlatformAdmin};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::Org;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs", get(list_orgs).post(create_org))
        .route("/api/v1/orgs/{org}", get(get_org))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Slug: lowercase letters, digits, `-`, `_`; at most 63 characters.
    pub id: String,
    pub name: String,
}

/// Non-empty, at most 200 characters.
pub fn check_name(name: &str, pointer: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid(pointer, "must be 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

pub fn check_slug(id: &str, pointer: &str) -> Result<String> {
    Slug::parse(id)
        .map(Slug::into_string)
        .map_err(|e| Error::invalid(pointer, e))
}

/// Create an organisation (platform admin).
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = Org), (status = 409, description = "The id is taken", body = switchyard_common::problem::Problem),
              (status = 422, description = "Invalid id or name", body = switchyard_common::problem::Problem)))]
pub async fn create_org(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(req): ApiJson<CreateOrg>,
) -> Result<(StatusCode, Json<Org>)> {
    let id = check_slug(&req.id, "/id")?;
    let name = check_name(&req.name, "/name")?;
    let org = state.store.create_org(&admin.actor, &id, &name).await?;
    Ok((StatusCode::CREATED, Json(org)))
}

/// List organisations: all of them for the platform admin, its own for an org admin.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs", responses((status = 200, body = Vec<Org>)))]
pub async fn list_orgs(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<Org>>> {
    let orgs = match &caller {
        Caller::PlatformAdmin => state.store.list_orgs(None).await?,
        Caller::OrgAdmin { org_id, .. } => state.store.list_orgs(Some(org_id)).await?,
        Caller::Team { .. } => {
            return Err(Error::Forbidden(
                "team tokens cannot list organisations; use GET /api/v1/me".into(),
            ));
        }
    };
    Ok(Json(orgs))
}

/// Get one organisation.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = Org), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_org(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Org>> {
    caller.authorize_org_admin(&org)?;
    let org = state
        .store
        .get_org(&org)
        .await?
        .ok_or_else(|| Error::not_found(format!("organisation {org}")))?;
    Ok(Json(org))
}
