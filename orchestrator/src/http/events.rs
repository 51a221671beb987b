//! The events API: what arrived, what happened to it, and replay.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchyard_common::error::{Error, Result};
use switchyard_common::http::{ApiJson, ApiQuery, OrgAdmin, PlatformAdmin};
use switchyard_common::time::{now_ms, parse_rfc3339};
use utoipa::{IntoParams, ToSchema};

use crate::state::AppState;
use crate::store::{Event, EventDetail, EventQuery, Status};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/events", get(list))
        .route("/api/v1/orgs/{org}/events/replay", post(bulk_replay))
        .route("/api/v1/orgs/{org}/events/{id}", get(get_one))
        .route("/api/v1/orgs/{org}/events/{id}/replay", post(replay_one))
        .route("/api/v1/events", get(list_all))
        .route("/api/v1/events/replay", post(bulk_replay_all))
        .route("/api/v1/events/purge", post(purge))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    pub team: Option<String>,
    pub source: Option<String>,
    /// received, dispatching, throttled, retrying, dispatched, unrouted, dead_lettered.
    pub status: Option<String>,
    /// RFC 3339: events received at or after.
    pub since: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 500, default 50.
    #[serde(default, deserialize_with = "switchyard_common::http::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<Event>,
    pub next_cursor: Option<String>,
}

/// A status filter: one of the statuses, or a 422 naming them.
fn status(s: Option<&str>) -> Result<Option<Status>> {
    s.map(|s| {
        Status::parse(s).ok_or_else(|| {
            let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            Error::invalid("/status", format!("one of {}", all.join(", ")))
        })
    })
    .transpose()
}

fn query(org: Option<String>, p: EventsParams) -> Result<EventQuery> {
    let status = status(p.status.as_deref())?;
    let since = p
        .since
        .as_deref()
        .map(|s| parse_rfc3339(s).map_err(|e| Error::invalid("/since", e)))
        .transpose()?;
    Ok(EventQuery {
        org,
        team: p.team,
        source: p.source,
        status,
        since,
        cursor: p.cursor,
        limit: p.limit,
    })
}

/// The org's events, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/events", tag = "events", params(("org" = String, Path), EventsParams), responses((status = 200, body = EventPage)))]
pub async fn list(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiQuery(p): ApiQuery<EventsParams>,
) -> Result<Json<EventPage>> {
    let (items, next_cursor) = state
        .store
        .list_events(&query(Some(admin.org_id), p)?)
        .await?;
    Ok(Json(EventPage { items, next_cursor }))
}

/// Every org's events, and those of platform-wide integrations not routed to an org yet.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsParams), responses((status = 200, body = EventPage)))]
pub async fn list_all(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(p): ApiQuery<EventsParams>,
) -> Result<Json<EventPage>> {
    let (items, next_cursor) = state.store.list_events(&query(None, p)?).await?;
    Ok(Json(EventPage { items, next_cursor }))
}

/// One event with its payload and whole timeline.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/events/{id}", tag = "events", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = EventDetail), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<EventDetail>> {
    Ok(Json(state.store.get_event(Some(&admin.org_id), &id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub replayed: u64,
}

/// Dispatch a finished (dispatched, unrouted or dead-lettered) event again.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/events/{id}/replay", tag = "events", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Replayed), (status = 404, body = switchyard_common::problem::Problem), (status = 409, body = switchyard_common::problem::Problem)))]
pub async fn replay_one(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Replayed>> {
    let e = state.store.get_event(Some(&admin.org_id), &id).await?;
    let q = EventQuery {
        org: Some(admin.org_id),
        ..Default::default()
    };
    let n = state.store.replay(&admin.actor, &q, Some(&id)).await?;
    if n == 0 {
        return Err(Error::conflict(
            "event-pending",
            format!(
                "event {id} is {} and will be dispatched anyway",
                e.event.status
            ),
        ));
    }
    Ok(Json(Replayed { replayed: n }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    /// dispatched, unrouted or dead_lettered.
    pub status: Option<String>,
    pub source: Option<String>,
    pub team: Option<String>,
}

/// Replay every finished event matching the filter, e.g. all `unrouted` ones after fixing a route.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/events/replay", tag = "events", params(("org" = String, Path)), request_body = ReplayFilter,
    responses((status = 200, body = Replayed)))]
pub async fn bulk_replay(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiJson(f): ApiJson<ReplayFilter>,
) -> Result<Json<Replayed>> {
    let q = EventQuery {
        org: Some(admin.org_id),
        status: status(f.status.as_deref())?,
        source: f.source,
        team: f.team,
        ..Default::default()
    };
    Ok(Json(Replayed {
        replayed: state.store.replay(&admin.actor, &q, None).await?,
    }))
}

/// Replay across every org (platform admin), e.g. unrouted events of the shared Slack app.
#[utoipa::path(post, path = "/api/v1/events/replay", tag = "events", request_body = ReplayFilter, responses((status = 200, body = Replayed)))]
pub async fn bulk_replay_all(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(f): ApiJson<ReplayFilter>,
) -> Result<Json<Replayed>> {
    let q = EventQuery {
        status: status(f.status.as_deref())?,
        source: f.source,
        team: f.team,
        ..Default::default()
    };
    Ok(Json(Replayed {
        replayed: state.store.replay(&admin.actor, &q, None).await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    /// Delete finished events older than this many days (1 to 36,500).
    #[schema(minimum = 1, maximum = 36500)]
    pub older_than_days: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Purged {
    pub purged: u64,
}

/// Delete finished events older than the given age (platform admin). Runs daily with the
/// configured retention too.
#[utoipa::path(post, path = "/api/v1/events/purge", tag = "events", request_body = Purge, responses((status = 200, body = Purged)))]
pub async fn purge(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(p): ApiJson<Purge>,
) -> Result<Json<Purged>> {
    if !(1..=36_500).contains(&p.older_than_days) {
        return Err(Error::invalid(
            "/older_than_days",
            "must be from 1 to 36500 (days)",
        ));
    }
    let before = now_ms() - i64::from(p.older_than_days) * 86_400_000;
    Ok(Json(Purged {
        purged: state.store.purge(&admin.actor, before).await?,
    }))
}
