//! Starting runs: `POST /api/v1/run` (one) and `POST /api/v1/run/batch` (many in one call, each
//! answered as the single endpoint would have).
//!
//! The orchestrator starts every run a dispatch round begins in one batch: one request, one token
//! check and one answer instead of one each (issue 11). Each run of a batch is started exactly as
//! a single request starts it (its config read, its slot reserved, recorded before the answer,
//! then executed), concurrently with the others, so the config-service records the batch's new
//! runs together.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use switchyard_api::runs::{Accepted, CreateRun, RunRequest, StartOutcome, StartRuns, StartedRuns};
use switchyard_common::error::{Error, Result};
use switchyard_common::http::{ApiJson, Service};
use switchyard_common::otel;
use switchyard_common::problem::Problem;
use switchyard_common::trace::TraceContext;

use crate::{AppState, DEFAULT_CONCURRENT_RUNS, release, reserve, runs, unavailable};

/// Start a run (service JWT). 202 with the run id; the same idempotency key answers the same run.
#[utoipa::path(post, path = "/api/v1/run", operation_id = "run", tag = "runs", request_body = RunRequest,
    responses((status = 202, body = Accepted), (status = 429, description = "The team is at its concurrent-run quota", body = Problem)),
    security(("service_jwt" = [])))]
pub async fn accept(
    State(state): State<AppState>,
    s: Service,
    ApiJson(req): ApiJson<RunRequest>,
) -> Result<Response> {
    // Runs are started by the orchestrator only.
    s.require(&["orchestrator"])?;
    let accepted = start(&state, req).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Start several runs in one call (service JWT): at most 256, of different events. 200 with one
/// answer per run, in order, each what `POST /api/v1/run` would have answered for it (202 with
/// the run id, 429 at the team's concurrent-run quota with `retry_after`, ...). A run's failure
/// is its own: the others still start.
#[utoipa::path(post, path = "/api/v1/run/batch", operation_id = "run_batch", tag = "runs", request_body = StartRuns,
    responses((status = 200, body = StartedRuns), (status = 400, description = "No runs, or more than 256", body = Problem)),
    security(("service_jwt" = [])))]
pub async fn accept_batch(
    State(state): State<AppState>,
    s: Service,
    ApiJson(batch): ApiJson<StartRuns>,
) -> Result<Json<StartedRuns>> {
    s.require(&["orchestrator"])?;
    if batch.runs.is_empty() || batch.runs.len() > StartRuns::MOST {
        return Err(Error::BadRequest(format!(
            "a batch carries 1 to {} runs, not {}",
            StartRuns::MOST,
            batch.runs.len()
        )));
    }
    let started = batch.runs.into_iter().map(|item| {
        let state = state.clone();
        // Each run continues its own event's trace (under a server span of its own, as a call
        // of its own would have), not the batch call's.
        let parent = item.traceparent.as_deref().and_then(TraceContext::parse);
        let (span, trace) = match &parent {
            Some(p) => {
                let ctx = p.child();
                let span = otel::Span::start(
                    "agent-runner",
                    "POST /api/v1/run/batch",
                    otel::SpanKind::Server,
                    &ctx,
                    Some(&p.span_id),
                );
                (Some(span), ctx)
            }
            None => (
                None,
                TraceContext::current().unwrap_or_else(TraceContext::new_root),
            ),
        };
        async move {
            let answer = answer(trace.scope(start(&state, item.run)).await);
            if let Some(mut span) = span {
                span.attr("http.response.status_code", i64::from(answer.status));
                if answer.status >= 400 {
                    span.error(answer.detail.clone().unwrap_or_default());
                }
                span.end();
            }
            answer
        }
    });
    let results = futures_util::future::join_all(started).await;
    Ok(Json(StartedRuns { results }))
}

/// A run's outcome as the single endpoint's status and body would have said it.
fn answer(started: Result<Accepted>) -> StartOutcome {
    match started {
        Ok(a) => StartOutcome {
            status: StatusCode::ACCEPTED.as_u16(),
            run_id: Some(a.run_id),
            started: Some(a.started),
            ..Default::default()
        },
        Err(e) => {
            if e.status_code().is_server_error() {
                tracing::error!(error = %e, "starting a run of a batch failed");
            }
            let problem = e.to_problem();
            StartOutcome {
                status: e.status_code().as_u16(),
                detail: problem.detail,
                retry_after: problem.retry_after,
                ..Default::default()
            }
        }
    }
}

/// Starts one run: reads the team's config, reserves its slot, records the run (the same
/// idempotency key answers the run already recorded) and executes it in its own task.
async fn start(state: &AppState, req: RunRequest) -> Result<Accepted> {
    // The config is read per run: a change applies to the next run without a restart.
    let ctx = state
        .run_context(&req.org_id, &req.team_id)
        .await
        .map_err(unavailable)?;
    let limit = ctx
        .config
        .pointer("/quotas/concurrent_runs")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_CONCURRENT_RUNS);
    if !reserve(state, &req.org_id, &req.team_id, limit) {
        return Err(Error::TooManyRequests {
            detail: format!("team {} is at its {limit} concurrent runs", req.team_id),
            retry_after: 5,
        });
    }
    let recorded = state
        .record_new_run(CreateRun {
            org_id: req.org_id.clone(),
            team_id: req.team_id.clone(),
            trigger: req.trigger.clone(),
            idempotency_key: Some(req.idempotency_key.clone()),
            reply_to: req.reply_to.clone(),
            runner: Some(state.runner_id.to_string()),
            lease_ms: Some(state.lease_ms()),
            deadline_seconds: Some(state.replies.run_deadline_seconds.max(1) as i64),
            // Executed at once: recorded running, with the config it runs with.
            running: true,
            config_etag: Some(ctx.etag.clone()),
        })
        .await;
    let (run_id, created) = match recorded {
        Ok(r) => r,
        Err(e) => {
            release(state, &req.org_id, &req.team_id);
            return Err(unavailable(e));
        }
    };
    if !created {
        release(state, &req.org_id, &req.team_id);
        return Ok(Accepted {
            run_id,
            started: false,
        });
    }
    let task_state = state.clone();
    let id = run_id.clone();
    // The run outlives the request: it keeps the request's trace for its config-service calls.
    let parent = TraceContext::current();
    let trace = parent
        .as_ref()
        .map(TraceContext::child)
        .unwrap_or_else(TraceContext::new_root);
    let mut span = otel::Span::start(
        "agent-runner",
        "agent.run",
        otel::SpanKind::Internal,
        &trace,
        parent.as_ref().map(|p| p.span_id.as_str()),
    );
    span.attr("switchyard.run", run_id.clone());
    span.attr("switchyard.team", req.team_id.clone());
    tokio::spawn(trace.scope(async move {
        runs::execute_leased(&task_state, &id, &req, &ctx).await;
        span.end();
    }));
    Ok(Accepted {
        run_id,
        started: true,
    })
}
