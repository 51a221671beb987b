//! Metrics, alerts and logs over the HTTP APIs of the team's own servers (the URLs in its
//! `toolsets`), with the team's bearer token if it set one. Answers are the servers' JSON, trimmed
//! by the tool box.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::Target;
use crate::agent::tools::Tool;
use crate::messages::ToolSpec;

/// Longest wait for one answer from a team's server.
const TIMEOUT: Duration = Duration::from_secs(20);

/// GETs `path` under the target with `query`; the answer's body, or why there is none.
async fn get(
    http: &reqwest::Client,
    t: &Target,
    path: &str,
    query: &[(&str, String)],
) -> Result<String, String> {
    get_with(http, t, path, query, &[]).await
}

/// [`get`] with extra request headers (an API's media type, its user agent): every toolset that
/// reads a team's HTTP API goes through it.
pub(super) async fn get_with(
    http: &reqwest::Client,
    t: &Target,
    path: &str,
    query: &[(&str, String)],
    headers: &[(&str, &str)],
) -> Result<String, String> {
    let mut req = http
        .get(format!("{}{path}", t.url))
        .query(query)
        .timeout(TIMEOUT);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(token) = &t.token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{} is unreachable: {}", t.url, e.without_url()))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("reading the answer: {}", e.without_url()))?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            body.chars().take(500).collect::<String>()
        ));
    }
    Ok(body)
}

fn arg(args: &Value, name: &str) -> Result<String, String> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("the argument {name:?} is required"))
}

fn opt(args: &Value, name: &str) -> Option<String> {
    match args.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

macro_rules! http_tool {
    ($name:ident) => {
        pub struct $name {
            target: Target,
            http: reqwest::Client,
        }

        impl $name {
            pub fn new(target: Target, http: &reqwest::Client) -> Self {
                Self {
                    target,
                    http: http.clone(),
                }
            }
        }
    };
}

http_tool!(PrometheusQuery);
http_tool!(PrometheusRange);
http_tool!(AlertmanagerAlerts);
http_tool!(LokiQuery);

impl Tool for PrometheusQuery {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "prometheus_query".into(),
            description: "Evaluate a PromQL expression at one instant on the team's Prometheus."
                .into(),
            parameters: json!({"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string", "description": "PromQL"},
                "time": {"type": "string", "description": "RFC 3339 or Unix time; now if absent"}}}),
        }
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut q = vec![("query", arg(args, "query")?)];
            if let Some(t) = opt(args, "time") {
                q.push(("time", t));
            }
            get(&self.http, &self.target, "/api/v1/query", &q).await
        })
    }
}

impl Tool for PrometheusRange {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "prometheus_range_query".into(),
            description: "Evaluate a PromQL expression over a time range on the team's Prometheus."
                .into(),
            parameters: json!({"type": "object", "required": ["query", "start", "end"], "properties": {
                "query": {"type": "string"},
                "start": {"type": "string", "description": "RFC 3339 or Unix time"},
                "end": {"type": "string", "description": "RFC 3339 or Unix time"},
                "step": {"type": "string", "description": "a duration such as 60s (default 60s)"}}}),
        }
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let q = vec![
                ("query", arg(args, "query")?),
                (
                    "start",
                    opt(args, "start").ok_or("the argument \"start\" is required")?,
                ),
                (
                    "end",
                    opt(args, "end").ok_or("the argument \"end\" is required")?,
                ),
                ("step", opt(args, "step").unwrap_or_else(|| "60s".into())),
            ];
            get(&self.http, &self.target, "/api/v1/query_range", &q).await
        })
    }
}

impl Tool for AlertmanagerAlerts {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "alertmanager_alerts".into(),
            description: "List the alerts firing on the team's Alertmanager, optionally filtered by label matchers.".into(),
            parameters: json!({"type": "object", "properties": {
                "filter": {"type": "array", "items": {"type": "string"}, "description": "matchers such as service=\"checkout\""}}}),
        }
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut q = vec![("active", "true".to_owned())];
            for f in args
                .get("filter")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(f) = f.as_str() {
                    q.push(("filter", f.to_owned()));
                }
            }
            get(&self.http, &self.target, "/api/v2/alerts", &q).await
        })
    }
}

impl Tool for LokiQuery {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "loki_query".into(),
            description:
                "Search the team's logs in Loki with LogQL over a time range (newest first).".into(),
            parameters: json!({"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string", "description": "LogQL, e.g. {app=\"checkout\"} |= \"error\""},
                "start": {"type": "string"}, "end": {"type": "string"},
                "limit": {"type": "integer", "description": "most lines (default 100, at most 1000)"}}}),
        }
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let limit = args
                .get("limit")
                .and_then(Value::as_u64)
                .unwrap_or(100)
                .clamp(1, 1000);
            let mut q = vec![("query", arg(args, "query")?), ("limit", limit.to_string())];
            for k in ["start", "end"] {
                if let Some(v) = opt(args, k) {
                    q.push((k, v));
                }
            }
            get(&self.http, &self.target, "/loki/api/v1/query_range", &q).await
        })
    }
}
