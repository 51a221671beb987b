//! The orchestrator's internal endpoints (agent-runner → orchestrator).

use switchyard_api::events::{JoinedSignals, TeamEvent, TeamEventsQuery};

use super::{CallError, body, http_client, send, traced};
use crate::auth::ServiceKey;
use crate::telemetry::Calls;

#[derive(Clone, Debug)]
pub struct OrchestratorClient {
    base: String,
    http: reqwest::Client,
    key: ServiceKey,
    calls: Calls,
}

impl OrchestratorClient {
    pub fn new(base: &str, key: ServiceKey) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: http_client(),
            key,
            calls: Calls::default(),
        }
    }

    /// Records this client's calls into the service's metrics.
    pub fn observed(mut self, calls: Calls) -> Self {
        self.calls = calls;
        self
    }

    /// A request to an internal endpoint (`path` under the base URL) with the agent-runner's
    /// service JWT.
    fn internal(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        traced(&self.http, method, format!("{}{path}", self.base)).bearer_auth(self.key.mint(
            "agent-runner",
            "orchestrator",
            60,
        ))
    }

    /// The team's recent events, newest first.
    pub async fn team_events(
        &self,
        org: &str,
        team: &str,
        q: &TeamEventsQuery,
    ) -> Result<Vec<TeamEvent>, CallError> {
        let req = self
            .internal(
                reqwest::Method::GET,
                &format!("/api/v1/internal/orgs/{org}/teams/{team}/events"),
            )
            .query(q);
        let resp = send(&self.calls, "orchestrator", req).await?;
        body(resp).await
    }

    /// The signals that joined the incident of the run `event_id` started since it last asked;
    /// they are that run's from now on.
    pub async fn joined_signals(
        &self,
        org: &str,
        event_id: &str,
    ) -> Result<JoinedSignals, CallError> {
        let req = self.internal(
            reqwest::Method::POST,
            &format!("/api/v1/internal/orgs/{org}/events/{event_id}/joined-signals"),
        );
        let resp = send(&self.calls, "orchestrator", req).await?;
        body(resp).await
    }
}
