//! Switchyard's agent-runner: the shared runtime every team's agent runs on.
//!
//! `POST /api/v1/run` (service JWT, from the orchestrator) answers 202 with a run id at once
//! (`POST /api/v1/run/batch` starts many in one call, as the orchestrator does); the same
//! idempotency key always answers the same run and never starts a second one. Per run it
//! loads the team's effective config from the config-service (so a config change applies to the
//! next run, no restart), runs the agent through its provider (this version ships the built-in
//! offline provider: a deterministic summary of the trigger, so everything works without an LLM
//! key), posts the result to the reply target (a Slack thread or a GitHub issue or pull request)
//! and records every state in the config-service's agent runs. A team over its
//! `quotas.concurrent_runs` gets 429 with `Retry-After`.
//!
//! Runs are recorded in the config-service, so this service keeps no database of its own.
//!
//! # Layout
//! - this file: settings, state, the HTTP API (reading a run, health, metrics);
//! - `start`: accepting runs, one or a batch a call, within the team's concurrent-run quota;
//! - `runs`: executing a run under its lease, and resuming runs whose runner stopped;
//! - [`agent`]: the agent loop, its config and tools; [`toolsets`]: the built-in tools; [`providers`]: LLM providers behind one
//!   trait; [`messages`]: the conversation they share; [`reply`]: answering where the event came
//!   from; [`evals`]: the eval suite's scenarios, scripted model and recorded tools.

pub mod agent;
mod context;
pub mod evals;
pub mod messages;
mod observe;
pub mod providers;
mod records;
pub mod reply;
mod runs;
mod start;
pub mod toolsets;

pub use runs::recover_runs;
pub use start::{accept, accept_batch};

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use switchyard_api::runs::AgentRun;
use switchyard_common::auth::ServiceKey;
use switchyard_common::clients::{CallError, ConfigClient, OrchestratorClient};
use switchyard_common::error::{Error, Result};
use switchyard_common::http::{AuthState, Caller};
use switchyard_common::problem::Problem;
use switchyard_common::telemetry::{Metrics, metrics_response};
use tokio::net::TcpListener;
use utoipa::OpenApi;

/// Concurrent runs per team when its config sets no `quotas.concurrent_runs`.
pub const DEFAULT_CONCURRENT_RUNS: u64 = 4;

/// `switchyard agent-runner` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    #[arg(
        long,
        env = "SWITCHYARD_AGENT_RUNNER_ADDR",
        default_value = "127.0.0.1:8082"
    )]
    pub listen: SocketAddr,
    #[arg(
        long,
        env = "SWITCHYARD_CONFIG_SERVICE_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub config_service_url: String,
    /// The orchestrator, which `switchyard_events` asks for a team's recent events; unset, the
    /// tool is not offered.
    #[arg(long, env = "SWITCHYARD_ORCHESTRATOR_URL")]
    pub orchestrator_url: Option<String>,
    #[command(flatten)]
    pub replies: ReplySettings,
    /// The platform admin token (reads any run), the agent-runner's signing key and the
    /// orchestrator's public key.
    #[command(flatten)]
    pub secrets: switchyard_common::settings::SecretSettings,
    /// The cluster the Kubernetes tools read: `in-cluster` (the pod's service account), `off`,
    /// or `auto` (in-cluster when running in a pod).
    #[arg(long, env = "SWITCHYARD_AGENT_KUBERNETES", default_value = "auto", value_parser = ["auto", "in-cluster", "off"])]
    pub kubernetes: String,
    #[arg(long, env = "SWITCHYARD_LOG_JSON")]
    pub log_json: bool,
}

