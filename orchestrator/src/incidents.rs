//! Incidents (ADR 0012): the team's correlation rules and what they say about one event. Pure
//! functions; the store applies them under a per-team lock (`store::incidents`).
//!
//! A team's config says:
//! ```json
//! {"incidents": {"window": "10m", "group_by": ["service"], "reopen_grace": "1h"},
//!  "agent": {"trigger": "incident"}}
//! ```
//! - `window`: a signal joins an open incident whose last signal is at most this old;
//! - `group_by`: the fields whose values must match (`service`, `source`); a signal with none of
//!   them joins the team's most recent open incident within the window;
//! - a signal of an alert an open incident already has (the same PagerDuty incident, the same
//!   Alertmanager group) or with the same correlation key joins it whatever its age;
//! - `reopen_grace`: how long after resolving an incident may be reopened by hand;
//! - `agent.trigger`: `incident` (the default: one run per incident, follow-ups for signals after a
//!   run ended) or `event` (a run per event, as before incidents: the team keeps no incidents).

use std::time::Duration;

use serde_json::Value;

use crate::sources::Facts;

/// The fields `group_by` may name.
pub const GROUP_FIELDS: &[&str] = &["service", "source"];

/// A team's correlation rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub window_ms: i64,
    pub group_by: Vec<String>,
    pub reopen_grace_ms: i64,
    /// One run per incident (`agent.trigger: "incident"`), or one per event.
    pub per_incident: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            window_ms: 10 * 60_000,
            group_by: vec!["service".into()],
            reopen_grace_ms: 3_600_000,
            per_incident: true,
        }
    }
}

fn duration_ms(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_str)
        .and_then(|s| humantime::parse_duration(s).ok())
        .map(|d: Duration| d.as_millis() as i64)
}

impl Rules {
    /// The rules in a team's effective config; what it leaves out (or the config-service's
    /// validation would have refused) takes the default.
    pub fn from_config(config: &Value) -> Self {
        let d = Self::default();
        let i = config.get("incidents");
        let group_by = i
            .and_then(|i| i.get("group_by"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|f| GROUP_FIELDS.contains(f))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or(d.group_by);
        Self {
            window_ms: duration_ms(i.and_then(|i| i.get("window"))).unwrap_or(d.window_ms),
            group_by,
            reopen_grace_ms: duration_ms(i.and_then(|i| i.get("reopen_grace")))
                .unwrap_or(d.reopen_grace_ms),
            per_incident: config.pointer("/agent/trigger").and_then(Value::as_str) != Some("event"),
        }
    }

    /// The values of the `group_by` fields, as `field=value` joined by `,`; `None` when the event
    /// has none of them.
    pub fn group_key(&self, source: &str, facts: &Facts) -> Option<String> {
        let parts: Vec<String> = self
            .group_by
            .iter()
            .filter_map(|f| match f.as_str() {
                "service" => facts.service.as_ref().map(|s| format!("service={s}")),
                "source" => Some(format!("source={source}")),
                _ => None,
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// What a signal means for its incident's agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPlan {
    /// Start a run with the incident in its context: the first, or a follow-up for signals that
    /// came after the last run ended.
    Start,
    /// A run of the incident is still going: when it ends, a follow-up run takes the signals it
    /// did not have.
    Wait { run_id: String },
    /// A run already had this signal in its context.
    Seen { run_id: String },
    /// No run: a resolution, or a signal of an incident no run will take (why).
    None(String),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rules_default_to_service_within_ten_minutes_and_a_run_per_incident() {
        assert_eq!(Rules::from_config(&json!({})), Rules::default());
        let r = Rules::from_config(
            &json!({"incidents": {"window": "30m", "group_by": ["source", "nope"],
            "reopen_grace": "2h"}, "agent": {"trigger": "event"}}),
        );
        assert_eq!(r.window_ms, 30 * 60_000);
        assert_eq!(r.group_by, ["source"]);
        assert_eq!(r.reopen_grace_ms, 7_200_000);
        assert!(!r.per_incident);
    }

    #[test]
    fn group_keys_name_the_fields_a_signal_has() {
        let r = Rules::default();
        let with = Facts::default().service(Some("Checkout".into()));
        assert_eq!(
            r.group_key("pagerduty", &with).as_deref(),
            Some("service=checkout")
        );
        assert_eq!(r.group_key("slack", &Facts::default()), None);
        let both = Rules {
            group_by: vec!["service".into(), "source".into()],
            ..Rules::default()
        };
        assert_eq!(
            both.group_key("sentry", &with).as_deref(),
            Some("service=checkout,source=sentry")
        );
    }
}
