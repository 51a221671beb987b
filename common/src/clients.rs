//! Clients for calls between services, each with a fresh short-lived service JWT (audience = the
//! callee, subject = the caller).

use std::time::Duration;

use crate::auth::ServiceKey;
use crate::http::Caller;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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

async fn classify(resp: reqwest::Response) -> Result<reqwest::Response, CallError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status.as_u16() == 429 {
        return Err(CallError::Throttled(retry_after(&resp)));
    }
    let ra = retry_after(&resp);
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    if status.is_server_error() {
        Err(match ra {
            Some(retry_after) => CallError::Overloaded {
                message: format!("{status}: {body}"),
                retry_after,
            },
            None => CallError::Unavailable(format!("{status}: {body}")),
        })
    } else {
        Err(CallError::Rejected(format!("{status}: {body}")))
    }
}

fn transport(e: reqwest::Error) -> CallError {
    CallError::Unavailable(e.to_string())
}

/// A routing match: the config-service's lookup answer, defined once for it and its client.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RouteMatch {
    pub org_id: String,
    /// The node that owns the identifier (normally a team).
    pub team_node_id: String,
    /// `team`, `group` or `org` (an org-level identifier is owned by the org's root).
    pub node_kind: String,
    /// The identifier kind that decided the match.
    pub matched_by: String,
    pub matched_value: String,
}

/// The lease a new run is recorded with: the runner executing it renews it; when it lapses,
/// another runner resumes the run.
#[derive(Debug, Clone, Serialize)]
pub struct RunLease<'a> {
    pub runner: &'a str,
    pub lease_ms: i64,
    pub deadline_seconds: u64,
    /// Kept with the run so a resumed run still replies.
    pub reply_to: Option<&'a Value>,
}

/// What a routing lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Matched(RouteMatch),
    /// Nobody owns the identifiers (the reason says what was missing).
    Unrouted(String),
    /// The identifiers match in several organisations.
    Ambiguous(String),
}

#[derive(Clone, Debug)]
pub struct ConfigClient {
    base: String,
    http: reqwest::Client,
    key: ServiceKey,
    /// The calling service, as the JWT's subject.
    caller: &'static str,
}

/// A request with a child `traceparent` of the work being done (W3C Trace Context).
fn traced(http: &reqwest::Client, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
    http.request(method, url)
        .header("traceparent", crate::trace::TraceContext::outbound())
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .build()
        .expect("an HTTP client with default TLS roots builds")
}

