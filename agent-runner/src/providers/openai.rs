//! Any OpenAI-compatible Chat Completions server (OpenAI, Azure OpenAI's compatible endpoint,
//! vLLM, Ollama, LiteLLM): `POST {endpoint}/chat/completions` with `Authorization: Bearer <key>`;
//! tools as `functions`, several calls in one turn allowed; arguments arrive as JSON text.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Http, Provider, ProviderError};
use crate::messages::{Message, ToolCall, Turn, TurnRequest, Usage};

pub struct OpenAi {
    http: Http,
}

impl OpenAi {
    pub fn new(http: Http) -> Self {
        Self { http }
    }
}

/// The request body for one turn.
pub fn request_body(req: &TurnRequest<'_>) -> Value {
    let mut messages = vec![json!({"role": "system", "content": req.system})];
    for m in req.messages {
        messages.push(match m {
            Message::User { content } => json!({"role": "user", "content": content}),
            Message::Assistant {
                content,
                tool_calls,
            } => {
                let mut a = json!({"role": "assistant", "content": content});
                if !tool_calls.is_empty() {
                    a["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            json!({"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments.to_string()}})
                        })
                        .collect();
                }
                a
            }
            Message::Tool {
                call_id, content, ..
            } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        });
    }
    let mut body = json!({"model": req.model, "messages": messages, "max_tokens": req.max_tokens});
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect();
    }
    body
}

/// One turn from an answer.
pub fn parse_answer(v: &Value) -> Result<Turn, ProviderError> {
    let bad = |what: &str| ProviderError::Malformed(format!("Chat Completions answer: {what}"));
    let message = v
        .pointer("/choices/0/message")
        .ok_or_else(|| bad("no choices[0].message"))?;
    let text = match message.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("message.content is not a string")),
    };
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) {
        for c in calls
            .as_array()
            .ok_or_else(|| bad("tool_calls is not a list"))?
        {
            let id = c["id"]
                .as_str()
                .ok_or_else(|| bad("a tool call without an id"))?;
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a tool call without a function name"))?;
            let raw = c
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let arguments = serde_json::from_str(if raw.trim().is_empty() { "{}" } else { raw })
                .map_err(|e| bad(&format!("the arguments of {name} are not JSON ({e})")))?;
            tool_calls.push(ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments,
            });
        }
    }
    if text.is_none() && tool_calls.is_empty() {
        return Err(bad("neither content nor tool calls"));
    }
    let usage = Usage {
        input_tokens: v
            .pointer("/usage/prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        output_tokens: v
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    Ok(Turn {
        text,
        tool_calls,
        usage,
        waited: Default::default(),
    })
}

impl Provider for OpenAi {
    fn turn<'a>(&'a self, req: &'a TurnRequest<'a>) -> BoxFuture<'a, Result<Turn, ProviderError>> {
        Box::pin(async move {
            let auth = format!("Bearer {}", self.http.endpoint.key.0);
            let (answer, waited) = self
                .http
                .post_json(
                    "/chat/completions",
                    &[("authorization", &auth)],
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
    use crate::messages::ToolSpec;

    #[test]
    fn tool_calls_and_results_round_trip_the_wire_format() {
        let messages = vec![
            Message::User {
                content: "why?".into(),
            },
            Message::Assistant {
                content: None,
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "prometheus_query".into(),
                    arguments: json!({"query": "up"}),
                }],
            },
            Message::Tool {
                call_id: "c1".into(),
                name: "prometheus_query".into(),
                content: "1".into(),
            },
        ];
        let tools = vec![ToolSpec {
            name: "prometheus_query".into(),
            description: "PromQL".into(),
            parameters: json!({"type": "object"}),
        }];
        let body = request_body(&TurnRequest {
            model: "m",
            system: "sys",
            messages: &messages,
            tools: &tools,
            temperature: Some(0.2),
            max_tokens: 100,
        });
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"query\":\"up\"}"
        );
        assert_eq!(body["messages"][3]["tool_call_id"], "c1");
        assert_eq!(body["tools"][0]["function"]["name"], "prometheus_query");
        let turn = parse_answer(
            &json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "x", "arguments": "{\"n\":1}"}},
            {"id": "b", "type": "function", "function": {"name": "y", "arguments": ""}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3}}),
        )
        .unwrap();
        assert_eq!(turn.tool_calls.len(), 2);
        assert_eq!(turn.tool_calls[0].arguments, json!({"n": 1}));
        assert_eq!(
            turn.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 3
            }
        );
    }

    #[test]
    fn malformed_answers_are_errors() {
        for bad in [
            json!({}),
            json!({"choices": []}),
            json!({"choices": [{"message": {}}]}),
            json!({"choices": [{"message": {"content": 5}}]}),
            json!({"choices": [{"message": {"tool_calls": [{"id": "a", "function": {"name": "x", "arguments": "{nope"}}]}}]}),
        ] {
            assert!(
                matches!(parse_answer(&bad), Err(ProviderError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
