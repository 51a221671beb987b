//! The built-in tools, grouped by the toolset whose settings they use, and building a run's
//! [`ToolBox`] from the team's config: only the tools the team enabled, each reaching only what its
//! toolset's settings name (a team's Prometheus, its allow-listed URLs), credentials resolved from
//! the org secrets store before the run starts.
//!
//! # Layout
//! - [`observability`]: `prometheus_query`, `prometheus_range_query`, `alertmanager_alerts`,
//!   `loki_query` over the HTTP APIs of the team's servers;
//! - [`changes`]: `github_recent_changes` (the team's repositories) and `switchyard_events` (the
//!   team's other recent events);
//! - [`kubernetes`]: `kubernetes_get`, `kubernetes_logs`, `kubernetes_events`, read-only, in the
//!   team's namespaces that are assigned to its org;
//! - [`web`]: `http_get`, limited to allow-listed URL prefixes;
//! - [`mcp`]: tools of remote MCP servers, connected once per run;
//! - [`sub_agents`]: `ask_<name>`, a sub-agent's own loop as a tool.

pub mod changes;
pub mod kubernetes;
pub mod mcp;
pub mod observability;
pub mod sub_agents;
pub mod web;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::agent::tools::ToolBox;

/// A toolset's base URL and optional bearer token, as the team configured them.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Resolved credentials of a run's toolsets, by the secret name config refers to.
pub type Secrets = BTreeMap<String, String>;

/// What a run's tools are built from besides the team's config: whose run it is, the credentials
/// resolved for it, and the runner's clients.
#[derive(Clone)]
pub struct Context {
    pub org: String,
    pub team: String,
    pub secrets: Secrets,
    pub http: reqwest::Client,
    /// The cluster the runner reads for the Kubernetes tools, if it has one.
    pub kube: Option<kube::Client>,
    /// The orchestrator, for `switchyard_events`, if the runner knows it.
    pub events: Option<switchyard_common::clients::OrchestratorClient>,
    /// GitHub's REST API (or a GitHub Enterprise server's).
    pub github_api_base: String,
    /// The MCP tools this run connected to ([`mcp::connect`]), shared by the agent and its
    /// sub-agents.
    pub mcp: Vec<std::sync::Arc<mcp::McpTool>>,
}

/// The secret names the toolsets of `agent` refer to (resolved before the run).
pub fn secret_names(agent: &Value) -> Vec<String> {
    let mut out = Vec::new();
    // Sub-agents' own keys.
    for sub in agent
        .get("sub_agents")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|s| s.values())
    {
        if let Some(name) = sub.pointer("/api_key/secret").and_then(Value::as_str) {
            out.push(name.to_owned());
        }
    }
    out.extend(mcp::secret_names(agent.pointer("/toolsets/mcp")));
    if let Some(sets) = agent.get("toolsets").and_then(Value::as_object) {
        for set in ["prometheus", "alertmanager", "loki", "github"] {
            if let Some(name) = sets
                .get(set)
                .and_then(|s| s.pointer("/token/secret"))
                .and_then(Value::as_str)
            {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// The spec the model sees for the built-in tool `name` as `agent` configures it, without
/// reaching anything: evals replay recorded outputs behind the real specs.
pub fn spec_for(name: &str, agent: &Value) -> Option<crate::messages::ToolSpec> {
    use crate::agent::tools::Tool;
    let sets = agent.get("toolsets").cloned().unwrap_or(Value::Null);
    let http = reqwest::Client::new();
    let t = || Target {
        url: String::new(),
        token: None,
    };
    let namespaces: Vec<String> = sets
        .pointer("/kubernetes/namespaces")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| vec!["default".into()]);
    Some(match name {
        "prometheus_query" => observability::PrometheusQuery::new(t(), &http).spec(),
        "prometheus_range_query" => observability::PrometheusRange::new(t(), &http).spec(),
        "alertmanager_alerts" => observability::AlertmanagerAlerts::new(t(), &http).spec(),
        "loki_query" => observability::LokiQuery::new(t(), &http).spec(),
        "kubernetes_get" => kubernetes::get_spec(&namespaces),
        "kubernetes_logs" => kubernetes::logs_spec(&namespaces),
        "kubernetes_events" => kubernetes::events_spec(&namespaces),
        "switchyard_events" => changes::events_spec(),
        "github_recent_changes" => {
            let github = sets
                .get("github")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"repos": ["example/app"]}));
            changes::GithubRecentChanges::from_config(Some(&github), "", None, &http)?.spec()
        }
        "http_get" => web::HttpGet::from_config(sets.get("http"))?.spec(),
        _ => return None,
    })
}

