//! Two orchestrator replicas on one PostgreSQL database dispatch a burst of 10,000 events, and no
//! event reaches the agent-runner twice (claims use FOR UPDATE SKIP LOCKED).

mod stack;

use std::collections::HashMap;

use serde_json::json;
use stack::{Stack, eventually};
use std::sync::Arc;
use switchyard_common::db::{Backend, Db};
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::store::Store;

const EVENTS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_dispatch_a_burst_exactly_once() {
    // The config-service (routing and quotas) from the stack; the agent-runner is a counting fake.
    let s = Stack::for_own_dispatch(Backend::Postgres).await;

    let (calls, runner) = stack::fake_runner("127.0.0.1:0".parse().unwrap()).await;

    // The burst: 10,000 stored events, each its own incident.
    let store = Store::new(Db::connect(&s.orch_db_url, 16).await.unwrap());
    let integration = s.pagerduty_integration(&store, "burst-secret-0001").await;
    let integration = Arc::new(integration);
    let mut writers = Vec::new();
    for w in 0..8 {
        let (store, integration) = (store.clone(), integration.clone());
        writers.push(tokio::spawn(async move {
            let mut i = w;
            while i < EVENTS {
                let env =
                    stack::psvc1_signal(&format!("INC{i}"), &format!("burst-{i}"), json!({"n": i}));
                store
                    .store_event(&integration, &env, Some("acme"))
                    .await
                    .unwrap();
                i += 8;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }

    // Two replicas, each with its own pool, dispatcher and LISTEN connection.
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let state = s.dispatch_state(
            Store::new(Db::connect(&s.orch_db_url, 16).await.unwrap()),
            &runner,
            Limits {
                dispatch_concurrency: Some(32),
                ..Limits::default()
            },
        );
        let d = state.dispatcher();
        replicas.push((state, tokio::spawn(d.run(rx.clone()))));
    }
    eventually("all 10,000 events dispatched", 240, || async {
        store
            .count_by_status()
            .await
            .unwrap()
            .iter()
            .any(|(st, n)| st == "dispatched" && *n as usize == EVENTS)
    })
    .await;
    let _ = stop.send(true);
    for (_, h) in replicas.iter_mut() {
        h.await.unwrap();
    }

    let mut seen: HashMap<String, u32> = HashMap::new();
    for (key, _) in calls.lock().unwrap().iter() {
        *seen.entry(key.clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), EVENTS, "every event reached the runner");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} events were dispatched more than once, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    // Both replicas did part of the work.
    for (state, _) in &replicas {
        let text = state.metrics.render();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("switchyard_orchestrator_dispatches_total{outcome=\"dispatched\"}")
            })
            .unwrap_or("");
        let n: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(n > 0.0, "a replica dispatched nothing:\n{text}");
    }
}
