//! The `slack` handler type: each published event as a readable Slack message (`text` for
//! notifications and clients without blocks, one `mrkdwn` section with the details), POSTed to an
//! incoming webhook. Text that came from outside (titles, summaries, errors) is escaped, so a
//! webhook payload cannot mention `@channel` or forge links.

use serde_json::{Value, json};

/// Slack shows at most 3,000 characters of a section; a summary is cut well before that.
const MAX_TEXT: usize = 2_000;

/// Slack's three control characters in `mrkdwn`, escaped as its documentation asks.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A string field of `data`, escaped and cut to [`MAX_TEXT`]; `-` when absent.
fn field(data: &Value, key: &str) -> String {
    let s = match &data[key] {
        Value::String(s) => s.clone(),
        Value::Null => return "-".into(),
        other => other.to_string(),
    };
    let s = escape(&s);
    match switchyard_common::text::prefix(&s, MAX_TEXT) {
        kept if kept.len() < s.len() => format!("{kept}…"),
        _ => s,
    }
}

/// `a, b, c` of a list of strings.
fn list(data: &Value, key: &str) -> String {
    data[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(escape)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// The headline and the details of one event (`envelope` as published: `type`, `org_id`,
/// `team_id`, `data`).
fn describe(envelope: &Value) -> (String, String) {
    let kind = envelope["type"].as_str().unwrap_or("event");
    let d = &envelope["data"];
    let team = match envelope["team_id"].as_str() {
        Some(t) => format!("team *{}*", escape(t)),
        None => format!(
            "org *{}*",
            escape(envelope["org_id"].as_str().unwrap_or("-"))
        ),
    };
    let (f, l) = (|k| field(d, k), |k| list(d, k));
    match kind {
        "run.started" => (
            format!(":robot_face: Agent run started for {team}"),
            format!(
                "Run `{}`, triggered by event `{}`.",
                f("run_id"),
                f("trigger_event_id")
            ),
        ),
        "run.succeeded" => (
            format!(":white_check_mark: Agent run finished for {team}"),
            format!("*Summary:* {}\nRun `{}`.", f("summary"), f("run_id")),
        ),
        "run.failed" => (
            format!(":x: Agent run failed for {team}"),
            format!(
                "*Error:* {}\nRun `{}`, {} attempt(s).",
                f("error"),
                f("run_id"),
                f("attempts")
            ),
        ),
        "run.cancelled" => (
            format!(":no_entry_sign: Agent run cancelled for {team}"),
            format!("Run `{}`.", f("run_id")),
        ),
        "incident.opened" => (
            format!(
                ":rotating_light: Incident opened for {team}: *{}*",
                f("title")
            ),
            format!(
                "*Severity:* {}  *Service:* {}  *From:* {}\nIncident `{}`{}.",
                f("severity"),
                f("service"),
                l("sources"),
                f("incident_id"),
                d["previous_id"]
                    .as_str()
                    .map(|p| format!(", follows `{}`", escape(p)))
                    .unwrap_or_default()
            ),
        ),
        "incident.updated" => (
            format!(
                ":large_orange_diamond: Incident updated for {team}: *{}*",
                f("title")
            ),
            format!(
                "*Severity:* {}  *Signals:* {}  *From:* {}  *Status:* {}\nIncident `{}`, last signal {}.",
                f("severity"),
                d["members"]
                    .as_array()
                    .map_or_else(|| f("members"), |m| m.len().to_string()),
                l("sources"),
                f("status"),
                f("incident_id"),
                f("last_seen")
            ),
        ),
        "incident.resolved" => (
            format!(
                ":large_green_circle: Incident resolved for {team}: *{}*",
                f("title")
            ),
            format!(
                "Resolved by {} at {}.\nIncident `{}`, first seen {}.",
                f("resolved_by"),
                f("resolved_at"),
                f("incident_id"),
                f("first_seen")
            ),
        ),
        "event.received" => (
            format!(":inbox_tray: A {} event was received", f("source")),
            format!("`{}`, event `{}`.", f("event_type"), f("event_id")),
        ),
        "event.dispatched" => (
            format!(
                ":arrow_forward: A {} event was dispatched to {team}",
                f("source")
            ),
            format!(
                "`{}`, event `{}`, run `{}`.",
                f("event_type"),
                f("event_id"),
                f("run_id")
            ),
        ),
        "event.dead_lettered" => (
            format!(
                ":warning: A {} event could not be dispatched ({team})",
                f("source")
            ),
            format!(
                "*Error:* {}\n`{}`, event `{}`: replay it once the cause is fixed.",
                f("error"),
                f("event_type"),
                f("event_id")
            ),
        ),
        "event.unrouted" => (
            format!(":grey_question: No team owns a {} event", f("source")),
            format!(
                "{}\n`{}`, event `{}`.",
                f("error"),
                f("event_type"),
                f("event_id")
            ),
        ),
        "provisioning.succeeded" | "provisioning.rolled_back" | "provisioning.failed" => {
            let (icon, what) = match kind {
                "provisioning.succeeded" => (":white_check_mark:", "succeeded"),
                "provisioning.rolled_back" => (":leftwards_arrow_with_hook:", "was rolled back"),
                _ => (":x:", "failed"),
            };
            (
                format!("{icon} Team {} {}ing {what}", f("team_id"), f("kind")),
                format!(
                    "Run `{}`. {}",
                    f("run_id"),
                    d["error"].as_str().map(escape).unwrap_or_default()
                ),
            )
        }
        "integration.secret_rotated" => (
            format!(":key: A {} integration's secret was rotated", f("source")),
            format!(
                "Integration `{}`, new secret fingerprint `{}`.",
                f("integration_id"),
                field(&d["secret"], "fingerprint")
            ),
        ),
        "subscription.disabled" => (
            ":no_bell: A subscription was disabled".to_owned(),
            format!("{}\nSubscription `{}`.", f("reason"), f("subscription_id")),
        ),
        other => (
            format!("Switchyard event `{}` for {team}", escape(other)),
            format!("```{}```", field(envelope, "data")),
        ),
    }
}

/// The message body for the incoming webhook.
pub fn message(envelope: &Value) -> Value {
    let (headline, details) = describe(envelope);
    json!({
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{headline}\n{details}")}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                "`{}` · {} · Switchyard",
                escape(envelope["type"].as_str().unwrap_or("-")),
                escape(envelope["timestamp"].as_str().unwrap_or("-"))
            )}]}
        ],
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, data: Value) -> Value {
        json!({"id": "e1", "type": kind, "version": 1, "timestamp": "2026-12-04T10:00:00Z",
            "org_id": "acme", "team_id": "checkout", "data": data})
    }

    #[test]
    fn every_published_type_reads_as_a_sentence() {
        for kind in crate::http::subscriptions::EVENT_TYPES {
            let m = message(&envelope(
                kind,
                json!({"run_id": "r1", "title": "t", "source": "pagerduty"}),
            ));
            let text = m["text"].as_str().unwrap();
            assert!(
                !text.contains("Switchyard event"),
                "{kind} has no message of its own: {text}"
            );
            assert!(
                m["blocks"][0]["text"]["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(text)
            );
        }
    }

    #[test]
    fn a_finished_run_says_its_summary_and_team() {
        let m = message(&envelope(
            "run.succeeded",
            json!({"run_id": "r1", "summary": "The checkout pods ran out of memory."}),
        ));
        assert_eq!(
            m["text"],
            ":white_check_mark: Agent run finished for team *checkout*"
        );
        let body = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            body.contains("*Summary:* The checkout pods ran out of memory."),
            "{body}"
        );
        assert!(body.contains("Run `r1`"), "{body}");
    }

    #[test]
    fn outside_text_cannot_mention_everyone_or_forge_links() {
        let m = message(&envelope(
            "incident.opened",
            json!({"title": "<!channel> <https://evil.example|click> & more", "severity": "high",
                "sources": ["alertmanager", "pagerduty"], "incident_id": "i1"}),
        ));
        let all = m.to_string();
        assert!(
            !all.contains("<!channel>") && !all.contains("<https://evil"),
            "{all}"
        );
        assert!(
            all.contains("&lt;!channel&gt;") && all.contains("&amp; more"),
            "{all}"
        );
        assert!(all.contains("alertmanager, pagerduty"), "{all}");
    }

    #[test]
    fn long_summaries_are_cut() {
        let long = "é".repeat(5_000);
        let m = message(&envelope("run.succeeded", json!({"summary": long})));
        assert!(m["blocks"][0]["text"]["text"].as_str().unwrap().len() < 3_000);
    }
}