impl ConfigClient {
    pub fn new(base: &str, key: ServiceKey, caller: &'static str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: http_client(),
            key,
            caller,
        }
    }

    fn call(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        traced(&self.http, method, url)
    }

    fn jwt(&self) -> String {
        self.key.mint(self.caller, "config-service", 60)
    }

    /// Sends a request to an internal endpoint (`path` under the base URL) with a fresh service
    /// JWT and an optional JSON body; a transport failure is `CallError::Unavailable`.
    async fn internal(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, CallError> {
        let mut req = self
            .call(method, format!("{}{path}", self.base))
            .bearer_auth(self.jwt());
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.map_err(transport)
    }

    /// The owning team of these identifiers; [`Lookup::Unrouted`] when nobody owns them (404),
    /// [`Lookup::Ambiguous`] when they match in several orgs (409: never guess across tenants),
    /// each with the config-service's reason.
    pub async fn lookup(
        &self,
        org: Option<&str>,
        identifiers: &[(String, String)],
    ) -> Result<Lookup, CallError> {
        let mut ids = serde_json::Map::new();
        for (k, v) in identifiers {
            match ids.get_mut(k) {
                Some(Value::Array(a)) => a.push(json!(v)),
                Some(existing) => {
                    let first = existing.take();
                    *existing = json!([first, v]);
                }
                None => {
                    ids.insert(k.clone(), json!(v));
                }
            }
        }
        let resp = self
            .internal(
                reqwest::Method::POST,
                "/api/v1/internal/routing/lookup",
                Some(&json!({"org_id": org, "identifiers": ids})),
            )
            .await?;
        let status = resp.status().as_u16();
        if matches!(status, 404 | 409) {
            let problem: Value = resp.json().await.unwrap_or(Value::Null);
            let detail = problem["detail"]
                .as_str()
                .unwrap_or("no team owns these identifiers")
                .to_owned();
            return Ok(if status == 404 {
                Lookup::Unrouted(detail)
            } else {
                Lookup::Ambiguous(detail)
            });
        }
        let resp = classify(resp).await?;
        resp.json().await.map(Lookup::Matched).map_err(transport)
    }

    pub async fn routing_version(&self) -> Result<i64, CallError> {
        let resp = self
            .internal(
                reqwest::Method::GET,
                "/api/v1/internal/routing/version",
                None,
            )
            .await?;
        let v: Value = classify(resp).await?.json().await.map_err(transport)?;
        Ok(v["version"].as_i64().unwrap_or(0))
    }

    /// A node's effective config (for its quotas).
    pub async fn node_config(&self, org: &str, node: &str) -> Result<Value, CallError> {
        let resp = self
            .internal(
                reqwest::Method::GET,
                &format!("/api/v1/internal/orgs/{org}/nodes/{node}/config"),
                None,
            )
            .await?;
        let v: Value = classify(resp).await?.json().await.map_err(transport)?;
        Ok(v["config"].clone())
    }

    /// A value of the org secrets store (`{"secret": "<name>"}` in config). `Ok(None)`: no such
    /// secret.
    pub async fn org_secret(&self, org: &str, name: &str) -> Result<Option<String>, CallError> {
        let resp = self
            .internal(
                reqwest::Method::GET,
                &format!("/api/v1/internal/orgs/{org}/secrets/{name}"),
                None,
            )
            .await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let v: Value = classify(resp).await?.json().await.map_err(transport)?;
        Ok(v["value"].as_str().map(str::to_owned))
    }

    /// Resolves an org admin or team token. `Ok(None)`: not a valid token.
    pub async fn introspect(&self, token: &str) -> Result<Option<Caller>, CallError> {
        let resp = self
            .internal(
                reqwest::Method::POST,
                "/api/v1/internal/auth/introspect",
                Some(&json!({"token": token})),
            )
            .await?;
        if resp.status().as_u16() == 401 {
            return Ok(None);
        }
        let v: Value = classify(resp).await?.json().await.map_err(transport)?;
        Ok(caller_of(&v))
    }
}

