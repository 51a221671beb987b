//! Organisations and teams: `switchyard orgs ...`, `switchyard teams ...`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Api, Failure, Outcome, Service, enc, read_json, show, table};

#[derive(Debug, Subcommand)]
pub enum Orgs {
    /// Every organisation (platform admin).
    List,
    /// One organisation.
    Get { org: String },
    /// Create an organisation (platform admin).
    Create {
        id: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Teams {
    /// The organisation's tree of groups and teams.
    Tree,
    /// Onboard a team: node, config layer, token, secret and CronJobs, rolled back on failure.
    /// Waits for the provisioning run and prints its steps.
    Onboard {
        team: String,
        #[arg(long)]
        name: String,
        /// The group it goes under (default: directly under the organisation).
        #[arg(long)]
        parent: Option<String>,
        /// The team's config layer, a JSON file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The same key answers the same run (default: one derived from the team id).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Offboard a team: CronJobs, tokens, secrets, config and node; waits for the run.
    Offboard { team: String },
}

pub async fn orgs(api: &Api, cmd: Orgs) -> Outcome {
    let (v, list) = match cmd {
        Orgs::List => (api.get(Service::Config, "/api/v1/orgs").await?, true),
        Orgs::Get { org } => (
            api.get(Service::Config, &format!("/api/v1/orgs/{}", enc(&org)))
                .await?,
            false,
        ),
        Orgs::Create { id, name } => (
            api.post(
                Service::Config,
                "/api/v1/orgs",
                json!({"id": id, "name": name}),
            )
            .await?,
            false,
        ),
    };
    show(
        api,
        &v,
        list,
        &[("ID", "/id"), ("NAME", "/name"), ("CREATED", "/created_at")],
    );
    Ok(())
}

/// Prints a list (or one item) as a table, or the JSON with --json.
pub async fn teams(api: &Api, cmd: Teams) -> Outcome {
    let org = api.org().await?;
    let o = enc(&org);
    let run = match cmd {
        Teams::Tree => {
            let tree = api
                .get(Service::Config, &format!("/api/v1/orgs/{o}/nodes"))
                .await?;
            api.emit(&tree, || {
                print_tree(&tree, 0);
            });
            return Ok(());
        }
        Teams::Onboard {
            team,
            name,
            parent,
            config,
            idempotency_key,
        } => {
            let mut body = json!({
                "team_id": team,
                "name": name,
                "idempotency_key": idempotency_key.unwrap_or_else(|| format!("cli-onboard-{team}")),
            });
            if let Some(p) = parent {
                body["parent_id"] = json!(p);
            }
            if let Some(path) = config {
                body["config"] = read_json(&path)?;
            }
            api.post(
                Service::Orchestrator,
                &format!("/api/v1/orgs/{o}/provisioning"),
                body,
            )
            .await?
        }
        Teams::Offboard { team } => {
            api.post(
                Service::Orchestrator,
                &format!("/api/v1/orgs/{o}/teams/{}/deprovision", enc(&team)),
                json!({}),
            )
            .await?
        }
    };
    let run = wait_for_run(api, &o, run).await?;
    api.emit(&run, || {
        println!(
            "{} {} {}: {}",
            run["kind"].as_str().unwrap_or(""),
            run["team_id"].as_str().unwrap_or(""),
            run["id"].as_str().unwrap_or(""),
            run["status"].as_str().unwrap_or("")
        );
        let steps = run["steps"].as_array().cloned().unwrap_or_default();
        table(
            &steps,
            &[
                ("STEP", "/name"),
                ("STATUS", "/status"),
                ("DETAIL", "/detail"),
                ("ERROR", "/error"),
            ],
        );
        if let Some(e) = run["error"].as_str() {
            println!("error: {e}");
        }
    });
    match run["status"].as_str() {
        Some("succeeded") => Ok(()),
        _ => Err(Failure::Other(format!(
            "the run ended {}",
            run["status"].as_str().unwrap_or("unknown")
        ))),
    }
}

/// Polls a provisioning run until it ends (up to 5 minutes).
async fn wait_for_run(api: &Api, org: &str, mut run: Value) -> Outcome<Value> {
    let id = run["id"].as_str().unwrap_or_default().to_owned();
    for _ in 0..600 {
        if !matches!(run["status"].as_str(), Some("pending" | "running")) {
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        run = api
            .get(
                Service::Orchestrator,
                &format!("/api/v1/orgs/{org}/provisioning/{}", enc(&id)),
            )
            .await?;
    }
    Err(Failure::Unavailable(format!(
        "provisioning run {id} has not ended after 5 minutes"
    )))
}

fn print_tree(node: &Value, depth: usize) {
    println!(
        "{}{} ({}) {}",
        "  ".repeat(depth),
        node["id"].as_str().unwrap_or(""),
        node["kind"].as_str().unwrap_or(""),
        node["name"].as_str().unwrap_or("")
    );
    for c in node["children"].as_array().into_iter().flatten() {
        print_tree(c, depth + 1);
    }
}
