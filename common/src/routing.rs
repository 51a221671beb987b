//! Routing identifiers: which values of an incoming event name the team that owns it.
//!
//! Shared by the config-service (which indexes and looks them up) and the orchestrator (whose
//! normalisers must only send identifiers the lookup accepts, see [`clean_identifiers`]).

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

    /// Identifiers that name a whole organisation's tooling (a Slack workspace, a GitHub account).
    /// The platform's shared Slack app and GitHub App deliver events of every tenant to one URL,
    /// so only these can say which org an event belongs to. That makes them tenant-wide: unique
    /// across all orgs (a unique index) and assigned by the platform admin only, never claimed by
    /// an org admin (who could otherwise claim another tenant's workspace and receive its events).
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

/// Largest number of identifiers one routing lookup accepts.
pub const MAX_IDENTIFIERS: usize = 64;

/// The identifiers of a normalised event as the routing lookup accepts them: known kinds only,
/// each value normalised ([`normalise_route_value`]), invalid values dropped, duplicates removed,
/// at most [`MAX_IDENTIFIERS`] (the first ones, which normalisers push most specific first). An
/// event whose sender put junk in one field still routes by its other identifiers, and our own
/// lookup never refuses what we send it.
pub fn clean_identifiers(ids: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(ids.len().min(MAX_IDENTIFIERS));
    for (k, v) in ids {
        if out.len() == MAX_IDENTIFIERS {
            break;
        }
        let Some(kind) = RouteKind::parse(&k) else {
            continue;
        };
        if let Ok(v) = normalise_route_value(kind, &v)
            && !out.iter().any(|(a, b)| *a == k && *b == v)
        {
            out.push((k, v));
        }
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

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
    fn clean_identifiers_drops_invalid_and_caps() {
        let mut ids = vec![
            ("github_repo".to_owned(), "no-slash".to_owned()),
            ("github_owner".to_owned(), "Acme".to_owned()),
            ("github_owner".to_owned(), "acme".to_owned()),
            ("made_up".to_owned(), "x".to_owned()),
            ("service".to_owned(), " ".to_owned()),
            ("service".to_owned(), "x".repeat(MAX_VALUE_LEN + 1)),
        ];
        for i in 0..100 {
            ids.push(("alert_label".to_owned(), format!("k{i}=v")));
        }
        let clean = clean_identifiers(ids);
        assert_eq!(clean[0], ("github_owner".to_owned(), "acme".to_owned()));
        assert_eq!(clean.len(), MAX_IDENTIFIERS);
        assert!(
            clean
                .iter()
                .all(|(k, _)| k == "github_owner" || k == "alert_label")
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(RouteKind::ALL.map(RouteKind::as_str).to_vec())
                .prop_map(str::to_owned),
            "[a-z_]{1,12}",
        ]
    }

    proptest! {
        /// Whatever a normaliser pushes, the lookup gets only what it accepts: known kinds,
        /// normalised values, no duplicates, at most MAX_IDENTIFIERS; and cleaning is idempotent.
        #[test]
        fn cleaned_identifiers_are_what_the_lookup_accepts(
            ids in prop::collection::vec((kind(), ".{0,40}"), 0..100)
        ) {
            let clean = clean_identifiers(ids);
            prop_assert!(clean.len() <= MAX_IDENTIFIERS);
            for (i, (k, v)) in clean.iter().enumerate() {
                let kind = RouteKind::parse(k);
                prop_assert!(kind.is_some());
                let again = normalise_route_value(kind.unwrap(), v);
                prop_assert_eq!(again.as_deref(), Ok(v.as_str()));
                prop_assert!(!clean[..i].contains(&(k.clone(), v.clone())));
            }
            prop_assert_eq!(clean_identifiers(clean.clone()), clean);
        }
    }
}
