//! The `agent` section of a team's effective config, typed. The config-service validates it when a
//! layer is written; this reads what it holds, with defaults.

use serde_json::Value;

pub use crate::messages::DEFAULT_SYSTEM;

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// `openai`, `anthropic` or `offline`.
    pub provider: String,
    pub model: String,
    /// The provider's base URL.
    pub endpoint: Option<String>,
    /// The name of the org secret holding the API key (`{"secret": "<name>"}` in config).
    pub api_key_secret: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: u32,
    pub max_turns: u32,
    pub deadline_seconds: u64,
    pub prompts: Prompts,
    /// The tools the team enabled, by name.
    pub tools: Vec<String>,
    /// Tokens the run may use, and whose budget that is (`team` or `org`); set by the runner
    /// from the day's budgets, not from config. `None`: no limit.
    pub token_budget: Option<(u64, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompts {
    pub system: Option<String>,
    /// Put before and after the trigger in the first user message.
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

impl Prompts {
    pub fn system(&self) -> &str {
        self.system.as_deref().unwrap_or(DEFAULT_SYSTEM)
    }

    /// The first user message: prefix, trigger, suffix.
    pub fn wrap(&self, trigger: &str) -> String {
        let mut out = String::new();
        if let Some(p) = &self.prefix {
            out.push_str(p);
            out.push_str("\n\n");
        }
        out.push_str(trigger);
        if let Some(s) = &self.suffix {
            out.push_str("\n\n");
            out.push_str(s);
        }
        out
    }
}

impl AgentConfig {
    /// Reads the section (absent: the offline provider with defaults). `deadline_cap` bounds
    /// `deadline_seconds` by the runner's own run deadline.
    pub fn parse(agent: Option<&Value>, deadline_cap: u64) -> Result<Self, String> {
        let empty = Value::Object(Default::default());
        let a = agent.unwrap_or(&empty);
        if !a.is_object() {
            return Err("agent must be an object".into());
        }
        let str_at = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_owned);
        let num = |k: &str, default: u64, max: u64| -> Result<u64, String> {
            match a.get(k) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| format!("agent.{k} must be a whole number from 1 to {max}")),
            }
        };
        let api_key_secret = match a.get("api_key") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.get("secret")
                    .and_then(Value::as_str)
                    .ok_or("agent.api_key must refer to the org secrets store as {\"secret\": \"<name>\"}")?
                    .to_owned(),
            ),
        };
        let prompt = |k: &str| {
            a.pointer(&format!("/prompts/{k}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(Self {
            provider: str_at("provider").unwrap_or_else(|| "offline".into()),
            model: str_at("model").unwrap_or_else(|| "offline".into()),
            endpoint: str_at("endpoint"),
            api_key_secret,
            temperature: a.get("temperature").and_then(Value::as_f64),
            max_tokens: num("max_tokens", 2048, 200_000)? as u32,
            max_turns: num("max_turns", 8, 64)? as u32,
            deadline_seconds: num("deadline_seconds", 300, 3600)?.min(deadline_cap.max(1)),
            prompts: Prompts {
                system: prompt("system"),
                prefix: prompt("prefix"),
                suffix: prompt("suffix"),
            },
            tools: a
                .get("tools")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            token_budget: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_bounds() {
        let c = AgentConfig::parse(None, 120).unwrap();
        assert_eq!(
            (c.provider.as_str(), c.max_turns, c.deadline_seconds),
            ("offline", 8, 120)
        );
        assert_eq!(c.prompts.system(), DEFAULT_SYSTEM);
        let c = AgentConfig::parse(
            Some(&json!({"provider": "openai", "model": "m", "api_key": {"secret": "llm"}, "max_turns": 3,
                "prompts": {"system": "s", "prefix": "p"}, "tools": ["prometheus_query"]})),
            600,
        )
        .unwrap();
        assert_eq!(c.api_key_secret.as_deref(), Some("llm"));
        assert_eq!(c.prompts.wrap("t"), "p\n\nt");
        assert_eq!(c.tools, vec!["prometheus_query"]);
        assert!(AgentConfig::parse(Some(&json!({"api_key": "sk-literal"})), 60).is_err());
        assert!(AgentConfig::parse(Some(&json!({"max_turns": 0})), 60).is_err());
    }
}
