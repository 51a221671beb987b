//! The agent loop: the team's system prompt and the trigger, then model turns; each tool call the
//! model asks for is executed (several in one turn at once) and its result fed back, until the model
//! answers without calling a tool, `max_turns` runs out, or the deadline passes. Every turn and tool
//! call is recorded as a [`Step`] with its duration and token counts.
//!
//! # Layout
//! - this file: the loop and what it answers;
//! - [`config`]: the `agent` section of a team's effective config, typed;
//! - [`tools`]: the tool trait and a run's tool box.

pub mod config;
pub mod tools;

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};
use switchyard_api::events::JoinedSignal;
use switchyard_common::otel;

use self::config::AgentConfig;
use self::tools::ToolBox;
use crate::messages::{Message, TurnRequest, Usage};
use crate::providers::{Provider, ProviderError};

/// What a run did, step by step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// One model turn.
    Model {
        turn: u32,
        text: Option<String>,
        /// The tools it called, by name.
        tool_calls: Vec<String>,
        usage: Usage,
        duration_ms: u64,
        /// The runner's own time in this turn (microseconds): from the previous turn's answer
        /// (the first turn: from its start) to this answer, without the wait for the tool calls
        /// in between and for the model's endpoint. What the runner adds to a turn.
        runner_us: u64,
    },
    /// One tool call, with its (truncated) output or error; a sub-agent's with its own steps.
    Tool {
        turn: u32,
        name: String,
        arguments: Value,
        output: String,
        error: bool,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        sub_agent: Option<Box<Transcript>>,
    },
    /// Signals that joined the run's incident while it was going, added to its context after
    /// `turn` (RFC 3339 `at`).
    Signals {
        turn: u32,
        at: String,
        signals: Vec<Value>,
    },
}

/// Where a run hears of signals that join its incident while it is going; asked between turns.
pub trait Joined: Send + Sync {
    fn take(&self) -> BoxFuture<'_, Vec<JoinedSignal>>;
}

/// A run that no signal can join (one per event, a sub-agent, an eval).
pub struct NoneJoin;

impl Joined for NoneJoin {
    fn take(&self) -> BoxFuture<'_, Vec<JoinedSignal>> {
        Box::pin(async { Vec::new() })
    }
}

/// A run's record, finished or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Transcript {
    pub steps: Vec<Step>,
    pub usage: Usage,
    pub turns: u32,
}

/// Why a run ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("no answer within max_turns ({0} model turns)")]
    MaxTurns(u32),
    #[error("no answer within deadline_seconds ({0} s)")]
    Deadline(u64),
    /// The run used what was left of a day's token budget.
    #[error(
        "the {whose}'s tokens_per_day budget ran out ({used} tokens used by this run, {allowed} were left today)"
    )]
    Budget {
        whose: String,
        used: u64,
        allowed: u64,
    },
}

/// Runs the loop for `trigger` (the first user message) within the config's deadline. Answers
/// the final answer, or why there is none; the transcript holds what happened either way.
pub async fn run(
    provider: &dyn Provider,
    cfg: &AgentConfig,
    trigger: &str,
    tools: &ToolBox,
    transcript: &mut Transcript,
) -> Result<String, AgentError> {
    run_joined(provider, cfg, trigger, tools, transcript, &NoneJoin).await
}

/// [`run`], with the signals that join the run's incident while it is going added to the
/// conversation between turns (and to the transcript, saying when).
pub async fn run_joined(
    provider: &dyn Provider,
    cfg: &AgentConfig,
    trigger: &str,
    tools: &ToolBox,
    transcript: &mut Transcript,
    joined: &dyn Joined,
) -> Result<String, AgentError> {
    let deadline = Duration::from_secs(cfg.deadline_seconds);
    let going = turns(provider, cfg, trigger, tools, transcript, joined);
    match tokio::time::timeout(deadline, going).await {
        Ok(r) => r,
        Err(_) => Err(AgentError::Deadline(cfg.deadline_seconds)),
    }
}

