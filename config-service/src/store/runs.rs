//! The record of agent runs.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_api::outbound::OutboundEvent;
use switchyard_api::runs::{RunUsage, UpdateRun};
use switchyard_common::outbox::{Outbox, Publish};
use switchyard_common::time::now_ms;

use super::{AgentRun, Arg, Filter, Page, Store, json_col, opt_ts, page_limit, ts};
use crate::error::{Error, Result};

pub(super) const RUN_COLS: &str = "id, org_id, team_id, status, trigger_payload, idempotency_key, created_at, started_at, finished_at, summary, error, reply_to, lease_owner, lease_until, attempts, deadline_at, transcript, input_tokens, output_tokens, config_etag";

pub(super) fn run_row(r: &AnyRow) -> Result<AgentRun> {
    Ok(AgentRun {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        team_id: r.try_get("team_id")?,
        status: r.try_get("status")?,
        trigger: json_col(r, "trigger_payload")?,
        idempotency_key: r.try_get("idempotency_key")?,
        created_at: ts(r, "created_at")?,
        started_at: opt_ts(r, "started_at")?,
        finished_at: opt_ts(r, "finished_at")?,
        summary: r.try_get("summary")?,
        error: r.try_get("error")?,
        reply_to: r
            .try_get::<Option<String>, _>("reply_to")?
            .and_then(|s| serde_json::from_str(&s).ok()),
        lease_owner: r.try_get("lease_owner")?,
        lease_until: opt_ts(r, "lease_until")?,
        attempts: r.try_get("attempts")?,
        deadline_at: opt_ts(r, "deadline_at")?,
        transcript: r
            .try_get::<Option<String>, _>("transcript")?
            .and_then(|s| serde_json::from_str(&s).ok()),
        usage: RunUsage {
            input_tokens: r.try_get("input_tokens")?,
            output_tokens: r.try_get("output_tokens")?,
        },
        config_etag: r.try_get("config_etag")?,
    })
}

/// Run events wait here until the orchestrator takes them over and delivers them (ADR 0011).
pub const OUTBOX: Outbox = Outbox("cs_outbox");

/// The event a run's new status publishes: `run.started` when it starts running, `run.<status>`
/// when it finishes.
pub(super) fn run_event(run: &AgentRun) -> Option<Publish<'_>> {
    let event_type = match run.status.as_str() {
        "running" => "run.started",
        "succeeded" => "run.succeeded",
        "failed" => "run.failed",
        "cancelled" => "run.cancelled",
        _ => return None,
    };
    Some(Publish {
        org: &run.org_id,
        team: Some(&run.team_id),
        event_type,
        data: serde_json::json!({
            "run_id": run.id,
            "status": run.status,
            "trigger_event_id": run.trigger.get("event_id"),
            "idempotency_key": run.idempotency_key,
            "summary": run.summary,
            "error": run.error,
            "created_at": run.created_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "attempts": run.attempts,
            "usage": run.usage,
            "config_etag": run.config_etag,
        }),
    })
}

/// Publishes the run's event, if its status has one, in the transaction that set the status.
async fn publish(tx: &mut sqlx::Transaction<'static, sqlx::Any>, run: &AgentRun) -> Result<()> {
    if let Some(event) = run_event(run) {
        OUTBOX.publish(tx, event, None).await?;
    }
    Ok(())
}

/// A run to record. With `runner`, the run is leased to that agent-runner from the start.
#[derive(Debug, Clone, Default)]
pub struct NewRun<'a> {
    pub org: &'a str,
    pub team: &'a str,
    pub trigger: &'a Value,
    pub idempotency_key: Option<&'a str>,
    pub reply_to: Option<&'a Value>,
    pub runner: Option<&'a str>,
    pub lease_ms: i64,
    /// How long the run may take in all, resumptions included.
    pub deadline_ms: Option<i64>,
    /// Recorded `running` (started now) rather than `queued`.
    pub running: bool,
    pub config_etag: Option<&'a str>,
}

/// What a recovery sweep did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Runs whose lease lapsed, now leased to the sweeping runner to execute again.
    pub resumed: Vec<AgentRun>,
    /// Runs failed: past their deadline, or out of attempts.
    pub failed: Vec<AgentRun>,
}

