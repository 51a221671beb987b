//! Tools behind one trait: each has the JSON schema the model sees, and answers text the loop
//! feeds back, truncated to the tool box's budget. A run's [`ToolBox`] holds only the tools its
//! team enabled; a call to any other is answered with an error the model can read, never run.

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::Transcript;
use crate::messages::ToolSpec;

/// One tool.
pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    /// Runs with the model's arguments; `Err` is a failure the model is told about.
    fn call<'a>(&'a self, arguments: &'a Value) -> BoxFuture<'a, Result<String, String>>;
    /// [`Tool::call`], with the transcript of the agent loop the tool ran, if it is a sub-agent
    /// (its steps nest in the run's transcript, its tokens count in the run's usage).
    fn call_traced<'a>(
        &'a self,
        arguments: &'a Value,
    ) -> BoxFuture<'a, (Result<String, String>, Option<Transcript>)> {
        Box::pin(async move { (self.call(arguments).await, None) })
    }
}

/// What a call answered, as the model will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub output: String,
    pub error: bool,
    /// A sub-agent's own transcript.
    pub sub: Option<Transcript>,
}

/// The tools of one run.
pub struct ToolBox {
    /// Each tool with its name, read once when it is added (a spec builds its JSON schema).
    tools: Vec<(String, Box<dyn Tool>)>,
    /// Most bytes of one tool output fed back to the model.
    pub output_budget: usize,
}

/// Bytes of a tool output fed back by default.
pub const DEFAULT_OUTPUT_BUDGET: usize = 8 * 1024;

impl Default for ToolBox {
    fn default() -> Self {
        Self {
            tools: Vec::new(),
            output_budget: DEFAULT_OUTPUT_BUDGET,
        }
    }
}

impl ToolBox {
    /// Whether a tool of this name is in the box.
    pub fn has(&self, name: &str) -> bool {
        self.tools.iter().any(|(n, _)| n == name)
    }

    pub fn with(mut self, tool: Box<dyn Tool>) -> Self {
        self.tools.push((tool.spec().name, tool));
        self
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|(_, t)| t.spec()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub async fn call(&self, name: &str, arguments: &Value) -> ToolResult {
        let Some((_, tool)) = self.tools.iter().find(|(n, _)| n == name) else {
            return ToolResult {
                output: format!("there is no tool named {name:?} in this run"),
                error: true,
                sub: None,
            };
        };
        let (result, sub) = tool.call_traced(arguments).await;
        match result {
            Ok(out) => ToolResult {
                output: truncate(&out, self.output_budget),
                error: false,
                sub,
            },
            Err(e) => ToolResult {
                output: truncate(&format!("error: {e}"), self.output_budget),
                error: true,
                sub,
            },
        }
    }
}

/// `s` cut to at most `budget` bytes on a character boundary, saying how much was cut.
pub fn truncate(s: &str, budget: usize) -> String {
    if s.len() <= budget {
        return s.to_owned();
    }
    let kept = switchyard_common::text::prefix(s, budget);
    format!("{kept}… [{} more bytes cut]", s.len() - kept.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole_and_says_so() {
        assert_eq!(truncate("short", 10), "short");
        let t = truncate("ééééé", 3);
        assert!(t.starts_with('é') && t.contains("more bytes cut"), "{t}");
    }
}
