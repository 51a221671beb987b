//! `switchyard dev`: every service in one process on SQLite, no setup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use switchyard_common::auth::{ServiceKey, random_hex};
use switchyard_common::telemetry::shutdown_signal;

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Where the SQLite database lives (created if missing).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./.switchyard")]
    pub data_dir: PathBuf,

    /// Address of the orchestrator (webhooks, integrations, events).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub orchestrator_addr: SocketAddr,

    /// Address of the config-service.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub config_service_addr: SocketAddr,

    /// Address of the agent-runner.
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub agent_runner_addr: SocketAddr,

    /// Slack Web API base the agent-runner replies through.
    #[arg(
        long,
        env = "SWITCHYARD_SLACK_API_BASE",
        default_value = "https://slack.com/api"
    )]
    pub slack_api_base: String,

    /// GitHub API base the agent-runner replies through.
    #[arg(
        long,
        env = "SWITCHYARD_GITHUB_API_BASE",
        default_value = "https://api.github.com"
    )]
    pub github_api_base: String,

    /// The platform admin token; generated and printed when unset.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The orchestrator's limits, with the same flags and variables as `switchyard
    /// orchestrator` (`--ingress-per-second`, `--retention-days`, ...). Private subscription
    /// targets are always allowed here: local receivers are what dev mode is for.
    #[command(flatten)]
    pub limits: switchyard_orchestrator::settings::Limits,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let db_path = args.data_dir.join("config-service.db");
    let url = format!("sqlite://{}", db_path.display());

    let admin_token_file = args.data_dir.join("admin-token");
    let (admin_token, from_env) = match args.admin_token {
        Some(t) => (t, true),
        None => (
            persisted_secret(&admin_token_file, || format!("sy_admin_{}", random_hex(24)))?,
            false,
        ),
    };
    // Every service's key pair, kept for the next start (and for `switchyard service-token`);
    // each service below signs only with its own.
    let service_key = persisted_secret(&service_keys_path(&args.data_dir), || {
        ServiceKey::generate().private_keys_spec()
    })?;
    let service_key = ServiceKey::from_private_keys(&service_key).map_err(anyhow::Error::msg)?;

    let master = persisted_secret(&args.data_dir.join("master-keys"), || {
        switchyard_common::crypto::Keyring::generate_spec("dev")
    })?;
    // A kept file that no longer parses is an error now, not in the middle of the services' start.
    switchyard_common::crypto::Keyring::parse(&master).map_err(anyhow::Error::msg)?;
    let orch_url = format!(
        "sqlite://{}",
        args.data_dir.join("orchestrator.db").display()
    );

    let cs_listener = tokio::net::TcpListener::bind(args.config_service_addr)
        .await
        .with_context(|| format!("binding {}", args.config_service_addr))?;
    let runner_listener = tokio::net::TcpListener::bind(args.agent_runner_addr)
        .await
        .with_context(|| format!("binding {}", args.agent_runner_addr))?;
    let orch_listener = tokio::net::TcpListener::bind(args.orchestrator_addr)
        .await
        .with_context(|| format!("binding {}", args.orchestrator_addr))?;
    let cs_addr = cs_listener.local_addr()?;
    let runner_addr = runner_listener.local_addr()?;
    let orch_addr = orch_listener.local_addr()?;
    println!(
        "Switchyard dev is running (data in {})",
        args.data_dir.display()
    );
    println!("  orchestrator    http://{orch_addr}   (webhooks: /webhooks/...)");
    println!("  web console     http://{orch_addr}/console   (sign in with a token)");
    println!("  config-service  http://{cs_addr}");
    println!("  agent-runner    http://{runner_addr}");
    if from_env {
        println!("  admin token     from SWITCHYARD_ADMIN_TOKEN");
    } else {
        println!("  admin token     {admin_token}");
        println!(
            "                  (kept in {}; set SWITCHYARD_ADMIN_TOKEN to choose your own)",
            admin_token_file.display()
        );
    }
    // Each service is configured exactly as its own command would be, signing only as itself.
    let secrets = |me: &str| switchyard_common::settings::SecretSettings {
        admin_token: Some(admin_token.clone()),
        service_signing_key: service_key.private_key_of(me),
        service_public_keys: service_key.public_keys_spec(),
        master_keys: Some(master.clone()),
        ..Default::default()
    };
    let cs_settings = switchyard_config_service::settings::Settings {
        database_url: url,
        listen: cs_addr,
        db_max_connections: 8,
        secrets: secrets("config-service"),
        log_json: false,
    };
    let runner_settings = switchyard_agent_runner::Settings {
        listen: runner_addr,
        config_service_url: format!("http://{cs_addr}"),
        replies: switchyard_agent_runner::ReplySettings {
            slack_api_base: args.slack_api_base,
            github_api_base: args.github_api_base,
            pagerduty_api_base: "https://api.pagerduty.com".into(),
            run_deadline_seconds: 120,
            run_lease_seconds: 30,
            max_run_attempts: 3,
        },
        secrets: secrets("agent-runner"),
        kubernetes: "off".into(),
        orchestrator_url: Some(format!("http://{orch_addr}")),
        log_json: false,
    };
    // The orchestrator is configured exactly as `switchyard orchestrator` would be.
    let orch_settings = switchyard_orchestrator::settings::Settings {
        database_url: orch_url,
        listen: orch_addr,
        config_service_url: format!("http://{cs_addr}"),
        agent_runner_url: format!("http://{runner_addr}"),
        db_max_connections: 8,
        limits: switchyard_orchestrator::settings::Limits {
            // Local receivers (http://127.0.0.1:...) for subscriptions.
            allow_private_subscription_targets: true,
            ..args.limits
        },
        secrets: secrets("orchestrator"),
        log_json: false,
        kubernetes: "none".into(),
        tenant_namespace: "switchyard-tenants".into(),
        pod_config_service_url: None,
    };
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let signal = |stop: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let cs = tokio::spawn(switchyard_config_service::run(
        cs_settings,
        cs_listener,
        signal(&stop),
    ));
    let runner = tokio::spawn(switchyard_agent_runner::run(
        runner_settings,
        runner_listener,
        signal(&stop),
    ));
    let orch = tokio::spawn(switchyard_orchestrator::run(
        orch_settings,
        orch_listener,
        signal(&stop),
    ));
    shutdown_signal().await;
    let _ = stop.send(());
    // The orchestrator first (it releases claimed events), then what it calls.
    orch.await??;
    runner.await??;
    cs.await??;
    Ok(())
}

/// Where dev mode keeps the services' private keys.
pub fn service_keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join("service-keys")
}

/// Reads a secret kept in `path`, or generates one and writes it readable by the owner only, so
/// that restarts of `switchyard dev` keep working tokens.
fn persisted_secret(path: &Path, generate: impl FnOnce() -> String) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let secret = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(secret)
}
