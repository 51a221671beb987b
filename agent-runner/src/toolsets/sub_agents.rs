//! Sub-agents as tools: each entry of `sub_agents` the team enabled as `ask_<name>` appears to its
//! parent as a tool taking a task. Asked, it runs an agent loop of its own, with its own prompts,
//! model and tools (its settings over its parent's), at most two levels below the team's agent;
//! its steps nest in the run's transcript and its tokens count in the run's usage.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::Context;
use crate::agent::config::AgentConfig;
use crate::agent::tools::{Tool, ToolBox};
use crate::agent::{self, Transcript};
use crate::messages::ToolSpec;
use crate::providers::Provider;

/// Deepest level of a sub-agent (the team's agent is level 0).
pub const MAX_DEPTH: usize = 2;

/// Fields of a sub-agent that replace its parent's; the others are inherited.
const OWN: &[&str] = &[
    "provider",
    "model",
    "endpoint",
    "api_key",
    "temperature",
    "max_tokens",
    "max_turns",
    "prompts",
    "tools",
];

pub struct AskSubAgent {
    name: String,
    description: String,
    provider: Arc<dyn Provider>,
    cfg: AgentConfig,
    tools: ToolBox,
}

/// Builds the provider a (sub-)agent's settings describe; the caller holds the keys.
pub type MakeProvider<'a> = dyn Fn(&AgentConfig) -> Result<Arc<dyn Provider>, String> + 'a;

/// The `ask_<name>` tools for the sub-agents `enabled` names, their own sub-agents included down
/// to [`MAX_DEPTH`]. A sub-agent whose settings do not make a provider is left out, with why.
pub fn tools_for(
    section: &Value,
    parent: &AgentConfig,
    parent_provider: &Arc<dyn Provider>,
    enabled: &[String],
    depth: usize,
    ctx: &Context,
    make: &MakeProvider<'_>,
) -> (Vec<Box<dyn Tool>>, Vec<String>) {
    let mut out: Vec<Box<dyn Tool>> = Vec::new();
    let mut problems = Vec::new();
    let Some(subs) = section.get("sub_agents").and_then(Value::as_object) else {
        return (out, problems);
    };
    if depth > MAX_DEPTH {
        return (out, problems);
    }
    for tool in enabled {
        let Some(name) = tool.strip_prefix("ask_") else {
            continue;
        };
        let Some(sub) = subs.get(name) else { continue };
        // The sub-agent's section: its own fields over the parent's (tools and prompts are its
        // own, never inherited).
        let mut merged = section.clone();
        if let Some(m) = merged.as_object_mut() {
            m.remove("tools");
            m.remove("prompts");
            for k in OWN {
                if let Some(v) = sub.get(*k) {
                    m.insert((*k).to_owned(), v.clone());
                }
            }
        }
        let mut cfg = match AgentConfig::parse(Some(&merged), parent.deadline_seconds) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{tool}: {e}"));
                continue;
            }
        };
        cfg.token_budget = parent.token_budget.clone();
        let same_model = ["provider", "endpoint", "api_key"]
            .iter()
            .all(|k| sub.get(*k).is_none());
        let provider = if same_model {
            parent_provider.clone()
        } else {
            match make(&cfg) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("{tool}: {e}"));
                    continue;
                }
            }
        };
        let (mut tools, _) = super::build(&merged, &cfg.tools, ctx);
        let (deeper, more) = tools_for(&merged, &cfg, &provider, &cfg.tools, depth + 1, ctx, make);
        problems.extend(more);
        for t in deeper {
            tools = tools.with(t);
        }
        out.push(Box::new(AskSubAgent {
            name: name.to_owned(),
            description: sub
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("a specialist")
                .to_owned(),
            provider,
            cfg,
            tools,
        }));
    }
    (out, problems)
}

impl Tool for AskSubAgent {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: format!("ask_{}", self.name),
            description: format!("Ask the {} sub-agent: {}", self.name, self.description),
            parameters: json!({"type": "object", "required": ["task"], "properties": {
                "task": {"type": "string", "description": "what to find out, with what you know already"}}}),
        }
    }

    fn call<'a>(&'a self, arguments: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move { self.call_traced(arguments).await.0 })
    }

    fn call_traced<'a>(
        &'a self,
        arguments: &'a Value,
    ) -> BoxFuture<'a, (Result<String, String>, Option<Transcript>)> {
        Box::pin(async move {
            let Some(task) = arguments.get("task").and_then(Value::as_str) else {
                return (Err("the argument \"task\" is required".into()), None);
            };
            let mut t = Transcript::default();
            let r = agent::run(self.provider.as_ref(), &self.cfg, task, &self.tools, &mut t).await;
            (r.map_err(|e| e.to_string()), Some(t))
        })
    }
}
