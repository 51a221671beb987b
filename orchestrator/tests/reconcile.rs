//! The reconciler against the fake API server: drift is repaired within one sweep, orphans are
//! removed, a pipeline config change updates its CronJob, and watch events trigger sweeps.

mod stack;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use stack::{Options, Stack, eventually};
use switchyard_common::db::Backend;
use switchyard_orchestrator::k8s;
use switchyard_orchestrator::reconcile::{self, ReconcileMetrics};

const NS: &str = "tenants";

async fn onboarded(b: Backend) -> Stack {
    let s = Stack::start(
        b,
        Options {
            cluster: true,
            ..Options::default()
        },
    )
    .await;
    s.must(
        Method::POST,
        format!("{}/api/v1/orgs", s.cs),
        Some(json!({"id": "acme", "name": "Acme"})),
    )
    .await;
    for team in ["checkout", "search"] {
        let req = json!({"team_id": team, "name": team, "idempotency_key": format!("on-{team}"),
            "config": {"pipelines": {"ingestion": {"schedule": "*/15 * * * *"}, "evaluation": {"schedule": "@daily"}}}});
        s.must(
            Method::POST,
            format!("{}/api/v1/orgs/acme/provisioning", s.orch),
            Some(req),
        )
        .await;
    }
    s.orch_state.provisioner.wait_for_runs().await;
    assert_eq!(s.fake.as_ref().unwrap().objects("cronjobs", NS).len(), 4);
    s
}

fn schedule(s: &Stack, name: &str) -> Option<String> {
    s.fake
        .as_ref()
        .unwrap()
        .object("cronjobs", NS, name)
        .and_then(|o| o["spec"]["schedule"].as_str().map(str::to_owned))
}

async fn one_sweep_repairs_drift_and_removes_orphans(b: Backend) {
    let s = onboarded(b).await;
    let f = s.fake.clone().unwrap();
    let cluster = s.orch_state.provisioner.cluster.clone().unwrap();
    let metrics = ReconcileMetrics::register(&s.orch_state.metrics);
    // Nothing to do at first.
    let r = reconcile::sweep(&s.orch_state.provisioner, &cluster, &metrics).await;
    assert_eq!(
        (
            r.desired,
            r.actual,
            r.repaired.len(),
            r.orphans_removed.len()
        ),
        (4, 4, 0, 0),
        "{r:?}"
    );

    let deleted = k8s::cronjob_name("acme", "checkout", "ingestion");
    let edited = k8s::cronjob_name("acme", "search", "evaluation");
    assert!(f.remove("cronjobs", NS, &deleted));
    assert!(f.edit("cronjobs", NS, &edited, |o| o["spec"]["schedule"] =
        json!("0 0 1 1 *")));
    let mut orphan = f
        .object(
            "cronjobs",
            NS,
            &k8s::cronjob_name("acme", "search", "ingestion"),
        )
        .unwrap();
    orphan["metadata"]["name"] = json!("sy-ingestion-acme-ghost-0badf00d");
    orphan["metadata"]["labels"]["switchyard.dev/team"] = json!("ghost");
    orphan["metadata"].as_object_mut().unwrap().remove("uid");
    f.insert("cronjobs", NS, orphan);
    // An unmanaged CronJob is none of Switchyard's business.
    f.insert("cronjobs", NS, json!({"metadata": {"name": "someone-elses", "labels": {"app": "other"}}, "spec": {"schedule": "* * * * *"}}));

    let r = reconcile::sweep(&s.orch_state.provisioner, &cluster, &metrics).await;
    let mut repaired = r.repaired.clone();
    repaired.sort();
    let mut expected = vec![deleted.clone(), edited.clone()];
    expected.sort();
    assert_eq!(repaired, expected, "{r:?}");
    assert_eq!(
        r.orphans_removed,
        vec!["sy-ingestion-acme-ghost-0badf00d".to_owned()]
    );
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(schedule(&s, &deleted).as_deref(), Some("*/15 * * * *"));
    assert_eq!(schedule(&s, &edited).as_deref(), Some("@daily"));
    assert!(f.object("cronjobs", NS, "someone-elses").is_some());
    let text = s.orch_state.metrics.render();
    assert!(
        text.contains("switchyard_orchestrator_reconcile_drift_repaired_total 2"),
        "{text}"
    );
    assert!(text.contains("switchyard_orchestrator_reconcile_orphans_removed_total 1"));
    // A team whose provisioning is still running is left alone, even though it is not onboarded
    // yet: its run owns its CronJobs until it ends.
    sqlx::query("INSERT INTO or_provisioning_runs (id, org_id, team_id, kind, status, request, created_by, created_at) VALUES ('r-busy', 'acme', 'busy', 'provision', 'running', '{}', 'test', 0)")
        .execute(
            &switchyard_common::db::Db::connect(&s.orch_db_url, 1)
                .await
                .unwrap()
                .pool,
        )
        .await
        .unwrap();
    let mut busy = f
        .object(
            "cronjobs",
            NS,
            &k8s::cronjob_name("acme", "search", "ingestion"),
        )
        .unwrap();
    busy["metadata"]["name"] = json!("sy-ingestion-acme-busy-12345678");
    busy["metadata"]["labels"]["switchyard.dev/team"] = json!("busy");
    busy["metadata"].as_object_mut().unwrap().remove("uid");
    f.insert("cronjobs", NS, busy);
    let r = reconcile::sweep(&s.orch_state.provisioner, &cluster, &metrics).await;
    assert!(r.orphans_removed.is_empty(), "{r:?}");
    assert!(
        f.object("cronjobs", NS, "sy-ingestion-acme-busy-12345678")
            .is_some()
    );
    // Converged: the next sweep changes nothing.
    let r = reconcile::sweep(&s.orch_state.provisioner, &cluster, &metrics).await;
    assert!(
        r.repaired.is_empty() && r.orphans_removed.is_empty(),
        "{r:?}"
    );
}

