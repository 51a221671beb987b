//! The audit log.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchyard_common::time::parse_rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, OrgAdmin, PlatformAdmin, Service};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{AuditEntry, AuditQuery, AuditVerification, PLATFORM_CHAIN, Page, RelayedEntry};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/audit", get(list))
        .route("/api/v1/orgs/{org}/audit/verify", get(verify))
        .route("/api/v1/platform/audit", get(list_platform))
        .route("/api/v1/platform/audit/verify", get(verify_platform))
        .route("/api/v1/internal/audit", post(append))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// e.g. `platform-admin` or `org-admin:<token id>`.
    pub actor: Option<String>,
    /// e.g. `config.layer_updated`.
    pub action: Option<String>,
    /// e.g. `node/checkout`.
    pub target: Option<String>,
    /// RFC 3339, inclusive.
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    pub until: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 500, default 50.
    #[serde(default, deserialize_with = "switchyard_common::http::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Audit entries, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit", tag = "audit", params(("org" = String, Path), AuditParams),
    responses((status = 200, body = Page<AuditEntry>), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<Page<AuditEntry>>> {
    Ok(Json(
        state.store.list_audit(&admin.org_id, &query(p)?).await?,
    ))
}

fn query(p: AuditParams) -> Result<AuditQuery> {
    let time = |v: &Option<String>, at: &str| {
        v.as_deref()
            .map(|s| parse_rfc3339(s).map_err(|e| Error::invalid(at, e)))
            .transpose()
    };
    let q = AuditQuery {
        actor: p.actor,
        action: p.action,
        target: p.target,
        since: time(&p.since, "/since")?,
        until: time(&p.until, "/until")?,
        cursor: p
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| Error::invalid("/cursor", "not a cursor from next_cursor"))
            })
            .transpose()?,
        limit: p.limit,
    };
    Ok(q)
}

/// The platform's audit chain (actions on the shared integrations and other platform-wide
/// resources), newest first. Platform admin only.
#[utoipa::path(get, path = "/api/v1/platform/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = switchyard_common::problem::Problem)))]
pub async fn list_platform(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<Page<AuditEntry>>> {
    Ok(Json(
        state.store.list_audit(PLATFORM_CHAIN, &query(p)?).await?,
    ))
}

/// Re-compute the platform's audit hash chain.
#[utoipa::path(get, path = "/api/v1/platform/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerification), (status = 403, body = switchyard_common::problem::Problem)))]
pub async fn verify_platform(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> Result<Json<AuditVerification>> {
    Ok(Json(state.store.verify_audit(PLATFORM_CHAIN).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayedEntries {
    pub entries: Vec<RelayedEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Appended {
    /// Entries new to the log (a repeated `source_id` is not appended again).
    pub appended: usize,
}

/// Append audit entries relayed from the orchestrator's outbox (service JWT of the orchestrator).
#[utoipa::path(post, path = "/api/v1/internal/audit", tag = "internal", request_body = RelayedEntries,
    responses((status = 200, body = Appended), (status = 403, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn append(
    State(state): State<AppState>,
    service: Service,
    ApiJson(req): ApiJson<RelayedEntries>,
) -> Result<Json<Appended>> {
    service.require(&["orchestrator"])?;
    if req.entries.len() > 500 {
        return Err(Error::invalid("/entries", "at most 500 entries at once"));
    }
    Ok(Json(Appended {
        appended: state.store.append_relayed(&req.entries).await?,
    }))
}

/// Re-compute the org's audit hash chain and report the first entry that was modified or removed.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit/verify", tag = "audit", params(("org" = String, Path)),
    responses((status = 200, body = AuditVerification)))]
pub async fn verify(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<Json<AuditVerification>> {
    Ok(Json(state.store.verify_audit(&admin.org_id).await?))
}
