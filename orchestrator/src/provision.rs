//! Onboarding and offboarding teams as recorded runs of steps, with rollback.
//!
//! Provisioning: create the team node → write its config layer → issue its team token → store the
//! token and the config-service URL in a Kubernetes Secret → apply the team's pipeline CronJobs.
//! A failing step compensates every finished step in reverse (delete the CronJobs, the Secret,
//! revoke the token, clear the layer, delete the node); the run ends `rolled_back` with the cause,
//! or `failed` naming what could not be undone. Deprovisioning deletes the CronJobs and the Secret
//! and deletes the node (which revokes the team's tokens and removes its routing); every part of it
//! tolerates "already gone", so it can run twice. Without a cluster the Kubernetes steps are
//! recorded as `skipped: no cluster configured`.
//!
//! Config-service calls carry the requesting admin's own token: its permissions apply and the
//! config-service's audit log names that admin. The token is held in memory for the run only.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use switchyard_common::clients::CallError;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::ids::new_id;
use switchyard_common::time::{now_ms, rfc3339};
use utoipa::ToSchema;

use crate::k8s;
use crate::state::AppState;

pub const NO_CLUSTER: &str = "skipped: no cluster configured";

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

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// The new team's id (slug).
    pub team_id: String,
    /// The group it goes under; absent: directly under the org.
    pub parent_id: Option<String>,
    pub name: String,
    /// The team's config layer (routing, agent, pipelines, ...).
    #[schema(value_type = Object)]
    #[serde(default)]
    pub config: Value,
    /// The same key answers the same run.
    pub idempotency_key: String,
}

/// Test hooks: a step named here fails as if its call had failed (`step:create_node`,
/// `compensate:issue_token`, ...).
#[derive(Clone, Default, Debug)]
pub struct FailPoints(Arc<Mutex<HashSet<String>>>);

impl FailPoints {
    pub fn set(&self, name: &str) {
        self.0.lock().expect("poisoned").insert(name.to_owned());
    }

    pub fn clear(&self) {
        self.0.lock().expect("poisoned").clear();
    }

    fn check(&self, name: &str) -> std::result::Result<(), String> {
        if self.0.lock().expect("poisoned").contains(name) {
            Err(format!("injected failure at {name}"))
        } else {
            Ok(())
        }
    }
}

/// Per-team locks of this replica (the database's partial unique index covers other replicas).
#[derive(Clone, Default, Debug)]
pub struct TeamLocks(Arc<Mutex<HashMap<(String, String), TeamLock>>>);

/// Held while one of the team's runs executes on this replica.
type TeamLock = Arc<tokio::sync::Mutex<()>>;

impl TeamLocks {
    fn get(&self, org: &str, team: &str) -> TeamLock {
        self.0
            .lock()
            .expect("poisoned")
            .entry((org.to_owned(), team.to_owned()))
            .or_default()
            .clone()
    }
}

