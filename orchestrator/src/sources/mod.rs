//! Webhook sources: what each sender sends, how it signs, and how its payload becomes one
//! [`Envelope`].

pub mod normalise;
pub mod verify;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A kind of sender. The string form is the path segment of its webhook URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Slack,
    Github,
    Pagerduty,
    Incidentio,
    Standard,
    Alertmanager,
    Grafana,
    Sentry,
    Linear,
    Gitlab,
    Jira,
    Circleci,
    Datadog,
    Opsgenie,
}

impl Source {
    pub const ALL: [Source; 14] = [
        Source::Slack,
        Source::Github,
        Source::Pagerduty,
        Source::Incidentio,
        Source::Standard,
        Source::Alertmanager,
        Source::Grafana,
        Source::Sentry,
        Source::Linear,
        Source::Gitlab,
        Source::Jira,
        Source::Circleci,
        Source::Datadog,
        Source::Opsgenie,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Slack => "slack",
            Source::Github => "github",
            Source::Pagerduty => "pagerduty",
            Source::Incidentio => "incidentio",
            Source::Standard => "standard",
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Sentry => "sentry",
            Source::Linear => "linear",
            Source::Gitlab => "gitlab",
            Source::Jira => "jira",
            Source::Circleci => "circleci",
            Source::Datadog => "datadog",
            Source::Opsgenie => "opsgenie",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Senders that drop an event on any 4xx (429 included): never throttle them at ingress;
    /// accept and throttle at dispatch instead.
    pub fn drops_on_4xx(self) -> bool {
        matches!(
            self,
            Source::Alertmanager
                | Source::Pagerduty
                | Source::Sentry
                | Source::Datadog
                | Source::Opsgenie
                | Source::Grafana
        )
    }

    /// Whether a secret is optional (Grafana signs only when configured to).
    pub fn signature_optional(self) -> bool {
        matches!(self, Source::Grafana)
    }
}

/// The Slack endpoint an event came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackKind {
    Events,
    Commands,
    Interactions,
}
