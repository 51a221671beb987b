//! The agent-runner's `POST /api/v1/run` and `POST /api/v1/run/batch`.

use switchyard_api::runs::{Accepted, RunRequest, StartOutcome, StartedRuns};

use super::{CallError, body, failure, http_client, send, traced};
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

    /// Asks for several runs in one call. `batch` is a serialised `StartRuns`; the answers come one
    /// per run, in order (see [`outcome`]). A runner without the batch endpoint answers
    /// `CallError::Rejected` naming 404 or 405.
    pub async fn run_batch(&self, batch: Vec<u8>) -> Result<Vec<StartOutcome>, CallError> {
        let req = traced(
            &self.http,
            reqwest::Method::POST,
            format!("{}/api/v1/run/batch", self.base),
        )
        .bearer_auth(self.key.mint("orchestrator", "agent-runner", 60))
        .header("content-type", "application/json")
        .body(batch);
        let resp = send(&self.calls, "agent-runner", req).await?;
        if matches!(resp.status().as_u16(), 404 | 405) {
            return Err(CallError::Rejected(format!(
                "{}: the agent-runner has no batch endpoint",
                resp.status()
            )));
        }
        Ok(body::<StartedRuns>(resp).await?.results)
    }
}

/// What one run of a batch came to, as [`RunnerClient::run`] would have answered it.
pub fn outcome(answer: StartOutcome) -> Result<String, CallError> {
    match answer.status {
        200..=299 => answer
            .run_id
            .ok_or_else(|| CallError::Unavailable("an accepted run without its id".into())),
        status => {
            let message = format!("{status}: {}", answer.detail.unwrap_or_default());
            Err(failure(status, answer.retry_after, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, retry_after: Option<u64>) -> StartOutcome {
        StartOutcome {
            status,
            run_id: (status == 202).then(|| "run-1".to_owned()),
            started: (status == 202).then_some(true),
            detail: (status != 202).then(|| "why".to_owned()),
            retry_after,
        }
    }

    /// A run of a batch fails as the single call's answer would have.
    #[test]
    fn a_batched_answer_means_what_its_status_would() {
        assert_eq!(outcome(answered(202, None)), Ok("run-1".to_owned()));
        assert_eq!(
            outcome(answered(429, Some(5))),
            Err(CallError::Throttled(Some(5)))
        );
        assert_eq!(
            outcome(answered(503, Some(5))),
            Err(CallError::Overloaded {
                message: "503: why".into(),
                retry_after: 5
            })
        );
        assert_eq!(
            outcome(answered(500, None)),
            Err(CallError::Unavailable("500: why".into()))
        );
        assert_eq!(
            outcome(answered(400, None)),
            Err(CallError::Rejected("400: why".into()))
        );
        // An accepted run without its id is the runner's fault: retry later.
        let mut no_id = answered(202, None);
        no_id.run_id = None;
        assert!(matches!(outcome(no_id), Err(CallError::Unavailable(_))));
    }
}
