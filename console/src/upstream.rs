//! The two APIs behind the console, called with the signed-in user's own token: the
//! config-service over HTTP, the orchestrator's own API in process (the same router, the same
//! handlers, the same authorization; no network hop and no second listener to configure).
//!
//! The console never decides what a token may see: it shows what the API answers for that token.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Where a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Config,
    Orchestrator,
}

/// How one API is reached.
#[derive(Clone)]
pub enum Upstream {
    Http {
        client: reqwest::Client,
        base: String,
    },
    InProcess(axum::Router),
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { base, .. } => f.debug_tuple("Http").field(base).finish(),
            Self::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

/// A 2xx answer.
#[derive(Debug)]
pub struct Reply {
    pub body: Value,
    pub etag: Option<String>,
}

/// Why a call did not succeed: the API's problem (status, title, detail), or no answer.
#[derive(Debug)]
pub enum CallError {
    Problem {
        status: StatusCode,
        title: String,
        detail: String,
    },
    Unavailable(String),
}

/// The largest answer the console reads (a page of events with their payloads fits).
const MAX_BODY: usize = 16 << 20;

impl Upstream {
    pub fn http(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client builds");
        Self::Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, CallError> {
        let (status, etag, bytes) = match self {
            Self::Http { client, base } => {
                let mut req = client
                    .request(method, format!("{base}{path}"))
                    .bearer_auth(token);
                if let Some(b) = body {
                    req = req.json(b);
                }
                if let Some(tag) = if_match {
                    req = req.header(header::IF_MATCH, tag);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| CallError::Unavailable(e.without_url().to_string()))?;
                let status = resp.status();
                let etag = header_str(resp.headers(), header::ETAG);
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| CallError::Unavailable(e.without_url().to_string()))?;
                (status, etag, bytes.to_vec())
            }
            Self::InProcess(router) => {
                let mut req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"));
                if let Some(tag) = if_match {
                    req = req.header(header::IF_MATCH, tag);
                }
                let req = match body {
                    Some(b) => req
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(b.to_string())),
                    None => req.body(Body::empty()),
                }
                .map_err(|e| CallError::Unavailable(e.to_string()))?;
                let mut req = req;
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 0))));
                let resp = router
                    .clone()
                    .oneshot(req)
                    .await
                    .unwrap_or_else(|never| match never {});
                let status = resp.status();
                let etag = header_str(resp.headers(), header::ETAG);
                let limited = http_body_util::Limited::new(resp.into_body(), MAX_BODY);
                let bytes = limited
                    .collect()
                    .await
                    .map_err(|e| CallError::Unavailable(e.to_string()))?
                    .to_bytes();
                (status, etag, bytes.to_vec())
            }
        };
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(Reply { body, etag });
        }
        let text = |k: &str| body[k].as_str().map(str::to_owned);
        let mut detail = text("detail").unwrap_or_default();
        // Field errors (422) say which input was wrong.
        for e in body["errors"].as_array().into_iter().flatten() {
            let field = e["pointer"].as_str().unwrap_or_default();
            let msg = e["detail"].as_str().unwrap_or_default();
            detail.push_str(&format!(" {field}: {msg}."));
        }
        Err(CallError::Problem {
            status,
            title: text("title").unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("Request failed")
                    .to_owned()
            }),
            detail: detail.trim().to_owned(),
        })
    }
}

fn header_str(h: &axum::http::HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned)
}

pub use switchyard_common::text::{percent_encode as enc, query};