/// The caller an introspection answer describes. Fails closed: a kind this build does not know,
/// or a shape that does not fit the kind, grants nothing.
pub fn caller_of(v: &Value) -> Option<Caller> {
    let org_id = v["org_id"].as_str().filter(|o| !o.is_empty())?.to_owned();
    let token_id = v["token_id"].as_str().filter(|t| !t.is_empty())?.to_owned();
    let subject = v["subject"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("token:{token_id}"));
    match (v["kind"].as_str(), v["node_id"].as_str()) {
        (Some("team"), Some(node)) => Some(Caller::Team {
            org_id,
            node_id: node.to_owned(),
            token_id,
            subject,
        }),
        (Some("org_admin"), None) => Some(Caller::OrgAdmin {
            org_id,
            token_id,
            subject,
        }),
        (kind, _) => {
            tracing::error!(kind = ?kind, "introspection answered an unknown token kind");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspection_fails_closed() {
        let ok =
            json!({"kind": "org_admin", "org_id": "acme", "token_id": "t1", "subject": "alice"});
        assert!(
            matches!(caller_of(&ok), Some(Caller::OrgAdmin { subject, .. }) if subject == "alice")
        );
        let team = json!({"kind": "team", "org_id": "acme", "node_id": "n", "token_id": "t2"});
        assert!(
            matches!(caller_of(&team), Some(Caller::Team { subject, .. }) if subject == "token:t2")
        );
        for unknown in [
            json!({"kind": "platform_admin", "org_id": "acme", "token_id": "t"}),
            json!({"kind": "superuser", "org_id": "acme", "token_id": "t"}),
            json!({"kind": "org_admin", "org_id": "acme", "node_id": "n", "token_id": "t"}),
            json!({"kind": "team", "org_id": "acme", "token_id": "t"}),
            json!({"org_id": "acme", "token_id": "t"}),
            json!({"kind": "org_admin", "token_id": "t"}),
            json!({}),
        ] {
            assert_eq!(caller_of(&unknown), None, "{unknown}");
        }
    }
}

impl ConfigClient {
    /// Records a queued run leased to `lease.runner`; with a repeated idempotency key, answers
    /// the existing run.
    pub async fn create_run(
        &self,
        org: &str,
        team: &str,
        trigger: &Value,
        idempotency_key: &str,
        lease: &RunLease<'_>,
    ) -> Result<(Value, bool), CallError> {
        let resp = self.internal(reqwest::Method::POST, "/api/v1/internal/agent-runs", Some(&json!({"org_id": org, "team_id": team, "trigger": trigger, "idempotency_key": idempotency_key,
                "reply_to": lease.reply_to, "runner": lease.runner, "lease_ms": lease.lease_ms, "deadline_seconds": lease.deadline_seconds}))).await?;
        let created = resp.status().as_u16() == 201;
        let v: Value = classify(resp).await?.json().await.map_err(transport)?;
        Ok((v, created))
    }

    /// Appends audit entries relayed from an outbox to the hash-chained log.
    pub async fn append_audit<T: Serialize>(&self, entries: &[T]) -> Result<(), CallError> {
        let resp = self
            .internal(
                reqwest::Method::POST,
                "/api/v1/internal/audit",
                Some(&json!({ "entries": entries })),
            )
            .await?;
        classify(resp).await?;
        Ok(())
    }

    /// Extends this runner's lease on a run. `Ok(false)`: the lease is lost (another runner
    /// resumed the run, or it finished): stop working on it.
    pub async fn renew_run_lease(
        &self,
        id: &str,
        runner: &str,
        lease_ms: i64,
    ) -> Result<bool, CallError> {
        let resp = self
            .internal(
                reqwest::Method::POST,
                &format!("/api/v1/internal/agent-runs/{id}/lease"),
                Some(&json!({"runner": runner, "lease_ms": lease_ms})),
            )
            .await?;
        if resp.status().as_u16() == 409 {
            return Ok(false);
        }
        classify(resp).await?;
        Ok(true)
    }

    /// One recovery sweep: the runs now leased to `runner` to execute again (those whose runner
    /// stopped), after the config-service failed the ones past their deadline or attempts.
    pub async fn recover_runs(
        &self,
        runner: &str,
        lease_ms: i64,
        max_attempts: i64,
    ) -> Result<Vec<Value>, CallError> {
        let resp = self
            .internal(
                reqwest::Method::POST,
                "/api/v1/internal/agent-runs/recover",
                Some(
                    &json!({"runner": runner, "lease_ms": lease_ms, "max_attempts": max_attempts}),
                ),
            )
            .await?;
        let v: Value = classify(resp).await?.json().await.map_err(transport)?;
        Ok(v["resumed"].as_array().cloned().unwrap_or_default())
    }

    pub async fn update_run(
        &self,
        id: &str,
        status: &str,
        summary: Option<&str>,
        error: Option<&str>,
    ) -> Result<Value, CallError> {
        let resp = self
            .internal(
                reqwest::Method::PATCH,
                &format!("/api/v1/internal/agent-runs/{id}"),
                Some(&json!({"status": status, "summary": summary, "error": error})),
            )
            .await?;
        classify(resp).await?.json().await.map_err(transport)
    }

    /// `Ok(None)` when there is no such run.
    pub async fn get_run(&self, id: &str) -> Result<Option<Value>, CallError> {
        let resp = self
            .internal(
                reqwest::Method::GET,
                &format!("/api/v1/internal/agent-runs/{id}"),
                None,
            )
            .await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        classify(resp)
            .await?
            .json()
            .await
            .map(Some)
            .map_err(transport)
    }
}

/// Calls made on behalf of a user: the caller's own token is forwarded, so the config-service
/// applies its permissions and its audit log names the user.
impl ConfigClient {
    async fn as_user(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Result<(u16, Value), CallError> {
        let mut req = self
            .call(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        if status == 404 || status == 409 || status == 202 {
            return Ok((status, resp.json().await.unwrap_or(Value::Null)));
        }
        let resp = classify(resp).await?;
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Creates a node; `Ok(false)` if it already exists (409).
    pub async fn create_node(
        &self,
        token: &str,
        org: &str,
        body: &Value,
    ) -> Result<(u16, Value), CallError> {
        self.as_user(
            token,
            reqwest::Method::POST,
            &format!("/api/v1/orgs/{org}/nodes"),
            Some(body.clone()),
            None,
        )
        .await
    }

    /// Deletes a node (its layers, routing and tokens go with it); 404 counts as done.
    pub async fn delete_node(&self, token: &str, org: &str, node: &str) -> Result<u16, CallError> {
        Ok(self
            .as_user(
                token,
                reqwest::Method::DELETE,
                &format!("/api/v1/orgs/{org}/nodes/{node}"),
                None,
                None,
            )
            .await?
            .0)
    }

    /// Writes a node's layer over version `if_match`; 202 means it awaits approval.
    pub async fn put_layer(
        &self,
        token: &str,
        org: &str,
        node: &str,
        layer: &Value,
        if_match: &str,
    ) -> Result<(u16, Value), CallError> {
        self.as_user(
            token,
            reqwest::Method::PUT,
            &format!("/api/v1/orgs/{org}/nodes/{node}/config/layer"),
            Some(layer.clone()),
            Some(if_match),
        )
        .await
    }

    /// Issues a team token; answers (token id, secret).
    pub async fn issue_team_token(
        &self,
        token: &str,
        org: &str,
        node: &str,
        label: &str,
    ) -> Result<(String, String), CallError> {
        let (_, v) = self
            .as_user(
                token,
                reqwest::Method::POST,
                &format!("/api/v1/orgs/{org}/nodes/{node}/tokens"),
                Some(json!({"label": label})),
                None,
            )
            .await?;
        match (v["id"].as_str(), v["secret"].as_str()) {
            (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
            _ => Err(CallError::Rejected(format!("no token in the answer: {v}"))),
        }
    }

    pub async fn revoke_team_token(
        &self,
        token: &str,
        org: &str,
        node: &str,
        id: &str,
    ) -> Result<u16, CallError> {
        Ok(self
            .as_user(
                token,
                reqwest::Method::DELETE,
                &format!("/api/v1/orgs/{org}/nodes/{node}/tokens/{id}"),
                None,
                None,
            )
            .await?
            .0)
    }

    /// Every team of every org with its effective config's `pipelines` (service JWT), for the
    /// reconciler.
    pub async fn team_pipelines(&self) -> Result<Value, CallError> {
        let resp = self
            .internal(reqwest::Method::GET, "/api/v1/internal/pipelines", None)
            .await?;
        classify(resp).await?.json().await.map_err(transport)
    }
}

/// What the agent-runner is asked to run: the body of its `POST /api/v1/run`, defined once for
/// it and its client.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub org_id: String,
    pub team_id: String,
    /// The event envelope that triggered the run.
    #[schema(value_type = Object)]
    pub trigger: Value,
    /// Where to post the result: `{"kind": "slack", "channel", "thread_ts"}` or
    /// `{"kind": "github", "repo", "issue_number"}`.
    #[schema(value_type = Option<Object>)]
    pub reply_to: Option<Value>,
    /// The same key always answers the same run.
    pub idempotency_key: String,
}

#[derive(Clone, Debug)]
pub struct RunnerClient {
    base: String,
    http: reqwest::Client,
    key: ServiceKey,
}

impl RunnerClient {
    fn call(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        traced(&self.http, method, url)
    }

    pub fn new(base: &str, key: ServiceKey) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: http_client(),
            key,
        }
    }

    /// Asks for a run; answers the run id.
    pub async fn run(&self, req: &RunRequest) -> Result<String, CallError> {
        let resp = self
            .call(reqwest::Method::POST, format!("{}/api/v1/run", self.base))
            .bearer_auth(self.key.mint("orchestrator", "agent-runner", 60))
            .json(req)
            .send()
            .await
            .map_err(transport)?;
        let v: Value = classify(resp).await?.json().await.map_err(transport)?;
        v["run_id"].as_str().map(str::to_owned).ok_or_else(|| {
            CallError::Unavailable("the agent-runner answered without a run_id".into())
        })
    }
}
