//! `switchyard loadgen-runs`: many concurrent agent runs against a fake model, to measure the
//! agent-runner's own cost.
//!
//! It serves a fake OpenAI-compatible model (each answer after `--provider-ms`; a run's first turn
//! asks for two `prometheus_query` calls, its second answers) and a fake Prometheus, points a team
//! at them, asks the agent-runner for `--runs` runs at once (as the orchestrator does, with its
//! service JWT), and waits until the config-service has every run succeeded. It reports runs per
//! second and the runner's own time:
//! - per model turn, as the runner's transcripts record it (`runner_us`: the turn without waiting
//!   on the model's endpoint or the tool calls);
//! - per turn as the fake model sees it: from its answer leaving to the next request of the same
//!   run arriving (the tool calls, the loop, building the request, and any wait for a CPU on a
//!   shared machine);
//! - before the first turn: from asking for the run to its first model request (accepting the
//!   run, reading config, budgets and secrets from the config-service);

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use serde_json::{Value, json};
use switchyard_api::runs::RunRequest;
use switchyard_common::auth::ServiceKey;
use switchyard_common::clients::RunnerClient;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenRunsArgs {
    /// The agent-runner.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub runner: String,
    /// The config-service (to configure the team and count finished runs).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub config_service: String,
    /// A platform admin token.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// The orchestrator's private key (the runner accepts runs from the orchestrator only).
    #[arg(long, env = "ORCHESTRATOR_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: String,
    /// Runs asked for at once.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// How long the fake model takes to answer each turn.
    #[arg(long, default_value_t = 200)]
    pub provider_ms: u64,
}

#[derive(Default)]
struct Seen {
    /// Per run: (request arrived, answer sent) of each turn.
    turns: HashMap<usize, Vec<(Instant, Instant)>>,
}

type Shared = Arc<Mutex<Seen>>;

/// The run number in a request's first user message (`bench:<n>`).
fn run_of(body: &Value) -> Option<usize> {
    let first = body["messages"]
        .as_array()?
        .iter()
        .find(|m| m["role"] == "user")?["content"]
        .as_str()?;
    let at = first.find("bench:")? + 6;
    first[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

async fn serve(app: axum::Router) -> anyhow::Result<String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", l.local_addr()?);
    let l = switchyard_common::http::no_delay(l);
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok(url)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn describe(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0.0)
    );
}

