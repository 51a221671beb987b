//! Routing lookups and config reads at scale: 10,000 teams (in 100 groups) with 5 routing
//! identifiers each, through the real router in-process (JWT check, extractor, store, JSON).
//!
//! Run: `cargo bench -p switchyard-config-service --bench routing`
//! Knobs (environment): BENCH_BACKEND=postgres|sqlite|both (default postgres), BENCH_TEAMS
//! (10000), BENCH_REQUESTS (20000), BENCH_CONCURRENCY (16).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use switchyard_common::auth::ServiceKey;
use switchyard_common::db::Backend;
use switchyard_common::db::testing::TestDb;
use switchyard_config_service::store::{Actor, LayerWrite, Store};
use switchyard_config_service::{AppState, app};
use tower::ServiceExt;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

struct Stats {
    requests: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Stats {
    fn print(&self, what: &str) {
        println!(
            "{what:<28} {:>8.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms   ({} requests in {:.2} s)",
            self.requests as f64 / self.elapsed.as_secs_f64(),
            percentile(&self.lat, 0.50).as_secs_f64() * 1e3,
            percentile(&self.lat, 0.99).as_secs_f64() * 1e3,
            self.lat.last().unwrap().as_secs_f64() * 1e3,
            self.requests,
            self.elapsed.as_secs_f64()
        );
    }
}

/// Runs `requests` requests from `concurrency` workers; `make(i)` builds request i.
async fn drive(
    router: axum::Router,
    requests: usize,
    concurrency: usize,
    make: Arc<dyn Fn(usize) -> Request<Body> + Send + Sync>,
) -> Stats {
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let router = router.clone();
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(requests / concurrency + 1);
            let mut i = w;
            while i < requests {
                let t = Instant::now();
                let resp = router.clone().oneshot(make(i)).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK, "request {i}");
                let _ = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .unwrap();
                lat.push(t.elapsed());
                i += concurrency;
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(requests);
    for w in workers {
        lat.extend(w.await.unwrap());
    }
    let elapsed = start.elapsed();
    lat.sort();
    Stats {
        requests,
        elapsed,
        lat,
    }
}

async fn seed(store: &Store, teams: usize) {
    let actor = Actor::system("bench");
    store.create_org(&actor, "acme", "Acme").await.unwrap();
    let groups = teams.div_ceil(100);
    for g in 0..groups {
        store
            .create_node(&actor, "acme", &format!("g{g}"), None, "group", "G")
            .await
            .unwrap();
        let w = store
            .put_layer(
                &actor,
                "acme",
                &format!("g{g}"),
                Some(0),
                json!({"agent": {"model": format!("m{g}")}, "quotas": {"concurrent_runs": 4}}),
                None,
            )
            .await
            .unwrap();
        assert!(matches!(w, LayerWrite::Applied(_)));
    }
    // Writers in parallel (each write is its own transaction with its audit entry).
    let chunks = 8;
    let mut tasks = Vec::new();
    for c in 0..chunks {
        let store = store.clone();
        let actor = actor.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = c;
            while t < teams {
                let id = format!("team-{t}");
                store
                    .create_node(
                        &actor,
                        "acme",
                        &id,
                        Some(&format!("g{}", t / 100)),
                        "team",
                        "T",
                    )
                    .await
                    .unwrap();
                let layer = json!({
                    "agent": {"prompts": {"system": format!("team {t}")}},
                    "routing": {
                        "slack_channel": format!("C{t:07}"),
                        "github_repo": format!("acme/repo-{t}"),
                        "pagerduty_service": format!("P{t:06}"),
                        "service": format!("svc-{t}"),
                        "alert_label": format!("team=team-{t}"),
                    }
                });
                store
                    .put_layer(&actor, "acme", &id, Some(0), layer, None)
                    .await
                    .unwrap();
                t += chunks;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn run(backend: Backend) {
    let teams = env("BENCH_TEAMS", 10_000);
    let requests = env("BENCH_REQUESTS", 20_000);
    let concurrency = env("BENCH_CONCURRENCY", 16);
    let db = TestDb::new(backend).await.unwrap();
    // A pool as large as the concurrency, as a production replica would have.
    let conn = db.connect_with(concurrency as u32).await.unwrap();
    let store = Store::new(conn);
    println!(
        "\n== {} · {teams} teams × 5 identifiers · {concurrency} concurrent ==",
        backend.name()
    );
    let t = Instant::now();
    seed(&store, teams).await;
    let routes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cs_routes")
        .fetch_one(&store.db().pool)
        .await
        .unwrap();
    println!(
        "seeded {routes} routing identifiers in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if backend == Backend::Postgres {
        sqlx::query("ANALYZE")
            .execute(&store.db().pool)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN SELECT r.org_id, r.kind, r.value, r.node_id, n.kind FROM cs_routes r \
             JOIN cs_nodes n ON n.org_id = r.org_id AND n.id = r.node_id \
             WHERE ((r.kind = 'slack_team' AND r.value = 'T1') OR (r.kind = 'slack_channel' AND r.value = 'C0000042'))",
        )
        .fetch_all(&store.db().pool)
        .await
        .unwrap();
        println!("lookup plan:\n  {}", plan.join("\n  "));
    }

    let key = ServiceKey::generate();
    let state = AppState::new(
        store,
        Some("bench-admin-token-0123456789".into()),
        key.clone(),
        switchyard_common::crypto::Keyring::parse(
            &switchyard_common::crypto::Keyring::generate_spec("bench"),
        )
        .unwrap(),
    );
    let router = app(state);
    let jwt = Arc::new(key.mint("orchestrator", "config-service", 300));

    // Warm-up, then the measured runs.
    let n = teams;
    let lookup_one: Arc<dyn Fn(usize) -> Request<Body> + Send + Sync> = {
        let jwt = jwt.clone();
        Arc::new(move |i| {
            let t = (i * 7919) % n;
            Request::post("/api/v1/internal/routing/lookup")
                .header("authorization", format!("Bearer {jwt}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"org_id": "acme", "identifiers": {"slack_channel": format!("C{t:07}")}})
                        .to_string(),
                ))
                .unwrap()
        })
    };
    let lookup_mixed: Arc<dyn Fn(usize) -> Request<Body> + Send + Sync> = {
        let jwt = jwt.clone();
        Arc::new(move |i| {
            let t = (i * 7919) % n;
            let other = (t + 1) % n;
            Request::post("/api/v1/internal/routing/lookup")
                .header("authorization", format!("Bearer {jwt}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"identifiers": {
                        "alert_label": [format!("team=team-{t}"), "severity=page"],
                        "service": format!("svc-{other}"),
                        "github_repo": format!("acme/repo-{t}"),
                    }})
                    .to_string(),
                ))
                .unwrap()
        })
    };
    let config_read: Arc<dyn Fn(usize) -> Request<Body> + Send + Sync> = Arc::new(move |i| {
        let t = (i * 7919) % n;
        Request::get(format!("/api/v1/orgs/acme/nodes/team-{t}/config"))
            .header("authorization", "Bearer bench-admin-token-0123456789")
            .body(Body::empty())
            .unwrap()
    });
    drive(router.clone(), 2_000, concurrency, lookup_one.clone()).await;
    drive(router.clone(), requests, concurrency, lookup_one)
        .await
        .print("lookup (1 identifier)");
    drive(router.clone(), requests, concurrency, lookup_mixed)
        .await
        .print("lookup (4 ids, no org_id)");
    drive(router.clone(), requests, concurrency, config_read)
        .await
        .print("effective config read");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let which = std::env::var("BENCH_BACKEND").unwrap_or_else(|_| "postgres".into());
    rt.block_on(async {
        if which == "postgres" || which == "both" {
            run(Backend::Postgres).await;
        }
        if which == "sqlite" || which == "both" {
            run(Backend::Sqlite).await;
        }
    });
}
