//! The org secrets store: write-only values that config refers to as `{"secret": "<name>"}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use switchyard_api::config::RevealedSecret;
use switchyard_common::ids::Slug;
use utoipa::ToSchema;

use super::extract::{ApiJson, OrgAdmin, Service};
use crate::domain::secrets::MAX_SECRET_LEN;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::SecretInfo;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/secrets", get(list_secrets))
        .route(
            "/api/v1/orgs/{org}/secrets/{name}",
            put(put_secret).delete(delete_secret),
        )
        .route(
            "/api/v1/internal/orgs/{org}/secrets/{name}",
            get(secret_value),
        )
}

/// Services a secret may be shared with: the agent-runner (LLM keys, tool tokens, reply tokens)
/// and the orchestrator (the incoming-webhook URL of a `slack` subscription).
const READERS: &[&str] = &["agent-runner", "orchestrator"];

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The credential. Never returned by any endpoint.
    pub value: String,
    /// The services that may read it (default `["agent-runner"]`); a `slack` subscription's
    /// webhook URL is shared with `orchestrator`.
    #[serde(default)]
    pub readers: Option<Vec<String>>,
}

/// The readers asked for (the agent-runner when none), each one of [`READERS`], without repeats.
fn check_readers(asked: Option<Vec<String>>) -> Result<Vec<String>> {
    let mut readers = asked.unwrap_or_else(|| vec!["agent-runner".to_owned()]);
    if readers.is_empty() {
        return Err(Error::invalid(
            "/readers",
            "name at least one service, or leave it out for the agent-runner",
        ));
    }
    for (i, r) in readers.iter().enumerate() {
        if !READERS.contains(&r.as_str()) {
            return Err(Error::invalid(
                &format!("/readers/{i}"),
                format!(
                    "{r:?} is not a service that reads secrets: use {}",
                    READERS.join(" or ")
                ),
            ));
        }
    }
    readers.sort();
    readers.dedup();
    Ok(readers)
}

fn check_secret_name(name: &str) -> Result<()> {
    Slug::parse(name).map(|_| ()).map_err(|e| {
        Error::invalid(
            "/name",
            format!("a secret name is a slug (lowercase letters, digits, '-', '_'): {e}"),
        )
    })
}

/// Set a secret (org admin). The value is encrypted at rest and never shown again: answers its
/// name and fingerprint, 201 when new, 200 when replaced.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/secrets/{name}", tag = "secrets",
    params(("org" = String, Path), ("name" = String, Path)), request_body = SecretValue,
    responses((status = 201, body = SecretInfo), (status = 200, body = SecretInfo), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn put_secret(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<SecretValue>,
) -> Result<(StatusCode, Json<SecretInfo>)> {
    check_secret_name(&name)?;
    if req.value.is_empty() || req.value.len() > MAX_SECRET_LEN {
        return Err(Error::invalid(
            "/value",
            format!("a secret is 1 to {MAX_SECRET_LEN} bytes"),
        ));
    }
    let readers = check_readers(req.readers)?;
    let (info, created) = state
        .store
        .put_secret(
            &admin.actor,
            &state.keyring,
            &admin.org_id,
            &name,
            &req.value,
            &readers,
        )
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(info)))
}

/// The org's secrets: names, fingerprints and times, never values.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/secrets", tag = "secrets", params(("org" = String, Path)),
    responses((status = 200, body = Vec<SecretInfo>)))]
pub async fn list_secrets(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<Json<Vec<SecretInfo>>> {
    Ok(Json(state.store.list_secrets(&admin.org_id).await?))
}

/// Delete a secret (org admin).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/secrets/{name}", tag = "secrets",
    params(("org" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn delete_secret(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    state
        .store
        .delete_secret(&admin.actor, &admin.org_id, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A secret's value, for the services it is shared with (service JWT of a reader named when it
/// was set: 403 for any other service).
#[utoipa::path(get, path = "/api/v1/internal/orgs/{org}/secrets/{name}", tag = "internal",
    params(("org" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = RevealedSecret), (status = 403, body = switchyard_common::problem::Problem), (status = 404, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn secret_value(
    State(state): State<AppState>,
    service: Service,
    Path((org, name)): Path<(String, String)>,
) -> Result<Json<RevealedSecret>> {
    service.require(READERS)?;
    let value = state
        .store
        .secret_value(&state.keyring, &service.name, &org, &name)
        .await?;
    tracing::info!(org = %org, secret = %name, service = %service.name, "secret read");
    Ok(Json(RevealedSecret { name, value }))
}
