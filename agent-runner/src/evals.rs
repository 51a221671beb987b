//! The eval suite: incident scenarios the agent loop runs with recorded tool outputs, each checked
//! by its assertions.
//!
//! A scenario (`evals/*.json`) holds:
//! - `trigger`: the event as the agent-runner receives it (source, type, correlation, payload);
//! - `agent`: the agent section the team would have (tools, prompts, toolsets);
//! - `tools`: recorded outputs, each `{tool, arguments, output}` (or `error`). A call matches the
//!   record whose `arguments` are all in the call (strings compared without case); the record
//!   with the most arguments wins, and one without `arguments` answers any other call;
//! - `script`: the model's turns for the offline run, each `{tool_calls: [...]}` or `{answer}`.
//!   A turn may say what the tool results it reads must contain (`expect_results`): the loop
//!   feeding back the wrong thing fails the scenario;
//! - `expect`: `tools_called`, `tools_not_called`, `answer_contains` (all), `answer_any` (one),
//!   `max_turns`.
//!
//! Offline, the scripted model plays `script`. Live, a real provider answers, against the same
//! recorded tools and assertions, and the report gives tokens and latency per scenario.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::agent::config::AgentConfig;
use crate::agent::tools::{Tool, ToolBox};
use crate::agent::{self, Step, Transcript};
use crate::messages::{Message, ToolCall, ToolSpec, Turn, TurnRequest, Usage};
use crate::providers::{Provider, ProviderError};
use crate::toolsets;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// The incident kind, e.g. `oom-kill`.
    pub kind: String,
    #[serde(default)]
    pub description: String,
    pub trigger: Value,
    #[serde(default)]
    pub agent: Value,
    #[serde(default)]
    pub tools: Vec<Recording>,
    pub script: Vec<ScriptedTurn>,
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    pub tool: String,
    #[serde(default)]
    pub arguments: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedTurn {
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
    #[serde(default)]
    pub answer: Option<String>,
    /// Substrings the tool results fed back since the previous turn must hold.
    #[serde(default)]
    pub expect_results: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub tools_called: Vec<String>,
    #[serde(default)]
    pub tools_not_called: Vec<String>,
    #[serde(default)]
    pub answer_contains: Vec<String>,
    #[serde(default)]
    pub answer_any: Vec<String>,
    #[serde(default)]
    pub max_turns: Option<u32>,
}

/// Every scenario of `dir` (`*.json`), by file name.
pub fn load(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// The recorded outputs of one tool, behind its real spec.
struct Replay {
    spec: ToolSpec,
    records: Vec<Recording>,
}

fn matches(recorded: &serde_json::Map<String, Value>, call: &Value) -> bool {
    recorded.iter().all(|(k, want)| match (want, call.get(k)) {
        (Value::String(w), Some(Value::String(h))) => w.eq_ignore_ascii_case(h),
        (w, Some(h)) => w == h,
        _ => false,
    })
}

impl Tool for Replay {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let best = self
                .records
                .iter()
                .filter(|r| r.arguments.as_ref().is_none_or(|a| matches(a, args)))
                .max_by_key(|r| r.arguments.as_ref().map_or(0, |a| a.len() + 1));
            let Some(r) = best else {
                return Err(format!("no recorded output for these arguments: {args}"));
            };
            if let Some(e) = &r.error {
                return Err(e.clone());
            }
            Ok(match &r.output {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            })
        })
    }
}

/// The scripted model of a scenario: plays its turns in order.
pub struct Scripted {
    turns: Vec<ScriptedTurn>,
    next: Mutex<usize>,
}

impl Scripted {
    pub fn new(turns: Vec<ScriptedTurn>) -> Self {
        Self {
            turns,
            next: Mutex::new(0),
        }
    }
}

impl Provider for Scripted {
    fn turn<'a>(&'a self, req: &'a TurnRequest<'a>) -> BoxFuture<'a, Result<Turn, ProviderError>> {
        Box::pin(async move {
            let i = {
                let mut n = self.next.lock().unwrap();
                *n += 1;
                *n - 1
            };
            let t = self.turns.get(i).ok_or_else(|| {
                ProviderError::Malformed(format!("the script has no turn {}", i + 1))
            })?;
            // The tool results fed back since the model's last turn.
            let fed: String = req
                .messages
                .iter()
                .rev()
                .take_while(|m| matches!(m, Message::Tool { .. }))
                .filter_map(|m| match m {
                    Message::Tool { content, .. } => Some(content.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n");
            for want in &t.expect_results {
                if !fed.contains(want.as_str()) {
                    return Err(ProviderError::Malformed(format!(
                        "turn {}: the tool results fed back do not contain {want:?}",
                        i + 1
                    )));
                }
            }
            let prompt: usize = req.messages.iter().map(|m| format!("{m:?}").len()).sum();
            let text = t.answer.clone();
            Ok(Turn {
                waited: Default::default(),
                usage: Usage {
                    input_tokens: (prompt / 4) as u64,
                    output_tokens: text.as_deref().map_or(20, |a| a.len() / 4) as u64,
                },
                text,
                tool_calls: t
                    .tool_calls
                    .iter()
                    .enumerate()
                    .map(|(k, c)| ToolCall {
                        id: format!("call_{}_{k}", i + 1),
                        name: c.name.clone(),
                        arguments: c.arguments.clone(),
                    })
                    .collect(),
            })
        })
    }
}

/// What one scenario did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub kind: String,
    pub passed: bool,
    pub failures: Vec<String>,
    pub turns: u32,
    pub usage: Usage,
    pub latency: Duration,
    pub tools_called: Vec<String>,
}