/// Filters for listing runs.
#[derive(Debug, Default, Clone)]
pub struct RunQuery {
    pub team: Option<String>,
    pub status: Option<String>,
    /// Runs older than this id (from `next_cursor`).
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

impl Store {
    pub async fn get_run(&self, org: Option<&str>, id: &str) -> Result<AgentRun> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM cs_agent_runs WHERE id = $1 AND ($2 = '' OR org_id = $2)"
        ))
        .bind(id)
        .bind(org.unwrap_or(""))
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("agent run {id}")))?;
        run_row(&row)
    }

    /// Moves a run to `status` if the transition is allowed (compare-and-set, so two updaters
    /// cannot both move it).
    pub async fn update_run(
        &self,
        id: &str,
        status: &str,
        summary: Option<&str>,
        error: Option<&str>,
    ) -> Result<AgentRun> {
        let mut u = UpdateRun::to(status);
        u.summary = summary.map(str::to_owned);
        u.error = error.map(str::to_owned);
        self.record_run(id, &u).await
    }

    /// Input and output tokens the runs of `org` (of `team` only, when given) recorded on the UTC
    /// day starting at `day` (ms).
    pub async fn tokens_used(&self, org: &str, team: Option<&str>, day: i64) -> Result<i64> {
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT tokens FROM cs_token_usage WHERE org_id = $1 AND team_id = $2 AND day = $3",
        )
        .bind(org)
        .bind(team.unwrap_or(""))
        .bind(day)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(used.unwrap_or(0))
    }

    /// Extends `runner`'s lease on a run it is executing. False when the lease is no longer its
    /// own (another runner resumed the run, or it finished): stop working on it.
    pub async fn renew_run_lease(&self, id: &str, runner: &str, lease_ms: i64) -> Result<bool> {
        let _guard = self.write_guard().await;
        Ok(sqlx::query(
            "UPDATE cs_agent_runs SET lease_until = $3 \
             WHERE id = $1 AND lease_owner = $2 AND status IN ('queued', 'running')",
        )
        .bind(id)
        .bind(runner)
        .bind(now_ms() + lease_ms)
        .execute(&self.db.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// One recovery sweep, safe from any number of runners at once: unfinished runs past their
    /// deadline are failed; runs whose lease lapsed (their runner died) are failed once they used
    /// `max_attempts`, and otherwise leased to `runner` to execute again (`running`, started now: the
    /// runner executes what it resumes at once).
    pub async fn recover_runs(
        &self,
        runner: &str,
        lease_ms: i64,
        max_attempts: i64,
        limit: i64,
    ) -> Result<Recovered> {
        let now = now_ms();
        let (_lock, mut tx) = self.db.begin_write().await?;
        let failed_rows = sqlx::query(&format!(
            "UPDATE cs_agent_runs SET status = 'failed', finished_at = $1, lease_owner = NULL, lease_until = NULL, \
               error = CASE WHEN deadline_at IS NOT NULL AND deadline_at < $1 \
                 THEN 'the run passed its deadline without finishing (its agent-runner stopped or was too slow)' \
                 ELSE 'the agent-runner executing the run stopped ' || CAST(attempts AS TEXT) || ' times; gave up' END \
             WHERE status IN ('queued', 'running') \
               AND ((deadline_at IS NOT NULL AND deadline_at < $1) \
                    OR (lease_until IS NOT NULL AND lease_until < $1 AND attempts >= $2)) \
             RETURNING {RUN_COLS}"
        ))
        .bind(now)
        .bind(max_attempts)
        .fetch_all(&mut *tx)
        .await?;
        let lock = match self.db.backend {
            switchyard_common::db::Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            switchyard_common::db::Backend::Sqlite => "",
        };
        let resumed_rows = sqlx::query(&format!(
            "UPDATE cs_agent_runs SET status = 'running', started_at = $1, lease_owner = $2, lease_until = $3, \
               attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM cs_agent_runs \
               WHERE status IN ('queued', 'running') AND lease_until IS NOT NULL AND lease_until < $1 \
               ORDER BY lease_until LIMIT $4 {lock}) \
             RETURNING {RUN_COLS}"
        ))
        .bind(now)
        .bind(runner)
        .bind(now + lease_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let failed = failed_rows
            .iter()
            .map(run_row)
            .collect::<Result<Vec<_>>>()?;
        for run in &failed {
            publish(&mut tx, run).await?;
        }
        tx.commit().await?;
        Ok(Recovered {
            resumed: resumed_rows.iter().map(run_row).collect::<Result<_>>()?,
            failed,
        })
    }

    /// Runs of an org, newest first.
    pub async fn list_runs(&self, org: &str, q: &RunQuery) -> Result<Page<AgentRun>> {
        let mut f = Filter::default();
        f.push("org_id = $?", Arg::Text(org.to_owned()));
        if let Some(t) = &q.team {
            f.push("team_id = $?", Arg::Text(t.clone()));
        }
        if let Some(s) = &q.status {
            f.push("status = $?", Arg::Text(s.clone()));
        }
        if let Some(c) = &q.cursor {
            f.push("id < $?", Arg::Text(c.clone()));
        }
        let limit = page_limit(q.limit, 50, 500);
        let sql = format!(
            "SELECT {RUN_COLS} FROM cs_agent_runs WHERE {} ORDER BY id DESC LIMIT {}",
            f.sql(),
            limit + 1
        );
        let rows = f.bind(sqlx::query(&sql)).fetch_all(&self.db.pool).await?;
        let mut items = rows.iter().map(run_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

impl Store {
    /// Run events waiting for the orchestrator, oldest first.
    pub async fn pending_run_events(&self, limit: i64) -> Result<Vec<OutboundEvent>> {
        Ok(OUTBOX.pending(&self.db.pool, limit).await?)
    }

    /// Drops run events the orchestrator has taken over; answers how many were still here.
    pub async fn ack_run_events(&self, ids: &[String]) -> Result<u64> {
        let (_guard, mut tx) = self.db.begin_write().await?;
        let n = OUTBOX.delete(&mut tx, ids).await?;
        tx.commit().await?;
        Ok(n)
    }
}