/// The tool box of a run: each enabled built-in tool whose toolset is configured. An enabled tool
/// without its toolset is left out and said so in the answer (the model never sees it).
pub fn build(agent: &Value, enabled: &[String], ctx: &Context) -> (ToolBox, Vec<String>) {
    let (secrets, http) = (&ctx.secrets, &ctx.http);
    let sets = agent.get("toolsets").cloned().unwrap_or(Value::Null);
    let cluster = ctx.kube.clone().and_then(|client| {
        kubernetes::Cluster::from_config(client, &ctx.org, sets.get("kubernetes"))
    });
    let target = |set: &str| -> Option<Target> {
        let s = sets.get(set)?;
        Some(Target {
            url: s.get("url")?.as_str()?.trim_end_matches('/').to_owned(),
            token: s
                .pointer("/token/secret")
                .and_then(Value::as_str)
                .and_then(|n| secrets.get(n).cloned()),
        })
    };
    let mut tools = ToolBox::default();
    let mut missing = Vec::new();
    for name in enabled {
        if name.starts_with("mcp:") {
            let prefix = format!("{name}/");
            let mut any = false;
            for t in ctx
                .mcp
                .iter()
                .filter(|t| t.config_name == *name || t.config_name.starts_with(&prefix))
            {
                any = true;
                tools = tools.with(Box::new(mcp::Shared(t.clone())));
            }
            if !any {
                missing.push(name.clone());
            }
            continue;
        }
        let tool: Option<Box<dyn crate::agent::tools::Tool>> = match name.as_str() {
            "prometheus_query" => target("prometheus")
                .map(|t| Box::new(observability::PrometheusQuery::new(t, http)) as _),
            "prometheus_range_query" => target("prometheus")
                .map(|t| Box::new(observability::PrometheusRange::new(t, http)) as _),
            "alertmanager_alerts" => target("alertmanager")
                .map(|t| Box::new(observability::AlertmanagerAlerts::new(t, http)) as _),
            "loki_query" => {
                target("loki").map(|t| Box::new(observability::LokiQuery::new(t, http)) as _)
            }
            "http_get" => web::HttpGet::from_config(sets.get("http")).map(|t| Box::new(t) as _),
            "kubernetes_get" => cluster
                .clone()
                .map(|c| Box::new(kubernetes::KubernetesGet(c)) as _),
            "kubernetes_logs" => cluster
                .clone()
                .map(|c| Box::new(kubernetes::KubernetesLogs(c)) as _),
            "kubernetes_events" => cluster
                .clone()
                .map(|c| Box::new(kubernetes::KubernetesEvents(c)) as _),
            "github_recent_changes" => changes::GithubRecentChanges::from_config(
                sets.get("github"),
                &ctx.github_api_base,
                sets.pointer("/github/token/secret")
                    .and_then(Value::as_str)
                    .and_then(|n| secrets.get(n).cloned()),
                http,
            )
            .map(|t| Box::new(t) as _),
            "switchyard_events" => ctx.events.clone().map(|client| {
                Box::new(changes::SwitchyardEvents {
                    client,
                    org: ctx.org.clone(),
                    team: ctx.team.clone(),
                }) as _
            }),
            // Sub-agents are added by `sub_agents::tools_for`.
            n if n.starts_with("ask_") => continue,
            _ => None,
        };
        match tool {
            Some(t) => tools = tools.with(t),
            None => missing.push(name.clone()),
        }
    }
    (tools, missing)
}
