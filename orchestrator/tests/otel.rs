//! OpenTelemetry export against an in-process OTLP/HTTP receiver (protobuf, decoded with the
//! protocol's own types): one Slack question is one trace, from the orchestrator's webhook request
//! through the inbox and dispatch to the agent-runner, its run, each model turn and tool call (one
//! of which calls back into the orchestrator), and the reply; each service exports under its own
//! `service.name`.

mod stack;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use reqwest::Method;
use serde_json::{Value, json};
use stack::agent::{ask_is_checkout_down, fake_model_and_prometheus, slack_agent_team};
use stack::{Options, Stack, eventually};
use switchyard_common::db::Backend;

/// A span as received: its service, ids (hex), name, kind and attributes.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    kind: i32,
    attrs: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<Got>>>;

async fn receiver() -> (Received, String) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                            Any::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for sp in ss.spans {
                            let attrs = sp
                                .attributes
                                .iter()
                                .map(|a| {
                                    let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                                        Some(Any::StringValue(s)) => s.clone(),
                                        Some(Any::IntValue(i)) => i.to_string(),
                                        other => format!("{other:?}"),
                                    };
                                    (a.key.clone(), v)
                                })
                                .collect();
                            sink.lock().unwrap().push(Got {
                                service: service.clone(),
                                trace: hex(&sp.trace_id),
                                id: hex(&sp.span_id),
                                parent: hex(&sp.parent_span_id),
                                name: sp.name,
                                kind: sp.kind,
                                attrs,
                            });
                        }
                    }
                }
                // An empty ExportTraceServiceResponse.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (got, url)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slack_question_is_one_trace_from_the_webhook_to_the_reply() {
    let (got, endpoint) = receiver().await;
    assert!(switchyard_common::otel::init_to(&endpoint));
    let s = Stack::start(Backend::Sqlite, Options::default()).await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let (model, prom, _) = fake_model_and_prometheus(gate).await;
    slack_agent_team(&s, json!({
        "agent": {"provider": "openai", "endpoint": model, "model": "gpt-test", "api_key": {"secret": "llm"},
            "tools": ["prometheus_query", "switchyard_events"], "toolsets": {"prometheus": {"url": prom}}}
    }))
    .await;
    let headers = ask_is_checkout_down(&s, "EvTrace1", "1700000000.000300", &open).await;
    let trace = headers["traceparent"].to_str().unwrap()[3..35].to_owned();
    eventually("the answer is posted in the thread", 20, || async {
        !s.slack.lock().unwrap().is_empty()
    })
    .await;

    // Everything the trace should hold has reached the receiver (the batch processors export on
    // a timer; flush them until it has).
    let named = |name: &str| -> Option<Got> {
        got.lock()
            .unwrap()
            .iter()
            .find(|g| g.trace == trace && g.name == name)
            .cloned()
    };
    let wanted = [
        "POST /webhooks/slack/events",
        "inbox.store",
        "dispatch",
        "call agent-runner",
        "POST /api/v1/run/batch",
        "agent.run",
        "model.turn",
        "tool.prometheus_query",
        "tool.switchyard_events",
        "GET /api/v1/internal/orgs/{org}/teams/{team}/events",
        "reply",
    ];
    eventually("the whole trace is exported", 30, || async {
        tokio::task::spawn_blocking(switchyard_common::otel::flush)
            .await
            .unwrap();
        wanted.iter().all(|n| named(n).is_some())
    })
    .await;
    let span = |name: &str| named(name).unwrap();
    let child_of = |child: &str, parent: &str| {
        let (c, p) = (span(child), span(parent));
        assert_eq!(
            c.parent, p.id,
            "{child} is a child of {parent}: {c:?} / {p:?}"
        );
    };

    let webhook = span("POST /webhooks/slack/events");
    assert_eq!(webhook.parent, "", "the webhook starts the trace");
    assert_eq!(webhook.kind, SpanKind::Server as i32);
    assert_eq!(webhook.service, "switchyard-orchestrator");
    assert_eq!(webhook.attrs["http.response.status_code"], "200");
    child_of("inbox.store", "POST /webhooks/slack/events");
    child_of("dispatch", "inbox.store");
    assert_eq!(span("dispatch").attrs["switchyard.status"], "dispatched");
    child_of("call agent-runner", "dispatch");
    assert_eq!(span("call agent-runner").kind, SpanKind::Client as i32);
    // The run was started in a batch call (the round's runs together); its part of that call
    // is a span of its own trace.
    child_of("POST /api/v1/run/batch", "call agent-runner");
    assert_eq!(
        span("POST /api/v1/run/batch").service,
        "switchyard-agent-runner"
    );
    assert_eq!(span("POST /api/v1/run/batch").kind, SpanKind::Server as i32);
    child_of("agent.run", "POST /api/v1/run/batch");
    let run = span("agent.run");
    let turns: Vec<Got> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|g| g.trace == trace && g.name == "model.turn")
        .cloned()
        .collect();
    assert_eq!(turns.len(), 2, "a turn asking for tools, then the answer");
    assert!(turns.iter().all(|t| t.parent == run.id));
    assert_eq!(
        turns
            .iter()
            .map(|t| t.attrs["gen_ai.usage.input_tokens"].clone())
            .collect::<Vec<_>>(),
        ["300", "420"]
    );
    child_of("tool.prometheus_query", "agent.run");
    child_of("tool.switchyard_events", "agent.run");
    // The tool's call back into the orchestrator continues the same trace.
    let back = span("GET /api/v1/internal/orgs/{org}/teams/{team}/events");
    assert_eq!(back.service, "switchyard-orchestrator");
    let call = got
        .lock()
        .unwrap()
        .iter()
        .find(|g| g.id == back.parent)
        .cloned()
        .expect("the runner's client span of that call");
    assert_eq!(call.parent, span("tool.switchyard_events").id);
    child_of("reply", "agent.run");
    // The config-service answered the runner within the same trace too.
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .any(|g| g.trace == trace && g.service == "switchyard-config-service"),
        "config-service spans in the trace"
    );
    let run_row: Value = s
        .must(
            Method::GET,
            format!("{}/api/v1/orgs/acme/agent-runs", s.cs),
            None,
        )
        .await["items"][0]
        .clone();
    assert_eq!(run.attrs["switchyard.run"], run_row["id"].as_str().unwrap());
}
