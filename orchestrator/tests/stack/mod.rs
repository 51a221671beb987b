//! A whole Switchyard on loopback for end-to-end tests: config-service, agent-runner and
//! orchestrator over real HTTP, plus fake Slack and GitHub APIs that record what they receive.
#![allow(dead_code)]

pub mod agent;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use switchyard_common::auth::ServiceKey;
use switchyard_common::crypto::Keyring;
use switchyard_common::db::Backend;
use switchyard_common::db::testing::TestDb;
use switchyard_orchestrator::settings::Limits;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub const ADMIN: &str = "e2e-platform-admin-token-0123456789";

/// Requests a fake API received: (path, authorization header, JSON body).
pub type Recorded = Arc<Mutex<Vec<(String, String, Value)>>>;

pub struct Stack {
    pub cs: String,
    pub orch: String,
    pub runner: String,
    pub runner_addr: SocketAddr,
    pub key: ServiceKey,
    pub keyring: Keyring,
    pub slack: Recorded,
    pub github: Recorded,
    /// PagerDuty incident notes the runner posted.
    pub pagerduty: Recorded,
    pub slack_url: String,
    pub github_url: String,
    pub pagerduty_url: String,
    pub orch_state: switchyard_orchestrator::AppState,
    pub orch_db_url: String,
    pub cs_db_url: String,
    pub fake: Option<switchyard_orchestrator::k8s::fake::FakeApiServer>,
    pub http: reqwest::Client,
    pub limits: Limits,
    stop: broadcast::Sender<()>,
    orch_stop: broadcast::Sender<()>,
    _dbs: Vec<TestDb>,
}

async fn record(
    State(log): State<(Recorded, Value)>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: Json<Value>,
) -> Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    log.0
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), auth, body.0));
    Json(log.1.clone())
}

async fn fake(route: &str, answer: Value) -> (Recorded, String) {
    let log: Recorded = Arc::default();
    let app = axum::Router::new()
        .route(route, post(record))
        .with_state((log.clone(), answer));
    (log, serve(app).await)
}

/// Serves `app` on a free loopback port; answers its base URL (`http://127.0.0.1:<port>`).
pub async fn serve(app: axum::Router) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

fn stopper(tx: &broadcast::Sender<()>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = tx.subscribe();
    async move {
        let _ = rx.recv().await;
    }
}

pub struct Options {
    pub start_runner: bool,
    pub limits: Limits,
    /// Provision into a fake Kubernetes API server (namespace `tenants`).
    pub cluster: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            start_runner: true,
            limits: Limits {
                retry_base_ms: 50,
                allow_private_subscription_targets: true,
                ..Limits::default()
            },
            cluster: false,
        }
    }
}

