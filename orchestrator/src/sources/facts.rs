//! What correlation compares across senders (ADR 0012): the service a signal is about, how severe
//! it is, and which alert or incident at the sender it is a state of. Each sender's module reads
//! them from its own payload; this file holds the shape and the severity scale they share, so one
//! service seen by three tools is one service and a PagerDuty `high` ranks with an Alertmanager
//! `critical`.

use serde::{Deserialize, Serialize};

/// A signal's comparable facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The service the signal is about, as its sender names it (lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `critical`, `high`, `medium`, `low` or `info` (see [`severity`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The alert or incident at the sender whose state this signal reports; a member with one can
    /// resolve, and an incident resolves when all of them have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// `<source>:<the sender's id>`, e.g. `pagerduty:PABC123` or `alertmanager:<groupKey>`.
    pub key: String,
    /// This signal says the alert resolved.
    pub resolved: bool,
}

impl Facts {
    /// A service name as senders spell it, compared case-insensitively.
    pub fn service(mut self, name: Option<String>) -> Self {
        self.service = name
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty());
        self
    }

    pub fn severity(mut self, raw: Option<String>) -> Self {
        self.severity = raw.as_deref().and_then(severity).map(str::to_owned);
        self
    }

    pub fn alert(mut self, key: Option<String>, resolved: bool) -> Self {
        self.alert = key.map(|key| AlertState { key, resolved });
        self
    }
}

/// The scale, highest first.
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// A sender's severity or priority on the shared scale: Alertmanager and Grafana `severity`
/// labels, PagerDuty urgency and priority (`P1`..`P5`), incident.io severities (`SEV1`..),
/// Sentry levels. `None` for words it does not know.
pub fn severity(raw: &str) -> Option<&'static str> {
    let r = raw.trim().to_ascii_lowercase();
    let r = r.trim_start_matches("sev").trim_start_matches('-').trim();
    Some(match r {
        "critical" | "crit" | "fatal" | "emergency" | "disaster" | "page" | "p1" | "1" | "0" => {
            "critical"
        }
        "high" | "error" | "major" | "p2" | "2" => "high",
        "warning" | "warn" | "medium" | "moderate" | "average" | "p3" | "3" => "medium",
        "low" | "minor" | "p4" | "4" => "low",
        "info" | "informational" | "notice" | "debug" | "p5" | "5" | "none" => "info",
        _ => return None,
    })
}

/// Higher is more severe: 5 for `critical` down to 1 for `info`, 0 for none.
pub fn rank(severity: Option<&str>) -> i64 {
    severity
        .and_then(|s| SEVERITIES.iter().position(|x| *x == s))
        .map(|i| 5 - i as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fields::testing::{event, headers};
    use crate::sources::{Delivery, Source};

    fn facts(source: Source, h: &[(&'static str, &str)], body: &str) -> Facts {
        let h = headers(h);
        event(
            source
                .normalise(&Delivery::new(&h, body.as_bytes()))
                .unwrap(),
        )
        .facts
    }

    /// One service seen by every tool is one service: each sender's own field names it.
    #[test]
    fn every_sender_names_the_service_its_way() {
        let am = facts(
            Source::Alertmanager,
            &[],
            r#"{"version":"4","groupKey":"g1","status":"resolved",
            "commonLabels":{"service":"Checkout","severity":"critical"},"alerts":[{"status":"resolved","labels":{"service":"Checkout"}}]}"#,
        );
        assert_eq!(am.service.as_deref(), Some("checkout"));
        assert_eq!(am.severity.as_deref(), Some("critical"));
        assert_eq!(
            am.alert,
            Some(AlertState {
                key: "alertmanager:g1".into(),
                resolved: true
            })
        );
        let grafana = facts(
            Source::Grafana,
            &[],
            r#"{"groupKey":"g2","status":"firing","alerts":[{"labels":{"service":"checkout","severity":"warning"}}]}"#,
        );
        assert_eq!(
            (grafana.service.as_deref(), grafana.severity.as_deref()),
            (Some("checkout"), Some("medium"))
        );
        assert_eq!(grafana.alert.map(|a| a.resolved), Some(false));
        let pd = facts(
            Source::Pagerduty,
            &[],
            r#"{"event":{"event_type":"incident.resolved","data":{"id":"P1","type":"incident",
            "urgency":"high","priority":{"summary":"P1"},"service":{"id":"PSVC","summary":"Checkout"}}}}"#,
        );
        assert_eq!(
            (pd.service.as_deref(), pd.severity.as_deref()),
            (Some("checkout"), Some("critical"))
        );
        assert_eq!(
            pd.alert,
            Some(AlertState {
                key: "pagerduty:P1".into(),
                resolved: true
            })
        );
        let inc = facts(
            Source::Incidentio,
            &[("webhook-id", "m1")],
            r#"{"event_type":"public_incident.incident_updated_v2",
            "public_incident.incident_updated_v2":{"incident":{"id":"01INC","severity":{"name":"SEV2"},
            "incident_status":{"category":"closed"},"custom_field_entries":[{"custom_field":{"name":"Affected services"},
            "values":[{"value_catalog_entry":{"name":"checkout"}}]}]}}}"#,
        );
        assert_eq!(
            (inc.service.as_deref(), inc.severity.as_deref()),
            (Some("checkout"), Some("high"))
        );
        assert_eq!(
            inc.alert,
            Some(AlertState {
                key: "incidentio:01INC".into(),
                resolved: true
            })
        );
        let sentry = facts(
            Source::Sentry,
            &[("sentry-hook-resource", "issue")],
            r#"{"action":"created",
            "data":{"issue":{"id":"42","level":"error","project":{"slug":"checkout"}}}}"#,
        );
        assert_eq!(
            (sentry.service.as_deref(), sentry.severity.as_deref()),
            (Some("checkout"), Some("high"))
        );
        assert_eq!(
            sentry.alert.map(|a| (a.key, a.resolved)),
            Some(("sentry:42".into(), false))
        );
        let gitlab = facts(
            Source::Gitlab,
            &[("x-gitlab-event", "Issue Hook")],
            r#"{"object_kind":"issue",
            "project":{"name":"checkout","path_with_namespace":"acme/checkout"},"object_attributes":{"iid":3}}"#,
        );
        assert_eq!(gitlab.service.as_deref(), Some("checkout"));
        assert_eq!(gitlab.alert, None);
        // A Slack message names no service and cannot resolve.
        let slack = facts(
            Source::Slack,
            &[],
            r#"{"type":"event_callback","event_id":"E1","event":{"type":"app_mention","channel":"C1","ts":"1.1"}}"#,
        );
        assert_eq!(slack, Facts::default());
    }

    #[test]
    fn severities_from_every_sender_share_one_scale() {
        for (raw, want) in [
            ("critical", "critical"),
            ("P1", "critical"),
            ("SEV1", "critical"),
            ("sev-2", "high"),
            ("high", "high"),
            ("error", "high"),
            ("warning", "medium"),
            ("P3", "medium"),
            ("low", "low"),
            ("info", "info"),
        ] {
            assert_eq!(severity(raw), Some(want), "{raw}");
        }
        assert_eq!(severity("purple"), None);
        assert!(rank(Some("critical")) > rank(Some("high")));
        assert!(rank(Some("info")) > rank(None));
    }
}
