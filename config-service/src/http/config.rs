//! Layered configuration: effective config, a node's own layer, history and rollback.

use axum::extract::{Path, State};
use axum::http::header::{ETAG, IF_MATCH, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Caller, NodeReader, OrgAdmin};
use crate::domain::config::{redact_secrets, validate_layer};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{
    ChangeRequest, EffectiveConfig, HistoryEntry, LayerVersion, LayerWrite, layer_etag,
    parse_layer_etag,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/nodes/{node}/config", get(effective))
        .route(
            "/api/v1/orgs/{org}/nodes/{node}/config/layer",
            get(get_layer).put(put_layer),
        )
        .route(
            "/api/v1/orgs/{org}/nodes/{node}/config/history",
            get(history),
        )
        .route(
            "/api/v1/orgs/{org}/nodes/{node}/config/rollback",
            post(rollback),
        )
        .route("/api/v1/config/me", get(my_config))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    /// Also return, for every leaf, the node whose layer set it.
    #[serde(default)]
    pub explain: bool,
}

fn with_etag<T: serde::Serialize>(status: StatusCode, etag: &str, body: T) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        resp.headers_mut().insert(ETAG, v);
    }
    resp
}

/// The node's effective config: the deep merge of every layer from the org root down.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/nodes/{node}/config", tag = "config",
    params(("org" = String, Path), ("node" = String, Path), ExplainQuery),
    responses((status = 200, body = EffectiveConfig, headers(("ETag" = String))), (status = 304, description = "Unchanged since `If-None-Match`"), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn effective(
    State(state): State<AppState>,
    reader: NodeReader,
    ApiQuery(q): ApiQuery<ExplainQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let mut eff = state
        .store
        .effective_config(&reader.org_id, &reader.node_id, q.explain)
        .await?;
    if matches!(reader.caller, Caller::Team { .. }) {
        redact_secrets(&mut eff.config);
    }
    if headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == eff.etag))
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&eff.etag) {
            resp.headers_mut().insert(ETAG, v);
        }
        return Ok(resp);
    }
    let etag = eff.etag.clone();
    Ok(with_etag(StatusCode::OK, &etag, eff))
}

/// A team token's own effective config, with every secret under `integrations` redacted.
#[utoipa::path(get, path = "/api/v1/config/me", tag = "config",
    responses((status = 200, body = EffectiveConfig, headers(("ETag" = String))), (status = 403, description = "Not a team token", body = switchyard_common::problem::Problem)))]
pub async fn my_config(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    let Caller::Team {
        org_id, node_id, ..
    } = &caller
    else {
        return Err(Error::Forbidden(
            "only team tokens have an own config; admins read /api/v1/orgs/{org}/nodes/{node}/config".into(),
        ));
    };
    let mut eff = state.store.effective_config(org_id, node_id, false).await?;
    redact_secrets(&mut eff.config);
    let etag = eff.etag.clone();
    Ok(with_etag(StatusCode::OK, &etag, eff))
}

/// The node's own layer, with its version as the `ETag` to send back in `If-Match`.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/nodes/{node}/config/layer", tag = "config",
    params(("org" = String, Path), ("node" = String, Path)),
    responses((status = 200, body = LayerVersion, headers(("ETag" = String)))))]
pub async fn get_layer(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node)): Path<(String, String)>,
) -> Result<Response> {
    let layer = state.store.get_layer(&admin.org_id, &node).await?;
    Ok(with_etag(StatusCode::OK, &layer_etag(layer.version), layer))
}

/// The version `If-Match` names; 428 without one, 412 when it is not a layer ETag.
fn required_if_match(headers: &HeaderMap) -> Result<i64> {
    let value = headers.get(IF_MATCH).ok_or_else(|| {
        Error::PreconditionRequired(
            "send If-Match with the ETag of the layer you read (GET .../config/layer); \"v0\" for a node without a layer".into(),
        )
    })?;
    value
        .to_str()
        .ok()
        .and_then(parse_layer_etag)
        .ok_or_else(|| {
            Error::PreconditionFailed(
                "If-Match does not name a layer version such as \"v3\"".into(),
            )
        })
}

fn optional_if_match(headers: &HeaderMap) -> Result<Option<i64>> {
    if headers.contains_key(IF_MATCH) {
        required_if_match(headers).map(Some)
    } else {
        Ok(None)
    }
}

fn write_response(w: LayerWrite) -> Response {
    match w {
        LayerWrite::Applied(v) => with_etag(StatusCode::OK, &layer_etag(v.version), v),
        LayerWrite::Pending(c) => (StatusCode::ACCEPTED, Json(c)).into_response(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteQuery {
    /// Why: kept in the history and the audit log.
    pub message: Option<String>,
}

/// Replace the node's own layer. The body is the layer. Needs `If-Match`; a write touching a
/// protected path answers 202 with a pending change instead.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/nodes/{node}/config/layer", tag = "config",
    params(("org" = String, Path), ("node" = String, Path), ("If-Match" = String, Header, description = "The layer ETag you read"), WriteQuery),
    request_body(content = Object, description = "The layer: sections agent, routing, pipelines, quotas, notifications, integrations"),
    responses((status = 200, body = LayerVersion, headers(("ETag" = String))), (status = 202, description = "Pending approval", body = ChangeRequest),
        (status = 409, description = "A routing identifier is owned by another node", body = switchyard_common::problem::Problem),
        (status = 412, body = switchyard_common::problem::Problem), (status = 422, body = switchyard_common::problem::Problem), (status = 428, body = switchyard_common::problem::Problem)))]
pub async fn put_layer(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<WriteQuery>,
    headers: HeaderMap,
    ApiJson(layer): ApiJson<Value>,
) -> Result<Response> {
    // The body first: a layer that could never be written is 422 whatever the precondition.
    validate_layer(&layer).map_err(Error::Validation)?;
    let expected = required_if_match(&headers)?;
    let w = state
        .store
        .put_layer(
            &admin.actor,
            &admin.org_id,
            &node,
            Some(expected),
            layer,
            q.message,
        )
        .await?;
    Ok(write_response(w))
}

/// Versions of the node's layer, newest first, each with what it changed.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/nodes/{node}/config/history", tag = "config",
    params(("org" = String, Path), ("node" = String, Path)), responses((status = 200, body = Vec<HistoryEntry>)))]
pub async fn history(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node)): Path<(String, String)>,
) -> Result<Json<Vec<HistoryEntry>>> {
    Ok(Json(
        state.store.config_history(&admin.org_id, &node).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The version to restore; it becomes a new version.
    pub version: i64,
}

/// Restore an earlier version as a new one. `If-Match` is honoured when sent.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/nodes/{node}/config/rollback", tag = "config",
    params(("org" = String, Path), ("node" = String, Path)), request_body = Rollback,
    responses((status = 200, body = LayerVersion), (status = 202, body = ChangeRequest), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn rollback(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<Rollback>,
) -> Result<Response> {
    let expected = optional_if_match(&headers)?;
    let w = state
        .store
        .rollback_layer(&admin.actor, &admin.org_id, &node, req.version, expected)
        .await?;
    Ok(write_response(w))
}