/// The message that tells the model of signals that joined while it worked.
fn render_joined(signals: &[JoinedSignal]) -> String {
    let mut out = format!(
        "While you were investigating, {} new signal(s) joined this incident. Take them into account:",
        signals.len()
    );
    for j in signals {
        let state = match j.resolved {
            Some(true) => ", says its alert resolved",
            Some(false) => ", its alert is firing",
            None => "",
        };
        out.push_str(&format!(
            "\n- {} {} at {} (service {}, severity {}{state}), event {}: {}",
            j.source,
            j.event_type,
            j.joined_at,
            j.service.as_deref().unwrap_or("unknown"),
            j.severity.as_deref().unwrap_or("unknown"),
            j.event_id,
            tools::truncate(&j.excerpt, 1024)
        ));
    }
    out
}

async fn turns(
    provider: &dyn Provider,
    cfg: &AgentConfig,
    trigger: &str,
    tools: &ToolBox,
    transcript: &mut Transcript,
    joined: &dyn Joined,
) -> Result<String, AgentError> {
    let mut messages = vec![Message::User {
        content: cfg.prompts.wrap(trigger),
    }];
    let specs = tools.specs();
    // When the previous turn's answer arrived, and how long its tool calls took.
    let mut answered: Option<(Instant, Duration)> = None;
    for turn in 1..=cfg.max_turns {
        let started = Instant::now();
        let (since, tools_took) = answered.unwrap_or((started, Duration::ZERO));
        let (mut span, in_turn) =
            otel::Span::child("agent-runner", "model.turn", otel::SpanKind::Client);
        span.attr("gen_ai.request.model", cfg.model.clone());
        span.attr("switchyard.turn", i64::from(turn));
        let answer = in_turn
            .scope(provider.turn(&TurnRequest {
                model: &cfg.model,
                system: cfg.prompts.system(),
                messages: &messages,
                tools: &specs,
                temperature: cfg.temperature,
                max_tokens: cfg.max_tokens,
            }))
            .await;
        let answer = match answer {
            Ok(a) => {
                span.attr("gen_ai.usage.input_tokens", a.usage.input_tokens as i64);
                span.attr("gen_ai.usage.output_tokens", a.usage.output_tokens as i64);
                span.end();
                a
            }
            Err(e) => {
                span.error(e.to_string());
                span.end();
                return Err(e.into());
            }
        };
        let arrived = Instant::now();
        transcript.turns = turn;
        transcript.usage.add(answer.usage);
        transcript.steps.push(Step::Model {
            turn,
            text: answer.text.clone(),
            tool_calls: answer.tool_calls.iter().map(|c| c.name.clone()).collect(),
            usage: answer.usage,
            duration_ms: arrived.duration_since(started).as_millis() as u64,
            runner_us: arrived
                .duration_since(since)
                .saturating_sub(tools_took + answer.waited)
                .as_micros() as u64,
        });
        if answer.tool_calls.is_empty() {
            return Ok(answer.text.unwrap_or_default());
        }
        // Between turns: no further turn once the day's budget is spent.
        if let Some((allowed, whose)) = &cfg.token_budget
            && transcript.usage.total() >= *allowed
        {
            return Err(AgentError::Budget {
                whose: whose.clone(),
                used: transcript.usage.total(),
                allowed: *allowed,
            });
        }
        // Several calls in one turn run at once; their results go back in the order asked.
        let calling = Instant::now();
        let results = futures_util::future::join_all(answer.tool_calls.iter().map(|c| async {
            let started = Instant::now();
            let (mut span, in_tool) = otel::Span::child(
                "agent-runner",
                format!("tool.{}", c.name),
                otel::SpanKind::Internal,
            );
            let r = in_tool.scope(tools.call(&c.name, &c.arguments)).await;
            if r.error {
                span.error(r.output.chars().take(200).collect::<String>());
            }
            span.end();
            (r, started.elapsed())
        }))
        .await;
        answered = Some((arrived, calling.elapsed()));
        messages.push(Message::Assistant {
            content: answer.text,
            tool_calls: answer.tool_calls.clone(),
        });
        for (call, (result, took)) in answer.tool_calls.into_iter().zip(results) {
            // A sub-agent's turns count in the run.
            if let Some(sub) = &result.sub {
                transcript.usage.add(sub.usage);
            }
            transcript.steps.push(Step::Tool {
                turn,
                name: call.name.clone(),
                arguments: call.arguments,
                output: result.output.clone(),
                error: result.error,
                duration_ms: took.as_millis() as u64,
                sub_agent: result.sub.map(Box::new),
            });
            messages.push(Message::Tool {
                call_id: call.id,
                name: call.name,
                content: result.output,
            });
        }
        let signals = joined.take().await;
        if !signals.is_empty() {
            transcript.steps.push(Step::Signals {
                turn,
                at: switchyard_common::time::rfc3339(switchyard_common::time::now_ms()),
                signals: signals
                    .iter()
                    .map(|j| json!({"event_id": j.event_id, "source": j.source, "event_type": j.event_type,
                        "service": j.service, "severity": j.severity, "resolved": j.resolved, "joined_at": j.joined_at}))
                    .collect(),
            });
            messages.push(Message::User {
                content: render_joined(&signals),
            });
        }
    }
    Err(AgentError::MaxTurns(cfg.max_turns))
}