pub async fn run(args: LoadgenRunsArgs) -> anyhow::Result<()> {
    let seen: Shared = Arc::default();
    let delay = Duration::from_millis(args.provider_ms);
    let model = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |body: axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let arrived = Instant::now();
                    tokio::time::sleep(delay).await;
                    let fed = body["messages"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
                    if let Some(n) = run_of(&body) {
                        seen.lock()
                            .unwrap()
                            .turns
                            .entry(n)
                            .or_default()
                            .push((arrived, Instant::now()));
                    }
                    axum::Json(if fed {
                        json!({"choices": [{"message": {"content": "checkout is down: up is 0 on both instances."}}],
                            "usage": {"prompt_tokens": 420, "completion_tokens": 15}})
                    } else {
                        json!({"choices": [{"message": {"content": null, "tool_calls": [
                            {"id": "q1", "type": "function", "function": {"name": "prometheus_query", "arguments": "{\"query\":\"up{instance=\\\"a\\\"}\"}"}},
                            {"id": "q2", "type": "function", "function": {"name": "prometheus_query", "arguments": "{\"query\":\"up{instance=\\\"b\\\"}\"}"}}]}}],
                            "usage": {"prompt_tokens": 300, "completion_tokens": 20}})
                    })
                }
            }),
        )
    };
    let model_url = format!("{}/v1", serve(model).await?);
    let prom_url = serve(axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(|| async {
            axum::Json(json!({"status": "success", "data": {"resultType": "vector",
                "result": [{"metric": {"job": "checkout"}, "value": [1700000000, "0"]}]}}))
        }),
    ))
    .await?;

    // The team: its agent on the fake model with the Prometheus tool, room for every run at once.
    let http = reqwest::Client::new();
    let cs = args.config_service.trim_end_matches('/');
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(&args.admin_token);
    let org = format!("bench{}", std::process::id());
    for (method, url, body) in [
        (
            reqwest::Method::POST,
            format!("{cs}/api/v1/orgs"),
            json!({"id": org, "name": "Bench"}),
        ),
        (
            reqwest::Method::POST,
            format!("{cs}/api/v1/orgs/{org}/nodes"),
            json!({"id": "checkout", "kind": "team", "name": "Checkout"}),
        ),
        (
            reqwest::Method::PUT,
            format!("{cs}/api/v1/orgs/{org}/secrets/llm"),
            json!({"value": "sk-bench"}),
        ),
    ] {
        let resp = admin(http.request(method, &url)).json(&body).send().await?;
        anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.text().await?);
    }
    let layer = json!({"quotas": {"concurrent_runs": args.runs},
        "agent": {"provider": "openai", "endpoint": model_url, "model": "bench", "api_key": {"secret": "llm"},
            "max_turns": 4, "tools": ["prometheus_query"], "toolsets": {"prometheus": {"url": prom_url}}}});
    let resp = admin(http.put(format!(
        "{cs}/api/v1/orgs/{org}/nodes/checkout/config/layer"
    )))
    .header("if-match", "\"v0\"")
    .json(&layer)
    .send()
    .await?;
    anyhow::ensure!(resp.status().is_success(), "layer: {}", resp.text().await?);

    let der = base64::engine::general_purpose::STANDARD
        .decode(args.signing_key.trim())
        .context("the orchestrator's signing key is not base64")?;
    let key = ServiceKey::default()
        .with_signer("orchestrator", der)
        .map_err(anyhow::Error::msg)?;
    let runner = RunnerClient::new(&args.runner, key);

    println!(
        "== {} concurrent runs, model answering in {} ms, 2 tool calls per run ==",
        args.runs, args.provider_ms
    );
    let started = Instant::now();
    let mut asked = Vec::with_capacity(args.runs);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..args.runs {
        let runner = runner.clone();
        let req = RunRequest {
            org_id: org.clone(),
            team_id: "checkout".into(),
            trigger: json!({"source": "alertmanager", "event_type": "firing", "correlation_key": format!("bench:{n}"),
                "payload": {"status": "firing", "commonLabels": {"alertname": "CheckoutDown"}}}),
            reply_to: None,
            idempotency_key: format!("bench-{org}-{n}"),
        };
        asked.push(Instant::now());
        tasks.spawn(async move { (n, runner.run(&req).await) });
    }
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        if let (n, Err(e)) = r? {
            refused += 1;
            if refused <= 3 {
                eprintln!("run {n} refused: {e}");
            }
        }
    }
    let accepted_in = started.elapsed();
    // Wait until the config-service has no run left unfinished (one small read per poll, so that
    // waiting costs the machine next to nothing), then count the outcomes once.
    let deadline = Instant::now() + Duration::from_secs(120);
    let unfinished = async |status: &str| -> anyhow::Result<bool> {
        let url = format!("{cs}/api/v1/orgs/{org}/agent-runs?status={status}&limit=1");
        let page: Value = admin(http.get(&url)).send().await?.json().await?;
        Ok(page["items"].as_array().is_some_and(|a| !a.is_empty()))
    };
    while (unfinished("running").await? || unfinished("queued").await?) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let (mut done, mut failed, mut cursor) = (0usize, 0usize, None::<String>);
    // The runner's own time per model turn, and each tool call's, as its transcripts record them.
    let (mut own, mut tool_ms) = (Vec::new(), Vec::new());
    loop {
        let mut url = format!("{cs}/api/v1/orgs/{org}/agent-runs?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = admin(http.get(&url)).send().await?.json().await?;
        for r in page["items"].as_array().into_iter().flatten() {
            match r["status"].as_str() {
                Some("succeeded") => done += 1,
                Some("failed") | Some("cancelled") => failed += 1,
                _ => {}
            }
            let steps = r.pointer("/transcript/steps").and_then(Value::as_array);
            own.extend(
                steps
                    .into_iter()
                    .flatten()
                    .filter(|s| s["kind"] == "model")
                    .filter_map(|s| s["runner_us"].as_f64())
                    .map(|us| us / 1000.0),
            );
            tool_ms.extend(
                steps
                    .into_iter()
                    .flatten()
                    .filter(|s| s["kind"] == "tool")
                    .filter_map(|s| s["duration_ms"].as_f64()),
            );
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    println!(
        "accepted {} of {} in {:.2} s; {done} succeeded, {failed} failed; all finished in {:.2} s: {:.0} runs/s",
        args.runs - refused,
        args.runs,
        accepted_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
    let seen = seen.lock().unwrap();
    let mut between = Vec::new();
    let mut before = Vec::new();
    for (n, turns) in &seen.turns {
        let mut turns = turns.clone();
        turns.sort_by_key(|t| t.0);
        if let Some(first) = turns.first() {
            before.push(first.0.duration_since(asked[*n]).as_secs_f64() * 1000.0);
        }
        for w in turns.windows(2) {
            between.push(w[1].0.duration_since(w[0].1).as_secs_f64() * 1000.0);
        }
    }
    describe(
        "runner's own time per model turn (its transcripts: without waiting on the model or the tools)",
        own,
    );
    describe(
        "each tool call, from its transcript step (whole milliseconds)",
        tool_ms,
    );
    describe(
        "seen from the fake model per turn (answer sent -> next request of the run: the tool calls, the loop, and waiting for a CPU)",
        between,
    );
    describe(
        "before the first turn (run asked for -> first model request)",
        before,
    );
    anyhow::ensure!(
        refused == 0 && failed == 0 && done == args.runs,
        "not every run succeeded"
    );
    Ok(())
}
