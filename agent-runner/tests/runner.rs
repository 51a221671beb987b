//! The agent-runner against a real config-service (SQLite): idempotent runs, recorded outcomes,
//! and who may read a run.

use serde_json::{Value, json};
use switchyard_common::auth::ServiceKey;
use switchyard_common::db::Backend;
use switchyard_common::db::testing::TestDb;

const ADMIN: &str = "runner-test-admin-token-0123456789";

/// A config-service on SQLite; answers its URL (keep the database alive as long as it runs).
async fn config_service(key: &ServiceKey) -> (String, TestDb) {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let cs_state = switchyard_config_service::AppState::new(
        switchyard_config_service::store::Store::new(db.connect().await.unwrap()),
        Some(ADMIN.into()),
        key.clone(),
        switchyard_common::crypto::Keyring::parse(
            &switchyard_common::crypto::Keyring::generate_spec("t"),
        )
        .unwrap(),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cs = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(switchyard_config_service::serve(
        l,
        cs_state,
        std::future::pending(),
    ));
    (cs, db)
}

/// An agent-runner whose runs hold leases of `lease_seconds`; answers its URL.
async fn agent_runner(cs: &str, key: &ServiceKey, lease_seconds: u64) -> String {
    let replies = switchyard_agent_runner::ReplySettings {
        slack_api_base: "http://127.0.0.1:9".into(),
        github_api_base: "http://127.0.0.1:9".into(),
        pagerduty_api_base: "http://127.0.0.1:9".into(),
        run_deadline_seconds: 10,
        run_lease_seconds: lease_seconds,
        max_run_attempts: 3,
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runner = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(switchyard_agent_runner::serve(
        l,
        switchyard_agent_runner::AppState::new(cs, replies, Some(ADMIN.into()), key.clone()),
        std::future::pending(),
    ));
    runner
}

/// Reads the run at `url` (as the platform admin) until it has ended, for at most 10 s; answers
/// the last state read.
async fn finished(http: &reqwest::Client, url: &str) -> Value {
    let mut run = Value::Null;
    for _ in 0..400 {
        run = http
            .get(url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            run["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    run
}

/// Org `acme` with the `teams`, and `layer` (if any) as the config of the last of them (as the
/// platform admin).
async fn acme_with_teams(http: &reqwest::Client, cs: &str, teams: &[&str], layer: Option<Value>) {
    let call = |m: reqwest::Method, url: String, body: Value| {
        http.request(m, url)
            .bearer_auth(ADMIN)
            .header("if-match", "\"v0\"")
            .json(&body)
            .send()
    };
    call(
        reqwest::Method::POST,
        format!("{cs}/api/v1/orgs"),
        json!({"id": "acme", "name": "Acme"}),
    )
    .await
    .unwrap();
    for t in teams {
        call(
            reqwest::Method::POST,
            format!("{cs}/api/v1/orgs/acme/nodes"),
            json!({"id": t, "kind": "team", "name": t}),
        )
        .await
        .unwrap();
    }
    let Some(layer) = layer else { return };
    let last = teams.last().expect("a team");
    let r = call(
        reqwest::Method::PUT,
        format!("{cs}/api/v1/orgs/acme/nodes/{last}/config/layer"),
        layer,
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_idempotent_recorded_and_scoped() {
    let key = ServiceKey::generate();
    let (cs, _db) = config_service(&key).await;
    let runner = agent_runner(&cs, &key, 30).await;

    let http = reqwest::Client::new();
    acme_with_teams(&http, &cs, &["checkout", "search"], None).await;
    let jwt = key.mint("orchestrator", "agent-runner", 60);
    let req = json!({"org_id": "acme", "team_id": "checkout", "trigger": {"source": "pagerduty", "event_type": "incident.triggered"}, "reply_to": null, "idempotency_key": "event-1"});
    let first: Value = http
        .post(format!("{runner}/api/v1/run"))
        .bearer_auth(&jwt)
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second = http
        .post(format!("{runner}/api/v1/run"))
        .bearer_auth(&jwt)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status().as_u16(), 202);
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        (first["started"].as_bool(), second["started"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(first["run_id"], second["run_id"]);
    let id = first["run_id"].as_str().unwrap();

    // The run ends succeeded, with the offline provider's summary.
    let mut run = finished(&http, &format!("{runner}/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["summary"]
            .as_str()
            .unwrap()
            .contains("pagerduty incident.triggered for team checkout")
    );

    // Its team reads it; another team, and a user token calling the run endpoint, do not.
    let token = |node: &'static str| {
        let http = http.clone();
        let cs = cs.clone();
        async move {
            let v: Value = http
                .post(format!("{cs}/api/v1/orgs/acme/nodes/{node}/tokens"))
                .bearer_auth(ADMIN)
                .json(&json!({"label": "t"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["secret"].as_str().unwrap().to_owned()
        }
    };
    let own = token("checkout").await;
    let other = token("search").await;
    assert_eq!(
        http.get(format!("{runner}/api/v1/runs/{id}"))
            .bearer_auth(&own)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http.get(format!("{runner}/api/v1/runs/{id}"))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        http.post(format!("{runner}/api/v1/run"))
            .bearer_auth(&own)
            .json(&req)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        http.post(format!("{runner}/api/v1/run"))
            .json(&req)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );

    // A run for a team whose reply target cannot be reached fails with the reason recorded.
    let req2 = json!({"org_id": "acme", "team_id": "checkout", "trigger": {}, "reply_to": {"kind": "slack", "channel": "C1"}, "idempotency_key": "event-2"});
    let r: Value = http
        .post(format!("{runner}/api/v1/run"))
        .bearer_auth(&jwt)
        .json(&req2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id2 = r["run_id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        run = http
            .get(format!("{runner}/api/v1/runs/{id2}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"].as_str().unwrap().contains("bot token"),
        "{run}"
    );
}

/// A run whose agent-runner died (its lease lapsed, status `running`) is resumed by another
/// runner and finishes: nothing stays `running`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_runners_run_is_resumed() {
    let key = ServiceKey::generate();
    let (cs, _db) = config_service(&key).await;
    let http = reqwest::Client::new();
    for (url, body) in [
        (
            format!("{cs}/api/v1/orgs"),
            json!({"id": "acme", "name": "Acme"}),
        ),
        (
            format!("{cs}/api/v1/orgs/acme/nodes"),
            json!({"id": "checkout", "kind": "team", "name": "Checkout"}),
        ),
    ] {
        let r = http
            .post(url)
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    // What a runner leaves behind when it is killed mid-run.
    let jwt = key.mint("agent-runner", "config-service", 60);
    let run: Value = http
        .post(format!("{cs}/api/v1/internal/agent-runs"))
        .bearer_auth(&jwt)
        .json(&json!({"org_id": "acme", "team_id": "checkout", "trigger": {"source": "pagerduty", "event_type": "incident.triggered"},
            "idempotency_key": "event-9", "runner": "agent-runner-killed", "lease_ms": 100, "deadline_seconds": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_owned();
    let r = http
        .patch(format!("{cs}/api/v1/internal/agent-runs/{id}"))
        .bearer_auth(&jwt)
        .json(&json!({"status": "running"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // The orchestrator may not record runs (only the agent-runner does).
    let r = http
        .post(format!("{cs}/api/v1/internal/agent-runs/recover"))
        .bearer_auth(key.mint("orchestrator", "config-service", 60))
        .json(&json!({"runner": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let _runner = agent_runner(&cs, &key, 1).await;
    let seen = finished(&http, &format!("{cs}/api/v1/orgs/acme/agent-runs/{id}")).await;
    assert_eq!(seen["status"], "succeeded", "{seen}");
    assert_eq!(seen["attempts"], 2);
    assert!(seen["lease_owner"].is_null());
}

/// The agent-runner runs the same middleware as the other services: a request id on every
/// response, its matched route in the span, problem+json for unknown paths.
#[tokio::test]
async fn the_agent_runner_runs_the_standard_stack() {
    use tower::ServiceExt;
    let state = switchyard_agent_runner::AppState::new(
        "http://127.0.0.1:9",
        switchyard_agent_runner::ReplySettings {
            slack_api_base: "http://127.0.0.1:9".into(),
            github_api_base: "http://127.0.0.1:9".into(),
            pagerduty_api_base: "http://127.0.0.1:9".into(),
            run_deadline_seconds: 10,
            run_lease_seconds: 30,
            max_run_attempts: 3,
        },
        Some(ADMIN.into()),
        ServiceKey::generate().only("agent-runner"),
    );
    let app = switchyard_agent_runner::app(state);
    let get = |path: &str| {
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let ok = app.clone().oneshot(get("/healthz")).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.headers().contains_key("x-request-id"));
    let mut asked = get("/nowhere");
    asked
        .headers_mut()
        .insert("x-request-id", "req-123".parse().unwrap());
    let missing = app.oneshot(asked).await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(missing.headers()["x-request-id"], "req-123");
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}

/// A fake OpenAI-compatible server answering `answer`; answers its URL and the `authorization`
/// headers it received.
async fn fake_model(
    answer: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |h: axum::http::HeaderMap| {
            let record = record.clone();
            async move {
                let auth = h
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                record.lock().unwrap().push(auth.to_owned());
                axum::Json(
                    json!({"choices": [{"message": {"role": "assistant", "content": answer}}],
                    "usage": {"prompt_tokens": 42, "completion_tokens": 7}}),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_on_a_model_provider_gets_the_models_answer() {
    let key = ServiceKey::generate();
    let (cs, _db) = config_service(&key).await;
    let runner = agent_runner(&cs, &key, 30).await;
    let (model, seen) =
        fake_model("The 14:02 deploy of checkout-api broke the payment client.").await;
    let http = reqwest::Client::new();
    let call = |m: reqwest::Method, url: String, body: Value| {
        http.request(m, url)
            .bearer_auth(ADMIN)
            .header("if-match", "\"v0\"")
            .json(&body)
            .send()
    };
    let ok = |r: reqwest::Response| {
        assert!(r.status().is_success(), "{}", r.status());
    };
    ok(call(
        reqwest::Method::POST,
        format!("{cs}/api/v1/orgs"),
        json!({"id": "acme", "name": "Acme"}),
    )
    .await
    .unwrap());
    for t in ["checkout", "search"] {
        ok(call(
            reqwest::Method::POST,
            format!("{cs}/api/v1/orgs/acme/nodes"),
            json!({"id": t, "kind": "team", "name": t}),
        )
        .await
        .unwrap());
    }
    ok(call(
        reqwest::Method::PUT,
        format!("{cs}/api/v1/orgs/acme/secrets/llm"),
        json!({"value": "sk-live-test-0123"}),
    )
    .await
    .unwrap());
    for (team, secret) in [("checkout", "llm"), ("search", "nokey")] {
        let layer = json!({"agent": {"provider": "openai", "endpoint": model, "model": "gpt-test", "api_key": {"secret": secret}}});
        ok(call(
            reqwest::Method::PUT,
            format!("{cs}/api/v1/orgs/acme/nodes/{team}/config/layer"),
            layer,
        )
        .await
        .unwrap());
    }
    let jwt = key.mint("orchestrator", "agent-runner", 60);
    let mut runs = Vec::new();
    for team in ["checkout", "search"] {
        let req = json!({"org_id": "acme", "team_id": team, "trigger": {"source": "pagerduty", "event_type": "incident.triggered"}, "reply_to": null, "idempotency_key": format!("event-{team}")});
        let v: Value = http
            .post(format!("{runner}/api/v1/run"))
            .bearer_auth(&jwt)
            .json(&req)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        runs.push(v["run_id"].as_str().unwrap().to_owned());
    }
    let run = finished(&http, &format!("{runner}/api/v1/runs/{}", runs[0])).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["summary"],
        "The 14:02 deploy of checkout-api broke the payment client."
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["Bearer sk-live-test-0123"]
    );
    // A key the org does not have fails the run, saying which; the model is never called.
    let run = finished(&http, &format!("{runner}/api/v1/runs/{}", runs[1])).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("nokey"), "{run}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Sets its flag when dropped: the handler holding it was abandoned (the client went away).
struct DroppedFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for DroppedFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_it_and_aborts_the_model_call() {
    let key = ServiceKey::generate();
    let (cs, _db) = config_service(&key).await;
    // A one-second lease: the runner renews every third of a second.
    let runner = agent_runner(&cs, &key, 1).await;
    // A model that never answers, and notices when its caller gives up.
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let aborted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (c, a) = (called.clone(), aborted.clone());
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let (c, a) = (c.clone(), a.clone());
            async move {
                c.store(true, std::sync::atomic::Ordering::SeqCst);
                let _flag = DroppedFlag(a);
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                "never"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let http = reqwest::Client::new();
    let admin = |m: reqwest::Method, url: String, body: Option<Value>| {
        let mut r = http
            .request(m, url)
            .bearer_auth(ADMIN)
            .header("if-match", "\"v0\"");
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    admin(
        reqwest::Method::POST,
        format!("{cs}/api/v1/orgs"),
        Some(json!({"id": "acme", "name": "Acme"})),
    )
    .await
    .unwrap();
    admin(
        reqwest::Method::POST,
        format!("{cs}/api/v1/orgs/acme/nodes"),
        Some(json!({"id": "checkout", "kind": "team", "name": "c"})),
    )
    .await
    .unwrap();
    let layer = json!({"agent": {"provider": "openai", "endpoint": model, "model": "slow"}});
    let r = admin(
        reqwest::Method::PUT,
        format!("{cs}/api/v1/orgs/acme/nodes/checkout/config/layer"),
        Some(layer),
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    let jwt = key.mint("orchestrator", "agent-runner", 60);
    let req = json!({"org_id": "acme", "team_id": "checkout", "trigger": {"source": "pagerduty"}, "reply_to": null, "idempotency_key": "slow-1"});
    let v: Value = http
        .post(format!("{runner}/api/v1/run"))
        .bearer_auth(&jwt)
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["run_id"].as_str().unwrap().to_owned();
    // Wait (bounded) for the model call to be in flight.
    for _ in 0..200 {
        if called.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        called.load(std::sync::atomic::Ordering::SeqCst),
        "the model was never called"
    );

    let cancel = format!("{cs}/api/v1/orgs/acme/agent-runs/{id}/cancel");
    let r = admin(reqwest::Method::POST, cancel.clone(), None)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error"], "cancelled by platform-admin");
    // The runner loses its lease at its next renewal and drops the model call.
    for _ in 0..200 {
        if aborted.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        aborted.load(std::sync::atomic::Ordering::SeqCst),
        "the model call was not aborted"
    );
    // The run stays cancelled; cancelling again is a conflict.
    let run = finished(&http, &format!("{runner}/api/v1/runs/{id}")).await;
    assert_eq!(run["status"], "cancelled");
    let again = admin(reqwest::Method::POST, cancel, None).await.unwrap();
    assert_eq!(again.status().as_u16(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_over_its_daily_token_budget_runs_no_more() {
    let key = ServiceKey::generate();
    let (cs, _db) = config_service(&key).await;
    let runner = agent_runner(&cs, &key, 30).await;
    // Each answer costs 49 tokens.
    let (model, seen) = fake_model("Disk full on db-1.").await;
    let http = reqwest::Client::new();
    let layer = json!({"agent": {"provider": "openai", "endpoint": model, "model": "m"}, "quotas": {"tokens_per_day": 40}});
    acme_with_teams(&http, &cs, &["checkout"], Some(layer)).await;
    let jwt = key.mint("orchestrator", "agent-runner", 60);
    let mut ended = Vec::new();
    for n in 0..2 {
        let req = json!({"org_id": "acme", "team_id": "checkout", "trigger": {"source": "grafana"}, "reply_to": null, "idempotency_key": format!("b-{n}")});
        let v: Value = http
            .post(format!("{runner}/api/v1/run"))
            .bearer_auth(&jwt)
            .json(&req)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ended.push(
            finished(
                &http,
                &format!("{runner}/api/v1/runs/{}", v["run_id"].as_str().unwrap()),
            )
            .await,
        );
    }
    // Nothing was used yet: the first run starts (and, one turn long, finishes past the budget).
    assert_eq!(ended[0]["status"], "succeeded", "{}", ended[0]);
    // Now the day's 40 tokens are used up (49): the next run does not start, and says why.
    assert_eq!(ended[1]["status"], "failed");
    let why = ended[1]["error"].as_str().unwrap();
    assert!(
        why.contains("team's tokens_per_day budget (40) is used up today"),
        "{why}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the model was not called for the second run"
    );
}

/// A batch starts each of its runs as `POST /api/v1/run` would and answers each, in order: a key
/// seen before answers its run without starting it again, a team at its concurrent-run quota gets
/// 429 with when to come back while the batch's other runs start, and the new runs finish. The
/// batch's size and its caller are checked as the single endpoint's caller is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_starts_each_run_as_its_own_call_would() {
    let key = ServiceKey::generate();
    let (cs, _db) = config_service(&key).await;
    let runner = agent_runner(&cs, &key, 30).await;
    // A model that takes the call and never answers: a run of "search" holds its one slot.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model = format!("http://{}/v1", silent.local_addr().unwrap());
    let http = reqwest::Client::new();
    let layer = json!({"agent": {"provider": "openai", "endpoint": model, "model": "m"}, "quotas": {"concurrent_runs": 1}});
    acme_with_teams(&http, &cs, &["checkout", "search"], Some(layer)).await;
    let jwt = key.mint("orchestrator", "agent-runner", 60);
    let run = |team: &str, key: &str| json!({"org_id": "acme", "team_id": team, "trigger": {"source": "grafana", "event_type": "alert.firing"}, "reply_to": null, "idempotency_key": key});
    let post = |path: &str, token: &str, body: Value| {
        http.post(format!("{runner}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let single = |body: Value| async {
        let r = post("/api/v1/run", &jwt, body).await.unwrap();
        assert_eq!(r.status().as_u16(), 202);
        r.json::<Value>().await.unwrap()
    };
    let seen = single(run("checkout", "e-1")).await;
    let holding = single(run("search", "s-1")).await;
    assert_eq!(holding["started"], true);

    let batch = json!({"runs": [
        {"run": run("checkout", "e-1")},
        {"run": run("checkout", "e-2"), "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"run": run("search", "s-2")},
        {"run": run("checkout", "e-3")},
    ]});
    let r = post("/api/v1/run/batch", &jwt, batch).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let results = r.json::<Value>().await.unwrap()["results"].clone();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(
        (
            &results[0]["status"],
            &results[0]["run_id"],
            &results[0]["started"]
        ),
        (&json!(202), &seen["run_id"], &json!(false))
    );
    assert_eq!(
        (&results[2]["status"], &results[2]["retry_after"]),
        (&json!(429), &json!(5)),
        "{results:?}"
    );
    assert!(
        results[2]["detail"]
            .as_str()
            .unwrap()
            .contains("team search is at its 1 concurrent runs"),
        "{results:?}"
    );
    for (started, key) in [(&results[1], "e-2"), (&results[3], "e-3")] {
        assert_eq!(
            (&started["status"], &started["started"]),
            (&json!(202), &json!(true))
        );
        let id = started["run_id"].as_str().unwrap();
        assert_ne!(Some(id), seen["run_id"].as_str());
        let ended = finished(&http, &format!("{runner}/api/v1/runs/{id}")).await;
        assert_eq!(ended["status"], "succeeded", "{ended}");
        assert_eq!(ended["idempotency_key"], key, "{ended}");
    }
    assert_ne!(results[1]["run_id"], results[3]["run_id"]);

    // No runs, or more than 256: 400. Another caller than the orchestrator: 403; no token: 401.
    for n in [0, 257] {
        let runs: Vec<Value> = (0..n)
            .map(|i| json!({"run": run("checkout", &format!("x-{i}"))}))
            .collect();
        let r = post("/api/v1/run/batch", &jwt, json!({ "runs": runs }))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{n} runs");
    }
    let one = json!({"runs": [{"run": run("checkout", "e-9")}]});
    let as_runner = key.mint("agent-runner", "agent-runner", 60);
    let r = post("/api/v1/run/batch", &as_runner, one.clone())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(format!("{runner}/api/v1/run/batch"))
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
