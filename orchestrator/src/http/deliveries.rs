//! A subscription's deliveries: the attempts log (status, latency, response code and the first
//! 1 KB of each answer), `resend` of one delivery and `recover` of every failed one since a time.
//! Who may see a subscription may do these; anyone else gets 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchyard_common::error::{Error, Result};
use switchyard_common::http::{ApiQuery, Caller};
use utoipa::{IntoParams, ToSchema};

use super::subscriptions::visible;
use crate::state::AppState;
use crate::store::Attempt;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/orgs/{org}/subscriptions/{id}/attempts",
            get(attempts),
        )
        .route(
            "/api/v1/orgs/{org}/subscriptions/{id}/attempts/{attempt}/resend",
            post(resend),
        )
        .route(
            "/api/v1/orgs/{org}/subscriptions/{id}/recover",
            post(recover),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptsParams {
    /// `succeeded` or `failed`.
    pub status: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 500, default 50.
    #[serde(default, deserialize_with = "switchyard_common::http::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A page of attempts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptPage {
    pub items: Vec<Attempt>,
    pub next_cursor: Option<String>,
}

/// The subscription's delivery attempts, newest first: each with its status, latency, the
/// receiver's response code and the first 1 KB of its answer.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/subscriptions/{id}/attempts", tag = "subscriptions",
    params(("org" = String, Path), ("id" = String, Path), AttemptsParams),
    responses((status = 200, body = AttemptPage), (status = 404, body = switchyard_common::problem::Problem),
        (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    ApiQuery(p): ApiQuery<AttemptsParams>,
) -> Result<Json<AttemptPage>> {
    visible(&state, &caller, &org, &id).await?;
    if let Some(st) = p.status.as_deref()
        && !matches!(st, "succeeded" | "failed")
    {
        return Err(Error::invalid("/status", "must be succeeded or failed"));
    }
    let limit = i64::from(p.limit.unwrap_or(50).clamp(1, 500));
    let (items, next_cursor) = state
        .store
        .list_attempts(&id, p.status.as_deref(), p.cursor.as_deref(), limit)
        .await?;
    Ok(Json(AttemptPage { items, next_cursor }))
}

/// A delivery queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resent {
    pub delivery_id: String,
}

/// Send the delivery of this attempt again, now (a finished one on a fresh schedule). The
/// receiver sees the same `webhook-id`.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/subscriptions/{id}/attempts/{attempt}/resend", tag = "subscriptions",
    params(("org" = String, Path), ("id" = String, Path), ("attempt" = String, Path)),
    responses((status = 202, body = Resent), (status = 404, body = switchyard_common::problem::Problem),
        (status = 409, body = switchyard_common::problem::Problem)))]
pub async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id, attempt)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<Resent>)> {
    visible(&state, &caller, &org, &id).await?;
    let delivery_id = state
        .store
        .resend(&caller.actor(None), &org, &id, &attempt)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Resent { delivery_id })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    /// RFC 3339: deliveries of events since then that failed are sent again.
    pub since: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recovered {
    /// Deliveries queued again.
    pub recovered: u64,
}

/// Send every delivery that failed (its schedule ran out) for events since `since` again, each on
/// a fresh schedule.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/subscriptions/{id}/recover", tag = "subscriptions",
    params(("org" = String, Path), ("id" = String, Path)), request_body = Recover,
    responses((status = 202, body = Recovered), (status = 404, body = switchyard_common::problem::Problem),
        (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn recover(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    switchyard_common::http::ApiJson(req): switchyard_common::http::ApiJson<Recover>,
) -> Result<(StatusCode, Json<Recovered>)> {
    visible(&state, &caller, &org, &id).await?;
    let since = switchyard_common::time::parse_rfc3339(&req.since)
        .map_err(|e| Error::invalid("/since", e))?;
    let recovered = state
        .store
        .recover(&caller.actor(None), &org, &id, since)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Recovered { recovered })))
}
