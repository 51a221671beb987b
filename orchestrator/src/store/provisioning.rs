//! Provisioning runs and their steps: what the provisioner did, step by step, for the API and the
//! reconciler. A partial unique index allows one active run per team across replicas.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::Publish;
use switchyard_common::time::{now_ms, rfc3339};
use utoipa::ToSchema;

use super::Store;
use super::audit::note;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Step {
    pub seq: i64,
    /// `create_node`, `write_config`, `issue_token`, `store_secret`, `apply_cronjobs`,
    /// `compensate:<step>`, `delete_cronjobs`, `delete_secret`, `delete_node`.
    pub name: String,
    /// `running`, `succeeded`, `failed`, `skipped`.
    pub status: String,
    pub detail: Option<String>,
    pub error: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Run {
    pub id: String,
    pub org_id: String,
    pub team_id: String,
    /// `provision` or `deprovision`.
    pub kind: String,
    /// `pending`, `running`, `succeeded`, `rolled_back`, `failed`.
    pub status: String,
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub steps: Vec<Step>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Succeeded,
    Failed,
    Skipped,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    /// A step failed and every finished step was undone.
    RolledBack,
    /// A step failed and something could not be undone (or a deprovisioning step failed).
    Failed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::RolledBack => "rolled_back",
            RunOutcome::Failed => "failed",
        }
    }
}

