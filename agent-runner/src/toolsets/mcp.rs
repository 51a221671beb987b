//! Tools from remote MCP servers (streamable HTTP, through the `rmcp` client).
//!
//! `toolsets.mcp.<server>` names a server: `url`, optional `allow` (the only tools of it the
//! org allows) and `headers` (each a secret reference, e.g. an `Authorization` value). A team
//! enables `mcp:<server>` (every allowed tool) or `mcp:<server>/<tool>` (one). Before a run starts
//! the runner connects once to each server the run (or one of its sub-agents) uses, lists its
//! tools, and offers the enabled, allowed ones to the model as `mcp_<server>_<tool>`. The
//! connections close when the run ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ServiceExt, model};
use serde_json::Value;

use super::Secrets;
use crate::agent::tools::Tool;
use crate::messages::ToolSpec;

/// Longest wait to connect to a server and list its tools.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for one tool call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One MCP tool of a connected server, as the model sees it.
pub struct McpTool {
    /// The name the team enables it by: `mcp:<server>/<tool>`.
    pub config_name: String,
    exposed: String,
    tool: model::Tool,
    client: Arc<RunningService<RoleClient, ()>>,
}

/// `mcp_<server>_<tool>` with only the characters every provider accepts, at most 64.
fn exposed_name(server: &str, tool: &str) -> String {
    let mut s: String = format!("mcp_{server}_{tool}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(64);
    s
}

/// The servers `names` use, each with the tools asked for by name (`None`: all it allows).
fn wanted(names: &[String]) -> BTreeMap<String, Option<BTreeSet<String>>> {
    let mut out: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    for n in names {
        let Some(rest) = n.strip_prefix("mcp:") else {
            continue;
        };
        match rest.split_once('/') {
            None => {
                out.insert(rest.to_owned(), None);
            }
            Some((server, tool)) => {
                let e = out
                    .entry(server.to_owned())
                    .or_insert_with(|| Some(BTreeSet::new()));
                if let Some(set) = e {
                    set.insert(tool.to_owned());
                }
            }
        }
    }
    out
}

/// The secret names the MCP servers' headers refer to.
pub fn secret_names(mcp: Option<&Value>) -> Vec<String> {
    mcp.and_then(Value::as_object)
        .into_iter()
        .flat_map(|servers| servers.values())
        .filter_map(|s| s.get("headers").and_then(Value::as_object))
        .flat_map(|h| h.values())
        .filter_map(|v| v.get("secret").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Connects to each server `names` use and lists its tools: the allowed, enabled ones, and what
/// could not be had (an unknown or unreachable server, a tool it does not have or allow).
pub async fn connect(
    mcp: Option<&Value>,
    names: &[String],
    secrets: &Secrets,
) -> (Vec<Arc<McpTool>>, Vec<String>) {
    let mut tools = Vec::new();
    let mut problems = Vec::new();
    let wanted = wanted(names);
    if !wanted.is_empty() {
        // The MCP client's TLS (rustls without a built-in provider) uses ring, as the rest of
        // the workspace does; the process-wide default is set once, and again is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    for (server, asked) in wanted {
        let Some(cfg) = mcp.and_then(|m| m.get(&server)) else {
            problems.push(format!("mcp:{server}: no such server in toolsets.mcp"));
            continue;
        };
        match connect_one(&server, cfg, secrets).await {
            Ok((client, listed)) => {
                let allow: Option<BTreeSet<&str>> = cfg
                    .get("allow")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect());
                let client = Arc::new(client);
                let mut found = BTreeSet::new();
                for tool in listed {
                    let name = tool.name.to_string();
                    let allowed = allow.as_ref().is_none_or(|a| a.contains(name.as_str()));
                    let enabled = asked.as_ref().is_none_or(|s| s.contains(&name));
                    if allowed && enabled {
                        found.insert(name.clone());
                        tools.push(Arc::new(McpTool {
                            config_name: format!("mcp:{server}/{name}"),
                            exposed: exposed_name(&server, &name),
                            tool,
                            client: client.clone(),
                        }));
                    }
                }
                for missing in asked.iter().flatten().filter(|t| !found.contains(*t)) {
                    problems.push(format!(
                        "mcp:{server}/{missing}: the server does not offer it, or toolsets.mcp.{server}.allow does not list it"
                    ));
                }
            }
            Err(e) => problems.push(format!("mcp:{server}: {e}")),
        }
    }
    (tools, problems)
}

async fn connect_one(
    server: &str,
    cfg: &Value,
    secrets: &Secrets,
) -> Result<(RunningService<RoleClient, ()>, Vec<model::Tool>), String> {
    let url = cfg
        .get("url")
        .and_then(Value::as_str)
        .ok_or("no url configured")?;
    let mut headers = HashMap::new();
    for (k, v) in cfg
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let name = v
            .get("secret")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("header {k} must be a secret reference"))?;
        let value = secrets
            .get(name)
            .ok_or_else(|| format!("secret {name} was not resolved"))?;
        headers.insert(
            http::HeaderName::try_from(k.as_str())
                .map_err(|_| format!("{k:?} is not a header name"))?,
            http::HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("the value of header {k} is not a valid header value"))?,
        );
    }
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    let work = async {
        let client = ().serve(transport).await.map_err(|e| format!("connecting to {url}: {e}"))?;
        let tools = client
            .list_all_tools()
            .await
            .map_err(|e| format!("listing the tools of {server}: {e}"))?;
        Ok::<_, String>((client, tools))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| format!("{url} did not answer within {CONNECT_TIMEOUT:?}"))?
}

/// A shared MCP tool in one run's tool box.
pub struct Shared(pub Arc<McpTool>);

impl Tool for Shared {
    fn spec(&self) -> ToolSpec {
        let t = &self.0.tool;
        ToolSpec {
            name: self.0.exposed.clone(),
            description: t
                .description
                .as_deref()
                .or(t.title.as_deref())
                .unwrap_or("a tool of an MCP server")
                .to_owned(),
            parameters: Value::Object((*t.input_schema).clone()),
        }
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut params = CallToolRequestParams::new(self.0.tool.name.clone());
            if let Some(obj) = args.as_object() {
                params = params.with_arguments(obj.clone());
            }
            let result = tokio::time::timeout(CALL_TIMEOUT, self.0.client.call_tool(params))
                .await
                .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))?
                .map_err(|e| format!("the MCP server failed the call: {e}"))?;
            let mut parts: Vec<String> = result
                .content
                .iter()
                .map(|c| match c {
                    ContentBlock::Text(t) => t.text.clone(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                })
                .collect();
            if parts.is_empty()
                && let Some(s) = &result.structured_content
            {
                parts.push(s.to_string());
            }
            let text = parts.join("\n");
            if result.is_error == Some(true) {
                Err(text)
            } else {
                Ok(text)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_wanted_tools() {
        assert_eq!(
            exposed_name("grafana", "search/dashboards"),
            "mcp_grafana_search_dashboards"
        );
        assert_eq!(exposed_name("s", &"x".repeat(100)).len(), 64);
        let w = wanted(&[
            "mcp:grafana".into(),
            "mcp:docs/search".into(),
            "mcp:docs/read".into(),
            "prometheus_query".into(),
        ]);
        assert_eq!(w["grafana"], None);
        assert_eq!(
            w["docs"].as_ref().unwrap().iter().collect::<Vec<_>>(),
            ["read", "search"]
        );
        assert_eq!(w.len(), 2);
    }
}
