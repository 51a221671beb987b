//! MCP tools against a real MCP server (rmcp's streamable HTTP server in process): the runner lists
//! the server's tools, offers only those the org allows and the team enables, sends the header
//! from the secrets store, and feeds the server's answers (and its errors) back to the model.

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use switchyard_agent_runner::toolsets::{self, Context, mcp};

#[derive(Clone)]
struct Grafana;

fn tool(name: &'static str, description: &'static str) -> Tool {
    let schema = json!({"type": "object", "properties": {"query": {"type": "string"}}});
    Tool::new(
        name,
        description,
        Arc::new(schema.as_object().unwrap().clone()),
    )
}

impl ServerHandler for Grafana {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            tool("search_dashboards", "Find Grafana dashboards by title"),
            tool("delete_dashboard", "Delete a dashboard"),
            tool("broken", "Always fails"),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let q = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("query"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Ok(match request.name.as_ref() {
            "search_dashboards" => CallToolResult::success(vec![ContentBlock::text(format!(
                "1 dashboard matches {q:?}: Checkout latency (uid abc)"
            ))]),
            "delete_dashboard" => CallToolResult::success(vec![ContentBlock::text("deleted")]),
            _ => CallToolResult::error(vec![ContentBlock::text("the datasource is down")]),
        }
        .into())
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

/// The server at `/mcp`; records each request's Authorization header.
async fn server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let service: StreamableHttpService<Grafana, LocalSessionManager> = StreamableHttpService::new(
        || Ok(Grafana),
        Default::default(),
        StreamableHttpServerConfig::default(),
    );
    let record = seen.clone();
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let record = record.clone();
                async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    record.lock().unwrap().push(auth);
                    next.run(req).await
                }
            },
        ));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", l.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

fn ctx(tools: Vec<Arc<mcp::McpTool>>) -> Context {
    Context {
        org: "acme".into(),
        team: "payments".into(),
        secrets: Default::default(),
        http: reqwest::Client::new(),
        kube: None,
        events: None,
        github_api_base: String::new(),
        mcp: tools,
    }
}

#[tokio::test]
async fn mcp_tools_are_listed_allowed_called_and_authenticated() {
    let (url, seen) = server().await;
    let section = json!({"tools": ["mcp:grafana"], "toolsets": {"mcp": {"grafana": {"url": url,
        "allow": ["search_dashboards", "broken"], "headers": {"Authorization": {"secret": "grafana-mcp"}}}}}});
    let secrets = [("grafana-mcp".to_owned(), "Bearer glsa_team".to_owned())].into();
    assert_eq!(toolsets::secret_names(&section), ["grafana-mcp"]);
    let enabled = vec!["mcp:grafana".to_owned()];
    let (connected, problems) =
        mcp::connect(section.pointer("/toolsets/mcp"), &enabled, &secrets).await;
    assert!(problems.is_empty(), "{problems:?}");
    let (tools, missing) = toolsets::build(&section, &enabled, &ctx(connected));
    assert!(missing.is_empty(), "{missing:?}");
    // The org's allow-list holds back delete_dashboard.
    let specs = tools.specs();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["mcp_grafana_search_dashboards", "mcp_grafana_broken"]
    );
    assert_eq!(specs[0].description, "Find Grafana dashboards by title");
    assert_eq!(specs[0].parameters["properties"]["query"]["type"], "string");

    let r = tools
        .call(
            "mcp_grafana_search_dashboards",
            &json!({"query": "checkout"}),
        )
        .await;
    assert!(!r.error, "{r:?}");
    assert_eq!(
        r.output,
        "1 dashboard matches \"checkout\": Checkout latency (uid abc)"
    );
    let r = tools.call("mcp_grafana_broken", &json!({})).await;
    assert!(
        r.error && r.output.contains("the datasource is down"),
        "{r:?}"
    );
    let r = tools.call("mcp_grafana_delete_dashboard", &json!({})).await;
    assert!(r.error && r.output.contains("no tool named"), "{r:?}");
    // Every request carried the header from the secrets store.
    let auths = seen.lock().unwrap().clone();
    assert!(auths.len() >= 3, "{auths:?}");
    assert!(auths.iter().all(|a| a == "Bearer glsa_team"), "{auths:?}");
}

#[tokio::test]
async fn one_tool_by_name_and_what_cannot_be_had_is_said() {
    let (url, _) = server().await;
    let section = json!({"toolsets": {"mcp": {"grafana": {"url": url, "allow": ["search_dashboards"]},
        "gone": {"url": "http://127.0.0.1:9/mcp"}}}});
    let enabled: Vec<String> = [
        "mcp:grafana/search_dashboards",
        "mcp:grafana/delete_dashboard",
        "mcp:gone",
        "mcp:unknown",
    ]
    .map(str::to_owned)
    .to_vec();
    let (connected, problems) = mcp::connect(
        section.pointer("/toolsets/mcp"),
        &enabled,
        &Default::default(),
    )
    .await;
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0].config_name, "mcp:grafana/search_dashboards");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("mcp:gone: "), "{problems:?}");
    assert!(
        problems[1].starts_with("mcp:grafana/delete_dashboard: "),
        "{problems:?}"
    );
    assert!(problems[2].contains("no such server"), "{problems:?}");
    let (tools, missing) = toolsets::build(&section, &enabled, &ctx(connected));
    assert_eq!(tools.specs().len(), 1);
    assert_eq!(
        missing,
        ["mcp:grafana/delete_dashboard", "mcp:gone", "mcp:unknown"]
    );
}