impl Stack {
    pub async fn start(backend: Backend, opts: Options) -> Stack {
        switchyard_common::telemetry::init_tracing(false);
        let key = ServiceKey::generate();
        let master_keys = Keyring::generate_spec("e2e");
        let keyring = Keyring::parse(&master_keys).unwrap();
        // PostgreSQL: one shared database for both services, as in production. SQLite: a file each.
        let cs_db = TestDb::new(backend).await.unwrap();
        let mut dbs = vec![cs_db];
        let orch_db_url = match backend {
            Backend::Postgres => dbs[0].url.clone(),
            Backend::Sqlite => {
                let d = TestDb::new(backend).await.unwrap();
                let url = d.url.clone();
                dbs.push(d);
                url
            }
        };

        let (slack, slack_url) = fake("/chat.postMessage", json!({"ok": true, "ts": "1.1"})).await;
        let (pagerduty, pagerduty_url) =
            fake("/incidents/{id}/notes", json!({"note": {"id": "N1"}})).await;
        let (github, github_url) = fake(
            "/repos/{owner}/{repo}/issues/{n}/comments",
            json!({"id": 1}),
        )
        .await;
        let (stop, _) = broadcast::channel(1);
        let (orch_stop, _) = broadcast::channel(1);

        let cs_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cs = format!("http://{}", cs_l.local_addr().unwrap());
        let cs_settings = switchyard_config_service::settings::Settings {
            database_url: dbs[0].url.clone(),
            listen: cs_l.local_addr().unwrap(),
            db_max_connections: 8,
            secrets: secrets(&key, "config-service", &master_keys),
            log_json: false,
        };
        let cs_state = switchyard_config_service::AppState::from_settings(&cs_settings)
            .await
            .unwrap();
        tokio::spawn(switchyard_config_service::serve(
            cs_l,
            cs_state,
            stopper(&stop),
        ));

        let orch_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let orch = format!("http://{}", orch_l.local_addr().unwrap());
        let runner_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let runner_addr = runner_l.local_addr().unwrap();
        let runner = format!("http://{runner_addr}");
        let mut stack_runner_started = false;
        if opts.start_runner {
            stack_runner_started = true;
        }
        let runner_state =
            runner_state(&cs, &orch, [&slack_url, &github_url, &pagerduty_url], &key);
        if stack_runner_started {
            tokio::spawn(switchyard_agent_runner::serve(
                runner_l,
                runner_state,
                stopper(&stop),
            ));
        } else {
            drop(runner_l);
        }

        // The orchestrator is built from settings exactly as `switchyard orchestrator` builds it.
        let mut limits = opts.limits.clone();
        // Tests that need the reconciler run it themselves, where they can watch it.
        limits.reconcile_interval_seconds = 0;
        let settings = switchyard_orchestrator::settings::Settings {
            database_url: orch_db_url.clone(),
            listen: orch_l.local_addr().unwrap(),
            config_service_url: cs.clone(),
            agent_runner_url: runner.clone(),
            db_max_connections: 16,
            limits,
            secrets: secrets(&key, "orchestrator", &master_keys),
            log_json: false,
            kubernetes: "none".into(),
            tenant_namespace: "tenants".into(),
            pod_config_service_url: None,
        };
        let mut orch_state = switchyard_orchestrator::AppState::from_settings(&settings)
            .await
            .unwrap();
        let fake = opts
            .cluster
            .then(switchyard_orchestrator::k8s::fake::FakeApiServer::new);
        if let Some(f) = &fake {
            orch_state = orch_state.with_cluster(switchyard_orchestrator::k8s::Cluster::new(
                f.client("tenants"),
                "tenants",
            ));
        }
        let cs_db_url = dbs[0].url.clone();
        tokio::spawn(switchyard_orchestrator::serve(
            orch_l,
            orch_state.clone(),
            stopper(&orch_stop),
        ));

        Stack {
            cs,
            orch,
            runner,
            runner_addr,
            key,
            keyring,
            slack,
            github,
            pagerduty,
            slack_url,
            github_url,
            pagerduty_url,
            orch_state,
            orch_db_url,
            cs_db_url,
            fake,
            http: reqwest::Client::new(),
            limits: opts.limits,
            stop,
            orch_stop,
            _dbs: dbs,
        }
    }

    /// Starts the agent-runner on its reserved address (for tests that start without it).
    pub async fn start_runner(&self) {
        let l = TcpListener::bind(self.runner_addr)
            .await
            .expect("the runner's port is free again");
        let state = runner_state(
            &self.cs,
            &self.orch,
            [&self.slack_url, &self.github_url, &self.pagerduty_url],
            &self.key,
        );
        tokio::spawn(switchyard_agent_runner::serve(
            l,
            state,
            stopper(&self.stop),
        ));
    }

    /// Stops the orchestrator (graceful: it releases claimed events).
    pub fn stop_orchestrator(&self) {
        let _ = self.orch_stop.send(());
    }

    /// The config-service with [`Stack::acme_checkout`], and no orchestrator or agent-runner
    /// running: for tests that store events and run their own dispatchers against a fake runner.
    pub async fn for_own_dispatch(backend: Backend) -> Stack {
        let s = Stack::start(
            backend,
            Options {
                start_runner: false,
                ..Options::default()
            },
        )
        .await;
        s.acme_checkout().await;
        s.stop_orchestrator();
        s
    }

