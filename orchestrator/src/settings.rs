//! Settings of the orchestrator, from flags or the environment.

use std::net::SocketAddr;

/// `switchyard orchestrator` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Database URL: `postgres://...` or `sqlite://path.db`.
    #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
    pub database_url: String,

    /// Address to listen on.
    #[arg(
        long,
        env = "SWITCHYARD_ORCHESTRATOR_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Base URL of the config-service.
    #[arg(
        long,
        env = "SWITCHYARD_CONFIG_SERVICE_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub config_service_url: String,

    /// Base URL of the agent-runner.
    #[arg(
        long,
        env = "SWITCHYARD_AGENT_RUNNER_URL",
        default_value = "http://127.0.0.1:8082"
    )]
    pub agent_runner_url: String,

    /// Largest database pool. On SQLite at most 8 (one writer at a time; each connection keeps
    /// its own caches).
    #[arg(long, env = "SWITCHYARD_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub secrets: switchyard_common::settings::SecretSettings,

    /// Log as JSON lines.
    #[arg(long, env = "SWITCHYARD_LOG_JSON")]
    pub log_json: bool,

    /// Where team CronJobs go: `auto` (in-cluster service account or kubeconfig, none if neither
    /// is found), `kubeconfig` (must be found), or `none` (Kubernetes steps are skipped).
    #[arg(long, env = "SWITCHYARD_KUBERNETES", default_value = "auto", value_parser = ["auto", "kubeconfig", "none"])]
    pub kubernetes: String,

    /// The namespace team Secrets and CronJobs are created in.
    #[arg(
        long,
        env = "SWITCHYARD_TENANT_NAMESPACE",
        default_value = "switchyard-tenants"
    )]
    pub tenant_namespace: String,

    /// The config-service URL as pipeline pods reach it (written into team Secrets); defaults to
    /// `--config-service-url`.
    #[arg(long, env = "SWITCHYARD_POD_CONFIG_SERVICE_URL")]
    pub pod_config_service_url: Option<String>,
}

