//! Webhook senders: one module per sender, each with everything the orchestrator knows about it:
//! how it signs (`verify`), how its payload becomes one [`Envelope`] with a delivery id, routing
//! identifiers, a correlation key and where a reply goes (`normalise`), whether it retries a 429,
//! and the platform-wide path of a shared app. [`verify`] holds the signing primitives they share
//! and [`fields`] the payload readers.
//!
//! Adding a sender: write `sources/<name>.rs` with a `pub(super) const SENDER: Sender`, and add
//! one line to the [`senders!`] registry below (the variant's serialised name is the module's).

pub mod facts;
mod fields;
pub mod verify;

mod alertmanager;
mod circleci;
mod datadog;
mod github;
mod gitlab;
mod grafana;
mod incidentio;
mod jira;
mod linear;
mod opsgenie;
mod pagerduty;
mod sentry;
mod slack;
mod standard;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_common::routing::clean_identifiers;
use utoipa::ToSchema;

pub use alertmanager::alert_group_delivery_id;
pub use facts::{AlertState, Facts};
pub use verify::VerifyError;

/// One delivery as the hot path received it, before anything is trusted.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub headers: &'a HeaderMap,
    /// The raw bytes, exactly as received (signatures are over them).
    pub body: &'a [u8],
    /// The integration's settings (`token_header`, `timestamp_tolerance_seconds`, ...).
    pub settings: &'a Value,
    /// The endpoint's last path segment for senders with several (Slack: `events`, `commands`,
    /// `interactions`); empty otherwise.
    pub endpoint: &'a str,
    /// Now, in seconds since the epoch (timestamps are checked against it).
    pub now: i64,
}

impl<'a> Delivery<'a> {
    /// A delivery with no settings, on the default endpoint, at the current time.
    pub fn new(headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self {
            headers,
            body,
            settings: &Value::Null,
            endpoint: "",
            now: switchyard_common::time::now_ms() / 1000,
        }
    }
}

/// One normalised event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub source: Source,
    pub event_type: String,
    pub delivery_id: String,
    /// (kind, value) pairs as the config-service's routing lookup takes them.
    pub identifiers: Vec<(String, String)>,
    pub correlation_key: String,
    /// The payload as JSON (form bodies decoded; the raw bytes are kept separately).
    pub payload: Value,
    /// Where the agent's answer goes (the Slack thread, the GitHub issue), if the sender has a
    /// place for one: read here, with the fields normalisation reads, never again at dispatch.
    pub reply_to: Option<Value>,
    /// What correlation compares across senders: service, severity, the alert's state.
    pub facts: Facts,
}

/// One per request, moved straight into storage: boxing the envelope would only add an
/// allocation to the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Event(Envelope),
    /// A handshake or ping: answer 200 with this body, store nothing.
    Handshake(Value),
}

/// Why a verified delivery is still refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// What the body says fails a check the signature does not cover (Linear's timestamp).
    #[error("webhook verification failed: {0}")]
    Unverified(VerifyError),
    /// Not a payload this sender sends.
    #[error("{0}")]
    Invalid(String),
}

/// What one sender module provides.
pub struct Sender {
    /// Verifies the raw delivery against the integration's active secrets.
    pub verify: fn(&Delivery<'_>, &[Vec<u8>]) -> Result<(), VerifyError>,
    /// Turns a verified delivery into an envelope, or the answer to a handshake.
    pub normalise: fn(&Delivery<'_>) -> Result<Outcome, Refusal>,
    /// Whether the sender retries a 429 (so an ingress ceiling may answer one). The others drop
    /// the event on any 4xx (Alertmanager, Sentry), do not retry at all (GitHub) or disable the
    /// hook (GitLab): they are always accepted and throttled at dispatch instead.
    pub retries_429: bool,
    /// The path of the platform-wide integration (a shared app), if the sender has one.
    pub platform_path: Option<&'static str>,
}

/// The registry: one line per sender, `Variant => module`.
macro_rules! senders {
    ($($variant:ident => $module:ident),* $(,)?) => {
        /// A kind of sender. The string form is the path segment of its webhook URL.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum Source {
            $($variant),*
        }

        impl Source {
            pub const ALL: &'static [Source] = &[$(Source::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Source::$variant => stringify!($module)),*
                }
            }

            fn sender(self) -> &'static Sender {
                match self {
                    $(Source::$variant => &$module::SENDER),*
                }
            }
        }
    };
}

senders! {
    Slack => slack,
    Github => github,
    Pagerduty => pagerduty,
    Incidentio => incidentio,
    Standard => standard,
    Alertmanager => alertmanager,
    Grafana => grafana,
    Sentry => sentry,
    Linear => linear,
    Gitlab => gitlab,
    Jira => jira,
    Circleci => circleci,
    Datadog => datadog,
    Opsgenie => opsgenie,
}

impl Source {
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|x| x.as_str() == s)
    }

    /// See [`Sender::retries_429`].
    pub fn retries_429(self) -> bool {
        self.sender().retries_429
    }

    /// Whether a platform-wide integration (one shared app for every org) exists for it.
    pub fn has_platform_app(self) -> bool {
        self.sender().platform_path.is_some()
    }

    /// The webhook path of an integration of this sender.
    pub fn webhook_path(self, id: &str, platform: bool) -> String {
        match (self.sender().platform_path, platform) {
            (Some(path), true) => path.to_owned(),
            _ => format!("/webhooks/{}/{id}", self.as_str()),
        }
    }

    /// Verifies a delivery exactly as this sender signs it.
    pub fn verify(self, d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
        (self.sender().verify)(d, secrets)
    }

    /// Normalises a verified delivery. The identifiers are those the routing lookup accepts
    /// ([`clean_identifiers`]): an invalid value in one field never costs the event its routing.
    pub fn normalise(self, d: &Delivery<'_>) -> Result<Outcome, Refusal> {
        Ok(match (self.sender().normalise)(d)? {
            Outcome::Event(mut env) => {
                env.identifiers = clean_identifiers(std::mem::take(&mut env.identifiers));
                Outcome::Event(env)
            }
            handshake => handshake,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_sender_once() {
        let names: std::collections::HashSet<_> = Source::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), Source::ALL.len());
        for s in Source::ALL {
            assert_eq!(Source::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                Value::String(s.as_str().into())
            );
        }
        assert_eq!(
            Source::Slack.webhook_path("x", true),
            "/webhooks/slack/events"
        );
        assert_eq!(Source::Github.webhook_path("x", true), "/webhooks/github");
        assert_eq!(
            Source::Github.webhook_path("x", false),
            "/webhooks/github/x"
        );
        assert!(!Source::Pagerduty.has_platform_app());
    }

    #[test]
    fn bad_json_is_a_clear_error() {
        let h = HeaderMap::new();
        assert!(matches!(
            Source::Github.normalise(&Delivery::new(&h, b"{nope")),
            Err(Refusal::Invalid(_))
        ));
    }
}
