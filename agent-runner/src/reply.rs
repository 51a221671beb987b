//! Posting a run's answer where the event came from, and to the team's default destinations.
//!
//! A [`Report`] is the answer (the summary), the findings (what each tool call showed, briefly)
//! and the tools used, rendered for each destination:
//! - Slack: `chat.postMessage` with blocks (header, summary, findings, a context line with the
//!   tools and tokens), in the thread the question came from;
//! - GitHub: an issue or pull request comment in Markdown;
//! - PagerDuty: an incident note (`POST /incidents/{id}/notes`).
//!
//! Destinations are the event's reply target plus `notifications` in config
//! (`{"slack": {"channel": "C123"}}` posts every answer of the team to that channel too; `"off"` in
//! a lower layer turns an inherited default off). Credentials are secret references.

use serde_json::{Value, json};

use switchyard_api::runs::REPLY_TITLE;

use crate::AppState;
use crate::agent::{Step, Transcript};
use crate::toolsets::Secrets;

/// Most characters of one Slack section (Slack's limit is 3,000).
const SLACK_SECTION: usize = 2900;
/// Most findings shown.
const MAX_FINDINGS: usize = 8;
/// Most characters of one finding.
const FINDING: usize = 200;

/// What a run found, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub run_id: String,
    pub summary: String,
    /// `tool: what it showed` (or the error), in the order they were called.
    pub findings: Vec<String>,
    /// Each tool called, with how many times.
    pub tools: Vec<(String, usize)>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

fn clip(s: &str, max: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Report {
    pub fn new(run_id: &str, summary: &str, t: &Transcript) -> Self {
        let mut findings = Vec::new();
        let mut tools: Vec<(String, usize)> = Vec::new();
        for step in &t.steps {
            if let Step::Tool {
                name,
                output,
                error,
                ..
            } = step
            {
                match tools.iter_mut().find(|(n, _)| n == name) {
                    Some((_, count)) => *count += 1,
                    None => tools.push((name.clone(), 1)),
                }
                let what = if *error {
                    format!("{name} failed: {}", clip(output, FINDING))
                } else {
                    format!("{name}: {}", clip(output, FINDING))
                };
                findings.push(what);
            }
        }
        findings.truncate(MAX_FINDINGS);
        Self {
            run_id: run_id.to_owned(),
            summary: summary.to_owned(),
            findings,
            tools,
            input_tokens: t.usage.input_tokens,
            output_tokens: t.usage.output_tokens,
        }
    }

    fn tools_line(&self) -> String {
        if self.tools.is_empty() {
            return "no tools used".into();
        }
        let list: Vec<String> = self
            .tools
            .iter()
            .map(|(n, c)| {
                if *c > 1 {
                    format!("{n} ×{c}")
                } else {
                    n.clone()
                }
            })
            .collect();
        format!("tools used: {}", list.join(", "))
    }

    fn footer(&self) -> String {
        format!(
            "{} · run {} · {} input / {} output tokens",
            self.tools_line(),
            self.run_id,
            self.input_tokens,
            self.output_tokens
        )
    }

    /// Slack blocks, with `text` as the notification fallback.
    pub fn slack(&self) -> Value {
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": REPLY_TITLE}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": clip_keep_lines(&self.summary, SLACK_SECTION)}}),
        ];
        if !self.findings.is_empty() {
            let lines: Vec<String> = self.findings.iter().map(|f| format!("• {f}")).collect();
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
                "text": clip_keep_lines(&format!("*Findings*\n{}", lines.join("\n")), SLACK_SECTION)}}));
        }
        blocks.push(
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": self.footer()}]}),
        );
        json!({"text": clip_keep_lines(&self.summary, SLACK_SECTION), "blocks": blocks})
    }

    /// A Markdown comment (GitHub).
    pub fn markdown(&self) -> String {
        let mut out = format!("### {REPLY_TITLE}\n\n{}\n", self.summary);
        if !self.findings.is_empty() {
            out.push_str("\n**Findings**\n");
            for f in &self.findings {
                out.push_str(&format!("- {f}\n"));
            }
        }
        out.push_str(&format!("\n<sub>{}</sub>\n", self.footer()));
        out
    }

    /// Plain text (a PagerDuty note).
    pub fn plain(&self) -> String {
        let mut out = format!("{REPLY_TITLE}\n\n{}\n", self.summary);
        if !self.findings.is_empty() {
            out.push_str("\nFindings:\n");
            for f in &self.findings {
                out.push_str(&format!("- {f}\n"));
            }
        }
        out.push_str(&format!("\n{}\n", self.footer()));
        clip_keep_lines(&out, 20_000)
    }
}

