//! Outbound delivery (ADR 0011) through the real services, on PostgreSQL and SQLite: receivers
//! verify every delivery with the Standard Webhooks reference library; a run that went through
//! end to end arrives as `run.succeeded`; a failing receiver gets the event on the third attempt
//! with the attempts log showing all three; disabled and other teams' subscriptions get nothing;
//! resend and recover send again with the same `webhook-id`; a subscription that keeps failing is
//! disabled and the org's other subscriptions hear of it.

mod stack;

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use stack::{ADMIN, Options, Receiver, Stack, eventually};
use switchyard_common::db::Backend;
use switchyard_orchestrator::settings::Limits;
use switchyard_orchestrator::sources::verify::sign::hmac_hex;

const PD_SECRET: &str = "pagerduty-secret-outbound";

struct Api<'a> {
    s: &'a Stack,
}

impl Api<'_> {
    async fn call(&self, token: &str, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/api/v1/orgs/acme{path}", self.s.orch);
        self.s.call(token, m, url, body).await
    }

    /// Subscribes `receiver` (which then verifies with the secret); answers the subscription id.
    async fn subscribe(&self, receiver: &Receiver, url: &str, body: Value) -> String {
        let mut body = body;
        body["url"] = json!(url);
        let (st, v) = self
            .call(ADMIN, Method::POST, "/subscriptions", Some(body))
            .await;
        assert_eq!(st, 201, "{v}");
        *receiver.secret.lock().unwrap() = Some(v["secret"].as_str().unwrap().to_owned());
        v["id"].as_str().unwrap().to_owned()
    }

    async fn attempts(&self, sub: &str) -> Vec<Value> {
        let (st, v) = self
            .call(
                ADMIN,
                Method::GET,
                &format!("/subscriptions/{sub}/attempts"),
                None,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        v["items"].as_array().cloned().unwrap()
    }
}

/// Org acme, teams checkout (PagerDuty service PSVC1) and search, and a PagerDuty integration.
async fn acme(s: &Stack) -> String {
    s.acme_checkout().await;
    s.must(
        Method::POST,
        format!("{}/api/v1/orgs/acme/nodes", s.cs),
        Some(json!({"id": "search", "kind": "team", "name": "Search"})),
    )
    .await;
    let pd = s
        .must(
            Method::POST,
            format!("{}/api/v1/orgs/acme/integrations", s.orch),
            Some(json!({"source": "pagerduty", "name": "PD", "secrets": [PD_SECRET]})),
        )
        .await;
    pd["id"].as_str().unwrap().to_owned()
}

/// Sends a signed PagerDuty `incident.triggered` for service PSVC1; answers the event id.
async fn page(s: &Stack, pd: &str, incident: &str) -> String {
    page_service(s, pd, incident, ("PSVC1", "checkout")).await
}

