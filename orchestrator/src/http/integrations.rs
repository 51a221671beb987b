//! Integrations: where webhooks come from, and their secrets (write-only).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::{Actor, ApiJson, OrgAdmin, PlatformAdmin};
use utoipa::ToSchema;

use crate::sources::Source;
use crate::sources::verify::standard_key;
use crate::state::AppState;
use crate::store::{Integration, IntegrationChange, NewIntegration, SecretInfo};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/integrations", get(list).post(create))
        .route(
            "/api/v1/orgs/{org}/integrations/{id}",
            get(get_one).patch(update).delete(remove),
        )
        .route(
            "/api/v1/orgs/{org}/integrations/{id}/secrets",
            post(add_secret),
        )
        .route(
            "/api/v1/orgs/{org}/integrations/{id}/secrets/{secret_id}",
            delete(retire_secret),
        )
        .route(
            "/api/v1/platform/integrations",
            get(list_platform).post(create_platform),
        )
        .route(
            "/api/v1/platform/integrations/{id}/secrets",
            post(add_platform_secret),
        )
        .route(
            "/api/v1/platform/integrations/{id}/secrets/{secret_id}",
            delete(retire_platform_secret),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// pagerduty, incidentio, standard, alertmanager, grafana, sentry, linear, gitlab, jira,
    /// circleci, datadog, opsgenie, github or slack.
    pub source: String,
    pub name: String,
    /// Signing secrets (or shared tokens); at least one. Never returned.
    pub secrets: Vec<String>,
    /// The team events go to when routing finds none.
    pub default_team: Option<String>,
    /// Per-source settings, e.g. `token_header` (Alertmanager, Datadog, Opsgenie) or
    /// `timestamp_tolerance_seconds` (Linear).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIntegration {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub default_team: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    pub secret: String,
}

fn check_secret(source: Source, secret: &str, pointer: &str) -> Result<()> {
    if secret.trim().len() < 8 {
        return Err(Error::invalid(
            pointer,
            "a secret must be at least 8 characters",
        ));
    }
    if matches!(source, Source::Incidentio | Source::Standard) && standard_key(secret).is_none() {
        return Err(Error::invalid(
            pointer,
            format!(
                "Standard Webhooks secrets look like whsec_<base64> of at least {} bytes",
                crate::sources::verify::MIN_STANDARD_KEY
            ),
        ));
    }
    Ok(())
}

async fn create_in(
    state: &AppState,
    by: &Actor,
    org: Option<&str>,
    req: CreateIntegration,
) -> Result<Integration> {
    let source = Source::parse(&req.source).ok_or_else(|| {
        Error::invalid(
            "/source",
            format!(
                "unknown source; one of {}",
                Source::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    if org.is_none() && !source.has_platform_app() {
        return Err(Error::invalid(
            "/source",
            "platform-wide integrations are for the shared Slack app and GitHub App",
        ));
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(Error::invalid("/name", "must be 1 to 200 characters"));
    }
    if req.secrets.is_empty() {
        return Err(Error::invalid("/secrets", "at least one secret is needed"));
    }
    for (i, s) in req.secrets.iter().enumerate() {
        check_secret(source, s, &format!("/secrets/{i}"))?;
    }
    let settings = req
        .settings
        .unwrap_or_else(|| Value::Object(Default::default()));
    if !settings.is_object() {
        return Err(Error::invalid("/settings", "must be an object"));
    }
    state
        .store
        .create_integration(
            &state.keyring,
            by,
            &NewIntegration {
                org,
                source,
                name,
                default_team: req.default_team.as_deref(),
                settings: &settings,
                secrets: &req.secrets,
            },
        )
        .await
}

/// The integration if it belongs to `org` (404 otherwise, another tenant's included).
async fn owned(state: &AppState, org: Option<&str>, id: &str) -> Result<Integration> {
    match state.store.get_integration(id).await? {
        Some(i) if i.org_id.as_deref() == org => Ok(i),
        _ => Err(Error::not_found(format!("integration {id}"))),
    }
}

/// Create an integration; the answer has its webhook path. Secrets are encrypted at rest and never
/// returned.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/integrations", tag = "integrations", params(("org" = String, Path)),
    request_body = CreateIntegration, responses((status = 201, body = Integration), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiJson(req): ApiJson<CreateIntegration>,
) -> Result<(StatusCode, Json<Integration>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_in(&state, &admin.actor, Some(&admin.org_id), req).await?),
    ))
}

/// The org's integrations.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/integrations", tag = "integrations", params(("org" = String, Path)), responses((status = 200, body = Vec<Integration>)))]
pub async fn list(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<Json<Vec<Integration>>> {
    Ok(Json(
        state.store.list_integrations(Some(&admin.org_id)).await?,
    ))
}

/// One integration.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/integrations/{id}", tag = "integrations", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Integration), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Integration>> {
    Ok(Json(owned(&state, Some(&admin.org_id), &id).await?))
}

/// Change name, default team or settings.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/integrations/{id}", tag = "integrations", params(("org" = String, Path), ("id" = String, Path)),
    request_body = UpdateIntegration, responses((status = 200, body = Integration)))]
