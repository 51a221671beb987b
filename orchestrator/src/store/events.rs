//! Reading events (list, one with its timeline), replaying finished ones and the retention purge.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::time::{now_ms, rfc3339};
use utoipa::ToSchema;

use super::audit::note;
use super::event_timeline::{answered, write_out_dispatch};
use super::{Status, Store, placeholders, sql_list, timeline};

/// Events deleted per purge transaction.
pub const PURGE_BATCH: i64 = 5_000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub id: String,
    pub integration_id: String,
    pub delivery_id: String,
    pub org_id: Option<String>,
    pub source: String,
    pub event_type: String,
    pub correlation_key: String,
    /// Routing identifiers as (kind, value) pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub identifiers: Vec<(String, String)>,
    pub status: String,
    pub team_id: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub run_id: Option<String>,
    pub last_error: Option<String>,
    pub received_at: String,
    pub updated_at: String,
}

/// An event with its payload and timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: Event,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct TimelineEntry {
    pub at: String,
    /// `received`, `verified`, `routed`, `unrouted`, `throttled`, `dispatch_attempt`,
    /// `dispatch_failed`, `dispatched`, `dead_lettered`, `replayed`.
    pub kind: String,
    pub detail: Option<String>,
}

/// Filters for listing events.
#[derive(Debug, Default, Clone)]
pub struct EventQuery {
    /// `None`: every org (platform admin).
    pub org: Option<String>,
    pub team: Option<String>,
    pub source: Option<String>,
    pub status: Option<Status>,
    pub since: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

const EVENT_COLS: &str = "id, integration_id, delivery_id, org_id, source, event_type, correlation_key, identifiers, status, team_id, attempts, next_attempt_at, run_id, last_error, received_at, updated_at";

fn event_row(r: &AnyRow) -> Result<Event> {
    let ids: String = r.try_get("identifiers")?;
    Ok(Event {
        id: r.try_get("id")?,
        integration_id: r.try_get("integration_id")?,
        delivery_id: r.try_get("delivery_id")?,
        org_id: r.try_get("org_id")?,
        source: r.try_get("source")?,
        event_type: r.try_get("event_type")?,
        correlation_key: r.try_get("correlation_key")?,
        identifiers: serde_json::from_str(&ids).unwrap_or_default(),
        status: r.try_get("status")?,
        team_id: r.try_get("team_id")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: rfc3339(r.try_get("next_attempt_at")?),
        run_id: r.try_get("run_id")?,
        last_error: r.try_get("last_error")?,
        received_at: rfc3339(r.try_get("received_at")?),
        updated_at: rfc3339(r.try_get("updated_at")?),
    })
}

impl Store {
    pub async fn list_events(&self, q: &EventQuery) -> Result<(Vec<Event>, Option<String>)> {
        let limit = q.limit.unwrap_or(50).clamp(1, 500) as i64;
        // Only the filters given, spelled as equalities, so that the planner can range-read an
        // index ((org_id, status, id) for a status, (org_id, id) otherwise) newest first, rather
        // than walk the org's events filtering a generic plan's `($n = '' OR ...)`.
        let mut values: Vec<&str> = Vec::new();
        let mut sql = format!("SELECT {EVENT_COLS} FROM or_events WHERE received_at >= $1");
        let filters = [
            ("org_id = ", q.org.as_deref()),
            ("team_id = ", q.team.as_deref()),
            ("source = ", q.source.as_deref()),
            ("status = ", q.status.map(Status::as_str)),
            ("id < ", q.cursor.as_deref()),
        ];
        for (test, value) in filters {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                values.push(v);
                sql.push_str(&format!(" AND {test}${}", values.len() + 1));
            }
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
        let mut query = sqlx::query(&sql).bind(q.since.unwrap_or(0));
        for v in values {
            query = query.bind(v);
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        let mut items = rows.iter().map(event_row).collect::<Result<Vec<_>>>()?;
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok((items, next))
    }

    /// One event with payload and timeline; `org` restricts it to a tenant (`None`: any).
    ///
    /// The timeline's `received` and `verified` entries, and an event's `routed`,
    /// `dispatch_attempt` and `dispatched` when its run started, are read off the event row
    /// (`event_timeline::answered`); events stored before that have them as rows, which are
    /// answered as they are.
    pub async fn get_event(&self, org: Option<&str>, id: &str) -> Result<EventDetail> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLS}, payload, routed_by, dispatched_at, (SELECT CASE WHEN i.org_id IS NULL THEN 1 ELSE 0 END FROM or_integrations i WHERE i.id = e.integration_id) AS platform \
             FROM or_events e WHERE id = $1 AND ($2 = '' OR org_id = $2)"
        ))
        .bind(id)
        .bind(org.unwrap_or(""))
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("event {id}")))?;
        let payload: String = row.try_get("payload")?;
        let event = event_row(&row)?;
        let timeline = answered(&self.db.pool, &event, &row).await?;
        Ok(EventDetail {
            event,
            payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            timeline,
        })
    }

    /// Sends finished events (dispatched, unrouted, dead-lettered) matching the filter through
    /// dispatch again. Returns how many.
    pub async fn replay(&self, by: &Actor, q: &EventQuery, id: Option<&str>) -> Result<u64> {
        let (_g, mut tx) = self.begin().await?;
        let now = now_ms();
        let finished = sql_list(Status::is_final);
        let found: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT id, org_id FROM or_events WHERE ($1 = '' OR org_id = $1) AND ($2 = '' OR id = $2) AND ($3 = '' OR status = $3) \
             AND ($4 = '' OR source = $4) AND ($5 = '' OR team_id = $5) AND status IN ({finished}) LIMIT 10000",
        ))
        .bind(q.org.as_deref().unwrap_or(""))
        .bind(id.unwrap_or(""))
        .bind(q.status.map(Status::as_str).unwrap_or(""))
        .bind(q.source.as_deref().unwrap_or(""))
        .bind(q.team.as_deref().unwrap_or(""))
        .fetch_all(&mut *tx)
        .await?;
        // One audit entry per org touched, naming the events (or, for many, how many).
        let mut by_org: std::collections::BTreeMap<Option<&str>, Vec<&str>> = Default::default();
        for (id, org) in &found {
            by_org.entry(org.as_deref()).or_default().push(id);
        }
        let filter = json!({"status": q.status.map(Status::as_str), "source": q.source, "team": q.team, "event": id});
        for (org, events) in &by_org {
            let target = match events.as_slice() {
                [one] => format!("event/{one}"),
                _ => "events".to_owned(),
            };
            let after = json!({"replayed": events.len(), "filter": filter,
                "events": events.iter().take(100).collect::<Vec<_>>()});
            note(
                &mut tx,
                *org,
                by,
                "events.replayed",
                &target,
                None,
                Some(&after),
            )
            .await?;
        }
        for (id, _) in &found {
            write_out_dispatch(&mut tx, id).await?;
            sqlx::query("UPDATE or_events SET status = 'received', attempts = 0, next_attempt_at = $2, last_error = NULL, updated_at = $2, \
                         throttled_since = NULL, generation = generation + 1, routed_by = NULL, dispatched_at = NULL WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            timeline(&mut tx, id, now, "replayed", None).await?;
        }
        if !found.is_empty() {
            super::notify_due(&mut tx).await?;
        }
        tx.commit().await?;
        self.wake.notify_one();
        Ok(found.len() as u64)
    }

    /// Deletes finished events received before `before` (and their timelines), oldest first, in
    /// transactions of [`PURGE_BATCH`] events: each is short, so writers are never held up for
    /// long (SQLite has one writer) and PostgreSQL keeps no snapshot open across millions of rows
    /// (measured at 10 M rows: docs/benchmarks.md, ADR 0015). One `events.purged` audit entry per
    /// org says how many went. Delivery ids go with the events, so the retention must exceed the
    /// longest sender retry window.
    pub async fn purge(&self, by: &Actor, before: i64) -> Result<u64> {
        self.purge_in_batches(by, before, PURGE_BATCH).await
    }

    /// [`Store::purge`] with a batch size of the caller's (tests use small ones).
    pub async fn purge_in_batches(&self, by: &Actor, before: i64, batch: i64) -> Result<u64> {
        let mut per_org: std::collections::BTreeMap<Option<String>, i64> = Default::default();
        let mut total = 0u64;
        loop {
            let orgs = self.purge_batch(before, batch).await?;
            total += orgs.len() as u64;
            let last = (orgs.len() as i64) < batch;
            for org in orgs {
                *per_org.entry(org).or_default() += 1;
            }
            if last {
                break;
            }
        }
        if !per_org.is_empty() {
            let (_g, mut tx) = self.begin().await?;
            for (org, n) in &per_org {
                let after = json!({"purged": n, "received_before": rfc3339(before)});
                note(
                    &mut tx,
                    org.as_deref(),
                    by,
                    "events.purged",
                    "events",
                    None,
                    Some(&after),
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(total)
    }

    /// One purge transaction: up to `batch` of the oldest finished events received before
    /// `before`, with their timelines; answers the org of each event deleted. It walks the
    /// primary key (migration 0031): ids sort by the time they were made (`ids::id_floor_at`),
    /// which is when the event was stored, moments after its receipt. `received_at` still
    /// decides: an event stored a moment after `before` waits for the next purge.
    pub async fn purge_batch(&self, before: i64, batch: i64) -> Result<Vec<Option<String>>> {
        let finished = sql_list(Status::is_final);
        let (_g, mut tx) = self.begin().await?;
        let doomed: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT id, org_id FROM or_events WHERE id < $1 AND received_at < $2 \
             AND status IN ({finished}) ORDER BY id LIMIT $3"
        ))
        .bind(switchyard_common::ids::id_floor_at(before))
        .bind(before)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        let list = placeholders(1, doomed.len());
        for table_and_key in ["or_event_timeline WHERE event_id", "or_events WHERE id"] {
            let sql = format!("DELETE FROM {table_and_key} IN ({list})");
            let mut q = sqlx::query(&sql);
            for (id, _) in &doomed {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(doomed.into_iter().map(|(_, org)| org).collect())
    }

    /// Counts by status, for metrics and tests.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as(
                "SELECT status, COUNT(*) FROM or_events GROUP BY status ORDER BY status",
            )
            .fetch_all(&self.db.pool)
            .await?,
        )
    }

    /// The inbox's depth for the metrics: how many events wait in each status that is not
    /// `dispatched` (still owed a dispatch, or finished as unrouted or dead-lettered), and when
    /// the oldest of each was received. Reads the `(status, next_attempt_at)` index, never the
    /// dispatched events the retention keeps.
    pub async fn inbox_depth(&self) -> Result<Vec<(String, i64, i64)>> {
        let waiting = sql_list(|s| s != Status::Dispatched);
        Ok(sqlx::query_as(&format!(
            "SELECT status, COUNT(*), MIN(received_at) FROM or_events \
             WHERE status IN ({waiting}) GROUP BY status"
        ))
        .fetch_all(&self.db.pool)
        .await?)
    }
}
