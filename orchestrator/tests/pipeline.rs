//! Dispatch is a pipeline: a run the agent-runner is slow to accept holds back its own key's
//! events only, not the events of other keys claimed after it. And it yields to webhook
//! deliveries, for a bounded time (ADR 0020).

mod stack;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use stack::{Stack, eventually, psvc1_signal};
use switchyard_common::db::{Backend, Db};
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::store::{Integration, Store, Stored};
use tokio::sync::watch;

/// A fake agent-runner that records every run's correlation key as it arrives, and answers runs
/// whose payload says `"hold": true` only once `release` turns true. It has only
/// `POST /api/v1/run`, as an agent-runner before `POST /api/v1/run/batch`: the dispatcher starts
/// its runs one call each (ADR 0022), so a held run holds back its own chain only. (With the
/// batch endpoint a batch is answered when its slowest run is: see the ADR.)
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

/// The stack of [`Stack::for_own_dispatch`], a [`Gated`] runner, the orchestrator's store and a
/// PagerDuty integration: what each test stores events in and dispatches them with.
struct Fixture {
    s: Stack,
    store: Store,
    integration: Integration,
    runner: String,
    arrived: Arc<Mutex<Vec<String>>>,
    release: watch::Sender<bool>,
}

impl Fixture {
    async fn start(b: Backend, secret: &str) -> Self {
        let s = Stack::for_own_dispatch(b).await;
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
        let integration = s.pagerduty_integration(&store, secret).await;
        Self {
            s,
            store,
            integration,
            runner,
            arrived,
            release,
        }
    }

    fn state(&self, limits: Limits) -> switchyard_orchestrator::AppState {
        self.s
            .dispatch_state(self.store.clone(), &self.runner, limits)
    }

    /// Stores a new event of correlation key `key`; its id.
    async fn store(&self, key: &str, delivery: &str, payload: Value) -> String {
        match self
            .store
            .store_event(
                &self.integration,
                &psvc1_signal(key, delivery, payload),
                Some("acme"),
            )
            .await
            .unwrap()
        {
            Stored::New(id) => id,
            Stored::Duplicate(id) => panic!("{id} stored twice"),
        }
    }

    async fn status(&self, id: &str) -> String {
        self.store.get_event(None, id).await.unwrap().event.status
    }

    async fn all_dispatched(&self, ids: &[String]) -> bool {
        for id in ids {
            if self.status(id).await != "dispatched" {
                return false;
            }
        }
        true
    }
}

async fn a_slow_run_holds_back_only_its_own_key(b: Backend) {
    let f = Fixture::start(b, "pipeline-secret-001").await;
    let (stop, rx) = watch::channel(false);
    let state = f.state(Limits {
        dispatch_concurrency: Some(4),
        ..Limits::default()
    });
    let dispatcher = tokio::spawn(state.dispatcher().run(rx));

    let slow = f.store("SLOW", "SLOW", json!({"hold": true})).await;
    eventually("the slow run reached the runner", 15, || async {
        f.arrived.lock().unwrap().len() == 1
    })
    .await;
    // While the runner holds the slow run, later events of other keys are claimed and dispatched.
    let mut quick = Vec::new();
    for key in ["Q1", "Q2", "Q3"] {
        quick.push(f.store(key, key, json!({"hold": false})).await);
    }
    eventually(
        "the quick events dispatched while the slow run is held",
        15,
        || f.all_dispatched(&quick),
    )
    .await;
    assert_eq!(f.status(&slow).await, "dispatching");
    f.release.send(true).unwrap();
    eventually("the slow event dispatched once released", 15, || async {
        f.status(&slow).await == "dispatched"
    })
    .await;
    let mut keys = f.arrived.lock().unwrap().clone();
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
    // The rounds' metrics: each event claimed once, the quick ones by claims made beside the
    // slow run's round (its stragglers), each claim that took events a round of its own.
    assert_eq!(metric(&state, "dispatch_claimed_events_total"), 4.0);
    let claims = metric(&state, "dispatch_claim_seconds_count");
    assert!(
        claims >= 2.0,
        "{claims} claims for a slow key and three quick ones"
    );
    eventually("the rounds recorded", 15, || async {
        metric(&state, "dispatch_round_seconds_count") >= 2.0
    })
    .await;
    assert!(metric(&state, "dispatch_round_seconds_count") <= claims);
    let _ = stop.send(true);
    dispatcher.await.unwrap();
}

/// What the orchestrator's metric `name` (unlabelled) says now.
fn metric(state: &switchyard_orchestrator::AppState, name: &str) -> f64 {
    let prefix = format!("switchyard_orchestrator_{name} ");
    state
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{name} is exported"))
        .parse()
        .unwrap()
}

/// While many deliveries wait for the event writer, dispatch waits before each event, a bounded
/// time: a writer busy without a break still sees its events dispatched, each after the bound.
async fn dispatch_yields_to_a_busy_writer_a_bounded_time(b: Backend) {
    let f = Fixture::start(b, "pipeline-secret-002").await;
    let state = f.state(Limits::default());
    // Deliveries held by the writer for the whole test, as under a burst that never ends.
    let pressure = state.ingress.pressure();
    let _held: Vec<_> = (0..switchyard_orchestrator::group_commit::BUSY)
        .map(|_| pressure.hold())
        .collect();
    let mut ids = Vec::new();
    // More keys, and so chains, than dispatch lets run without yielding (4).
    for key in ["Y1", "Y2", "Y3", "Y4", "Y5", "Y6"] {
        ids.push(f.store(key, key, json!({})).await);
    }
    // Started once all are stored: one claim takes the six keys.
    let (stop, rx) = watch::channel(false);
    let dispatcher = tokio::spawn(state.dispatcher().run(rx));
    eventually("the events dispatched despite the busy writer", 15, || {
        f.all_dispatched(&ids)
    })
    .await;
    // Each event's chain waited the bound (200 ms) first, at least the five that started
    // while more than four ran: the yield is counted.
    let yielded = metric(&state, "dispatch_yielded_seconds_total");
    assert!(yielded >= 0.99, "yielded {yielded} s for six events");
    assert_eq!(f.arrived.lock().unwrap().len(), 6);

    // One key's chain (a storm's shape) runs alone: it never yields.
    let mut storm = Vec::new();
    for n in 0..3 {
        storm.push(f.store("Z", &format!("Z{n}"), json!({})).await);
    }
    eventually("the key's signals dispatched", 15, || {
        f.all_dispatched(&storm)
    })
    .await;
    assert_eq!(
        metric(&state, "dispatch_yielded_seconds_total"),
        yielded,
        "a lone chain yielded"
    );
    let _ = stop.send(true);
    dispatcher.await.unwrap();
}

switchyard_common::on_both_backends!(
    a_slow_run_holds_back_only_its_own_key,
    dispatch_yields_to_a_busy_writer_a_bounded_time
);
