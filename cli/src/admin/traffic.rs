//! What flows through: `switchyard integrations|events|runs|audit ...`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::{Api, Failure, Outcome, Service, enc, print_json, query, show, table};

#[derive(Debug, Subcommand)]
pub enum Integrations {
    List,
    /// Create an integration; prints the webhook URL to give the sender.
    Create {
        /// gitlab, pagerduty, incident_io, alertmanager, grafana, sentry, linear, jira, webhook...
        #[arg(long)]
        source: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        default_team: Option<String>,
        /// The signing secret, from a file (default: a new random one, printed once).
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Add a secret; the old ones keep verifying until retired.
    Rotate {
        id: String,
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Retire a secret: it no longer verifies.
    Retire {
        id: String,
        secret_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Events {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One event with its timeline (--json: and its payload).
    Show { id: String },
    /// Replay one event, or every finished one matching the filters.
    Replay {
        id: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        team: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Runs {
    List {
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One run with its transcript.
    Show {
        id: String,
    },
    Cancel {
        id: String,
    },
}

fn read_secret(path: &Option<PathBuf>) -> Outcome<(String, bool)> {
    match path {
        Some(p) => std::fs::read_to_string(p)
            .map(|s| (s.trim().to_owned(), false))
            .map_err(|e| Failure::Invalid(format!("reading {}: {e}", p.display()))),
        None => Ok((hex::encode(rand::random::<[u8; 24]>()), true)),
    }
}

pub async fn integrations(api: &Api, cmd: Integrations) -> Outcome {
    let o = enc(&api.org().await?);
    let base = format!("/api/v1/orgs/{o}/integrations");
    let columns = [
        ("ID", "/id"),
        ("SOURCE", "/source"),
        ("NAME", "/name"),
        ("DEFAULT TEAM", "/default_team"),
        ("WEBHOOK PATH", "/webhook_path"),
    ];
    match cmd {
        Integrations::List => {
            let v = api.get(Service::Orchestrator, &base).await?;
            show(api, &v, true, &columns);
        }
        Integrations::Create {
            source,
            name,
            default_team,
            secret_file,
        } => {
            let (secret, generated) = read_secret(&secret_file)?;
            let v = api
                .post(
                    Service::Orchestrator,
                    &base,
                    json!({"source": source, "name": name,
                "default_team": default_team, "secrets": [secret]}),
                )
                .await?;
            api.emit(&v, || {
                show(api, &v, false, &columns);
                println!(
                    "webhook URL: {}{}",
                    api.args.orchestrator_url.trim_end_matches('/'),
                    v["webhook_path"].as_str().unwrap_or("")
                );
                if generated {
                    println!("signing secret (shown this once; give it to the sender): {secret}");
                }
            });
        }
        Integrations::Rotate { id, secret_file } => {
            let (secret, generated) = read_secret(&secret_file)?;
            let v = api
                .post(
                    Service::Orchestrator,
                    &format!("{base}/{}/secrets", enc(&id)),
                    json!({"secret": secret}),
                )
                .await?;
            api.emit(&v, || {
                println!(
                    "secret {} added (fingerprint {}); retire the old one once the sender uses it",
                    v["id"].as_str().unwrap_or(""),
                    v["fingerprint"].as_str().unwrap_or("")
                );
                if generated {
                    println!("new signing secret (shown this once): {secret}");
                }
            });
        }
        Integrations::Retire { id, secret_id } => {
            api.delete(
                Service::Orchestrator,
                &format!("{base}/{}/secrets/{}", enc(&id), enc(&secret_id)),
            )
            .await?;
            if !api.json() {
                println!("secret {secret_id} retired");
            }
        }
    }
    Ok(())
}

pub async fn events(api: &Api, cmd: Events) -> Outcome {
    let o = enc(&api.org().await?);
    let columns = [
        ("ID", "/id"),
        ("RECEIVED", "/received_at"),
        ("SOURCE", "/source"),
        ("TYPE", "/event_type"),
        ("STATUS", "/status"),
        ("TEAM", "/team_id"),
        ("RUN", "/run_id"),
        ("ERROR", "/last_error"),
    ];
    match cmd {
        Events::List {
            status,
            source,
            team,
            since,
            limit,
        } => {
            let q = query(&[
                ("status", status),
                ("source", source),
                ("team", team),
                ("since", since),
                ("limit", Some(limit.to_string())),
            ]);
            let v = api
                .get(
                    Service::Orchestrator,
                    &format!("/api/v1/orgs/{o}/events{q}"),
                )
                .await?;
            show(api, &v, true, &columns);
        }
        Events::Show { id } => {
            let v = api
                .get(
                    Service::Orchestrator,
                    &format!("/api/v1/orgs/{o}/events/{}", enc(&id)),
                )
                .await?;
            api.emit(&v, || {
                show(api, &v, false, &columns);
                println!();
                let tl = v["timeline"].as_array().cloned().unwrap_or_default();
                table(
                    &tl,
                    &[("AT", "/at"), ("WHAT", "/kind"), ("DETAIL", "/detail")],
                );
            });
        }
        Events::Replay {
            id,
            status,
            source,
            team,
        } => {
            let v = match id {
                Some(id) => {
                    api.post(
                        Service::Orchestrator,
                        &format!("/api/v1/orgs/{o}/events/{}/replay", enc(&id)),
                        json!({}),
                    )
                    .await?
                }
                None => {
                    if status.is_none() && source.is_none() && team.is_none() {
                        return Err(Failure::Invalid(
                            "name an event, or filter with --status, --source or --team".into(),
                        ));
                    }
                    api.post(
                        Service::Orchestrator,
                        &format!("/api/v1/orgs/{o}/events/replay"),
                        json!({"status": status, "source": source, "team": team}),
                    )
                    .await?
                }
            };
            api.emit(&v, || {
                println!(
                    "replayed: {}",
                    v["replayed"]
                        .as_u64()
                        .map_or_else(|| "1".to_owned(), |n| n.to_string())
                );
            });
        }
    }
    Ok(())
}

pub async fn runs(api: &Api, cmd: Runs) -> Outcome {
    let o = enc(&api.org().await?);
    let columns = [
        ("ID", "/id"),
        ("TEAM", "/team_id"),
        ("STATUS", "/status"),
        ("CREATED", "/created_at"),
        ("FINISHED", "/finished_at"),
        ("SUMMARY", "/summary"),
        ("ERROR", "/error"),
    ];
    match cmd {
        Runs::List {
            team,
            status,
            limit,
        } => {
            let q = query(&[
                ("team", team),
                ("status", status),
                ("limit", Some(limit.to_string())),
            ]);
            let v = api
                .get(Service::Config, &format!("/api/v1/orgs/{o}/agent-runs{q}"))
                .await?;
            show(api, &v, true, &columns);
        }
        Runs::Show { id } => {
            let v = api
                .get(
                    Service::Config,
                    &format!("/api/v1/orgs/{o}/agent-runs/{}", enc(&id)),
                )
                .await?;
            api.emit(&v, || {
                show(api, &v, false, &columns);
                for step in v["transcript"]["steps"].as_array().into_iter().flatten() {
                    match step["kind"].as_str() {
                        Some("tool") => println!(
                            "  tool {} ({} ms){}",
                            step["name"].as_str().unwrap_or(""),
                            step["duration_ms"],
                            if step["error"] == true { " error" } else { "" }
                        ),
                        Some("model") => {
                            println!("  model turn {} ({} ms)", step["turn"], step["duration_ms"])
                        }
                        _ => println!("  {}", step["kind"].as_str().unwrap_or("?")),
                    }
                }
            });
        }
        Runs::Cancel { id } => {
            let v = api
                .post(
                    Service::Config,
                    &format!("/api/v1/orgs/{o}/agent-runs/{}/cancel", enc(&id)),
                    json!({}),
                )
                .await?;
            show(api, &v, false, &columns);
        }
    }
    Ok(())
}

pub async fn audit_list(
    api: &Api,
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    since: Option<String>,
    limit: u32,
) -> Outcome {
    let o = enc(&api.org().await?);
    let q = query(&[
        ("actor", actor),
        ("action", action),
        ("target", target),
        ("since", since),
        ("limit", Some(limit.to_string())),
    ]);
    let v = api
        .get(Service::Config, &format!("/api/v1/orgs/{o}/audit{q}"))
        .await?;
    show(
        api,
        &v,
        true,
        &[
            ("SEQ", "/seq"),
            ("AT", "/at"),
            ("ACTOR", "/actor"),
            ("ACTION", "/action"),
            ("TARGET", "/target"),
        ],
    );
    Ok(())
}

pub async fn audit_verify(api: &Api) -> Outcome {
    let o = enc(&api.org().await?);
    let v = api
        .get(Service::Config, &format!("/api/v1/orgs/{o}/audit/verify"))
        .await?;
    if api.json() {
        print_json(&v);
    } else if v["ok"] == true {
        println!(
            "the audit chain of {} is intact ({} entries)",
            v["org_id"].as_str().unwrap_or(""),
            v["entries"]
        );
    } else {
        println!(
            "the audit chain is broken at entry {}: {}",
            v["first_bad_seq"],
            v["problem"].as_str().unwrap_or("")
        );
    }
    if v["ok"] == true {
        Ok(())
    } else {
        Err(Failure::Conflict("the audit chain does not verify".into()))
    }
}
