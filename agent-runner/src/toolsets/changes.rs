//! What changed, and what else is happening:
//! - `github_recent_changes`: a repository's recent commits, merged pull requests and deployments
//!   (GitHub's REST API, the team's token), for repositories the team lists in
//!   `toolsets.github.repos`;
//! - `switchyard_events`: the team's recent events from the orchestrator (other alerts, pages,
//!   questions), the run's own team only.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use switchyard_api::events::TeamEventsQuery;
use switchyard_common::clients::OrchestratorClient;

use crate::agent::tools::Tool;
use crate::messages::ToolSpec;

pub struct GithubRecentChanges {
    pub api_base: String,
    pub token: Option<String>,
    pub repos: Vec<String>,
    pub http: reqwest::Client,
}

impl GithubRecentChanges {
    /// The tool for `toolsets.github`; `None` without a repository list.
    pub fn from_config(
        v: Option<&Value>,
        api_base: &str,
        token: Option<String>,
        http: &reqwest::Client,
    ) -> Option<Self> {
        let repos: Vec<String> = v?
            .get("repos")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        (!repos.is_empty()).then(|| Self {
            api_base: api_base.trim_end_matches('/').to_owned(),
            token,
            repos,
            http: http.clone(),
        })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<Value>, String> {
        let api = super::Target {
            url: self.api_base.clone(),
            token: self.token.clone(),
        };
        let headers = [
            ("accept", "application/vnd.github+json"),
            ("user-agent", "switchyard"),
        ];
        let body = super::observability::get_with(&self.http, &api, path, query, &headers).await?;
        serde_json::from_str(&body)
            .map_err(|e| format!("GitHub answered something unexpected: {e}"))
    }
}

fn first_line(s: Option<&str>) -> String {
    s.unwrap_or("").lines().next().unwrap_or("").to_owned()
}

fn short(sha: Option<&str>) -> String {
    sha.unwrap_or("").chars().take(7).collect()
}

impl Tool for GithubRecentChanges {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "github_recent_changes".into(),
            description: "Recent commits, merged pull requests and deployments of one of the team's GitHub repositories: what changed before the incident.".into(),
            parameters: json!({"type": "object", "required": ["repo"], "properties": {
                "repo": {"type": "string", "enum": self.repos},
                "since": {"type": "string", "description": "RFC 3339; default the last 24 hours"},
                "limit": {"type": "integer", "description": "most of each (default 10, at most 50)"}}}),
        }
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let repo = args
                .get("repo")
                .and_then(Value::as_str)
                .ok_or("the argument \"repo\" is required")?;
            if !self.repos.iter().any(|r| r.eq_ignore_ascii_case(repo)) {
                return Err(format!(
                    "repository {repo:?} is not one this team may read; it may read {}",
                    self.repos.join(", ")
                ));
            }
            let limit = args
                .get("limit")
                .and_then(Value::as_u64)
                .unwrap_or(10)
                .clamp(1, 50) as usize;
            let since = match args.get("since").and_then(Value::as_str) {
                Some(s) => s.to_owned(),
                None => switchyard_common::time::rfc3339(
                    switchyard_common::time::now_ms() - 24 * 3_600_000,
                ),
            };
            let per_page = limit.to_string();
            let (commits_path, pulls_path, deploys_path) = (
                format!("/repos/{repo}/commits"),
                format!("/repos/{repo}/pulls"),
                format!("/repos/{repo}/deployments"),
            );
            let commits_q = [("since", since.clone()), ("per_page", per_page.clone())];
            let pulls_q = [
                ("state", "closed".to_owned()),
                ("sort", "updated".to_owned()),
                ("direction", "desc".to_owned()),
                ("per_page", "50".to_owned()),
            ];
            let deploys_q = [("per_page", per_page)];
            let (commits, pulls, deployments) = tokio::join!(
                self.get(&commits_path, &commits_q),
                self.get(&pulls_path, &pulls_q),
                self.get(&deploys_path, &deploys_q),
            );
            if let (Err(e), Err(_), Err(_)) = (&commits, &pulls, &deployments) {
                return Err(e.clone());
            }
            // Each part, or why it is missing.
            let part = |r: Result<Vec<Value>, String>, f: &dyn Fn(&Value) -> Option<Value>| match r
            {
                Ok(items) => json!(items.iter().filter_map(f).take(limit).collect::<Vec<_>>()),
                Err(e) => json!({"error": e}),
            };
            let commits = part(commits, &|c| {
                Some(
                    json!({"sha": short(c["sha"].as_str()), "author": c.pointer("/commit/author/name"),
                    "date": c.pointer("/commit/author/date"), "message": first_line(c.pointer("/commit/message").and_then(Value::as_str))}),
                )
            });
            let merged = part(pulls, &|p| {
                let at = p["merged_at"].as_str()?;
                (at >= since.as_str()).then(|| json!({"number": p["number"], "title": p["title"],
                    "merged_at": at, "author": p.pointer("/user/login"), "merge_sha": short(p["merge_commit_sha"].as_str())}))
            });
            let deployments = part(deployments, &|d| {
                let at = d["created_at"].as_str()?;
                (at >= since.as_str()).then(|| json!({"environment": d["environment"], "ref": d["ref"],
                    "sha": short(d["sha"].as_str()), "created_at": at, "creator": d.pointer("/creator/login")}))
            });
            Ok(json!({"repo": repo, "since": since, "commits": commits,
                "merged_pull_requests": merged, "deployments": deployments})
            .to_string())
        })
    }
}

/// What the model sees of `switchyard_events`.
pub fn events_spec() -> ToolSpec {
    ToolSpec {
        name: "switchyard_events".into(),
        description: "The team's other recent events received by Switchyard (alerts, pages, issues, questions), newest first: what else is happening.".into(),
        parameters: json!({"type": "object", "properties": {
            "since_minutes": {"type": "integer", "description": "how far back (default 60, at most 1440)"},
            "source": {"type": "string", "description": "only one sender, e.g. alertmanager, pagerduty, github"},
            "limit": {"type": "integer", "description": "most events (default 20, at most 100)"}}}),
    }
}

pub struct SwitchyardEvents {
    pub client: OrchestratorClient,
    pub org: String,
    pub team: String,
}

impl Tool for SwitchyardEvents {
    fn spec(&self) -> ToolSpec {
        events_spec()
    }

    fn call<'a>(&'a self, args: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let minutes = args
                .get("since_minutes")
                .and_then(Value::as_i64)
                .unwrap_or(60)
                .clamp(1, 1440);
            let q = TeamEventsQuery {
                since: Some(switchyard_common::time::rfc3339(
                    switchyard_common::time::now_ms() - minutes * 60_000,
                )),
                source: args
                    .get("source")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
                limit: args
                    .get("limit")
                    .and_then(Value::as_u64)
                    .map(|n| n.clamp(1, 100) as u32),
            };
            let events = self
                .client
                .team_events(&self.org, &self.team, &q)
                .await
                .map_err(|e| format!("the orchestrator did not answer: {e}"))?;
            Ok(json!({"team": self.team, "since_minutes": minutes, "events": events}).to_string())
        })
    }
}
