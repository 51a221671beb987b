//! Storing verified deliveries many at a time (group commit, issue 11). On PostgreSQL a batch is
//! one statement: a multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING` of the events, the
//! published `event.received` of orgs that subscribe, and one `NOTIFY`, atomic as any statement
//! is. On SQLite, the insert and the published events in one transaction under its writer. A
//! duplicate (of an earlier delivery, or of another one in the same batch) is answered with the
//! id its delivery was first stored under; nothing is answered before the commit.

use std::collections::HashSet;

use serde_json::{Value, json};
use sqlx::Row;
use switchyard_common::db::{Backend, in_order, keep_prepared, values_rows};
use switchyard_common::error::Result;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::Publish;
use switchyard_common::time::now_ms;

use super::inbox::Stored;
use super::outbound::{publish, subscribed};
use super::{NOTIFY_DUE, Store, subscribed_orgs};
use crate::sources::Envelope;

/// The columns both backends' inserts give a new event, in order: `bind_event`'s 12, with the
/// status and the three times written in between.
const INSERT_EVENTS: &str = "INSERT INTO or_events (id, integration_id, delivery_id, org_id, source, event_type, \
    correlation_key, identifiers, payload, status, next_attempt_at, received_at, updated_at, traceparent, reply_to, facts)";

/// Deliveries stored in one statement at most (12 parameters each, under every backend's limit).
pub const MAX_BATCH: usize = 256;

/// A verified, normalised delivery to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub integration_id: String,
    /// The integration's org (`None`: a platform integration's event, routed later).
    pub org: Option<String>,
    pub env: Envelope,
    /// The webhook request's trace, continued by dispatch.
    pub traceparent: Option<String>,
}

/// A connection the event writer keeps between its batches (PostgreSQL): a connection taken
/// from the pool and given back costs two round trips besides the batch's own (sqlx tests it when
/// it is given back, and, idle a while, before it is used again), and the writer's round trips
/// are what bounds its rate. Kept while it is used at least every [`WriterConn::IDLE`] and
/// every statement on it succeeds, and while the pool is open; otherwise it goes back to the
/// pool (which tests it) and the next batch takes one again.
#[derive(Default)]
pub struct WriterConn {
    conn: Option<(sqlx::pool::PoolConnection<sqlx::Any>, std::time::Instant)>,
}

impl WriterConn {
    /// Longer idle than this, the connection goes back to the pool to be tested before use
    /// (a database restarted meanwhile costs no failed batch).
    const IDLE: std::time::Duration = switchyard_common::db::PING_IDLE;

    /// Whether a connection is kept for the next statement: it goes back to the pool first when
    /// it idled [`WriterConn::IDLE`], or when the pool closed (shutting down: nothing is written
    /// through what was taken before).
    fn kept(&mut self, pool: &sqlx::AnyPool) -> bool {
        if pool.is_closed()
            || self
                .conn
                .as_ref()
                .is_some_and(|(_, used)| used.elapsed() >= Self::IDLE)
        {
            self.conn = None;
        }
        self.conn.is_some()
    }

    /// The kept connection, or one from the pool; `tested`: one from the pool that has answered
    /// a round trip (after a failure, when the pool's others may have been closed with it).
    async fn get(
        &mut self,
        pool: &sqlx::AnyPool,
        tested: bool,
    ) -> Result<&mut sqlx::AnyConnection> {
        if !self.kept(pool) {
            let mut conn = pool.acquire().await?;
            // Each connection that fails its test is closed as it goes back; the pool then opens
            // new ones. As many tries as the pool holds connections, and one more.
            for _ in 0..=pool.size() {
                if !tested || sqlx::Connection::ping(&mut *conn).await.is_ok() {
                    break;
                }
                conn = pool.acquire().await?;
            }
            self.conn = Some((conn, std::time::Instant::now()));
        }
        let (conn, used) = self.conn.as_mut().expect("set above");
        *used = std::time::Instant::now();
        Ok(&mut **conn)
    }

    /// A statement's result on the connection: after a failure it may be broken, or in a state
    /// no one expects, and goes back to the pool.
    fn checked<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

impl Store {
    /// Stores `batch` atomically (see the module's description); answers each delivery in the
    /// order given. At most [`MAX_BATCH`] deliveries.
    pub async fn store_events(&self, batch: &[NewEvent]) -> Result<Vec<Stored>> {
        self.store_events_on(&mut WriterConn::default(), batch)
            .await
    }

