//! The agent loop against in-process fake OpenAI-compatible and Anthropic servers: what the fake
//! receives (system prompt, tool schemas, tool results fed back, the key only in its header) and
//! how the loop handles tool calls, several per turn, 429 with Retry-After, 5xx, refusals,
//! malformed answers, a hanging server and max_turns.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use switchyard_agent_runner::agent::config::AgentConfig;
use switchyard_agent_runner::agent::tools::{Tool, ToolBox};
use switchyard_agent_runner::agent::{self, AgentError, Step, Transcript};
use switchyard_agent_runner::messages::ToolSpec;
use switchyard_agent_runner::providers::{self, ApiKey, Endpoint, ProviderError};

const KEY: &str = "sk-test-0123456789";

/// One scripted answer.
#[derive(Clone)]
enum Answer {
    Json(Value),
    Status(u16, Option<&'static str>, Value),
    Raw(&'static str),
    Hang,
}

#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// (headers, body) of every request.
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

async fn answer(State(f): State<Fake>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    f.seen.lock().unwrap().push((headers, body));
    let next = f.script.lock().unwrap().pop_front();
    match next.expect("the fake ran out of scripted answers") {
        Answer::Json(v) => axum::Json(v).into_response(),
        Answer::Status(code, retry_after, v) => {
            let mut r = (StatusCode::from_u16(code).unwrap(), axum::Json(v)).into_response();
            if let Some(ra) = retry_after {
                r.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            r
        }
        Answer::Raw(s) => ([("content-type", "application/json")], s).into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// A fake provider serving `path`, answering `script` in order. Answers its base URL.
async fn fake(path: &str, script: Vec<Answer>) -> (Fake, String) {
    let f = Fake {
        script: Arc::new(Mutex::new(script.into())),
        ..Fake::default()
    };
    let app = Router::new()
        .route(path, post(answer))
        .with_state(f.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (f, url)
}

/// A tool that answers what it was asked, for the loop to feed back.
struct Echo(&'static str);

impl Tool for Echo {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.0.into(),
            description: format!("{} (test)", self.0),
            parameters: json!({"type": "object", "properties": {"query": {"type": "string"}}}),
        }
    }

    fn call<'a>(&'a self, arguments: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move { Ok(format!("{} answered {}", self.0, arguments["query"])) })
    }
}

fn config(provider: &str, url: &str, extra: Value) -> AgentConfig {
    let mut a = json!({"provider": provider, "model": "test-model", "endpoint": url,
        "prompts": {"system": "You investigate incidents."}, "max_turns": 4, "deadline_seconds": 30});
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    AgentConfig::parse(Some(&a), 300).unwrap()
}

async fn run(cfg: &AgentConfig, tools: &ToolBox) -> (Result<String, AgentError>, Transcript) {
    let endpoint = Endpoint {
        url: cfg.endpoint.clone().unwrap(),
        key: ApiKey(KEY.into()),
        timeout: Duration::from_secs(cfg.deadline_seconds),
    };
    let provider =
        providers::build(&cfg.provider, Some(endpoint), &reqwest::Client::new()).unwrap();
    let mut t = Transcript::default();
    let r = agent::run(
        provider.as_ref(),
        cfg,
        "pagerduty incident.triggered for team checkout",
        tools,
        &mut t,
    )
    .await;
    (r, t)
}

fn tools() -> ToolBox {
    ToolBox::default()
        .with(Box::new(Echo("prometheus_query")))
        .with(Box::new(Echo("kubernetes_get")))
}

fn openai_calls(calls: &[(&str, &str, Value)]) -> Answer {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
        .collect();
    Answer::Json(
        json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": calls}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20}}),
    )
}

fn openai_text(text: &str) -> Answer {
    Answer::Json(
        json!({"choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 150, "completion_tokens": 30}}),
    )
}

#[tokio::test]
async fn openai_tool_calls_are_run_and_fed_back() {
    let (f, url) = fake(
        "/chat/completions",
        vec![
            openai_calls(&[
                (
                    "c1",
                    "prometheus_query",
                    json!({"query": "up{job=\"checkout\"}"}),
                ),
                ("c2", "kubernetes_get", json!({"query": "pods"})),
            ]),
            openai_text("checkout pods are crash-looping since the 14:02 deploy"),
        ],
    )
    .await;
    let (answer, t) = run(&config("openai", &url, json!({})), &tools()).await;
    assert_eq!(
        answer.unwrap(),
        "checkout pods are crash-looping since the 14:02 deploy"
    );
    assert_eq!(
        (t.turns, t.usage.input_tokens, t.usage.output_tokens),
        (2, 250, 50)
    );
    let kinds: Vec<&str> = t
        .steps
        .iter()
        .map(|s| match s {
            Step::Model { .. } => "model",
            Step::Tool { .. } => "tool",
            Step::Signals { .. } => "signals",
        })
        .collect();
    assert_eq!(kinds, ["model", "tool", "tool", "model"]);
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    // The key travels in its header only.
    for (h, body) in seen.iter() {
        assert_eq!(h["authorization"], format!("Bearer {KEY}"));
        assert!(!body.to_string().contains(KEY));
    }
    let first = &seen[0].1;
    assert_eq!(first["model"], "test-model");
    assert_eq!(
        first["messages"][0],
        json!({"role": "system", "content": "You investigate incidents."})
    );
    assert_eq!(
        first["messages"][1]["content"],
        "pagerduty incident.triggered for team checkout"
    );
    assert_eq!(first["tools"][0]["function"]["name"], "prometheus_query");
    assert_eq!(
        first["tools"][1]["function"]["parameters"]["type"],
        "object"
    );
    // The second turn carries both calls and both results, in order.
    let second = &seen[1].1["messages"];
    assert_eq!(second[2]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(second[3]["tool_call_id"], "c1");
    assert_eq!(
        second[3]["content"],
        "prometheus_query answered \"up{job=\\\"checkout\\\"}\""
    );
    assert_eq!(second[4]["tool_call_id"], "c2");
}

#[tokio::test]
async fn anthropic_tool_use_is_run_and_fed_back() {
    let (f, url) = fake(
        "/v1/messages",
        vec![
            Answer::Json(json!({"content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "tu1", "name": "kubernetes_get", "input": {"query": "events"}}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 80, "output_tokens": 12}})),
            Answer::Json(json!({"content": [{"type": "text", "text": "OOMKilled: raise the memory limit."}],
                "stop_reason": "end_turn", "usage": {"input_tokens": 120, "output_tokens": 9}})),
        ],
    )
    .await;
    let (answer, t) = run(&config("anthropic", &url, json!({})), &tools()).await;
    assert_eq!(answer.unwrap(), "OOMKilled: raise the memory limit.");
    assert_eq!(t.usage.total(), 221);
    let seen = f.seen.lock().unwrap();
    let (h, first) = &seen[0];
    assert_eq!(h["x-api-key"], KEY);
    assert_eq!(h["anthropic-version"], "2023-06-01");
    assert!(h.get("authorization").is_none());
    assert_eq!(first["system"], "You investigate incidents.");
    assert_eq!(first["tools"][1]["input_schema"]["type"], "object");
    let result = &seen[1].1["messages"][2]["content"][0];
    assert_eq!(
        (result["type"].as_str(), result["tool_use_id"].as_str()),
        (Some("tool_result"), Some("tu1"))
    );
    assert_eq!(result["content"], "kubernetes_get answered \"events\"");
}

#[tokio::test]
async fn a_429_is_retried_after_what_it_asks_and_5xx_with_backoff() {
    let (f, url) = fake(
        "/chat/completions",
        vec![
            Answer::Status(429, Some("1"), json!({"error": {"message": "slow down"}})),
            Answer::Status(500, None, json!({"error": {"message": "overloaded"}})),
            openai_text("done"),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let (answer, t) = run(&config("openai", &url, json!({})), &ToolBox::default()).await;
    assert_eq!(answer.unwrap(), "done");
    assert_eq!(f.seen.lock().unwrap().len(), 3);
    // Retry-After: 1 was honoured before the second attempt.
    assert!(started.elapsed() >= Duration::from_secs(1));
    // The turn's time waiting on the endpoint (the retries and their waits) is not the runner's
    // own: its own time is the turn's duration less at least that second.
    let Step::Model {
        duration_ms,
        runner_us,
        ..
    } = t.steps[0]
    else {
        panic!("a model turn first")
    };
    assert!(duration_ms >= 1000);
    assert!(
        runner_us < (duration_ms + 1) * 1000 - 1_000_000,
        "{runner_us} us of {duration_ms} ms"
    );
}

#[tokio::test]
async fn persistent_failures_and_refusals_end_the_run_with_the_reason() {
    let (f, url) = fake(
        "/chat/completions",
        vec![Answer::Status(503, None, json!({"error": {"message": "down"}})); 4],
    )
    .await;
    let (answer, _) = run(&config("openai", &url, json!({})), &ToolBox::default()).await;
    assert!(
        matches!(&answer, Err(AgentError::Provider(ProviderError::Unavailable(m))) if m.contains("down") && m.contains("4 attempts")),
        "{answer:?}"
    );
    assert_eq!(f.seen.lock().unwrap().len(), 4);

    let (f, url) = fake(
        "/chat/completions",
        vec![Answer::Status(
            401,
            None,
            json!({"error": {"message": "invalid api key"}}),
        )],
    )
    .await;
    let (answer, _) = run(&config("openai", &url, json!({})), &ToolBox::default()).await;
    assert!(
        matches!(&answer, Err(AgentError::Provider(ProviderError::Rejected(m))) if m.contains("invalid api key")),
        "{answer:?}"
    );
    assert_eq!(f.seen.lock().unwrap().len(), 1, "a refusal is not retried");

    // A Retry-After longer than the loop will wait fails at once.
    let (f, url) = fake(
        "/v1/messages",
        vec![Answer::Status(
            429,
            Some("3600"),
            json!({"error": {"message": "quota"}}),
        )],
    )
    .await;
    let (answer, _) = run(&config("anthropic", &url, json!({})), &ToolBox::default()).await;
    assert!(matches!(
        answer,
        Err(AgentError::Provider(ProviderError::Unavailable(_)))
    ));
    assert_eq!(f.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_answers_fail_the_run_clearly() {
    let bad_arguments = Answer::Json(json!({"choices": [{"message": {"tool_calls": [{"id": "c",
        "type": "function", "function": {"name": "prometheus_query", "arguments": "{\"query\": "}}]}}]}));
    for (script, expect) in [
        (Answer::Raw("{not json"), "not JSON"),
        (Answer::Json(json!({"choices": []})), "choices[0]"),
        (bad_arguments, "arguments of prometheus_query are not JSON"),
    ] {
        let (f, url) = fake("/chat/completions", vec![script]).await;
        let (answer, _) = run(&config("openai", &url, json!({})), &tools()).await;
        match answer {
            Err(AgentError::Provider(ProviderError::Malformed(m))) => {
                assert!(m.contains(expect), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.seen.lock().unwrap().len(),
            1,
            "a malformed answer is not retried"
        );
    }
}

#[tokio::test]
async fn a_hanging_provider_ends_at_the_deadline() {
    let (_, url) = fake("/chat/completions", vec![Answer::Hang]).await;
    let (answer, _) = run(
        &config("openai", &url, json!({"deadline_seconds": 1})),
        &ToolBox::default(),
    )
    .await;
    assert_eq!(answer, Err(AgentError::Deadline(1)));
}

#[tokio::test]
async fn max_turns_bounds_a_model_that_never_answers() {
    let call = openai_calls(&[("c", "prometheus_query", json!({"query": "up"}))]);
    let (f, url) = fake("/chat/completions", vec![call.clone(), call.clone(), call]).await;
    let (answer, t) = run(&config("openai", &url, json!({"max_turns": 2})), &tools()).await;
    assert_eq!(answer, Err(AgentError::MaxTurns(2)));
    assert_eq!((f.seen.lock().unwrap().len(), t.turns), (2, 2));
    assert_eq!(t.usage.input_tokens, 200, "usage counts every turn");
}

#[tokio::test]
async fn a_tool_the_team_did_not_enable_is_refused_to_the_model() {
    let (f, url) = fake(
        "/chat/completions",
        vec![
            openai_calls(&[("c1", "kubernetes_delete", json!({"query": "pods"}))]),
            openai_text("I cannot delete pods."),
        ],
    )
    .await;
    let (answer, t) = run(&config("openai", &url, json!({})), &tools()).await;
    assert_eq!(answer.unwrap(), "I cannot delete pods.");
    assert!(
        matches!(&t.steps[1], Step::Tool { error: true, name, .. } if name == "kubernetes_delete")
    );
    let fed_back = &f.seen.lock().unwrap()[1].1["messages"][3]["content"];
    assert!(
        fed_back.as_str().unwrap().contains("no tool named"),
        "{fed_back}"
    );
}

#[tokio::test]
async fn the_days_token_budget_stops_the_loop_between_turns() {
    let call = openai_calls(&[("c", "prometheus_query", json!({"query": "up"}))]);
    let (f, url) = fake("/chat/completions", vec![call.clone(), call.clone(), call]).await;
    let mut cfg = config("openai", &url, json!({}));
    cfg.token_budget = Some((150, "team".into()));
    let (answer, t) = run(&cfg, &tools()).await;
    assert_eq!(
        answer,
        Err(AgentError::Budget {
            whose: "team".into(),
            used: 240,
            allowed: 150
        })
    );
    // The first turn (120 tokens) fit; the second passed the budget; no third was asked.
    assert_eq!((f.seen.lock().unwrap().len(), t.turns), (2, 2));
}