/// `s` cut to `max` characters, lines kept.
fn clip_keep_lines(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The credential at `pointer`: config holds a reference (`{"secret": "<name>"}`) that the org
/// secrets store resolved for the run; a literal is refused (the config-service no longer accepts
/// them, and one left from before must be moved to the store).
fn secret(secrets: &Secrets, config: &Value, pointer: &str, what: &str) -> Result<String, String> {
    let at = format!(
        "integrations{}",
        pointer.trim_start_matches("/integrations")
    );
    let v = config
        .pointer(pointer)
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("no {what} configured at {at}"))?;
    let Some(name) = v.get("secret").and_then(Value::as_str) else {
        return Err(format!(
            "{at} must refer to the org secrets store as {{\"secret\": \"<name>\"}}"
        ));
    };
    org_secret(secrets, name, &at)
}

/// The value of the org's secret `name`, which `at` (a config path, for the error) refers to.
pub fn org_secret(secrets: &Secrets, name: &str, at: &str) -> Result<String, String> {
    secrets
        .get(name)
        .cloned()
        .ok_or_else(|| format!("{at} refers to secret {name}, which the org does not have"))
}

/// Where a run's answer goes: the event's reply target if the team wants answers there
/// ([`wanted`]), then the team's `notifications` defaults that are not the same place.
pub fn destinations(config: &Value, reply_to: Option<&Value>) -> Vec<Value> {
    let mut out: Vec<Value> = reply_to
        .into_iter()
        .filter(|t| wanted(config, t))
        .cloned()
        .collect();
    if let Some(channel) = config
        .pointer("/notifications/slack/channel")
        .and_then(Value::as_str)
        && !out
            .iter()
            .any(|t| t["kind"] == "slack" && t["channel"] == channel && t["thread_ts"].is_null())
    {
        out.push(json!({"kind": "slack", "channel": channel}));
    }
    out
}

/// Whether the team wants answers at `target`. A PagerDuty incident gets a note only when the
/// team configured `integrations.pagerduty.api_key`: ingesting PagerDuty does not imply writing
/// to it. Slack threads and GitHub issues always get the answer (a missing token fails the run,
/// saying so), since the question was asked there.
pub fn wanted(config: &Value, target: &Value) -> bool {
    match target.get("kind").and_then(Value::as_str) {
        Some("pagerduty") => config
            .pointer("/integrations/pagerduty/api_key")
            .is_some_and(|v| !v.is_null()),
        _ => true,
    }
}

/// Posts the report to every destination; the ones that failed, with why.
pub async fn deliver(
    state: &AppState,
    secrets: &Secrets,
    config: &Value,
    targets: &[Value],
    report: &Report,
) -> Result<(), String> {
    let mut failed = Vec::new();
    for t in targets {
        if let Err(e) = post(state, secrets, config, t, report).await {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the answer could not be delivered: {}",
            failed.join("; ")
        ))
    }
}

