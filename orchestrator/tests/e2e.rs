//! End to end, on PostgreSQL and SQLite, with real HTTP between the three services and fake Slack
//! and GitHub APIs: signed events from every kind of sender each lead to exactly one agent run for
//! the right team and one reply in the right place; retries and duplicates add nothing; bad
//! signatures, stale timestamps and another tenant's integration are refused.

mod stack;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use stack::agent::{
    SLACK_SECRET, ask_is_checkout_down, fake_model_and_prometheus, now_s, slack_agent_team,
    slack_headers,
};
use stack::{Options, Stack, eventually};
use switchyard_common::db::Backend;
use switchyard_orchestrator::sources::verify::sign::{hmac_b64, hmac_hex};

const GITHUB_SECRET: &str = "github-webhook-secret-0001";
const PD_OLD: &str = "pagerduty-old-secret";
const PD_NEW: &str = "pagerduty-new-secret";
const AM_TOKEN: &str = "alertmanager-bearer-token";
const WHSEC_KEY: &[u8] = b"incident-io-signing-key-0123456789";

fn whsec() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(WHSEC_KEY)
    )
}

/// acme (team checkout owning identifiers of every kind) and beta (team ops), and integrations.
/// Answers (pagerduty integration id, incident.io id, alertmanager id, beta's pagerduty id).
async fn onboard(s: &Stack) -> (String, String, String, String) {
    let cs = &s.cs;
    for (org, team) in [("acme", "checkout"), ("beta", "ops")] {
        s.must(
            Method::POST,
            format!("{cs}/api/v1/orgs"),
            Some(json!({"id": org, "name": org})),
        )
        .await;
        s.must(
            Method::POST,
            format!("{cs}/api/v1/orgs/{org}/nodes"),
            Some(json!({"id": team, "kind": "team", "name": team})),
        )
        .await;
    }
    // One run per event (not per incident): this suite checks each sender's own run and reply.
    s.layer("acme", "acme", json!({"routing": {"slack_team": "T0001", "github_owner": "acme"}, "agent": {"provider": "offline", "model": "triage-1", "trigger": "event"}})).await;
    for (name, value) in [
        ("slack-bot", "xoxb-checkout"),
        ("github-token", "ghp-checkout"),
        ("pagerduty-key", "pd-key-checkout"),
    ] {
        s.must(
            Method::PUT,
            format!("{cs}/api/v1/orgs/acme/secrets/{name}"),
            Some(json!({"value": value})),
        )
        .await;
    }
    s.layer("acme", "checkout", json!({
        "routing": {"slack_channel": "C0CHECKOUT", "github_repo": "acme/checkout", "pagerduty_service": "PSVC1", "incidentio_alert_source": "01SRC", "alert_label": "team=checkout"},
        "integrations": {"slack": {"bot_token": {"secret": "slack-bot"}}, "github": {"token": {"secret": "github-token"}},
            "pagerduty": {"api_key": {"secret": "pagerduty-key"}, "from": "oncall@acme.example"}}
    })).await;
    s.layer(
        "beta",
        "ops",
        json!({"routing": {"pagerduty_service": "PBETA"}}),
    )
    .await;
    let o = &s.orch;
    s.must(
        Method::POST,
        format!("{o}/api/v1/platform/integrations"),
        Some(json!({"source": "slack", "name": "Slack app", "secrets": [SLACK_SECRET]})),
    )
    .await;
    s.must(
        Method::POST,
        format!("{o}/api/v1/platform/integrations"),
        Some(json!({"source": "github", "name": "GitHub App", "secrets": [GITHUB_SECRET]})),
    )
    .await;
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let pd = id(s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/acme/integrations"),
            Some(json!({"source": "pagerduty", "name": "PD", "secrets": [PD_OLD, PD_NEW]})),
        )
        .await);
    let inc = id(s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/acme/integrations"),
            Some(json!({"source": "incidentio", "name": "incident.io", "secrets": [whsec()]})),
        )
        .await);
    let am = id(s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/acme/integrations"),
            Some(json!({"source": "alertmanager", "name": "AM", "secrets": [AM_TOKEN]})),
        )
        .await);
    let beta_pd = id(s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/beta/integrations"),
            Some(
                json!({"source": "pagerduty", "name": "PD", "secrets": ["beta-pagerduty-secret"]}),
            ),
        )
        .await);
    (pd, inc, am, beta_pd)
}

fn pagerduty_body(incident: &str, service: &str) -> Vec<u8> {
    json!({"event": {"id": format!("ev-{incident}"), "event_type": "incident.triggered", "occurred_at": "2026-11-22T08:00:00Z",
        "data": {"id": incident, "type": "incident", "service": {"id": service, "type": "service_reference"}}}}).to_string().into_bytes()
}

fn pagerduty_headers(body: &[u8], delivery: &str, secrets: &[&str]) -> Vec<(&'static str, String)> {
    let sigs: Vec<String> = secrets
        .iter()
        .map(|s| format!("v1={}", hmac_hex(s.as_bytes(), &[body])))
        .collect();
    vec![
        ("x-pagerduty-signature", sigs.join(",")),
        ("x-webhook-id", delivery.into()),
        ("content-type", "application/json".into()),
    ]
}

