//! Claiming due events for dispatch, by correlation key (ADR 0014).
//!
//! A claim takes the earliest pending event of each key that is due (its *head*), up to `keys`
//! of them, and with each head the events of its key that follow it, in arrival order, while
//! they are due too: up to `per_key` of them and [`CHAIN_BYTES`] of payload. The dispatcher works
//! through one key's events in order in one task, so a storm on one key drains a chain per claim,
//! not one event per claim, and the per-key order holds: an event is never claimed while an
//! earlier event of its key is pending and not claimed with it.
//!
//! On PostgreSQL the heads are found in two ways: first among the earliest due pending events (a
//! bounded window, one index probe each: a few hundred microseconds whatever the backlog, when
//! keys differ), then, if that found fewer than asked, by reading the earliest pending event of
//! every key (what a storm on one key needs, linear in the backlog); not when the first form saw
//! every due event (fewer than its window) without stopping early, as at a steady rate, since it
//! then found every key whose head is due. The heads are locked
//! `FOR UPDATE SKIP LOCKED` and each head's followers are read for the heads the statement
//! locked: a replica that cannot take a key's head takes none of its events, and once a head is
//! claimed the key's earliest pending event is not due until its claim is settled or its lease
//! runs out. SQLite has one writer, so it needs no locks: the same two forms, the complete one
//! over window functions, run whenever the first found fewer heads than asked.

use serde_json::Value;
use sqlx::Row;
use switchyard_common::db::Backend;
use switchyard_common::error::Result;
use switchyard_common::time::now_ms;

use super::{Claimed, STILL_DISPATCHING, Status, Store, placeholders, sql_list};

/// Payload bytes a key's followers may add to one claim (the head is always taken): bounds what
/// a claim holds in memory whatever the backlog.
pub const CHAIN_BYTES: i64 = 256 * 1024;

/// Due pending events the first form of a claim looks through for heads, at most.
const WINDOW: i64 = 512;

/// What a claim's `UPDATE` sets, then what it answers of each event claimed.
const CLAIM: &str = "status = 'dispatching', claimed_by = $3, claimed_until = $4, attempts = attempts + 1, updated_at = $1";
const RETURNING: &str = "id, integration_id, org_id, source, event_type, correlation_key, identifiers, payload, reply_to, team_id, attempts, traceparent, throttled_since, generation, facts";

/// The statement claiming the events a query (answering their `id`) chooses.
fn claiming(chosen: String) -> String {
    format!("UPDATE or_events SET {CLAIM} WHERE id IN ({chosen}) RETURNING {RETURNING}")
}

