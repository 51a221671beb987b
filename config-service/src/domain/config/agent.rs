//! The `agent` section: which provider and model run the team's agent, its prompts, tools,
//! toolsets and sub-agents. Credentials are references into the org secrets store, tool names are
//! ones this build has (or a sub-agent's `ask_<name>`, or an MCP server's `mcp:<server>[/<tool>]`),
//! and sub-agents form no cycle and nest at most two deep.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use switchyard_common::problem::{FieldError, escape_pointer_token};

use super::validate::{Ty, check_fields, err, object};
use crate::domain::secrets::check_reference;

/// The tools this build has.
pub const BUILTIN_TOOLS: &[&str] = &[
    "prometheus_query",
    "prometheus_range_query",
    "alertmanager_alerts",
    "loki_query",
    "kubernetes_get",
    "kubernetes_logs",
    "kubernetes_events",
    "github_recent_changes",
    "http_get",
    "switchyard_events",
];

const PROVIDERS: &[&str] = &["openai", "anthropic", "offline"];
/// Deepest nesting of sub-agents: the agent asks a sub-agent, which may ask one more.
const MAX_DEPTH: usize = 2;

fn agent_fields() -> Vec<(&'static str, Ty)> {
    vec![
        ("provider", Ty::Str),
        ("model", Ty::Str),
        ("endpoint", Ty::Str),
        ("api_key", Ty::Any),
        ("prompts", Ty::Any),
        ("tools", Ty::StrArray),
        ("temperature", Ty::Number),
        ("max_tokens", Ty::PosInt),
        ("max_turns", Ty::PosInt),
        ("deadline_seconds", Ty::PosInt),
    ]
}

/// What starts a run: one per incident (the default), or one per event.
const TRIGGERS: &[&str] = &["incident", "event"];

