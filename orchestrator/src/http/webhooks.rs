//! The hot path: `POST /webhooks/...`.
//!
//! An address over its failure limit gets 429 before anything is read → find the integration (404,
//! counted as a failure: probing ids costs the prober) → bounded body (413; any other read error
//! 400) → verify the raw bytes with every active secret (401, counted; over the per-address limit
//! 429) → answer handshakes → normalise → one atomic insert → 200 only after the commit (a
//! duplicate answers 200 with the original event id). Storage trouble answers 503 with
//! `Retry-After`, never a 4xx a sender would drop.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_common::error::Error;
use switchyard_common::time::now_ms;

use crate::sources::normalise::{Outcome, normalise};
use crate::sources::verify::{self, VerifyError};
use crate::sources::{SlackKind, Source};
use crate::state::AppState;
use crate::store::{Integration, Stored};

/// `POST /webhooks/slack/events` (and `commands`, `interactions`): the platform's shared Slack app.
pub async fn slack_events(State(state): State<AppState>, req: Request) -> Response {
    platform(state, Source::Slack, Some(SlackKind::Events), req).await
}

pub async fn slack_commands(State(state): State<AppState>, req: Request) -> Response {
    platform(state, Source::Slack, Some(SlackKind::Commands), req).await
}

pub async fn slack_interactions(State(state): State<AppState>, req: Request) -> Response {
    platform(state, Source::Slack, Some(SlackKind::Interactions), req).await
}

/// `POST /webhooks/github`: the platform's GitHub App.
pub async fn github_app(State(state): State<AppState>, req: Request) -> Response {
    platform(state, Source::Github, None, req).await
}

