//! Provisioning 1,000 teams (two pipelines each) and reconcile sweeps over them, against the
//! stateful fake Kubernetes API server, with real HTTP to an in-process config-service.
//!
//! Run: `cargo bench -p switchyard-orchestrator --bench provisioning`
//! Knobs: BENCH_TEAMS (1000), BENCH_BACKEND=postgres|sqlite (postgres).

use std::time::Instant;

use serde_json::json;
use switchyard_common::auth::ServiceKey;
use switchyard_common::crypto::Keyring;
use switchyard_common::db::testing::TestDb;
use switchyard_common::db::{Backend, Db};
use switchyard_orchestrator::k8s::fake::FakeApiServer;
use switchyard_orchestrator::k8s::{self, Cluster};
use switchyard_orchestrator::reconcile::{self, ReconcileMetrics};
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::{AppState, store::Store};

const ADMIN: &str = "bench-admin-token-0123456789";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let teams: usize = std::env::var("BENCH_TEAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    let db = TestDb::new(backend).await.unwrap();
    let key = ServiceKey::generate();
    let cs_state = switchyard_config_service::AppState::new(
        switchyard_config_service::store::Store::new(db.connect_with(16).await.unwrap()),
        Some(ADMIN.into()),
        key.clone(),
        Keyring::parse(&Keyring::generate_spec("cs")).unwrap(),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cs = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(switchyard_config_service::serve(
        l,
        cs_state,
        std::future::pending(),
    ));
    let orch_db = match backend {
        Backend::Postgres => Db::connect(&db.url, 16).await.unwrap(),
        Backend::Sqlite => {
            let d = TestDb::new(Backend::Sqlite).await.unwrap();
            let c = d.connect().await.unwrap();
            std::mem::forget(d);
            c
        }
    };
    let fake = FakeApiServer::new();
    let state = AppState::new(
        Store::new(orch_db.clone()),
        Keyring::parse(&Keyring::generate_spec("b")).unwrap(),
        Some(ADMIN.into()),
        key,
        &cs,
        "http://127.0.0.1:9",
        Limits {
            reconcile_interval_seconds: 0,
            ..Limits::default()
        },
    )
    .with_cluster(Cluster::new(fake.client("tenants"), "tenants"));
    reqwest::Client::new()
        .post(format!("{cs}/api/v1/orgs"))
        .bearer_auth(ADMIN)
        .json(&json!({"id": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();

    println!(
        "\n== provisioning {teams} teams · {} · fake Kubernetes API ==",
        backend.name()
    );
    let t = Instant::now();
    for i in 0..teams {
        let team = format!("team-{i}");
        let req = json!({"team_id": team, "name": team, "idempotency_key": format!("k-{i}"),
            "config": {"routing": {"service": format!("svc-{i}")},
                       "pipelines": {"ingestion": {"schedule": "*/15 * * * *"}, "evaluation": {"schedule": "@daily"}}}});
        state
            .provisioner
            .start_run(
                "acme",
                &team,
                "provision",
                &req,
                Some(&format!("k-{i}")),
                &switchyard_common::http::Actor::system("platform-admin"),
                ADMIN.to_owned(),
            )
            .await
            .unwrap();
    }
    state.provisioner.wait_for_runs().await;
    let elapsed = t.elapsed();
    let ok: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM or_provisioning_runs WHERE status = 'succeeded'")
            .fetch_one(&orch_db.pool)
            .await
            .unwrap();
    let cronjobs = fake.objects("cronjobs", "tenants").len();
    println!(
        "provisioned {ok}/{teams} teams ({cronjobs} CronJobs, {teams} Secrets) in {:.2} s: {:.0} teams/s, {:.1} ms per team",
        elapsed.as_secs_f64(),
        teams as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / teams as f64
    );

    let cluster = state.provisioner.cluster.clone().unwrap();
    let metrics = ReconcileMetrics::register(&state.metrics);
    let t = Instant::now();
    let r = reconcile::sweep(&state.provisioner, &cluster, &metrics).await;
    println!(
        "reconcile sweep, in sync: {:.0} ms ({} desired, {} actual, {} repaired)",
        t.elapsed().as_secs_f64() * 1e3,
        r.desired,
        r.actual,
        r.repaired.len()
    );
    // Drift: 10% deleted, 10% edited, 10 orphans.
    for i in (0..teams).step_by(10) {
        fake.remove(
            "cronjobs",
            "tenants",
            &k8s::cronjob_name("acme", &format!("team-{i}"), "ingestion"),
        );
        fake.edit(
            "cronjobs",
            "tenants",
            &k8s::cronjob_name("acme", &format!("team-{i}"), "evaluation"),
            |o| o["spec"]["schedule"] = json!("0 0 1 1 *"),
        );
    }
    for i in 0..10 {
        fake.insert("cronjobs", "tenants", json!({"metadata": {"name": format!("sy-orphan-{i}"), "labels": {"app.kubernetes.io/managed-by": "switchyard", "switchyard.dev/org": "acme", "switchyard.dev/team": "gone"}}, "spec": {"schedule": "* * * * *"}}));
    }
    let t = Instant::now();
    let r = reconcile::sweep(&state.provisioner, &cluster, &metrics).await;
    println!(
        "reconcile sweep, with drift: {:.0} ms ({} repaired, {} orphans removed, {} errors)",
        t.elapsed().as_secs_f64() * 1e3,
        r.repaired.len(),
        r.orphans_removed.len(),
        r.errors.len()
    );
}
