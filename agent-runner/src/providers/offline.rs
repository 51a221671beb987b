//! The offline provider: no model. It answers at once with a deterministic summary of the trigger
//! (the first user message), naming the configured model and following the system prompt, so dev
//! mode and tests exercise the whole path without an LLM key, and a config change shows in the
//! next run's answer.

use futures_util::future::BoxFuture;

use super::{Provider, ProviderError};
use crate::messages::{DEFAULT_SYSTEM, Message, Turn, TurnRequest, Usage};

pub struct Offline;

impl Provider for Offline {
    fn turn<'a>(&'a self, req: &'a TurnRequest<'a>) -> BoxFuture<'a, Result<Turn, ProviderError>> {
        Box::pin(async move {
            let trigger = req.messages.iter().find_map(|m| match m {
                Message::User { content } => Some(content.as_str()),
                _ => None,
            });
            Ok(Turn {
                text: Some(summary(req.model, req.system, trigger.unwrap_or(""))),
                tool_calls: Vec::new(),
                usage: Usage::default(),
                waited: Default::default(),
            })
        })
    }
}

/// `[switchyard/<model>] <the first line of the first user message>` and the gist of a configured
/// system prompt.
pub fn summary(model: &str, system: &str, trigger: &str) -> String {
    let headline = trigger.lines().next().unwrap_or("").trim();
    let mut out = format!("[switchyard/{model}] {headline}");
    let guidance: String = system.chars().take(80).collect();
    if !guidance.is_empty() && system != DEFAULT_SYSTEM {
        out.push_str(&format!(". Guidance: {guidance}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_deterministic_and_follows_config() {
        let t = "slack app_mention for team checkout (slack:T:C:1)\nidentifiers: slack_team=T";
        let a = summary("m1", DEFAULT_SYSTEM, t);
        assert_eq!(
            a,
            "[switchyard/m1] slack app_mention for team checkout (slack:T:C:1)"
        );
        assert_eq!(a, summary("m1", DEFAULT_SYSTEM, t));
        assert!(summary("m2", "be brief", t).ends_with(". Guidance: be brief"));
    }
}
