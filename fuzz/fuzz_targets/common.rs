//! What the targets share: turning fuzz input into a request's parts.

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_orchestrator::sources::Source;

/// Header names the verifiers and normalisers read, so the fuzzer finds them without guessing.
pub const KNOWN_HEADERS: &[&str] = &[
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-github-event",
    "x-github-delivery",
    "x-pagerduty-signature",
    "x-webhook-id",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "sentry-hook-signature",
    "sentry-hook-resource",
    "request-id",
    "linear-signature",
    "linear-delivery",
    "linear-event",
    "x-gitlab-token",
    "x-gitlab-event",
    "idempotency-key",
    "x-atlassian-webhook-identifier",
    "circleci-signature",
    "circleci-event-type",
    "x-grafana-alerting-signature",
    "x-grafana-alerting-signature-timestamp",
    "authorization",
    "x-token",
];

#[derive(Debug, Arbitrary)]
pub struct Request {
    pub source: u8,
    pub headers: Vec<(u8, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn source(&self) -> Source {
        Source::ALL[self.source as usize % Source::ALL.len()]
    }

    pub fn header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = KNOWN_HEADERS[*name as usize % KNOWN_HEADERS.len()];
            if let Ok(v) = HeaderValue::from_str(value) {
                h.append(HeaderName::from_static(name), v);
            }
        }
        h
    }
}
