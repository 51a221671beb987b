//! Who am I.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Caller;
use crate::error::Result;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/me", get(me))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `platform_admin`, `org_admin` or `team`.
    pub kind: &'static str,
    /// How the caller appears in the audit log.
    pub actor: String,
    /// The person or system the credential was issued to.
    pub subject: String,
    pub org_id: Option<String>,
    pub node_id: Option<String>,
    pub token_id: Option<String>,
}

/// Describe the caller.
#[utoipa::path(get, path = "/api/v1/me", tag = "me", responses((status = 200, body = Me), (status = 401, body = switchyard_common::problem::Problem)))]
pub async fn me(caller: Caller) -> Result<Json<Me>> {
    let actor = caller.actor(None).audit_name();
    let subject = caller.subject();
    Ok(Json(match caller {
        Caller::PlatformAdmin => Me {
            kind: "platform_admin",
            actor,
            subject,
            org_id: None,
            node_id: None,
            token_id: None,
        },
        Caller::OrgAdmin {
            org_id, token_id, ..
        } => Me {
            kind: "org_admin",
            actor,
            subject,
            org_id: Some(org_id),
            node_id: None,
            token_id: Some(token_id),
        },
        Caller::Team {
            org_id,
            node_id,
            token_id,
            ..
        } => Me {
            kind: "team",
            actor,
            subject,
            org_id: Some(org_id),
            node_id: Some(node_id),
            token_id: Some(token_id),
        },
    }))
}