    /// [`Store::store_events`] on the writer's kept connection (PostgreSQL; SQLite uses its
    /// writer's transaction as always).
    pub async fn store_events_on(
        &self,
        conn: &mut WriterConn,
        batch: &[NewEvent],
    ) -> Result<Vec<Stored>> {
        assert!(batch.len() <= MAX_BATCH, "at most {MAX_BATCH} deliveries");
        let now = now_ms();
        let ids: Vec<String> = batch.iter().map(|_| new_id()).collect();
        let inserted = match self.db.backend {
            Backend::Postgres => {
                let kept = conn.kept(&self.db.pool);
                let first = self
                    .insert_in_one_statement(conn, false, batch, &ids, now)
                    .await;
                match conn.checked(first) {
                    // The kept connection may have been closed since the last batch (the server
                    // restarted or ended it): once more, on one the pool tests. Had the first
                    // attempt committed after all, this one finds its rows and answers them as
                    // duplicates under the same ids.
                    Err(_) if kept => {
                        let again = self
                            .insert_in_one_statement(conn, true, batch, &ids, now)
                            .await;
                        conn.checked(again)?
                    }
                    got => got?,
                }
            }
            Backend::Sqlite => self.insert_in_a_transaction(batch, &ids, now).await?,
        };
        // The ids the others were stored under (earlier, or by another delivery of this batch),
        // committed by now.
        let repeated: Vec<usize> = (0..batch.len())
            .filter(|i| !inserted.contains(&ids[*i]))
            .collect();
        let mut existing = std::collections::HashMap::new();
        if !repeated.is_empty() {
            let keys: Vec<String> = (0..repeated.len())
                .map(|k| {
                    format!(
                        "(integration_id = ${} AND delivery_id = ${})",
                        2 * k + 1,
                        2 * k + 2
                    )
                })
                .collect();
            let sql = format!(
                "SELECT id, integration_id, delivery_id FROM or_events WHERE {}",
                keys.join(" OR ")
            );
            let mut q = sqlx::query(&sql);
            for i in &repeated {
                q = q
                    .bind(&batch[*i].integration_id)
                    .bind(&batch[*i].env.delivery_id);
            }
            let found = match self.db.backend {
                Backend::Postgres => {
                    let found = q.fetch_all(conn.get(&self.db.pool, false).await?).await;
                    conn.checked(found.map_err(Into::into))?
                }
                Backend::Sqlite => q.fetch_all(&self.db.pool).await?,
            };
            for r in found {
                let key: (String, String) =
                    (r.try_get("integration_id")?, r.try_get("delivery_id")?);
                existing.insert(key, r.try_get::<String, _>("id")?);
            }
        }
        if !inserted.is_empty() {
            self.wake.notify_one();
        }
        Ok((0..batch.len())
            .map(|i| {
                if inserted.contains(&ids[i]) {
                    Stored::New(ids[i].clone())
                } else {
                    let key = (
                        batch[i].integration_id.clone(),
                        batch[i].env.delivery_id.clone(),
                    );
                    Stored::Duplicate(existing.get(&key).cloned().unwrap_or_default())
                }
            })
            .collect())
    }

    /// PostgreSQL: the whole batch is one statement, run outside any explicit transaction (a
    /// statement is atomic): the events' `INSERT ... ON CONFLICT DO NOTHING`, the `event.received`
    /// of those whose org has an enabled subscription (into the outbox, from what the insert
    /// returned), and the `NOTIFY` when any was new. One round trip where `BEGIN`, the insert, the
    /// subscribed orgs, the published events, `NOTIFY` and `COMMIT` were five or six: the writer
    /// stores one batch at a time, so its round trips are its rate's bound while the machine has
    /// cores to spare (ADR 0013, fourth amendment). Answers the ids inserted.
    async fn insert_in_one_statement(
        &self,
        conn: &mut WriterConn,
        tested: bool,
        batch: &[NewEvent],
        ids: &[String],
        now: i64,
    ) -> Result<HashSet<String>> {
        let sql = format!(
            "WITH v (id, integration_id, delivery_id, org_id, source, event_type, correlation_key, identifiers, \
             payload, traceparent, reply_to, facts, published_as) AS (VALUES {values}), \
             ins AS ({INSERT_EVENTS} \
             SELECT id, integration_id, delivery_id, org_id, source, event_type, correlation_key, identifiers, payload, \
             'received', $1, $1, $1, traceparent, reply_to, facts FROM v \
             ON CONFLICT (integration_id, delivery_id) DO NOTHING RETURNING id, org_id), \
             published AS (INSERT INTO or_outbox (id, org_id, team_id, event_type, occurred_at, data) \
             SELECT v.published_as, v.org_id, NULL, 'event.received', $1, \
             jsonb_build_object('event_id', v.id, 'source', v.source, 'event_type', v.event_type, \
             'integration_id', v.integration_id, 'delivery_id', v.delivery_id, 'status', 'received')::text \
             FROM ins JOIN v ON v.id = ins.id \
             WHERE {subscribed}), \
             woken AS (SELECT {NOTIFY_DUE} FROM (SELECT 1 FROM ins LIMIT 1) any_new) \
             SELECT ins.id FROM ins LEFT JOIN woken ON TRUE",
            // The time, then per delivery the 12 columns of `bind_event` and the id of its
            // `event.received`.
            values = values_rows(2, batch.len(), 13),
            subscribed = subscribed("ins.org_id"),
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql)
            .persistent(keep_prepared(batch.len()))
            .bind(now);
        for (e, id) in batch.iter().zip(ids) {
            q = bind_event(q, e, id).bind(new_id());
        }
        let c = conn.get(&self.db.pool, tested).await?;
        Ok(q.fetch_all(c).await?.into_iter().collect())
    }

