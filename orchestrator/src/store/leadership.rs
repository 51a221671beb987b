//! What differs between the backends when several replicas share a database, behind one pair:
//!
//! - [`Store::wakeups`]: the dispatcher's doorbell. PostgreSQL: a dedicated `LISTEN or_events`
//!   session (every replica hears every insert and replay, sent with its commit); SQLite: the
//!   in-process notifier (one process writes).
//! - [`Store::try_lead`]: one leader among replicas. PostgreSQL: a session advisory lock held on a
//!   connection kept out of the pool (released if the replica dies); SQLite: always the leader.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Any;
use sqlx::pool::PoolConnection;
use switchyard_common::db::Backend;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::Store;

/// Wakes a dispatcher when an event may have become claimable. Dropping it stops listening.
pub struct Wakeups {
    notify: Arc<Notify>,
    listener: Option<JoinHandle<()>>,
}

impl Wakeups {
    /// Resolves at the next wake-up (or at once, if one came since the last call).
    pub async fn next(&self) {
        self.notify.notified().await
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
    }
}

/// Leadership of one role among replicas, held until dropped or released.
pub struct Leadership {
    key: i64,
    /// The session holding the advisory lock (PostgreSQL); `None` on SQLite.
    session: Option<PoolConnection<Any>>,
}

impl Leadership {
    /// Gives the lead up now (another replica may take it at once).
    pub async fn release(mut self) {
        if let Some(mut conn) = self.session.take() {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut *conn)
                .await;
        }
    }
}

impl Store {
    /// Starts listening for stored and replayed events (see the module's description).
    pub fn wakeups(&self) -> Wakeups {
        let listener = (self.db.backend == Backend::Postgres).then(|| {
            let (url, wake) = (self.db.url().to_owned(), self.wake.clone());
            tokio::spawn(listen(url, wake))
        });
        Wakeups {
            notify: self.wake.clone(),
            listener,
        }
    }

    /// Takes the lead of the role `key` if no replica holds it; `None` when another does or the
    /// database cannot be reached.
    pub async fn try_lead(&self, key: i64) -> Option<Leadership> {
        if self.db.backend == Backend::Sqlite {
            return Some(Leadership { key, session: None });
        }
        let mut conn = self.db.pool.acquire().await.ok()?;
        let got: bool = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .ok()?;
        // The connection must not go back to the pool: the lock lives as long as the session.
        got.then_some(Leadership {
            key,
            session: Some(conn),
        })
    }
}

/// `LISTEN or_events` on a session of its own, reconnecting when it drops (and waking the
/// dispatcher then, since a notification may have been missed).
async fn listen(url: String, wake: Arc<Notify>) {
    let mut listener = loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut l) => match l.listen("or_events").await {
                Ok(()) => break l,
                Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot connect for LISTEN; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    loop {
        match listener.recv().await {
            Ok(_) => wake.notify_one(),
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                wake.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
