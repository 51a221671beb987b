//! Logs and metrics.
//!
//! `tracing` with an `EnvFilter` (`RUST_LOG`, default `info`), plain or JSON lines; Prometheus
//! metrics in the text exposition format from a per-service registry.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests, `switchyard dev`) are no-ops. Turns
/// on OpenTelemetry export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`crate::otel`]).
pub fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Traces go out over OTLP too when OTEL_EXPORTER_OTLP_ENDPOINT says where.
    crate::otel::init();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    /// The matched route template, never the raw path (bounded cardinality, no ids in labels).
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    /// Who was called: `config-service`, `agent-runner`, `orchestrator`, or a model provider.
    callee: String,
    /// `2xx`, `4xx`, `429`, `5xx`, `timeout` or `error` (no answer).
    outcome: String,
}

/// The calls a service makes to others, by callee and outcome: count and latency. Clients hold a
/// clone; one that was never given the service's (`Calls::default()`) counts into nothing scraped.
#[derive(Clone)]
pub struct Calls {
    total: Family<CallLabels, Counter>,
    seconds: Family<CallLabels, Histogram>,
    /// The calling service, as its trace spans name it.
    service: &'static str,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            total: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            service: "switchyard",
        }
    }
}

/// The service a metrics prefix belongs to (`switchyard_config_service` is `config-service`), as
/// trace spans name it.
fn service_of(prefix: &str) -> &'static str {
    match prefix {
        "switchyard_orchestrator" => "orchestrator",
        "switchyard_config_service" => "config-service",
        "switchyard_agent_runner" => "agent-runner",
        _ => "switchyard",
    }
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Calls")
    }
}

impl Calls {
    /// The calling service.
    pub fn service(&self) -> &'static str {
        self.service
    }

    pub fn record(&self, callee: &str, outcome: &str, took: Duration) {
        let labels = CallLabels {
            callee: callee.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.total.get_or_create(&labels).inc();
        self.seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// The outcome label of an HTTP status.
    pub fn outcome_of(status: u16) -> &'static str {
        match status {
            200..=299 => "2xx",
            429 => "429",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        }
    }
}

/// A service's metrics registry plus the HTTP request metrics every service records, served and
/// made ([`Calls`]).
#[derive(Clone)]
pub struct Metrics {
    /// Behind a mutex only because registering needs `&mut`; encoding happens per scrape.
    registry: Arc<Mutex<Registry>>,
    requests: Family<HttpLabels, Counter>,
    durations: Family<HttpLabels, Histogram>,
    calls: Calls,
    service: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(prefix: &str) -> Self {
        let mut registry = Registry::with_prefix(prefix);
        let requests = Family::<HttpLabels, Counter>::default();
        let durations = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route and status",
            durations.clone(),
        );
        let service = service_of(prefix);
        let calls = Calls {
            service,
            ..Calls::default()
        };
        registry.register(
            "calls",
            "Calls made to other services and providers, by callee and outcome",
            calls.total.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Latency of calls made to other services and providers, by callee and outcome",
            calls.seconds.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            durations,
            calls,
            service,
        }
    }

    /// The service these metrics belong to (`orchestrator`, `config-service`, `agent-runner`).
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The calls this service makes, for its clients to record into.
    pub fn calls(&self) -> Calls {
        self.calls.clone()
    }

    /// Lets a service add metrics of its own.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .expect("metrics registry poisoned")
            .register(name, help, metric);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry poisoned");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Middleware recording count and latency per matched route.
pub async fn track_http(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let labels = HttpLabels {
        method,
        route,
        status: resp.status().as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .durations
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics` body in the Prometheus text format.
pub fn metrics_response(metrics: &Metrics) -> Response {
    let mut resp = metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
