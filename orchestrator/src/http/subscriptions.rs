//! Outbound subscriptions (ADR 0011): where Switchyard's own events are delivered, signed with a
//! `whsec_` secret shown once. Org admins manage the org's; a team token manages only
//! subscriptions limited to its own team. Another tenant's subscription answers 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Caller;
use switchyard_common::problem::FieldError;
use utoipa::ToSchema;

use crate::state::AppState;
use crate::store::{Subscription, SubscriptionFields};

/// Every event type Switchyard publishes.
pub const EVENT_TYPES: &[&str] = &[
    "event.received",
    "event.dispatched",
    "event.dead_lettered",
    "event.unrouted",
    "run.started",
    "run.succeeded",
    "run.failed",
    "run.cancelled",
    "incident.opened",
    "incident.updated",
    "incident.resolved",
    "provisioning.succeeded",
    "provisioning.rolled_back",
    "provisioning.failed",
    "integration.secret_rotated",
    "subscription.disabled",
];

/// How long a rotated-out secret keeps signing, unless the rotation says otherwise.
const DEFAULT_OVERLAP_SECONDS: i64 = 24 * 3600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/subscriptions", get(list).post(create))
        .route(
            "/api/v1/orgs/{org}/subscriptions/{id}",
            get(get_one).patch(update).delete(remove),
        )
        .route(
            "/api/v1/orgs/{org}/subscriptions/{id}/rotate-secret",
            post(rotate_secret),
        )
}

/// How a subscription delivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The event envelope, signed (Standard Webhooks), POSTed to `url`.
    #[default]
    Webhook,
    /// A readable message per event, POSTed to the Slack incoming webhook held by the org
    /// secret `url_secret`.
    Slack,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Slack => "slack",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// `webhook` (the default) or `slack`.
    #[serde(default)]
    pub kind: Kind,
    /// `webhook`: where deliveries are POSTed: `https`, resolving to a public address (unless the
    /// platform allows private targets).
    pub url: Option<String>,
    /// `slack`: the org secret holding the incoming-webhook URL, shared with the orchestrator
    /// (`PUT .../secrets/{name}` with `"readers": ["orchestrator"]`).
    pub url_secret: Option<String>,
    /// Event types or patterns: `run.succeeded`, `run.*`, `*`.
    pub event_types: Vec<String>,
    /// Only these teams' events (a team token: its own team, the default). Absent: every team.
    pub teams: Option<Vec<String>>,
    pub description: Option<String>,
    /// Deliver one at a time, in event time order.
    #[serde(default)]
    pub ordered: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    /// A `webhook` subscription's target.
    pub url: Option<String>,
    /// A `slack` subscription's org secret.
    pub url_secret: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `null`: every team (org admins only).
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub teams: Option<Option<Vec<String>>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `false` stops deliveries; `true` resumes them (and clears why Switchyard disabled it).
    pub enabled: Option<bool>,
    pub ordered: Option<bool>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the secrets signing until now keep signing beside the new one (default 86400;
    /// 0: they stop at once).
    pub overlap_seconds: Option<i64>,
}

/// A subscription with its secret, which is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_...`: verify deliveries with it (Standard Webhooks). Never shown again. Absent for
    /// `slack` subscriptions, which are not signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Who may touch the org's subscriptions: its admins (all of them), or a team token (those
/// limited to exactly its team). Another org answers 404.
pub(super) enum Scope {
    Org,
    Team(String),
}

fn scope(caller: &Caller, org: &str) -> Result<Scope> {
    Ok(match super::team_scope(caller, org)? {
        Some(team) => Scope::Team(team),
        None => Scope::Org,
    })
}

impl Scope {
    fn sees(&self, s: &Subscription) -> bool {
        match self {
            Scope::Org => true,
            Scope::Team(t) => s.teams.as_deref() == Some(std::slice::from_ref(t)),
        }
    }

    /// The teams a subscription may name: a team token only its own (and that by default).
    fn teams(&self, asked: Option<Vec<String>>) -> Result<Option<Vec<String>>> {
        match (self, asked) {
            (Scope::Org, t) => Ok(t),
            (Scope::Team(t), None) => Ok(Some(vec![t.clone()])),
            (Scope::Team(t), Some(asked)) if asked == std::slice::from_ref(t) => Ok(Some(asked)),
            (Scope::Team(t), Some(_)) => Err(Error::Forbidden(format!(
                "a team token subscribes to its own team's events only: teams must be [\"{t}\"]"
            ))),
        }
    }
}

/// Whether `p` is a type, `prefix.*` of a published prefix, or `*`.
fn pattern_known(p: &str) -> bool {
    p == "*"
        || EVENT_TYPES.contains(&p)
        || p.strip_suffix(".*").is_some_and(|prefix| {
            EVENT_TYPES
                .iter()
                .any(|t| t.split_once('.').is_some_and(|(head, _)| head == prefix))
        })
}