async fn every_source_to_one_run_and_one_reply(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    let (pd, inc, am, beta_pd) = onboard(&s).await;

    // Slack: an app mention in the checkout channel, then Slack's retry of it.
    let slack = json!({"type": "event_callback", "team_id": "T0001", "event_id": "Ev0001", "event": {"type": "app_mention", "channel": "C0CHECKOUT", "ts": "1700000000.000100", "text": "<@U1> is checkout down?"}}).to_string();
    let (st, first, _) = s
        .webhook(
            "/webhooks/slack/events",
            &slack_headers(slack.as_bytes(), now_s(), SLACK_SECRET),
            slack.as_bytes(),
        )
        .await;
    assert_eq!(
        (st, first["duplicate"].as_bool()),
        (200, Some(false)),
        "{first}"
    );
    let mut retry = slack_headers(slack.as_bytes(), now_s(), SLACK_SECRET);
    retry.push(("x-slack-retry-num", "1".into()));
    retry.push(("x-slack-retry-reason", "http_timeout".into()));
    let (st, again, _) = s
        .webhook("/webhooks/slack/events", &retry, slack.as_bytes())
        .await;
    assert_eq!(
        (st, again["duplicate"].as_bool(), &again["event_id"]),
        (200, Some(true), &first["event_id"])
    );

    // Slack's url_verification handshake is answered, and stores nothing.
    let challenge =
        json!({"type": "url_verification", "challenge": "chal-123", "token": "x"}).to_string();
    let (st, ans, _) = s
        .webhook(
            "/webhooks/slack/events",
            &slack_headers(challenge.as_bytes(), now_s(), SLACK_SECRET),
            challenge.as_bytes(),
        )
        .await;
    assert_eq!((st, ans), (200, json!({"challenge": "chal-123"})));

    // GitHub: an issue comment through the GitHub App, and a redelivery of it.
    let gh = json!({"action": "created", "issue": {"number": 7, "title": "checkout 500s"}, "comment": {"body": "@switchyard look"}, "repository": {"full_name": "acme/checkout", "owner": {"login": "acme"}}}).to_string();
    let gh_headers = vec![
        ("x-github-event", "issue_comment".to_owned()),
        (
            "x-github-delivery",
            "11111111-2222-3333-4444-555555555555".to_owned(),
        ),
        (
            "x-hub-signature-256",
            format!(
                "sha256={}",
                hmac_hex(GITHUB_SECRET.as_bytes(), &[gh.as_bytes()])
            ),
        ),
        ("content-type", "application/json".to_owned()),
    ];
    assert_eq!(
        s.webhook("/webhooks/github", &gh_headers, gh.as_bytes())
            .await
            .0,
        200
    );
    let (st, dup, _) = s
        .webhook("/webhooks/github", &gh_headers, gh.as_bytes())
        .await;
    assert_eq!((st, dup["duplicate"].as_bool()), (200, Some(true)));
    let ping = json!({"zen": "Design for failure.", "hook_id": 1}).to_string();
    let ping_headers = vec![
        ("x-github-event", "ping".to_owned()),
        ("x-github-delivery", "p-1".to_owned()),
        (
            "x-hub-signature-256",
            format!(
                "sha256={}",
                hmac_hex(GITHUB_SECRET.as_bytes(), &[ping.as_bytes()])
            ),
        ),
    ];
    assert_eq!(
        s.webhook("/webhooks/github", &ping_headers, ping.as_bytes())
            .await
            .0,
        200
    );

    // PagerDuty, signed with both secrets during a rotation.
    let body = pagerduty_body("PINC1", "PSVC1");
    let (st, v, _) = s
        .webhook(
            &format!("/webhooks/pagerduty/{pd}"),
            &pagerduty_headers(&body, "pd-delivery-1", &[PD_OLD, PD_NEW]),
            &body,
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // incident.io (Standard Webhooks).
    let inc_body = json!({"event_type": "public_alert.alert_created_v1", "public_alert.alert_created_v1": {"id": "01ALERT", "alert_source_id": "01SRC", "title": "Checkout latency"}}).to_string();
    let ts = now_s().to_string();
    let sig = hmac_b64(
        WHSEC_KEY,
        &[b"msg_0001", b".", ts.as_bytes(), b".", inc_body.as_bytes()],
    );
    let inc_headers = vec![
        ("webhook-id", "msg_0001".to_owned()),
        ("webhook-timestamp", ts),
        ("webhook-signature", format!("v1,{sig}")),
        ("content-type", "application/json".to_owned()),
    ];
    assert_eq!(
        s.webhook(
            &format!("/webhooks/incidentio/{inc}"),
            &inc_headers,
            inc_body.as_bytes()
        )
        .await
        .0,
        200
    );

    // Alertmanager (bearer token), and the same group from the HA peer.
    let am_body = json!({"version": "4", "groupKey": "{}:{alertname=\"CheckoutErrors\"}", "receiver": "switchyard", "status": "firing",
        "commonLabels": {"alertname": "CheckoutErrors", "team": "checkout"},
        "alerts": [{"status": "firing", "fingerprint": "f1", "labels": {"alertname": "CheckoutErrors", "team": "checkout"}}]}).to_string();
    let am_headers = vec![
        ("authorization", format!("Bearer {AM_TOKEN}")),
        ("content-type", "application/json".to_owned()),
    ];
    assert_eq!(
        s.webhook(
            &format!("/webhooks/alertmanager/{am}"),
            &am_headers,
            am_body.as_bytes()
        )
        .await
        .1["duplicate"],
        false
    );
    assert_eq!(
        s.webhook(
            &format!("/webhooks/alertmanager/{am}"),
            &am_headers,
            am_body.as_bytes()
        )
        .await
        .1["duplicate"],
        true
    );

    // Refused: a bad signature, a stale (replayed) timestamp, another tenant's integration, an
    // unknown integration, an oversized body.
    let (st, p, _) = s
        .webhook(
            "/webhooks/slack/events",
            &slack_headers(slack.as_bytes(), now_s(), "wrong-secret"),
            slack.as_bytes(),
        )
        .await;
    assert_eq!(
        (st, p["type"].as_str()),
        (401, Some("urn:switchyard:problem:unauthorized"))
    );
    assert_eq!(
        s.webhook(
            "/webhooks/slack/events",
            &slack_headers(slack.as_bytes(), now_s() - 600, SLACK_SECRET),
            slack.as_bytes()
        )
        .await
        .0,
        401
    );
    let foreign = pagerduty_body("PINC9", "PSVC1");
    assert_eq!(
        s.webhook(
            &format!("/webhooks/pagerduty/{beta_pd}"),
            &pagerduty_headers(&foreign, "x-1", &[PD_NEW]),
            &foreign
        )
        .await
        .0,
        401
    );
    assert_eq!(
        s.webhook(
            &format!("/webhooks/incidentio/{pd}"),
            &pagerduty_headers(&foreign, "x-2", &[PD_NEW]),
            &foreign
        )
        .await
        .0,
        404,
        "an integration under another source's path"
    );
    assert_eq!(
        s.webhook(
            "/webhooks/pagerduty/no-such-integration",
            &pagerduty_headers(&foreign, "x-3", &[PD_NEW]),
            &foreign
        )
        .await
        .0,
        404
    );
    // Over TCP the server may answer 413 and close before the client has sent everything (it must
    // not read an unbounded body), so the client can see a reset instead; in-process it is exact.
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let mut req = axum::http::Request::post(format!("/webhooks/pagerduty/{pd}"));
    for (k, v) in pagerduty_headers(&huge, "x-4", &[PD_NEW]) {
        req = req.header(k, v);
    }
    let resp = tower::ServiceExt::oneshot(
        switchyard_orchestrator::app(s.orch_state.clone()),
        req.body(axum::body::Body::from(huge)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 413);

    // Exactly five runs for checkout, all succeeded; nothing else anywhere.
    eventually("five runs succeeded", 20, || async {
        s.runs("acme", "succeeded").await.len() == 5
    })
    .await;
    eventually("five events dispatched", 10, || async {
        s.events("acme", "dispatched").await.len() == 5
    })
    .await;
    let runs = s.runs("acme", "succeeded").await;
    assert!(runs.iter().all(|r| r["team_id"] == "checkout"));
    let mut sources: Vec<String> = runs
        .iter()
        .map(|r| r["trigger"]["source"].as_str().unwrap().to_owned())
        .collect();
    sources.sort();
    assert_eq!(
        sources,
        ["alertmanager", "github", "incidentio", "pagerduty", "slack"]
    );
    assert!(s.runs("beta", "succeeded").await.is_empty());
    let all = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/events?limit=500", s.orch),
            None,
        )
        .await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        5,
        "no other events were stored"
    );

    // One reply in the Slack thread (with blocks), one comment on the GitHub issue, one note on
    // the PagerDuty incident.
    let slack_calls = s.slack.lock().unwrap().clone();
    assert_eq!(slack_calls.len(), 1, "{slack_calls:?}");
    assert_eq!(slack_calls[0].1, "Bearer xoxb-checkout");
    assert_eq!(
        (&slack_calls[0].2["channel"], &slack_calls[0].2["thread_ts"]),
        (&json!("C0CHECKOUT"), &json!("1700000000.000100"))
    );
    assert!(
        slack_calls[0].2["text"]
            .as_str()
            .unwrap()
            .contains("triage-1")
    );
    let gh_calls = s.github.lock().unwrap().clone();
    assert_eq!(gh_calls.len(), 1, "{gh_calls:?}");
    assert_eq!(
        (gh_calls[0].0.as_str(), gh_calls[0].1.as_str()),
        (
            "/repos/acme/checkout/issues/7/comments",
            "Bearer ghp-checkout"
        )
    );
    assert!(
        gh_calls[0].2["body"]
            .as_str()
            .unwrap()
            .starts_with("### Switchyard investigation\n"),
        "{gh_calls:?}"
    );
    let blocks = &slack_calls[0].2["blocks"];
    assert_eq!(blocks[0]["text"]["text"], "Switchyard investigation");
    assert!(
        blocks
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .to_string()
            .contains("run "),
        "{blocks}"
    );
    let pd_calls = s.pagerduty.lock().unwrap().clone();
    assert_eq!(pd_calls.len(), 1, "{pd_calls:?}");
    assert_eq!(
        (pd_calls[0].0.as_str(), pd_calls[0].1.as_str()),
        ("/incidents/PINC1/notes", "Token token=pd-key-checkout")
    );
    assert!(
        pd_calls[0].2["note"]["content"]
            .as_str()
            .unwrap()
            .contains("triage-1"),
        "{pd_calls:?}"
    );

    // The timeline tells the whole story, to how the run ended (the runner adds that last).
    let id = first["event_id"].as_str().unwrap();
    let detail = format!("{}/api/v1/orgs/acme/events/{id}", s.orch);
    eventually("the run's outcome is on the timeline", 10, || async {
        s.must(Method::GET, detail.clone(), None).await["timeline"]
            .to_string()
            .contains("run_succeeded")
    })
    .await;
    let ev = s.must(Method::GET, detail.clone(), None).await;
    let kinds: Vec<&str> = ev["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "received",
            "verified",
            "routed",
            "dispatch_attempt",
            "dispatched",
            "run_succeeded"
        ]
    );
    assert!(
        ev["timeline"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("slack_channel=C0CHECKOUT")
    );
    // Another tenant cannot see it.
    let (beta_admin, _) = {
        let v = s
            .must(
                Method::POST,
                format!("{}/api/v1/orgs/beta/admin-tokens", s.cs),
                Some(json!({"label": "beta", "subject": "ops@beta.example"})),
            )
            .await;
        (v["secret"].as_str().unwrap().to_owned(), ())
    };
    let resp = s
        .http
        .get(format!("{}/api/v1/orgs/acme/events/{id}", s.orch))
        .bearer_auth(&beta_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = s
        .http
        .get(format!("{}/api/v1/orgs/beta/events", s.orch))
        .bearer_auth(&beta_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

async fn runner_down_events_wait_and_retry(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    let (pd, ..) = onboard(&s).await;
    for i in 0..3 {
        let body = pagerduty_body(&format!("PDOWN{i}"), "PSVC1");
        assert_eq!(
            s.webhook(
                &format!("/webhooks/pagerduty/{pd}"),
                &pagerduty_headers(&body, &format!("down-{i}"), &[PD_NEW]),
                &body
            )
            .await
            .0,
            200
        );
    }
    eventually("events retrying while the runner is down", 15, || async {
        let r = s.events("acme", "retrying").await;
        r.len() == 3 && r.iter().all(|e| e["attempts"].as_i64().unwrap() >= 2)
    })
    .await;
    s.start_runner().await;
    eventually("all dispatched once the runner is back", 30, || async {
        s.events("acme", "dispatched").await.len() == 3
    })
    .await;
    eventually("three runs succeeded", 15, || async {
        s.runs("acme", "succeeded").await.len() == 3
    })
    .await;
    let ev = s.events("acme", "dispatched").await;
    let detail = s
        .must(
            Method::GET,
            format!(
                "{}/api/v1/orgs/acme/events/{}",
                s.orch,
                ev[0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let failed = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "dispatch_failed")
        .count();
    assert!(failed >= 2, "{detail}");
}

/// A replica started with dispatch concurrency 0 acknowledges and stores but dispatches nothing;
/// another replica on the same database dispatches what it stored.
async fn a_replica_with_dispatch_off_leaves_dispatch_to_another(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            limits: switchyard_orchestrator::settings::Limits {
                dispatch_concurrency: Some(0),
                ..Options::default().limits
            },
            ..Options::default()
        },
    )
    .await;
    let (pd, ..) = onboard(&s).await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    // Its dispatcher ends at once instead of claiming.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        s.orch_state.dispatcher().run(rx.clone()),
    )
    .await
    .expect("a dispatcher with concurrency 0 returns at once");
    let body = pagerduty_body("POFF1", "PSVC1");
    let (status, answer, _) = s
        .webhook(
            &format!("/webhooks/pagerduty/{pd}"),
            &pagerduty_headers(&body, "off-1", &[PD_NEW]),
            &body,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(s.events("acme", "received").await.len(), 1);

    let other = switchyard_orchestrator::AppState::new(
        s.orch_state.store.clone(),
        s.keyring.clone(),
        None,
        s.key.clone(),
        &s.cs,
        &s.runner,
        switchyard_orchestrator::settings::Limits {
            dispatch_concurrency: Some(4),
            ..s.limits.clone()
        },
    );
    let dispatching = tokio::spawn(other.dispatcher().run(rx));
    eventually("the other replica dispatched the event", 30, || async {
        s.events("acme", "dispatched").await.len() == 1
    })
    .await;
    let _ = stop.send(true);
    dispatching.await.unwrap();
    let dispatched = |state: &switchyard_orchestrator::AppState| {
        state.metrics.render().lines().any(|l| {
            l.starts_with("switchyard_orchestrator_dispatches_total{outcome=\"dispatched\"}")
                && !l.ends_with(" 0")
        })
    };
    assert!(dispatched(&other), "{}", other.metrics.render());
    assert!(
        !dispatched(&s.orch_state),
        "the replica with dispatch off dispatched:\n{}",
        s.orch_state.metrics.render()
    );
}

async fn unrouted_events_are_kept_and_replayed_after_the_route_is_fixed(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    let (pd, ..) = onboard(&s).await;
    let body = pagerduty_body("PNEW1", "PSVC-NEW");
    assert_eq!(
        s.webhook(
            &format!("/webhooks/pagerduty/{pd}"),
            &pagerduty_headers(&body, "new-1", &[PD_OLD]),
            &body
        )
        .await
        .0,
        200
    );
    eventually("the event is unrouted", 10, || async {
        s.events("acme", "unrouted").await.len() == 1
    })
    .await;
    // Fix the routing, replay every unrouted event.
    s.layer("acme", "checkout", json!({"routing": {"pagerduty_service": ["PSVC1", "PSVC-NEW"]}, "integrations": {"slack": {"bot_token": {"secret": "slack-bot"}},
        "pagerduty": {"api_key": {"secret": "pagerduty-key"}, "from": "oncall@acme.example"}}})).await;
    let r = s
        .must(
            Method::POST,
            format!("{}/api/v1/orgs/acme/events/replay", s.orch),
            Some(json!({"status": "unrouted"})),
        )
        .await;
    assert_eq!(r["replayed"], 1);
    eventually("dispatched after replay", 15, || async {
        s.events("acme", "dispatched").await.len() == 1
    })
    .await;
    let ev = s.events("acme", "dispatched").await;
    let url = format!(
        "{}/api/v1/orgs/acme/events/{}",
        s.orch,
        ev[0]["id"].as_str().unwrap()
    );
    // The runner adds how the run ended once it has (its note on the incident posted).
    eventually("the run's outcome is on the timeline", 15, || async {
        s.must(Method::GET, url.clone(), None).await["timeline"]
            .to_string()
            .contains("run_succeeded")
    })
    .await;
    let detail = s.must(Method::GET, url, None).await;
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "received",
            "verified",
            "unrouted",
            "replayed",
            "routed",
            "dispatch_attempt",
            "dispatched",
            "run_succeeded"
        ]
    );
}

async fn store_down_answers_503_and_loses_nothing_acknowledged(b: Backend) {
    // A short claim lease: events the lost replica had claimed come back quickly.
    let limits = switchyard_orchestrator::settings::Limits {
        retry_base_ms: 50,
        lease_ms: 500,
        ..Default::default()
    };
    let s = Stack::start(
        b,
        Options {
            start_runner: true,
            limits,
            cluster: false,
        },
    )
    .await;
    let (pd, ..) = onboard(&s).await;
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let body = pagerduty_body(&format!("POUT{i}"), "PSVC1");
        let (st, v, _) = s
            .webhook(
                &format!("/webhooks/pagerduty/{pd}"),
                &pagerduty_headers(&body, &format!("out-{i}"), &[PD_NEW]),
                &body,
            )
            .await;
        assert_eq!(st, 200);
        acknowledged.push(v["event_id"].as_str().unwrap().to_owned());
    }
    // The orchestrator loses its database: webhooks answer 503 with Retry-After, never 2xx or 4xx.
    s.orch_state.store.close().await;
    let body = pagerduty_body("POUT-X", "PSVC1");
    let (st, p, h) = s
        .webhook(
            &format!("/webhooks/pagerduty/{pd}"),
            &pagerduty_headers(&body, "out-x", &[PD_NEW]),
            &body,
        )
        .await;
    assert_eq!(
        (st, p["type"].as_str()),
        (503, Some("urn:switchyard:problem:unavailable"))
    );
    assert!(h.contains_key("retry-after"));
    let ready = s
        .http
        .get(format!("{}/readyz", s.orch))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    s.stop_orchestrator();
    // A new orchestrator on the same database: every acknowledged event is there and dispatched.
    let conn = switchyard_common::db::Db::connect(&s.orch_db_url, 8)
        .await
        .unwrap();
    let store = switchyard_orchestrator::store::Store::new(conn);
    let state = switchyard_orchestrator::AppState::new(
        store.clone(),
        s.keyring.clone(),
        Some(stack::ADMIN.into()),
        s.key.clone(),
        &s.cs,
        &s.runner,
        s.limits.clone(),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(switchyard_orchestrator::serve(l, state, async move {
        let _ = rx.await;
    }));
    for id in &acknowledged {
        let e = store
            .get_event(Some("acme"), id)
            .await
            .expect("an acknowledged event survived");
        assert_eq!(e.event.org_id.as_deref(), Some("acme"));
    }
    eventually("every acknowledged event dispatched", 20, || async {
        let (items, _) = store
            .list_events(&switchyard_orchestrator::store::EventQuery {
                org: Some("acme".into()),
                status: Some(switchyard_orchestrator::store::Status::Dispatched),
                limit: Some(500),
                ..Default::default()
            })
            .await
            .unwrap();
        acknowledged
            .iter()
            .all(|id| items.iter().any(|e| &e.id == id))
    })
    .await;
    eventually("ten runs", 15, || async {
        s.runs("acme", "succeeded").await.len() == 10
    })
    .await;
}

async fn team_quotas_throttle_without_dropping(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    // The runner is at search's concurrent-run quota for the whole test.
    let _runner = stack::fake_runner_busy_for(s.runner_addr, &["search"]).await;
    let (pd, ..) = onboard(&s).await;
    // checkout may start one event a minute; search is at its concurrent runs (the runner: 429).
    s.layer(
        "acme",
        "checkout",
        json!({"routing": {"pagerduty_service": "PSVC1"}, "quotas": {"events_per_minute": 1}}),
    )
    .await;
    s.must(
        Method::POST,
        format!("{}/api/v1/orgs/acme/nodes", s.cs),
        Some(json!({"id": "search", "kind": "team", "name": "Search"})),
    )
    .await;
    s.layer(
        "acme",
        "search",
        json!({"routing": {"pagerduty_service": "PSEARCH"}, "quotas": {"concurrent_runs": 1}}),
    )
    .await;
    for (i, service) in ["PSVC1", "PSVC1", "PSVC1", "PSEARCH"].iter().enumerate() {
        let body = pagerduty_body(&format!("PQ{i}"), service);
        assert_eq!(
            s.webhook(
                &format!("/webhooks/pagerduty/{pd}"),
                &pagerduty_headers(&body, &format!("q-{i}"), &[PD_NEW]),
                &body
            )
            .await
            .0,
            200
        );
    }
    eventually(
        "one checkout event dispatched, the rest throttled",
        15,
        || async {
            let throttled = s.events("acme", "throttled").await;
            s.events("acme", "dispatched").await.len() == 1
                && throttled
                    .iter()
                    .filter(|e| e["team_id"] == "checkout")
                    .count()
                    == 2
                && throttled.iter().any(|e| e["team_id"] == "search")
        },
    )
    .await;
    let throttled = s.events("acme", "throttled").await;
    let search = throttled.iter().find(|e| e["team_id"] == "search").unwrap();
    let detail = s
        .must(
            Method::GET,
            format!(
                "{}/api/v1/orgs/acme/events/{}",
                s.orch,
                search["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let why = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "throttled")
        .map(|t| t["detail"].as_str().unwrap())
        .collect::<Vec<_>>();
    assert!(
        why.iter().any(|d| d.contains("concurrent-run quota")),
        "{why:?}"
    );
    // Throttling never uses up attempts: nothing is dead-lettered, however long it waits.
    assert!(s.events("acme", "dead_lettered").await.is_empty());
    assert!(
        throttled
            .iter()
            .all(|e| e["attempts"].as_i64().unwrap() <= 1),
        "{throttled:?}"
    );
}

async fn integration_admin_api(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    let (pd, ..) = onboard(&s).await;
    let token = |org: &'static str, node: Option<&'static str>| {
        let s = &s;
        async move {
            let path = match node {
                Some(n) => format!("{}/api/v1/orgs/{org}/nodes/{n}/tokens", s.cs),
                None => format!("{}/api/v1/orgs/{org}/admin-tokens", s.cs),
            };
            s.must(
                Method::POST,
                path,
                Some(json!({"label": "t", "subject": format!("t@{org}.example")})),
            )
            .await["secret"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let acme = token("acme", None).await;
    let beta = token("beta", None).await;
    let team = token("acme", Some("checkout")).await;
    let call = |tok: String, m: Method, path: String, body: Option<Value>| {
        let s = &s;
        async move {
            let mut r = s
                .http
                .request(m, format!("{}{path}", s.orch))
                .bearer_auth(tok);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let resp = r.send().await.unwrap();
            let st = resp.status().as_u16();
            (st, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // An org admin token works on the orchestrator too (resolved through the config-service).
    let (st, created) = call(acme.clone(), Method::POST, "/api/v1/orgs/acme/integrations".into(), Some(json!({"source": "sentry", "name": "Sentry", "secrets": ["sentry-client-secret"], "default_team": "checkout"}))).await;
    assert_eq!(st, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["webhook_path"], format!("/webhooks/sentry/{id}"));
    let (_, list) = call(
        acme.clone(),
        Method::GET,
        "/api/v1/orgs/acme/integrations".into(),
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert!(
        !list.to_string().contains("sentry-client-secret") && !list.to_string().contains(PD_OLD),
        "secrets never come back"
    );
    // Another tenant sees nothing; a team token may not administer; no token is 401.
    assert_eq!(
        call(
            beta.clone(),
            Method::GET,
            format!("/api/v1/orgs/acme/integrations/{id}"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            beta.clone(),
            Method::GET,
            format!("/api/v1/orgs/beta/integrations/{id}"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            beta.clone(),
            Method::DELETE,
            format!("/api/v1/orgs/beta/integrations/{pd}"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(
            team.clone(),
            Method::GET,
            "/api/v1/orgs/acme/integrations".into(),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            "nope".into(),
            Method::GET,
            "/api/v1/orgs/acme/integrations".into(),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            acme.clone(),
            Method::GET,
            "/api/v1/platform/integrations".into(),
            None
        )
        .await
        .0,
        403
    );
    // Bad input names the field.
    let (st, p) = call(
        acme.clone(),
        Method::POST,
        "/api/v1/orgs/acme/integrations".into(),
        Some(json!({"source": "fax", "name": "x", "secrets": ["0123456789"]})),
    )
    .await;
    assert_eq!((st, p["pointer"].as_str()), (422, Some("/source")));
    let (st, p) = call(
        acme.clone(),
        Method::POST,
        "/api/v1/orgs/acme/integrations".into(),
        Some(json!({"source": "standard", "name": "x", "secrets": ["not base64!!"]})),
    )
    .await;
    assert_eq!((st, p["pointer"].as_str()), (422, Some("/secrets/0")));
    // Update, rotate, refuse retiring the last secret, delete.
    let (st, u) = call(
        acme.clone(),
        Method::PATCH,
        format!("/api/v1/orgs/acme/integrations/{id}"),
        Some(json!({"name": "Sentry prod", "default_team": null})),
    )
    .await;
    assert_eq!(
        (st, u["name"].as_str(), &u["default_team"]),
        (200, Some("Sentry prod"), &Value::Null)
    );
    let (st, added) = call(
        acme.clone(),
        Method::POST,
        format!("/api/v1/orgs/acme/integrations/{id}/secrets"),
        Some(json!({"secret": "sentry-client-secret-2"})),
    )
    .await;
    assert_eq!(st, 201);
    let old = created["secrets"][0]["id"].as_str().unwrap();
    assert_eq!(
        call(
            acme.clone(),
            Method::DELETE,
            format!("/api/v1/orgs/acme/integrations/{id}/secrets/{old}"),
            None
        )
        .await
        .0,
        204
    );
    let new = added["id"].as_str().unwrap();
    let (st, p) = call(
        acme.clone(),
        Method::DELETE,
        format!("/api/v1/orgs/acme/integrations/{id}/secrets/{new}"),
        None,
    )
    .await;
    assert_eq!(
        (st, p["type"].as_str()),
        (409, Some("urn:switchyard:problem:last-secret"))
    );
    assert_eq!(
        call(
            acme.clone(),
            Method::DELETE,
            format!("/api/v1/orgs/acme/integrations/{id}"),
            None
        )
        .await
        .0,
        204
    );
    let body = br#"{"action":"created","data":{}}"#;
    let h = vec![
        (
            "sentry-hook-signature",
            hmac_hex(b"sentry-client-secret-2", &[body]),
        ),
        ("request-id", "r".to_owned()),
    ];
    assert_eq!(
        s.webhook(&format!("/webhooks/sentry/{id}"), &h, body)
            .await
            .0,
        404,
        "a deleted integration's URL is gone"
    );
}

fn github_headers(body: &[u8], event: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(GITHUB_SECRET.as_bytes(), &[body])),
        ),
        ("content-type", "application/json".to_owned()),
    ]
}

async fn orchestrator_metric(s: &Stack, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", s.orch))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The shared-app attack over HTTP: beta claims acme's Slack channel. Neither org receives the
/// event; it is unrouted with the reason, and the ambiguity counter rises. Beta's org admin cannot
/// claim acme's workspace at all.
async fn a_shared_app_event_matching_two_orgs_goes_to_neither(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    onboard(&s).await;
    let beta_admin = s
        .must(
            Method::POST,
            format!("{}/api/v1/orgs/beta/admin-tokens", s.cs),
            Some(json!({"label": "mallory", "subject": "mallory@beta.example"})),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |node: &str, version: u32, layer: Value| {
        let (cs, token, node) = (s.cs.clone(), beta_admin.clone(), node.to_owned());
        async move {
            reqwest::Client::new()
                .put(format!("{cs}/api/v1/orgs/beta/nodes/{node}/config/layer"))
                .bearer_auth(token)
                .header("if-match", format!("\"v{version}\""))
                .json(&layer)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        put("beta", 0, json!({"routing": {"slack_team": "T0001"}})).await,
        403
    );
    assert_eq!(
        put("beta", 0, json!({"routing": {"github_owner": "acme"}})).await,
        403
    );
    let before = orchestrator_metric(&s, "switchyard_orchestrator_routing_ambiguous_total").await;
    assert_eq!(
        put(
            "ops",
            1,
            json!({"routing": {"slack_channel": "C0CHECKOUT"}})
        )
        .await,
        200
    );
    let slack = json!({"type": "event_callback", "team_id": "T0001", "event_id": "EvSteal", "event": {"type": "app_mention", "channel": "C0CHECKOUT", "ts": "1700000000.000200", "text": "secrets?"}}).to_string();
    let (st, v, _) = s
        .webhook(
            "/webhooks/slack/events",
            &slack_headers(slack.as_bytes(), now_s(), SLACK_SECRET),
            slack.as_bytes(),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let id = v["event_id"].as_str().unwrap().to_owned();
    let unrouted = || async {
        s.must(
            Method::GET,
            format!("{}/api/v1/events?status=unrouted", s.orch),
            None,
        )
        .await["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id.as_str())
            .cloned()
    };
    eventually("the event is unrouted", 15, || async {
        unrouted().await.is_some()
    })
    .await;
    let e = unrouted().await.unwrap();
    let why = e["last_error"].as_str().unwrap();
    assert!(why.contains("acme") && why.contains("beta"), "{why}");
    assert!(e["team_id"].is_null() && e["org_id"].is_null(), "{e}");
    assert!(s.runs("acme", "").await.is_empty() && s.runs("beta", "").await.is_empty());
    let after = orchestrator_metric(&s, "switchyard_orchestrator_routing_ambiguous_total").await;
    assert_eq!(after, before + 1.0);
}

/// Events with nothing to route by, or only invalid identifiers, reach the integration's default
/// team instead of being dead-lettered by our own lookup's validation.
async fn events_without_usable_identifiers_go_to_the_default_team(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    onboard(&s).await;
    let gh = s
        .must(
            Method::POST,
            format!("{}/api/v1/orgs/acme/integrations", s.orch),
            Some(json!({"source": "github", "name": "GitHub hook", "default_team": "checkout", "secrets": [GITHUB_SECRET]})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bodies = [
        // A security advisory: no repository, no owner.
        (
            "security_advisory",
            json!({"action": "published", "security_advisory": {"ghsa_id": "GHSA-1"}}),
        ),
        // A repository name the lookup would refuse.
        (
            "issues",
            json!({"action": "opened", "issue": {"number": 1}, "repository": {"full_name": "no-slash-here", "owner": {"login": "x".repeat(300)}}}),
        ),
    ];
    let mut ids = Vec::new();
    for (i, (event, body)) in bodies.iter().enumerate() {
        let body = body.to_string();
        let (st, v, _) = s
            .webhook(
                &format!("/webhooks/github/{gh}"),
                &github_headers(body.as_bytes(), event, &format!("d-{i}")),
                body.as_bytes(),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        ids.push(v["event_id"].as_str().unwrap().to_owned());
    }
    eventually("both dispatched to the default team", 15, || async {
        let done = s.events("acme", "dispatched").await;
        ids.iter().all(|id| {
            done.iter()
                .any(|e| e["id"] == id.as_str() && e["team_id"] == "checkout")
        })
    })
    .await;
    assert!(s.events("acme", "dead_lettered").await.is_empty());
}

/// Control actions of the orchestrator reach the hash-chained audit log: the org's chain for its
/// integrations, secrets and replays, the platform chain for the shared apps; never a secret.
async fn control_actions_are_audited(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    let (pd, ..) = onboard(&s).await;
    let o = &s.orch;
    let added = s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/acme/integrations/{pd}/secrets"),
            Some(json!({"secret": "pagerduty-third-secret"})),
        )
        .await;
    s.must(
        Method::DELETE,
        format!(
            "{o}/api/v1/orgs/acme/integrations/{pd}/secrets/{}",
            added["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    // An event nobody routes, replayed.
    let body = pagerduty_body("PNOBODY", "PUNKNOWN");
    assert_eq!(
        s.webhook(
            &format!("/webhooks/pagerduty/{pd}"),
            &pagerduty_headers(&body, "nobody-1", &[PD_NEW]),
            &body
        )
        .await
        .0,
        200
    );
    eventually("the event is unrouted", 15, || async {
        s.events("acme", "unrouted").await.len() == 1
    })
    .await;
    let r = s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/acme/events/replay"),
            Some(json!({"status": "unrouted"})),
        )
        .await;
    assert_eq!(r["replayed"], 1);

    let audit = |path: String| {
        let s = &s;
        async move {
            s.must(Method::GET, format!("{}{path}", s.cs), None).await["items"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let wanted = [
        "integration.created",
        "integration.secret_added",
        "integration.secret_retired",
        "events.replayed",
    ];
    eventually("the org's actions are in its audit chain", 20, || async {
        let items = audit("/api/v1/orgs/acme/audit?limit=500".into()).await;
        wanted
            .iter()
            .all(|a| items.iter().any(|e| e["action"] == *a))
    })
    .await;
    let items = audit("/api/v1/orgs/acme/audit?limit=500".into()).await;
    let created = items
        .iter()
        .filter(|e| e["action"] == "integration.created")
        .count();
    assert_eq!(created, 3, "pagerduty, incident.io and alertmanager");
    assert!(items.iter().all(|e| e["actor"] != ""));
    eventually("the shared apps are in the platform chain", 20, || async {
        audit("/api/v1/platform/audit".into())
            .await
            .iter()
            .filter(|e| e["action"] == "integration.created")
            .count()
            == 2
    })
    .await;
    let text = format!(
        "{:?}{:?}",
        items,
        audit("/api/v1/platform/audit".into()).await
    );
    for secret in [
        PD_OLD,
        PD_NEW,
        "pagerduty-third-secret",
        SLACK_SECRET,
        GITHUB_SECRET,
    ] {
        assert!(!text.contains(secret), "{secret} leaked into the audit log");
    }
    for path in [
        "/api/v1/orgs/acme/audit/verify",
        "/api/v1/platform/audit/verify",
    ] {
        let v = s.must(Method::GET, format!("{}{path}", s.cs), None).await;
        assert_eq!(v["ok"], true, "{path}: {v}");
    }
}

/// A team throttled without a break for longer than the cap is dead-lettered with the reason.
async fn throttling_is_capped(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            limits: switchyard_orchestrator::settings::Limits {
                max_throttled_seconds: 1,
                retry_base_ms: 50,
                ..Default::default()
            },
            ..Options::default()
        },
    )
    .await;
    let _runner = stack::fake_runner_busy_for(s.runner_addr, &["checkout"]).await;
    let (pd, ..) = onboard(&s).await;
    let body = pagerduty_body("PCAP", "PSVC1");
    assert_eq!(
        s.webhook(
            &format!("/webhooks/pagerduty/{pd}"),
            &pagerduty_headers(&body, "cap-1", &[PD_NEW]),
            &body
        )
        .await
        .0,
        200
    );
    eventually("the throttled event is dead-lettered", 20, || async {
        s.events("acme", "dead_lettered").await.len() == 1
    })
    .await;
    let dead = &s.events("acme", "dead_lettered").await[0];
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("throttled without a break for more than 1 s"),
        "{dead}"
    );
}

/// A signed Slack question reaches the team's agent, which investigates with its Prometheus tool
/// on its model and answers in the thread; the run records the tool call, the model's tokens and
/// the answer.
async fn a_slack_question_is_investigated_by_the_teams_agent(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    // The model answers once the question's dispatch is recorded, so that `switchyard_events`
    // lists it under the team (the run may start a moment before the orchestrator settles).
    let (open, gate) = tokio::sync::watch::channel(false);
    let (model, prom, prom_calls) = fake_model_and_prometheus(gate).await;
    slack_agent_team(&s, json!({
        "agent": {"provider": "openai", "endpoint": model, "model": "gpt-test", "api_key": {"secret": "llm"},
            "tools": ["prometheus_query", "switchyard_events"], "toolsets": {"prometheus": {"url": prom}}},
        "notifications": {"slack": {"channel": "C0OPS"}}
    })).await;
    ask_is_checkout_down(&s, "EvAgent1", "1700000000.000200", &open).await;
    let run = &s.runs("acme", "succeeded").await[0];
    assert_eq!(
        run["summary"],
        "checkout-api is down: up{job=\"checkout\"} is 0."
    );
    assert_eq!(
        run["usage"],
        json!({"input_tokens": 720, "output_tokens": 35})
    );
    assert_eq!(run["transcript"]["steps"][1]["kind"], "tool");
    assert_eq!(run["transcript"]["steps"][1]["name"], "prometheus_query");
    // The team's recent events, from the orchestrator: the question itself is one.
    let events = &run["transcript"]["steps"][2];
    assert_eq!(events["name"], "switchyard_events");
    let seen: Value = serde_json::from_str(events["output"].as_str().unwrap()).unwrap();
    assert_eq!(seen["team"], "checkout", "{events}");
    assert!(
        seen["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["source"] == "slack" && e["event_type"] == "app_mention"),
        "{seen}"
    );
    // Only the agent-runner reads it, with its service identity.
    let internal = format!("{}/api/v1/internal/orgs/acme/teams/checkout/events", s.orch);
    let resp = s.http.get(&internal).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = s
        .http
        .get(&internal)
        .bearer_auth(s.key.mint("config-service", "orchestrator", 60))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(prom_calls.lock().unwrap().len(), 1);
    assert!(!run.to_string().contains("sk-model-0123"));
    // The metrics the dashboards read: the run, its tokens and tool calls at the runner; the
    // calls each service made to the others.
    let runner = reqwest::get(format!("{}/metrics", s.runner))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "switchyard_agent_runner_runs_total{status=\"succeeded\"} 1\n",
        "switchyard_agent_runner_tokens_total{org=\"acme\",team=\"checkout\",kind=\"input\"} 720\n",
        "switchyard_agent_runner_tokens_total{org=\"acme\",team=\"checkout\",kind=\"output\"} 35\n",
        "switchyard_agent_runner_tool_calls_total{tool=\"prometheus_query\",outcome=\"ok\"} 1\n",
        "switchyard_agent_runner_calls_total{callee=\"orchestrator\",outcome=\"2xx\"}",
        "switchyard_agent_runner_calls_total{callee=\"config-service\",outcome=\"2xx\"}",
    ] {
        assert!(runner.contains(line), "{line} in {runner}");
    }
    assert!(
        orchestrator_metric(
            &s,
            "switchyard_orchestrator_calls_total{callee=\"agent-runner\",outcome=\"2xx\"}"
        )
        .await
            >= 1.0
    );
    // The thread, then the team's default channel (notifications), each with the findings.
    let slack_calls = s.slack.lock().unwrap().clone();
    assert_eq!(slack_calls.len(), 2, "{slack_calls:?}");
    assert_eq!(slack_calls[0].1, "Bearer xoxb-checkout");
    assert_eq!(slack_calls[0].2["thread_ts"], "1700000000.000200");
    assert_eq!(
        (&slack_calls[1].2["channel"], &slack_calls[1].2["thread_ts"]),
        (&json!("C0OPS"), &Value::Null)
    );
    let findings = slack_calls[0].2["blocks"][2]["text"]["text"]
        .as_str()
        .unwrap();
    assert!(
        findings.starts_with("*Findings*\n• prometheus_query: "),
        "{findings}"
    );
    let context = slack_calls[0].2["blocks"][3]["elements"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        context.starts_with("tools used: prometheus_query, switchyard_events · run ")
            && context.ends_with("720 input / 35 output tokens"),
        "{context}"
    );
    assert!(
        slack_calls[0].2["text"]
            .as_str()
            .unwrap()
            .contains("checkout-api is down"),
        "{slack_calls:?}"
    );
}

/// A team's daily token budget ends a run between turns, then stops the next run before it
/// starts; each event's timeline says why.
async fn the_timeline_says_when_the_token_budget_ends_a_run(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    let (_open, gate) = tokio::sync::watch::channel(true);
    let (model, prom, _) = fake_model_and_prometheus(gate).await;
    // The fake model's first turn costs 320 tokens.
    slack_agent_team(&s, json!({
        "quotas": {"tokens_per_day": 300},
        "agent": {"provider": "openai", "endpoint": model, "model": "gpt-test", "api_key": {"secret": "llm"},
            "tools": ["prometheus_query"], "toolsets": {"prometheus": {"url": prom}}}
    })).await;
    let mut timelines = Vec::new();
    for (n, ts) in [(1, "1700000000.000301"), (2, "1700000000.000302")] {
        let slack = json!({"type": "event_callback", "team_id": "T0001", "event_id": format!("EvBudget{n}"), "event": {"type": "app_mention",
            "channel": "C0CHECKOUT", "ts": ts, "text": "<@U1> is checkout down?"}}).to_string();
        let (st, v, _) = s
            .webhook(
                "/webhooks/slack/events",
                &slack_headers(slack.as_bytes(), now_s(), SLACK_SECRET),
                slack.as_bytes(),
            )
            .await;
        assert_eq!(st, 200);
        let detail = format!(
            "{}/api/v1/orgs/acme/events/{}",
            s.orch,
            v["event_id"].as_str().unwrap()
        );
        // Routed to acme (a shared Slack app's event is the org's once routed), then dispatched.
        eventually("the event is dispatched", 20, || async {
            s.events("acme", "dispatched").await.len() == n
        })
        .await;
        eventually("the run's outcome is on the timeline", 20, || async {
            s.must(Method::GET, detail.clone(), None).await["timeline"]
                .to_string()
                .contains("run_failed")
        })
        .await;
        let ev = s.must(Method::GET, detail, None).await;
        timelines.push(ev["timeline"].as_array().unwrap().last().unwrap().clone());
    }
    assert_eq!(timelines[0]["kind"], "run_failed");
    assert!(
        timelines[0]["detail"].as_str().unwrap().contains(
            "the team's tokens_per_day budget ran out (320 tokens used by this run, 300 were left today)"
        ),
        "{timelines:?}"
    );
    assert!(
        timelines[1]["detail"].as_str().unwrap().contains(
            "the team's tokens_per_day budget (300) is used up today; the run did not start"
        ),
        "{timelines:?}"
    );
    assert!(s.slack.lock().unwrap().is_empty(), "no answer was posted");
}

switchyard_common::on_both_backends!(
    the_timeline_says_when_the_token_budget_ends_a_run,
    a_slack_question_is_investigated_by_the_teams_agent,
    control_actions_are_audited,
    a_shared_app_event_matching_two_orgs_goes_to_neither,
    events_without_usable_identifiers_go_to_the_default_team,
    throttling_is_capped,
    integration_admin_api,
    team_quotas_throttle_without_dropping,
    every_source_to_one_run_and_one_reply,
    runner_down_events_wait_and_retry,
    a_replica_with_dispatch_off_leaves_dispatch_to_another,
    unrouted_events_are_kept_and_replayed_after_the_route_is_fixed,
    store_down_answers_503_and_loses_nothing_acknowledged,
);
