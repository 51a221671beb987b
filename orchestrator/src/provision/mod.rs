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
//!
//! # Layout
//! - this file: the [`Provisioner`] context (store, config client, cluster, per-team locks, the
//!   runs in flight), starting runs and recording steps;
//! - [`steps`]: the steps of each kind of run and their compensations.

mod steps;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_common::clients::ConfigClient;
use switchyard_common::error::Result;
use switchyard_common::http::Actor;
use switchyard_common::telemetry::Metrics;
use utoipa::ToSchema;

use crate::k8s::Cluster;
use crate::store::{Run, RunOutcome, StepStatus, Store};

pub const NO_CLUSTER: &str = "skipped: no cluster configured";

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

/// Test hooks (the `testing` feature): a step named here fails as if its call had failed
/// (`step:create_node`, `compensate:issue_token`, ...). Without the feature nothing can be set.
#[derive(Clone, Default, Debug)]
pub struct FailPoints(#[cfg(feature = "testing")] Arc<Mutex<std::collections::HashSet<String>>>);

impl FailPoints {
    #[cfg(feature = "testing")]
    pub fn set(&self, name: &str) {
        self.0.lock().expect("poisoned").insert(name.to_owned());
    }

    #[cfg(feature = "testing")]
    pub fn clear(&self) {
        self.0.lock().expect("poisoned").clear();
    }

    #[cfg(feature = "testing")]
    fn check(&self, name: &str) -> std::result::Result<(), String> {
        if self.0.lock().expect("poisoned").contains(name) {
            Err(format!("injected failure at {name}"))
        } else {
            Ok(())
        }
    }

    #[cfg(not(feature = "testing"))]
    fn check(&self, _name: &str) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Held while one of the team's runs executes on this replica.
type TeamLock = Arc<tokio::sync::Mutex<()>>;

/// The provisioning context: built once, held by the application state.
#[derive(Clone)]
pub struct Provisioner {
    pub store: Store,
    pub config: ConfigClient,
    /// The tenant namespace's client; `None` without a cluster (dev mode).
    pub cluster: Option<Cluster>,
    /// The config-service URL written into team Secrets (as pods reach it).
    pub pod_config_service_url: String,
    pub failpoints: FailPoints,
    /// Per-team locks of this replica (the database's partial unique index covers other
    /// replicas).
    team_locks: Arc<Mutex<HashMap<(String, String), TeamLock>>>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Finished runs by kind and outcome.
    finished: Family<FinishedLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    /// `provision` or `deprovision`.
    kind: &'static str,
    outcome: &'static str,
}

impl Provisioner {
    pub fn new(store: Store, config: ConfigClient, pod_config_service_url: &str) -> Self {
        Self {
            store,
            config,
            cluster: None,
            pod_config_service_url: pod_config_service_url.to_owned(),
            failpoints: FailPoints::default(),
            team_locks: Arc::default(),
            tasks: Arc::default(),
            finished: Family::default(),
        }
    }

    /// Exposes the finished runs in the service's metrics.
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "provisioning_runs",
            "Provisioning runs finished, by kind and outcome",
            self.finished.clone(),
        );
    }

    fn team_lock(&self, org: &str, team: &str) -> TeamLock {
        self.team_locks
            .lock()
            .expect("poisoned")
            .entry((org.to_owned(), team.to_owned()))
            .or_default()
            .clone()
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
        let (run, new) = self
            .store
            .insert_provisioning_run(actor, org, team, kind, request, key)
            .await?;
        if !new {
            return Ok((run, false));
        }
        let me = self.clone();
        let (org_s, team_s, kind_s, req) = (
            org.to_owned(),
            team.to_owned(),
            kind.to_owned(),
            request.clone(),
        );
        let run_id = run.id.clone();
        let handle = tokio::spawn(async move {
            let lock = me.team_lock(&org_s, &team_s);
            let _held = lock.lock().await;
            if let Err(e) = me
                .execute(&run_id, &org_s, &team_s, &kind_s, &req, &token)
                .await
            {
                tracing::error!(run = %run_id, error = %e, "provisioning run could not be recorded");
            }
        });
        self.tasks.lock().expect("poisoned").push(handle);
        Ok((run, true))
    }

    /// Waits for every run this replica started (tests and graceful shutdown).
    pub async fn wait_for_runs(&self) {
        loop {
            let handles: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("poisoned"));
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }

    /// Records a step around `f`: started, then how it ended. A fail point named after the step
    /// fails it without calling `f`.
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
        if let Err(e) = self.store.begin_step(run, *seq, name).await {
            tracing::warn!(run, step = name, error = %e, "could not record the step's start");
        }
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
            Ok(d) if d.starts_with("skipped") => (StepStatus::Skipped, Some(d.as_str()), None),
            Ok(d) => (StepStatus::Succeeded, Some(d.as_str()), None),
            Err(e) => (StepStatus::Failed, None, Some(e.as_str())),
        };
        if let Err(e) = self.store.end_step(run, *seq, status, detail, error).await {
            tracing::warn!(run, step = name, error = %e, "could not record the step's end");
        }
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
        // Another replica may be running this team's run: wait for it.
        while !self.store.set_provisioning_running(run).await? {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let outcome = match kind {
            "provision" => self.provision(run, org, team, req, token).await,
            _ => self.deprovision(run, org, team, token).await,
        };
        let (status, error) = match outcome {
            Ok(()) => (RunOutcome::Succeeded, None),
            Err((status, error)) => (status, Some(error)),
        };
        self.finished
            .get_or_create(&FinishedLabels {
                kind: if kind == "provision" {
                    "provision"
                } else {
                    "deprovision"
                },
                outcome: status.as_str(),
            })
            .inc();
        self.store
            .finish_provisioning_run(run, status, error.as_deref())
            .await
    }
}
