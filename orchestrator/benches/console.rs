//! The web console's event pages with `BENCH_ROWS` events in the inbox (default 100,000; 10% of
//! them dead letters, two timeline rows each): how long the orchestrator takes to render each page,
//! measured through its whole router as a browser's request arrives (session cookie opened, the
//! events API called in process, HTML rendered). Reference, in the same run: the events API's own
//! JSON answer for the same page, so the ratio shows what the console adds.
//!
//! Run: `cargo bench -p switchyard-orchestrator --bench console`
//! Knobs: BENCH_BACKEND=postgres|sqlite (sqlite, as `switchyard dev`), BENCH_ROWS (100000),
//! BENCH_REQUESTS per page (200).
//!
//! Goal (issue 12): every page under 200 ms with 100,000 events.

use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::json;
use switchyard_common::auth::ServiceKey;
use switchyard_common::crypto::Keyring;
use switchyard_common::db::Backend;
use switchyard_console::session::Session;
use switchyard_orchestrator::AppState;
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::store::Store;
use tower::ServiceExt;

mod support;

const ADMIN: &str = "bench-console-admin-token-0123456789";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds per request for `path`: (p50, p99, max), and the last body.
async fn measure(app: &axum::Router, path: &str, auth: (&str, &str), n: usize) -> (f64, f64, f64) {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let req = Request::get(path)
            .header(auth.0, auth.1)
            .body(Body::empty())
            .unwrap();
        let t = Instant::now();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    times.sort_by(f64::total_cmp);
    let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
    (at(50), at(99), *times.last().unwrap())
}

#[tokio::main]
async fn main() {
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let rows = knob("BENCH_ROWS", 100_000);
    let n = knob("BENCH_REQUESTS", 200);
    println!("console pages over {rows} events ({backend:?}), {n} requests per page");
    let (_test, db) = support::fresh(backend, rows).await;
    // Every tenth event a dead letter, every third from PagerDuty (by the tens digit of their
    // number: the newest tenth, received today, all end in 0; see `support::fill`).
    sqlx::query("UPDATE or_events SET status = 'dead_lettered', last_error = 'agent-runner: 422' WHERE id LIKE '%7_'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE or_events SET source = 'pagerduty' WHERE id LIKE '%3_' OR id LIKE '%6_' OR id LIKE '%9_'")
        .execute(&db.pool)
        .await
        .unwrap();
    // Statistics as autovacuum would have them by now (the planner picks the index by them).
    if backend == Backend::Postgres {
        sqlx::query("VACUUM ANALYZE or_events")
            .execute(&db.pool)
            .await
            .unwrap();
    } else {
        sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
    }
    let keyring = Keyring::parse(&Keyring::generate_spec("bench")).unwrap();
    let state = AppState::new(
        Store::new(db.clone()),
        keyring.clone(),
        Some(ADMIN.into()),
        ServiceKey::generate(),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        Limits::default(),
    );
    let app = switchyard_orchestrator::app(state);
    let console = switchyard_console::Console::new(
        keyring,
        switchyard_console::upstream::Upstream::http("http://127.0.0.1:9"),
        switchyard_console::upstream::Upstream::http("http://127.0.0.1:9"),
        false,
    );
    let session = Session::new(
        ADMIN.into(),
        &json!({"kind": "platform_admin", "subject": "bench"}),
    );
    let cookie = format!("sy_console={}", session.seal(&console));
    let bearer = format!("Bearer {ADMIN}");

    // A cursor deep in the list: the 40th page.
    let mut cursor = None;
    for _ in 0..40 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/orgs/acme/events?limit=50&cursor={c}"),
            None => "/api/v1/orgs/acme/events?limit=50".to_owned(),
        };
        let resp = app
            .clone()
            .oneshot(
                Request::get(path)
                    .header(header::AUTHORIZATION, &bearer)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        cursor = v["next_cursor"].as_str().map(str::to_owned);
    }
    let deep = cursor.expect("40 pages of events");
    // The 17th event filled (ids are time-ordered, ending in their number: `support::fill`).
    let an_event: String =
        sqlx::query_scalar("SELECT id FROM or_events WHERE id LIKE '%000000000017'")
            .fetch_one(&db.pool)
            .await
            .expect("the 17th event");

    println!("| page | console p50 / p99 / max (ms) | API p50 / p99 (ms) | ratio p99 |");
    println!("|---|---|---|---|");
    for (name, query) in [
        ("events, newest", "?limit=50".to_owned()),
        ("dead letters", "?status=dead_lettered&limit=50".to_owned()),
        ("by source", "?source=pagerduty&limit=50".to_owned()),
        (
            "by team and status",
            "?team=checkout&status=dispatched&limit=50".to_owned(),
        ),
        ("40th page", format!("?limit=50&cursor={deep}")),
    ] {
        let page = format!("/console/orgs/acme/events{query}");
        let api = format!("/api/v1/orgs/acme/events{query}");
        let c = measure(&app, &page, ("cookie", &cookie), n).await;
        let a = measure(&app, &api, ("authorization", &bearer), n).await;
        println!(
            "| {name} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} | {:.2}x |",
            c.0,
            c.1,
            c.2,
            a.0,
            a.1,
            c.1 / a.1
        );
    }
    let c = measure(
        &app,
        &format!("/console/orgs/acme/events/{an_event}"),
        ("cookie", &cookie),
        n,
    )
    .await;
    let a = measure(
        &app,
        &format!("/api/v1/orgs/acme/events/{an_event}"),
        ("authorization", &bearer),
        n,
    )
    .await;
    println!(
        "| one event | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} | {:.2}x |",
        c.0,
        c.1,
        c.2,
        a.0,
        a.1,
        c.1 / a.1
    );
}
