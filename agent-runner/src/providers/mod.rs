//! LLM providers behind one trait. One file per provider and one line in [`build`]: nothing else
//! changes to add one.
//!
//! Every provider sends its requests through [`Http::post_json`]: a per-request timeout, retries on
//! 429 and 5xx with exponential backoff that honours `Retry-After` (bounded), and the API key only
//! in the header its endpoint expects. An answer that does not have the provider's shape fails the
//! run with [`ProviderError::Malformed`]; nothing here logs a key or a request body.

mod anthropic;
mod offline;
mod openai;

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::messages::{Turn, TurnRequest};

pub use anthropic::Anthropic;
pub use offline::Offline;
pub use openai::OpenAi;

/// Why a model turn failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Unreachable, or 429/5xx after every retry.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request (a bad key, an unknown model): retrying cannot help.
    #[error("the provider refused the request: {0}")]
    Rejected(String),
    /// The answer is not what the provider's API answers.
    #[error("the provider's answer is malformed: {0}")]
    Malformed(String),
}

/// A model behind an API.
pub trait Provider: Send + Sync {
    /// One model turn.
    fn turn<'a>(&'a self, req: &'a TurnRequest<'a>) -> BoxFuture<'a, Result<Turn, ProviderError>>;
}

/// An API key: sent to its endpoint only, never shown by `Debug`.
#[derive(Clone, Default)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// How a provider is reached.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The API's base URL, e.g. `https://api.openai.com/v1` or `https://api.anthropic.com`.
    pub url: String,
    pub key: ApiKey,
    /// Longest wait for one answer.
    pub timeout: Duration,
}

/// The providers this build has: `openai` (any OpenAI-compatible Chat Completions server),
/// `anthropic` (Messages API) and `offline` (no model: a deterministic summary, for dev and tests).
pub fn build(
    name: &str,
    endpoint: Option<Endpoint>,
    http: &reqwest::Client,
) -> Result<Box<dyn Provider>, String> {
    let needs = |what: &str| {
        endpoint
            .clone()
            .ok_or_else(|| format!("the {what} provider needs an endpoint and an api_key"))
    };
    Ok(match name {
        "openai" => Box::new(OpenAi::new(Http::new(http, needs("openai")?))),
        "anthropic" => Box::new(Anthropic::new(Http::new(http, needs("anthropic")?))),
        "offline" => Box::new(Offline),
        other => {
            return Err(format!(
                "unknown provider {other:?}: one of openai, anthropic, offline"
            ));
        }
    })
}

/// Attempts of one request (the first and its retries).
const ATTEMPTS: u32 = 4;
/// First backoff; doubles per retry.
const BACKOFF: Duration = Duration::from_millis(250);
/// Longest `Retry-After` honoured; a longer one fails the turn as unavailable.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A provider's HTTP access: the shared client, its endpoint, retries.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    pub endpoint: Endpoint,
}

impl Http {
    pub fn new(client: &reqwest::Client, endpoint: Endpoint) -> Self {
        Self {
            client: client.clone(),
            endpoint,
        }
    }

    /// POSTs `body` to `path` under the endpoint with `headers` (the key among them), retrying
    /// 429 and 5xx; answers the JSON body of the first success, and how long it waited on the
    /// endpoint (from sending to the whole answer read, retries and their backoff included).
    pub async fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<(Value, Duration), ProviderError> {
        let url = format!("{}{path}", self.endpoint.url.trim_end_matches('/'));
        let mut last = String::new();
        let mut waited = Duration::ZERO;
        for attempt in 0..ATTEMPTS {
            let mut req = self
                .client
                .post(&url)
                .timeout(self.endpoint.timeout)
                .json(body);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let sending = Instant::now();
            let wait = match req.send().await {
                Err(e) if e.is_timeout() => {
                    last = format!("no answer within {:?}", self.endpoint.timeout);
                    None
                }
                Err(e) => {
                    last = format!("unreachable: {}", without_url(&e));
                    None
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    if status.is_success() {
                        let text = resp.text().await.map_err(|e| {
                            ProviderError::Unavailable(format!(
                                "reading the answer: {}",
                                without_url(&e)
                            ))
                        })?;
                        waited += sending.elapsed();
                        return serde_json::from_str(&text)
                            .map(|v| (v, waited))
                            .map_err(|e| ProviderError::Malformed(format!("not JSON ({e})")));
                    }
                    let detail = error_detail(resp).await;
                    if status.as_u16() != 429 && !status.is_server_error() {
                        return Err(ProviderError::Rejected(format!("{status}: {detail}")));
                    }
                    last = format!("{status}: {detail}");
                    if retry_after.is_some_and(|ra| ra > MAX_RETRY_AFTER) {
                        return Err(ProviderError::Unavailable(format!(
                            "{last} (asked to wait longer than {} s)",
                            MAX_RETRY_AFTER.as_secs()
                        )));
                    }
                    retry_after
                }
            };
            if attempt + 1 < ATTEMPTS {
                tokio::time::sleep(wait.unwrap_or(BACKOFF * 2u32.pow(attempt))).await;
            }
            waited += sending.elapsed();
        }
        Err(ProviderError::Unavailable(format!(
            "{last} (after {ATTEMPTS} attempts)"
        )))
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// The error message of a provider's error answer (both APIs answer `{"error": {"message"}}`),
/// or the start of the body. Never the request: it may hold the key.
async fn error_detail(resp: reqwest::Response) -> String {
    let body = resp.text().await.unwrap_or_default();
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// A transport error's message without its URL (which is the configured endpoint, but the habit
/// keeps query strings out of transcripts).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url (") {
        e.truncate(i);
    }
    e
}