/// `POST /webhooks/{source}/{integration_id}`.
pub async fn per_integration(
    State(state): State<AppState>,
    Path((source, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    let ip = client_ip(&req, state.limits.trusted_proxy_hops);
    if let Some(refused) = refuse_blocked(&state, ip) {
        return refused;
    }
    let Some(src) = Source::parse(&source) else {
        return failure(
            &state,
            ip,
            Error::not_found(format!("webhook source {source}")),
        );
    };
    let integration = match state.store.get_integration(&id).await {
        Ok(Some(i)) if i.source == src => i,
        Ok(_) => {
            state.count_webhook(src.as_str(), "unknown_integration");
            return failure(&state, ip, Error::not_found(format!("integration {id}")));
        }
        Err(e) => return unavailable(&state, src, e),
    };
    let slack = (src == Source::Slack).then_some(SlackKind::Events);
    receive(state, integration, slack, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn platform(
    state: AppState,
    source: Source,
    slack: Option<SlackKind>,
    req: Request,
) -> Response {
    let ip = client_ip(&req, state.limits.trusted_proxy_hops);
    if let Some(refused) = refuse_blocked(&state, ip) {
        return refused;
    }
    match state.store.platform_integration(source).await {
        Ok(Some(i)) => receive(state, i, slack, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Ok(None) => Error::not_found(format!(
            "the platform {} integration is not configured",
            source.as_str()
        ))
        .into_response(),
        Err(e) => unavailable(&state, source, e),
    }
}

fn too_many_failures() -> Error {
    Error::TooManyRequests {
        detail: "too many failed verifications from this address".into(),
        retry_after: 60,
    }
}

/// 429 for an address already over its failure limit, before its body is read.
fn refuse_blocked(state: &AppState, ip: Option<IpAddr>) -> Option<Response> {
    let ip = ip?;
    state
        .unverified
        .blocked(ip)
        .then(|| too_many_failures().into_response())
}

/// Counts a request that proved nothing (unknown integration) against its address: `err`, or 429
/// once the address is over its limit.
fn failure(state: &AppState, ip: Option<IpAddr>, err: Error) -> Response {
    match ip {
        Some(ip) if state.unverified.record(ip) => too_many_failures().into_response(),
        _ => err.into_response(),
    }
}

fn unavailable(state: &AppState, source: Source, e: Error) -> Response {
    tracing::error!(error = %e, source = source.as_str(), "webhook storage unavailable");
    state.count_webhook(source.as_str(), "unavailable");
    Error::Unavailable("the event store is unavailable; retry later".into()).into_response()
}

/// The client's address: the TCP peer, or with `hops` trusted proxies in front, the
/// `X-Forwarded-For` entry the outermost of them appended.
fn client_ip(req: &Request, hops: usize) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if hops == 0 {
        return peer;
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .len()
        .checked_sub(hops)
        .and_then(|i| forwarded.get(i).copied())
        .or(peer)
}

async fn receive(
    state: AppState,
    integration: Integration,
    slack: Option<SlackKind>,
    req: Request,
) -> Result<Response, Error> {
    let source = integration.source;
    let ip = client_ip(&req, state.limits.trusted_proxy_hops);
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let body: Bytes = match axum::body::to_bytes(body, state.limits.body_limit).await {
        Ok(b) => b,
        Err(e) if is_too_large(&e) => {
            state.count_webhook(source.as_str(), "too_large");
            return Err(Error::TooLarge(format!(
                "webhook bodies are limited to {} bytes",
                state.limits.body_limit
            )));
        }
        Err(e) => {
            // The client went away or sent a broken body: its fault, not a size problem.
            state.count_webhook(source.as_str(), "invalid");
            return Err(Error::BadRequest(format!(
                "the request body could not be read: {e}"
            )));
        }
    };
    let secrets = match state.secrets_of(&integration.id).await {
        Ok(s) => s,
        Err(e) => return Ok(unavailable(&state, source, e)),
    };
    if let Err(e) = verify_delivery(&integration, &headers, &body, &secrets) {
        state.count_webhook(source.as_str(), "unauthorized");
        tracing::warn!(integration = %integration.id, source = source.as_str(), reason = %e, "webhook verification failed");
        if let Some(ip) = ip
            && state.unverified.record(ip)
        {
            return Err(too_many_failures());
        }
        return Err(Error::Unauthorized(format!(
            "webhook verification failed: {e}"
        )));
    }
    if state.ingress.check_key(&integration.id).is_err() && source.retries_429() {
        state.count_webhook(source.as_str(), "throttled");
        return Err(Error::TooManyRequests {
            detail: "this integration is over its ingress rate; retry shortly".into(),
            retry_after: 1,
        });
    }
    let outcome = normalise(source, slack, &headers, &body).map_err(|e| {
        state.count_webhook(source.as_str(), "invalid");
        Error::BadRequest(e.0)
    })?;
    let env = match outcome {
        Outcome::Handshake(answer) => {
            state.count_webhook(source.as_str(), "handshake");
            return Ok(Json(answer).into_response());
        }
        Outcome::Event(env) => env,
    };
    if source == Source::Linear {
        let tolerance = integration.settings["timestamp_tolerance_seconds"]
            .as_i64()
            .unwrap_or(60);
        if let Err(e) = verify::linear_timestamp_ok(&env.payload, now_ms() / 1000, tolerance) {
            state.count_webhook(source.as_str(), "unauthorized");
            return Err(Error::Unauthorized(format!(
                "webhook verification failed: {e}"
            )));
        }
    }
    match state
        .store
        .store_event(&integration, &env, integration.org_id.as_deref())
        .await
    {
        Ok(Stored::New(id)) => {
            state.count_webhook(source.as_str(), "accepted");
            tracing::info!(event = %id, integration = %integration.id, delivery = %env.delivery_id, event_type = %env.event_type, "event stored");
            Ok(Json(json!({"event_id": id, "duplicate": false})).into_response())
        }
        Ok(Stored::Duplicate(id)) => {
            state.count_webhook(source.as_str(), "duplicate");
            tracing::info!(event = %id, delivery = %env.delivery_id, "duplicate delivery acknowledged");
            Ok(Json(json!({"event_id": id, "duplicate": true})).into_response())
        }
        Err(e) => Ok(unavailable(&state, source, e)),
    }
}

/// True when reading the body failed because it is over the limit (the limit error is somewhere
/// in the source chain).
fn is_too_large(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Verifies a delivery exactly as its sender signs it.
pub fn verify_delivery(
    integration: &Integration,
    h: &HeaderMap,
    body: &[u8],
    secrets: &[Vec<u8>],
) -> Result<(), VerifyError> {
    let now = now_ms() / 1000;
    let header_setting = |name: &str| {
        integration.settings[name]
            .as_str()
            .map(|s| s.to_ascii_lowercase())
    };
    match integration.source {
        Source::Slack => verify::slack(h, body, secrets, now),
        Source::Github => verify::github(h, body, secrets),
        Source::Pagerduty => verify::pagerduty(h, body, secrets),
        Source::Incidentio | Source::Standard => {
            let keys: Vec<Vec<u8>> = secrets
                .iter()
                .filter_map(|s| verify::standard_key(&String::from_utf8_lossy(s)))
                .collect();
            verify::standard(h, body, &keys, now)
        }
        Source::Sentry => verify::sentry(h, body, secrets),
        Source::Linear => verify::linear(h, body, secrets),
        Source::Jira => verify::jira(h, body, secrets),
        Source::Circleci => verify::circleci(h, body, secrets),
        Source::Gitlab => verify::shared_secret(h, Some("x-gitlab-token"), secrets),
        Source::Grafana => {
            if h.contains_key("x-grafana-alerting-signature") {
                verify::grafana(
                    h,
                    body,
                    secrets,
                    now,
                    "x-grafana-alerting-signature",
                    "x-grafana-alerting-signature-timestamp",
                )
            } else {
                verify::shared_secret(h, None, secrets)
            }
        }
        Source::Alertmanager | Source::Datadog | Source::Opsgenie => {
            match header_setting("token_header") {
                Some(name) => {
                    let present = h
                        .get(name.as_str())
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                        .unwrap_or("");
                    let ok = !present.is_empty()
                        && secrets.iter().any(|s| {
                            switchyard_common::auth::secrets_equal(
                                &String::from_utf8_lossy(s),
                                present,
                            )
                        });
                    if secrets.is_empty() {
                        Err(VerifyError::NoSecret)
                    } else if present.is_empty() {
                        Err(VerifyError::MissingHeader("token header"))
                    } else if ok {
                        Ok(())
                    } else {
                        Err(VerifyError::BadSignature)
                    }
                }
                None => verify::shared_secret(h, None, secrets),
            }
        }
    }
}
