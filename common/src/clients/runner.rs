//! The agent-runner's `POST /api/v1/run`.

use switchyard_api::runs::{Accepted, RunRequest};

use super::{CallError, body, http_client, traced, transport};
use crate::auth::ServiceKey;

#[derive(Clone, Debug)]
pub struct RunnerClient {
    base: String,
    http: reqwest::Client,
    key: ServiceKey,
}

impl RunnerClient {
    pub fn new(base: &str, key: ServiceKey) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: http_client(),
            key,
        }
    }

    /// Asks for a run; answers the run id.
    pub async fn run(&self, req: &RunRequest) -> Result<String, CallError> {
        let resp = traced(
            &self.http,
            reqwest::Method::POST,
            format!("{}/api/v1/run", self.base),
        )
        .bearer_auth(self.key.mint("orchestrator", "agent-runner", 60))
        .json(req)
        .send()
        .await
        .map_err(transport)?;
        Ok(body::<Accepted>(resp).await?.run_id)
    }
}