pub(super) fn validate(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = object(v, at, errs) else { return };
    let mut fields = agent_fields();
    fields.push(("toolsets", Ty::Any));
    fields.push(("sub_agents", Ty::Any));
    fields.push(("trigger", Ty::Str));
    check_fields(m, at, &fields, errs);
    if let Some(t) = m.get("trigger").and_then(Value::as_str)
        && !TRIGGERS.contains(&t)
    {
        errs.push(err(
            &format!("{at}/trigger"),
            &format!("must be one of {}", TRIGGERS.join(", ")),
        ));
    }
    let sub_agents = m.get("sub_agents").and_then(Value::as_object);
    let mcp: BTreeSet<&str> = m
        .get("toolsets")
        .and_then(|t| t.get("mcp"))
        .and_then(Value::as_object)
        .map(|s| s.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let names: BTreeSet<&str> = sub_agents
        .map(|s| s.keys().map(String::as_str).collect())
        .unwrap_or_default();
    model_settings(m, at, errs);
    tools(m, at, &names, &mcp, errs);
    if let Some(t) = m.get("toolsets") {
        toolsets(t, &format!("{at}/toolsets"), errs);
    }
    if let Some(s) = m.get("sub_agents") {
        sub_agents_of(s, &format!("{at}/sub_agents"), &names, &mcp, errs);
    }
}

/// Provider, endpoint, key, prompts and limits (an agent's or a sub-agent's).
fn model_settings(m: &Map<String, Value>, at: &str, errs: &mut Vec<FieldError>) {
    if let Some(p) = m.get("provider").and_then(Value::as_str)
        && !PROVIDERS.contains(&p)
    {
        errs.push(err(
            &format!("{at}/provider"),
            &format!("one of {}", PROVIDERS.join(", ")),
        ));
    }
    if let Some(e) = m.get("endpoint").and_then(Value::as_str)
        && !(e.starts_with("https://") || e.starts_with("http://"))
    {
        errs.push(err(&format!("{at}/endpoint"), "must be an http(s) URL"));
    }
    let provider = m
        .get("provider")
        .and_then(Value::as_str)
        .unwrap_or("offline");
    if matches!(provider, "openai" | "anthropic") && !m.contains_key("endpoint") {
        errs.push(err(
            at,
            &format!("the {provider} provider needs an endpoint"),
        ));
    }
    if let Some(key) = m.get("api_key") {
        check_reference(key, &format!("{at}/api_key"), errs);
    }
    if let Some(p) = m.get("prompts") {
        let pat = format!("{at}/prompts");
        if let Some(p) = object(p, &pat, errs) {
            let strings = [
                ("system", Ty::Str),
                ("prefix", Ty::Str),
                ("suffix", Ty::Str),
            ];
            check_fields(p, &pat, &strings, errs);
        }
    }
    if let Some(t) = m.get("temperature").and_then(Value::as_f64)
        && !(0.0..=2.0).contains(&t)
    {
        errs.push(err(&format!("{at}/temperature"), "must be between 0 and 2"));
    }
    for (k, max) in [
        ("max_turns", 64),
        ("deadline_seconds", 3600),
        ("max_tokens", 200_000),
    ] {
        if let Some(n) = m.get(k).and_then(Value::as_u64)
            && n > max
        {
            errs.push(err(&format!("{at}/{k}"), &format!("at most {max}")));
        }
    }
}

/// Every enabled tool is one this build has, a sub-agent's `ask_<name>`, or an MCP server's.
fn tools(
    m: &Map<String, Value>,
    at: &str,
    sub_agents: &BTreeSet<&str>,
    mcp: &BTreeSet<&str>,
    errs: &mut Vec<FieldError>,
) {
    let Some(list) = m.get("tools").and_then(Value::as_array) else {
        return;
    };
    for (i, t) in list.iter().enumerate() {
        let Some(name) = t.as_str() else { continue };
        let known = BUILTIN_TOOLS.contains(&name)
            || name
                .strip_prefix("ask_")
                .is_some_and(|s| sub_agents.contains(s))
            || name
                .strip_prefix("mcp:")
                .map(|s| s.split('/').next().unwrap_or(""))
                .is_some_and(|s| mcp.contains(s));
        if !known {
            errs.push(err(
                &format!("{at}/tools/{i}"),
                &format!(
                    "unknown tool {name:?}: one of {}, ask_<sub-agent>, or mcp:<server>[/<tool>] of toolsets.mcp",
                    BUILTIN_TOOLS.join(", ")
                ),
            ));
        }
    }
}

/// Toolset settings: URLs are URLs, allow-lists are lists, credentials are references.
fn toolsets(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = object(v, at, errs) else { return };
    for (name, settings) in m {
        let here = format!("{at}/{}", escape_pointer_token(name));
        let Some(s) = object(settings, &here, errs) else {
            continue;
        };
        match name.as_str() {
            "mcp" => {
                for (server, cfg) in s {
                    let sat = format!("{here}/{}", escape_pointer_token(server));
                    let Some(c) = object(cfg, &sat, errs) else { continue };
                    check_fields(c, &sat, &[("url", Ty::Str), ("allow", Ty::StrArray), ("headers", Ty::Any)], errs);
                    url(c, &sat, errs);
                    if let Some(h) = c.get("headers").and_then(|h| object(h, &format!("{sat}/headers"), errs)) {
                        for (k, v) in h {
                            check_reference(v, &format!("{sat}/headers/{}", escape_pointer_token(k)), errs);
                        }
                    }
                }
            }
            "http" => check_fields(s, &here, &[("allow", Ty::StrArray), ("allow_private", Ty::Bool)], errs),
            "kubernetes" => check_fields(s, &here, &[("namespaces", Ty::StrArray)], errs),
            "github" => {
                check_fields(s, &here, &[("token", Ty::Any), ("repos", Ty::StrArray)], errs);
                if let Some(t) = s.get("token") {
                    check_reference(t, &format!("{here}/token"), errs);
                }
            }
            "prometheus" | "alertmanager" | "loki" => {
                check_fields(s, &here, &[("url", Ty::Str), ("token", Ty::Any)], errs);
                url(s, &here, errs);
                if let Some(t) = s.get("token") {
                    check_reference(t, &format!("{here}/token"), errs);
                }
            }
            _ => errs.push(err(
                &here,
                "unknown toolset; known: prometheus, alertmanager, loki, kubernetes, github, http, mcp",
            )),
        }
    }
}

fn url(m: &Map<String, Value>, at: &str, errs: &mut Vec<FieldError>) {
    if let Some(u) = m.get("url").and_then(Value::as_str)
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        errs.push(err(&format!("{at}/url"), "must be an http(s) URL"));
    }
}

