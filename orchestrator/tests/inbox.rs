//! The inbox's rules at the store level, on PostgreSQL and SQLite: one correlation key in arrival
//! order, leases, release on shutdown, replay and retention purge.

use serde_json::json;
use switchyard_common::crypto::Keyring;
use switchyard_common::db::Backend;
use switchyard_common::db::testing::TestDb;
use switchyard_common::http::Actor;
use switchyard_common::time::now_ms;
use switchyard_orchestrator::depth::InboxGauges;
use switchyard_orchestrator::group_commit::GroupCommit;
use switchyard_orchestrator::sources::Envelope;
use switchyard_orchestrator::sources::Source;
use switchyard_orchestrator::store::NewIntegration;
use switchyard_orchestrator::store::{
    EventDetail, EventQuery, Integration, NewEvent, Settlement, Status, Store, Stored,
    SubscriptionFields, WriterConn,
};

async fn setup(b: Backend) -> (TestDb, Store, Integration) {
    let db = TestDb::new(b).await.unwrap();
    let store = Store::new(db.connect().await.unwrap());
    let i = integration(&store, "acme", Source::Pagerduty).await;
    (db, store, i)
}

/// An integration of `org` with one secret.
async fn integration(store: &Store, org: &str, source: Source) -> Integration {
    let keyring = Keyring::parse(&Keyring::generate_spec("t")).unwrap();
    store
        .create_integration(
            &keyring,
            &Actor::system("test"),
            &NewIntegration {
                org: Some(org),
                source,
                name: source.as_str(),
                default_team: None,
                settings: &json!({}),
                secrets: &["secret-0123456789".into()],
            },
        )
        .await
        .unwrap()
}

fn env(delivery: &str, correlation: &str) -> Envelope {
    Envelope {
        source: Source::Pagerduty,
        event_type: "incident.triggered".into(),
        delivery_id: delivery.into(),
        identifiers: vec![("pagerduty_service".into(), "S".into())],
        correlation_key: correlation.into(),
        payload: json!({"d": delivery}),
        reply_to: None,
        facts: Default::default(),
    }
}

fn retry_now(error: &str) -> Settlement {
    Settlement {
        next_attempt_at: Some(now_ms() - 1),
        error: Some(error.into()),
        ..Settlement::to(Status::Retrying)
    }
}

fn dispatched(run: &str) -> Settlement {
    Settlement {
        team: Some("t".into()),
        run_id: Some(run.into()),
        ..Settlement::to(Status::Dispatched)
    }
}

async fn new_id(store: &Store, i: &Integration, e: &Envelope) -> String {
    match store.store_event(i, e, Some("acme")).await.unwrap() {
        Stored::New(id) => id,
        Stored::Duplicate(id) => panic!("unexpected duplicate {id}"),
    }
}

/// The ids `worker` claims: up to `keys` correlation keys, `per_key` events of each.
async fn claim_ids(store: &Store, worker: &str, keys: i64, per_key: i64) -> Vec<String> {
    let claimed = store.claim(worker, keys, per_key, 30_000).await.unwrap();
    claimed.into_iter().map(|c| c.id).collect()
}

async fn one_incident_in_arrival_order(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let first = new_id(&store, &i, &env("d1", "pagerduty:INC1")).await;
    let second = new_id(&store, &i, &env("d2", "pagerduty:INC1")).await;
    let other = new_id(&store, &i, &env("d3", "pagerduty:INC2")).await;
    assert_eq!(
        claim_ids(&store, "w1", 10, 1).await,
        vec![first.clone(), other.clone()],
        "the second event of INC1 waits for the first"
    );
    assert!(
        claim_ids(&store, "w2", 10, 1).await.is_empty(),
        "claimed events are not claimed again"
    );
    // While the first is retrying, the second still waits: only the first is claimed again.
    assert!(
        store
            .settle(&first, "w1", &retry_now("down"))
            .await
            .unwrap()
    );
    assert_eq!(claim_ids(&store, "w1", 10, 1).await, vec![first.clone()]);
    assert!(
        store
            .settle(&first, "w1", &dispatched("run-1"))
            .await
            .unwrap()
    );
    assert_eq!(claim_ids(&store, "w1", 10, 1).await, vec![second]);
}

