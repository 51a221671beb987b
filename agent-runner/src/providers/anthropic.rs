//! Anthropic's Messages API: `POST {endpoint}/v1/messages` with `x-api-key` and
//! `anthropic-version`; the system prompt apart, content as blocks, tool calls as `tool_use`
//! blocks and their results as `tool_result` blocks in the next user message.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Http, Provider, ProviderError};
use crate::messages::{Message, ToolCall, Turn, TurnRequest, Usage};

/// The API version this client speaks.
pub const VERSION: &str = "2023-06-01";

pub struct Anthropic {
    http: Http,
}

impl Anthropic {
    pub fn new(http: Http) -> Self {
        Self { http }
    }
}

/// Adds a user block: to the user message of the tool results just before it, if there is one
/// (the API wants roles to alternate), or as a new user message.
fn after_results(messages: &mut Vec<Value>, block: Value) {
    match messages.last_mut() {
        Some(last) if last["role"] == "user" && last["content"][0]["type"] == "tool_result" => {
            last["content"].as_array_mut().expect("blocks").push(block);
        }
        _ => messages.push(json!({"role": "user", "content": [block]})),
    }
}

/// The request body for one turn. Consecutive tool results (and text that follows them) go in
/// one user message, as the API requires.
pub fn request_body(req: &TurnRequest<'_>) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    for m in req.messages {
        match m {
            // Text after tool results (signals that joined between turns) goes in the same user
            // message, after its tool_result blocks, as the API wants roles to alternate.
            Message::User { content } => {
                after_results(&mut messages, json!({"type": "text", "text": content}))
            }
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if let Some(text) = content.as_ref().filter(|t| !t.is_empty()) {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for c in tool_calls {
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
                    );
                }
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            Message::Tool {
                call_id, content, ..
            } => {
                let block =
                    json!({"type": "tool_result", "tool_use_id": call_id, "content": content});
                after_results(&mut messages, block);
            }
        }
    }
    let mut body = json!({"model": req.model, "system": req.system, "messages": messages,
        "max_tokens": req.max_tokens});
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    body
}

/// One turn from an answer.
pub fn parse_answer(v: &Value) -> Result<Turn, ProviderError> {
    let bad = |what: &str| ProviderError::Malformed(format!("Messages answer: {what}"));
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no content list"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(
                b["text"]
                    .as_str()
                    .ok_or_else(|| bad("a text block without text"))?,
            ),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: b["id"]
                    .as_str()
                    .ok_or_else(|| bad("a tool_use without an id"))?
                    .to_owned(),
                name: b["name"]
                    .as_str()
                    .ok_or_else(|| bad("a tool_use without a name"))?
                    .to_owned(),
                arguments: b.get("input").cloned().unwrap_or_else(|| json!({})),
            }),
            // Thinking and other blocks carry nothing the loop acts on.
            Some(_) => {}
            None => return Err(bad("a block without a type")),
        }
    }
    if text.is_empty() && tool_calls.is_empty() {
        return Err(bad("neither text nor tool use"));
    }
    Ok(Turn {
        waited: Default::default(),
        text: (!text.is_empty()).then_some(text),
        tool_calls,
        usage: Usage {
            input_tokens: v
                .pointer("/usage/input_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            output_tokens: v
                .pointer("/usage/output_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        },
    })
}

impl Provider for Anthropic {
    fn turn<'a>(&'a self, req: &'a TurnRequest<'a>) -> BoxFuture<'a, Result<Turn, ProviderError>> {
        Box::pin(async move {
            let (answer, waited) = self
                .http
                .post_json(
                    "/v1/messages",
                    &[
                        ("x-api-key", &self.http.endpoint.key.0),
                        ("anthropic-version", VERSION),
                    ],
                    &request_body(req),
                )
                .await?;
            Ok(Turn {
                waited,
                ..parse_answer(&answer)?
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_of_one_turn_and_text_after_them_share_a_user_message() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "t".into(),
            arguments: json!({}),
        };
        let result = |id: &str| Message::Tool {
            call_id: id.into(),
            name: "t".into(),
            content: "ok".into(),
        };
        let messages = vec![
            Message::User {
                content: "go".into(),
            },
            Message::Assistant {
                content: Some("looking".into()),
                tool_calls: vec![call("a"), call("b")],
            },
            result("a"),
            result("b"),
            Message::User {
                content: "a signal joined".into(),
            },
        ];
        let body = request_body(&TurnRequest {
            model: "claude",
            system: "sys",
            messages: &messages,
            tools: &[],
            temperature: None,
            max_tokens: 64,
        });
        assert_eq!(body["system"], "sys");
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
        assert_eq!(body["messages"][1]["content"][1]["type"], "tool_use");
        // The two results, then the text that followed them, in one user message.
        assert_eq!(body["messages"][2]["content"].as_array().unwrap().len(), 3);
        assert_eq!(body["messages"][2]["content"][1]["tool_use_id"], "b");
        assert_eq!(body["messages"][2]["content"][2]["text"], "a signal joined");
    }

    #[test]
    fn answers_parse_and_malformed_ones_fail() {
        let t = parse_answer(&json!({"content": [{"type": "text", "text": "Found it."},
            {"type": "tool_use", "id": "tu1", "name": "kubernetes_get", "input": {"kind": "pods"}}],
            "usage": {"input_tokens": 7, "output_tokens": 2}}))
        .unwrap();
        assert_eq!(t.text.as_deref(), Some("Found it."));
        assert_eq!(t.tool_calls[0].arguments, json!({"kind": "pods"}));
        assert_eq!(t.usage.total(), 9);
        for bad in [
            json!({}),
            json!({"content": []}),
            json!({"content": [{"text": "x"}]}),
        ] {
            assert!(
                matches!(parse_answer(&bad), Err(ProviderError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