/// Checks the fields of a subscription of `kind`; `creating` requires its target.
async fn check_fields(
    state: &AppState,
    org: &str,
    kind: Kind,
    creating: bool,
    f: &SubscriptionFields,
) -> Result<()> {
    let mut errs = Vec::new();
    let refuse = |errs: &mut Vec<FieldError>, pointer: &str, detail: &str| {
        errs.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        })
    };
    match kind {
        Kind::Webhook if f.url_secret.is_some() => refuse(
            &mut errs,
            "/url_secret",
            "only a slack subscription takes url_secret: a webhook one takes url",
        ),
        Kind::Webhook if creating && f.url.is_none() => {
            refuse(&mut errs, "/url", "a webhook subscription needs its url")
        }
        Kind::Slack if f.url.is_some() => refuse(
            &mut errs,
            "/url",
            "a slack subscription takes url_secret, the org secret holding its incoming-webhook URL, not url",
        ),
        Kind::Slack if creating && f.url_secret.is_none() => refuse(
            &mut errs,
            "/url_secret",
            "a slack subscription needs url_secret: the org secret holding its incoming-webhook URL",
        ),
        _ => {}
    }
    if let Some(name) = &f.url_secret
        && errs.is_empty()
        && let Err(detail) = check_slack_secret(state, org, name).await?
    {
        refuse(&mut errs, "/url_secret", &detail);
    }
    if let Some(url) = &f.url
        && let Err(detail) =
            crate::outbound::target::check_url(url, state.limits.allow_private_subscription_targets)
    {
        errs.push(FieldError {
            pointer: "/url".into(),
            detail,
        });
    }
    if let Some(types) = &f.event_types {
        if types.is_empty() {
            errs.push(FieldError {
                pointer: "/event_types".into(),
                detail: "name at least one event type or pattern (`*` for all)".into(),
            });
        }
        for (i, t) in types.iter().enumerate() {
            if !pattern_known(t) {
                errs.push(FieldError {
                    pointer: format!("/event_types/{i}"),
                    detail: format!(
                        "{t:?} is not a published event type or pattern: use one of {}, `<prefix>.*` or `*`",
                        EVENT_TYPES.join(", ")
                    ),
                });
            }
        }
    }
    if let Some(Some(teams)) = &f.teams
        && teams.is_empty()
    {
        errs.push(FieldError {
            pointer: "/teams".into(),
            detail: "name at least one team, or leave it out for every team".into(),
        });
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errs))
    }
}

/// Whether the org secret `name` holds a URL a Slack subscription may post to: `Ok(Err(why))`
/// when it does not (never saying the URL), `Err` when the config-service cannot tell now.
async fn check_slack_secret(
    state: &AppState,
    org: &str,
    name: &str,
) -> Result<std::result::Result<(), String>> {
    use switchyard_common::clients::CallError;
    let value = match state.config.secret_value(org, name).await {
        Ok(v) => v,
        Err(CallError::Rejected(why)) => {
            return Ok(Err(format!(
                "{why} (a slack subscription's URL is an org secret shared with the orchestrator: \
                 PUT .../secrets/{name} with \"readers\": [\"orchestrator\"])"
            )));
        }
        Err(e) => {
            return Err(Error::Unavailable(format!(
                "the config-service cannot answer for secret {name} now: {e}"
            )));
        }
    };
    Ok(
        crate::outbound::target::check_url(&value, state.limits.allow_private_subscription_targets)
            .map(|_| ())
            .map_err(|why| format!("the incoming-webhook URL in secret {name} is refused: {why}")),
    )
}

/// Subscribe to the org's events (an org admin), or to its own team's (a team token).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/subscriptions", tag = "subscriptions", params(("org" = String, Path)),
    request_body = CreateSubscription,
    responses((status = 201, body = WithSecret), (status = 403, body = switchyard_common::problem::Problem),
        (status = 404, body = switchyard_common::problem::Problem), (status = 422, body = switchyard_common::problem::Problem),
        (status = 503, body = switchyard_common::problem::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    switchyard_common::http::ApiJson(req): switchyard_common::http::ApiJson<CreateSubscription>,
) -> Result<(StatusCode, Json<WithSecret>)> {
    let scope = scope(&caller, &org)?;
    let fields = SubscriptionFields {
        kind: Some(req.kind.as_str().to_owned()),
        url: req.url,
        url_secret: req.url_secret,
        event_types: Some(req.event_types),
        teams: Some(scope.teams(req.teams)?),
        description: Some(req.description),
        enabled: Some(true),
        ordered: Some(req.ordered),
    };
    check_fields(&state, &org, req.kind, true, &fields).await?;
    let (subscription, secret) = state
        .store
        .create_subscription(&state.keyring, &caller.actor(None), &org, &fields)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WithSecret {
            subscription,
            secret,
        }),
    ))
}

