//! Database access: PostgreSQL in production, SQLite embedded, chosen by the URL scheme.
//!
//! Services use one [`sqlx::AnyPool`] and portable SQL (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`, recursive CTEs, text JSON, millisecond `BIGINT` timestamps), which both backends
//! understand; where they must differ (row locks, single-writer SQLite), [`Backend`] says which one
//! is in use. Migrations are embedded, one ordered set per backend.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            anyhow::bail!(
                "unsupported database URL {:?}: use postgres://... or sqlite:...",
                redact_url(url)
            )
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A connection pool and the backend behind it.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// The URL connected to (dedicated sessions, such as a PostgreSQL `LISTEN`, open their own).
    url: Arc<str>,
    /// SQLite allows one writer at a time: every write of this process (any store, provisioning,
    /// recovery) takes this lock first, so writers queue here instead of failing with
    /// `SQLITE_BUSY`. Shared by every clone of the `Db`; unused on PostgreSQL.
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction with the process's SQLite write lock (`None` on PostgreSQL), held until
/// both are dropped.
pub type WriteTx = (
    Option<tokio::sync::OwnedMutexGuard<()>>,
    sqlx::Transaction<'static, sqlx::Any>,
);

/// `($first, ..., $first+width-1), (...)`: `rows` rows of `width` numbered placeholders each, the
/// `VALUES` list of a statement that writes many rows at once.
pub fn values_rows(first: usize, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + r * width + c).to_string());
        }
        out.push(')');
    }
    out
}

