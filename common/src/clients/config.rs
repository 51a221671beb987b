//! The config-service's internal endpoints (service JWT).

use serde::Serialize;
use serde_json::json;
use switchyard_api::auth::{IntrospectRequest, Introspection};
use switchyard_api::config::{NodeConfig, RevealedSecret, TeamPipelines};
use switchyard_api::outbound::{OutboundEvent, OutboxAck, OutboxBatch};
use switchyard_api::routing::{Lookup, LookupRequest, RouteMatch, RoutingVersion};
use switchyard_api::runs::{
    AgentRun, Recover, RecoveredRuns, RenewLease, RunBatch, RunBatchResult, RunContext,
};

use super::{CallError, body, classify, detail, http_client, send, traced};
use crate::auth::ServiceKey;
use crate::http::Caller;
use crate::telemetry::Calls;

#[derive(Clone, Debug)]
pub struct ConfigClient {
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    key: ServiceKey,
    /// The calling service, as the JWT's subject.
    caller: &'static str,
    pub(super) calls: Calls,
}

impl ConfigClient {
    /// The config-service's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn new(base: &str, key: ServiceKey, caller: &'static str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: http_client(),
            key,
            caller,
            calls: Calls::default(),
        }
    }

    /// Records this client's calls into the service's metrics.
    pub fn observed(mut self, calls: Calls) -> Self {
        self.calls = calls;
        self
    }

    pub(super) fn call(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        traced(&self.http, method, url)
    }

    /// Sends a request to an internal endpoint (`path` under the base URL) with a fresh service
    /// JWT and an optional JSON body; a transport failure is `CallError::Unavailable`.
    async fn internal<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, CallError> {
        let mut req = self
            .call(method, format!("{}{path}", self.base))
            .bearer_auth(self.key.mint(self.caller, "config-service", 60));
        if let Some(body) = body {
            req = req.json(body);
        }
        send(&self.calls, "config-service", req).await
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, CallError> {
        self.internal::<()>(reqwest::Method::GET, path, None).await
    }

    /// The owning team of these identifiers; [`Lookup::Unrouted`] when nobody owns them (404),
    /// [`Lookup::Ambiguous`] when they match in several orgs (409: never guess across tenants),
    /// each with the config-service's reason.
    pub async fn lookup(
        &self,
        org: Option<&str>,
        identifiers: &[(String, String)],
    ) -> Result<Lookup, CallError> {
        let req = LookupRequest::new(org, identifiers);
        let path = "/api/v1/internal/routing/lookup";
        let resp = self
            .internal(reqwest::Method::POST, path, Some(&req))
            .await?;
        match resp.status().as_u16() {
            404 => Ok(Lookup::Unrouted(detail(resp).await)),
            409 => Ok(Lookup::Ambiguous(detail(resp).await)),
            _ => Ok(Lookup::Matched(body::<RouteMatch>(resp).await?)),
        }
    }

    pub async fn routing_version(&self) -> Result<i64, CallError> {
        let resp = self.get("/api/v1/internal/routing/version").await?;
        Ok(body::<RoutingVersion>(resp).await?.version)
    }

    /// A node's effective config.
    pub async fn node_config(&self, org: &str, node: &str) -> Result<serde_json::Value, CallError> {
        Ok(self.effective_config(org, node).await?.config)
    }

    /// A node's effective config with its etag (which changes whenever a layer of it does).
    pub async fn effective_config(&self, org: &str, node: &str) -> Result<NodeConfig, CallError> {
        let path = format!("/api/v1/internal/orgs/{org}/nodes/{node}/config");
        body(self.get(&path).await?).await
    }

    /// Everything a team's run starts with, in one call: its effective config, the day's token
    /// budgets and the org secrets the config refers to (agent-runner only).
    pub async fn run_context(&self, org: &str, team: &str) -> Result<RunContext, CallError> {
        let path = format!("/api/v1/internal/orgs/{org}/nodes/{team}/run-context");
        body(self.get(&path).await?).await
    }

    /// Resolves an org admin or team token. `Ok(None)`: not a valid token.
    pub async fn introspect(&self, token: &str) -> Result<Option<Caller>, CallError> {
        let req = IntrospectRequest {
            token: token.to_owned(),
        };
        let path = "/api/v1/internal/auth/introspect";
        let resp = self
            .internal(reqwest::Method::POST, path, Some(&req))
            .await?;
        if resp.status().as_u16() == 401 {
            return Ok(None);
        }
        Ok(caller_of(body::<Introspection>(resp).await?))
    }

    /// Records runs and moves runs in one call (one transaction); each item is answered on its
    /// own. An error here is the whole call's (nothing of it was written).
    pub async fn run_batch(&self, batch: &RunBatch) -> Result<RunBatchResult, CallError> {
        let path = "/api/v1/internal/agent-runs/batch";
        let resp = self
            .internal(reqwest::Method::POST, path, Some(batch))
            .await?;
        body(resp).await
    }

    /// Appends audit entries relayed from an outbox to the hash-chained log.
    pub async fn append_audit<T: Serialize>(&self, entries: &[T]) -> Result<(), CallError> {
        let req = json!({ "entries": entries });
        let resp = self
            .internal(reqwest::Method::POST, "/api/v1/internal/audit", Some(&req))
            .await?;
        classify(resp).await?;
        Ok(())
    }

    /// The config-service's run events waiting to be delivered, oldest first.
    pub async fn pending_run_events(&self, limit: u32) -> Result<Vec<OutboundEvent>, CallError> {
        let path = format!("/api/v1/internal/outbox?limit={limit}");
        Ok(body::<OutboxBatch>(self.get(&path).await?).await?.events)
    }

    /// Tells the config-service these run events are stored on this side; it drops them.
    pub async fn ack_run_events(&self, ids: &[String]) -> Result<(), CallError> {
        let req = OutboxAck { ids: ids.to_vec() };
        let resp = self
            .internal(
                reqwest::Method::POST,
                "/api/v1/internal/outbox/ack",
                Some(&req),
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
        let req = RenewLease {
            runner: runner.to_owned(),
            lease_ms: Some(lease_ms),
        };
        let path = format!("/api/v1/internal/agent-runs/{id}/lease");
        let resp = self
            .internal(reqwest::Method::POST, &path, Some(&req))
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
    ) -> Result<Vec<AgentRun>, CallError> {
        let req = Recover {
            runner: runner.to_owned(),
            lease_ms: Some(lease_ms),
            max_attempts: Some(max_attempts),
            limit: None,
        };
        let path = "/api/v1/internal/agent-runs/recover";
        let resp = self
            .internal(reqwest::Method::POST, path, Some(&req))
            .await?;
        Ok(body::<RecoveredRuns>(resp).await?.resumed)
    }

    /// `Ok(None)` when there is no such run.
    pub async fn get_run(&self, id: &str) -> Result<Option<AgentRun>, CallError> {
        let resp = self
            .get(&format!("/api/v1/internal/agent-runs/{id}"))
            .await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        body(resp).await.map(Some)
    }

    /// The value of an org secret shared with this service. The org having no secret by that
    /// name (404), or not sharing it with this service (403), is `Rejected` with the reason.
    pub async fn secret_value(&self, org: &str, name: &str) -> Result<String, CallError> {
        let path = format!("/api/v1/internal/orgs/{org}/secrets/{name}");
        Ok(body::<RevealedSecret>(self.get(&path).await?).await?.value)
    }

    /// Every team of every org with its effective config's `pipelines`, for the reconciler.
    pub async fn team_pipelines(&self) -> Result<Vec<TeamPipelines>, CallError> {
        body(self.get("/api/v1/internal/pipelines").await?).await
    }
}

/// The caller an introspection answer describes. Fails closed: a kind this build does not know,
/// or a shape that does not fit the kind, grants nothing.
pub fn caller_of(i: Introspection) -> Option<Caller> {
    if i.org_id.is_empty() || i.token_id.is_empty() {
        return None;
    }
    let Introspection {
        kind,
        org_id,
        node_id,
        token_id,
        subject,
    } = i;
    match (kind.as_str(), node_id) {
        ("team", Some(node_id)) => Some(Caller::Team {
            org_id,
            node_id,
            token_id,
            subject,
        }),
        ("org_admin", None) => Some(Caller::OrgAdmin {
            org_id,
            token_id,
            subject,
        }),
        (kind, _) => {
            tracing::error!(kind, "introspection answered an unknown token kind");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(kind: &str, org: &str, node: Option<&str>, token: &str) -> Introspection {
        Introspection {
            kind: kind.into(),
            org_id: org.into(),
            node_id: node.map(str::to_owned),
            token_id: token.into(),
            subject: "alice".into(),
        }
    }

    #[test]
    fn introspection_fails_closed() {
        assert!(matches!(
            caller_of(i("org_admin", "acme", None, "t1")),
            Some(Caller::OrgAdmin { subject, .. }) if subject == "alice"
        ));
        assert!(matches!(
            caller_of(i("team", "acme", Some("n"), "t2")),
            Some(Caller::Team { node_id, .. }) if node_id == "n"
        ));
        for unknown in [
            i("platform_admin", "acme", None, "t"),
            i("superuser", "acme", None, "t"),
            i("org_admin", "acme", Some("n"), "t"),
            i("team", "acme", None, "t"),
            i("org_admin", "", None, "t"),
            i("org_admin", "acme", None, ""),
        ] {
            assert_eq!(caller_of(unknown.clone()), None, "{unknown:?}");
        }
        // A shape that is not an introspection at all never parses into one.
        let missing: Result<Introspection, _> =
            serde_json::from_value(json!({"kind": "org_admin", "org_id": "acme", "token_id": "t"}));
        assert!(missing.is_err());
    }
}
