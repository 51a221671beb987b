//! The agent-runner's `POST /api/v1/run`.

use switchyard_api::runs::{Accepted, RunRequest};

use super::{CallError, body, http_client, send, traced};
use crate::auth::ServiceKey;
use crate::telemetry::Calls;

#[derive(Clone, Debug)]
pub struct RunnerClient {
    base: String,
    http: reqwest::Client,
    key: ServiceKey,
    calls: Calls,
}

impl RunnerClient {
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

    /// Asks for a run; answers the run id.
    pub async fn run(&self, req: &RunRequest) -> Result<String, CallError> {
        let req = traced(
            &self.http,
            reqwest::Method::POST,
            format!("{}/api/v1/run", self.base),
        )
        .bearer_auth(self.key.mint("orchestrator", "agent-runner", 60))
        .json(req);
        let resp = send(&self.calls, "agent-runner", req).await?;
        Ok(body::<Accepted>(resp).await?.run_id)
    }
}
