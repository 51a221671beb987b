//! Outbound deliveries per second to a local receiver, and correlation cost per routed event with
//! many open incidents, each beside its reference measured in the same run.
//!
//! Run: `cargo bench -p switchyard-orchestrator --bench outbound`
//! Knobs: BENCH_BACKEND=postgres|sqlite (postgres), BENCH_DELIVERIES (20000),
//! BENCH_SUBSCRIPTIONS (8), BENCH_INCIDENTS (10000), BENCH_CORRELATIONS (2000).
//!
//! - **Delivery.** `BENCH_DELIVERIES` events fanned out to `BENCH_SUBSCRIPTIONS` subscriptions of
//!   one org (all pointing at one in-process receiver answering 204), delivered by the real worker
//!   (signing, attempts log, settling). Reference: the same HTTP client posting the same bodies to
//!   the same receiver at the same concurrency, with no database.
//! - **Correlation.** `BENCH_INCIDENTS` open incidents spread over 100 teams, then
//!   `BENCH_CORRELATIONS` events correlated one after another (half join an incident of their
//!   service, half open a new one), after the tables are vacuumed and analysed (as autovacuum
//!   would have done by then in a live database). Reference: a single-row INSERT round trip on the same database.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_api::outbound::OutboundEvent;
use switchyard_common::auth::ServiceKey;
use switchyard_common::clients::ConfigClient;
use switchyard_common::crypto::Keyring;
use switchyard_common::db::testing::TestDb;
use switchyard_common::db::{Backend, Db};
use switchyard_common::http::Actor;
use switchyard_common::telemetry::Metrics;
use switchyard_common::time::{now_ms, rfc3339};
use switchyard_orchestrator::incidents::Rules;
use switchyard_orchestrator::outbound::Outbound;
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::sources::Facts;
use switchyard_orchestrator::store::{Claimed, Store, SubscriptionFields};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    let db = TestDb::new(backend).await.unwrap();
    let conn = Db::connect(&db.url, 16).await.unwrap();
    conn.migrate().await.unwrap();
    let store = Store::new(conn);
    println!("backend: {}", backend.name());
    delivery(&store).await;
    correlation(&store).await;
}

/// A receiver that counts deliveries and answers 204.
async fn receiver() -> (Arc<AtomicU64>, String) {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (count, url)
}

