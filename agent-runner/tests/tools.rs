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
use switchyard_agent_runner::toolsets::{self, Context, Secrets};

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

/// A run's context for org `acme`, team `payments`, without a cluster.
fn ctx(secrets: Secrets) -> Context {
    Context {
        org: "acme".into(),
        team: "payments".into(),
        secrets,
        http: reqwest::Client::new(),
        kube: None,
        events: None,
        github_api_base: "https://api.github.com".into(),
        mcp: Vec::new(),
    }
}

#[tokio::test]
async fn tools_reach_only_what_the_team_configured() {
    let (url, seen) = observability().await;
    let a = agent_section(&url, true);
    let enabled: Vec<String> = serde_json::from_value(a["tools"].clone()).unwrap();
    let (tools, missing) = toolsets::build(&a, &enabled, &ctx(secrets()));
    // kubernetes_get has no toolset settings (and the runner no cluster) here: not offered.
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
    let (tools, _) = toolsets::build(&a, &["http_get".into()], &ctx(secrets()));
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
    let (tools, _) = toolsets::build(&section, &cfg.tools, &ctx(secrets()));
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

/// A fake model that plays a lead (system prompt "lead") asking its `k8s` sub-agent, and the
/// sub-agent (system prompt "k8s") querying Prometheus; each answers from what it was fed back.
async fn two_level_model() -> String {
    async fn turn(body: axum::Json<Value>) -> axum::Json<Value> {
        let system = body["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let fed = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or("").to_owned());
        let usage = json!({"prompt_tokens": 10, "completion_tokens": 1});
        let call = |name: &str, args: Value| {
            json!({"choices": [{"message": {"content": null, "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}]}}], "usage": usage})
        };
        let text = |t: String| json!({"choices": [{"message": {"content": t}}], "usage": usage});
        axum::Json(match (system.as_str(), fed) {
            ("lead", None) => call("ask_k8s", json!({"task": "are the checkout pods up?"})),
            ("lead", Some(f)) => text(format!("lead: {f}")),
            ("k8s", None) => call("prometheus_query", json!({"query": "up{job=\"checkout\"}"})),
            ("k8s", Some(f)) => text(if f.contains("\"0\"") {
                "pods down".into()
            } else {
                "pods up".into()
            }),
            (other, _) => text(format!("unexpected system prompt {other}")),
        })
    }
    let app = Router::new().route("/v1/chat/completions", post(turn));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_sub_agent_is_a_tool_with_its_own_prompt_tools_and_steps() {
    let (prom, seen) = observability().await;
    let model = two_level_model().await;
    let section = json!({"provider": "openai", "endpoint": model, "model": "m",
        "prompts": {"system": "lead"}, "tools": ["ask_k8s"],
        "toolsets": {"prometheus": {"url": prom}},
        "sub_agents": {"k8s": {"description": "Kubernetes specialist", "prompts": {"system": "k8s"},
            "tools": ["prometheus_query"]}}});
    let cfg = AgentConfig::parse(Some(&section), 60).unwrap();
    let http = reqwest::Client::new();
    let make =
        |c: &AgentConfig| -> Result<Arc<dyn switchyard_agent_runner::providers::Provider>, String> {
            let endpoint = Endpoint {
                url: c.endpoint.clone().unwrap(),
                key: ApiKey::default(),
                timeout: std::time::Duration::from_secs(10),
            };
            Ok(Arc::from(providers::build(
                &c.provider,
                Some(endpoint),
                &http,
            )?))
        };
    let provider = make(&cfg).unwrap();
    let (mut tools, _) = toolsets::build(&section, &cfg.tools, &ctx(Secrets::new()));
    assert!(
        !tools.has("prometheus_query"),
        "the lead has only its own tools"
    );
    let (subs, problems) = toolsets::sub_agents::tools_for(
        &section,
        &cfg,
        &provider,
        &cfg.tools,
        1,
        &ctx(Secrets::new()),
        &make,
    );
    assert!(problems.is_empty(), "{problems:?}");
    for t in subs {
        tools = tools.with(t);
    }
    let spec = &tools.specs()[0];
    assert_eq!(spec.name, "ask_k8s");
    assert!(spec.description.contains("Kubernetes specialist"));
    let mut t = Transcript::default();
    let answer = agent::run(provider.as_ref(), &cfg, "alert", &tools, &mut t)
        .await
        .unwrap();
    assert_eq!(answer, "lead: pods down");
    // Two lead turns and two sub-agent turns, all counted; the sub-agent's steps nest.
    assert_eq!((t.turns, t.usage.input_tokens), (2, 40));
    let Step::Tool {
        name,
        sub_agent: Some(sub),
        ..
    } = &t.steps[1]
    else {
        panic!("{:?}", t.steps[1]);
    };
    assert_eq!(name, "ask_k8s");
    assert!(matches!(&sub.steps[1], Step::Tool { name, .. } if name == "prometheus_query"));
    assert_eq!(seen.lock().unwrap().len(), 1);
    let recorded = serde_json::to_value(&t).unwrap();
    assert_eq!(
        recorded["steps"][1]["sub_agent"]["steps"][1]["name"],
        "prometheus_query"
    );
}

/// A fake GitHub: one repository's commits, pull requests and deployments; records the
/// authorization of each request.
async fn github() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn answer(
        State(seen): State<Seen>,
        axum::extract::Path((owner, repo, what)): axum::extract::Path<(String, String, String)>,
        h: HeaderMap,
    ) -> axum::Json<Value> {
        let auth = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        seen.lock()
            .unwrap()
            .push((format!("{owner}/{repo}/{what}"), auth));
        axum::Json(match what.as_str() {
            "commits" => {
                json!([{"sha": "a1b2c3d4e5f6", "commit": {"author": {"name": "Ana", "date": "2099-01-01T10:00:00Z"},
                "message": "Raise the pool size to 50\n\nBecause..."}}])
            }
            "pulls" => json!([
                {"number": 42, "title": "Pool size 50", "merged_at": "2099-01-01T10:01:00Z", "user": {"login": "ana"}, "merge_commit_sha": "a1b2c3d4"},
                {"number": 41, "title": "Closed, never merged", "merged_at": null, "user": {"login": "bo"}},
                {"number": 7, "title": "Ancient", "merged_at": "2001-01-01T00:00:00Z", "user": {"login": "cy"}}]),
            _ => {
                json!([{"environment": "production", "ref": "main", "sha": "a1b2c3d4", "created_at": "2099-01-01T10:05:00Z",
                "creator": {"login": "deploy-bot"}}])
            }
        })
    }
    let app = Router::new()
        .route("/repos/{owner}/{repo}/{what}", get(answer))
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn recent_changes_of_the_teams_repositories() {
    let (url, seen) = github().await;
    let section =
        json!({"toolsets": {"github": {"token": {"secret": "gh"}, "repos": ["acme/checkout"]}}});
    let mut c = ctx([("gh".to_owned(), "ghp_team".to_owned())].into());
    c.github_api_base = url;
    let (tools, missing) = toolsets::build(&section, &["github_recent_changes".into()], &c);
    assert!(missing.is_empty());
    let r = tools
        .call(
            "github_recent_changes",
            &json!({"repo": "acme/checkout", "since": "2098-12-31T00:00:00Z"}),
        )
        .await;
    assert!(!r.error, "{r:?}");
    let v: Value = serde_json::from_str(&r.output).unwrap();
    assert_eq!(v["commits"][0]["sha"], "a1b2c3d");
    assert_eq!(v["commits"][0]["message"], "Raise the pool size to 50");
    // Only pull requests merged since then.
    assert_eq!(v["merged_pull_requests"].as_array().unwrap().len(), 1);
    assert_eq!(v["merged_pull_requests"][0]["number"], 42);
    assert_eq!(v["deployments"][0]["environment"], "production");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|(_, auth)| auth == "Bearer ghp_team"));

    // Another repository: refused, and GitHub is not asked.
    let r = tools
        .call("github_recent_changes", &json!({"repo": "globex/ledger"}))
        .await;
    assert!(
        r.error && r.output.contains("not one this team may read"),
        "{r:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}