    /// SQLite: the events' insert, the published `event.received` of subscribed orgs, in one
    /// transaction under the single writer. Answers the ids inserted.
    async fn insert_in_a_transaction(
        &self,
        batch: &[NewEvent],
        ids: &[String],
        now: i64,
    ) -> Result<HashSet<String>> {
        let (_g, mut tx) = self.begin().await?;
        // Each delivery has 12 parameters, bound in order (the time is written in: on SQLite
        // the statement's parameters are all unnamed, see `in_order`).
        let backend = self.db.backend;
        let rows: Vec<String> = (0..batch.len())
            .map(|i| {
                let b = 1 + 12 * i;
                format!(
                    "({}, 'received', {now}, {now}, {now}, {})",
                    in_order(backend, b, 9),
                    in_order(backend, b + 9, 3)
                )
            })
            .collect();
        let sql = format!(
            "{INSERT_EVENTS} VALUES {} ON CONFLICT (integration_id, delivery_id) DO NOTHING RETURNING id",
            rows.join(", ")
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql).persistent(false);
        for (e, id) in batch.iter().zip(ids) {
            q = bind_event(q, e, id);
        }
        let inserted: HashSet<String> = q.fetch_all(&mut *tx).await?.into_iter().collect();
        let fresh: Vec<usize> = (0..batch.len())
            .filter(|i| inserted.contains(&ids[*i]))
            .collect();
        if !fresh.is_empty() {
            self.publish_received(&mut tx, batch, ids, &fresh).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// `event.received` for the new events of orgs with an enabled subscription. Their
    /// `received` and `verified` timeline entries are not written: they are read off the event
    /// row (`Store::get_event`), which has the time, the delivery and the integration.
    async fn publish_received(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        batch: &[NewEvent],
        ids: &[String],
        fresh: &[usize],
    ) -> Result<()> {
        let orgs = fresh.iter().filter_map(|i| batch[*i].org.as_deref());
        let subscribed = subscribed_orgs(tx, orgs).await?;
        for i in fresh {
            let e = &batch[*i];
            let Some(org) = e.org.as_deref().filter(|o| subscribed.contains(*o)) else {
                continue;
            };
            let data = json!({"event_id": ids[*i], "source": e.env.source.as_str(), "event_type": e.env.event_type,
                "integration_id": e.integration_id, "delivery_id": e.env.delivery_id, "status": "received"});
            let event = Publish {
                org,
                team: None,
                event_type: "event.received",
                data,
            };
            publish(tx, event).await?;
        }
        Ok(())
    }
}

/// Binds a delivery's 12 columns in the order both inserts list them.
fn bind_event<'q, O>(
    q: sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    e: &'q NewEvent,
    id: &'q str,
) -> sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    q.bind(id)
        .bind(&e.integration_id)
        .bind(&e.env.delivery_id)
        .bind(e.org.as_deref())
        .bind(e.env.source.as_str())
        .bind(&e.env.event_type)
        .bind(&e.env.correlation_key)
        .bind(serde_json::to_string(&e.env.identifiers).unwrap_or_default())
        .bind(e.env.payload.to_string())
        .bind(e.traceparent.as_deref())
        .bind(e.env.reply_to.as_ref().map(Value::to_string))
        .bind(serde_json::to_string(&e.env.facts).unwrap_or_default())
}
