//! Routing identifiers: which values of an incoming event name the team that owns it.

use serde_json::Value;

/// A kind of routing identifier. The order of [`RouteKind::ALL`] is the lookup precedence: the most
/// specific identifier wins (a repository before its owner, a channel before its workspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    GithubRepo,
    GitlabProject,
    SentryProject,
    JiraProject,
    LinearTeam,
    PagerdutyService,
    IncidentioAlertSource,
    SlackChannel,
    AlertLabel,
    Service,
    GithubOwner,
    SlackTeam,
}

impl RouteKind {
    pub const ALL: [RouteKind; 12] = [
        RouteKind::GithubRepo,
        RouteKind::GitlabProject,
        RouteKind::SentryProject,
        RouteKind::JiraProject,
        RouteKind::LinearTeam,
        RouteKind::PagerdutyService,
        RouteKind::IncidentioAlertSource,
        RouteKind::SlackChannel,
        RouteKind::AlertLabel,
        RouteKind::Service,
        RouteKind::GithubOwner,
        RouteKind::SlackTeam,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::GithubRepo => "github_repo",
            RouteKind::GitlabProject => "gitlab_project",
            RouteKind::SentryProject => "sentry_project",
            RouteKind::JiraProject => "jira_project",
            RouteKind::LinearTeam => "linear_team",
            RouteKind::PagerdutyService => "pagerduty_service",
            RouteKind::IncidentioAlertSource => "incidentio_alert_source",
            RouteKind::SlackChannel => "slack_channel",
            RouteKind::AlertLabel => "alert_label",
            RouteKind::Service => "service",
            RouteKind::GithubOwner => "github_owner",
            RouteKind::SlackTeam => "slack_team",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Lower is more specific.
    pub fn precedence(self) -> usize {
        Self::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(usize::MAX)
    }

    /// Identifiers that name a whole organisation's tooling (a Slack workspace, a GitHub owner):
    /// they select the org when the caller does not know it.
    pub fn is_org_level(self) -> bool {
        matches!(self, RouteKind::GithubOwner | RouteKind::SlackTeam)
    }
}

pub const MAX_VALUE_LEN: usize = 256;

/// Validates and normalises a value: GitHub and GitLab names are case-insensitive, so they are
/// lower-cased; alert labels must be `key=value`; other ids are kept as sent (Slack ids are
/// case-sensitive).
pub fn normalise_route_value(kind: RouteKind, value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(format!("must be at most {MAX_VALUE_LEN} characters"));
    }
    match kind {
        RouteKind::GithubRepo | RouteKind::GitlabProject => {
            if !v.contains('/') || v.starts_with('/') || v.ends_with('/') {
                return Err(format!("{} must look like owner/name", kind.as_str()));
            }
            Ok(v.to_ascii_lowercase())
        }
        RouteKind::GithubOwner => Ok(v.to_ascii_lowercase()),
        RouteKind::AlertLabel => match v.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() && !val.trim().is_empty() => {
                Ok(format!("{}={}", k.trim(), val.trim()))
            }
            _ => Err("alert_label must be key=value, for example team=payments".into()),
        },
        _ => Ok(v.to_owned()),
    }
}

/// The identifiers a layer's `routing` section declares, normalised and de-duplicated. Assumes
/// the layer passed validation.
pub fn routes_of_layer(layer: &Value) -> Vec<(RouteKind, String)> {
    let mut out = Vec::new();
    let Some(routing) = layer.get("routing").and_then(Value::as_object) else {
        return out;
    };
    for (k, v) in routing {
        let Some(kind) = RouteKind::parse(k) else {
            continue;
        };
        let values: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            Value::Null => continue,
            other => vec![other],
        };
        for v in values {
            if let Some(s) = v.as_str()
                && let Ok(n) = normalise_route_value(kind, s)
                && !out.contains(&(kind, n.clone()))
            {
                out.push((kind, n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn precedence_puts_specific_first() {
        assert!(RouteKind::GithubRepo.precedence() < RouteKind::GithubOwner.precedence());
        assert!(RouteKind::SlackChannel.precedence() < RouteKind::SlackTeam.precedence());
        for k in RouteKind::ALL {
            assert_eq!(RouteKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn normalises_values() {
        assert_eq!(
            normalise_route_value(RouteKind::GithubRepo, "Acme/API").unwrap(),
            "acme/api"
        );
        assert!(normalise_route_value(RouteKind::GithubRepo, "acme").is_err());
        assert_eq!(
            normalise_route_value(RouteKind::AlertLabel, "team = pay").unwrap(),
            "team=pay"
        );
        assert!(normalise_route_value(RouteKind::AlertLabel, "team").is_err());
        assert_eq!(
            normalise_route_value(RouteKind::SlackChannel, "C0ABC").unwrap(),
            "C0ABC"
        );
        assert!(normalise_route_value(RouteKind::Service, " ").is_err());
    }

    #[test]
    fn extracts_layer_routes() {
        let layer = json!({"routing": {"service": ["api", "api", "web"], "github_repo": "Acme/Api", "slack_channel": null}});
        let routes = routes_of_layer(&layer);
        assert_eq!(routes.len(), 3);
        assert!(routes.contains(&(RouteKind::GithubRepo, "acme/api".into())));
    }
}