/// A claim takes a key's events that follow its earliest, in order, while they are due: a storm
/// on one key drains a chain per claim, and an event that must wait holds back those after it.
async fn a_key_is_claimed_as_a_chain_in_order(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let mut storm = Vec::new();
    for n in 0..5 {
        storm.push(new_id(&store, &i, &env(&format!("s{n}"), "pagerduty:STORM")).await);
    }
    let other = new_id(&store, &i, &env("o", "pagerduty:OTHER")).await;
    let mut expected = storm[..3].to_vec();
    expected.push(other.clone());
    assert_eq!(claim_ids(&store, "w1", 10, 3).await, expected);
    assert!(
        claim_ids(&store, "w2", 10, 10).await.is_empty(),
        "no event of a key whose earlier events are claimed"
    );
    // The second fails and is due again at once; the third is put back: the next claim takes the
    // second and everything after it, in order, with their attempts as counted.
    assert!(
        store
            .settle(&storm[0], "w1", &dispatched("run-1"))
            .await
            .unwrap()
    );
    assert!(
        store
            .settle(&storm[1], "w1", &retry_now("down"))
            .await
            .unwrap()
    );
    assert_eq!(store.release("w1", Some(&storm[2..3])).await.unwrap(), 1);
    let claimed = store.claim("w2", 10, 10, 30_000).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, storm[1..].to_vec());
    let attempts: Vec<_> = claimed.iter().map(|c| c.attempts).collect();
    assert_eq!(
        attempts,
        vec![2, 1, 1, 1],
        "putting back does not count an attempt"
    );
    // Now the second must wait a minute: none after it is claimed meanwhile.
    let later = Settlement {
        next_attempt_at: Some(now_ms() + 60_000),
        ..retry_now("down")
    };
    assert!(store.settle(&storm[1], "w2", &later).await.unwrap());
    assert_eq!(store.release("w2", Some(&storm[2..])).await.unwrap(), 3);
    assert!(claim_ids(&store, "w3", 10, 10).await.is_empty());
}

/// A storm whose head is in flight fills the first window of due events (512) with its followers:
/// a key behind them is still found, and a claim where the window saw every due event finds every
/// key's head without the complete form.
async fn a_key_behind_a_storm_is_found(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let early = new_id(&store, &i, &env("e", "pagerduty:EARLY")).await;
    let storm: Vec<NewEvent> = (0..600)
        .map(|n| NewEvent {
            env: env(&format!("s{n}"), "pagerduty:STORM"),
            ..new_event(&i, "unused")
        })
        .collect();
    for chunk in storm.chunks(200) {
        store.store_events(chunk).await.unwrap();
    }
    let behind = new_id(&store, &i, &env("b", "pagerduty:BEHIND")).await;
    // The storm's head in flight; the early key put back, so that the window (the early event
    // and 511 of the storm's followers) finds one head, and is full.
    let heads = claim_ids(&store, "w0", 2, 1).await;
    assert_eq!(heads.len(), 2, "the early event and the storm's head");
    assert!(heads.contains(&early));
    assert_eq!(
        store
            .release("w0", Some(std::slice::from_ref(&early)))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        claim_ids(&store, "w2", 10, 10).await,
        vec![early, behind],
        "the early key, and the key behind the storm's followers"
    );
    // A small backlog of several keys (the window sees every due event): each key's head, once.
    let (x, y) = (
        new_id(&store, &i, &env("x", "pagerduty:X")).await,
        new_id(&store, &i, &env("y", "pagerduty:Y")).await,
    );
    let y2 = new_id(&store, &i, &env("y2", "pagerduty:Y")).await;
    assert_eq!(claim_ids(&store, "w3", 10, 1).await, vec![x, y]);
    assert!(
        claim_ids(&store, "w4", 10, 1).await.is_empty(),
        "{y2} waits for y"
    );
}

