//! Orchestrator storage over PostgreSQL or SQLite (the portable-SQL approach of ADR 0001), one
//! `impl Store` slice per area as in the config-service:
//!
//! - [`integrations`]: integrations and their secrets (sealed with `switchyard_common::crypto`);
//! - [`inbox`]: storing deliveries, claiming, settling, releasing (the dispatcher's queue);
//! - [`events`]: listing and reading events, replay, retention purge;
//! - [`audit`]: the audit outbox, written in the transaction of the change it records;
//! - [`correlate`]: routed events into incidents; [`incident_runs`]: the incidents' agent runs;
//!   [`incidents`]: the incidents as the API shows and changes them;
//! - [`provisioning`]: provisioning runs and their steps;
//! - [`outbound`]: the outbox of Switchyard's own events and its fan-out to subscriptions;
//! - [`deliveries`]: the outbound deliveries' queue; [`attempts`]: its log, resend and recover;
//! - [`subscriptions`]: outbound subscriptions and their signing secrets;
//! - [`leadership`]: wake-ups and single-replica leadership, so callers never see a backend.
//!
//! Writes go through [`Db::begin_write`] / [`Db::write_guard`], which queue SQLite's single writer
//! in-process; nothing outside this module sees a pool or a [`Backend`].

mod attempts;
mod audit;
mod claim;
mod correlate;
mod deliveries;
mod event_timeline;
mod events;
mod inbox;
mod incident_members;
mod incident_runs;
mod incidents;
mod ingest;
mod integrations;
mod leadership;
mod outbound;
mod provisioning;
mod subscriptions;

use std::sync::Arc;

use sqlx::{Any, Transaction};
use switchyard_common::db::{Backend, Db, WriteTx, keep_prepared, values_rows_in_order};
use switchyard_common::error::Result;
use switchyard_common::ids::new_id;
use tokio::sync::{Notify, OwnedMutexGuard};

pub use attempts::Attempt;
pub use audit::OutboxEntry;
pub use correlate::Correlation;
pub use deliveries::{AttemptOutcome, Disabled, DueDelivery, Next, Settled};
pub use events::{Event, EventDetail, EventQuery, PURGE_BATCH, TimelineEntry};
pub use inbox::{Claimed, Settlement, Stored};
pub use incidents::{Incident, IncidentDetail, IncidentEntry, IncidentQuery, IncidentRun, Member};
pub use ingest::{MAX_BATCH, NewEvent, WriterConn};
pub use integrations::{Integration, IntegrationChange, NewIntegration, SecretInfo};
pub use leadership::{Leadership, Wakeups};
pub use outbound::{OUTBOX, type_matches};
pub use provisioning::{Run, RunOutcome, Step, StepStatus};
pub use subscriptions::{Subscription, SubscriptionFields, SubscriptionSecret};

/// The statuses an event moves through: `received` → `dispatching` → `dispatched`, or waiting in
/// `retrying` / `throttled`, or finished as `unrouted` (kept for replay) or `dead_lettered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Received,
    Dispatching,
    Throttled,
    Retrying,
    Dispatched,
    Unrouted,
    DeadLettered,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Received,
        Status::Dispatching,
        Status::Throttled,
        Status::Retrying,
        Status::Dispatched,
        Status::Unrouted,
        Status::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Dispatching => "dispatching",
            Status::Throttled => "throttled",
            Status::Retrying => "retrying",
            Status::Dispatched => "dispatched",
            Status::Unrouted => "unrouted",
            Status::DeadLettered => "dead_lettered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Finished: replay and purge apply.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Dispatched | Status::Unrouted | Status::DeadLettered
        )
    }

    /// Still owed a dispatch: it holds back later events of its correlation key.
    pub fn is_pending(self) -> bool {
        !self.is_final()
    }
}

