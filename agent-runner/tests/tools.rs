//! The built-in tools against fake servers: a team's tools reach only what its config names
//! (its Prometheus with its token, its allow-listed URLs), and the loop feeds their answers back.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Redirect;
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchyard_agent_runner::agent::config::AgentConfig;
use switchyard_agent_runner::agent::{self, Step, Transcript};
use switchyard_agent_runner::providers::{self, ApiKey, Endpoint};
use switchyard_agent_runner::toolsets::{self, Secrets};

type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A fake Prometheus, Alertmanager and status page on one server; records (query, authorization).
async fn observability() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn query(
        State(seen): State<Seen>,
        h: HeaderMap,
        Query(q): Query<Vec<(String, String)>>,
    ) -> axum::Json<Value> {
        let auth = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let query = q
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        seen.lock().unwrap().push((query, auth));
        axum::Json(json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": {"job": "checkout"}, "value": [1700000000, "0"]}]}}))
    }
    let app = Router::new()
        .route("/api/v1/query", get(query))
        .route("/api/v2/alerts", get(query))
        .route("/status/ok", get(|| async { "all systems operational" }))
        .route(
            "/status/away",
            get(|| async { Redirect::temporary("/admin/secret") }),
        )
        .route(
            "/admin/secret",
            get(|| async { (StatusCode::OK, "should never be read") }),
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

fn agent_section(url: &str, allow_private: bool) -> Value {
    json!({"tools": ["prometheus_query", "alertmanager_alerts", "http_get", "kubernetes_get"],
        "toolsets": {"prometheus": {"url": url, "token": {"secret": "prom"}}, "alertmanager": {"url": url},
            "http": {"allow": [format!("{url}/status/")], "allow_private": allow_private}}})
}

fn secrets() -> Secrets {
    [("prom".to_owned(), "prom-token-123".to_owned())].into()
}

#[tokio::test]
async fn tools_reach_only_what_the_team_configured() {
    let (url, seen) = observability().await;
    let a = agent_section(&url, true);
    let enabled: Vec<String> = serde_json::from_value(a["tools"].clone()).unwrap();
    let (tools, missing) = toolsets::build(&a, &enabled, &secrets(), &reqwest::Client::new());
    // kubernetes_get has no toolset settings here (and no implementation yet): not offered.
    assert_eq!(missing, vec!["kubernetes_get"]);
    let names: Vec<String> = tools.specs().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["prometheus_query", "alertmanager_alerts", "http_get"]
    );

    let r = tools
        .call(
            "prometheus_query",
            &json!({"query": "up{job=\"checkout\"} == 0"}),
        )
        .await;
    assert!(
        !r.error && r.output.contains("\"resultType\":\"vector\""),
        "{r:?}"
    );
    let r = tools
        .call(
            "alertmanager_alerts",
            &json!({"filter": ["service=\"checkout\""]}),
        )
        .await;
    assert!(!r.error, "{r:?}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0],
            (
                "query=up{job=\"checkout\"} == 0".into(),
                "Bearer prom-token-123".into()
            )
        );
        // The Alertmanager has no token configured: none is sent.
        assert_eq!(
            seen[1],
            (
                "active=true&filter=service=\"checkout\"".into(),
                String::new()
            )
        );
    }
    let r = tools.call("prometheus_query", &json!({})).await;
    assert!(
        r.error && r.output.contains("\"query\" is required"),
        "{r:?}"
    );

    // http_get: under the prefix, yes; outside it, or redirected outside it, no.
    let r = tools
        .call("http_get", &json!({"url": format!("{url}/status/ok")}))
        .await;
    assert_eq!(
        (r.error, r.output.as_str()),
        (false, "all systems operational")
    );
    let r = tools
        .call("http_get", &json!({"url": format!("{url}/admin/secret")}))
        .await;
    assert!(
        r.error && r.output.contains("not under an allow-listed prefix"),
        "{r:?}"
    );
    let r = tools
        .call("http_get", &json!({"url": format!("{url}/status/away")}))
        .await;
    assert!(
        r.error && r.output.contains("/admin/secret is not under"),
        "{r:?}"
    );
}

#[tokio::test]
async fn private_addresses_need_the_teams_consent() {
    let (url, _) = observability().await;
    let a = agent_section(&url, false);
    let (tools, _) = toolsets::build(
        &a,
        &["http_get".into()],
        &secrets(),
        &reqwest::Client::new(),
    );
    let r = tools
        .call("http_get", &json!({"url": format!("{url}/status/ok")}))
        .await;
    assert!(r.error && r.output.contains("private address"), "{r:?}");
}

/// A fake model that asks for `prometheus_query` once, then answers with what it was fed back.
async fn investigating_model() -> String {
    async fn turn(body: axum::Json<Value>) -> axum::Json<Value> {
        let messages = body["messages"].as_array().unwrap();
        match messages.iter().find(|m| m["role"] == "tool") {
            None => axum::Json(
                json!({"choices": [{"message": {"content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "prometheus_query", "arguments": "{\"query\":\"up\"}"}}]}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 5}}),
            ),
            Some(t) => {
                let down = t["content"].as_str().unwrap().contains("\"0\"");
                axum::Json(
                    json!({"choices": [{"message": {"content": if down { "checkout is down (up == 0)" } else { "all up" }}}],
                    "usage": {"prompt_tokens": 70, "completion_tokens": 8}}),
                )
            }
        }
    }
    let app = Router::new().route("/v1/chat/completions", post(turn));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

#[tokio::test]
async fn the_loop_investigates_with_a_configured_tool() {
    let (prom, seen) = observability().await;
    let model = investigating_model().await;
    let mut section = agent_section(&prom, true);
    section["provider"] = json!("openai");
    section["endpoint"] = json!(model);
    section["model"] = json!("m");
    let cfg = AgentConfig::parse(Some(&section), 60).unwrap();
    let (tools, _) = toolsets::build(&section, &cfg.tools, &secrets(), &reqwest::Client::new());
    let endpoint = Endpoint {
        url: model,
        key: ApiKey("k".into()),
        timeout: std::time::Duration::from_secs(10),
    };
    let provider = providers::build("openai", Some(endpoint), &reqwest::Client::new()).unwrap();
    let mut t = Transcript::default();
    let answer = agent::run(
        provider.as_ref(),
        &cfg,
        "alertmanager alert.firing for team checkout",
        &tools,
        &mut t,
    )
    .await
    .unwrap();
    assert_eq!(answer, "checkout is down (up == 0)");
    assert_eq!(t.usage.total(), 133);
    assert!(
        matches!(&t.steps[1], Step::Tool { name, error: false, .. } if name == "prometheus_query")
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}