    /// An orchestrator's state over `store`, this stack's config-service and keys, the
    /// agent-runner at `runner`, without an admin token: what a test's own dispatcher runs with.
    pub fn dispatch_state(
        &self,
        store: switchyard_orchestrator::store::Store,
        runner: &str,
        limits: Limits,
    ) -> switchyard_orchestrator::AppState {
        switchyard_orchestrator::AppState::new(
            store,
            self.keyring.clone(),
            None,
            self.key.clone(),
            &self.cs,
            runner,
            limits,
        )
    }

    /// A JSON call with the platform admin token to a service's base URL.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(ADMIN, method, url, body).await
    }

    /// A JSON call with `token`; answers the status and the body (`null` when not JSON).
    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, &url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    pub async fn must(&self, method: reqwest::Method, url: String, body: Option<Value>) -> Value {
        let (status, v) = self.admin(method.clone(), url.clone(), body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {url} answered {status}: {v}"
        );
        v
    }

    /// A new token of team `node` in `org` (its secret).
    pub async fn team_token(&self, org: &str, node: &str) -> String {
        self.must(
            reqwest::Method::POST,
            format!("{}/api/v1/orgs/{org}/nodes/{node}/tokens", self.cs),
            Some(json!({"label": "t", "subject": format!("t@{org}.example")})),
        )
        .await["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Writes a node's layer over its current version.
    pub async fn layer(&self, org: &str, node: &str, layer: Value) {
        let url = format!("{}/api/v1/orgs/{org}/nodes/{node}/config/layer", self.cs);
        let resp = self.http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        let resp = self
            .http
            .put(&url)
            .bearer_auth(ADMIN)
            .header("if-match", etag)
            .json(&layer)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "layer for {node}: {}",
            resp.text().await.unwrap()
        );
    }

    /// Sends a webhook; answers (status, body, headers).
    pub async fn webhook(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.orch))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        (status, resp.json().await.unwrap_or(Value::Null), h)
    }

    /// The org's events with the given status.
    pub async fn events(&self, org: &str, status: &str) -> Vec<Value> {
        let v = self
            .must(
                reqwest::Method::GET,
                format!(
                    "{}/api/v1/orgs/{org}/events?status={status}&limit=500",
                    self.orch
                ),
                None,
            )
            .await;
        v["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn runs(&self, org: &str, status: &str) -> Vec<Value> {
        let v = self
            .must(
                reqwest::Method::GET,
                format!(
                    "{}/api/v1/orgs/{org}/agent-runs?status={status}&limit=500",
                    self.cs
                ),
                None,
            )
            .await;
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.orch_stop.send(());
        let _ = self.stop.send(());
    }
}

/// What each service is configured with, as `switchyard keygen` and the Helm chart give it.
fn secrets(
    key: &ServiceKey,
    me: &str,
    master_keys: &str,
) -> switchyard_common::settings::SecretSettings {
    switchyard_common::settings::SecretSettings {
        admin_token: Some(ADMIN.into()),
        service_signing_key: key.private_key_of(me),
        service_public_keys: key.public_keys_spec(),
        master_keys: Some(master_keys.to_owned()),
        ..Default::default()
    }
}

fn runner_state(
    cs: &str,
    orch: &str,
    [slack, github, pagerduty]: [&str; 3],
    key: &ServiceKey,
) -> switchyard_agent_runner::AppState {
    switchyard_agent_runner::AppState::from_settings(&switchyard_agent_runner::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        config_service_url: cs.to_owned(),
        replies: switchyard_agent_runner::ReplySettings {
            slack_api_base: slack.to_owned(),
            github_api_base: github.to_owned(),
            pagerduty_api_base: pagerduty.to_owned(),
            run_deadline_seconds: 30,
            run_lease_seconds: 30,
            max_run_attempts: 3,
        },
        secrets: secrets(key, "agent-runner", ""),
        kubernetes: "off".into(),
        orchestrator_url: Some(orch.to_owned()),
        log_json: false,
    })
    .unwrap()
}