/// `$first, $first+1, ...`: `n` numbered placeholders, for a statement built for a list of
/// values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The backend `tx` runs on.
fn backend_of(tx: &Transaction<'static, Any>) -> Backend {
    if tx.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// `'a', 'b', ...` for the statuses matching `pick`, to put in an SQL `IN (...)`: the statuses
/// are spelled once, here, not in every query.
pub fn sql_list(pick: impl Fn(Status) -> bool) -> String {
    Status::ALL
        .into_iter()
        .filter(|s| pick(*s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// Wakes this process's dispatcher when an event is stored or replayed (SQLite; PostgreSQL
    /// also NOTIFYs, which reaches every replica: see [`Store::wakeups`]).
    wake: Arc<Notify>,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// The most connections the pool opens.
    pub fn pool_size(&self) -> u32 {
        self.db.pool.options().get_max_connections()
    }

    /// A cheap round trip, for readiness probes.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.db.ping().await?)
    }

    /// Closes the pool: every later call fails as if the database were down (tests of outages).
    #[cfg(feature = "testing")]
    pub async fn close(&self) {
        self.db.pool.close().await;
    }

    /// The process's SQLite write lock around a single write statement (`Db::write_guard`).
    async fn write_guard(&self) -> Option<OwnedMutexGuard<()>> {
        self.db.write_guard().await
    }

    async fn begin(&self) -> Result<WriteTx> {
        Ok(self.db.begin_write().await?)
    }

    /// A transaction a dispatcher writes several steps in (correlations and settlements of one
    /// key's events), committed together by [`Store::commit`]. On SQLite it holds the writer.
    pub async fn batch(&self) -> Result<Batch> {
        let (_guard, tx) = self.begin().await?;
        Ok(Batch {
            _guard,
            tx,
            wake: false,
        })
    }

    /// Commits `batch`, then wakes this process's dispatcher if what it wrote may have made an
    /// event or a follow-up run due.
    pub async fn commit(&self, batch: Batch) -> Result<()> {
        batch.tx.commit().await?;
        if batch.wake {
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// Tells other replicas' dispatchers, with `tx`'s commit, that events may have become due
/// (`NOTIFY` on PostgreSQL; SQLite has one process, whose dispatcher the caller wakes).
async fn notify_due(tx: &mut Transaction<'static, Any>) -> Result<()> {
    if backend_of(tx) == Backend::Postgres {
        sqlx::query(&format!("SELECT {NOTIFY_DUE}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// PostgreSQL: tells every replica's dispatcher, with the commit, that events may have become
/// due (they `LISTEN` on `or_events`, [`leadership`]).
const NOTIFY_DUE: &str = "pg_notify('or_events', '')";

/// An event still being dispatched, for statements that name their events by id: tested row by
/// row, not through an index on `status`. Every event passes through `dispatching`, and until a
/// vacuum each one leaves an entry behind in the status indexes that a bitmap scan walks (and,
/// unlike an index scan, never marks dead). Reading the statistics, PostgreSQL expects few
/// dispatching events and would start from that index, visiting a heap page per event dispatched
/// since the last vacuum (23 ms for a settle of 100 in a burst of 10,000), where the primary key
/// finds the 100 rows in 1 ms (docs/benchmarks.md, 2026-12-07).
const STILL_DISPATCHING: &str = "COALESCE(status, '') = 'dispatching'";

/// An open write transaction (see [`Store::batch`]); dropped without [`Store::commit`], it rolls
/// back.
pub struct Batch {
    _guard: Option<OwnedMutexGuard<()>>,
    tx: Transaction<'static, Any>,
    /// Wake the dispatcher after the commit.
    wake: bool,
}

/// Appends entries to an event's timeline in one statement, in order.
async fn timeline_entries(
    tx: &mut Transaction<'static, Any>,
    event: &str,
    at: i64,
    entries: &[(&'static str, Option<String>)],
) -> Result<()> {
    let rows: Vec<_> = entries
        .iter()
        .map(|(kind, detail)| (event, at, *kind, detail.as_deref()))
        .collect();
    timeline_rows(tx, &rows).await
}

/// Appends `(event, at, kind, detail)` entries to events' timelines in one statement, in order
/// (their ids keep the order).
async fn timeline_rows(
    tx: &mut Transaction<'static, Any>,
    rows: &[(&str, i64, &str, Option<&str>)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let values = values_rows_in_order(backend_of(tx), 1, rows.len(), 5);
    let sql =
        format!("INSERT INTO or_event_timeline (id, event_id, at, kind, detail) VALUES {values}");
    let mut q = sqlx::query(&sql).persistent(keep_prepared(rows.len()));
    for (event, at, kind, detail) in rows {
        q = q
            .bind(new_id())
            .bind(*event)
            .bind(*at)
            .bind(*kind)
            .bind(*detail);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// Which of `orgs` (repeats allowed) have an enabled subscription (their events are published).
async fn subscribed_orgs<'a>(
    tx: &mut Transaction<'static, Any>,
    orgs: impl IntoIterator<Item = &'a str>,
) -> Result<std::collections::HashSet<String>> {
    let mut orgs: Vec<&str> = orgs.into_iter().collect();
    orgs.sort_unstable();
    orgs.dedup();
    if orgs.is_empty() {
        return Ok(Default::default());
    }
    let list = placeholders(1, orgs.len());
    let sql = format!(
        "SELECT DISTINCT org_id FROM or_subscriptions WHERE enabled = 1 AND org_id IN ({list})"
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql);
    for o in &orgs {
        q = q.bind(*o);
    }
    Ok(q.fetch_all(&mut **tx).await?.into_iter().collect())
}

async fn timeline(
    tx: &mut Transaction<'static, Any>,
    event: &str,
    at: i64,
    kind: &str,
    detail: Option<&str>,
) -> Result<()> {
    append_entry(tx, Timeline::Event, event, at, kind, detail).await
}

/// The two timelines: an event's and an incident's.
#[derive(Clone, Copy)]
enum Timeline {
    Event,
    Incident,
}

/// Appends an entry to an event's or an incident's timeline.
async fn append_entry(
    tx: &mut Transaction<'static, Any>,
    of: Timeline,
    owner: &str,
    at: i64,
    kind: &str,
    detail: Option<&str>,
) -> Result<()> {
    let sql = match of {
        Timeline::Event => {
            "INSERT INTO or_event_timeline (id, event_id, at, kind, detail) VALUES ($1, $2, $3, $4, $5)"
        }
        Timeline::Incident => {
            "INSERT INTO or_incident_timeline (id, incident_id, at, kind, detail) VALUES ($1, $2, $3, $4, $5)"
        }
    };
    sqlx::query(sql)
        .bind(new_id())
        .bind(owner)
        .bind(at)
        .bind(kind)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_partition() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_ne!(s.is_final(), s.is_pending());
        }
        assert_eq!(
            sql_list(Status::is_final),
            "'dispatched', 'unrouted', 'dead_lettered'"
        );
        assert_eq!(Status::parse("nope"), None);
    }
}