/// Signals that joined an incident are settled many to a statement, only where the claim is still
/// the worker's, with their timelines and the `event.dispatched` of a subscribing org.
async fn joined_signals_settle_together(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let mut ids = Vec::new();
    for k in ["a", "b", "c"] {
        ids.push(new_id(&store, &i, &env(k, &format!("k:{k}"))).await);
    }
    assert_eq!(store.claim("stale", 10, 1, -1).await.unwrap().len(), 3);
    let taken = store.claim("fresh", 1, 1, 30_000).await.unwrap();
    assert_eq!(
        taken[0].id, ids[0],
        "the lease ran out: another worker took the first"
    );
    let keyring = Keyring::parse(&Keyring::generate_spec("t")).unwrap();
    let fields = SubscriptionFields {
        url: Some("https://example.com/hook".into()),
        event_types: Some(vec!["event.dispatched".into()]),
        ..Default::default()
    };
    store
        .create_subscription(&keyring, &Actor::system("test"), "acme", &fields)
        .await
        .unwrap();
    let joined = Settlement {
        org: Some("acme".into()),
        team: Some("t".into()),
        timeline: vec![
            ("routed", Some("team t (default team)".into())),
            (
                "joined_incident",
                Some("incident i1: run r1 is going".into()),
            ),
        ],
        ..Settlement::to(Status::Dispatched)
    };
    assert!(joined.joins_only());
    let items: Vec<_> = ids.iter().map(|id| (id.clone(), joined.clone())).collect();
    let mut batch = store.batch().await.unwrap();
    let lost = store
        .settle_dispatched(&mut batch, "stale", &items)
        .await
        .unwrap();
    store.commit(batch).await.unwrap();
    assert_eq!(
        lost,
        vec![ids[0].clone()],
        "only the claims still held are settled"
    );
    let first = store.get_event(Some("acme"), &ids[0]).await.unwrap();
    assert_eq!(first.event.status, "dispatching");
    for id in &ids[1..] {
        let e = store.get_event(Some("acme"), id).await.unwrap();
        assert_eq!(e.event.status, "dispatched");
        let kinds: Vec<_> = e.timeline.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds[kinds.len() - 2..], ["routed", "joined_incident"]);
    }
    assert_eq!(
        store.fan_out(100).await.unwrap(),
        2,
        "one event.dispatched each"
    );
}

/// The settler's settlements of started runs (one statement on PostgreSQL, a transaction on
/// SQLite) write the same: only where the claim is still the worker's, the run on the event and
/// on its incident run, and the `event.dispatched` of a subscribing org with the event as stored.
async fn started_runs_settle_in_a_statement_of_their_own(b: Backend) {
    let (db, store, i) = setup(b).await;
    let mut ids = Vec::new();
    for k in ["a", "b", "c"] {
        ids.push(new_id(&store, &i, &env(k, &format!("k:{k}"))).await);
    }
    assert_eq!(store.claim("stale", 10, 1, -1).await.unwrap().len(), 3);
    let taken = store.claim("fresh", 1, 1, 30_000).await.unwrap();
    assert_eq!(taken[0].id, ids[0], "another worker took the first");
    let keyring = Keyring::parse(&Keyring::generate_spec("t")).unwrap();
    let fields = SubscriptionFields {
        url: Some("https://example.com/hook".into()),
        event_types: Some(vec!["event.dispatched".into()]),
        ..Default::default()
    };
    store
        .create_subscription(&keyring, &Actor::system("test"), "acme", &fields)
        .await
        .unwrap();
    let pool = db.connect().await.unwrap().pool;
    sqlx::query(
        "INSERT INTO or_incident_runs (incident_id, event_id, run_id, started_at, status) VALUES ('i1', $1, NULL, 0, 'running')",
    )
    .bind(&ids[1])
    .execute(&pool)
    .await
    .unwrap();
    let at = now_ms();
    let items: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let s = Settlement {
                org: Some("acme".into()),
                team: Some("t".into()),
                routed_by: Some("service=checkout".into()),
                at: Some(at),
                ..dispatched(&format!("r{n}"))
            };
            (id.clone(), s)
        })
        .collect();
    let lost = store.settle_dispatched_now("stale", &items).await.unwrap();
    assert_eq!(lost, vec![ids[0].clone()], "only the claims still held");
    assert_eq!(
        store
            .get_event(Some("acme"), &ids[0])
            .await
            .unwrap()
            .event
            .status,
        "dispatching"
    );
    for (n, id) in ids.iter().enumerate().skip(1) {
        let e = store.get_event(Some("acme"), id).await.unwrap();
        assert_eq!(
            (e.event.status.as_str(), e.event.run_id.as_deref()),
            ("dispatched", Some(format!("r{n}").as_str()))
        );
    }
    let run: Option<String> =
        sqlx::query_scalar("SELECT run_id FROM or_incident_runs WHERE event_id = $1")
            .bind(&ids[1])
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(run.as_deref(), Some("r1"), "the incident run knows its run");
    let rows: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT event_type, team_id, data FROM or_outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let published: Vec<_> = rows
        .into_iter()
        .filter(|(t, _, _)| t == "event.dispatched")
        .map(|(_, team, data)| {
            (
                team,
                serde_json::from_str::<serde_json::Value>(&data).unwrap(),
            )
        })
        .collect();
    assert_eq!(published.len(), 2, "{published:?}");
    for (n, id) in ids.iter().enumerate().skip(1) {
        let e = store.get_event(Some("acme"), id).await.unwrap().event;
        let expected = json!({
            "event_id": id, "source": "pagerduty", "event_type": e.event_type,
            "integration_id": i.id, "status": "dispatched", "run_id": format!("r{n}"), "error": null,
        });
        assert!(
            published.contains(&(Some("t".into()), expected.clone())),
            "{expected} in {published:?}"
        );
    }
}

