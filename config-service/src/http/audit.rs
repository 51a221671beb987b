//! The audit log.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use switchyard_common::time::parse_rfc3339;
use utoipa::IntoParams;

use super::extract::{ApiQuery, OrgAdmin};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{AuditEntry, AuditQuery, AuditVerification, Page};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/audit", get(list))
        .route("/api/v1/orgs/{org}/audit/verify", get(verify))
}

#[derive(Debug, Deserialize, IntoParams)]
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
    Ok(Json(state.store.list_audit(&admin.org_id, &q).await?))
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