/// Tunables of the hot path and the dispatcher; defaults suit the senders in WEBHOOK-SOURCES.md.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Largest webhook body accepted (413 beyond).
    #[arg(long, env = "SWITCHYARD_WEBHOOK_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// Deliveries per second one integration may send before throttling (senders that drop
    /// 4xx are never refused: they are throttled at dispatch instead).
    #[arg(long, env = "SWITCHYARD_INGRESS_PER_SECOND", default_value_t = 500)]
    pub ingress_per_second: u32,

    /// Failed verifications per minute one client address may cause before it gets 429s.
    #[arg(long, env = "SWITCHYARD_UNVERIFIED_PER_MINUTE", default_value_t = 60)]
    pub unverified_per_minute: u32,

    /// Days events (and so their delivery ids) are kept: longer than any sender's retry window.
    #[arg(long, env = "SWITCHYARD_RETENTION_DAYS", default_value_t = 7)]
    pub retention_days: u32,

    /// Dispatch attempts before an event is dead-lettered.
    #[arg(long, env = "SWITCHYARD_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: i64,

    /// Longest an event may stay throttled without a break (seconds) before it is dead-lettered
    /// with the reason: a team over its quota for this long needs a person, not more waiting.
    #[arg(long, env = "SWITCHYARD_MAX_THROTTLED_SECONDS", default_value_t = 6 * 3600)]
    pub max_throttled_seconds: i64,

    /// First retry delay in milliseconds; doubles per attempt, with jitter, up to 5 minutes.
    #[arg(long, env = "SWITCHYARD_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: i64,

    /// Keys (chains of events) dispatched at once by one replica: the most events a claim
    /// takes keys of, and so the most runs that reach the agent-runner together. Unset: 128 on
    /// PostgreSQL; 32 on SQLite, whose one writer the webhook path shares with dispatch (more
    /// chains there take acknowledgements' turns and memory, and drain no faster per writer).
    /// 0: this replica does not dispatch (it acknowledges and serves the API; other replicas on
    /// the same database dispatch what it stores).
    #[arg(long, env = "SWITCHYARD_DISPATCH_CONCURRENCY")]
    pub dispatch_concurrency: Option<usize>,

    /// How long a replica's claim on an event lasts (milliseconds). If the replica dies, another
    /// claims the event after this. A dispatch outliving its lease can be sent twice, which the
    /// agent-runner's idempotency key turns into one run.
    #[arg(long, env = "SWITCHYARD_CLAIM_LEASE_MS", default_value_t = 30_000)]
    pub lease_ms: i64,

    /// Proxies in front of the orchestrator that append to `X-Forwarded-For` (an ingress: 1). The
    /// client address for per-address limits is the entry that many places from the right; 0
    /// trusts no header and uses the TCP peer (a header anyone can forge is never believed
    /// unless configured).
    #[arg(long, env = "SWITCHYARD_TRUSTED_PROXY_HOPS", default_value_t = 0)]
    pub trusted_proxy_hops: usize,

    /// Seconds between reconcile sweeps (watch events trigger sweeps in between); 0 turns the
    /// reconciler off.
    #[arg(
        long,
        env = "SWITCHYARD_RECONCILE_INTERVAL_SECONDS",
        default_value_t = 60
    )]
    pub reconcile_interval_seconds: u64,

    /// Lets outbound subscriptions target `http` URLs and private, loopback or link-local
    /// addresses (off: `https` to public addresses only). `switchyard dev` turns it on.
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_SUBSCRIPTION_TARGETS")]
    pub allow_private_subscription_targets: bool,

    /// The waits between attempts of one outbound delivery, comma-separated (the Standard
    /// Webhooks schedule by default; ±10% jitter, or a later `Retry-After`). A delivery gets one
    /// attempt more than there are waits, then it is `failed` and kept for resend and recover.
    #[arg(
        long,
        env = "SWITCHYARD_DELIVERY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,10h"
    )]
    pub delivery_schedule: String,

    /// Outbound deliveries in flight at once on one replica: the delivery worker's memory bound,
    /// whatever the backlog.
    #[arg(long, env = "SWITCHYARD_DELIVERY_CONCURRENCY", default_value_t = 64)]
    pub delivery_concurrency: usize,

    /// Outbound deliveries in flight at once to one subscription, across replicas, so one slow
    /// endpoint neither takes every slot nor gets flooded.
    #[arg(long, env = "SWITCHYARD_DELIVERY_PER_ENDPOINT", default_value_t = 8)]
    pub delivery_per_endpoint: i64,

    /// How long one outbound delivery may take, from connecting to the end of the answer (ms).
    #[arg(long, env = "SWITCHYARD_DELIVERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub delivery_timeout_ms: u64,

    /// A subscription whose every attempt has failed for this long is disabled, and the org's
    /// other subscriptions get `subscription.disabled` (seconds; 5 days).
    #[arg(
        long,
        env = "SWITCHYARD_SUBSCRIPTION_DISABLE_AFTER_SECONDS",
        default_value_t = 5 * 86_400
    )]
    pub subscription_disable_after_seconds: i64,

    /// Marks the web console's cookies `Secure` on every request (the console is served over TLS).
    /// Without it they are `Secure` when a proxy says `X-Forwarded-Proto: https`.
    #[arg(long, env = "SWITCHYARD_CONSOLE_SECURE_COOKIES")]
    pub console_secure_cookies: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            ingress_per_second: 500,
            unverified_per_minute: 60,
            retention_days: 7,
            max_attempts: 8,
            max_throttled_seconds: 6 * 3600,
            retry_base_ms: 1000,
            dispatch_concurrency: None,
            lease_ms: 30_000,
            trusted_proxy_hops: 0,
            reconcile_interval_seconds: 60,
            allow_private_subscription_targets: false,
            delivery_schedule: "5s,5m,30m,2h,5h,10h,10h".into(),
            delivery_concurrency: 64,
            delivery_per_endpoint: 8,
            delivery_timeout_ms: 10_000,
            subscription_disable_after_seconds: 5 * 86_400,
            console_secure_cookies: false,
        }
    }
}