/// Where replies go; configurable so tests and air-gapped installs can point elsewhere.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplySettings {
    #[arg(
        long,
        env = "SWITCHYARD_SLACK_API_BASE",
        default_value = "https://slack.com/api"
    )]
    pub slack_api_base: String,
    #[arg(
        long,
        env = "SWITCHYARD_GITHUB_API_BASE",
        default_value = "https://api.github.com"
    )]
    pub github_api_base: String,
    #[arg(
        long,
        env = "SWITCHYARD_PAGERDUTY_API_BASE",
        default_value = "https://api.pagerduty.com"
    )]
    pub pagerduty_api_base: String,
    /// Longest a run may take before it is failed, resumptions included.
    #[arg(long, env = "SWITCHYARD_RUN_DEADLINE_SECONDS", default_value_t = 120)]
    pub run_deadline_seconds: u64,
    /// How long a run's lease lasts without renewal (renewed every third of it). When a runner
    /// dies, its runs are resumed by another within about this long.
    #[arg(long, env = "SWITCHYARD_RUN_LEASE_SECONDS", default_value_t = 30)]
    pub run_lease_seconds: u64,
    /// Executions a run may have; a run whose runner died this often is failed, not resumed.
    #[arg(long, env = "SWITCHYARD_MAX_RUN_ATTEMPTS", default_value_t = 3)]
    pub max_run_attempts: i64,
}

/// Cloned for every request (axum hands each handler and middleware its own copy), so a clone
/// is one reference count, not a copy of each part.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

#[derive(Clone)]
pub struct Parts {
    pub config: ConfigClient,
    pub replies: ReplySettings,
    pub http: reqwest::Client,
    pub admin_token: Option<Arc<str>>,
    pub service_key: ServiceKey,
    pub metrics: Metrics,
    /// Runs, tokens, model turns and tool calls.
    run_metrics: observe::RunMetrics,
    /// Names this process as the holder of its runs' leases.
    pub runner_id: Arc<str>,
    /// The cluster the Kubernetes tools read (each team only its own namespaces).
    pub kube: Option<kube::Client>,
    /// The orchestrator, which `switchyard_events` asks for a team's recent events.
    pub orchestrator: Option<OrchestratorClient>,
    /// Runs in flight per (org, team).
    inflight: Arc<Mutex<HashMap<(String, String), u64>>>,
    /// Run contexts, read once for the runs of a team that arrive together.
    contexts: context::Contexts,
    /// Runs started and finished, recorded many to a call when they arrive together.
    records: records::Records,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("replies", &self.replies)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state `switchyard agent-runner` runs with: its own signing key, the orchestrator's
    /// public key, the platform admin token.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let key = settings
            .secrets
            .service_key(Some("agent-runner"), &["orchestrator"])?;
        let admin_token = settings.secrets.admin_token()?;
        let mut state = Self::new(
            &settings.config_service_url,
            settings.replies.clone(),
            admin_token,
            key,
        );
        let orchestrator = settings.orchestrator_url.as_deref().map(|url| {
            OrchestratorClient::new(url, state.service_key.clone()).observed(state.metrics.calls())
        });
        Arc::make_mut(&mut state.0).orchestrator = orchestrator;
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        Arc::make_mut(&mut state.0).kube = match settings.kubernetes.as_str() {
            "in-cluster" => Some(in_cluster()?),
            "auto" if in_pod => match in_cluster() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "no Kubernetes client; the Kubernetes tools are off");
                    None
                }
            },
            _ => None,
        };
        Ok(state)
    }

    pub fn new(
        config_service_url: &str,
        replies: ReplySettings,
        admin_token: Option<String>,
        service_key: ServiceKey,
    ) -> Self {
        let metrics = Metrics::new("switchyard_agent_runner");
        Self(Arc::new(Parts {
            config: ConfigClient::new(config_service_url, service_key.clone(), "agent-runner")
                .observed(metrics.calls()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("an HTTP client builds"),
            replies,
            admin_token: admin_token.map(Arc::from),
            service_key,
            run_metrics: observe::RunMetrics::new(&metrics),
            metrics,
            runner_id: Arc::from(format!("agent-runner-{}", uuid::Uuid::new_v4().simple())),
            kube: None,
            orchestrator: None,
            inflight: Arc::default(),
            contexts: Default::default(),
            records: Default::default(),
        }))
    }
}