async fn leases_expire_and_shutdown_releases(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let a = new_id(&store, &i, &env("a", "k:a")).await;
    let bb = new_id(&store, &i, &env("b", "k:b")).await;
    // A lease that has already run out: another worker may take the event (a replica died).
    let claimed = store.claim("dead", 1, 1, -1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let taken = store.claim("alive", 10, 1, 30_000).await.unwrap();
    assert_eq!(taken.len(), 2, "the expired claim and the other event");
    assert_eq!(taken.iter().find(|c| c.id == a).unwrap().attempts, 2);
    // Graceful shutdown gives back what was claimed, without counting the attempt.
    assert_eq!(store.release("alive", None).await.unwrap(), 2);
    let again = store.claim("next", 10, 1, 30_000).await.unwrap();
    assert_eq!(again.iter().find(|c| c.id == bb).unwrap().attempts, 1);
}

async fn replay_and_purge(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let x = new_id(&store, &i, &env("x", "k:x")).await;
    let y = new_id(&store, &i, &env("y", "k:y")).await;
    store.claim("w", 10, 1, 30_000).await.unwrap();
    let unrouted = Settlement {
        error: Some("no route".into()),
        timeline: vec![("unrouted", None)],
        ..Settlement::to(Status::Unrouted)
    };
    assert!(store.settle(&x, "w", &unrouted).await.unwrap());
    assert!(store.settle(&y, "w", &dispatched("r")).await.unwrap());
    // Bulk replay by status touches only the unrouted one; a pending event cannot be replayed.
    let q = EventQuery {
        org: Some("acme".into()),
        status: Some(Status::Unrouted),
        ..Default::default()
    };
    assert_eq!(
        store
            .replay(&Actor::system("test"), &q, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .get_event(Some("acme"), &x)
            .await
            .unwrap()
            .event
            .status,
        "received"
    );
    assert_eq!(
        store
            .replay(
                &Actor::system("test"),
                &EventQuery {
                    org: Some("acme".into()),
                    ..Default::default()
                },
                Some(&x)
            )
            .await
            .unwrap(),
        0
    );
    assert!(
        store.get_event(Some("other"), &x).await.is_err(),
        "another org does not see it"
    );
    // Filters and cursors.
    let (page, next) = store
        .list_events(&EventQuery {
            org: Some("acme".into()),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.len(), page[0].id.clone()), (1, y.clone()));
    let (rest, _) = store
        .list_events(&EventQuery {
            org: Some("acme".into()),
            cursor: next,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest[0].id, x);
    // Purge removes finished events before the cut-off only; the delivery id is free afterwards.
    assert_eq!(
        store
            .purge(&Actor::system("test"), now_ms() + 1_000)
            .await
            .unwrap(),
        1,
        "only the dispatched one is finished"
    );
    assert!(store.get_event(None, &y).await.is_err());
    assert!(matches!(
        store
            .store_event(&i, &env("y", "k:y"), Some("acme"))
            .await
            .unwrap(),
        Stored::New(_)
    ));
    // A replay is a new generation: its run gets a new idempotency key.
    let again = store.claim("w", 10, 1, 30_000).await.unwrap();
    let x_again = again.iter().find(|c| c.id == x).unwrap();
    assert_eq!(x_again.generation, 1);
    assert_eq!(x_again.idempotency_key(), format!("{x}:replay-1"));
    assert!(again.iter().all(|c| c.id == x || c.generation == 0));
    assert_eq!(store.purge(&Actor::system("test"), 0).await.unwrap(), 0);
    // Replay and purge left their audit entries in the outbox, for the relay.
    let outbox = store.pending_audit(100).await.unwrap();
    let actions: Vec<(&str, Option<&str>)> = outbox
        .iter()
        .map(|e| (e.action.as_str(), e.org_id.as_deref()))
        .collect();
    assert!(
        actions.contains(&("events.replayed", Some("acme"))),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("events.purged", Some("acme"))),
        "{actions:?}"
    );
    let purged = outbox.iter().find(|e| e.action == "events.purged").unwrap();
    assert_eq!(purged.after.as_ref().unwrap()["purged"], 1);
    store
        .relayed_audit(
            &outbox
                .iter()
                .map(|e| e.source_id.clone())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert!(store.pending_audit(100).await.unwrap().is_empty());
}

/// A dispatcher whose lease ran out cannot overwrite what the replica that took over records.
async fn only_the_claim_holder_settles(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let id = new_id(&store, &i, &env("a", "k:a")).await;
    assert_eq!(store.claim("stale", 1, 1, -1).await.unwrap().len(), 1);
    assert_eq!(store.claim("fresh", 1, 1, 30_000).await.unwrap().len(), 1);
    assert_eq!(
        store
            .renew_claims(std::slice::from_ref(&id), "stale", 30_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .renew_claims(std::slice::from_ref(&id), "fresh", 30_000)
            .await
            .unwrap(),
        1
    );
    assert!(
        !store
            .settle(&id, "stale", &retry_now("late"))
            .await
            .unwrap(),
        "the stale worker's outcome is refused"
    );
    assert_eq!(
        store.get_event(None, &id).await.unwrap().event.status,
        "dispatching"
    );
    assert!(store.settle(&id, "fresh", &dispatched("r")).await.unwrap());
    let e = store.get_event(None, &id).await.unwrap();
    assert_eq!(
        (e.event.status.as_str(), e.event.run_id.as_deref()),
        ("dispatched", Some("r"))
    );
    assert!(
        !store
            .settle(&id, "fresh", &retry_now("twice"))
            .await
            .unwrap(),
        "a settled event is not settled again"
    );
}

/// Two tenants' events with the same correlation key do not wait on each other.
async fn ordering_is_per_integration(b: Backend) {
    let (_db, store, mine) = setup(b).await;
    let theirs = integration(&store, "other", Source::Jira).await;
    let blocked = new_id(&store, &mine, &env("m1", "jira:OPS-1")).await;
    assert_eq!(store.claim("w", 1, 1, 30_000).await.unwrap()[0].id, blocked);
    // Mine is stuck retrying; theirs, with the same key, goes ahead.
    let settle = Settlement {
        next_attempt_at: Some(now_ms() + 3_600_000),
        ..retry_now("down")
    };
    assert!(store.settle(&blocked, "w", &settle).await.unwrap());
    let other = match store
        .store_event(&theirs, &env("t1", "jira:OPS-1"), Some("other"))
        .await
        .unwrap()
    {
        Stored::New(id) => id,
        Stored::Duplicate(id) => panic!("duplicate {id}"),
    };
    let mine_later = new_id(&store, &mine, &env("m2", "jira:OPS-1")).await;
    let claimed: Vec<String> = store
        .claim("w", 10, 1, 30_000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        claimed,
        vec![other],
        "{mine_later} still waits for {blocked}"
    );
}

/// The throttle clock starts at the first throttling and stops at any other outcome.
async fn throttling_is_timed(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let id = new_id(&store, &i, &env("a", "k:a")).await;
    let throttled = Settlement {
        next_attempt_at: Some(now_ms() - 1),
        refund_attempt: true,
        ..Settlement::to(Status::Throttled)
    };
    let c = store.claim("w", 1, 1, 30_000).await.unwrap();
    assert_eq!(c[0].throttled_since, None);
    assert!(store.settle(&id, "w", &throttled).await.unwrap());
    let since = store.claim("w", 1, 1, 30_000).await.unwrap()[0]
        .throttled_since
        .expect("set by the first throttling");
    assert!(store.settle(&id, "w", &throttled).await.unwrap());
    let c = store.claim("w", 1, 1, 30_000).await.unwrap();
    assert_eq!(c[0].throttled_since, Some(since), "kept while throttled");
    assert_eq!(c[0].attempts, 1, "throttling spends no attempt");
    assert!(store.settle(&id, "w", &retry_now("x")).await.unwrap());
    assert_eq!(
        store.claim("w", 1, 1, 30_000).await.unwrap()[0].throttled_since,
        None
    );
}

fn new_event(i: &Integration, delivery: &str) -> NewEvent {
    NewEvent {
        integration_id: i.id.clone(),
        org: Some("acme".into()),
        env: env(delivery, &format!("pagerduty:{delivery}")),
        traceparent: None,
    }
}

/// Many deliveries in one transaction: each stored once with its timeline, a delivery repeated
/// within the batch or from an earlier one answered with the id it was first stored under.
async fn a_batch_stores_each_delivery_once(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let first = store
        .store_events(&[new_event(&i, "a"), new_event(&i, "b"), new_event(&i, "a")])
        .await
        .unwrap();
    let (Stored::New(a), Stored::New(bid)) = (&first[0], &first[1]) else {
        panic!("{first:?}")
    };
    assert_ne!(a, bid);
    assert_eq!(
        first[2],
        Stored::Duplicate(a.clone()),
        "repeated within the batch"
    );
    let second = store
        .store_events(&[new_event(&i, "c"), new_event(&i, "a")])
        .await
        .unwrap();
    assert!(matches!(&second[0], Stored::New(_)), "{second:?}");
    assert_eq!(
        second[1],
        Stored::Duplicate(a.clone()),
        "repeated from an earlier batch"
    );
    let (events, _) = store
        .list_events(&EventQuery {
            org: Some("acme".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 3, "a, b and c, once each");
    let detail = store.get_event(Some("acme"), a).await.unwrap();
    let kinds: Vec<&str> = detail.timeline.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["received", "verified"]);
    // Read off the event row: the delivery, the integration's path and the time it was stored.
    assert_eq!(
        detail.timeline[0].detail.as_deref(),
        Some(format!("delivery a via {}", i.webhook_path).as_str())
    );
    assert!(
        detail
            .timeline
            .iter()
            .all(|t| t.at == detail.event.received_at)
    );
}

/// The writer's kept connection ended by the server between two batches (a restart, an
/// administrator's `pg_terminate_backend`): the next batch is stored all the same, on a
/// connection the pool tests, and a delivery repeated from the first batch keeps its id.
async fn a_kept_connection_ended_between_batches_costs_no_batch(b: Backend) {
    let (db, store, i) = setup(b).await;
    let mut conn = WriterConn::default();
    let first = store
        .store_events_on(&mut conn, &[new_event(&i, "a")])
        .await
        .unwrap();
    let Stored::New(a) = &first[0] else {
        panic!("{first:?}")
    };
    if b == Backend::Postgres {
        let admin = switchyard_common::db::Db::connect(&db.url, 1)
            .await
            .unwrap();
        let ended: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()) ended",
        )
        .fetch_one(&admin.pool)
        .await
        .unwrap();
        assert!(ended >= 1, "the writer's connection was open");
    }
    let second = store
        .store_events_on(&mut conn, &[new_event(&i, "b"), new_event(&i, "a")])
        .await
        .unwrap();
    assert!(matches!(&second[0], Stored::New(_)), "{second:?}");
    assert_eq!(second[1], Stored::Duplicate(a.clone()));
}

/// Concurrent requests through the group-commit writer: 300 deliveries, each of 100 ids sent
/// three times at once, give 100 stored events and every repeat the first one's id.
async fn group_commit_answers_each_request_after_its_batch(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let writer = std::sync::Arc::new(GroupCommit::new(store.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..300 {
        let (writer, e) = (writer.clone(), new_event(&i, &format!("d{}", n % 100)));
        tasks.spawn(async move { (n % 100, writer.store(e).await.unwrap()) });
    }
    let mut ids: std::collections::HashMap<usize, Vec<Stored>> = Default::default();
    while let Some(r) = tasks.join_next().await {
        let (k, stored) = r.unwrap();
        ids.entry(k).or_default().push(stored);
    }
    for (k, answers) in &ids {
        let new: Vec<&String> = answers
            .iter()
            .filter_map(|s| match s {
                Stored::New(id) => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(new.len(), 1, "delivery d{k} stored once: {answers:?}");
        for s in answers {
            if let Stored::Duplicate(id) = s {
                assert_eq!(id, new[0], "a repeat answers the first id");
            }
        }
    }
    let (events, _) = store
        .list_events(&EventQuery {
            org: Some("acme".into()),
            limit: Some(500),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 100);
}

/// The depth gauges count what waits by status, leave the dispatched events out, and age the
/// oldest event still owed a dispatch.
async fn depth_gauges_follow_the_inbox(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let metrics = switchyard_common::telemetry::Metrics::new("t");
    let gauges = InboxGauges::new(&metrics);
    gauges.sample(&store).await.unwrap();
    let empty = metrics.render();
    assert!(
        empty.contains("t_inbox_events{status=\"received\"} 0"),
        "{empty}"
    );
    assert!(
        empty.contains("t_inbox_oldest_pending_age_seconds 0.0"),
        "{empty}"
    );

    let x = new_id(&store, &i, &env("x", "k:x")).await;
    let y = new_id(&store, &i, &env("y", "k:y")).await;
    new_id(&store, &i, &env("z", "k:z")).await;
    assert_eq!(claim_ids(&store, "w", 2, 1).await.len(), 2);
    let dead = Settlement {
        error: Some("gave up".into()),
        ..Settlement::to(Status::DeadLettered)
    };
    assert!(store.settle(&x, "w", &dead).await.unwrap());
    assert!(store.settle(&y, "w", &dispatched("r")).await.unwrap());
    gauges.sample(&store).await.unwrap();
    let text = metrics.render();
    for (status, n) in [("received", 1), ("dead_lettered", 1), ("dispatching", 0)] {
        assert!(
            text.contains(&format!("t_inbox_events{{status=\"{status}\"}} {n}\n")),
            "{status}: {text}"
        );
    }
    assert!(!text.contains("status=\"dispatched\""), "{text}");
    let age: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("t_inbox_oldest_pending_age_seconds "))
        .expect("the age gauge")
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
}

/// The purge goes batch by batch until nothing old and finished is left, leaves pending events
/// alone, and says how many it removed in one audit entry per org.
async fn purge_runs_in_batches(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let mut done = Vec::new();
    for n in 0..7 {
        done.push(new_id(&store, &i, &env(&format!("d{n}"), &format!("k:{n}"))).await);
    }
    let pending = new_id(&store, &i, &env("p", "k:p")).await;
    let claimed = claim_ids(&store, "w", 100, 1).await;
    for id in &done {
        assert!(claimed.contains(id));
        assert!(store.settle(id, "w", &dispatched("r")).await.unwrap());
    }
    store.release("w", None).await.unwrap();
    let before = store.pending_audit(100).await.unwrap().len();
    let purged = store
        .purge_in_batches(&Actor::system("test"), now_ms() + 1_000, 3)
        .await
        .unwrap();
    assert_eq!(purged, 7, "three batches: 3 + 3 + 1");
    for id in &done {
        assert!(store.get_event(None, id).await.is_err(), "{id} purged");
    }
    assert!(
        store.get_event(None, &pending).await.is_ok(),
        "pending kept"
    );
    let audit = store.pending_audit(100).await.unwrap();
    assert_eq!(audit.len(), before + 1, "one entry for the org");
    let last = audit.last().unwrap();
    assert_eq!(last.action, "events.purged");
    assert_eq!(last.after.as_ref().unwrap()["purged"], 7);
}

/// An event whose run started keeps its dispatch on its row (no timeline rows) and answers the
/// same `routed`, `dispatch_attempt` and `dispatched` entries, whichever statement settled it;
/// a replay writes them out as rows, so both generations' dispatches stay on the timeline in
/// order.
async fn a_dispatch_on_the_row_reads_as_timeline_entries_and_survives_a_replay(b: Backend) {
    let (db, store, i) = setup(b).await;
    let x = new_id(&store, &i, &env("x", "k:x")).await;
    let y = new_id(&store, &i, &env("y", "k:y")).await;
    store.claim("w", 10, 1, 30_000).await.unwrap();
    let started = |run: &str, at: i64| Settlement {
        org: Some("acme".into()),
        routed_by: Some("service=checkout".into()),
        at: Some(at),
        ..dispatched(run)
    };
    let at = now_ms();
    // One alone, one in the settler's multi-row statement.
    assert!(store.settle(&x, "w", &started("r1", at)).await.unwrap());
    let mut batch = store.batch().await.unwrap();
    let lost = store
        .settle_dispatched(&mut batch, "w", &[(y.clone(), started("r2", at))])
        .await
        .unwrap();
    store.commit(batch).await.unwrap();
    assert!(lost.is_empty());
    let entries = |e: &EventDetail| -> Vec<(String, Option<String>)> {
        e.timeline
            .iter()
            .map(|t| (t.kind.clone(), t.detail.clone()))
            .collect()
    };
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM or_event_timeline WHERE event_id = $1 OR event_id = $2",
    )
    .bind(&x)
    .bind(&y)
    .fetch_one(&db.connect().await.unwrap().pool)
    .await
    .unwrap();
    assert_eq!(stored, 0, "nothing written to the timeline table");
    for (id, run) in [(&x, "r1"), (&y, "r2")] {
        let e = store.get_event(Some("acme"), id).await.unwrap();
        assert_eq!(e.event.run_id.as_deref(), Some(run));
        let got = entries(&e);
        assert_eq!(
            got[2..],
            [
                ("routed".into(), Some("team t (service=checkout)".into())),
                ("dispatch_attempt".into(), Some("attempt 1".into())),
                ("dispatched".into(), Some(format!("run {run}"))),
            ]
        );
        assert_eq!(e.timeline[4].at, switchyard_common::time::rfc3339(at));
    }
    // Replayed and dispatched again: the first dispatch, the replay, the second, in order.
    assert_eq!(
        store
            .replay(&Actor::system("test"), &EventQuery::default(), Some(&x))
            .await
            .unwrap(),
        1
    );
    store.claim("w", 10, 1, 30_000).await.unwrap();
    assert!(
        store
            .settle(&x, "w", &started("r3", now_ms()))
            .await
            .unwrap()
    );
    let kinds: Vec<_> = entries(&store.get_event(None, &x).await.unwrap())
        .into_iter()
        .map(|(k, d)| format!("{k} {}", d.unwrap_or_default()))
        .collect();
    assert_eq!(
        kinds[2..],
        [
            "routed team t (service=checkout)",
            "dispatch_attempt attempt 1",
            "dispatched run r1",
            "replayed ",
            "routed team t (service=checkout)",
            "dispatch_attempt attempt 1",
            "dispatched run r3",
        ]
    );
}

/// An org's events list newest first whatever their status, page by page without a gap or a
/// repeat, and the filters narrow each page.
async fn an_orgs_events_list_newest_first_across_statuses(b: Backend) {
    let (_db, store, i) = setup(b).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(new_id(&store, &i, &env(&format!("l{n}"), &format!("k:l{n}"))).await);
    }
    // Statuses mixed: l0 dead-lettered, l1 and l2 dispatched (team t), l3 dispatching, l4 and
    // l5 received.
    let claimed = claim_ids(&store, "w", 4, 1).await;
    assert_eq!(claimed, ids[..4], "the oldest four, in order");
    let dead = Settlement {
        error: Some("gave up".into()),
        ..Settlement::to(Status::DeadLettered)
    };
    assert!(store.settle(&ids[0], "w", &dead).await.unwrap());
    for id in &ids[1..3] {
        assert!(store.settle(id, "w", &dispatched("r")).await.unwrap());
    }
    let page = |cursor: Option<String>, team: Option<&str>| {
        let store = store.clone();
        let team = team.map(str::to_owned);
        async move {
            store
                .list_events(&EventQuery {
                    org: Some("acme".into()),
                    team,
                    cursor,
                    limit: Some(2),
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (events, next) = page(cursor, None).await;
        assert!(events.len() <= 2);
        seen.extend(events.into_iter().map(|e| (e.id, e.status)));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(
        seen.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        newest_first
    );
    let statuses: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "received",
            "received",
            "dispatching",
            "dispatched",
            "dispatched",
            "dead_lettered"
        ]
    );
    let (team, next) = page(None, Some("t")).await;
    assert_eq!(
        team.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        [ids[2].clone(), ids[1].clone()]
    );
    assert!(next.is_none(), "nothing else of team t");
    // Another org's listing holds none of them.
    let (other, _) = store
        .list_events(&EventQuery {
            org: Some("globex".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other.is_empty());
}

switchyard_common::on_both_backends!(
    an_orgs_events_list_newest_first_across_statuses,
    a_dispatch_on_the_row_reads_as_timeline_entries_and_survives_a_replay,
    purge_runs_in_batches,
    depth_gauges_follow_the_inbox,
    a_batch_stores_each_delivery_once,
    a_kept_connection_ended_between_batches_costs_no_batch,
    group_commit_answers_each_request_after_its_batch,
    only_the_claim_holder_settles,
    ordering_is_per_integration,
    throttling_is_timed,
    one_incident_in_arrival_order,
    a_key_is_claimed_as_a_chain_in_order,
    a_key_behind_a_storm_is_found,
    joined_signals_settle_together,
    started_runs_settle_in_a_statement_of_their_own,
    leases_expire_and_shutdown_releases,
    replay_and_purge
);
