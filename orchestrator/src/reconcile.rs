//! The reconciler: keeps every onboarded team's CronJobs as its config says.
//!
//! Desired state: the teams onboarded through Switchyard (a succeeded provisioning run not followed
//! by a succeeded deprovisioning) and the `pipelines` of their effective config in the
//! config-service. Actual state: the CronJobs in the tenant namespace carrying
//! `app.kubernetes.io/managed-by=switchyard`. A sweep applies what is missing or no longer matches
//! its spec hash (deleted or edited out of band, or a pipeline config change) and deletes what no
//! team wants any more (orphans). Sweeps run periodically and whenever a watched CronJob changes.
//!
//! With several replicas only one reconciles: on PostgreSQL the leader holds a session advisory
//! lock on a dedicated connection (released if the replica dies); SQLite is single-process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::CronJob;
use kube::Api;
use kube::runtime::watcher;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::watch as tokio_watch;

use crate::k8s::{self, Cluster};
use crate::provision::Provisioner;
use crate::store::{Leadership, Store};
use switchyard_common::telemetry::Metrics;

/// The advisory lock key of the reconciler's leadership ("switchyard reconcile").
const LEADER_LOCK: i64 = 0x5357_5943_5243_4e31;

/// How soon a replica that does not lead tries to again (at the latest).
const LEAD_AGAIN: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

/// Reconciler metrics.
#[derive(Clone)]
pub struct ReconcileMetrics {
    pub drift_repaired: Counter,
    pub orphans_removed: Counter,
    pub sweep_seconds: Histogram,
    pub errors: Family<ErrorLabels, Counter>,
}

impl ReconcileMetrics {
    pub fn register(registry: &Metrics) -> Self {
        let m = Self {
            drift_repaired: Counter::default(),
            orphans_removed: Counter::default(),
            sweep_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            errors: Family::default(),
        };
        registry.register(
            "reconcile_drift_repaired",
            "CronJobs re-applied because they were missing or differed",
            m.drift_repaired.clone(),
        );
        registry.register(
            "reconcile_orphans_removed",
            "Managed CronJobs deleted because no team wants them",
            m.orphans_removed.clone(),
        );
        registry.register(
            "reconcile_sweep_duration_seconds",
            "Duration of reconcile sweeps",
            m.sweep_seconds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind",
            m.errors.clone(),
        );
        m
    }

    fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub desired: usize,
    pub actual: usize,
    pub repaired: Vec<String>,
    pub orphans_removed: Vec<String>,
    pub errors: Vec<String>,
}

