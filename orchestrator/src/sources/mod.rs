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

    /// Senders that retry a 429 (so an ingress ceiling may answer one). The others drop the event
    /// on any 4xx (Alertmanager, Sentry), do not retry at all (GitHub) or disable the hook
    /// (GitLab): they are always accepted and throttled at dispatch instead.
    pub fn retries_429(self) -> bool {
        matches!(
            self,
            Source::Slack
                | Source::Pagerduty
                | Source::Incidentio
                | Source::Standard
                | Source::Linear
                | Source::Jira
        )
    }
}

/// The Slack endpoint an event came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackKind {
    Events,
    Commands,
    Interactions,
}