pub async fn update(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateIntegration>,
) -> Result<Json<Integration>> {
    owned(&state, Some(&admin.org_id), &id).await?;
    if req.settings.as_ref().is_some_and(|s| !s.is_object()) {
        return Err(Error::invalid("/settings", "must be an object"));
    }
    let dt = req.default_team.as_ref().map(|o| o.as_deref());
    let updated = state
        .store
        .update_integration(
            &admin.actor,
            &id,
            &IntegrationChange {
                name: req.name.as_deref(),
                default_team: dt,
                settings: req.settings.as_ref(),
            },
        )
        .await?;
    state.ingress.forget(&id);
    Ok(Json(updated))
}

/// Delete an integration: its URL answers 404 from now on; stored events stay.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/integrations/{id}", tag = "integrations", params(("org" = String, Path), ("id" = String, Path)), responses((status = 204)))]
pub async fn remove(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    owned(&state, Some(&admin.org_id), &id).await?;
    state.store.delete_integration(&admin.actor, &id).await?;
    state.ingress.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

async fn add_in(
    state: &AppState,
    by: &Actor,
    org: Option<&str>,
    id: &str,
    req: NewSecret,
) -> Result<SecretInfo> {
    let i = owned(state, org, id).await?;
    check_secret(i.source, &req.secret, "/secret")?;
    let info = state
        .store
        .add_secret(&state.keyring, by, id, &req.secret)
        .await?;
    state.ingress.forget(id);
    Ok(info)
}

async fn retire_in(
    state: &AppState,
    by: &Actor,
    org: Option<&str>,
    id: &str,
    secret_id: &str,
) -> Result<StatusCode> {
    owned(state, org, id).await?;
    state.store.retire_secret(by, id, secret_id).await?;
    state.ingress.forget(id);
    Ok(StatusCode::NO_CONTENT)
}

/// Add a secret (rotation: add the new one, both verify, then retire the old one).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/integrations/{id}/secrets", tag = "integrations", params(("org" = String, Path), ("id" = String, Path)),
    request_body = NewSecret, responses((status = 201, body = SecretInfo)))]
pub async fn add_secret(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<NewSecret>,
) -> Result<(StatusCode, Json<SecretInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(add_in(&state, &admin.actor, Some(&admin.org_id), &id, req).await?),
    ))
}

/// Retire a secret. The last active one cannot be retired (409).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/integrations/{id}/secrets/{secret_id}", tag = "integrations",
    params(("org" = String, Path), ("id" = String, Path), ("secret_id" = String, Path)), responses((status = 204), (status = 409, body = switchyard_common::problem::Problem)))]
pub async fn retire_secret(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id, secret_id)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    retire_in(&state, &admin.actor, Some(&admin.org_id), &id, &secret_id).await
}

/// Create the platform-wide Slack app or GitHub App integration (platform admin).
#[utoipa::path(post, path = "/api/v1/platform/integrations", tag = "integrations", request_body = CreateIntegration,
    responses((status = 201, body = Integration), (status = 409, body = switchyard_common::problem::Problem)))]
pub async fn create_platform(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(req): ApiJson<CreateIntegration>,
) -> Result<(StatusCode, Json<Integration>)> {
    Ok((
        StatusCode::CREATED,
        Json(create_in(&state, &admin.actor, None, req).await?),
    ))
}

/// The platform-wide integrations (platform admin).
#[utoipa::path(get, path = "/api/v1/platform/integrations", tag = "integrations", responses((status = 200, body = Vec<Integration>)))]
pub async fn list_platform(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> Result<Json<Vec<Integration>>> {
    Ok(Json(state.store.list_integrations(None).await?))
}

/// Add a secret to a platform-wide integration.
#[utoipa::path(post, path = "/api/v1/platform/integrations/{id}/secrets", tag = "integrations", params(("id" = String, Path)),
    request_body = NewSecret, responses((status = 201, body = SecretInfo)))]
pub async fn add_platform_secret(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<NewSecret>,
) -> Result<(StatusCode, Json<SecretInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(add_in(&state, &admin.actor, None, &id, req).await?),
    ))
}

/// Retire a secret of a platform-wide integration.
#[utoipa::path(delete, path = "/api/v1/platform/integrations/{id}/secrets/{secret_id}", tag = "integrations",
    params(("id" = String, Path), ("secret_id" = String, Path)), responses((status = 204)))]
pub async fn retire_platform_secret(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    Path((id, secret_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    retire_in(&state, &admin.actor, None, &id, &secret_id).await
}
