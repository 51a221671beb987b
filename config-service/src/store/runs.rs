//! The record of agent runs.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_common::ids::new_id;
use switchyard_common::time::now_ms;

use super::{AgentRun, Arg, Filter, Page, Store, json_col, opt_ts, page_limit, ts};
use crate::domain::runs::{is_terminal, transition_allowed};
use crate::error::{Error, Result};

const RUN_COLS: &str = "id, org_id, team_id, status, trigger_payload, idempotency_key, created_at, started_at, finished_at, summary, error";

fn run_row(r: &AnyRow) -> Result<AgentRun> {
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
    })
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
    /// Records a queued run. With an idempotency key already used in the org, returns the
    /// existing run and `false`.
    pub async fn create_run(
        &self,
        org: &str,
        team: &str,
        trigger: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<(AgentRun, bool)> {
        if self.get_node(org, team).await?.is_none() {
            return Err(Error::invalid(
                "/team_id",
                format!("node {team} does not exist in {org}"),
            ));
        }
        let _guard = self.write_guard().await;
        let row = sqlx::query(&format!(
            "INSERT INTO cs_agent_runs (id, org_id, team_id, status, trigger_payload, idempotency_key, created_at) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6) ON CONFLICT (org_id, idempotency_key) DO NOTHING RETURNING {RUN_COLS}"
        ))
        .bind(new_id())
        .bind(org)
        .bind(team)
        .bind(trigger.to_string())
        .bind(idempotency_key)
        .bind(now_ms())
        .fetch_optional(&self.db.pool)
        .await?;
        if let Some(row) = row {
            return Ok((run_row(&row)?, true));
        }
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM cs_agent_runs WHERE org_id = $1 AND idempotency_key = $2"
        ))
        .bind(org)
        .bind(idempotency_key)
        .fetch_one(&self.db.pool)
        .await?;
        Ok((run_row(&row)?, false))
    }

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
        let current = self.get_run(None, id).await?;
        if !transition_allowed(&current.status, status) {
            return Err(Error::conflict(
                "invalid-transition",
                format!(
                    "agent run {id} cannot go from {} to {status}",
                    current.status
                ),
            ));
        }
        let now = now_ms();
        let _guard = self.write_guard().await;
        let row = sqlx::query(&format!(
            "UPDATE cs_agent_runs SET status = $3, \
               started_at = CASE WHEN $3 = 'running' THEN $4 ELSE started_at END, \
               finished_at = CASE WHEN $5 = 1 THEN $4 ELSE finished_at END, \
               summary = COALESCE($6, summary), error = COALESCE($7, error) \
             WHERE id = $1 AND status = $2 RETURNING {RUN_COLS}"
        ))
        .bind(id)
        .bind(&current.status)
        .bind(status)
        .bind(now)
        .bind(if is_terminal(status) { 1i64 } else { 0i64 })
        .bind(summary)
        .bind(error)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| {
            Error::conflict(
                "invalid-transition",
                format!("agent run {id} changed while being updated; read it again"),
            )
        })?;
        run_row(&row)
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
