//! The middleware every service runs.

use axum::extract::Request;

/// How long a request may take before it is answered 503 (webhook senders and admins alike).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The middleware every service runs, innermost first: per-route metrics, W3C trace propagation,
/// the request span (method, matched route, request id, tenant ids filled in by the extractors),
/// a 30 s timeout (503), a request id on every request and response (`x-request-id`), and a panic
/// caught as a problem+json 500. Unmatched paths answer a problem+json 404. One stack for the
/// three services, so they cannot drift apart.
pub fn standard_layers<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
    metrics: crate::telemetry::Metrics,
) -> axum::Router<S> {
    use axum::extract::MatchedPath;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use tower_http::catch_panic::CatchPanicLayer;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::timeout::TimeoutLayer;
    use tower_http::trace::TraceLayer;

    use crate::problem::Problem;

    let service = metrics.service();
    router
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail("no such endpoint")
        })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::telemetry::track_http,
        ))
        .layer(axum::middleware::from_fn_with_state(service, propagate))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!(
                "request",
                method = %req.method(),
                route,
                request_id,
                org = tracing::field::Empty,
                node = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            )
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(CatchPanicLayer::custom(|_| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            )
            .into_response()
        }))
}

/// Middleware: continue the caller's trace (or start one), record its id on the request span and
/// echo the service's `traceparent` on the response.
pub async fn propagate(
    axum::extract::State(service): axum::extract::State<&'static str>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let caller = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::trace::TraceContext::parse);
    let ctx = caller
        .as_ref()
        .map(crate::trace::TraceContext::child)
        .unwrap_or_else(crate::trace::TraceContext::new_root);
    tracing::Span::current().record("trace_id", ctx.trace_id.as_str());
    let header = ctx.header();
    // The server span, exported when OpenTelemetry export is on (`crate::otel`); with export off
    // nothing here allocates.
    let mut span = crate::otel::Span::start(
        service,
        "request",
        crate::otel::SpanKind::Server,
        &ctx,
        caller.as_ref().map(|c| c.span_id.as_str()),
    );
    if span.is_recording() {
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched", |p| p.as_str());
        span.rename(|| format!("{} {route}", req.method()));
        span.attr_str("http.request.method", req.method().as_str());
        span.attr_str("http.route", route);
    }
    let mut resp = ctx.scope(next.run(req)).await;
    let status = resp.status().as_u16();
    span.attr("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.error(format!("answered {status}"));
    }
    span.end();
    if let Ok(v) = axum::http::HeaderValue::from_str(&header) {
        resp.headers_mut().insert("traceparent", v);
    }
    resp
}
