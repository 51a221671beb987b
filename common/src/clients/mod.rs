//! Clients for calls between services, each with a fresh short-lived service JWT (audience = the
//! callee, subject = the caller), a child `traceparent`, and typed answers: the request and
//! response bodies are the servers' own types from `switchyard_api`; failures are [`CallError`].
//!
//! # Layout
//! - this file: [`CallError`] and what every call shares (timeouts, classification of answers);
//! - [`config`]: the config-service's internal endpoints (service JWT);
//! - [`user`]: config-service calls made with a user's own token (provisioning);
//! - [`runner`]: the agent-runner's run endpoint;
//! - [`orchestrator`]: the orchestrator's internal endpoints (a team's recent events).

mod config;
mod orchestrator;
mod runner;
mod user;

use std::time::{Duration, Instant};

use crate::telemetry::Calls;

pub use config::{ConfigClient, caller_of};
pub use orchestrator::OrchestratorClient;
pub use runner::{RunnerClient, outcome as run_outcome};
pub use switchyard_api::routing::{Lookup, RouteMatch};
pub use switchyard_api::runs::RunRequest;
pub use user::{Created, Deleted, IssuedToken, LayerWrite};

/// Why an outbound call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The callee was unreachable or answered 5xx: retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The callee answered 5xx and said when to come back (`Retry-After`).
    #[error("overloaded: {message} (retry after {retry_after}s)")]
    Overloaded { message: String, retry_after: u64 },
    /// The callee asks us to slow down (429), optionally saying for how long.
    #[error("throttled")]
    Throttled(Option<u64>),
    /// The callee refused the request (4xx other than 429): retrying will not help.
    #[error("rejected: {0}")]
    Rejected(String),
}

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The problem's `detail` (or the start of the body) of an answer that is not a success.
async fn detail(resp: reqwest::Response) -> String {
    let body = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) if v["detail"].is_string() => v["detail"].as_str().unwrap_or_default().to_owned(),
        _ => body.chars().take(300).collect(),
    }
}

/// Success answers pass; the others become the [`CallError`] they mean.
async fn classify(resp: reqwest::Response) -> Result<reqwest::Response, CallError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let ra = retry_after(&resp);
    if status.as_u16() == 429 {
        return Err(failure(429, ra, String::new()));
    }
    let message = format!("{status}: {}", detail(resp).await);
    Err(failure(status.as_u16(), ra, message))
}

/// What a failed answer's status means: 429 throttles, 5xx is retried (after `retry_after` when
/// given), any other refusal is final. Shared by whole calls and the runs of a batch.
fn failure(status: u16, retry_after: Option<u64>, message: String) -> CallError {
    match status {
        429 => CallError::Throttled(retry_after),
        500..=599 => match retry_after {
            Some(retry_after) => CallError::Overloaded {
                message,
                retry_after,
            },
            None => CallError::Unavailable(message),
        },
        _ => CallError::Rejected(message),
    }
}

/// A success answer's body as `T` (a body that does not fit is the callee's fault: retry later).
async fn body<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, CallError> {
    classify(resp)
        .await?
        .json()
        .await
        .map_err(|e| CallError::Unavailable(format!("an answer that does not fit: {e}")))
}

fn transport(e: reqwest::Error) -> CallError {
    CallError::Unavailable(e.to_string())
}

/// Sends a request, recording its outcome and latency under `callee`; a transport failure is
/// `CallError::Unavailable`.
async fn send(
    calls: &Calls,
    callee: &str,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, CallError> {
    // The call is a child span of the work being done; the callee continues it (W3C Trace
    // Context), and the span is exported when OpenTelemetry export is on.
    let (mut span, ctx) =
        crate::otel::Span::child(calls.service(), "call", crate::otel::SpanKind::Client);
    span.rename(|| format!("call {callee}"));
    span.attr_str("peer.service", callee);
    let req = req.header("traceparent", ctx.header());
    let started = Instant::now();
    let sent = req.send().await;
    let outcome = match &sent {
        Ok(resp) => Calls::outcome_of(resp.status().as_u16()),
        Err(e) if e.is_timeout() => "timeout",
        Err(_) => "error",
    };
    calls.record(callee, outcome, started.elapsed());
    match &sent {
        Ok(resp) => {
            span.attr(
                "http.response.status_code",
                i64::from(resp.status().as_u16()),
            );
            if !resp.status().is_success() {
                span.error(outcome);
            }
        }
        Err(_) => span.error(outcome),
    }
    span.end();
    sent.map_err(transport)
}

/// A request to another service (its `traceparent` is set when it is sent).
fn traced(http: &reqwest::Client, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
    http.request(method, url)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .expect("an HTTP client with default TLS roots builds")
}