fn step_row(r: &sqlx::any::AnyRow) -> Result<Step> {
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

/// Stored runs.
impl AppState {
    pub async fn provisioning_run(&self, org: &str, id: &str) -> Result<Run> {
        let pool = &self.store.db().pool;
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
            .fetch_all(&self.store.db().pool)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.provisioning_run(org, &id).await?);
        }
        Ok(out)
    }

    /// Records a run (or finds the one with this idempotency key) and starts it in the
    /// background. Answers the run and whether it is new.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_run(
        &self,
        org: &str,
        team: &str,
        kind: &str,
        request: &Value,
        key: Option<&str>,
        actor: &Actor,
        token: String,
    ) -> Result<(Run, bool)> {
        let id = new_id();
        // The run and its audit entry commit together.
        let (lock, mut tx) = self.store.db().begin_write().await?;
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
        .bind(actor.audit_name())
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = &inserted {
            // The request's config is not copied: the audit shows which run, the run its steps.
            let after = json!({"run": id, "team": team, "idempotency_key": key});
            crate::store::note(
                &mut tx,
                Some(org),
                actor,
                &format!("{kind}.requested"),
                &format!("team/{team}"),
                None,
                Some(&after),
            )
            .await?;
        }
        tx.commit().await?;
        drop(lock);
        let Some(id) = inserted else {
            let existing: String = sqlx::query_scalar(
                "SELECT id FROM or_provisioning_runs WHERE org_id = $1 AND idempotency_key = $2",
            )
            .bind(org)
            .bind(key)
            .fetch_one(&self.store.db().pool)
            .await?;
            return Ok((self.provisioning_run(org, &existing).await?, false));
        };
        let state = self.clone();
        let (org_s, team_s, kind_s, req) = (
            org.to_owned(),
            team.to_owned(),
            kind.to_owned(),
            request.clone(),
        );
        let run_id = id.clone();
        let handle = tokio::spawn(async move {
            let lock = state.team_locks.get(&org_s, &team_s);
            let _held = lock.lock().await;
            if let Err(e) = state
                .execute(&run_id, &org_s, &team_s, &kind_s, &req, &token)
                .await
            {
                tracing::error!(run = %run_id, error = %e, "provisioning run could not be recorded");
            }
        });
        self.provisioning_tasks
            .lock()
            .expect("poisoned")
            .push(handle);
        Ok((self.provisioning_run(org, &id).await?, true))
    }

    /// Waits for every run this replica started (tests and graceful shutdown).
    pub async fn wait_for_runs(&self) {
        loop {
            let handles: Vec<_> =
                std::mem::take(&mut *self.provisioning_tasks.lock().expect("poisoned"));
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }

    async fn set_running(&self, id: &str) -> Result<()> {
        // Another replica may be running this team's run: wait for it (the unique index says so).
        loop {
            let lock = self.store.db().write_guard().await;
            let r = sqlx::query(
                "UPDATE or_provisioning_runs SET status = 'running', started_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(now_ms())
            .execute(&self.store.db().pool)
            .await;
            drop(lock);
            match r {
                Ok(_) => return Ok(()),
                Err(sqlx::Error::Database(d))
                    if d.kind() == sqlx::error::ErrorKind::UniqueViolation =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Records how the run ended, with its audit entry (`provision.succeeded`,
    /// `provision.rolled_back`, `deprovision.failed`, ...) in the same transaction.
    async fn finish(&self, id: &str, status: &str, error: Option<&str>) -> Result<()> {
        let (_lock, mut tx) = self.store.db().begin_write().await?;
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
            crate::store::note(
                &mut tx,
                Some(&org),
                &Actor::system(&created_by),
                &format!("{kind}.{status}"),
                &format!("team/{team}"),
                None,
                Some(&after),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn step<F, Fut>(
        &self,
        run: &str,
        seq: &mut i64,
        name: &str,
        f: F,
    ) -> std::result::Result<String, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<String, String>>,
    {
        *seq += 1;
        let started = now_ms();
        let lock = self.store.db().write_guard().await;
        let _ = sqlx::query("INSERT INTO or_provisioning_steps (run_id, seq, name, status, started_at) VALUES ($1, $2, $3, 'running', $4)")
            .bind(run)
            .bind(*seq)
            .bind(name)
            .bind(started)
            .execute(&self.store.db().pool)
            .await;
        drop(lock);
        let point = if name.starts_with("compensate:") {
            name.to_owned()
        } else {
            format!("step:{name}")
        };
        let result = match self.failpoints.check(&point) {
            Err(e) => Err(e),
            Ok(()) => f().await,
        };
        let (status, detail, error) = match &result {
            Ok(d) if d.starts_with("skipped") => ("skipped", Some(d.clone()), None),
            Ok(d) => ("succeeded", Some(d.clone()), None),
            Err(e) => ("failed", None, Some(e.clone())),
        };
        let _lock = self.store.db().write_guard().await;
        let _ = sqlx::query("UPDATE or_provisioning_steps SET status = $3, detail = $4, error = $5, finished_at = $6 WHERE run_id = $1 AND seq = $2")
            .bind(run)
            .bind(*seq)
            .bind(status)
            .bind(detail)
            .bind(error)
            .bind(now_ms())
            .execute(&self.store.db().pool)
            .await;
        result
    }

    async fn execute(
        &self,
        run: &str,
        org: &str,
        team: &str,
        kind: &str,
        req: &Value,
        token: &str,
    ) -> Result<()> {
        self.set_running(run).await?;
        let outcome = match kind {
            "provision" => self.provision(run, org, team, req, token).await,
            _ => self.deprovision(run, org, team, token).await,
        };
        match outcome {
            Ok(()) => self.finish(run, "succeeded", None).await,
            Err((status, error)) => self.finish(run, status, Some(&error)).await,
        }
    }

    async fn provision(
        &self,
        run: &str,
        org: &str,
        team: &str,
        req: &Value,
        token: &str,
    ) -> std::result::Result<(), (&'static str, String)> {
        enum Done {
            Node,
            Layer,
            Token(String),
            Secret(String),
            CronJobs(Vec<String>),
        }
        let mut seq = 0;
        let mut done: Vec<Done> = Vec::new();
        let call = |e: CallError| e.to_string();
        let cluster = self.cluster.clone();
        let result: std::result::Result<(), String> = async {
            let body = json!({"id": team, "parent_id": req.get("parent_id"), "kind": "team", "name": req.get("name")});
            self.step(run, &mut seq, "create_node", || async {
                match self.config.create_node(token, org, &body).await.map_err(call)? {
                    (201, _) => Ok(format!("node {team} created")),
                    (409, v) => Err(format!("the node exists already: {}", v["detail"].as_str().unwrap_or(""))),
                    (s, v) => Err(format!("{s}: {v}")),
                }
            })
            .await?;
            done.push(Done::Node);
            let layer = req.get("config").cloned().filter(|c| !c.is_null()).unwrap_or_else(|| json!({}));
            self.step(run, &mut seq, "write_config", || async {
                match self.config.put_layer(token, org, team, &layer, "\"v0\"").await.map_err(call)? {
                    (200, _) => Ok("layer version 1 written".to_owned()),
                    (202, v) => Err(format!("the config touches protected paths and awaits approval (change {})", v["id"].as_str().unwrap_or("?"))),
                    (s, v) => Err(format!("{s}: {}", v["detail"].as_str().unwrap_or(&v.to_string()))),
                }
            })
            .await?;
            done.push(Done::Layer);
            let mut issued: Option<(String, String)> = None;
            self.step(run, &mut seq, "issue_token", || async {
                let (id, secret) = self.config.issue_team_token(token, org, team, "pipelines").await.map_err(call)?;
                let detail = format!("team token {id} issued");
                issued = Some((id, secret));
                Ok(detail)
            })
            .await?;
            let (token_id, team_token) = issued.expect("set by the step");
            done.push(Done::Token(token_id));
            let secret_name = k8s::secret_name(org, team);
            self.step(run, &mut seq, "store_secret", || async {
                let Some(c) = &cluster else { return Ok(NO_CLUSTER.to_owned()) };
                c.apply_secret(&k8s::team_secret(org, team, &team_token, &self.pod_config_service_url)).await.map_err(|e| e.to_string())?;
                Ok(format!("Secret {secret_name} applied"))
            })
            .await?;
            if cluster.is_some() {
                done.push(Done::Secret(secret_name.clone()));
            }
            let mut applied: Vec<String> = Vec::new();
            let r = self
                .step(run, &mut seq, "apply_cronjobs", || async {
                    let Some(c) = &cluster else { return Ok(NO_CLUSTER.to_owned()) };
                    let config = self.config.node_config(org, team).await.map_err(call)?;
                    // Every schedule is validated before anything is applied.
                    let desired: Vec<_> = k8s::pipelines_of(&config).map_err(|e| e.to_string())?.iter().map(|p| k8s::cronjob(org, team, p)).collect();
                    for cj in &desired {
                        c.apply_cronjob(cj).await.map_err(|e| e.to_string())?;
                        applied.push(cj.metadata.name.clone().unwrap_or_default());
                    }
                    Ok(format!("{} CronJobs applied: {}", applied.len(), applied.join(", ")))
                })
                .await;
            if !applied.is_empty() {
                done.push(Done::CronJobs(applied));
            }
            r.map(|_| ())
        }
        .await;
        let Err(cause) = result else { return Ok(()) };
        // Compensate in reverse.
        let mut undo_failed = Vec::new();
        while let Some(d) = done.pop() {
            let r = match d {
                Done::CronJobs(names) => {
                    self.step(run, &mut seq, "compensate:apply_cronjobs", || async {
                        let c = cluster.as_ref().expect("cronjobs imply a cluster");
                        for n in &names {
                            c.delete_cronjob(n).await.map_err(|e| e.to_string())?;
                        }
                        Ok(format!("deleted {}", names.join(", ")))
                    })
                    .await
                }
                Done::Secret(name) => {
                    self.step(run, &mut seq, "compensate:store_secret", || async {
                        cluster
                            .as_ref()
                            .expect("a secret implies a cluster")
                            .delete_secret(&name)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(format!("deleted Secret {name}"))
                    })
                    .await
                }
                Done::Token(id) => {
                    self.step(run, &mut seq, "compensate:issue_token", || async {
                        self.config
                            .revoke_team_token(token, org, team, &id)
                            .await
                            .map_err(call)?;
                        Ok(format!("revoked token {id}"))
                    })
                    .await
                }
                Done::Layer => {
                    self.step(run, &mut seq, "compensate:write_config", || async {
                        match self
                            .config
                            .put_layer(token, org, team, &json!({}), "\"v1\"")
                            .await
                            .map_err(call)?
                        {
                            (200, _) => Ok("layer cleared (routing released)".to_owned()),
                            (s, v) => Err(format!("{s}: {v}")),
                        }
                    })
                    .await
                }
                Done::Node => {
                    self.step(run, &mut seq, "compensate:create_node", || async {
                        match self
                            .config
                            .delete_node(token, org, team)
                            .await
                            .map_err(call)?
                        {
                            204 | 404 => Ok(format!("node {team} deleted")),
                            s => Err(format!("{s}")),
                        }
                    })
                    .await
                }
            };
            if let Err(e) = r {
                undo_failed.push(e);
            }
        }
        if undo_failed.is_empty() {
            Err(("rolled_back", cause))
        } else {
            Err((
                "failed",
                format!("{cause}; and could not undo: {}", undo_failed.join("; ")),
            ))
        }
    }

    async fn deprovision(
        &self,
        run: &str,
        org: &str,
        team: &str,
        token: &str,
    ) -> std::result::Result<(), (&'static str, String)> {
        let mut seq = 0;
        let cluster = self.cluster.clone();
        let r: std::result::Result<(), String> = async {
            self.step(run, &mut seq, "delete_cronjobs", || async {
                let Some(c) = &cluster else {
                    return Ok(NO_CLUSTER.to_owned());
                };
                let existing = c
                    .managed_cronjobs(Some((org, team)))
                    .await
                    .map_err(|e| e.to_string())?;
                let names: Vec<String> = existing
                    .iter()
                    .filter_map(|cj| cj.metadata.name.clone())
                    .collect();
                for n in &names {
                    c.delete_cronjob(n).await.map_err(|e| e.to_string())?;
                }
                Ok(if names.is_empty() {
                    "no CronJobs left".to_owned()
                } else {
                    format!("deleted {}", names.join(", "))
                })
            })
            .await?;
            self.step(run, &mut seq, "delete_secret", || async {
                let Some(c) = &cluster else {
                    return Ok(NO_CLUSTER.to_owned());
                };
                c.delete_secret(&k8s::secret_name(org, team))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok("Secret deleted (or already gone)".to_owned())
            })
            .await?;
            self.step(run, &mut seq, "delete_node", || async {
                match self
                    .config
                    .delete_node(token, org, team)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    204 => Ok(format!(
                        "node {team} deleted: its tokens are revoked and its routing removed"
                    )),
                    404 => Ok(format!("node {team} already gone")),
                    409 => Err(format!(
                        "node {team} has children; move or delete them first"
                    )),
                    s => Err(format!("{s}")),
                }
            })
            .await?;
            Ok(())
        }
        .await;
        r.map_err(|e| ("failed", e))
    }
}