/// The trigger as the model reads it: a headline (source, type, team, correlation), the routing
/// identifiers, then the payload as JSON trimmed to `budget` bytes.
pub fn render_trigger(team: &str, trigger: &Value, budget: usize) -> String {
    let s = |k: &str| trigger.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = format!(
        "{} {} for team {team}",
        or(s("source"), "unknown"),
        or(s("event_type"), "event")
    );
    if !s("correlation_key").is_empty() {
        out.push_str(&format!(" ({})", s("correlation_key")));
    }
    if let Some(ids) = trigger.get("identifiers").and_then(Value::as_array)
        && !ids.is_empty()
    {
        let ids: Vec<String> = ids
            .iter()
            .filter_map(|p| Some(format!("{}={}", p.get(0)?.as_str()?, p.get(1)?.as_str()?)))
            .collect();
        out.push_str(&format!("\nidentifiers: {}", ids.join(", ")));
    }
    if let Some(i) = trigger.get("incident") {
        out.push_str(&render_incident(i));
    }
    if let Some(p) = trigger.get("payload") {
        out.push_str("\npayload: ");
        out.push_str(&tools::truncate(&p.to_string(), budget));
    }
    out
}

/// The incident the trigger belongs to: its facts, its signals (those no earlier run saw marked
/// `new`), and what earlier runs found, so a follow-up run starts from their findings.
fn render_incident(i: &Value) -> String {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut out = format!(
        "\nincident {}: {} (severity {}, service {}, first seen {})",
        s(i, "incident_id"),
        or(&s(i, "title"), "untitled"),
        or(&s(i, "severity"), "unknown"),
        or(&s(i, "service"), "unknown"),
        s(i, "first_seen"),
    );
    if let Some(members) = i.get("members").and_then(Value::as_array) {
        out.push_str(&format!("\nsignals ({}):", members.len()));
        for m in members.iter().rev() {
            let new = if m.get("new").and_then(Value::as_bool) == Some(true) {
                " [new]"
            } else {
                ""
            };
            let state = match m.get("resolved").and_then(Value::as_bool) {
                Some(true) => " resolved",
                Some(false) => " firing",
                None => "",
            };
            out.push_str(&format!(
                "\n- {} {} {}{state} at {}{new}",
                s(m, "source"),
                s(m, "event_type"),
                or(&s(m, "service"), "-"),
                s(m, "joined_at")
            ));
        }
    }
    if let Some(runs) = i.get("previous_runs").and_then(Value::as_array)
        && !runs.is_empty()
    {
        out.push_str("\nearlier runs of this incident:");
        for r in runs {
            out.push_str(&format!(
                "\n- run {} {}: {}",
                s(r, "run_id"),
                s(r, "status"),
                or(&s(r, "findings"), "no findings recorded")
            ));
        }
    }
    out
}

fn or<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() { default } else { v }
}
