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
                                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
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
