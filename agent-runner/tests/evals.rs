//! The eval suite in `evals/`: every scenario passes offline, covers the incident kinds the suite
//! promises, and fails when its agent does not do what it asserts. A live provider (here a fake
//! OpenAI-compatible server) runs the same scenarios against the same recorded tools.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use switchyard_agent_runner::evals::{self, Scenario};
use switchyard_agent_runner::providers::{self, ApiKey, Endpoint};

fn suite() -> Vec<Scenario> {
    evals::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../evals")).unwrap()
}

fn scenario(name: &str) -> Scenario {
    suite().into_iter().find(|s| s.name == name).unwrap()
}

#[tokio::test]
async fn every_scenario_passes_offline_and_the_kinds_are_covered() {
    let all = suite();
    let kinds: BTreeSet<&str> = all.iter().map(|s| s.kind.as_str()).collect();
    for kind in [
        "crash-loop",
        "oom-kill",
        "bad-deploy",
        "certificate-expiry",
        "connection-pool-exhaustion",
        "disk-full",
        "dns-failure",
        "dependency-outage",
        "config-change",
        "noisy-flapping-alert",
        "queue-backlog",
        "rate-limiting",
    ] {
        assert!(kinds.contains(kind), "no scenario of kind {kind}");
    }
    let mut outcomes = Vec::new();
    for s in &all {
        outcomes.push(evals::run(s, None).await);
    }
    let report = evals::report(&outcomes);
    assert_eq!(evals::pass_rate(&outcomes), 1.0, "{report}");
    assert!(report.ends_with(&format!("pass rate: {0}/{0} (100%)\n", all.len())));
    // Each scenario used tools, and the usage was counted.
    assert!(
        outcomes
            .iter()
            .all(|o| !o.tools_called.is_empty() && o.usage.input_tokens > 0)
    );
}

#[tokio::test]
async fn an_answer_without_what_is_asserted_fails() {
    let mut s = scenario("oom-kill");
    s.script.last_mut().unwrap().answer = Some("Something is wrong with checkout.".into());
    let o = evals::run(&s, None).await;
    assert!(!o.passed);
    assert_eq!(
        o.failures,
        [
            "the answer does not mention \"OOMKilled\"",
            "the answer does not mention \"memory limit\""
        ]
    );
}

#[tokio::test]
async fn a_wrong_tool_result_fed_back_fails_the_script() {
    // The recorded logs no longer say what the scripted model must read next.
    let mut s = scenario("crash-loop");
    for r in &mut s.tools {
        if r.tool == "kubernetes_logs" {
            r.output = Some(json!("all good"));
        }
    }
    let o = evals::run(&s, None).await;
    assert!(!o.passed);
    assert!(
        o.failures[0].contains("do not contain \"PAYMENTS_URL is not set\""),
        "{:?}",
        o.failures
    );
}

#[tokio::test]
async fn tools_called_and_not_called_are_checked() {
    let mut s = scenario("noisy-flapping-alert");
    s.script.insert(
        0,
        serde_json::from_value(json!({"tool_calls": [{"name": "kubernetes_logs", "arguments": {"pod": "checkout-1"}}]}))
            .unwrap(),
    );
    s.expect.tools_called.push("loki_query".into());
    let o = evals::run(&s, None).await;
    assert_eq!(
        o.failures,
        ["loki_query was not called", "kubernetes_logs was called"]
    );
}

/// A live model: calls the tool the scenario's record answers, then answers from what it read.
async fn fake_openai() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|body: axum::Json<Value>| async move {
            let messages = body["messages"].as_array().unwrap();
            let fed = messages.iter().find(|m| m["role"] == "tool");
            axum::Json(match fed {
                None => {
                    assert!(body["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "prometheus_query"));
                    json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "prometheus_query", "arguments": "{\"query\":\"rabbitmq_queue_consumers{queue=\\\"order-events\\\"}\"}"}}]}}],
                        "usage": {"prompt_tokens": 500, "completion_tokens": 30}})
                }
                Some(t) => {
                    let zero = t["content"].as_str().unwrap().contains("\"0\"");
                    let answer = if zero { "order-events has 0 consumers: scale the workers back up." } else { "unclear" };
                    json!({"choices": [{"message": {"content": answer}}], "usage": {"prompt_tokens": 700, "completion_tokens": 20}})
                }
            })
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_live_model_runs_the_same_scenario_and_its_usage_is_reported() {
    let url = fake_openai().await;
    let provider = providers::build(
        "openai",
        Some(Endpoint {
            url,
            key: ApiKey("sk-eval".into()),
            timeout: std::time::Duration::from_secs(10),
        }),
        &reqwest::Client::new(),
    )
    .unwrap();
    let s = scenario("queue-backlog");
    let o = evals::run(&s, Some(provider.as_ref())).await;
    // It called one of the two tools the scenario asserts.
    assert_eq!(o.failures, ["kubernetes_get was not called"]);
    assert_eq!(o.tools_called, ["prometheus_query"]);
    assert_eq!(
        (o.turns, o.usage.input_tokens, o.usage.output_tokens),
        (2, 1200, 50)
    );
    let report = evals::report(&[o]);
    assert!(report.contains("queue-backlog"), "{report}");
    assert!(report.ends_with("pass rate: 0/1 (0%)\n"), "{report}");
}