impl Store {
    /// Claims due events for `worker`, leasing them for `lease_ms`: up to `keys` correlation keys,
    /// with up to `per_key` events of each (see the module's description). In arrival order.
    pub async fn claim(
        &self,
        worker: &str,
        keys: i64,
        per_key: i64,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>> {
        let now = now_ms();
        let waiting = sql_list(|s| s.is_pending() && s != Status::Dispatching);
        let pending = sql_list(Status::is_pending);
        let due = |t: &str| {
            format!(
                "(({t}.status IN ({waiting}) AND {t}.next_attempt_at <= $1) \
                 OR ({t}.status = 'dispatching' AND {t}.claimed_until < $1))"
            )
        };
        // A key's followers of the heads chosen (PostgreSQL), through the pending events' index.
        let followers = || {
            format!(
                "SELECT id FROM heads \
                 UNION ALL \
                 SELECT f.id FROM heads h CROSS JOIN LATERAL ( \
                   SELECT c.id FROM ( \
                     SELECT l.id, SUM(CASE WHEN {due_l} THEN 0 ELSE 1 END) OVER w AS blocked, \
                            SUM(OCTET_LENGTH(l.payload)) OVER w AS bytes \
                     FROM (SELECT p.id, p.status, p.next_attempt_at, p.claimed_until, p.payload FROM or_events p \
                           WHERE p.integration_id = h.integration_id AND p.correlation_key = h.correlation_key \
                             AND p.status IN ({pending}) AND p.id > h.id ORDER BY p.id LIMIT $5) l \
                     WINDOW w AS (ORDER BY l.id ROWS UNBOUNDED PRECEDING)) c \
                   WHERE c.blocked = 0 AND c.bytes <= $6) f",
                due_l = due("l"),
            )
        };
        let statements = match self.db.backend {
            // First the earliest due pending events (at most `WINDOW` of them, in id order), each
            // taken when it is the earliest pending event of its key: index probes, made only
            // until `keys` heads are locked, and at most four times `keys` (another replica's
            // claim in flight holds some of the earliest: this one takes the next). The count of
            // heads found is read only when fewer than `keys` were locked, when every probe has
            // been made anyway. That finds them all when keys differ (the usual backlog); when it
            // finds fewer (a storm whose head is in flight fills the window with its followers),
            // the complete form reads the earliest pending event of every key once (passing over
            // what the first form just claimed, even with a lease already over).
            Backend::Postgres => vec![
                format!(
                    "WITH cand AS MATERIALIZED ( \
                       SELECT c.id, c.integration_id, c.correlation_key FROM or_events c \
                       WHERE c.status IN ({pending}) AND {due_c} ORDER BY c.id LIMIT {WINDOW}), \
                     firsts AS MATERIALIZED ( \
                       SELECT cand.id FROM cand WHERE ( \
                         SELECT q.id FROM or_events q WHERE q.integration_id = cand.integration_id \
                           AND q.correlation_key = cand.correlation_key AND q.status IN ({pending}) \
                         ORDER BY q.id LIMIT 1) = cand.id \
                       LIMIT $2 * 4), \
                     heads AS ( \
                       SELECT e.id, e.integration_id, e.correlation_key FROM firsts f JOIN or_events e ON e.id = f.id \
                       WHERE {due_e} LIMIT $2 FOR UPDATE OF e SKIP LOCKED), \
                     chosen AS ({followers}) \
                     UPDATE or_events SET {CLAIM} WHERE id IN (SELECT id FROM chosen) \
                     RETURNING {RETURNING}, (SELECT COUNT(*) FROM cand) AS seen, \
                       CASE WHEN (SELECT COUNT(*) FROM heads) < $2 THEN (SELECT COUNT(*) FROM firsts) END AS firsts",
                    due_c = due("c"),
                    due_e = due("e"),
                    followers = followers(),
                ),
                claiming(format!(
                    "WITH heads AS ( \
                       SELECT e.id, e.integration_id, e.correlation_key FROM or_events e \
                       WHERE e.id IN (SELECT MIN(p.id) FROM or_events p WHERE p.status IN ({pending}) \
                                      GROUP BY p.integration_id, p.correlation_key) \
                         AND {due_e} AND (e.claimed_by IS DISTINCT FROM $3 OR e.updated_at <> $1) \
                       ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED) {followers}",
                    due_e = due("e"),
                    followers = followers(),
                )),
            ],
            // One writer: no replica can claim between a statement's reads and its update. The
            // same two forms as on PostgreSQL. First the heads among the earliest due pending
            // events, with their keys' followers: a walk of `or_events_pending_id` that stops
            // at `WINDOW` (named, since the planner otherwise reads every due event through
            // `or_events_due` and sorts them), and one probe of `or_events_pending_key` each.
            // Then, when that found fewer heads than asked, every key's earliest pending event
            // over window functions (linear in the backlog, as a storm on one key needs),
            // passing over what the first form just claimed (due again at once when the lease
            // is already over).
            Backend::Sqlite => vec![
                claiming(format!(
                    "WITH cand AS ( \
                       SELECT c.id, c.integration_id, c.correlation_key FROM or_events c INDEXED BY or_events_pending_id \
                       WHERE c.status IN ({pending}) AND {due_c} ORDER BY c.id LIMIT {WINDOW}), \
                     heads AS ( \
                       SELECT cand.id, cand.integration_id AS i, cand.correlation_key AS k FROM cand WHERE ( \
                         SELECT q.id FROM or_events q WHERE q.integration_id = cand.integration_id \
                           AND q.correlation_key = cand.correlation_key AND q.status IN ({pending}) \
                         ORDER BY q.id LIMIT 1) = cand.id \
                       ORDER BY cand.id LIMIT $2), \
                     chain AS ( \
                       SELECT p.id, ROW_NUMBER() OVER w AS n, \
                              SUM(CASE WHEN {due_p} THEN 0 ELSE 1 END) OVER w AS blocked, \
                              SUM(CASE WHEN p.id > h.id THEN LENGTH(p.payload) ELSE 0 END) OVER w AS bytes \
                       FROM heads h JOIN or_events p ON p.integration_id = h.i AND p.correlation_key = h.k \
                         AND p.status IN ({pending}) AND p.id >= h.id \
                       WINDOW w AS (PARTITION BY p.integration_id, p.correlation_key ORDER BY p.id ROWS UNBOUNDED PRECEDING)) \
                     SELECT id FROM chain WHERE blocked = 0 AND n <= $5 + 1 AND (n = 1 OR bytes <= $6)",
                    due_c = due("c"),
                    due_p = due("p"),
                )),
                claiming(format!(
                    "WITH c AS ( \
                   SELECT p.id, p.integration_id AS i, p.correlation_key AS k, ROW_NUMBER() OVER w AS n, \
                          SUM(CASE WHEN {due_p} AND (p.claimed_by IS NOT $3 OR p.updated_at <> $1) THEN 0 ELSE 1 END) OVER w AS blocked \
                   FROM or_events p WHERE p.status IN ({pending}) \
                   WINDOW w AS (PARTITION BY p.integration_id, p.correlation_key ORDER BY p.id ROWS UNBOUNDED PRECEDING)), \
                 heads AS (SELECT i, k FROM c WHERE n = 1 AND blocked = 0 ORDER BY id LIMIT $2), \
                 chain AS ( \
                   SELECT c.id, c.n, SUM(CASE WHEN c.n > 1 THEN LENGTH(e.payload) ELSE 0 END) \
                     OVER (PARTITION BY c.i, c.k ORDER BY c.id ROWS UNBOUNDED PRECEDING) AS bytes \
                   FROM c JOIN heads h ON h.i = c.i AND h.k = c.k JOIN or_events e ON e.id = c.id \
                   WHERE c.blocked = 0 AND c.n <= $5 + 1) \
                 SELECT id FROM chain WHERE n = 1 OR bytes <= $6",
                    due_p = due("p"),
                )),
            ],
        };
        let _g = self.write_guard().await;
        let mut rows = Vec::new();
        let mut heads = 0i64;
        for (form, sql) in statements.iter().enumerate() {
            let q = sqlx::query(sql)
                .bind(now)
                .bind(keys - heads)
                .bind(worker)
                .bind(now + lease_ms)
                .bind((per_key - 1).max(0))
                .bind(CHAIN_BYTES);
            let got = if form == 0 && self.db.backend == Backend::Postgres {
                // The first form is only worth running as a walk of the pending events' index in
                // arrival order. On a table growing faster than its statistics are renewed,
                // PostgreSQL may read every due event and sort them instead (measured: 8 ms for
                // 3,000 pending, where the walk takes 1 ms), so sorts and bitmap scans are off
                // for this statement, set with the `BEGIN` (one round trip, not two).
                let mut tx = self
                    .db
                    .pool
                    .begin_with(
                        "BEGIN; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off",
                    )
                    .await?;
                let got = q.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                got
            } else {
                q.fetch_all(&self.db.pool).await?
            };
            let mut distinct = std::collections::HashSet::new();
            for r in &got {
                distinct.insert((
                    r.try_get::<String, _>("integration_id")?,
                    r.try_get::<String, _>("correlation_key")?,
                ));
            }
            heads += distinct.len() as i64;
            // The first form saw every due pending event (fewer than its window) and did not
            // stop early: it found every key whose head is due, and the complete form, which
            // reads every key's head, would find nothing more. Skipped then, as it is at a
            // steady rate (measured: a claim of 28 events 6.0 ms with it).
            let saw_all = form == 0
                && got.first().is_some_and(|r| {
                    r.try_get::<i64, _>("seen").is_ok_and(|n| n < WINDOW)
                        && r.try_get::<Option<i64>, _>("firsts")
                            .is_ok_and(|n| n.is_some_and(|n| n < keys * 4))
                });
            rows.extend(got);
            if heads >= keys || saw_all {
                break;
            }
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let ids: String = row.try_get("identifiers")?;
            let payload: String = row.try_get("payload")?;
            let reply_to: Option<String> = row.try_get("reply_to")?;
            out.push(Claimed {
                id: row.try_get("id")?,
                integration_id: row.try_get("integration_id")?,
                org_id: row.try_get("org_id")?,
                source: row.try_get("source")?,
                event_type: row.try_get("event_type")?,
                correlation_key: row.try_get("correlation_key")?,
                identifiers: serde_json::from_str(&ids).unwrap_or_default(),
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                reply_to: reply_to.and_then(|r| serde_json::from_str(&r).ok()),
                team_id: row.try_get("team_id")?,
                attempts: row.try_get("attempts")?,
                traceparent: row.try_get("traceparent")?,
                throttled_since: row.try_get("throttled_since")?,
                generation: row.try_get("generation")?,
                facts: row
                    .try_get::<Option<String>, _>("facts")?
                    .and_then(|f| serde_json::from_str(&f).ok())
                    .unwrap_or_default(),
            });
        }
        // RETURNING has no order; dispatch in arrival order.
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The earliest time any waiting event becomes due, or a claim's lease runs out (to sleep
    /// until then).
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let pending = sql_list(Status::is_pending);
        Ok(sqlx::query_scalar(&format!(
            "SELECT MIN(CASE WHEN status = 'dispatching' THEN claimed_until ELSE next_attempt_at END) FROM or_events \
             WHERE status IN ({pending})",
        ))
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// Extends `worker`'s claims on the events of `ids` it is still dispatching; returns how many
    /// it still holds.
    pub async fn renew_claims(&self, ids: &[String], worker: &str, lease_ms: i64) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let _g = self.write_guard().await;
        let list = placeholders(3, ids.len());
        let sql = format!(
            "UPDATE or_events SET claimed_until = $2 WHERE claimed_by = $1 AND {STILL_DISPATCHING} AND id IN ({list})",
        );
        let mut q = sqlx::query(&sql).bind(worker).bind(now_ms() + lease_ms);
        for id in ids {
            q = q.bind(id);
        }
        Ok(q.execute(&self.db.pool).await?.rows_affected())
    }

    /// Puts back claimed events without counting the attempt: all of `worker`'s (graceful
    /// shutdown), or those of `ids` (the rest of a key's events after one that must wait).
    pub async fn release(&self, worker: &str, ids: Option<&[String]>) -> Result<u64> {
        if ids.is_some_and(|i| i.is_empty()) {
            return Ok(0);
        }
        // Named events through the primary key; all of them through the status.
        let which = match ids {
            Some(i) => format!(
                "{STILL_DISPATCHING} AND id IN ({})",
                placeholders(2, i.len())
            ),
            None => "status = 'dispatching'".to_owned(),
        };
        let sql = format!(
            "UPDATE or_events SET status = 'received', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1 AND {which}",
        );
        let _g = self.write_guard().await;
        let mut q = sqlx::query(&sql).bind(worker);
        for id in ids.unwrap_or_default() {
            q = q.bind(id);
        }
        let released = q.execute(&self.db.pool).await?.rows_affected();
        if released > 0 {
            self.wake.notify_one();
        }
        Ok(released)
    }
}