/// One sweep: desired against actual, repairs applied.
pub async fn sweep(
    state: &Provisioner,
    cluster: &Cluster,
    metrics: &ReconcileMetrics,
) -> SweepReport {
    let started = Instant::now();
    let mut report = SweepReport::default();
    let (teams, busy) = match state.store.onboarded_teams().await {
        Ok(t) => t,
        Err(e) => {
            metrics.error("store");
            report.errors.push(format!("store: {e}"));
            return report;
        }
    };
    let all = match state.config.team_pipelines().await {
        Ok(all) => all,
        Err(e) => {
            metrics.error("config_service");
            report.errors.push(format!("config-service: {e}"));
            return report;
        }
    };
    let mut desired: BTreeMap<String, CronJob> = BTreeMap::new();
    for t in &all {
        let (org, team) = (t.org_id.as_str(), t.team_id.as_str());
        let key = (org.to_owned(), team.to_owned());
        if !teams.contains(&key) || busy.contains(&key) {
            continue;
        }
        match k8s::pipelines_of(&serde_json::json!({"pipelines": t.pipelines})) {
            Ok(ps) => {
                for p in ps {
                    let cj = k8s::cronjob(org, team, &p);
                    desired.insert(cj.metadata.name.clone().unwrap_or_default(), cj);
                }
            }
            Err(e) => {
                metrics.error(e.metric_label());
                report.errors.push(format!("{org}/{team}: {e}"));
            }
        }
    }
    let actual = match cluster.managed_cronjobs(None).await {
        Ok(a) => a,
        Err(e) => {
            metrics.error(e.metric_label());
            report.errors.push(format!("listing CronJobs: {e}"));
            return report;
        }
    };
    report.desired = desired.len();
    report.actual = actual.len();
    let actual_by_name: BTreeMap<String, &CronJob> = actual
        .iter()
        .filter_map(|c| Some((c.metadata.name.clone()?, c)))
        .collect();
    for (name, want) in &desired {
        let ok = actual_by_name
            .get(name)
            .is_some_and(|have| k8s::in_sync(have, want));
        if ok {
            continue;
        }
        match cluster.apply_cronjob(want).await {
            Ok(_) => {
                metrics.drift_repaired.inc();
                report.repaired.push(name.clone());
            }
            Err(e) => {
                metrics.error(e.metric_label());
                report.errors.push(format!("applying {name}: {e}"));
            }
        }
    }
    let is_busy = |cj: &CronJob| {
        let l = cj.metadata.labels.clone().unwrap_or_default();
        busy.iter().any(|(o, t)| {
            l.get(k8s::LABEL_ORG) == Some(&k8s::label_value(o))
                && l.get(k8s::LABEL_TEAM) == Some(&k8s::label_value(t))
        })
    };
    let orphans: Vec<&String> = actual_by_name
        .iter()
        .filter(|(n, cj)| !desired.contains_key(*n) && !is_busy(cj))
        .map(|(n, _)| n)
        .collect();
    for name in orphans {
        match cluster.delete_cronjob(name).await {
            Ok(()) => {
                metrics.orphans_removed.inc();
                report.orphans_removed.push(name.clone());
            }
            Err(e) => {
                metrics.error(e.metric_label());
                report.errors.push(format!("deleting {name}: {e}"));
            }
        }
    }
    metrics
        .sweep_seconds
        .observe(started.elapsed().as_secs_f64());
    if !report.repaired.is_empty() || !report.orphans_removed.is_empty() {
        tracing::info!(repaired = ?report.repaired, orphans = ?report.orphans_removed, "reconcile sweep repaired drift");
    }
    report
}

/// Runs sweeps while this replica leads: every `interval`, and soon after any managed CronJob
/// changes. Stops when `shutdown` turns true.
pub async fn run(
    state: Provisioner,
    registry: Metrics,
    interval: Duration,
    mut shutdown: tokio_watch::Receiver<bool>,
) {
    // Registered even when there is nothing to reconcile, so that dashboards and alerts find the
    // same metrics on every installation.
    let metrics = ReconcileMetrics::register(&registry);
    let Some(cluster) = state.cluster.clone() else {
        return;
    };
    if interval.is_zero() {
        return;
    }
    let (kick_tx, mut kick_rx) = tokio::sync::mpsc::channel::<()>(1);
    // Watch managed CronJobs; every change asks for a sweep.
    let api: Api<CronJob> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let cfg =
        watcher::Config::default().labels(&format!("{}={}", k8s::MANAGED_BY, k8s::FIELD_MANAGER));
    let mut stop = shutdown.clone();
    let watching = tokio::spawn(async move {
        let mut stream = watcher(api, cfg).boxed();
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)) => {
                        let _ = kick_tx.try_send(());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "CronJob watch failed; the watcher retries");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    None => return,
                },
                _ = stop.changed() => return,
            }
        }
    });
    let mut leader: Option<Leadership> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if leader.is_none() {
            leader = state.store.try_lead(LEADER_LOCK).await;
            if leader.is_some() {
                tracing::info!("this replica leads reconciliation");
            }
        }
        let leading = leader.is_some();
        if leading {
            let report = sweep(&state, &cluster, &metrics).await;
            if !report.errors.is_empty() {
                tracing::warn!(errors = ?report.errors, "reconcile sweep had errors");
            }
        }
        // A replica that does not lead asks again within `LEAD_AGAIN`, whatever the sweep
        // interval: it takes over soon after a leader stops, and a try that met the lock held a
        // moment by someone else (a probe) is not its last for an interval.
        let wait = if leading {
            interval
        } else {
            interval.min(LEAD_AGAIN)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = kick_rx.recv() => {
                // Let a burst of watch events settle into one sweep.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while kick_rx.try_recv().is_ok() {}
            }
            _ = shutdown.changed() => {}
        }
    }
    watching.abort();
}

/// For tests: whether a replica on this database could take the lead now.
pub async fn leadership_free(store: &Store) -> bool {
    match store.try_lead(LEADER_LOCK).await {
        Some(l) => {
            l.release().await;
            true
        }
        None => false,
    }
}
