//! OpenTelemetry export of Switchyard's traces: OTLP over HTTP (protobuf) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, off otherwise.
//!
//! The ids are the ones [`crate::trace`] already carries between the services (W3C
//! `traceparent` on every call, stored with each event so dispatch continues the webhook's
//! trace). A [`Span`] records one piece of work under those ids (start, end, attributes, error)
//! and, when it ends, hands it to the SDK's batch span processor, which the `opentelemetry-otlp`
//! exporter ships from its own thread: a slow or absent collector never holds up a request, and
//! the queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`, spans beyond it are dropped and counted by the
//! SDK). Each service exports under its own `service.name`, also when `switchyard dev` runs the
//! three in one process. The exporter's other settings come from the standard variables
//! (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`, `OTEL_BSP_SCHEDULE_DELAY`, ...).
//!
//! One webhook is one trace: the orchestrator's request span, `inbox.store`, `dispatch` (later,
//! from the inbox), its call to the agent-runner, the runner's request span, `agent.run`, each
//! `model.turn` and `tool.<name>`, and `reply`, each a child of the one before.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};

pub use opentelemetry::trace::SpanKind;

use crate::trace::TraceContext;

/// The export pipeline: one batch processor (and exporter) per service name.
struct Export {
    /// Where spans go when not from the environment (`init_to`).
    endpoint: Option<String>,
    scope: InstrumentationScope,
    /// `None` for a service whose exporter did not build (warned once, not retried per span).
    services: Mutex<Processors>,
}

static EXPORT: OnceLock<Option<Export>> = OnceLock::new();

fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
        && std::env::var("OTEL_SDK_DISABLED").map_or(true, |v| v != "true")
}

/// Turns export on when the environment asks for it (idempotent); answers whether it is on.
/// Call it at start, before serving.
pub fn init() -> bool {
    start(None)
}

/// Turns export on to `endpoint` (the full URL, such as `http://collector:4318/v1/traces`),
/// whatever the environment says; for embedding and tests. The first `init` or `init_to` decides.
pub fn init_to(endpoint: &str) -> bool {
    start(Some(endpoint.to_owned()))
}

fn start(endpoint: Option<String>) -> bool {
    EXPORT
        .get_or_init(|| {
            if endpoint.is_none() && !configured() {
                return None;
            }
            // The exporter's client speaks TLS through rustls with the ring provider the rest of
            // the workspace uses (a no-op when one is installed already).
            let _ = rustls::crypto::ring::default_provider().install_default();
            tracing::info!("exporting traces over OTLP/HTTP");
            Some(Export {
                endpoint,
                scope: InstrumentationScope::builder("switchyard")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
                services: Mutex::default(),
            })
        })
        .is_some()
}

fn export() -> Option<&'static Export> {
    EXPORT.get().and_then(Option::as_ref)
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    export().is_some()
}

type Processors = HashMap<&'static str, Option<Arc<BatchSpanProcessor>>>;

impl Export {
    fn lock(&self) -> std::sync::MutexGuard<'_, Processors> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn processor(&self, service: &'static str) -> Option<Arc<BatchSpanProcessor>> {
        let mut services = self.lock();
        if let Some(p) = services.get(service) {
            return p.clone();
        }
        use opentelemetry_otlp::WithExportConfig;
        let builder = opentelemetry_otlp::SpanExporter::builder().with_http();
        let builder = match &self.endpoint {
            Some(e) => builder.with_endpoint(e.clone()),
            None => builder,
        };
        let exporter = match builder.build() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, service, "the OTLP exporter does not build: no traces exported");
                services.insert(service, None);
                return None;
            }
        };
        let mut processor = BatchSpanProcessor::builder(exporter).build();
        processor.set_resource(
            &Resource::builder()
                .with_service_name(format!("switchyard-{service}"))
                .build(),
        );
        let processor = Arc::new(processor);
        services.insert(service, Some(processor.clone()));
        Some(processor)
    }
}

/// Exports every span ended so far (waits up to the exporter's timeout); for shutdown and tests.
pub fn flush() {
    if let Some(e) = export() {
        let all: Vec<_> = e.lock().values().flatten().cloned().collect();
        for p in all {
            if let Err(err) = p.force_flush() {
                tracing::warn!(error = %err, "flushing traces failed");
            }
        }
    }
}

