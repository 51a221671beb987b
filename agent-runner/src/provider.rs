//! Providers run the agent loop. The offline provider needs no model: it summarises the trigger
//! deterministically, so dev mode and tests exercise the whole path without an LLM key.

use serde_json::Value;

/// A deterministic summary of the event for the team, honouring the configured model name and
/// system prompt (so a config change is visible in the next run's output).
pub fn offline(agent: &Value, team: &str, trigger: &Value) -> String {
    let model = agent
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("offline");
    let source = trigger
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let event_type = trigger
        .get("event_type")
        .and_then(Value::as_str)
        .unwrap_or("event");
    let correlation = trigger
        .get("correlation_key")
        .and_then(Value::as_str)
        .unwrap_or("");
    let prompt = agent.pointer("/prompts/system").and_then(Value::as_str);
    let mut out = format!("[switchyard/{model}] {source} {event_type} for team {team}");
    if !correlation.is_empty() {
        out.push_str(&format!(" ({correlation})"));
    }
    if let Some(p) = prompt {
        let p: String = p.chars().take(80).collect();
        out.push_str(&format!(". Guidance: {p}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_is_deterministic_and_follows_config() {
        let t = json!({"source": "slack", "event_type": "app_mention", "correlation_key": "slack:T:C:1"});
        let a = offline(&json!({"model": "m1"}), "checkout", &t);
        assert_eq!(a, offline(&json!({"model": "m1"}), "checkout", &t));
        assert_eq!(
            a,
            "[switchyard/m1] slack app_mention for team checkout (slack:T:C:1)"
        );
        assert!(
            offline(
                &json!({"model": "m2", "prompts": {"system": "be brief"}}),
                "checkout",
                &t
            )
            .contains("m2")
        );
    }
}