/// `n` placeholders for values bound in order: `?, ?, ...` on SQLite, `$first, ...` on
/// PostgreSQL. SQLite finds a numbered parameter's value by its name, a linear search per
/// parameter (quadratic in a multi-row statement's hundreds: 4% of the orchestrator's CPU in an
/// ingest burst), and an unnamed `?` by position. Every parameter of a statement that uses it on
/// SQLite must be bound in the order it appears.
pub fn in_order(backend: Backend, first: usize, n: usize) -> String {
    match backend {
        Backend::Sqlite => vec!["?"; n].join(", "),
        Backend::Postgres => (first..first + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Whether a batch statement of `rows` rows is kept prepared on its connection (sqlx's
/// `persistent`): at a steady rate batches are small, a few sizes recur, and PostgreSQL then
/// parses and plans each text once per connection rather than on every execution (measured at
/// 1,000 events/s: the group-commit insert's parse and plan were two thirds of its time).
/// Larger batches, in bursts, stay unnamed: every size is its own text, too many to keep.
pub fn keep_prepared(rows: usize) -> bool {
    rows <= PREPARED_ROWS
}

/// The largest batch [`keep_prepared`] keeps.
const PREPARED_ROWS: usize = 16;

/// [`values_rows`] bound in order (see [`in_order`]): `(?, ?), (?, ?)` on SQLite.
pub fn values_rows_in_order(backend: Backend, first: usize, rows: usize, width: usize) -> String {
    match backend {
        Backend::Postgres => values_rows(first, rows, width),
        Backend::Sqlite => vec![format!("({})", in_order(backend, 0, width)); rows].join(", "),
    }
}

/// The largest pool on SQLite, whatever is asked: it writes one transaction at a time, and each
/// connection keeps its own page and statement caches. Measured on the 10,000-delivery burst: 16
/// connections 66-67 MiB of orchestrator RSS, 6 connections 50 MiB, the same rates.
pub const SQLITE_MAX_CONNECTIONS: u32 = 8;

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A pooled connection idle this long is tested (a round trip) before it is used again: under
/// load connections go back to work within milliseconds, untested; a database restart takes
/// longer than this, so the connections it closed are found out before they are used.
pub const PING_IDLE: Duration = Duration::from_millis(250);

impl Db {
    /// Connects. An SQLite file is created if missing and put in WAL mode (readers do not block
    /// the writer) with `synchronous = FULL` (a commit is on disk before it returns, so an event
    /// acknowledged after its commit survives power loss); foreign keys are enforced on both
    /// backends.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = sqlx::any::AnyConnectOptions::from_str(&url)?
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let max_connections = match backend {
            Backend::Sqlite => max_connections.min(SQLITE_MAX_CONNECTIONS),
            Backend::Postgres => max_connections,
        };
        // sqlx tests a pooled connection with a round trip when it is given back, and by
        // default again before it is used: two round trips besides every statement's own, which
        // under load are most of a short statement's cost (ADR 0013, sixth amendment). A
        // connection back in the pool a moment ago was tested then; one idle longer is tested
        // before use, so that after a database restart or a dropped connection the pool still
        // hands out only live ones.
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    // FULL, not NORMAL: in WAL mode NORMAL syncs only at checkpoints, so a power
                    // loss can take commits already answered 2xx. FULL syncs the WAL at every
                    // commit (ADR 0001).
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options.connect_with(options).await?;
        Ok(Self {
            pool,
            backend,
            url: Arc::from(url),
            write_lock: Arc::default(),
        })
    }

    /// The URL this pool connects to (may hold a password: never log it, see [`redact_url`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process's SQLite write lock, held around a single write statement outside a
    /// transaction (`None` on PostgreSQL, whose writers need no queue).
    pub async fn write_guard(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    /// Begins a transaction that will write, after taking the write lock. On SQLite it also
    /// takes the database's write lock at once (`BEGIN IMMEDIATE`, waiting up to the busy
    /// timeout): a deferred transaction that reads first and writes later fails at once with
    /// `SQLITE_BUSY` when another connection wrote meanwhile, for example a dropped transaction
    /// whose rollback is still on its way back to the pool after an error.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let guard = self.write_guard().await;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok((guard, tx))
    }

    /// Applies every pending migration of this backend. Safe to run from several replicas at once
    /// on PostgreSQL (sqlx takes an advisory lock).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// A cheap round trip, for readiness probes.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// Declares one `#[tokio::test]` per backend (modules `postgres` and `sqlite`) for each listed
/// `async fn(Backend)`, so every suite runs on both and the runner's output names the backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::db::Backend::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::db::Backend::Sqlite).await })*
        }
    };
}

/// Fresh databases for tests: each test gets its own, so tests run in parallel and leave nothing
/// behind. PostgreSQL comes from `SWITCHYARD_TEST_PG_URL` (default: the local server). Only with
/// the `testing` feature (dev-dependencies).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use sqlx::Connection;

    pub fn pg_admin_url() -> String {
        std::env::var("SWITCHYARD_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// A database that is dropped when this guard is dropped.
    pub struct TestDb {
        pub url: String,
        pub backend: Backend,
        name: String,
    }

    impl TestDb {
        pub async fn new(backend: Backend) -> anyhow::Result<Self> {
            let name = format!("sy_test_{}", uuid::Uuid::new_v4().simple());
            match backend {
                Backend::Postgres => {
                    let admin = pg_admin_url();
                    let mut conn = sqlx::postgres::PgConnection::connect(&admin).await?;
                    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
                        .await?;
                    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                    Ok(Self {
                        url: format!("{base}/{name}"),
                        backend,
                        name,
                    })
                }
                Backend::Sqlite => {
                    let path = std::env::temp_dir().join(format!("{name}.db"));
                    Ok(Self {
                        url: format!("sqlite://{}", path.display()),
                        backend,
                        name,
                    })
                }
            }
        }

        /// Connects (a pool of 8) and migrates.
        pub async fn connect(&self) -> anyhow::Result<Db> {
            self.connect_with(8).await
        }

        /// Connects with a pool of `max_connections` and migrates.
        pub async fn connect_with(&self, max_connections: u32) -> anyhow::Result<Db> {
            let db = Db::connect(&self.url, max_connections).await?;
            db.migrate().await?;
            Ok(db)
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            match self.backend {
                Backend::Sqlite => {
                    let path = std::env::temp_dir().join(format!("{}.db", self.name));
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                    }
                }
                Backend::Postgres => {
                    // Drop from a thread of its own: Drop cannot await, and the test's runtime may
                    // be shutting down.
                    let name = self.name.clone();
                    let _ = std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build();
                        if let Ok(rt) = rt {
                            rt.block_on(async {
                                if let Ok(mut conn) =
                                    sqlx::postgres::PgConnection::connect(&pg_admin_url()).await
                                {
                                    let _ = sqlx::Executor::execute(
                                        &mut conn,
                                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                                            .as_str(),
                                    )
                                    .await;
                                }
                            });
                        }
                    })
                    .join();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_bound_in_order_are_unnamed_on_sqlite_only() {
        assert_eq!(in_order(Backend::Postgres, 3, 2), "$3, $4");
        assert_eq!(in_order(Backend::Sqlite, 3, 2), "?, ?");
        assert_eq!(
            values_rows_in_order(Backend::Postgres, 1, 2, 2),
            "($1, $2), ($3, $4)"
        );
        assert_eq!(
            values_rows_in_order(Backend::Sqlite, 1, 2, 2),
            "(?, ?), (?, ?)"
        );
    }

    /// Every pooled SQLite connection commits durably: WAL with `synchronous = FULL` (2).
    #[tokio::test]
    async fn sqlite_commits_survive_power_loss() {
        let db = testing::TestDb::new(Backend::Sqlite).await.unwrap();
        let pool = db.connect_with(3).await.unwrap();
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut c = pool.pool.acquire().await.unwrap();
            let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            assert_eq!((mode.as_str(), sync), ("wal", 2));
            conns.push(c);
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn backend_by_scheme() {
        assert_eq!(
            Backend::from_url("postgres://x").unwrap(),
            Backend::Postgres
        );
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert!(Backend::from_url("mysql://x").is_err());
    }
}