async fn delivery(store: &Store) {
    let deliveries = knob("BENCH_DELIVERIES", 20_000);
    if deliveries == 0 {
        return;
    }
    let subscriptions = knob("BENCH_SUBSCRIPTIONS", 8).max(1);
    let limits = Limits {
        allow_private_subscription_targets: true,
        ..Limits::default()
    };
    let (count, url) = receiver().await;
    let keyring = Keyring::parse(&Keyring::generate_spec("bench")).unwrap();
    let by = Actor::system("bench");
    for _ in 0..subscriptions {
        let fields = SubscriptionFields {
            url: Some(url.clone()),
            event_types: Some(vec!["*".into()]),
            teams: Some(None),
            description: Some(None),
            enabled: Some(true),
            ordered: Some(false),
            ..SubscriptionFields::default()
        };
        store
            .create_subscription(&keyring, &by, "bench", &fields)
            .await
            .unwrap();
    }
    let events = deliveries / subscriptions;
    let body = json!({"run_id": "r", "status": "succeeded", "summary": "x".repeat(300)});
    for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<OutboundEvent> = chunk
            .iter()
            .map(|i| OutboundEvent {
                id: format!("bench-{i:08}"),
                event_type: "run.succeeded".into(),
                version: 1,
                timestamp: rfc3339(now_ms()),
                org_id: "bench".into(),
                team_id: Some("t".into()),
                data: body.clone(),
            })
            .collect();
        store.import_outbox(&batch).await.unwrap();
    }
    let total = (events * subscriptions) as u64;
    // The relay has no config-service to read here: it backs off quietly.
    let config = ConfigClient::new("http://127.0.0.1:9", ServiceKey::generate(), "orchestrator");
    let worker = Outbound::new(
        store.clone(),
        keyring,
        config,
        limits.clone(),
        &Metrics::new("bench"),
    )
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(worker.run(stop_rx));
    while count.load(Ordering::Relaxed) < total {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "deliveries stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let _ = stop_tx.send(true);
    let _ = running.await;
    let ours = total as f64 / took.as_secs_f64();

    // Reference: the same bodies, the same client settings and concurrency, no database.
    let concurrency = limits.delivery_concurrency;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let raw = serde_json::to_string(&body).unwrap();
    let before = count.load(Ordering::Relaxed);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, raw, next) = (http.clone(), url.clone(), raw.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    http.post(&url).body(raw.clone()).send().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let reference =
        (count.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
    println!(
        "delivery: {total} deliveries to {subscriptions} subscriptions in {:.2} s: {ours:.0}/s; \
         the receiver alone, same client and concurrency ({concurrency}): {reference:.0}/s; ratio {:.2}x",
        took.as_secs_f64(),
        ours / reference
    );
}

fn claimed(i: usize, service: &str) -> Claimed {
    Claimed {
        id: format!("bench-event-{i:08}"),
        integration_id: "bench".into(),
        org_id: Some("bench".into()),
        source: "alertmanager".into(),
        event_type: "alert.firing".into(),
        correlation_key: format!("alertmanager:{service}-{i}"),
        identifiers: Vec::new(),
        payload: Value::Null,
        reply_to: None,
        team_id: None,
        attempts: 1,
        traceparent: None,
        throttled_since: None,
        generation: 0,
        facts: Facts::default()
            .service(Some(service.into()))
            .severity(Some("warning".into()))
            .alert(Some(format!("alertmanager:{service}-{i}")), false),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn correlation(store: &Store) {
    let open = knob("BENCH_INCIDENTS", 10_000);
    let runs = knob("BENCH_CORRELATIONS", 2_000);
    if runs == 0 {
        return;
    }
    let teams = 100;
    let rules = Rules::default();
    // The events must exist: correlation records the incident on them.
    let db = store.clone();
    let seed = |i: usize| {
        let (team, service) = (format!("team-{}", i % teams), format!("svc-{i}"));
        (team, claimed(i, &service))
    };
    let started = Instant::now();
    for i in 0..open {
        let (team, e) = seed(i);
        db.bench_event(&e).await.unwrap();
        db.correlate(&e, "bench", &team, &rules)
            .await
            .unwrap()
            .unwrap();
    }
    println!(
        "correlation: {open} open incidents over {teams} teams seeded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    db.bench_analyze().await.unwrap();
    let mut ours = Vec::with_capacity(runs);
    let mut floor = Vec::with_capacity(runs);
    let (mut joins, mut opens) = (Vec::new(), Vec::new());
    for n in 0..runs {
        let i = open + n;
        // Half join an open incident of their service, half open a new one.
        let service = if n % 2 == 0 {
            format!("svc-{}", (n * 7919) % open)
        } else {
            format!("new-{i}")
        };
        let team = if n % 2 == 0 {
            format!("team-{}", ((n * 7919) % open) % teams)
        } else {
            format!("team-{}", i % teams)
        };
        let e = claimed(i, &service);
        db.bench_event(&e).await.unwrap();
        let t = Instant::now();
        db.correlate(&e, "bench", &team, &rules)
            .await
            .unwrap()
            .unwrap();
        ours.push(t.elapsed());
        if n % 2 == 0 {
            joins.push(t.elapsed());
        } else {
            opens.push(t.elapsed());
        }
        // The reference, interleaved: each correlation and its INSERT see the same moment of
        // this shared machine.
        let t = Instant::now();
        db.bench_insert_row().await.unwrap();
        floor.push(t.elapsed());
    }
    ours.sort();
    floor.sort();
    joins.sort();
    opens.sort();
    println!(
        "correlation: joining an open incident p50 {:.3} ms, p99 {:.3} ms; opening one p50 {:.3} ms, p99 {:.3} ms",
        percentile(&joins, 0.5),
        percentile(&joins, 0.99),
        percentile(&opens, 0.5),
        percentile(&opens, 0.99)
    );
    println!(
        "correlation: {runs} events with {open}+ open incidents: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; \
         a single-row INSERT round trip on the same database: p50 {:.3} ms, p99 {:.3} ms; p99 ratio {:.1}x",
        percentile(&ours, 0.5),
        percentile(&ours, 0.99),
        percentile(&ours, 1.0),
        percentile(&floor, 0.5),
        percentile(&floor, 0.99),
        percentile(&ours, 0.99) / percentile(&floor, 0.99)
    );
}