/// Each sub-agent: a description, its own model settings and tools; no cycle through `ask_`, at
/// most [`MAX_DEPTH`] deep.
fn sub_agents_of(
    v: &Value,
    at: &str,
    names: &BTreeSet<&str>,
    mcp: &BTreeSet<&str>,
    errs: &mut Vec<FieldError>,
) {
    let Some(m) = object(v, at, errs) else { return };
    let mut asks: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, sub) in m {
        let here = format!("{at}/{}", escape_pointer_token(name));
        let Some(s) = object(sub, &here, errs) else {
            continue;
        };
        let mut fields = agent_fields();
        fields.push(("description", Ty::Str));
        check_fields(s, &here, &fields, errs);
        if !s.get("description").is_some_and(Value::is_string) {
            errs.push(err(
                &format!("{here}/description"),
                "a sub-agent needs a description (its parent reads it)",
            ));
        }
        model_settings(s, &here, errs);
        tools(s, &here, names, mcp, errs);
        asks.insert(
            name,
            s.get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str()?.strip_prefix("ask_"))
                .filter(|t| names.contains(t))
                .collect(),
        );
    }
    // Longest chain of asks from each sub-agent; a cycle never ends.
    for start in asks.keys() {
        let mut path = vec![*start];
        if let Some(problem) = walk(&asks, &mut path) {
            errs.push(err(
                &format!("{at}/{}/tools", escape_pointer_token(start)),
                &problem,
            ));
        }
    }
}

