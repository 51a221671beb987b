//! The conversation as every provider sees it, whatever its wire format: messages, tool calls,
//! tool specifications, and what one model turn answered.

use serde::Serialize;
use serde_json::Value;

/// The system prompt when the team's config sets none.
pub const DEFAULT_SYSTEM: &str = "You are Switchyard's incident investigator. Find what is wrong \
and why, using the tools you have, then answer briefly: the finding, the evidence, the next step.";

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    User {
        content: String,
    },
    Assistant {
        content: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    /// A tool's answer to the call `call_id`.
    Tool {
        call_id: String,
        name: String,
        content: String,
    },
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The provider's id of the call (tool results refer to it).
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

/// Tokens one or more turns used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }

    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// What the model asked for in one turn, with the reasoning settings it was asked under.
#[derive(Debug, Clone)]
pub struct TurnRequest<'a> {
    pub model: &'a str,
    pub system: &'a str,
    pub messages: &'a [Message],
    pub tools: &'a [ToolSpec],
    pub temperature: Option<f64>,
    pub max_tokens: u32,
}

/// One model turn's answer: text, tool calls (several may come in one turn), or both.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// How long the turn waited on the model's endpoint (sending, the model's time, receiving,
    /// retries): the rest of the turn is the runner's own time.
    pub waited: std::time::Duration,
}
