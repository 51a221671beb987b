//! Agent runs: recorded by the agent-runner (internal), read by admins and the team itself.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiJson, ApiQuery, Caller, Service};
use crate::domain::runs::STATUSES;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{AgentRun, NewRun, Page, RunQuery};
use switchyard_api::runs::{
    BatchOutcome, CreateRun, Recover, RecoveredRuns, RenewLease, RunBatch, RunBatchResult,
    UpdateRun,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/internal/agent-runs", post(create))
        .route("/api/v1/internal/agent-runs/{id}", patch(update))
        .route("/api/v1/internal/agent-runs/{id}/lease", post(renew_lease))
        .route("/api/v1/internal/agent-runs/recover", post(recover))
        .route("/api/v1/internal/agent-runs/batch", post(batch))
        .route("/api/v1/orgs/{org}/agent-runs", get(list))
        .route("/api/v1/orgs/{org}/agent-runs/{id}", get(get_one))
        .route("/api/v1/orgs/{org}/agent-runs/{id}/cancel", post(cancel))
}

/// Only the agent-runner records and moves runs.
const RUNNERS: &[&str] = &["agent-runner"];

/// Default lease of a run (milliseconds).
const DEFAULT_LEASE_MS: i64 = 30_000;

fn lease_ms(v: Option<i64>) -> Result<i64> {
    match v {
        None => Ok(DEFAULT_LEASE_MS),
        Some(ms) if (100..=3_600_000).contains(&ms) => Ok(ms),
        Some(_) => Err(Error::invalid("/lease_ms", "must be 100 to 3,600,000 ms")),
    }
}

/// Record a run (service JWT): `queued`, or `running` when its runner starts it at once. 201 when new, 200 with the existing run for a repeated key.
#[utoipa::path(post, path = "/api/v1/internal/agent-runs", tag = "internal", request_body = CreateRun,
    responses((status = 201, body = AgentRun), (status = 200, description = "Existing run for this idempotency key", body = AgentRun)),
    security(("service_jwt" = [])))]
pub async fn create(
    State(state): State<AppState>,
    service: Service,
    ApiJson(req): ApiJson<CreateRun>,
) -> Result<(StatusCode, Json<AgentRun>)> {
    service.require(RUNNERS)?;
    let (run, created) = state.store.create_run(&new_run(&req)?).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(run),
    ))
}

/// Move a run to a new status (service JWT). Invalid transitions answer 409.
#[utoipa::path(patch, path = "/api/v1/internal/agent-runs/{id}", tag = "internal", params(("id" = String, Path)), request_body = UpdateRun,
    responses((status = 200, body = AgentRun), (status = 409, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn update(
    State(state): State<AppState>,
    service: Service,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateRun>,
) -> Result<Json<AgentRun>> {
    service.require(RUNNERS)?;
    check_update(&req)?;
    Ok(Json(state.store.record_run(&id, &req).await?))
}

/// Most items of one batch.
const MAX_BATCH: usize = 1000;

/// Record runs and move runs in one transaction (service JWT): each item answered as its
/// single-run call would be. How the agent-runner records what it starts and finishes when many
/// runs arrive together.
#[utoipa::path(post, path = "/api/v1/internal/agent-runs/batch", tag = "internal", request_body = RunBatch,
    responses((status = 200, body = RunBatchResult), (status = 422, description = "More than 1,000 items", body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn batch(
    State(state): State<AppState>,
    service: Service,
    ApiJson(req): ApiJson<RunBatch>,
) -> Result<Json<RunBatchResult>> {
    service.require(RUNNERS)?;
    if req.create.len() + req.update.len() > MAX_BATCH {
        return Err(Error::invalid(
            "/create",
            format!("at most {MAX_BATCH} items (create and update together)"),
        ));
    }
    // Items that are not valid are answered without being written; the rest go in one batch.
    let creates: Vec<Result<NewRun>> = req.create.iter().map(new_run).collect();
    let moves: Vec<Result<(&str, &UpdateRun)>> = req
        .update
        .iter()
        .map(|u| check_update(&u.update).map(|()| (u.id.as_str(), &u.update)))
        .collect();
    let valid_new: Vec<NewRun> = creates
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let valid_moves: Vec<(&str, &UpdateRun)> = moves
        .iter()
        .filter_map(|m| m.as_ref().ok().copied())
        .collect();
    let written = state.store.write_runs(&valid_new, &valid_moves).await?;
    let mut created = written.created.into_iter();
    let mut updated = written.updated.into_iter();
    let create = creates
        .into_iter()
        .map(|c| match c {
            Err(e) => outcome_of(Err(e)),
            Ok(_) => outcome_of(
                created
                    .next()
                    .expect("one answer per run")
                    .map(|(run, new)| (if new { 201 } else { 200 }, run.id)),
            ),
        })
        .collect();
    let update = moves
        .into_iter()
        .map(|m| match m {
            Err(e) => outcome_of(Err(e)),
            Ok(_) => outcome_of(
                updated
                    .next()
                    .expect("one answer per move")
                    .map(|run| (200, run.id)),
            ),
        })
        .collect();
    Ok(Json(RunBatchResult { create, update }))
}

/// An item's answer: its status and run, or the problem's status and detail.
fn outcome_of(r: Result<(u16, String)>) -> BatchOutcome {
    match r {
        Ok((status, id)) => BatchOutcome {
            status,
            run_id: Some(id),
            detail: None,
        },
        Err(e) => {
            let p = e.to_problem();
            let fields = p
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.pointer, f.detail))
                .collect::<Vec<_>>()
                .join("; ");
            BatchOutcome {
                status: p.status,
                run_id: None,
                detail: Some(p.detail.filter(|_| fields.is_empty()).unwrap_or(fields)),
            }
        }
    }
}

/// The run to record, checked.
fn new_run(req: &CreateRun) -> Result<NewRun<'_>> {
    if req.deadline_seconds.is_some_and(|d| d <= 0) {
        return Err(Error::invalid("/deadline_seconds", "must be positive"));
    }
    if req.running && req.runner.is_none() {
        return Err(Error::invalid(
            "/running",
            "a run is recorded running only with the runner that executes it (`runner`)",
        ));
    }
    Ok(NewRun {
        org: &req.org_id,
        team: &req.team_id,
        trigger: &req.trigger,
        idempotency_key: req.idempotency_key.as_deref(),
        reply_to: req.reply_to.as_ref(),
        runner: req.runner.as_deref(),
        lease_ms: lease_ms(req.lease_ms)?,
        deadline_ms: req.deadline_seconds.map(|s| s.saturating_mul(1000)),
        running: req.running,
        config_etag: req.config_etag.as_deref(),
    })
}

fn check_update(u: &UpdateRun) -> Result<()> {
    if STATUSES.contains(&u.status.as_str()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "/status",
            format!("must be one of {}", STATUSES.join(", ")),
        ))
    }
}

