//! W3C traceparent: a webhook's trace reaches the agent-runner through the inbox and the
//! dispatcher (work that happens after the request has been answered).

mod stack;

use reqwest::Method;
use serde_json::json;
use stack::{Options, Stack, eventually};
use switchyard_common::trace::TraceContext;
use switchyard_orchestrator::sources::verify::sign::hmac_hex;

async fn webhook_trace_reaches_the_runner(b: switchyard_common::db::Backend) {
    let s = Stack::start(
        b,
        Options {
            start_runner: false,
            ..Options::default()
        },
    )
    .await;
    let (seen, _) = stack::fake_runner(s.runner_addr).await;
    s.acme_checkout().await;
    let pd = s
        .must(
            Method::POST,
            format!("{}/api/v1/orgs/acme/integrations", s.orch),
            Some(json!({"source": "pagerduty", "name": "PD", "secrets": ["trace-secret-0001"]})),
        )
        .await;
    let path = format!("/webhooks/pagerduty/{}", pd["id"].as_str().unwrap());

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut sent = Vec::new();
    for (i, tp) in [(0, Some(incoming)), (1, None)] {
        let body = json!({"event": {"id": format!("e{i}"), "event_type": "incident.triggered", "data": {"id": format!("INC{i}"), "service": {"id": "PSVC1"}}}}).to_string();
        let mut h = vec![
            (
                "x-pagerduty-signature",
                format!("v1={}", hmac_hex(b"trace-secret-0001", &[body.as_bytes()])),
            ),
            ("x-webhook-id", format!("t-{i}")),
            ("content-type", "application/json".to_owned()),
        ];
        if let Some(tp) = tp {
            h.push(("traceparent", tp.to_owned()));
        }
        let (st, v, headers) = s.webhook(&path, &h, body.as_bytes()).await;
        assert_eq!(st, 200, "{v}");
        let answered = TraceContext::parse(headers["traceparent"].to_str().unwrap()).unwrap();
        sent.push((v["event_id"].as_str().unwrap().to_owned(), answered));
    }
    // The caller's trace is continued, not replaced.
    assert_eq!(sent[0].1.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    eventually("both events reached the runner", 15, || async {
        seen.lock().unwrap().len() == 2
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    for (event_id, answered) in &sent {
        let (_, tp) = seen
            .iter()
            .find(|(k, _)| k == event_id)
            .expect("dispatched");
        let got = TraceContext::parse(tp).expect("a valid traceparent reached the runner");
        assert_eq!(
            got.trace_id, answered.trace_id,
            "event {event_id}: the webhook's trace reaches the runner"
        );
        assert_ne!(got.span_id, answered.span_id, "as a child span");
    }
}

switchyard_common::on_both_backends!(webhook_trace_reaches_the_runner);
