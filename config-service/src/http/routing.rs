//! The routing table and the internal lookup.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiJson, ApiQuery, OrgAdmin, Service};
use crate::domain::routing::{MAX_IDENTIFIERS, RouteKind, normalise_route_value};
use crate::error::{Error, Result};
use crate::state::{AppState, LookupLabels};
use crate::store::{Lookup, Route, RouteMatch};
use switchyard_api::routing::{LookupRequest, OneOrMany};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/routing", get(list_routes))
        .route("/api/v1/internal/routing/lookup", post(lookup))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoutesQuery {
    pub kind: Option<String>,
    pub value: Option<String>,
}

/// Which node owns which identifier.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/routing", tag = "routing", params(("org" = String, Path), RoutesQuery),
    responses((status = 200, body = Vec<Route>)))]
pub async fn list_routes(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiQuery(q): ApiQuery<RoutesQuery>,
) -> Result<Json<Vec<Route>>> {
    let value = match (&q.kind, &q.value) {
        (Some(k), Some(v)) => {
            let kind = RouteKind::parse(k)
                .ok_or_else(|| Error::invalid("/kind", format!("unknown kind {k}")))?;
            Some(normalise_route_value(kind, v).map_err(|e| Error::invalid("/value", e))?)
        }
        (_, v) => v.clone(),
    };
    Ok(Json(
        state
            .store
            .list_routes(&admin.org_id, q.kind.as_deref(), value.as_deref())
            .await?,
    ))
}

/// Map an event's identifiers to the owning team (service JWT only). Most specific identifier
/// first; without `org_id`, only an org the platform admin assigned the event's Slack workspace or
/// GitHub account to, and never when the identifiers match in two orgs (409). See the routing
/// section of docs/architecture.md.
#[utoipa::path(post, path = "/api/v1/internal/routing/lookup", tag = "internal", request_body = LookupRequest,
    responses((status = 200, body = RouteMatch), (status = 404, description = "No team owns the identifiers; `detail` says why", body = switchyard_common::problem::Problem),
        (status = 409, description = "The identifiers match in several orgs: routed to none", body = switchyard_common::problem::Problem),
        (status = 422, description = "An unknown kind, an invalid value or more than 64 identifiers", body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn lookup(
    State(state): State<AppState>,
    service: Service,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<Json<RouteMatch>> {
    service.require(&["orchestrator"])?;
    let mut ids = Vec::new();
    for (k, v) in &req.identifiers {
        let at = format!("/identifiers/{k}");
        let kind =
            RouteKind::parse(k).ok_or_else(|| Error::invalid(&at, "unknown identifier kind"))?;
        let values = match v {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        };
        for s in values {
            ids.push((
                kind,
                normalise_route_value(kind, &s).map_err(|e| Error::invalid(&at, e))?,
            ));
        }
    }
    if ids.len() > MAX_IDENTIFIERS {
        return Err(Error::invalid(
            "/identifiers",
            format!("send at most {MAX_IDENTIFIERS} identifiers"),
        ));
    }
    let found = state
        .store
        .lookup_route(req.org_id.as_deref(), &ids)
        .await?;
    let outcome = match &found {
        Lookup::Matched(_) => "matched",
        Lookup::Unrouted(_) => "unrouted",
        Lookup::Ambiguous(_) => "ambiguous",
    };
    state.lookups.get_or_create(&LookupLabels { outcome }).inc();
    match found {
        Lookup::Matched(m) => Ok(Json(m)),
        Lookup::Unrouted(why) => Err(Error::NotFoundBecause(why)),
        Lookup::Ambiguous(why) => {
            tracing::warn!(detail = %why, "ambiguous routing lookup refused");
            Err(Error::conflict("ambiguous-route", why))
        }
    }
}
