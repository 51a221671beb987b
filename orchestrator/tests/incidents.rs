//! Incidents (ADR 0012) through the real orchestrator and config-service, on PostgreSQL and
//! SQLite: an Alertmanager alert, a PagerDuty incident and a Slack mention for one service make
//! one incident with three members and one agent run; the alert and the PagerDuty incident
//! resolving resolve it; a new alert afterwards opens a second incident that links to the first.
//! Incident events reach subscriptions; team tokens see only their team's incidents.

mod stack;

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};
use stack::{ADMIN, Options, Receiver, Stack, eventually, fake_runner, fake_runner_with_triggers};
use switchyard_common::db::Backend;
use switchyard_common::time::now_ms;
use switchyard_orchestrator::sources::verify::sign::hmac_hex;

const PD_SECRET: &str = "pagerduty-secret-incidents";
const SLACK_SECRET: &str = "slack-signing-secret-incidents";
const AM_TOKEN: &str = "alertmanager-token-incidents";

struct Senders {
    pd: String,
    am: String,
}

/// acme/checkout owning the PagerDuty service, the Slack channel and the `service=checkout`
/// alerts, with the default rules (one run per incident, `service` within 10 minutes).
async fn acme(s: &Stack) -> Senders {
    let cs = &s.cs;
    s.must(
        Method::POST,
        format!("{cs}/api/v1/orgs"),
        Some(json!({"id": "acme", "name": "Acme"})),
    )
    .await;
    for team in ["checkout", "search"] {
        s.must(
            Method::POST,
            format!("{cs}/api/v1/orgs/acme/nodes"),
            Some(json!({"id": team, "kind": "team", "name": team})),
        )
        .await;
    }
    s.layer("acme", "acme", json!({"routing": {"slack_team": "T0001"}}))
        .await;
    s.layer(
        "acme",
        "checkout",
        json!({"routing": {"slack_channel": "C0CHECKOUT", "pagerduty_service": "PSVC1", "service": "checkout"}}),
    )
    .await;
    let o = &s.orch;
    s.must(
        Method::POST,
        format!("{o}/api/v1/platform/integrations"),
        Some(json!({"source": "slack", "name": "Slack app", "secrets": [SLACK_SECRET]})),
    )
    .await;
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let pd = id(s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/acme/integrations"),
            Some(json!({"source": "pagerduty", "name": "PD", "secrets": [PD_SECRET]})),
        )
        .await);
    let am = id(s
        .must(
            Method::POST,
            format!("{o}/api/v1/orgs/acme/integrations"),
            Some(json!({"source": "alertmanager", "name": "AM", "secrets": [AM_TOKEN]})),
        )
        .await);
    Senders { pd, am }
}

