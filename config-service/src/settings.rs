//! Settings of the config-service, from flags or the environment.

use std::net::SocketAddr;

pub use switchyard_common::settings::SecretSettings;

/// `switchyard config-service` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Database URL: `postgres://...` (production) or `sqlite://path.db` (embedded).
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    pub database_url: String,

    /// Address to listen on.
    #[arg(
        long,
        env = "SWITCHYARD_CONFIG_SERVICE_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,

    /// Largest database pool. PostgreSQL's default of 100 connections is shared by every replica
    /// of every service, so each takes a modest share. On SQLite at most 8 (one writer at a time;
    /// each connection keeps its own caches).
    #[arg(long, env = "SWITCHYARD_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    #[command(flatten)]
    pub secrets: SecretSettings,

    /// Log as JSON lines (for log shippers) instead of plain text.
    #[arg(long, env = "SWITCHYARD_LOG_JSON")]
    pub log_json: bool,
}
