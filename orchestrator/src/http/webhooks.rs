//! The hot path over HTTP: `POST /webhooks/...`. Reads the client address and a bounded body
//! (413; any other read error 400), hands the rest to [`crate::ingress`], and answers: 200 only
//! after the commit (a duplicate answers 200 with the original event id), storage trouble 503 with
//! `Retry-After` (never a 4xx a sender would drop). One outcome is counted per request, here.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingress::{Accepted, Rejected, Target};
use crate::sources::Source;
use crate::state::AppState;

/// `POST /webhooks/slack/events` (and `commands`, `interactions`): the platform's shared Slack app.
pub async fn slack_events(State(state): State<AppState>, req: Request) -> Response {
    handle(state, Target::Platform(Source::Slack, "events"), req).await
}

pub async fn slack_commands(State(state): State<AppState>, req: Request) -> Response {
    handle(state, Target::Platform(Source::Slack, "commands"), req).await
}

pub async fn slack_interactions(State(state): State<AppState>, req: Request) -> Response {
    handle(state, Target::Platform(Source::Slack, "interactions"), req).await
}

/// `POST /webhooks/github`: the platform's GitHub App.
pub async fn github_app(State(state): State<AppState>, req: Request) -> Response {
    handle(state, Target::Platform(Source::Github, ""), req).await
}

/// `POST /webhooks/{source}/{integration_id}`.
pub async fn per_integration(
    State(state): State<AppState>,
    Path((source, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    handle(state, Target::Integration(&source, &id), req).await
}

async fn handle(state: AppState, target: Target<'_>, req: Request) -> Response {
    let label = match target {
        Target::Platform(s, _) => s.as_str(),
        Target::Integration(s, _) => Source::parse(s).map(Source::as_str).unwrap_or("unknown"),
    };
    let ingress = &state.ingress;
    let result = receive(&state, target, req).await;
    match result {
        Ok(Accepted::Stored {
            event_id,
            duplicate,
        }) => {
            ingress.count(label, if duplicate { "duplicate" } else { "accepted" });
            Json(json!({"event_id": event_id, "duplicate": duplicate})).into_response()
        }
        Ok(Accepted::Handshake(answer)) => {
            ingress.count(label, "handshake");
            Json(answer).into_response()
        }
        // A refusal before the source is known is not counted under a made-up source.
        Err(r @ (Rejected::TooManyFailures | Rejected::Unknown(_))) if label == "unknown" => {
            r.into_error().into_response()
        }
        Err(r) => {
            ingress.count(label, r.outcome());
            r.into_error().into_response()
        }
    }
}

async fn receive(state: &AppState, target: Target<'_>, req: Request) -> Result<Accepted, Rejected> {
    let ingress = &state.ingress;
    let ip = client_ip(&req, ingress.limits.trusted_proxy_hops);
    ingress.admit(ip)?;
    let integration = ingress.find(target, ip).await?;
    let endpoint = match target {
        Target::Platform(_, endpoint) => endpoint,
        Target::Integration(..) => "",
    };
    let (parts, body) = req.into_parts();
    let limit = ingress.limits.body_limit;
    let body: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) if is_too_large(&e) => return Err(Rejected::TooLarge(limit)),
        // The client went away or sent a broken body: its fault, not a size problem.
        Err(e) => {
            return Err(Rejected::Invalid(format!(
                "the request body could not be read: {e}"
            )));
        }
    };
    ingress
        .accept(&integration, endpoint, &parts.headers, &body, ip)
        .await
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