fn walk<'a>(asks: &BTreeMap<&'a str, Vec<&'a str>>, path: &mut Vec<&'a str>) -> Option<String> {
    let last = *path.last().expect("a path starts with one");
    for next in asks.get(last).into_iter().flatten() {
        if path.contains(next) {
            return Some(format!(
                "sub-agents ask each other in a cycle: {} -> {next}",
                path.join(" -> ")
            ));
        }
        // The agent asks the first sub-agent (depth 1); each ask goes one deeper.
        if path.len() + 1 > MAX_DEPTH {
            return Some(format!(
                "sub-agents nest at most {MAX_DEPTH} deep: {} -> {next}",
                path.join(" -> ")
            ));
        }
        path.push(next);
        if let Some(p) = walk(asks, path) {
            return Some(p);
        }
        path.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::validate_layer;

    fn pointers(layer: serde_json::Value) -> Vec<String> {
        match validate_layer(&layer) {
            Ok(()) => vec![],
            Err(e) => e.into_iter().map(|f| f.pointer).collect(),
        }
    }

    #[test]
    fn incident_rules_and_the_trigger_are_checked() {
        assert!(
            pointers(json!({"incidents": {"window": "10m", "group_by": ["service", "source"], "reopen_grace": "1h"},
                "agent": {"trigger": "event"}}))
            .is_empty()
        );
        let mut found = pointers(
            json!({"incidents": {"window": "10s", "group_by": ["colour"],
            "reopen_grace": "soon", "x": 1}, "agent": {"trigger": "always"}}),
        );
        found.sort();
        assert_eq!(
            found,
            [
                "/agent/trigger",
                "/incidents/group_by/0",
                "/incidents/reopen_grace",
                "/incidents/window",
                "/incidents/x",
            ]
        );
    }

    #[test]
    fn notifications_name_a_channel_or_are_off() {
        assert!(pointers(json!({"notifications": {"slack": {"channel": "C0OPS"}}})).is_empty());
        assert!(pointers(json!({"notifications": {"slack": "off"}})).is_empty());
        assert_eq!(
            pointers(json!({"notifications": {"slack": {"chan": "C0OPS"}, "email": {}}})),
            [
                "/notifications/email",
                "/notifications/slack/chan",
                "/notifications/slack/channel"
            ]
        );
        assert_eq!(
            pointers(json!({"notifications": {"slack": true}})),
            ["/notifications/slack"]
        );
    }

    #[test]
    fn the_issue_contract_is_accepted() {
        let layer = json!({"agent": {
            "provider": "openai", "model": "gpt-4.1-mini", "endpoint": "https://api.openai.com/v1",
            "api_key": {"secret": "llm"}, "temperature": 0.2, "max_tokens": 2048, "max_turns": 8,
            "deadline_seconds": 300, "prompts": {"system": "s", "prefix": "p", "suffix": "x"},
            "tools": ["prometheus_query", "kubernetes_get", "ask_k8s"],
            "toolsets": {"prometheus": {"url": "http://prometheus:9090"}, "http": {"allow": ["https://status.example.com/"]}},
            "sub_agents": {"k8s": {"description": "Kubernetes specialist", "prompts": {"system": "s"}, "tools": ["kubernetes_get", "kubernetes_logs"]}}
        }});
        assert_eq!(pointers(layer), Vec::<String>::new());
    }

    #[test]
    fn mistakes_point_at_their_field() {
        let p = pointers(json!({"agent": {
            "provider": "gpt", "api_key": "sk-literal", "tools": ["kubectl_delete", "ask_nobody"],
            "prompts": {"system": "s", "tone": "x"}, "colour": "blue",
            "toolsets": {"github": {"token": "ghp_literal"}, "mcp": {"tools": {"url": "ftp://x"}}}
        }}));
        for expected in [
            "/agent/provider",
            "/agent/api_key",
            "/agent/tools/0",
            "/agent/tools/1",
            "/agent/prompts/tone",
            "/agent/colour",
            "/agent/toolsets/github/token",
            "/agent/toolsets/mcp/tools/url",
        ] {
            assert!(
                p.contains(&expected.to_owned()),
                "{expected} missing from {p:?}"
            );
        }
        // A real provider needs its endpoint.
        assert_eq!(
            pointers(json!({"agent": {"provider": "anthropic"}})),
            vec!["/agent"]
        );
        // MCP tools are named after a configured server.
        assert!(pointers(json!({"agent": {"tools": ["mcp:grafana/search"], "toolsets": {"mcp": {"grafana": {"url": "https://mcp.example.com/mcp"}}}}})).is_empty());
        assert_eq!(
            pointers(json!({"agent": {"tools": ["mcp:other"]}})),
            vec!["/agent/tools/0"]
        );
    }

    #[test]
    fn sub_agents_form_no_cycle_and_nest_two_deep_at_most() {
        let sub = |tools: &[&str]| json!({"description": "d", "tools": tools});
        let cycle = pointers(
            json!({"agent": {"sub_agents": {"a": sub(&["ask_b"]), "b": sub(&["ask_a"])}}}),
        );
        assert!(
            cycle.contains(&"/agent/sub_agents/a/tools".to_owned()),
            "{cycle:?}"
        );
        let own = pointers(json!({"agent": {"sub_agents": {"a": sub(&["ask_a"])}}}));
        assert_eq!(own, vec!["/agent/sub_agents/a/tools"]);
        let two = pointers(
            json!({"agent": {"sub_agents": {"a": sub(&["ask_b"]), "b": sub(&["kubernetes_get"])}}}),
        );
        assert!(two.is_empty(), "{two:?}");
        let three = pointers(
            json!({"agent": {"sub_agents": {"a": sub(&["ask_b"]), "b": sub(&["ask_c"]), "c": sub(&[])}}}),
        );
        assert!(
            three.contains(&"/agent/sub_agents/a/tools".to_owned()),
            "{three:?}"
        );
        let nameless = pointers(json!({"agent": {"sub_agents": {"a": {"tools": []}}}}));
        assert_eq!(nameless, vec!["/agent/sub_agents/a/description"]);
    }
}
