//! `switchyard dev`: every service in one process on SQLite, no setup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use switchyard_common::auth::{ServiceKey, random_hex};
use switchyard_common::db::Db;
use switchyard_common::telemetry::shutdown_signal;
use switchyard_config_service::AppState;
use switchyard_config_service::store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Where the SQLite database lives (created if missing).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./.switchyard")]
    pub data_dir: PathBuf,

    /// Address of the config-service.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub config_service_addr: SocketAddr,

    /// The platform admin token; generated and printed when unset.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The service JWT key; generated when unset.
    #[arg(long, env = "SWITCHYARD_SERVICE_KEY", hide_env_values = true)]
    pub service_key: Option<String>,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let db_path = args.data_dir.join("switchyard.db");
    let url = format!("sqlite://{}", db_path.display());
    let db = Db::connect(&url, 8)
        .await
        .with_context(|| format!("opening {url}"))?;
    db.migrate().await.context("applying migrations")?;

    let admin_token_file = args.data_dir.join("admin-token");
    let (admin_token, from_env) = match args.admin_token {
        Some(t) => (t, true),
        None => (
            persisted_secret(&admin_token_file, || format!("sy_admin_{}", random_hex(24)))?,
            false,
        ),
    };
    let service_key = match args.service_key {
        Some(k) => k,
        None => persisted_secret(&service_key_path(&args.data_dir), || random_hex(32))?,
    };
    let service_key = ServiceKey::new(service_key.into_bytes()).map_err(anyhow::Error::msg)?;

    let listener = tokio::net::TcpListener::bind(args.config_service_addr)
        .await
        .with_context(|| format!("binding {}", args.config_service_addr))?;
    let addr = listener.local_addr()?;
    println!("Switchyard dev is running (data in {})", db_path.display());
    println!("  config-service  http://{addr}");
    if from_env {
        println!("  admin token     from SWITCHYARD_ADMIN_TOKEN");
    } else {
        println!("  admin token     {admin_token}");
        println!(
            "                  (kept in {}; set SWITCHYARD_ADMIN_TOKEN to choose your own)",
            admin_token_file.display()
        );
    }
    let state = AppState::new(Store::new(db), Some(admin_token), service_key);
    switchyard_config_service::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

/// Where dev mode keeps its service JWT key.
pub fn service_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("service-key")
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