/// Extend the runner's lease on a run it executes (service JWT). 409 when the lease is not the
/// runner's any more (another runner resumed the run, or it finished): stop working on it.
#[utoipa::path(post, path = "/api/v1/internal/agent-runs/{id}/lease", tag = "internal", params(("id" = String, Path)), request_body = RenewLease,
    responses((status = 204), (status = 409, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn renew_lease(
    State(state): State<AppState>,
    service: Service,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenewLease>,
) -> Result<StatusCode> {
    service.require(RUNNERS)?;
    if state
        .store
        .renew_run_lease(&id, &req.runner, lease_ms(req.lease_ms)?)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::conflict(
            "lease-lost",
            format!("{} no longer holds the lease of run {id}", req.runner),
        ))
    }
}

/// One recovery sweep (service JWT): fail unfinished runs past their deadline or out of attempts,
/// and lease to the caller the runs whose runner stopped renewing.
#[utoipa::path(post, path = "/api/v1/internal/agent-runs/recover", tag = "internal", request_body = Recover,
    responses((status = 200, body = RecoveredRuns)),
    security(("service_jwt" = [])))]
pub async fn recover(
    State(state): State<AppState>,
    service: Service,
    ApiJson(req): ApiJson<Recover>,
) -> Result<Json<RecoveredRuns>> {
    service.require(RUNNERS)?;
    let r = state
        .store
        .recover_runs(
            &req.runner,
            lease_ms(req.lease_ms)?,
            req.max_attempts.unwrap_or(3).clamp(1, 100),
            req.limit.unwrap_or(32).clamp(1, 500),
        )
        .await?;
    for run in &r.failed {
        tracing::warn!(run = %run.id, org = %run.org_id, team = %run.team_id, error = ?run.error, "unfinished run failed by recovery");
    }
    Ok(Json(RecoveredRuns {
        resumed: r.resumed,
        failed: r.failed,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    pub team: Option<String>,
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 500, default 50.
    #[serde(default, deserialize_with = "switchyard_common::http::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Runs of the org, newest first. A team token sees its own team's runs only.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/agent-runs", tag = "agent-runs", params(("org" = String, Path), RunsParams),
    responses((status = 200, body = Page<AgentRun>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    ApiQuery(p): ApiQuery<RunsParams>,
) -> Result<Json<Page<AgentRun>>> {
    let team = match &caller {
        Caller::Team {
            org_id, node_id, ..
        } if *org_id == org => {
            if p.team.as_ref().is_some_and(|t| t != node_id) {
                return Err(Error::not_found(format!(
                    "node {}",
                    p.team.unwrap_or_default()
                )));
            }
            Some(node_id.clone())
        }
        _ => {
            caller.authorize_org_admin(&org)?;
            p.team
        }
    };
    let q = RunQuery {
        team,
        status: p.status,
        cursor: p.cursor,
        limit: p.limit,
    };
    Ok(Json(state.store.list_runs(&org, &q).await?))
}

/// The run if `caller` may see it: an org admin of `org` any run of the org, a team token its
/// own team's runs; anyone else 404.
async fn visible_run(state: &AppState, caller: &Caller, org: &str, id: &str) -> Result<AgentRun> {
    match caller {
        Caller::Team {
            org_id, node_id, ..
        } if org_id == org => {
            let run = state.store.get_run(Some(org), id).await?;
            if run.team_id != *node_id {
                return Err(Error::not_found(format!("agent run {id}")));
            }
            Ok(run)
        }
        _ => {
            caller.authorize_org_admin(org)?;
            state.store.get_run(Some(org), id).await
        }
    }
}

/// Cancel a queued or running run (its org's admins, or its team). The run ends `cancelled` at
/// once; the agent-runner executing it loses its lease and stops at its next renewal (within a
/// third of the lease), dropping the provider request in flight. A finished run answers 409.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/agent-runs/{id}/cancel", tag = "agent-runs", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AgentRun), (status = 404, body = switchyard_common::problem::Problem),
        (status = 409, description = "The run has finished", body = switchyard_common::problem::Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<AgentRun>> {
    visible_run(&state, &caller, &org, &id).await?;
    let why = format!("cancelled by {}", caller.subject());
    Ok(Json(
        state
            .store
            .update_run(&id, "cancelled", None, Some(&why))
            .await?,
    ))
}

/// One run.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/agent-runs/{id}", tag = "agent-runs", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AgentRun), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, id)): Path<(String, String)>,
) -> Result<Json<AgentRun>> {
    Ok(Json(visible_run(&state, &caller, &org, &id).await?))
}