async fn send(s: &Stack, path: &str, headers: Vec<(&'static str, String)>, body: Value) -> String {
    let body = body.to_string().into_bytes();
    let (st, v, _) = s.webhook(path, &headers, &body).await;
    assert_eq!(st, 200, "{path}: {v}");
    assert_eq!(v["duplicate"], false, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

async fn alert(s: &Stack, am: &str, group: &str, status: &str) -> String {
    let body = json!({"version": "4", "groupKey": group, "receiver": "switchyard", "status": status,
        "commonLabels": {"alertname": "CheckoutErrors", "service": "checkout", "severity": "warning"},
        "alerts": [{"status": status, "fingerprint": format!("{group}-f"), "startsAt": "2026-12-04T08:00:00Z",
                    "labels": {"alertname": "CheckoutErrors", "service": "checkout", "severity": "warning"}}]});
    let headers = vec![
        ("authorization", format!("Bearer {AM_TOKEN}")),
        ("content-type", "application/json".into()),
    ];
    send(s, &format!("/webhooks/alertmanager/{am}"), headers, body).await
}

async fn page(s: &Stack, pd: &str, incident: &str, event_type: &str) -> String {
    page_for(s, pd, incident, event_type, "Checkout").await
}

/// A signed PagerDuty event of PSVC1, whose service PagerDuty calls `service`.
async fn page_for(s: &Stack, pd: &str, incident: &str, event_type: &str, service: &str) -> String {
    let body = json!({"event": {"id": format!("{incident}-{event_type}"), "event_type": event_type,
        "occurred_at": "2026-12-04T08:01:00Z",
        "data": {"id": incident, "type": "incident", "urgency": "high",
                 "service": {"id": "PSVC1", "type": "service_reference", "summary": service}}}});
    let raw = body.to_string();
    let headers = vec![
        (
            "x-pagerduty-signature",
            format!("v1={}", hmac_hex(PD_SECRET.as_bytes(), &[raw.as_bytes()])),
        ),
        ("x-webhook-id", format!("{incident}-{event_type}")),
        ("content-type", "application/json".into()),
    ];
    send(s, &format!("/webhooks/pagerduty/{pd}"), headers, body).await
}

async fn mention(s: &Stack, id: &str) -> String {
    let body = json!({"type": "event_callback", "team_id": "T0001", "event_id": id,
        "event": {"type": "app_mention", "channel": "C0CHECKOUT", "ts": "1764835200.000100", "text": "<@U1> is checkout down?"}});
    let raw = body.to_string();
    let ts = (now_ms() / 1000).to_string();
    let sig = hmac_hex(
        SLACK_SECRET.as_bytes(),
        &[b"v0:", ts.as_bytes(), b":", raw.as_bytes()],
    );
    let headers = vec![
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", format!("v0={sig}")),
        ("content-type", "application/json".into()),
    ];
    send(s, "/webhooks/slack/events", headers, body).await
}

async fn incidents(s: &Stack, query: &str) -> Vec<Value> {
    let v = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/incidents?{query}", s.orch),
            None,
        )
        .await;
    v["items"].as_array().cloned().unwrap()
}

async fn detail(s: &Stack, id: &str) -> Value {
    s.must(
        Method::GET,
        format!("{}/api/v1/orgs/acme/incidents/{id}", s.orch),
        None,
    )
    .await
}

/// Waits until the event's dispatch is settled (dispatched, with or without a run of its own).
async fn settled(s: &Stack, event: &str) -> Value {
    let url = format!("{}/api/v1/orgs/acme/events/{event}", s.orch);
    // A shared Slack app's event belongs to no org until it is routed: 404 until then.
    eventually(&format!("event {event} is dispatched"), 30, || {
        let url = url.clone();
        async move { s.admin(Method::GET, url, None).await.1["status"] == "dispatched" }
    })
    .await;
    s.must(Method::GET, url, None).await
}

async fn three_senders_make_one_incident_with_one_run(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    // A runner that accepts runs and never finishes them: every signal below comes within the
    // first run's lifetime.
    let (calls, _) = fake_runner(s.runner_addr).await;
    let senders = acme(&s).await;
    let (bus, bus_url) = Receiver::start().await;
    let sub = s
        .must(
            Method::POST,
            format!("{}/api/v1/orgs/acme/subscriptions", s.orch),
            Some(json!({"url": bus_url, "event_types": ["incident.*"]})),
        )
        .await;
    *bus.secret.lock().unwrap() = Some(sub["secret"].as_str().unwrap().to_owned());

    let first = alert(
        &s,
        &senders.am,
        "{}:{alertname=\"CheckoutErrors\"}",
        "firing",
    )
    .await;
    settled(&s, &first).await;
    let pd = page(&s, &senders.pd, "PINC1", "incident.triggered").await;
    let slack = mention(&s, "EvIncident1").await;
    for e in [&pd, &slack] {
        let ev = settled(&s, e).await;
        let kinds: Vec<&str> = ev["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"joined_incident"), "{ev}");
    }
    let open = incidents(&s, "status=open").await;
    assert_eq!(open.len(), 1, "{open:?}");
    let inc = &open[0];
    assert_eq!(inc["team_id"], "checkout");
    assert_eq!(inc["members"], 3);
    assert_eq!(inc["service"], "checkout");
    assert_eq!(
        inc["severity"], "high",
        "PagerDuty's high urgency outranks the alert's warning"
    );
    let sources: HashSet<&str> = inc["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        HashSet::from(["alertmanager", "pagerduty", "slack"])
    );
    let id = inc["id"].as_str().unwrap().to_owned();
    let d = detail(&s, &id).await;
    let members: Vec<&str> = d["member_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(members, [first.as_str(), pd.as_str(), slack.as_str()]);
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "one agent run for the incident"
    );
    assert_eq!(d["runs"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["runs"][0]["event_id"], json!(first));

    // The alert resolving leaves the PagerDuty incident open; its resolution resolves it.
    let resolved_alert = alert(
        &s,
        &senders.am,
        "{}:{alertname=\"CheckoutErrors\"}",
        "resolved",
    )
    .await;
    settled(&s, &resolved_alert).await;
    assert_eq!(detail(&s, &id).await["status"], "open");
    let resolved_pd = page(&s, &senders.pd, "PINC1", "incident.resolved").await;
    settled(&s, &resolved_pd).await;
    let d = detail(&s, &id).await;
    assert_eq!(d["status"], "resolved", "{d}");
    assert_eq!(d["resolved_by"], "signals");
    assert_eq!(d["members"], 5);
    assert_eq!(calls.lock().unwrap().len(), 1, "resolutions start no run");
    // Subscribers heard it all: opened, four updates, resolved, each verified.
    // (Deliveries of an unordered subscription go out concurrently: the `incident.updated`
    // published with `incident.resolved` may arrive after it.)
    eventually(
        "incident.resolved and every update reach the subscriber",
        30,
        || async {
            !bus.of_type("incident.resolved").is_empty()
                && bus.of_type("incident.updated").len() >= 4
        },
    )
    .await;
    let got = bus.got();
    assert!(
        got.iter()
            .all(|g| g.verified && g.body["data"]["incident_id"] == json!(id)),
        "{:?}",
        got.iter()
            .map(|g| (g.verified, &g.event_type, &g.body["data"]["incident_id"]))
            .collect::<Vec<_>>()
    );
    assert_eq!(bus.of_type("incident.opened").len(), 1);
    assert_eq!(bus.of_type("incident.updated").len(), 4);
    assert_eq!(
        bus.of_type("incident.resolved")[0].body["data"]["status"],
        "resolved"
    );

    // A new alert afterwards opens a second incident that links to the first; the resolved one
    // absorbs nothing.
    let again = alert(
        &s,
        &senders.am,
        "{}:{alertname=\"CheckoutLatency\"}",
        "firing",
    )
    .await;
    settled(&s, &again).await;
    let open = incidents(&s, "status=open").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_ne!(open[0]["id"], json!(id));
    assert_eq!(open[0]["previous_id"], json!(id));
    assert_eq!(open[0]["members"], 1);
    assert_eq!(detail(&s, &id).await["members"], 5);
    assert_eq!(calls.lock().unwrap().len(), 2, "the new incident's run");
    // A resolution of an alert no open incident has opens nothing.
    let orphan = alert(&s, &senders.am, "{}:{alertname=\"Unknown\"}", "resolved").await;
    settled(&s, &orphan).await;
    assert_eq!(incidents(&s, "").await.len(), 2);
}

async fn incidents_are_resolved_merged_and_reopened_by_hand(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    fake_runner(s.runner_addr).await;
    let senders = acme(&s).await;
    // Two incidents of one team: the alert's service group, and a PagerDuty incident grouped
    // by another service.
    let a = alert(&s, &senders.am, "{}:{alertname=\"A\"}", "firing").await;
    settled(&s, &a).await;
    let b_ev = page_for(&s, &senders.pd, "PINC9", "incident.triggered", "payments").await;
    settled(&s, &b_ev).await;
    let open = incidents(&s, "status=open").await;
    assert_eq!(open.len(), 2, "{open:?}");
    let (x, y) = (
        open[0]["id"].as_str().unwrap(),
        open[1]["id"].as_str().unwrap(),
    );
    let url = |id: &str, verb: &str| format!("{}/api/v1/orgs/acme/incidents/{id}/{verb}", s.orch);

    // Merge: y's members move into x.
    let merged = s
        .must(Method::POST, url(x, "merge"), Some(json!({"from": y})))
        .await;
    assert_eq!(merged["members"], 2, "{merged}");
    assert_eq!(detail(&s, y).await["status"], "merged");
    let (st, v) = s
        .admin(Method::POST, url(x, "merge"), Some(json!({"from": x})))
        .await;
    assert_eq!(st, 422, "{v}");
    // Resolve by hand, then again: 409. Reopen within the grace period.
    let r = s
        .must(
            Method::POST,
            url(x, "resolve"),
            Some(json!({"reason": "rolled back"})),
        )
        .await;
    assert_eq!(
        (r["status"].as_str(), r["resolved_by"].as_str()),
        (Some("resolved"), Some("platform-admin"))
    );
    // The body is optional: without one, the answer is about the incident (409: resolved).
    let (st, p) = s.admin(Method::POST, url(x, "resolve"), None).await;
    assert_eq!(st, 409, "{p}");
    let r = s.must(Method::POST, url(x, "reopen"), None).await;
    assert_eq!(r["status"], "open");
    let kinds: Vec<String> = detail(&s, x).await["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap().to_owned())
        .collect();
    for k in ["opened", "merged", "resolved", "reopened"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }

    // Tenancy: a team token sees its own team's incidents only; another team's answers 404.
    let (checkout, search) = (
        s.team_token("acme", "checkout").await,
        s.team_token("acme", "search").await,
    );
    let one = format!("{}/api/v1/orgs/acme/incidents/{x}", s.orch);
    assert_eq!(
        s.call(&checkout, Method::GET, one.clone(), None).await.0,
        200
    );
    assert_eq!(s.call(&search, Method::GET, one.clone(), None).await.0, 404);
    assert_eq!(
        s.call(&search, Method::POST, url(x, "resolve"), Some(json!({})))
            .await
            .0,
        404
    );
    let list = s
        .call(
            &search,
            Method::GET,
            format!("{}/api/v1/orgs/acme/incidents", s.orch),
            None,
        )
        .await
        .1;
    assert_eq!(list["items"], json!([]), "{list}");
    let list = s
        .call(
            &checkout,
            Method::GET,
            format!("{}/api/v1/orgs/acme/incidents", s.orch),
            None,
        )
        .await
        .1;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (st, _) = s
        .admin(
            Method::GET,
            format!("{}/api/v1/orgs/acme/incidents?status=closed", s.orch),
            None,
        )
        .await;
    assert_eq!(st, 422);
    let _ = ADMIN;
}

async fn signals_during_a_run_go_to_one_follow_up_run_with_its_findings(b: Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    let (calls, triggers) = fake_runner_with_triggers(s.runner_addr).await;
    let senders = acme(&s).await;
    let first = alert(
        &s,
        &senders.am,
        "{}:{alertname=\"CheckoutErrors\"}",
        "firing",
    )
    .await;
    settled(&s, &first).await;
    // Two signals while the first run is going: neither starts a run.
    let pd = page(&s, &senders.pd, "PINC7", "incident.triggered").await;
    let slack = mention(&s, "EvFollowUp1").await;
    for e in [&pd, &slack] {
        settled(&s, e).await;
    }
    assert_eq!(calls.lock().unwrap().len(), 1);
    let first_trigger = triggers.lock().unwrap()[0].clone();
    assert_eq!(
        first_trigger["incident"]["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The run ends, as the config-service's run event relayed to the orchestrator says.
    let ended = switchyard_api::outbound::OutboundEvent {
        id: "run-ended-1".into(),
        event_type: "run.succeeded".into(),
        version: 1,
        timestamp: switchyard_common::time::rfc3339(now_ms()),
        org_id: "acme".into(),
        team_id: Some("checkout".into()),
        data: json!({"run_id": calls.lock().unwrap()[0].0, "status": "succeeded",
            "trigger_event_id": first, "summary": "the deploy at 08:00 broke checkout"}),
    };
    s.orch_state.store.import_outbox(&[ended]).await.unwrap();
    // One follow-up run, started by the latest signal no run had, with every such signal and the
    // first run's findings.
    eventually("a follow-up run starts", 30, || async {
        calls.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(calls.lock().unwrap()[1].0, format!("{slack}:replay-1"));
    let follow = triggers.lock().unwrap()[1].clone();
    let incident = &follow["incident"];
    let new: Vec<&str> = incident["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["new"] == true)
        .map(|m| m["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(new.len(), 2, "{incident}");
    assert!(new.contains(&pd.as_str()) && new.contains(&slack.as_str()));
    assert_eq!(
        incident["previous_runs"][0]["findings"],
        "the deploy at 08:00 broke checkout"
    );
    let id = incident["incident_id"].as_str().unwrap();
    let d = detail(&s, id).await;
    let runs = d["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{d}");
    assert_eq!(
        (runs[0]["status"].as_str(), runs[1]["event_id"].as_str()),
        (Some("succeeded"), Some(slack.as_str()))
    );
    // The first run's end is in the incident's timeline, and the follow-up in the event's.
    assert!(
        d["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "run_succeeded"),
        "{d}"
    );
    let ev = s
        .admin(
            Method::GET,
            format!("{}/api/v1/orgs/acme/events/{slack}", s.orch),
            None,
        )
        .await
        .1;
    assert!(
        ev["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "follow_up"),
        "{ev}"
    );
    assert_eq!(
        calls.lock().unwrap().len(),
        2,
        "one follow-up for both signals"
    );
}

/// A fake OpenAI-compatible model: its first answer (after `gate` opens) calls
/// `switchyard_events`; then it answers whether a signal that joined the incident was in what it
/// was fed.
async fn fake_model(gate: tokio::sync::watch::Receiver<bool>) -> String {
    let model = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: axum::Json<Value>| {
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|open| *open).await;
                let messages = body["messages"].as_array().unwrap();
                let fed_tool = messages.iter().any(|m| m["role"] == "tool");
                let joined = messages.iter().any(|m| {
                    m["role"] == "user"
                        && m["content"].as_str().unwrap_or("").contains("joined this incident")
                        && m["content"].as_str().unwrap_or("").contains("pagerduty incident.triggered")
                });
                axum::Json(if !fed_tool {
                    json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "switchyard_events", "arguments": "{}"}}]}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 10}})
                } else {
                    let answer = if joined { "PagerDuty paged too: the incident is wider." } else { "no new signal" };
                    json!({"choices": [{"message": {"content": answer}}], "usage": {"prompt_tokens": 150, "completion_tokens": 10}})
                })
            }
        }),
    );
    format!("{}/v1", stack::serve(model).await)
}

/// A signal that joins while the incident's run is going is added to that run's context
/// between its turns: the model reads it, the transcript shows after which turn and when, both
/// timelines say so, and no follow-up run starts for it.
async fn a_signal_during_a_run_joins_its_context_between_turns(b: Backend) {
    let s = Stack::start(b, Options::default()).await;
    let senders = acme(&s).await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let model = fake_model(gate).await;
    s.must(
        Method::PUT,
        format!("{}/api/v1/orgs/acme/secrets/llm", s.cs),
        Some(json!({"value": "sk-incidents"})),
    )
    .await;
    s.layer("acme", "checkout", json!({
        "routing": {"slack_channel": "C0CHECKOUT", "pagerduty_service": "PSVC1", "service": "checkout"},
        "agent": {"provider": "openai", "endpoint": model, "model": "gpt-test", "api_key": {"secret": "llm"},
            "tools": ["switchyard_events"]}
    }))
    .await;
    let first = alert(
        &s,
        &senders.am,
        "{}:{alertname=\"CheckoutErrors\"}",
        "firing",
    )
    .await;
    settled(&s, &first).await;
    // The run waits on the model; PagerDuty pages about the same service meanwhile.
    let pd = page(&s, &senders.pd, "PINC9", "incident.triggered").await;
    settled(&s, &pd).await;
    let open_now = incidents(&s, "status=open").await;
    assert_eq!(
        open_now.len(),
        1,
        "the page joined the alert's incident: {open_now:?}"
    );
    assert_eq!(open_now[0]["members"], 2);
    let id = open_now[0]["id"].as_str().unwrap().to_owned();
    open.send(true).unwrap();
    eventually("the incident's run succeeded", 30, || async {
        detail(&s, &id).await["runs"][0]["status"] == "succeeded"
    })
    .await;
    let runs = s.runs("acme", "succeeded").await;
    assert_eq!(runs.len(), 1, "one run for the incident");
    assert_eq!(
        runs[0]["summary"],
        "PagerDuty paged too: the incident is wider."
    );
    let run_id = runs[0]["id"].as_str().unwrap();
    let run = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/agent-runs/{run_id}", s.cs),
            None,
        )
        .await;
    let steps = run["transcript"]["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["model", "tool", "signals", "model"], "{run}");
    assert_eq!(
        (
            steps[2]["turn"].as_u64(),
            steps[2]["signals"][0]["event_id"].as_str()
        ),
        (Some(1), Some(pd.as_str()))
    );
    assert!(
        steps[2]["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{run}"
    );
    // Both timelines say so; the run's end, already followed, started no follow-up run.
    let d = detail(&s, &id).await;
    assert_eq!(d["runs"].as_array().unwrap().len(), 1, "{d}");
    let kinds = |v: &Value| -> Vec<String> {
        v["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(kinds(&d).contains(&"signal_joined_run".to_owned()), "{d}");
    let ev = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/events/{pd}", s.orch),
            None,
        )
        .await;
    assert!(
        kinds(&ev).contains(&"joined_run".to_owned())
            && !kinds(&ev).contains(&"follow_up".to_owned()),
        "{ev}"
    );
}

switchyard_common::on_both_backends!(
    a_signal_during_a_run_joins_its_context_between_turns,
    three_senders_make_one_incident_with_one_run,
    incidents_are_resolved_merged_and_reopened_by_hand,
    signals_during_a_run_go_to_one_follow_up_run_with_its_findings,
);