/// A client with the pod's service account.
fn in_cluster() -> anyhow::Result<kube::Client> {
    let config = kube::Config::incluster()
        .map_err(|e| anyhow::anyhow!("reading the in-cluster Kubernetes config: {e}"))?;
    kube::Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("building the Kubernetes client: {e}"))
}

impl AuthState for AppState {
    const AUDIENCE: &'static str = "agent-runner";

    fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    fn service_key(&self) -> &ServiceKey {
        &self.service_key
    }

    async fn resolve_token(&self, token: &str) -> Result<Caller, Error> {
        match self.config.introspect(token).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(Error::Unauthorized("the token is not valid".into())),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn unavailable(e: CallError) -> Error {
    match e {
        CallError::Rejected(m) => Error::BadRequest(m),
        other => Error::Unavailable(format!("the config-service is unavailable: {other}")),
    }
}

/// The run request and its answer, shared with the orchestrator's client.
pub use switchyard_api::runs::{Accepted, RunRequest};

pub fn app(state: AppState) -> Router {
    let router = Router::new()
        .route("/api/v1/run", post(accept))
        .route("/api/v1/run/batch", post(accept_batch))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .route("/metrics", get(metrics));
    switchyard_common::http::standard_layers(router, state.metrics.clone()).with_state(state)
}

/// Reserves a concurrency slot for the team, or says how long to wait.
fn reserve(state: &AppState, org: &str, team: &str, limit: u64) -> bool {
    let mut m = state.inflight.lock().expect("poisoned");
    let n = m.entry((org.to_owned(), team.to_owned())).or_insert(0);
    if *n >= limit {
        return false;
    }
    *n += 1;
    true
}

fn release(state: &AppState, org: &str, team: &str) {
    let mut m = state.inflight.lock().expect("poisoned");
    if let Some(n) = m.get_mut(&(org.to_owned(), team.to_owned())) {
        *n = n.saturating_sub(1);
    }
}

/// One run: a service, the platform admin, the run's org admins, or its team.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", params(("id" = String, Path)),
    responses((status = 200, body = AgentRun), (status = 404, body = Problem)))]
pub async fn get_run(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<AgentRun>> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Error::Unauthorized("send a token as `Authorization: Bearer <token>`".into())
        })?;
    let service = state
        .service_key
        .verify(token, <AppState as AuthState>::AUDIENCE)
        .is_ok();
    let caller = if service {
        None
    } else if state
        .admin_token
        .as_deref()
        .is_some_and(|a| switchyard_common::auth::secrets_equal(a, token))
    {
        Some(Caller::PlatformAdmin)
    } else {
        Some(state.resolve_token(token).await?)
    };
    let run = state
        .config
        .get_run(&id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Error::not_found(format!("run {id}")))?;
    if let Some(c) = caller {
        c.authorize_node_read(&run.org_id, &run.team_id)
            .map_err(|_| Error::not_found(format!("run {id}")))?;
    }
    Ok(Json(run))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<AppState>) -> Response {
    metrics_response(&state.metrics)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard agent-runner",
        description = "Runs a team's agent for an event and replies where the event came from."
    ),
    paths(start::accept, start::accept_batch, get_run)
)]
pub struct ApiDoc;

pub fn openapi_json() -> String {
    switchyard_common::openapi::finish(
        &ApiDoc::openapi(),
        &switchyard_common::openapi::Contract {
            service_paths: &["/api/v1/run", "/api/v1/run/batch"],
        },
    )
}

/// Runs the agent-runner as `switchyard agent-runner` does: [`AppState::from_settings`], then
/// [`serve`] until `shutdown`.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::from_settings(&settings)?;
    tracing::info!(addr = %listener.local_addr()?, "agent-runner listening");
    serve(listener, state, shutdown).await?;
    Ok(())
}

pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let recovery = tokio::spawn(recover_runs(state.clone()));
    let served = axum::serve(switchyard_common::http::no_delay(listener), app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    recovery.abort();
    served
}