/// Calls a fake agent-runner received: (idempotency key, traceparent header).
pub type RunnerCalls = Arc<Mutex<Vec<(String, String)>>>;

#[derive(Clone)]
struct FakeRunner {
    calls: RunnerCalls,
    /// Teams the fake answers 429 for, as a runner at their concurrent-run quota does.
    busy: Arc<Vec<String>>,
    /// The trigger of every run accepted, in order.
    triggers: Arc<Mutex<Vec<Value>>>,
}

/// What the fake does with one run: `Err` for a busy team (429), else records it and answers
/// its run id (the idempotency key).
fn take_run(runner: &FakeRunner, req: &Value, traceparent: &str) -> Result<String, ()> {
    if runner
        .busy
        .iter()
        .any(|t| req["team_id"].as_str() == Some(t.as_str()))
    {
        return Err(());
    }
    let key = req["idempotency_key"].as_str().unwrap_or("").to_owned();
    runner
        .calls
        .lock()
        .unwrap()
        .push((key.clone(), traceparent.to_owned()));
    runner.triggers.lock().unwrap().push(req["trigger"].clone());
    Ok(key)
}

async fn record_run(
    State(runner): State<FakeRunner>,
    headers: axum::http::HeaderMap,
    Json(req): Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let tp = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match take_run(&runner, &req, tp) {
        Ok(key) => (
            axum::http::StatusCode::ACCEPTED,
            Json(json!({"run_id": key, "started": true})),
        )
            .into_response(),
        Err(()) => (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"detail": "at the team's concurrent-run quota"})),
        )
            .into_response(),
    }
}

/// `POST /api/v1/run/batch`: each run as `record_run` takes it, with the trace it carries.
async fn record_batch(State(runner): State<FakeRunner>, Json(req): Json<Value>) -> Json<Value> {
    let results: Vec<Value> = req["runs"]
        .as_array()
        .expect("a batch of runs")
        .iter()
        .map(|item| {
            let tp = item["traceparent"].as_str().unwrap_or("");
            match take_run(&runner, &item["run"], tp) {
                Ok(key) => json!({"status": 202, "run_id": key, "started": true}),
                Err(()) => json!({"status": 429, "detail": "at the team's concurrent-run quota", "retry_after": 1}),
            }
        })
        .collect();
    Json(json!({ "results": results }))
}

/// A fake agent-runner on `addr` that accepts every run and records it; answers its base URL.
pub async fn fake_runner(addr: SocketAddr) -> (RunnerCalls, String) {
    fake_runner_busy_for(addr, &[]).await
}

/// A fake agent-runner that answers 429 (`Retry-After: 1`) for the `busy` teams and accepts and
/// records every other run.
pub async fn fake_runner_busy_for(addr: SocketAddr, busy: &[&str]) -> (RunnerCalls, String) {
    let (calls, _, url) = start_fake_runner(addr, busy).await;
    (calls, url)
}

/// A fake agent-runner that accepts every run and also keeps each run's trigger.
pub async fn fake_runner_with_triggers(addr: SocketAddr) -> (RunnerCalls, Arc<Mutex<Vec<Value>>>) {
    let (calls, triggers, _) = start_fake_runner(addr, &[]).await;
    (calls, triggers)
}

async fn start_fake_runner(
    addr: SocketAddr,
    busy: &[&str],
) -> (RunnerCalls, Arc<Mutex<Vec<Value>>>, String) {
    let calls: RunnerCalls = Arc::default();
    let triggers: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new()
        .route("/api/v1/run", post(record_run))
        .route("/api/v1/run/batch", post(record_batch))
        .with_state(FakeRunner {
            calls: calls.clone(),
            busy: Arc::new(busy.iter().map(|t| t.to_string()).collect()),
            triggers: triggers.clone(),
        });
    let l = TcpListener::bind(addr)
        .await
        .expect("the runner address is free");
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (calls, triggers, url)
}