/// Posts the report to `target`.
pub async fn post(
    state: &AppState,
    secrets: &Secrets,
    config: &Value,
    target: &Value,
    report: &Report,
) -> Result<(), String> {
    match target.get("kind").and_then(Value::as_str) {
        Some("slack") => {
            let token = secret(
                secrets,
                config,
                "/integrations/slack/bot_token",
                "Slack bot token",
            )?;
            let mut body = report.slack();
            body["channel"] = target["channel"].clone();
            if let Some(ts) = target.get("thread_ts").filter(|v| !v.is_null()) {
                body["thread_ts"] = ts.clone();
            }
            let resp = state
                .http
                .post(format!(
                    "{}/chat.postMessage",
                    state.replies.slack_api_base.trim_end_matches('/')
                ))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("Slack: {}", e.without_url()))?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() || v["ok"] != json!(true) {
                return Err(format!(
                    "Slack chat.postMessage failed: {status} {}",
                    v["error"].as_str().unwrap_or("")
                ));
            }
            Ok(())
        }
        Some("github") => {
            let token = secret(
                secrets,
                config,
                "/integrations/github/token",
                "GitHub token",
            )?;
            let repo = target["repo"]
                .as_str()
                .ok_or("the GitHub reply target has no repo")?;
            let number = target["issue_number"]
                .as_i64()
                .ok_or("the GitHub reply target has no issue_number")?;
            let resp = state
                .http
                .post(format!(
                    "{}/repos/{repo}/issues/{number}/comments",
                    state.replies.github_api_base.trim_end_matches('/')
                ))
                .bearer_auth(token)
                .header("accept", "application/vnd.github+json")
                .header("user-agent", "switchyard")
                .json(&json!({"body": report.markdown()}))
                .send()
                .await
                .map_err(|e| format!("GitHub: {}", e.without_url()))?;
            if !resp.status().is_success() {
                return Err(format!("GitHub comment failed: {}", resp.status()));
            }
            Ok(())
        }
        Some("pagerduty") => {
            let key = secret(
                secrets,
                config,
                "/integrations/pagerduty/api_key",
                "PagerDuty API key",
            )?;
            let from = config
                .pointer("/integrations/pagerduty/from")
                .and_then(Value::as_str)
                .ok_or("no PagerDuty user email configured at integrations/pagerduty/from")?;
            let incident = target["incident_id"]
                .as_str()
                .ok_or("the PagerDuty reply target has no incident_id")?;
            let resp = state
                .http
                .post(format!(
                    "{}/incidents/{incident}/notes",
                    state.replies.pagerduty_api_base.trim_end_matches('/')
                ))
                .header("authorization", format!("Token token={key}"))
                .header("from", from)
                .header("accept", "application/vnd.pagerduty+json;version=2")
                .json(&json!({"note": {"content": report.plain()}}))
                .send()
                .await
                .map_err(|e| format!("PagerDuty: {}", e.without_url()))?;
            if !resp.status().is_success() {
                return Err(format!("PagerDuty note failed: {}", resp.status()));
            }
            Ok(())
        }
        other => Err(format!("unknown reply target kind {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Usage;

    fn transcript() -> Transcript {
        let tool = |name: &str, output: &str, error: bool| Step::Tool {
            turn: 1,
            name: name.into(),
            arguments: json!({}),
            output: output.into(),
            error,
            duration_ms: 3,
            sub_agent: None,
        };
        Transcript {
            steps: vec![
                tool("prometheus_query", "{\"result\": [\n  0 ]}", false),
                tool("prometheus_query", &"x".repeat(500), false),
                tool("loki_query", "timeout", true),
            ],
            usage: Usage {
                input_tokens: 720,
                output_tokens: 35,
            },
            turns: 2,
        }
    }

    #[test]
    fn a_report_names_findings_and_tools_for_each_destination() {
        let r = Report::new("run_1", "checkout is down", &transcript());
        assert_eq!(
            r.tools,
            [
                ("prometheus_query".to_owned(), 2),
                ("loki_query".to_owned(), 1)
            ]
        );
        assert_eq!(r.findings[0], "prometheus_query: {\"result\": [ 0 ]}");
        assert!(r.findings[1].chars().count() <= FINDING + 20 && r.findings[1].ends_with('…'));
        assert_eq!(r.findings[2], "loki_query failed: timeout");
        let s = r.slack();
        assert_eq!(s["text"], "checkout is down");
        let kinds: Vec<&str> = s["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["header", "section", "section", "context"]);
        assert_eq!(
            s["blocks"][3]["elements"][0]["text"],
            "tools used: prometheus_query ×2, loki_query · run run_1 · 720 input / 35 output tokens"
        );
        assert!(r.markdown().contains("**Findings**\n- prometheus_query"));
        assert!(
            r.plain()
                .starts_with("Switchyard investigation\n\ncheckout is down\n")
        );
        // No tools: no findings section.
        let bare = Report::new("r", "fine", &Transcript::default());
        assert_eq!(bare.slack()["blocks"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn pagerduty_notes_only_when_the_team_configured_them() {
        let pd = json!({"kind": "pagerduty", "incident_id": "P1"});
        assert!(!wanted(&json!({}), &pd));
        assert!(wanted(
            &json!({"integrations": {"pagerduty": {"api_key": {"secret": "pd"}}}}),
            &pd
        ));
        assert!(wanted(
            &json!({}),
            &json!({"kind": "slack", "channel": "C1"})
        ));
    }

    #[test]
    fn notifications_add_a_channel_unless_it_is_the_reply() {
        let cfg = json!({"notifications": {"slack": {"channel": "C0OPS"}}});
        let thread = json!({"kind": "slack", "channel": "C0OPS", "thread_ts": "1.2"});
        assert_eq!(destinations(&cfg, Some(&thread)).len(), 2);
        let top = json!({"kind": "slack", "channel": "C0OPS"});
        assert_eq!(destinations(&cfg, Some(&top)), [top]);
        assert_eq!(
            destinations(&cfg, None),
            [json!({"kind": "slack", "channel": "C0OPS"})]
        );
        let off = json!({"notifications": {"slack": "off"}});
        assert!(destinations(&off, None).is_empty());
    }
}