/// Runs `s` on `provider` (the scenario's script when `None`).
pub async fn run(s: &Scenario, provider: Option<&dyn Provider>) -> Outcome {
    let scripted = Scripted::new(s.script.clone());
    let provider: &dyn Provider = provider.unwrap_or(&scripted);
    let mut failures = Vec::new();
    let mut cfg = match AgentConfig::parse(Some(&s.agent), 600) {
        Ok(c) => c,
        Err(e) => {
            failures.push(format!("agent: {e}"));
            AgentConfig::parse(None, 600).expect("defaults parse")
        }
    };
    if let Some(n) = s.expect.max_turns {
        cfg.max_turns = cfg.max_turns.max(n);
    }
    let mut tools = ToolBox::default();
    for name in &cfg.tools {
        let Some(spec) = toolsets::spec_for(name, &s.agent) else {
            failures.push(format!("{name} is not a built-in tool"));
            continue;
        };
        let records = s
            .tools
            .iter()
            .filter(|r| r.tool == *name)
            .cloned()
            .collect();
        tools = tools.with(Box::new(Replay { spec, records }));
    }
    let trigger = agent::render_trigger("team", &s.trigger, 16 * 1024);
    let mut t = Transcript::default();
    let started = Instant::now();
    let answer = agent::run(provider, &cfg, &trigger, &tools, &mut t).await;
    let latency = started.elapsed();
    let called: Vec<String> = t
        .steps
        .iter()
        .filter_map(|st| match st {
            Step::Tool { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    match &answer {
        Err(e) => failures.push(format!("no answer: {e}")),
        Ok(a) => {
            let lower = a.to_lowercase();
            for want in &s.expect.answer_contains {
                if !lower.contains(&want.to_lowercase()) {
                    failures.push(format!("the answer does not mention {want:?}"));
                }
            }
            if !s.expect.answer_any.is_empty()
                && !s
                    .expect
                    .answer_any
                    .iter()
                    .any(|w| lower.contains(&w.to_lowercase()))
            {
                failures.push(format!(
                    "the answer mentions none of {:?}",
                    s.expect.answer_any
                ));
            }
        }
    }
    for want in &s.expect.tools_called {
        if !called.contains(want) {
            failures.push(format!("{want} was not called"));
        }
    }
    for not in &s.expect.tools_not_called {
        if called.contains(not) {
            failures.push(format!("{not} was called"));
        }
    }
    if let Some(max) = s.expect.max_turns
        && t.turns > max
    {
        failures.push(format!("{} turns, more than {max}", t.turns));
    }
    Outcome {
        name: s.name.clone(),
        kind: s.kind.clone(),
        passed: failures.is_empty(),
        failures,
        turns: t.turns,
        usage: t.usage,
        latency,
        tools_called: called,
    }
}

/// The report: one line per scenario, then the pass rate.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<34} {:<6} {:>5} {:>9} {:>9} {:>9}  {}\n",
        "scenario", "result", "turns", "tokens in", "out", "ms", "tools called / why it failed"
    );
    for o in outcomes {
        let detail = if o.passed {
            o.tools_called.join(", ")
        } else {
            o.failures.join("; ")
        };
        out.push_str(&format!(
            "{:<34} {:<6} {:>5} {:>9} {:>9} {:>9}  {}\n",
            o.name,
            if o.passed { "pass" } else { "FAIL" },
            o.turns,
            o.usage.input_tokens,
            o.usage.output_tokens,
            o.latency.as_millis(),
            detail
        ));
    }
    let passed = outcomes.iter().filter(|o| o.passed).count();
    out.push_str(&format!(
        "pass rate: {passed}/{} ({:.0}%)\n",
        outcomes.len(),
        pass_rate(outcomes) * 100.0
    ));
    out
}

pub fn pass_rate(outcomes: &[Outcome]) -> f64 {
    if outcomes.is_empty() {
        return 0.0;
    }
    outcomes.iter().filter(|o| o.passed).count() as f64 / outcomes.len() as f64
}