/// Flushes and stops the exporters (at shutdown).
pub fn shutdown() {
    if let Some(e) = export() {
        let all: Vec<_> = e.lock().drain().filter_map(|(_, p)| p).collect();
        for p in all {
            let _ = p.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

struct Open {
    service: &'static str,
    name: Cow<'static, str>,
    kind: SpanKind,
    trace_id: TraceId,
    span_id: SpanId,
    parent: SpanId,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    status: Status,
}

/// One piece of work in a trace, exported when it ends (or is dropped). Costs nothing when export
/// is off.
#[must_use = "a span is exported when it ends"]
pub struct Span(Option<Box<Open>>);

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Span")
            .field(&self.0.as_ref().map(|o| &o.name))
            .finish()
    }
}

impl Span {
    /// A span with the ids of `ctx` (its own span id), under `parent` (a span id, 16 hex digits)
    /// or as the trace's root.
    pub fn start(
        service: &'static str,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        ctx: &TraceContext,
        parent: Option<&str>,
    ) -> Self {
        if !enabled() || !ctx.sampled {
            return Self(None);
        }
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_hex(&ctx.trace_id),
            SpanId::from_hex(&ctx.span_id),
        ) else {
            return Self(None);
        };
        Self(Some(Box::new(Open {
            service,
            name: name.into(),
            kind,
            trace_id,
            span_id,
            parent: parent
                .and_then(|p| SpanId::from_hex(p).ok())
                .unwrap_or(SpanId::INVALID),
            start: SystemTime::now(),
            attributes: Vec::new(),
            status: Status::Unset,
        })))
    }

    /// A child of the current work ([`TraceContext::current`], or a new trace): the span and the
    /// context to run the work in, so that what it calls becomes its children. With export off,
    /// the current context itself.
    pub fn child(
        service: &'static str,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
    ) -> (Self, TraceContext) {
        let current = TraceContext::current();
        if !enabled() {
            // Nothing is exported: the work continues the current span (no new id to draw).
            return (Self(None), current.unwrap_or_else(TraceContext::new_root));
        }
        let (ctx, parent) = match current {
            Some(c) => (c.child(), Some(c.span_id)),
            None => (TraceContext::new_root(), None),
        };
        (
            Self::start(service, name, kind, &ctx, parent.as_deref()),
            ctx,
        )
    }

    /// Whether the span will be exported (export is on and the trace sampled).
    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Names the span from `name`, called only when it is recorded (no allocation otherwise).
    pub fn rename(&mut self, name: impl FnOnce() -> String) {
        if let Some(o) = &mut self.0 {
            o.name = name().into();
        }
    }

    /// An attribute copied from borrowed text only when the span is recorded.
    pub fn attr_str(&mut self, key: &'static str, value: &str) {
        if let Some(o) = &mut self.0 {
            o.attributes.push(KeyValue::new(key, value.to_owned()));
        }
    }

    pub fn attr(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(o) = &mut self.0 {
            o.attributes.push(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with why.
    pub fn error(&mut self, message: impl Into<Cow<'static, str>>) {
        if let Some(o) = &mut self.0 {
            o.status = Status::error(message);
        }
    }

    /// Ends the span now and queues it for export.
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let Some(o) = self.0.take() else { return };
        let Some(processor) = export().and_then(|e| e.processor(o.service)) else {
            return;
        };
        let scope = export().map(|e| e.scope.clone()).unwrap_or_default();
        processor.on_end(SpanData {
            span_context: SpanContext::new(
                o.trace_id,
                o.span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: o.parent,
            parent_span_is_remote: o.kind == SpanKind::Server,
            span_kind: o.kind,
            name: o.name,
            start_time: o.start,
            end_time: SystemTime::now(),
            attributes: o.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: o.status,
            instrumentation_scope: scope,
        });
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Runs `fut` as a child span of the current work, in the span's context.
pub async fn in_span<F: std::future::Future>(
    service: &'static str,
    name: impl Into<Cow<'static, str>>,
    kind: SpanKind,
    fut: F,
) -> F::Output {
    let (span, ctx) = Span::child(service, name, kind);
    let out = ctx.scope(fut).await;
    span.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cost_nothing_when_export_is_off() {
        // No OTEL_EXPORTER_OTLP_ENDPOINT in unit tests: init answers off, spans are empty.
        if configured() {
            return;
        }
        assert!(!init());
        let ctx = TraceContext::new_root();
        let mut s = Span::start("orchestrator", "x", SpanKind::Internal, &ctx, None);
        s.attr("k", "v");
        assert!(s.0.is_none());
        s.end();
    }
}
