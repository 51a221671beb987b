//! Dispatch is a pipeline: a run the agent-runner is slow to accept holds back its own key's
//! events only, not the events of other keys claimed after it. And it yields to webhook
//! deliveries, for a bounded time (ADR 0020).

mod stack;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use stack::{Options, Stack, eventually};
use switchyard_common::db::{Backend, Db};
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::sources::{Envelope, Source};
use switchyard_orchestrator::store::{Store, Stored};
use tokio::sync::watch;

/// A fake agent-runner that records every run's correlation key as it arrives, and answers runs
/// whose payload says `"hold": true` only once `release` turns true.
#[derive(Clone)]
struct Gated {
    arrived: Arc<Mutex<Vec<String>>>,
    release: watch::Receiver<bool>,
}

async fn accept(State(g): State<Gated>, Json(req): Json<Value>) -> Json<Value> {
    let key = req["idempotency_key"].as_str().unwrap_or("").to_owned();
    g.arrived.lock().unwrap().push(
        req["trigger"]["correlation_key"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    );
    if req["trigger"]["payload"]["hold"] == true {
        let _ = g.release.clone().wait_for(|r| *r).await;
    }
    Json(json!({"run_id": key, "started": true}))
}

async fn a_slow_run_holds_back_only_its_own_key(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    s.acme_checkout().await;
    s.stop_orchestrator();
    let (release, gate) = watch::channel(false);
    let arrived: Arc<Mutex<Vec<String>>> = Arc::default();
    let runner = stack::serve(
        axum::Router::new()
            .route("/api/v1/run", post(accept))
            .with_state(Gated {
                arrived: arrived.clone(),
                release: gate,
            }),
    )
    .await;

    let store = Store::new(Db::connect(&s.orch_db_url, 8).await.unwrap());
    let integration = s.pagerduty_integration(&store, "pipeline-secret-001").await;
    let event = |key: &str, hold: bool| Envelope {
        source: Source::Pagerduty,
        event_type: "incident.triggered".into(),
        delivery_id: format!("d-{key}"),
        identifiers: vec![("pagerduty_service".into(), "PSVC1".into())],
        correlation_key: format!("pagerduty:{key}"),
        payload: json!({"hold": hold}),
        reply_to: None,
        facts: Default::default(),
    };
    let (stop, rx) = watch::channel(false);
    let state = switchyard_orchestrator::AppState::new(
        store.clone(),
        s.keyring.clone(),
        None,
        s.key.clone(),
        &s.cs,
        &runner,
        Limits {
            dispatch_concurrency: Some(4),
            ..Limits::default()
        },
    );
    let dispatcher = tokio::spawn(state.dispatcher().run(rx));

    let stored = |s: Stored| match s {
        Stored::New(id) => id,
        Stored::Duplicate(id) => panic!("{id} stored twice"),
    };
    let slow = stored(
        store
            .store_event(&integration, &event("SLOW", true), Some("acme"))
            .await
            .unwrap(),
    );
    eventually("the slow run reached the runner", 15, || async {
        arrived.lock().unwrap().len() == 1
    })
    .await;
    // While the runner holds the slow run, later events of other keys are claimed and dispatched.
    let mut quick = Vec::new();
    for key in ["Q1", "Q2", "Q3"] {
        quick.push(stored(
            store
                .store_event(&integration, &event(key, false), Some("acme"))
                .await
                .unwrap(),
        ));
    }
    eventually(
        "the quick events dispatched while the slow run is held",
        15,
        || async {
            let mut all = true;
            for q in &quick {
                all &= store.get_event(None, q).await.unwrap().event.status == "dispatched";
            }
            all
        },
    )
    .await;
    assert_eq!(
        store.get_event(None, &slow).await.unwrap().event.status,
        "dispatching"
    );
    release.send(true).unwrap();
    eventually("the slow event dispatched once released", 15, || async {
        store.get_event(None, &slow).await.unwrap().event.status == "dispatched"
    })
    .await;
    let mut keys = arrived.lock().unwrap().clone();
    keys.sort();
    assert_eq!(
        keys,
        [
            "pagerduty:Q1",
            "pagerduty:Q2",
            "pagerduty:Q3",
            "pagerduty:SLOW"
        ]
    );
    let _ = stop.send(true);
    dispatcher.await.unwrap();
}

/// A PagerDuty signal for service PSVC1 (routed to acme/checkout) with correlation key `key`.
fn signal(key: &str, delivery: &str) -> Envelope {
    Envelope {
        source: Source::Pagerduty,
        event_type: "incident.triggered".into(),
        delivery_id: format!("d-{delivery}"),
        identifiers: vec![("pagerduty_service".into(), "PSVC1".into())],
        correlation_key: format!("pagerduty:{key}"),
        payload: json!({}),
        reply_to: None,
        facts: Default::default(),
    }
}

/// What `dispatch_yielded_seconds_total` says now.
fn yielded_seconds(state: &switchyard_orchestrator::AppState) -> f64 {
    state
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_orchestrator_dispatch_yielded_seconds_total "))
        .expect("the yield counter is exported")
        .parse()
        .unwrap()
}

/// While many deliveries wait for the event writer, dispatch waits before each event, a bounded
/// time: a writer busy without a break still sees its events dispatched, each after the bound.
async fn dispatch_yields_to_a_busy_writer_a_bounded_time(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    s.acme_checkout().await;
    s.stop_orchestrator();
    let (_release, gate) = watch::channel(true);
    let arrived: Arc<Mutex<Vec<String>>> = Arc::default();
    let runner = stack::serve(
        axum::Router::new()
            .route("/api/v1/run", post(accept))
            .with_state(Gated {
                arrived: arrived.clone(),
                release: gate,
            }),
    )
    .await;
    let store = Store::new(Db::connect(&s.orch_db_url, 8).await.unwrap());
    let integration = s.pagerduty_integration(&store, "pipeline-secret-002").await;
    let state = switchyard_orchestrator::AppState::new(
        store.clone(),
        s.keyring.clone(),
        None,
        s.key.clone(),
        &s.cs,
        &runner,
        Limits::default(),
    );
    // Deliveries held by the writer for the whole test, as under a burst that never ends.
    let pressure = state.ingress.pressure();
    let _held: Vec<_> = (0..switchyard_orchestrator::group_commit::BUSY)
        .map(|_| pressure.hold())
        .collect();
    let mut ids = Vec::new();
    // More keys, and so chains, than dispatch lets run without yielding (4).
    for key in ["Y1", "Y2", "Y3", "Y4", "Y5", "Y6"] {
        match store
            .store_event(&integration, &signal(key, key), Some("acme"))
            .await
            .unwrap()
        {
            Stored::New(id) => ids.push(id),
            Stored::Duplicate(id) => panic!("{id} stored twice"),
        }
    }
    // Started once all are stored: one claim takes the six keys.
    let (stop, rx) = watch::channel(false);
    let dispatcher = tokio::spawn(state.dispatcher().run(rx));
    eventually(
        "the events dispatched despite the busy writer",
        15,
        || async {
            let mut all = true;
            for id in &ids {
                all &= store.get_event(None, id).await.unwrap().event.status == "dispatched";
            }
            all
        },
    )
    .await;
    // Each event's chain waited the bound (200 ms) first, at least the five that started
    // while more than four ran: the yield is counted.
    let yielded = yielded_seconds(&state);
    assert!(yielded >= 0.99, "yielded {yielded} s for six events");
    assert_eq!(arrived.lock().unwrap().len(), 6);

    // One key's chain (a storm's shape) runs alone: it never yields.
    let mut storm = Vec::new();
    for n in 0..3 {
        match store
            .store_event(&integration, &signal("Z", &format!("Z{n}")), Some("acme"))
            .await
            .unwrap()
        {
            Stored::New(id) => storm.push(id),
            Stored::Duplicate(id) => panic!("{id} stored twice"),
        }
    }
    eventually("the key's signals dispatched", 15, || async {
        let mut all = true;
        for id in &storm {
            all &= store.get_event(None, id).await.unwrap().event.status == "dispatched";
        }
        all
    })
    .await;
    assert_eq!(yielded_seconds(&state), yielded, "a lone chain yielded");
    let _ = stop.send(true);
    dispatcher.await.unwrap();
}

switchyard_common::on_both_backends!(
    a_slow_run_holds_back_only_its_own_key,
    dispatch_yields_to_a_busy_writer_a_bounded_time
);