async fn pipeline_config_changes_apply_without_reprovisioning(b: Backend) {
    let s = onboarded(b).await;
    let cluster = s.orch_state.provisioner.cluster.clone().unwrap();
    let metrics = ReconcileMetrics::register(&s.orch_state.metrics);
    // A new schedule for ingestion, evaluation removed, a new pipeline added.
    let layer = json!({"pipelines": {"ingestion": {"schedule": "0 * * * *"}, "gap-analysis": {"schedule": "30 2 * * *"}}});
    let resp = s
        .http
        .put(format!(
            "{}/api/v1/orgs/acme/nodes/checkout/config/layer",
            s.cs
        ))
        .bearer_auth(stack::ADMIN)
        .header("if-match", "\"v1\"")
        .json(&layer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let r = reconcile::sweep(&s.orch_state.provisioner, &cluster, &metrics).await;
    assert_eq!(
        schedule(&s, &k8s::cronjob_name("acme", "checkout", "ingestion")).as_deref(),
        Some("0 * * * *")
    );
    assert_eq!(
        schedule(&s, &k8s::cronjob_name("acme", "checkout", "gap-analysis")).as_deref(),
        Some("30 2 * * *")
    );
    assert_eq!(
        r.orphans_removed,
        vec![k8s::cronjob_name("acme", "checkout", "evaluation")]
    );
    // Deprovisioned teams are not brought back.
    s.must(
        Method::POST,
        format!("{}/api/v1/orgs/acme/teams/search/deprovision", s.orch),
        None,
    )
    .await;
    s.orch_state.provisioner.wait_for_runs().await;
    let r = reconcile::sweep(&s.orch_state.provisioner, &cluster, &metrics).await;
    assert!(r.repaired.is_empty(), "{r:?}");
    let left: Vec<Value> = s.fake.as_ref().unwrap().objects("cronjobs", NS);
    assert!(
        left.iter()
            .all(|o| o["metadata"]["labels"]["switchyard.dev/team"] == "checkout"),
        "{left:?}"
    );
}

async fn watch_events_trigger_repair(b: Backend) {
    let s = onboarded(b).await;
    let f = s.fake.clone().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    // A sweep interval far longer than the test: only watch events can cause the repair.
    let task = tokio::spawn(reconcile::run(
        s.orch_state.provisioner.clone(),
        s.orch_state.metrics.clone(),
        Duration::from_secs(3600),
        rx,
    ));
    let name = k8s::cronjob_name("acme", "checkout", "evaluation");
    eventually("the first sweep ran", 10, || async {
        s.orch_state
            .metrics
            .render()
            .contains("reconcile_sweep_duration_seconds_count 1")
            || s.orch_state
                .metrics
                .render()
                .contains("reconcile_sweep_duration_seconds_count 2")
    })
    .await;
    assert!(f.remove("cronjobs", NS, &name));
    eventually("the deleted CronJob is back", 10, || async {
        f.object("cronjobs", NS, &name).is_some()
    })
    .await;
    let _ = stop.send(true);
    task.await.unwrap();
}

async fn only_one_replica_reconciles(b: Backend) {
    let s = onboarded(b).await;
    let other = switchyard_orchestrator::AppState::new(
        switchyard_orchestrator::store::Store::new(
            switchyard_common::db::Db::connect(&s.orch_db_url, 4)
                .await
                .unwrap(),
        ),
        s.keyring.clone(),
        None,
        s.key.clone(),
        &s.cs,
        &s.runner,
        Default::default(),
    );
    assert!(
        reconcile::leadership_free(&other.store).await,
        "nobody leads yet"
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(reconcile::run(
        s.orch_state.provisioner.clone(),
        s.orch_state.metrics.clone(),
        Duration::from_secs(3600),
        rx,
    ));
    eventually("a leader holds the lock", 10, || async {
        !reconcile::leadership_free(&other.store).await
    })
    .await;
    let _ = stop.send(true);
    task.await.unwrap();
}

switchyard_common::on_both_backends!(
    one_sweep_repairs_drift_and_removes_orphans,
    pipeline_config_changes_apply_without_reprovisioning,
    watch_events_trigger_repair
);

mod leader {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_only_one_replica_reconciles() {
        super::only_one_replica_reconciles(switchyard_common::db::Backend::Postgres).await
    }
}