impl StepStatus {
    fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

fn step_row(r: &AnyRow) -> Result<Step> {
    Ok(Step {
        seq: r.try_get("seq")?,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        detail: r.try_get("detail")?,
        error: r.try_get("error")?,
        started_at: rfc3339(r.try_get("started_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(rfc3339),
    })
}

const RUN_COLS: &str =
    "id, org_id, team_id, kind, status, error, created_by, created_at, started_at, finished_at";

impl Store {
    pub async fn provisioning_run(&self, org: &str, id: &str) -> Result<Run> {
        let pool = &self.db.pool;
        let r = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM or_provisioning_runs WHERE id = $1 AND org_id = $2"
        ))
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("provisioning run {id}")))?;
        let steps = sqlx::query("SELECT seq, name, status, detail, error, started_at, finished_at FROM or_provisioning_steps WHERE run_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(step_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Run {
            id: r.try_get("id")?,
            org_id: r.try_get("org_id")?,
            team_id: r.try_get("team_id")?,
            kind: r.try_get("kind")?,
            status: r.try_get("status")?,
            error: r.try_get("error")?,
            created_by: r.try_get("created_by")?,
            created_at: rfc3339(r.try_get("created_at")?),
            started_at: r.try_get::<Option<i64>, _>("started_at")?.map(rfc3339),
            finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(rfc3339),
            steps,
        })
    }

    pub async fn provisioning_runs(&self, org: &str, team: Option<&str>) -> Result<Vec<Run>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM or_provisioning_runs WHERE org_id = $1 AND ($2 = '' OR team_id = $2) ORDER BY id DESC LIMIT 200")
            .bind(org)
            .bind(team.unwrap_or(""))
            .fetch_all(&self.db.pool)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.provisioning_run(org, &id).await?);
        }
        Ok(out)
    }

    /// Records a `pending` run with its audit entry (`provision.requested`, ...) in one
    /// transaction, or finds the run this idempotency key already made. Answers the run and
    /// whether it is new.
    pub async fn insert_provisioning_run(
        &self,
        by: &Actor,
        org: &str,
        team: &str,
        kind: &str,
        request: &Value,
        key: Option<&str>,
    ) -> Result<(Run, bool)> {
        let id = new_id();
        let (lock, mut tx) = self.begin().await?;
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO or_provisioning_runs (id, org_id, team_id, kind, idempotency_key, status, request, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8) ON CONFLICT (org_id, idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(&id)
        .bind(org)
        .bind(team)
        .bind(kind)
        .bind(key)
        .bind(request.to_string())
        .bind(by.audit_name())
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = &inserted {
            // The request's config is not copied: the audit shows which run, the run its steps.
            let after = json!({"run": id, "team": team, "idempotency_key": key});
            let (action, target) = (format!("{kind}.requested"), format!("team/{team}"));
            note(&mut tx, Some(org), by, &action, &target, None, Some(&after)).await?;
        }
        tx.commit().await?;
        drop(lock);
        let new = inserted.is_some();
        let id = match inserted {
            Some(id) => id,
            None => sqlx::query_scalar(
                "SELECT id FROM or_provisioning_runs WHERE org_id = $1 AND idempotency_key = $2",
            )
            .bind(org)
            .bind(key)
            .fetch_one(&self.db.pool)
            .await?,
        };
        let run = self.provisioning_run(org, &id).await?;
        Ok((run, new))
    }

    /// Marks a run `running`. False while another run of the team is running (on any replica:
    /// the partial unique index says so); the caller waits and tries again.
    pub async fn set_provisioning_running(&self, id: &str) -> Result<bool> {
        let _lock = self.write_guard().await;
        let r = sqlx::query(
            "UPDATE or_provisioning_runs SET status = 'running', started_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&self.db.pool)
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(d))
                if d.kind() == sqlx::error::ErrorKind::UniqueViolation =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records how the run ended, with its audit entry (`provision.succeeded`,
    /// `provision.rolled_back`, `deprovision.failed`, ...) in the same transaction.
    pub async fn finish_provisioning_run(
        &self,
        id: &str,
        outcome: RunOutcome,
        error: Option<&str>,
    ) -> Result<()> {
        let status = outcome.as_str();
        let (_lock, mut tx) = self.begin().await?;
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "UPDATE or_provisioning_runs SET status = $2, error = $3, finished_at = $4 WHERE id = $1 \
             RETURNING org_id, team_id, kind, created_by",
        )
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((org, team, kind, created_by)) = row {
            let after = json!({"run": id, "team": team, "status": status, "error": error});
            let by = Actor::system(&created_by);
            let (action, target) = (format!("{kind}.{status}"), format!("team/{team}"));
            note(
                &mut tx,
                Some(&org),
                &by,
                &action,
                &target,
                None,
                Some(&after),
            )
            .await?;
            let event_type = match outcome {
                RunOutcome::Succeeded => "provisioning.succeeded",
                RunOutcome::RolledBack => "provisioning.rolled_back",
                RunOutcome::Failed => "provisioning.failed",
            };
            let data = json!({"run_id": id, "kind": kind, "team_id": team, "status": status, "error": error});
            super::outbound::publish(
                &mut tx,
                Publish {
                    org: &org,
                    team: Some(&team),
                    event_type,
                    data,
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that step `seq` of a run started.
    pub async fn begin_step(&self, run: &str, seq: i64, name: &str) -> Result<()> {
        let _lock = self.write_guard().await;
        sqlx::query("INSERT INTO or_provisioning_steps (run_id, seq, name, status, started_at) VALUES ($1, $2, $3, 'running', $4)")
            .bind(run)
            .bind(seq)
            .bind(name)
            .bind(now_ms())
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Records how step `seq` of a run ended.
    pub async fn end_step(
        &self,
        run: &str,
        seq: i64,
        status: StepStatus,
        detail: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        let _lock = self.write_guard().await;
        sqlx::query("UPDATE or_provisioning_steps SET status = $3, detail = $4, error = $5, finished_at = $6 WHERE run_id = $1 AND seq = $2")
            .bind(run)
            .bind(seq)
            .bind(status.as_str())
            .bind(detail)
            .bind(error)
            .bind(now_ms())
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Teams onboarded through Switchyard and not offboarded since, and teams with a provisioning
    /// or deprovisioning run in progress (left alone: their run owns their resources until it
    /// ends).
    pub async fn onboarded_teams(&self) -> Result<(TeamSet, TeamSet)> {
        let rows = sqlx::query("SELECT org_id, team_id, kind, status FROM or_provisioning_runs WHERE status IN ('succeeded', 'pending', 'running') ORDER BY id")
            .fetch_all(&self.db.pool)
            .await?;
        let mut teams = HashSet::new();
        let mut busy = HashSet::new();
        for r in rows {
            let key: (String, String) = (r.try_get("org_id")?, r.try_get("team_id")?);
            let status: String = r.try_get("status")?;
            if status != "succeeded" {
                busy.insert(key);
                continue;
            }
            match r.try_get::<String, _>("kind")?.as_str() {
                "provision" => {
                    teams.insert(key);
                }
                _ => {
                    teams.remove(&key);
                }
            }
        }
        Ok((teams, busy))
    }
}

/// (org, team) pairs.
pub type TeamSet = HashSet<(String, String)>;