/// The subscriptions the caller may see.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/subscriptions", tag = "subscriptions", params(("org" = String, Path)),
    responses((status = 200, body = Vec<Subscription>), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Vec<Subscription>>> {
    let scope = scope(&caller, &org)?;
    let all = state.store.list_subscriptions(&org).await?;
    Ok(Json(all.into_iter().filter(|s| scope.sees(s)).collect()))
}

/// One subscription the caller may see, with the fingerprints of the secrets signing now, and
/// the caller's scope.
pub(super) async fn visible(
    state: &AppState,
    caller: &Caller,
    org: &str,
    id: &str,
) -> Result<(Scope, Subscription)> {
    let scope = scope(caller, org)?;
    let s = state.store.get_subscription(org, id).await?;
    if !scope.sees(&s) {
        return Err(Error::not_found(format!("subscription {id}")));
    }
    Ok((scope, s))
}

#[utoipa::path(get, path = "/api/v1/orgs/{org}/subscriptions/{id}", tag = "subscriptions",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Subscription), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<Subscription>> {
    Ok(Json(visible(&state, &caller, &org, &id).await?.1))
}

/// Change a subscription; `enabled` stops or resumes its deliveries.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/subscriptions/{id}", tag = "subscriptions",
    params(("org" = String, Path), ("id" = String, Path)), request_body = UpdateSubscription,
    responses((status = 200, body = Subscription), (status = 403, body = switchyard_common::problem::Problem),
        (status = 404, body = switchyard_common::problem::Problem), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    switchyard_common::http::ApiJson(req): switchyard_common::http::ApiJson<UpdateSubscription>,
) -> Result<Json<Subscription>> {
    let (scope, before) = visible(&state, &caller, &org, &id).await?;
    let kind = if before.kind == "slack" {
        Kind::Slack
    } else {
        Kind::Webhook
    };
    let teams = match req.teams {
        None => None,
        Some(None) if matches!(scope, Scope::Team(_)) => {
            return Err(Error::Forbidden(
                "a team token cannot widen a subscription to every team".into(),
            ));
        }
        Some(t) => Some(scope.teams(t)?),
    };
    let fields = SubscriptionFields {
        kind: None,
        url: req.url,
        url_secret: req.url_secret,
        event_types: req.event_types,
        teams,
        description: req.description,
        enabled: req.enabled,
        ordered: req.ordered,
    };
    check_fields(&state, &org, kind, false, &fields).await?;
    Ok(Json(
        state
            .store
            .update_subscription(&caller.actor(None), &org, &id, &fields)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/orgs/{org}/subscriptions/{id}", tag = "subscriptions",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    visible(&state, &caller, &org, &id).await?;
    state
        .store
        .delete_subscription(&caller.actor(None), &org, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret, shown once; the ones signing until now keep signing for `overlap_seconds`
/// (the default without a body). A `slack` subscription is not signed: 409.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/subscriptions/{id}/rotate-secret", tag = "subscriptions",
    params(("org" = String, Path), ("id" = String, Path)), request_body(content = Option<RotateSecret>),
    responses((status = 200, body = WithSecret), (status = 404, body = switchyard_common::problem::Problem),
        (status = 409, body = switchyard_common::problem::Problem), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
    body: Option<switchyard_common::http::ApiJson<RotateSecret>>,
) -> Result<Json<WithSecret>> {
    visible(&state, &caller, &org, &id).await?;
    let overlap = body
        .and_then(|b| b.0.overlap_seconds)
        .unwrap_or(DEFAULT_OVERLAP_SECONDS);
    if !(0..=7 * 86_400).contains(&overlap) {
        return Err(Error::invalid(
            "/overlap_seconds",
            "must be 0 to 604800 (seven days)",
        ));
    }
    let (subscription, secret) = state
        .store
        .rotate_subscription_secret(
            &state.keyring,
            &caller.actor(None),
            &org,
            &id,
            overlap * 1000,
        )
        .await?;
    Ok(Json(WithSecret {
        subscription,
        secret: Some(secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_types_prefixes_or_everything() {
        for ok in [
            "*",
            "run.*",
            "run.succeeded",
            "incident.*",
            "subscription.disabled",
        ] {
            assert!(pattern_known(ok), "{ok}");
        }
        for bad in ["runs.*", "run.done", "run", "*.succeeded", "", "run.**"] {
            assert!(!pattern_known(bad), "{bad}");
        }
    }
}
