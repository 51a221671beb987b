//! A team whose agent answers Slack questions on a fake OpenAI-compatible model with a fake
//! Prometheus: what the end-to-end and tracing tests share.

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{Value, json};
use switchyard_common::time::now_ms;
use switchyard_orchestrator::sources::verify::sign::hmac_hex;

use super::{Stack, eventually};

pub const SLACK_SECRET: &str = "slack-signing-secret-0001";

pub fn now_s() -> i64 {
    now_ms() / 1000
}

pub fn slack_headers(body: &[u8], ts: i64, secret: &str) -> Vec<(&'static str, String)> {
    let sig = hmac_hex(
        secret.as_bytes(),
        &[b"v0:", ts.to_string().as_bytes(), b":", body],
    );
    vec![
        ("x-slack-request-timestamp", ts.to_string()),
        ("x-slack-signature", format!("v0={sig}")),
        ("content-type", "application/json".into()),
    ]
}

/// A fake Prometheus (`up` of checkout is 0) and a fake OpenAI-compatible model that asks it once,
/// then answers from what it was fed back; its first answer waits until `gate` is open.
/// Answers (model URL, Prometheus URL, Prometheus calls).
pub async fn fake_model_and_prometheus(
    gate: tokio::sync::watch::Receiver<bool>,
) -> (String, String, Arc<Mutex<Vec<String>>>) {
    let prom_calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls = prom_calls.clone();
    let prom = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move |q: axum::extract::RawQuery| {
            let calls = calls.clone();
            async move {
                calls.lock().unwrap().push(q.0.unwrap_or_default());
                axum::Json(json!({"status": "success", "data": {"resultType": "vector",
                    "result": [{"metric": {"job": "checkout"}, "value": [1700000000, "0"]}]}}))
            }
        }),
    );
    let model = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: axum::Json<Value>| async move {
            let _ = gate.clone().wait_for(|open| *open).await;
            let fed = body["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").cloned();
            axum::Json(match fed {
                None => json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "q1", "type": "function",
                    "function": {"name": "prometheus_query", "arguments": "{\"query\":\"up{job=\\\"checkout\\\"}\"}"}},
                    {"id": "q2", "type": "function", "function": {"name": "switchyard_events", "arguments": "{}"}}]}}],
                    "usage": {"prompt_tokens": 300, "completion_tokens": 20}}),
                Some(t) => {
                    let down = t["content"].as_str().unwrap_or("").contains("\"0\"");
                    let answer = if down { "checkout-api is down: up{job=\"checkout\"} is 0." } else { "checkout-api is up." };
                    json!({"choices": [{"message": {"content": answer}}], "usage": {"prompt_tokens": 420, "completion_tokens": 15}})
                }
            })
        }),
    );
    let serve = |app: axum::Router| async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        url
    };
    let model_url = format!("{}/v1", serve(model).await);
    (model_url, serve(prom).await, prom_calls)
}

/// Org acme with team checkout, which owns Slack channel C0CHECKOUT of workspace T0001 and has a
/// bot token and a model key in the secrets store; `agent` is merged into the team's layer (its
/// `agent`, `quotas`, `notifications`). The shared Slack app is registered.
pub async fn slack_agent_team(s: &Stack, agent: Value) {
    let cs = &s.cs;
    s.must(
        Method::POST,
        format!("{cs}/api/v1/orgs"),
        Some(json!({"id": "acme", "name": "Acme"})),
    )
    .await;
    s.must(
        Method::POST,
        format!("{cs}/api/v1/orgs/acme/nodes"),
        Some(json!({"id": "checkout", "kind": "team", "name": "c"})),
    )
    .await;
    for (name, value) in [("slack-bot", "xoxb-checkout"), ("llm", "sk-model-0123")] {
        s.must(
            Method::PUT,
            format!("{cs}/api/v1/orgs/acme/secrets/{name}"),
            Some(json!({"value": value})),
        )
        .await;
    }
    s.layer("acme", "acme", json!({"routing": {"slack_team": "T0001"}}))
        .await;
    let mut layer = json!({
        "routing": {"slack_channel": "C0CHECKOUT"},
        "integrations": {"slack": {"bot_token": {"secret": "slack-bot"}}},
    });
    for (k, v) in agent.as_object().unwrap() {
        layer[k] = v.clone();
    }
    s.layer("acme", "checkout", layer).await;
    s.must(
        Method::POST,
        format!("{}/api/v1/platform/integrations", s.orch),
        Some(json!({"source": "slack", "name": "Slack app", "secrets": [SLACK_SECRET]})),
    )
    .await;
}

/// Asks checkout's agent "is checkout down?" in Slack (event `event_id`, message `ts`), lets the
/// model answer once the question is dispatched (so that `switchyard_events` lists it under the
/// team) and waits for the run to succeed. Answers the webhook's response headers.
pub async fn ask_is_checkout_down(
    s: &Stack,
    event_id: &str,
    ts: &str,
    open: &tokio::sync::watch::Sender<bool>,
) -> reqwest::header::HeaderMap {
    let slack = json!({"type": "event_callback", "team_id": "T0001", "event_id": event_id, "event": {"type": "app_mention",
        "channel": "C0CHECKOUT", "ts": ts, "text": "<@U1> is checkout down?"}}).to_string();
    let (status, _, headers) = s
        .webhook(
            "/webhooks/slack/events",
            &slack_headers(slack.as_bytes(), now_s(), SLACK_SECRET),
            slack.as_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    eventually("the question is dispatched", 20, || async {
        s.events("acme", "dispatched").await.len() == 1
    })
    .await;
    open.send(true).unwrap();
    eventually("the run succeeded", 20, || async {
        !s.runs("acme", "succeeded").await.is_empty()
    })
    .await;
    headers
}
