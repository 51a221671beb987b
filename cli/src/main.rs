//! `switchyard`: one binary for every way of running Switchyard.
//!
//! - `switchyard dev`: everything in one process on SQLite, no setup.
//! - `switchyard config-service`, `orchestrator`, `agent-runner`: one service each, for production.
//! - `switchyard migrate`: apply database migrations.
//! - `switchyard audit verify`: check an org's audit hash chain.
//! - `switchyard service-token`: mint a service JWT for calling internal endpoints by hand.
//! - `switchyard loadgen`: signed-webhook load with latency figures and a stored-exactly-once check.
//! - `switchyard gen-openapi`: write (or check) the committed OpenAPI documents.
//! - `switchyard orgs|teams|config|tokens|integrations|events|runs|audit|secrets ...`: admin verbs
//!   over the REST API ([`admin`]); `switchyard completions bash` prints shell completions.

mod admin;
mod dev;
mod eval;
mod loadgen;
mod loadgen_runs;

use std::path::PathBuf;
use std::process::ExitCode;

use admin::ApiArgs;
use admin::{settings, tenants, traffic};
use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use switchyard_common::db::{Db, redact_url};
use switchyard_common::telemetry::{init_tracing, shutdown_signal};
use switchyard_config_service::openapi;
use switchyard_config_service::settings::Settings;
use switchyard_config_service::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Multi-tenant control plane for AI incident-response agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process on SQLite, with no setup.
    Dev(dev::DevArgs),
    /// Run the config-service.
    ConfigService(Settings),
    /// Run the orchestrator (webhooks, dispatch).
    Orchestrator(switchyard_orchestrator::settings::Settings),
    /// Run the agent-runner.
    AgentRunner(switchyard_agent_runner::Settings),
    /// Apply database migrations and exit.
    Migrate {
        /// `postgres://...` or `sqlite://path.db`.
        #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
        database_url: String,
    },
    /// Organisations: list, get, create.
    Orgs {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: tenants::Orgs,
    },
    /// Teams: the tree, onboard (provisioning), offboard.
    Teams {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: tenants::Teams,
    },
    /// Configuration: effective (with --explain), a node's layer, set from a file, history, diff.
    Config {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: settings::Config,
    },
    /// Tokens: a team's or the organisation's admin tokens; issue and revoke.
    Tokens {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: settings::Tokens,
    },
    /// Webhook integrations: list, create, rotate and retire secrets.
    Integrations {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: traffic::Integrations,
    },
    /// Events: list, show (with the timeline), replay one or many.
    Events {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: traffic::Events,
    },
    /// Agent runs: list, show (with the transcript), cancel.
    Runs {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: traffic::Runs,
    },
    /// The organisation's secrets store: list, set, delete.
    Secrets {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: settings::Secrets,
    },
    /// The audit log: list entries, verify the hash chain.
    Audit {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Run the agent's eval suite: offline (scripted models, recorded tools), or against a live
    /// model with --provider, --endpoint and --model (key in SWITCHYARD_EVAL_API_KEY).
    Eval(eval::EvalArgs),
    /// Send signed webhooks at a given concurrency and rate; report latency; check every
    /// acknowledged delivery was stored exactly once.
    Loadgen(loadgen::LoadgenArgs),
    /// Many concurrent agent runs against a fake model and Prometheus: runs per second and the
    /// agent-runner's own time per turn (ORCHESTRATOR_SIGNING_KEY signs the runs).
    LoadgenRuns(loadgen_runs::LoadgenRunsArgs),
    /// Print a short-lived service JWT (for calling internal endpoints by hand).
    ServiceToken {
        /// The service to call.
        #[arg(long, default_value = "config-service")]
        audience: String,
        /// The service it is from (its private key must be at hand).
        #[arg(long, default_value = "orchestrator")]
        subject: String,
        /// That service's private key; default: the keys `switchyard dev` keeps in --data-dir.
        #[arg(long, env = "SWITCHYARD_SERVICE_SIGNING_KEY", hide_env_values = true)]
        signing_key: Option<String>,
        #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./.switchyard")]
        data_dir: PathBuf,
        /// Lifetime in seconds (at most 300).
        #[arg(long, default_value_t = 300)]
        ttl: u64,
    },
    /// Make Ed25519 key pairs for service identities: each service's private key goes to that
    /// service only (SWITCHYARD_SERVICE_SIGNING_KEY), the public keys to every service
    /// (SWITCHYARD_SERVICE_PUBLIC_KEYS).
    Keygen {
        /// The services to make keys for.
        #[arg(long = "service", default_values_t = ["orchestrator".to_owned(), "agent-runner".to_owned()])]
        services: Vec<String>,
    },

    /// Write the OpenAPI documents under openapi/ (or, with --check, fail if they are stale).
    GenOpenapi {
        /// Directory to write to.
        #[arg(long, default_value = "openapi")]
        out: PathBuf,
        /// Compare instead of writing; exit non-zero when a file differs.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Audit entries, newest first.
    List {
        /// e.g. `platform-admin` or `org-admin:<token id>`.
        #[arg(long)]
        actor: Option<String>,
        /// e.g. `config.layer_updated`.
        #[arg(long)]
        action: Option<String>,
        /// e.g. `node/checkout`.
        #[arg(long)]
        target: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Re-compute an org's hash chain and report the first modified or removed entry: over the
    /// API, or straight from the database with --database-url.
    Verify {
        #[arg(long, env = "SWITCHYARD_DATABASE_URL")]
        database_url: Option<String>,
    },
}

/// jemalloc serves every allocation of Rust code: glibc's malloc and free were a quarter of each
/// service's own CPU (ADR 0021 has the measurements and the choice of options).
#[cfg(not(target_env = "msvc"))]
mod allocator {
    #[global_allocator]
    static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    /// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment
    /// overrides them): a background thread returns freed pages 100 ms after they were freed,
    /// so that a burst's memory does not stay resident, and each thread caches freed blocks of
    /// up to 1 KiB only, since `switchyard dev`'s SQLite pools add a thread per connection.
    #[allow(unsafe_code, non_upper_case_globals)]
    #[unsafe(export_name = "_rjem_malloc_conf")]
    static malloc_conf: MallocConf = MallocConf(
        c"background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0,tcache_max:1024".as_ptr(),
    );

    /// A C string jemalloc reads; never written.
    #[repr(transparent)]
    struct MallocConf(*const std::ffi::c_char);
    // SAFETY: it points at a static string that nothing writes.
    #[allow(unsafe_code)]
    unsafe impl Sync for MallocConf {}
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
        .block_on(async_main())
}

/// glibc still serves what C code allocates (SQLite's page caches). It gives each thread that
/// meets contention an allocator arena of its own, up to eight per core, and keeps what each
/// arena freed: before jemalloc served Rust's allocations, with SQLite's thread per pooled
/// connection beside the runtime's workers, the orchestrator's peak resident memory under a
/// burst was 122-146 MiB on SQLite, and 47 MiB with two arenas at the same throughput
/// (docs/benchmarks.md). Two arenas, unless `MALLOC_ARENA_MAX` says otherwise; set before any
/// thread starts.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

async fn async_main() -> ExitCode {
    let command = Cli::parse().command;
    if let Some(args) = command.api_args() {
        return admin(args, command).await;
    }
    let result = run(command).await;
    // Spans still queued for the OTLP exporter go out before the process ends.
    let _ = tokio::task::spawn_blocking(switchyard_common::otel::shutdown).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// The connection flags of an admin verb over the REST API; `None` for everything else.
    fn api_args(&self) -> Option<ApiArgs> {
        match self {
            Command::Orgs { api, .. }
            | Command::Teams { api, .. }
            | Command::Config { api, .. }
            | Command::Tokens { api, .. }
            | Command::Integrations { api, .. }
            | Command::Events { api, .. }
            | Command::Runs { api, .. }
            | Command::Secrets { api, .. }
            | Command::Audit {
                api,
                command: AuditCommand::List { .. } | AuditCommand::Verify { database_url: None },
            } => Some(api.clone()),
            _ => None,
        }
    }
}

/// Runs an admin verb: its failure's detail goes to standard error, its kind to the exit code.
async fn admin(args: ApiArgs, command: Command) -> ExitCode {
    let outcome = match admin::Api::new(args) {
        Err(f) => Err(f),
        Ok(api) => match command {
            Command::Orgs { command, .. } => tenants::orgs(&api, command).await,
            Command::Teams { command, .. } => tenants::teams(&api, command).await,
            Command::Config { command, .. } => settings::config(&api, command).await,
            Command::Tokens { command, .. } => settings::tokens(&api, command).await,
            Command::Integrations { command, .. } => traffic::integrations(&api, command).await,
            Command::Events { command, .. } => traffic::events(&api, command).await,
            Command::Runs { command, .. } => traffic::runs(&api, command).await,
            Command::Secrets { command, .. } => settings::secrets(&api, command).await,
            Command::Audit {
                command:
                    AuditCommand::List {
                        actor,
                        action,
                        target,
                        since,
                        limit,
                    },
                ..
            } => traffic::audit_list(&api, actor, action, target, since, limit).await,
            _ => traffic::audit_verify(&api).await,
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message());
            f.exit_code()
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev(args) => {
            init_tracing(false);
            dev::run(args).await
        }
        Command::ConfigService(settings) => {
            init_tracing(settings.log_json);
            run_config_service(settings).await
        }
        Command::Orchestrator(settings) => {
            init_tracing(settings.log_json);
            run_orchestrator(settings).await
        }
        Command::AgentRunner(settings) => {
            init_tracing(settings.log_json);
            run_agent_runner(settings).await
        }
        Command::Migrate { database_url } => {
            init_tracing(false);
            let db = Db::connect(&database_url, 2)
                .await
                .with_context(|| format!("connecting to {}", redact_url(&database_url)))?;
            db.migrate().await?;
            println!("migrations applied to {}", redact_url(&database_url));
            Ok(())
        }
        Command::Audit {
            api,
            command:
                AuditCommand::Verify {
                    database_url: Some(database_url),
                },
        } => {
            let org = api.org.context("--org names the organisation to verify")?;
            let db = Db::connect(&database_url, 2)
                .await
                .with_context(|| format!("connecting to {}", redact_url(&database_url)))?;
            let v = Store::new(db).verify_audit(&org).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            anyhow::ensure!(v.ok, "the audit chain of {org} does not verify");
            Ok(())
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "switchyard", &mut script);
            // `switchyard completions bash | head` closes the pipe early: not an error.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::GenOpenapi { out, check } => gen_openapi(&out, check),
        Command::Loadgen(args) => loadgen::run(args).await,
        Command::Eval(args) => eval::run(args).await,
        Command::LoadgenRuns(args) => loadgen_runs::run(args).await,
        Command::ServiceToken {
            audience,
            subject,
            signing_key,
            data_dir,
            ttl,
        } => {
            use base64::Engine;
            let key = match signing_key {
                Some(k) => {
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(k.trim())
                        .context("the signing key is not base64")?;
                    switchyard_common::auth::ServiceKey::default()
                        .with_signer(&subject, der)
                        .map_err(anyhow::Error::msg)?
                }
                None => {
                    let path = dev::service_keys_path(&data_dir);
                    let spec = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {} (is `switchyard dev` using this data dir?); or set SWITCHYARD_SERVICE_SIGNING_KEY", path.display()))?;
                    switchyard_common::auth::ServiceKey::from_private_keys(spec.trim())
                        .map_err(anyhow::Error::msg)?
                }
            };
            println!("{}", key.mint(&subject, &audience, ttl));
            Ok(())
        }
        Command::Keygen { services } => {
            let mut all = switchyard_common::auth::ServiceKey::default();
            for name in &services {
                let der = switchyard_common::auth::generate_signing_key();
                all = all.with_signer(name, der).map_err(anyhow::Error::msg)?;
                let one = all.only(name).private_keys_spec();
                let private = one.split_once('=').map(|(_, k)| k).unwrap_or_default();
                println!("# {name}: SWITCHYARD_SERVICE_SIGNING_KEY of the {name} only");
                println!(
                    "{}_SIGNING_KEY={private}",
                    name.to_uppercase().replace('-', "_")
                );
            }
            println!("# every service: SWITCHYARD_SERVICE_PUBLIC_KEYS (not secret)");
            println!("SWITCHYARD_SERVICE_PUBLIC_KEYS={}", all.public_keys_spec());
            Ok(())
        }
        // Admin verbs over the API: main() sends them to admin().
        Command::Orgs { .. }
        | Command::Teams { .. }
        | Command::Config { .. }
        | Command::Tokens { .. }
        | Command::Integrations { .. }
        | Command::Events { .. }
        | Command::Runs { .. }
        | Command::Secrets { .. }
        | Command::Audit { .. } => unreachable!("handled by admin()"),
    }
}

async fn run_config_service(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    switchyard_config_service::run(settings, listener, shutdown_signal()).await
}

async fn run_agent_runner(settings: switchyard_agent_runner::Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    switchyard_agent_runner::run(settings, listener, shutdown_signal()).await
}

async fn run_orchestrator(s: switchyard_orchestrator::settings::Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("binding {}", s.listen))?;
    switchyard_orchestrator::run(s, listener, shutdown_signal()).await
}

fn gen_openapi(out: &std::path::Path, check: bool) -> anyhow::Result<()> {
    let docs = [
        ("config-service.json", openapi::json()),
        (
            "orchestrator.json",
            switchyard_orchestrator::openapi::json(),
        ),
        ("agent-runner.json", switchyard_agent_runner::openapi_json()),
    ];
    let mut stale = Vec::new();
    for (name, content) in docs {
        let path = out.join(name);
        if check {
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != content {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(out)?;
            std::fs::write(&path, content)?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        anyhow::bail!(
            "stale OpenAPI documents: {}; run `cargo run -p switchyard-cli -- gen-openapi`",
            stale.join(", ")
        );
    }
    Ok(())
}
