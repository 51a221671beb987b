//! Configuration, tokens and secrets: `switchyard config|tokens|secrets ...`.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Api, Failure, Outcome, Service, enc, print_json, query, read_json, show, table};

#[derive(Debug, Subcommand)]
pub enum Config {
    /// A node's effective config; with --explain, which node set each value.
    Get {
        node: String,
        #[arg(long)]
        explain: bool,
    },
    /// A node's own layer and its ETag (what `set --if-match` expects).
    Layer { node: String },
    /// Replace a node's own layer with a JSON file.
    Set {
        node: String,
        #[arg(long)]
        file: PathBuf,
        /// The ETag of the layer you edited (`config layer`); default: the current one.
        #[arg(long)]
        if_match: Option<String>,
        /// Why: kept in the history and the audit log.
        #[arg(long)]
        message: Option<String>,
    },
    /// Versions of a node's layer, newest first.
    History { node: String },
    /// What changed in a node's layer between two versions.
    Diff {
        node: String,
        #[arg(long)]
        from: i64,
        /// Default: the current version.
        #[arg(long)]
        to: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Tokens {
    /// A team's tokens (--team), or the organisation's admin tokens.
    List {
        #[arg(long)]
        team: Option<String>,
    },
    /// Issue a token; its secret is printed this once.
    Create {
        #[arg(long)]
        label: String,
        #[arg(long)]
        team: Option<String>,
        /// The person or system it is for.
        #[arg(long)]
        subject: Option<String>,
        /// For example 30d or 12h.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Revoke a token.
    Revoke {
        id: String,
        #[arg(long)]
        team: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Secrets {
    List,
    /// Store a secret (value from --value-file, else standard input).
    Set {
        name: String,
        #[arg(long)]
        value_file: Option<PathBuf>,
        /// Teams that may read it (default: the whole organisation's agents).
        #[arg(long = "reader")]
        readers: Vec<String>,
    },
    Delete {
        name: String,
    },
}

pub async fn config(api: &Api, cmd: Config) -> Outcome {
    let o = enc(&api.org().await?);
    let node_path = |n: &str| format!("/api/v1/orgs/{o}/nodes/{}/config", enc(n));
    match cmd {
        Config::Get { node, explain } => {
            let q = if explain { "?explain=true" } else { "" };
            let v = api
                .get(Service::Config, &format!("{}{q}", node_path(&node)))
                .await?;
            if api.json() || !explain {
                print_json(if api.json() { &v } else { &v["config"] });
            } else {
                let mut rows: Vec<Value> = v["explain"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, from)| json!({"path": k, "value": v["config"].pointer(k), "from": from}))
                    .collect();
                rows.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
                table(
                    &rows,
                    &[("PATH", "/path"), ("VALUE", "/value"), ("SET BY", "/from")],
                );
            }
        }
        Config::Layer { node } => {
            let a = api
                .send(
                    Service::Config,
                    Method::GET,
                    &format!("{}/layer", node_path(&node)),
                    None,
                    None,
                )
                .await?;
            api.emit(&a.body, || {
                println!(
                    "version {} etag {}",
                    a.body["version"],
                    a.etag.unwrap_or_default()
                );
                print_json(&a.body["layer"]);
            });
        }
        Config::Set {
            node,
            file,
            if_match,
            message,
        } => {
            let layer = read_json(&file)?;
            let path = format!("{}/layer", node_path(&node));
            let tag = match if_match {
                Some(t) => t,
                None => api
                    .send(Service::Config, Method::GET, &path, None, None)
                    .await?
                    .etag
                    .unwrap_or_default(),
            };
            let q = query(&[("message", message)]);
            let a = api
                .send(
                    Service::Config,
                    Method::PUT,
                    &format!("{path}{q}"),
                    Some(layer),
                    Some(&tag),
                )
                .await?;
            if api.json() {
                print_json(&a.body);
            } else if a.body["version"].is_i64() {
                println!(
                    "{node}: version {} (etag {})",
                    a.body["version"],
                    a.etag.unwrap_or_default()
                );
            } else {
                println!(
                    "{node}: the change touches protected paths; change {} awaits approval",
                    a.body["id"].as_str().unwrap_or("?")
                );
            }
        }
        Config::History { node } => {
            let h = api
                .get(Service::Config, &format!("{}/history", node_path(&node)))
                .await?;
            api.emit(&h, || {
                let rows: Vec<Value> = h.as_array().into_iter().flatten().map(|e| {
                    let paths: Vec<&str> = e["diff"].as_array().into_iter().flatten()
                        .filter_map(|c| c["path"].as_str()).collect();
                    json!({"version": e["version"], "author": e["author"], "at": e["created_at"],
                        "message": e["message"], "changed": paths.join(" ")})
                }).collect();
                table(
                    &rows,
                    &[
                        ("VERSION", "/version"),
                        ("AUTHOR", "/author"),
                        ("AT", "/at"),
                        ("MESSAGE", "/message"),
                        ("CHANGED", "/changed"),
                    ],
                );
            });
        }
        Config::Diff { node, from, to } => {
            let layer = api
                .get(Service::Config, &format!("{}/layer", node_path(&node)))
                .await?;
            let history = api
                .get(Service::Config, &format!("{}/history", node_path(&node)))
                .await?;
            let history = history.as_array().cloned().unwrap_or_default();
            let current = layer["version"].as_i64().unwrap_or(0);
            let to = to.unwrap_or(current);
            let old = switchyard_common::config_diff::at_version(
                &layer["layer"],
                current,
                &history,
                from,
            )
            .map_err(Failure::Invalid)?;
            let new =
                switchyard_common::config_diff::at_version(&layer["layer"], current, &history, to)
                    .map_err(Failure::Invalid)?;
            let changes = switchyard_common::config_diff::diff(&old, &new);
            if api.json() {
                print_json(&serde_json::to_value(&changes).unwrap_or_default());
            } else if changes.is_empty() {
                println!("no difference between versions {from} and {to}");
            } else {
                for c in changes {
                    match c.op {
                        "add" => println!("+ {} = {}", c.path, c.value.unwrap_or_default()),
                        "remove" => println!("- {} = {}", c.path, c.from.unwrap_or_default()),
                        _ => println!(
                            "~ {}: {} -> {}",
                            c.path,
                            c.from.unwrap_or_default(),
                            c.value.unwrap_or_default()
                        ),
                    }
                }
            }
        }
    }
    Ok(())
}

pub async fn tokens(api: &Api, cmd: Tokens) -> Outcome {
    let o = enc(&api.org().await?);
    let base = |team: &Option<String>| match team {
        Some(t) => format!("/api/v1/orgs/{o}/nodes/{}/tokens", enc(t)),
        None => format!("/api/v1/orgs/{o}/admin-tokens"),
    };
    let columns = [
        ("ID", "/id"),
        ("KIND", "/kind"),
        ("LABEL", "/label"),
        ("SUBJECT", "/subject"),
        ("PREFIX", "/prefix"),
        ("EXPIRES", "/expires_at"),
        ("LAST USED", "/last_used_at"),
        ("REVOKED", "/revoked_at"),
    ];
    match cmd {
        Tokens::List { team } => {
            let v = api.get(Service::Config, &base(&team)).await?;
            show(api, &v, true, &columns);
        }
        Tokens::Create {
            label,
            team,
            subject,
            expires_in,
        } => {
            let v = api
                .post(
                    Service::Config,
                    &base(&team),
                    json!({"label": label, "subject": subject, "expires_in": expires_in}),
                )
                .await?;
            api.emit(&v, || {
                println!(
                    "token {} issued; its secret, shown this once:",
                    v["id"].as_str().unwrap_or("")
                );
                println!("{}", v["secret"].as_str().unwrap_or(""));
            });
        }
        Tokens::Revoke { id, team } => {
            api.delete(Service::Config, &format!("{}/{}", base(&team), enc(&id)))
                .await?;
            if !api.json() {
                println!("token {id} revoked");
            }
        }
    }
    Ok(())
}

pub async fn secrets(api: &Api, cmd: Secrets) -> Outcome {
    let o = enc(&api.org().await?);
    let columns = [
        ("NAME", "/name"),
        ("FINGERPRINT", "/fingerprint"),
        ("READERS", "/readers"),
        ("UPDATED", "/updated_at"),
    ];
    match cmd {
        Secrets::List => {
            let v = api
                .get(Service::Config, &format!("/api/v1/orgs/{o}/secrets"))
                .await?;
            show(api, &v, true, &columns);
        }
        Secrets::Set {
            name,
            value_file,
            readers,
        } => {
            let value = match value_file {
                Some(p) => std::fs::read_to_string(&p)
                    .map_err(|e| Failure::Invalid(format!("reading {}: {e}", p.display())))?,
                None => std::io::read_to_string(std::io::stdin())
                    .map_err(|e| Failure::Invalid(format!("reading standard input: {e}")))?,
            };
            let mut body = json!({"value": value.trim_end_matches('\n')});
            if !readers.is_empty() {
                body["readers"] = json!(readers);
            }
            let a = api
                .send(
                    Service::Config,
                    Method::PUT,
                    &format!("/api/v1/orgs/{o}/secrets/{}", enc(&name)),
                    Some(body),
                    None,
                )
                .await?;
            show(api, &a.body, false, &columns);
        }
        Secrets::Delete { name } => {
            api.delete(
                Service::Config,
                &format!("/api/v1/orgs/{o}/secrets/{}", enc(&name)),
            )
            .await?;
            if !api.json() {
                println!("secret {name} deleted");
            }
        }
    }
    Ok(())
}