/// Sends a signed PagerDuty `incident.triggered` for PagerDuty service `(id, name)`; answers
/// the event id.
async fn page_service(
    s: &Stack,
    pd: &str,
    incident: &str,
    (service, name): (&str, &str),
) -> String {
    let body = json!({"event": {"id": format!("ev-{incident}"), "event_type": "incident.triggered",
        "occurred_at": "2026-12-04T08:00:00Z",
        "data": {"id": incident, "type": "incident", "title": format!("{name} is down"),
                 "service": {"id": service, "type": "service_reference", "summary": name}}}})
    .to_string()
    .into_bytes();
    let headers = vec![
        (
            "x-pagerduty-signature",
            format!("v1={}", hmac_hex(PD_SECRET.as_bytes(), &[&body])),
        ),
        ("x-webhook-id", format!("delivery-{incident}")),
        ("content-type", "application/json".into()),
    ];
    let (st, v, _) = s
        .webhook(&format!("/webhooks/pagerduty/{pd}"), &headers, &body)
        .await;
    assert_eq!(st, 200, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

/// `n` relayed `run.succeeded` events of acme/checkout, as the config-service's outbox has them
/// (ids `<prefix>-0000`...).
fn run_events(prefix: &str, n: usize) -> Vec<switchyard_api::outbound::OutboundEvent> {
    (0..n)
        .map(|i| switchyard_api::outbound::OutboundEvent {
            id: format!("{prefix}-{i:04}"),
            event_type: "run.succeeded".into(),
            version: 1,
            timestamp: switchyard_common::time::rfc3339(switchyard_common::time::now_ms()),
            org_id: "acme".into(),
            team_id: Some("checkout".into()),
            data: json!({"run_id": format!("r{i}")}),
        })
        .collect()
}

/// A stack with fast delivery retries and no agent-runner (nothing dispatched runs).
async fn without_runner(b: Backend) -> Stack {
    Stack::start(
        b,
        Options {
            start_runner: false,
            ..fast(Options::default().limits)
        },
    )
    .await
}

fn fast(limits: Limits) -> Options {
    Options {
        limits: Limits {
            delivery_schedule: "20ms,20ms".into(),
            ..limits
        },
        ..Options::default()
    }
}

async fn a_run_reaches_a_receiver_verifying_with_the_standard_webhooks_library(b: Backend) {
    let s = Stack::start(b, fast(Options::default().limits)).await;
    let pd = acme(&s).await;
    let api = Api { s: &s };
    let (ops, ops_url) = Receiver::start().await;
    let (off, off_url) = Receiver::start().await;
    let (search, search_url) = Receiver::start().await;
    let ops_sub = api
        .subscribe(
            &ops,
            &ops_url,
            json!({"event_types": ["run.*", "event.dispatched"]}),
        )
        .await;
    let off_sub = api
        .subscribe(&off, &off_url, json!({"event_types": ["*"]}))
        .await;
    let (st, _) = api
        .call(
            ADMIN,
            Method::PATCH,
            &format!("/subscriptions/{off_sub}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, 200);
    let search_sub = api
        .subscribe(
            &search,
            &search_url,
            json!({"event_types": ["*"], "teams": ["search"]}),
        )
        .await;

    let event = page(&s, &pd, "PINC1").await;
    // Deliveries of one fan-out go out concurrently: wait for each, whatever their order.
    eventually(
        "run.started, run.succeeded and event.dispatched arrive",
        30,
        || async {
            ["run.started", "run.succeeded", "event.dispatched"]
                .iter()
                .all(|t| !ops.of_type(t).is_empty())
        },
    )
    .await;
    let got = ops.got();
    assert!(
        got.iter().all(|g| g.verified),
        "every delivery verifies: {got:?}"
    );
    let done = &ops.of_type("run.succeeded")[0];
    assert_eq!(done.body["version"], 1);
    assert_eq!(done.body["org_id"], "acme");
    assert_eq!(done.body["team_id"], "checkout");
    assert_eq!(
        done.body["id"],
        json!(done.id),
        "the envelope's id is the webhook-id"
    );
    assert_eq!(done.body["data"]["trigger_event_id"], json!(event));
    assert_eq!(done.body["data"]["status"], "succeeded");
    let run_id = done.body["data"]["run_id"].as_str().unwrap();
    let started = ops.of_type("run.started");
    assert_eq!(started.len(), 1, "{got:?}");
    assert_eq!(started[0].body["data"]["run_id"], json!(run_id));
    let dispatched = ops.of_type("event.dispatched");
    assert_eq!(dispatched.len(), 1, "{got:?}");
    assert_eq!(dispatched[0].body["data"]["event_id"], json!(event));
    assert_eq!(dispatched[0].body["data"]["run_id"], json!(run_id));
    assert!(
        ops.of_type("event.received").is_empty(),
        "not subscribed: {got:?}"
    );

    // The fan-out that queued run.succeeded had every earlier event: the disabled subscription
    // and the one limited to another team got nothing, and have no attempts.
    assert!(off.got().is_empty(), "{:?}", off.got());
    assert!(search.got().is_empty(), "{:?}", search.got());
    assert!(api.attempts(&off_sub).await.is_empty());
    assert!(api.attempts(&search_sub).await.is_empty());
    let attempts = api.attempts(&ops_sub).await;
    assert_eq!(attempts.len(), got.len());
    assert!(
        attempts
            .iter()
            .all(|a| a["status"] == "succeeded" && a["response_code"] == 200)
    );

    // A team token sees its own team's subscription's attempts, never another team's.
    let (search_token, checkout_token) = (
        s.team_token("acme", "search").await,
        s.team_token("acme", "checkout").await,
    );
    let path = format!("/subscriptions/{search_sub}/attempts");
    assert_eq!(
        api.call(&search_token, Method::GET, &path, None).await.0,
        200
    );
    assert_eq!(
        api.call(&checkout_token, Method::GET, &path, None).await.0,
        404
    );
    let path = format!("/subscriptions/{ops_sub}/attempts");
    assert_eq!(
        api.call(&checkout_token, Method::GET, &path, None).await.0,
        404
    );
}

async fn a_failing_receiver_gets_it_on_the_third_attempt(b: Backend) {
    let s = without_runner(b).await;
    let pd = acme(&s).await;
    let api = Api { s: &s };
    let (flaky, url) = Receiver::start().await;
    let long = "x".repeat(5000);
    flaky.answer(&[(500, &long), (500, "still down")]);
    let sub = api
        .subscribe(&flaky, &url, json!({"event_types": ["event.received"]}))
        .await;
    let event = page(&s, &pd, "PINC2").await;
    eventually("the third attempt succeeds", 30, || async {
        api.attempts(&sub)
            .await
            .first()
            .is_some_and(|a| a["status"] == "succeeded")
    })
    .await;
    let got = flaky.got();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().all(|g| g.verified && g.id == got[0].id),
        "{got:?}"
    );
    assert_eq!(got[0].body["data"]["event_id"], json!(event));
    let log = api.attempts(&sub).await;
    assert_eq!(log.len(), 3, "{log:?}");
    let codes: Vec<_> = log
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["response_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(codes, [(3, 200), (2, 500), (1, 500)]);
    assert_eq!(
        log[2]["response_body"].as_str().unwrap().len(),
        1024,
        "the first 1 KB of the answer"
    );
    assert_eq!(log[1]["response_body"], "still down");
    assert_eq!(log[0]["delivery_status"], "succeeded");

    // Resend: the same webhook-id again, one more attempt in the log.
    let (st, v) = api
        .call(
            ADMIN,
            Method::POST,
            &format!(
                "/subscriptions/{sub}/attempts/{}/resend",
                log[0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(st, 202, "{v}");
    eventually("the resend arrives", 30, || async {
        flaky.got().len() == 4
    })
    .await;
    assert_eq!(flaky.got()[3].id, got[0].id);
    eventually("the resend is logged", 30, || async {
        api.attempts(&sub).await.len() == 4
    })
    .await;

    // A delivery whose schedule runs out is failed; recover sends it again.
    flaky.answer(&[(503, ""), (503, ""), (503, "")]);
    let second = page(&s, &pd, "PINC3").await;
    eventually("the delivery fails after three attempts", 30, || async {
        let log = api.attempts(&sub).await;
        log.len() == 7 && log[0]["delivery_status"] == "failed"
    })
    .await;
    let (st, v) = api
        .call(
            ADMIN,
            Method::POST,
            &format!("/subscriptions/{sub}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((st, v["recovered"].as_u64()), (202, Some(1)), "{v}");
    eventually("the recovered delivery succeeds", 30, || async {
        api.attempts(&sub).await[0]["status"] == "succeeded"
    })
    .await;
    let for_second: Vec<_> = flaky
        .got()
        .into_iter()
        .filter(|g| g.body["data"]["event_id"] == json!(second))
        .collect();
    assert_eq!(for_second.len(), 4);
    assert!(
        for_second
            .iter()
            .all(|g| g.id == for_second[0].id && g.verified)
    );

    // Bad input.
    let (st, v) = api
        .call(
            ADMIN,
            Method::POST,
            &format!("/subscriptions/{sub}/recover"),
            Some(json!({"since": "yesterday"})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let (st, _) = api
        .call(
            ADMIN,
            Method::POST,
            &format!("/subscriptions/{sub}/attempts/nope/resend"),
            None,
        )
        .await;
    assert_eq!(st, 404);
}

async fn a_subscription_failing_too_long_is_disabled_and_the_org_told(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..fast(Limits {
                subscription_disable_after_seconds: 0,
                ..Options::default().limits
            })
        },
    )
    .await;
    let pd = acme(&s).await;
    let api = Api { s: &s };
    let (down, down_url) = Receiver::start().await;
    down.answer(&[(500, ""); 10]);
    let (watch, watch_url) = Receiver::start().await;
    let down_sub = api
        .subscribe(&down, &down_url, json!({"event_types": ["event.received"]}))
        .await;
    api.subscribe(
        &watch,
        &watch_url,
        json!({"event_types": ["subscription.disabled", "event.received"]}),
    )
    .await;
    page(&s, &pd, "PINC4").await;
    eventually(
        "the org hears the subscription was disabled",
        30,
        || async { !watch.of_type("subscription.disabled").is_empty() },
    )
    .await;
    let told = &watch.of_type("subscription.disabled")[0];
    assert!(told.verified);
    assert_eq!(told.body["data"]["subscription_id"], json!(down_sub));
    let (_, read) = api
        .call(
            ADMIN,
            Method::GET,
            &format!("/subscriptions/{down_sub}"),
            None,
        )
        .await;
    assert_eq!(read["enabled"], false);
    assert!(
        read["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failed since"),
        "{read}"
    );
    // Disabled: the next event reaches the other subscription, not this one.
    let next = page(&s, &pd, "PINC5").await;
    eventually("the next event is delivered", 30, || async {
        watch
            .of_type("event.received")
            .iter()
            .any(|g| g.body["data"]["event_id"] == json!(next))
    })
    .await;
    assert_eq!(down.got().len(), 1, "one attempt, then disabled");
    eventually("the audit log records it", 30, || async {
        let v = s
            .must(
                Method::GET,
                format!(
                    "{}/api/v1/orgs/acme/audit?action=subscription.disabled",
                    s.cs
                ),
                None,
            )
            .await;
        !v["items"].as_array().unwrap().is_empty()
    })
    .await;
}

async fn an_ordered_subscription_gets_events_in_order_one_at_a_time(b: Backend) {
    let s = without_runner(b).await;
    let pd = acme(&s).await;
    let api = Api { s: &s };
    let (rx, url) = Receiver::start().await;
    // The first event's first attempt fails: the second must wait for its retry to succeed.
    rx.answer(&[(503, "busy")]);
    api.subscribe(
        &rx,
        &url,
        json!({"event_types": ["event.received"], "ordered": true}),
    )
    .await;
    let first = page(&s, &pd, "PORD1").await;
    let second = page(&s, &pd, "PORD2").await;
    eventually("both events are delivered", 30, || async {
        rx.got().len() == 3
    })
    .await;
    let order: Vec<String> = rx
        .got()
        .iter()
        .map(|g| g.body["data"]["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [first.clone(), first, second],
        "retried first, then the next"
    );
}

async fn two_replicas_deliver_each_event_once(b: Backend) {
    let s = without_runner(b).await;
    acme(&s).await;
    let api = Api { s: &s };
    let (rx, url) = Receiver::start().await;
    api.subscribe(&rx, &url, json!({"event_types": ["run.*"]}))
        .await;
    // A second replica's delivery worker on the same database, beside the stack's own.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let replica = tokio::spawn(s.orch_state.outbound().unwrap().run(stopped));
    let events = run_events("replicas", 300);
    s.orch_state.store.import_outbox(&events).await.unwrap();
    eventually("every event is delivered", 60, || async {
        rx.got().len() >= 300
    })
    .await;
    let _ = stop.send(true);
    let _ = replica.await;
    let got = rx.got();
    let ids: std::collections::HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(
        (got.len(), ids.len()),
        (300, 300),
        "each event once, none twice"
    );
    assert!(got.iter().all(|g| g.verified));
}

/// A `slack` subscription posts a readable message per event to the incoming-webhook URL it
/// reads from an org secret shared with the orchestrator; the URL never appears in what the API
/// answers; a secret not shared, a missing one, or a `url` are refused with their pointer; it
/// has no signing secret to rotate.
async fn a_slack_subscription_posts_readable_messages_to_the_url_in_the_secrets_store(b: Backend) {
    let s = Stack::start(b, fast(Options::default().limits)).await;
    let pd = acme(&s).await;
    let api = Api { s: &s };
    let (slack, slack_url) = Receiver::start().await;
    let secret = |name: &str, readers: Value| {
        let (s, url) = (&s, slack_url.clone());
        let path = format!("{}/api/v1/orgs/acme/secrets/{name}", s.cs);
        async move {
            s.call(
                ADMIN,
                Method::PUT,
                path,
                Some(json!({"value": url, "readers": readers})),
            )
            .await
        }
    };
    assert_eq!(
        secret("slack-agent-only", json!(["agent-runner"])).await.0,
        201
    );
    assert_eq!(secret("slack-oncall", json!(["orchestrator"])).await.0, 201);
    let types = json!(["run.*"]);
    for (body, pointer) in [
        (
            json!({"kind": "slack", "url_secret": "slack-agent-only", "event_types": types}),
            "/url_secret",
        ),
        (
            json!({"kind": "slack", "url_secret": "no-such-secret", "event_types": types}),
            "/url_secret",
        ),
        (
            json!({"kind": "slack", "url": slack_url, "event_types": types}),
            "/url",
        ),
        (
            json!({"kind": "slack", "event_types": types}),
            "/url_secret",
        ),
        (
            json!({"url_secret": "slack-oncall", "url": slack_url, "event_types": types}),
            "/url_secret",
        ),
    ] {
        let (st, v) = api
            .call(ADMIN, Method::POST, "/subscriptions", Some(body.clone()))
            .await;
        assert_eq!(
            (st, v["errors"][0]["pointer"].as_str()),
            (422, Some(pointer)),
            "{body}: {v}"
        );
    }
    let (st, v) = api
        .call(
            ADMIN,
            Method::POST,
            "/subscriptions",
            Some(json!({"kind": "slack", "url_secret": "slack-oncall", "event_types": ["run.*"]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["kind"].as_str(), &v["url"]),
        (Some("slack"), &Value::Null)
    );
    assert!(
        v.get("secret").is_none(),
        "a slack subscription is not signed: {v}"
    );
    let sub = v["id"].as_str().unwrap().to_owned();
    let (st, _) = api
        .call(
            ADMIN,
            Method::POST,
            &format!("/subscriptions/{sub}/rotate-secret"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 409);

    page(&s, &pd, "PSLACK1").await;
    // Both messages: deliveries are unordered (the subscription is not `ordered`), so the run's
    // end may be posted before its start.
    eventually("the run's messages reach Slack", 30, || async {
        let got = slack.got();
        let has = |word: &str| {
            got.iter()
                .any(|g| g.body["text"].as_str().unwrap_or("").contains(word))
        };
        has("started") && has("finished")
    })
    .await;
    let got = slack.got();
    let texts: Vec<&str> = got.iter().filter_map(|g| g.body["text"].as_str()).collect();
    assert!(
        texts.contains(&":robot_face: Agent run started for team *checkout*"),
        "{texts:?}"
    );
    let finished = got
        .iter()
        .find(|g| g.body["text"] == ":white_check_mark: Agent run finished for team *checkout*")
        .expect("run.succeeded as a message");
    let section = finished.body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        section.contains("*Summary:*") && section.contains("Run `"),
        "{section}"
    );
    assert!(
        got.iter().all(|g| g.id.is_empty() && !g.verified),
        "not signed"
    );
    let attempts = api.attempts(&sub).await;
    assert!(
        attempts.iter().all(|a| a["status"] == "succeeded"),
        "{attempts:?}"
    );
    let (_, listed) = api
        .call(ADMIN, Method::GET, &format!("/subscriptions/{sub}"), None)
        .await;
    let everything = format!("{listed}{attempts:?}");
    assert!(
        !everything.contains(&slack_url),
        "the URL stays in the secrets store"
    );
}

/// At most `--delivery-per-endpoint` deliveries of one subscription are in flight, counting
/// every worker's claims: with two held open by the receiver, another worker with a limit of
/// three takes exactly one more, and the receiver never sees more than two at once.
async fn deliveries_in_flight_stay_within_the_per_endpoint_limit(b: Backend) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..fast(Limits {
                delivery_per_endpoint: 2,
                ..Options::default().limits
            })
        },
    )
    .await;
    acme(&s).await;
    // A receiver that holds every request until the gate opens, counting those in flight.
    let (open, gate) = tokio::sync::watch::channel(false);
    let (now_in, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let done = Arc::new(AtomicUsize::new(0));
    let (n, m, d) = (now_in.clone(), most.clone(), done.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (n, m, d, mut gate) = (n.clone(), m.clone(), d.clone(), gate.clone());
            async move {
                m.fetch_max(n.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                let _ = gate.wait_for(|o| *o).await;
                n.fetch_sub(1, Ordering::SeqCst);
                d.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let url = format!("{}/hook", stack::serve(app).await);
    let api = Api { s: &s };
    let (st, v) = api
        .call(
            ADMIN,
            Method::POST,
            "/subscriptions",
            Some(json!({"url": url, "event_types": ["run.*"]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let events = run_events("limit", 10);
    s.orch_state.store.import_outbox(&events).await.unwrap();
    eventually("two deliveries are held by the receiver", 30, || async {
        now_in.load(Ordering::SeqCst) == 2
    })
    .await;
    // Another worker with a limit of three gets exactly one: the two in flight count. (Its
    // claim passes the subscription by while the stack's worker holds the row: ask again.)
    let store = &s.orch_state.store;
    let one = Arc::new(std::sync::Mutex::new(Vec::new()));
    eventually("another worker claims", 30, || {
        let one = one.clone();
        async move {
            let got = store
                .claim_deliveries("test-worker", 64, 60_000, 3)
                .await
                .unwrap();
            *one.lock().unwrap() = got;
            !one.lock().unwrap().is_empty()
        }
    })
    .await;
    let one = one.lock().unwrap().clone();
    assert_eq!(
        one.len(),
        1,
        "a limit of three leaves room for one of the eight due"
    );
    store.release_deliveries("test-worker").await.unwrap();
    open.send(true).unwrap();
    eventually("every event is delivered", 30, || async {
        done.load(Ordering::SeqCst) >= 10
    })
    .await;
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than two at once"
    );
}

/// A redirect is a failed attempt, not followed; a receiver slower than the timeout is a failed
/// attempt that says so.
async fn redirects_are_not_followed_and_slow_receivers_time_out(b: Backend) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..fast(Limits {
                delivery_timeout_ms: 300,
                ..Options::default().limits
            })
        },
    )
    .await;
    acme(&s).await;
    let followed = Arc::new(AtomicUsize::new(0));
    let f = followed.clone();
    let (_never, gate) = tokio::sync::watch::channel(false);
    let app = axum::Router::new()
        .route(
            "/moved",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [("location", "/target")],
                )
            }),
        )
        .route(
            "/target",
            axum::routing::post(move || {
                f.fetch_add(1, Ordering::SeqCst);
                async { axum::http::StatusCode::NO_CONTENT }
            }),
        )
        .route(
            "/slow",
            axum::routing::post(move || {
                let mut gate = gate.clone();
                async move {
                    let _ = gate.wait_for(|o| *o).await;
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
    let base = stack::serve(app).await;
    let api = Api { s: &s };
    let mut subs = Vec::new();
    for path in ["/moved", "/slow"] {
        let body = json!({"url": format!("{base}{path}"), "event_types": ["run.*"]});
        let (st, v) = api
            .call(ADMIN, Method::POST, "/subscriptions", Some(body))
            .await;
        assert_eq!(st, 201, "{v}");
        subs.push(v["id"].as_str().unwrap().to_owned());
    }
    let events = run_events("redirect", 1);
    s.orch_state.store.import_outbox(&events).await.unwrap();
    for sub in &subs {
        eventually("the first attempt is logged", 30, || async {
            !api.attempts(sub).await.is_empty()
        })
        .await;
    }
    let moved = api.attempts(&subs[0]).await.last().cloned().unwrap();
    assert_eq!(
        (moved["status"].as_str(), moved["response_code"].as_u64()),
        (Some("failed"), Some(307)),
        "{moved}"
    );
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "the redirect is not followed"
    );
    let slow = api.attempts(&subs[1]).await.last().cloned().unwrap();
    assert_eq!(slow["status"], "failed", "{slow}");
    assert_eq!(slow["error"], "no answer within 300 ms", "{slow}");
}

/// Taking the config-service's run events over: a finished run's outcome goes to its trigger
/// event's timeline once however often the same batch is taken over (a relay that died before
/// acknowledging takes it again); another org's run names no event of acme's and adds nothing to
/// it; and only the events of orgs that subscribe wait for the fan-out.
async fn run_events_taken_over_twice_reach_timelines_once_and_only_subscribers(b: Backend) {
    let s = without_runner(b).await;
    let pd = acme(&s).await;
    let event = page(&s, &pd, "PTAKEN").await;
    let run = |id: &str, org: &str, status: &str, error: Option<&str>| {
        switchyard_api::outbound::OutboundEvent {
            id: id.into(),
            event_type: format!("run.{status}"),
            version: 1,
            timestamp: switchyard_common::time::rfc3339(switchyard_common::time::now_ms()),
            org_id: org.into(),
            team_id: Some("checkout".into()),
            data: json!({"run_id": format!("run-{id}"), "status": status, "trigger_event_id": event, "error": error}),
        }
    };
    let before = vec![
        run("before-1", "acme", "running", None),
        run("before-2", "acme", "succeeded", None),
        run("before-3", "acme", "failed", Some("the deadline passed")),
        run("before-4", "globex", "succeeded", None),
    ];
    let store = &s.orch_state.store;
    store.import_outbox(&before).await.unwrap();
    store.import_outbox(&before).await.unwrap();
    let detail = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/events/{event}", s.orch),
            None,
        )
        .await;
    let outcomes: Vec<(String, String)> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"].as_str().unwrap().starts_with("run_"))
        .map(|t| {
            (
                t["kind"].as_str().unwrap().to_owned(),
                t["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("run_succeeded".to_owned(), "run run-before-2".to_owned()),
            (
                "run_failed".to_owned(),
                "run run-before-3: the deadline passed".to_owned()
            ),
        ],
        "each ended run once, in order; a running one and another org's add nothing"
    );
    // Nobody subscribed when those were taken over: they were not kept for the fan-out.
    let (rx, url) = Receiver::start().await;
    let api = Api { s: &s };
    api.subscribe(&rx, &url, json!({"event_types": ["run.*"]}))
        .await;
    store
        .import_outbox(&[run("after-1", "acme", "succeeded", None)])
        .await
        .unwrap();
    eventually(
        "the event taken over after subscribing is delivered",
        30,
        || async { !rx.got().is_empty() },
    )
    .await;
    let got: Vec<String> = rx.got().iter().map(|g| g.id.clone()).collect();
    assert_eq!(got, ["after-1"], "nothing from before the subscription");
}

/// A catch-all subscriber hears of every kind of change the orchestrator publishes, each in the
/// transaction of its change: an event received, unrouted and dead-lettered; an incident opened,
/// updated and resolved; a team provisioned and a provisioning rolled back; an integration's
/// secret rotated. A rolled-back provisioning publishes its rollback, never a success. (`run.*`
/// and `event.dispatched`: `a_run_reaches_a_receiver_verifying_with_the_standard_webhooks_library`;
/// `run.failed`: e2e; `run.cancelled`: the config-service's store conformance;
/// `subscription.disabled`: `a_subscription_failing_too_long_is_disabled_and_the_org_told`.)
async fn every_kind_of_change_reaches_a_catch_all_subscriber(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            limits: Limits {
                max_throttled_seconds: 1,
                retry_base_ms: 50,
                ..fast(Options::default().limits).limits
            },
            ..Options::default()
        },
    )
    .await;
    // Every run of checkout is refused as busy, until the event is dead-lettered.
    let _runner = stack::fake_runner_busy_for(s.runner_addr, &["checkout"]).await;
    let pd = acme(&s).await;
    s.layer(
        "acme",
        "checkout",
        json!({"routing": {"pagerduty_service": "PSVC1"}, "agent": {"trigger": "incident"}}),
    )
    .await;
    let api = Api { s: &s };
    let (all, url) = Receiver::start().await;
    api.subscribe(&all, &url, json!({"event_types": ["*"]}))
        .await;

    let first = page(&s, &pd, "PALL1").await;
    let second = page(&s, &pd, "PALL2").await;
    let unrouted = page_service(&s, &pd, "PALL3", ("PNOBODY", "nobody")).await;
    eventually("every event is settled", 30, || async {
        s.events("acme", "dead_lettered").await.len() == 1
            && s.events("acme", "unrouted").await.len() == 1
    })
    .await;
    let (st, list) = api.call(ADMIN, Method::GET, "/incidents", None).await;
    assert_eq!(st, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "both pages are one incident: {list}");
    let incident = items[0]["id"].as_str().unwrap().to_owned();
    let (st, v) = api
        .call(
            ADMIN,
            Method::POST,
            &format!("/incidents/{incident}/resolve"),
            Some(json!({"reason": "fixed by hand"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = api
        .call(
            ADMIN,
            Method::POST,
            &format!("/integrations/{pd}/secrets"),
            Some(json!({"secret": "pagerduty-secret-next"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let provision = |team: &'static str| {
        let s = &s;
        async move {
            let (st, run) = s
                .admin(
                    Method::POST,
                    format!("{}/api/v1/orgs/acme/provisioning", s.orch),
                    Some(json!({"team_id": team, "name": team, "idempotency_key": team})),
                )
                .await;
            assert!(st == 202 || st == 200, "{st}: {run}");
            s.orch_state.provisioner.wait_for_runs().await;
        }
    };
    provision("ops").await;
    s.orch_state.provisioner.failpoints.set("step:write_config");
    provision("broken").await;
    s.orch_state.provisioner.failpoints.clear();

    let types = [
        "event.received",
        "event.unrouted",
        "event.dead_lettered",
        "incident.opened",
        "incident.updated",
        "incident.resolved",
        "integration.secret_rotated",
        "provisioning.succeeded",
        "provisioning.rolled_back",
    ];
    eventually("every kind of change arrives", 30, || async {
        types.iter().all(|t| !all.of_type(t).is_empty())
    })
    .await;
    let got = all.got();
    assert!(got.iter().all(|g| g.verified), "{got:?}");
    let data = |t: &str| -> Vec<Value> {
        all.of_type(t)
            .into_iter()
            .map(|g| g.body["data"].clone())
            .collect()
    };
    let received: Vec<_> = data("event.received")
        .iter()
        .map(|d| d["event_id"].clone())
        .collect();
    for e in [&first, &second, &unrouted] {
        assert!(received.contains(&json!(e)), "{e} received: {received:?}");
    }
    // What an `event.received` says, whichever way the backend's writer builds it.
    let first_received = data("event.received")
        .into_iter()
        .find(|d| d["event_id"] == json!(first))
        .unwrap();
    assert_eq!(
        first_received,
        json!({"event_id": first, "source": "pagerduty", "event_type": "incident.triggered",
               "integration_id": pd, "delivery_id": "delivery-PALL1", "status": "received"})
    );
    assert_eq!(data("event.unrouted")[0]["event_id"], json!(unrouted));
    let dead = &data("event.dead_lettered")[0]["event_id"];
    assert!(*dead == json!(first) || *dead == json!(second), "{dead}");
    assert_eq!(data("incident.opened").len(), 1, "{got:?}");
    for t in ["incident.opened", "incident.updated", "incident.resolved"] {
        assert!(
            data(t).iter().all(|d| d["incident_id"] == json!(incident)),
            "{t}: {got:?}"
        );
    }
    assert_eq!(data("incident.resolved")[0]["status"], "resolved");
    assert_eq!(
        data("integration.secret_rotated")[0]["integration_id"],
        json!(pd)
    );
    let teams = |t: &str| -> Vec<Value> { data(t).iter().map(|d| d["team_id"].clone()).collect() };
    assert_eq!(teams("provisioning.succeeded"), [json!("ops")], "{got:?}");
    assert_eq!(
        teams("provisioning.rolled_back"),
        [json!("broken")],
        "{got:?}"
    );
}

switchyard_common::on_both_backends!(
    every_kind_of_change_reaches_a_catch_all_subscriber,
    redirects_are_not_followed_and_slow_receivers_time_out,
    deliveries_in_flight_stay_within_the_per_endpoint_limit,
    a_slack_subscription_posts_readable_messages_to_the_url_in_the_secrets_store,
    a_run_reaches_a_receiver_verifying_with_the_standard_webhooks_library,
    a_failing_receiver_gets_it_on_the_third_attempt,
    a_subscription_failing_too_long_is_disabled_and_the_org_told,
    an_ordered_subscription_gets_events_in_order_one_at_a_time,
    two_replicas_deliver_each_event_once,
    run_events_taken_over_twice_reach_timelines_once_and_only_subscribers,
);