/// A PagerDuty signal for service `PSVC1` (which [`Stack::acme_checkout`] routes to
/// acme/checkout), delivery `d-{delivery}`, correlation key `pagerduty:{key}`.
pub fn psvc1_signal(
    key: &str,
    delivery: &str,
    payload: Value,
) -> switchyard_orchestrator::sources::Envelope {
    switchyard_orchestrator::sources::Envelope {
        source: switchyard_orchestrator::sources::Source::Pagerduty,
        event_type: "incident.triggered".into(),
        delivery_id: format!("d-{delivery}"),
        identifiers: vec![("pagerduty_service".into(), "PSVC1".into())],
        correlation_key: format!("pagerduty:{key}"),
        payload,
        reply_to: None,
        facts: Default::default(),
    }
}

impl Stack {
    /// A PagerDuty integration of `acme` created straight in `store` (for tests that store events
    /// themselves, with the orchestrator stopped).
    pub async fn pagerduty_integration(
        &self,
        store: &switchyard_orchestrator::store::Store,
        secret: &str,
    ) -> switchyard_orchestrator::store::Integration {
        store
            .create_integration(
                &self.keyring,
                &switchyard_common::http::Actor::system("test"),
                &switchyard_orchestrator::store::NewIntegration {
                    org: Some("acme"),
                    source: switchyard_orchestrator::sources::Source::Pagerduty,
                    name: "PD",
                    default_team: None,
                    settings: &json!({}),
                    secrets: &[secret.to_owned()],
                },
            )
            .await
            .unwrap()
    }

    /// Org `acme` with team `checkout` routing PagerDuty service `PSVC1`, one run per event (the
    /// tests using it count runs per event; incidents have their own tests).
    pub async fn acme_checkout(&self) {
        self.must(
            reqwest::Method::POST,
            format!("{}/api/v1/orgs", self.cs),
            Some(json!({"id": "acme", "name": "Acme"})),
        )
        .await;
        self.must(
            reqwest::Method::POST,
            format!("{}/api/v1/orgs/acme/nodes", self.cs),
            Some(json!({"id": "checkout", "kind": "team", "name": "Checkout"})),
        )
        .await;
        self.layer(
            "acme",
            "checkout",
            json!({"routing": {"pagerduty_service": "PSVC1"}, "agent": {"trigger": "event"}}),
        )
        .await;
    }
}

/// Polls `check` until it holds, failing after `secs` seconds. Waits on state, never on time.
pub async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A delivery as a receiver saw it.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub event_type: String,
    pub body: Value,
    /// The Standard Webhooks library accepted the signature.
    pub verified: bool,
}

/// A receiver that verifies with the `standardwebhooks` library and answers from a script (then
/// 200).
#[derive(Clone, Default)]
pub struct Receiver {
    pub secret: Arc<Mutex<Option<String>>>,
    script: Arc<Mutex<VecDeque<(u16, String)>>>,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    pub async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(r.clone());
        let url = format!("{}/hook", serve(app).await);
        (r, url)
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    pub fn of_type(&self, t: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.event_type == t)
            .collect()
    }

    pub fn answer(&self, answers: &[(u16, &str)]) {
        let mut s = self.script.lock().unwrap();
        for (code, body) in answers {
            s.push_back((*code, (*body).to_owned()));
        }
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    let secret = r.secret.lock().unwrap().clone();
    let verified = secret.is_some_and(|s| {
        standardwebhooks::Webhook::new(&s)
            .unwrap()
            .verify(&body, &headers)
            .is_ok()
    });
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.got.lock().unwrap().push(Got {
        // A `slack` delivery is not signed and has no `webhook-id`.
        id: headers
            .get("webhook-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        event_type: v["type"].as_str().unwrap_or("").to_owned(),
        body: v,
        verified,
    });
    let (code, answer) = r
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, "ok".into()));
    (axum::http::StatusCode::from_u16(code).unwrap(), answer)
}
