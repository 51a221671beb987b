//! The inbox: `or_events` as the dispatcher's queue.
//!
//! Storing is an atomic `INSERT ... ON CONFLICT DO NOTHING RETURNING` (many deliveries to one,
//! `ingest`), so a duplicate can never slip in between a check and an insert. Dispatchers claim due events with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL (replicas never claim the same event) and a lease
//! (`claimed_until`): an event claimed by a replica that died is claimable again once the lease
//! runs out; settling checks the claim is still this worker's. An event is not claimed while an
//! earlier event of the same integration with the same correlation key is still pending, which
//! keeps one incident's events in arrival order without one tenant waiting on another's.

use serde_json::Value;
use sqlx::Row;
use switchyard_common::db::{Backend, in_order, keep_prepared, values_rows, values_rows_in_order};
use switchyard_common::error::Result;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::Publish;
use switchyard_common::time::now_ms;

use super::ingest::NewEvent;
use super::outbound::{event_data, publish, subscribed};
use super::{
    Batch, STILL_DISPATCHING, Status, Store, placeholders, subscribed_orgs, timeline_entries,
    timeline_rows,
};
use crate::sources::{Envelope, Facts};
use crate::store::Integration;

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New(String),
    /// Already stored under this event id: acknowledge again, trigger nothing.
    Duplicate(String),
}

/// A claimed event, as the dispatcher needs it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub integration_id: String,
    pub org_id: Option<String>,
    pub source: String,
    pub event_type: String,
    pub correlation_key: String,
    pub identifiers: Vec<(String, String)>,
    pub payload: Value,
    /// Where the agent's answer goes, as the sender's module read it when the event came in.
    pub reply_to: Option<Value>,
    pub team_id: Option<String>,
    pub attempts: i64,
    /// The webhook request's trace, continued by dispatch.
    pub traceparent: Option<String>,
    /// Since when the event has been throttled without a break (ms), if it is.
    pub throttled_since: Option<i64>,
    /// Replays so far (0: the original delivery).
    pub generation: i64,
    /// Service, severity and the alert's state, for correlation.
    pub facts: Facts,
}

impl Claimed {
    /// The run's idempotency key: the event id, plus the replay generation once replayed, so a
    /// replay starts a new run and a repeated dispatch of one generation never does.
    pub fn idempotency_key(&self) -> String {
        match self.generation {
            0 => self.id.clone(),
            g => format!("{}:replay-{g}", self.id),
        }
    }
}

/// The outcome of one dispatch attempt, as [`Store::settle`] records it.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub status: Status,
    /// The org and team the event was routed to (kept when `None`).
    pub org: Option<String>,
    pub team: Option<String>,
    /// When to try again (waiting statuses).
    pub next_attempt_at: Option<i64>,
    pub run_id: Option<String>,
    /// The last error, or why the event is unrouted (cleared when `None`).
    pub error: Option<String>,
    /// Give back the attempt the claim counted (throttling is not a failed attempt).
    pub refund_attempt: bool,
    /// Timeline entries, in order.
    pub timeline: Vec<(&'static str, Option<String>)>,
    /// When the outcome was decided, for its timeline entries (`None`: when it is recorded).
    pub at: Option<i64>,
    /// A run started: what routed the event (`team T (this)` on its timeline). Its `routed`,
    /// `dispatch_attempt` and `dispatched` entries are then read off the row (`routed_by`,
    /// `dispatched_at`, `team_id`, `attempts`, `run_id`), not written as timeline rows.
    pub routed_by: Option<String>,
}

impl Settlement {
    /// A signal that joined an incident and starts no run: `dispatched` with nothing else to
    /// write than its routing and timeline ([`Store::settle_dispatched`] takes many at once).
    pub fn joins_only(&self) -> bool {
        self.run_id.is_none() && self.is_plain_dispatch()
    }

    /// `dispatched` with nothing else to write than its routing, its run (if it started one) and
    /// its timeline: what [`Store::settle_dispatched`] takes many at once.
    pub fn is_plain_dispatch(&self) -> bool {
        self.status == Status::Dispatched
            && self.error.is_none()
            && self.next_attempt_at.is_none()
            && !self.refund_attempt
    }

    /// When the run started, for the row (`recorded`: when the settlement is written, if it was
    /// not dated), or `None` when the settlement keeps no dispatch on the row.
    fn dispatched_at(&self, recorded: i64) -> Option<i64> {
        self.routed_by.as_ref().map(|_| self.at.unwrap_or(recorded))
    }

    /// A settlement to `status` that changes nothing else; fill in the rest with struct update.
    pub fn to(status: Status) -> Self {
        Self {
            status,
            org: None,
            team: None,
            next_attempt_at: None,
            run_id: None,
            error: None,
            refund_attempt: false,
            timeline: Vec::new(),
            at: None,
            routed_by: None,
        }
    }
}

impl Store {
    /// Stores one verified delivery, or finds the one it duplicates, in a transaction of its own
    /// (the webhook path batches them: [`Store::store_events`]). Commits before returning.
    pub async fn store_event(
        &self,
        integration: &Integration,
        env: &Envelope,
        org: Option<&str>,
    ) -> Result<Stored> {
        let e = NewEvent {
            integration_id: integration.id.clone(),
            org: org.map(str::to_owned),
            env: env.clone(),
            traceparent: switchyard_common::trace::TraceContext::current().map(|c| c.header()),
        };
        let mut stored = self.store_events(std::slice::from_ref(&e)).await?;
        Ok(stored.remove(0))
    }

    /// Records the outcome of a dispatch attempt by `worker`, in a transaction of its own (see
    /// [`Store::settle_in`]).
    pub async fn settle(&self, id: &str, worker: &str, s: &Settlement) -> Result<bool> {
        let mut batch = self.batch().await?;
        let settled = self.settle_in(&mut batch, id, worker, s).await?;
        self.commit(batch).await?;
        Ok(settled)
    }

    /// Records the outcome of a dispatch attempt by `worker` in `batch`: the new status and what
    /// the timeline says. Only while `worker` still holds the claim: a dispatcher whose lease ran
    /// out (and whose event another replica claimed since) must not overwrite the newer outcome.
    /// Returns false, recording nothing, when the claim was lost.
    pub async fn settle_in(
        &self,
        batch: &mut Batch,
        id: &str,
        worker: &str,
        s: &Settlement,
    ) -> Result<bool> {
        let tx = &mut batch.tx;
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE or_events SET status = $2, org_id = COALESCE($3, org_id), team_id = COALESCE($4, team_id), \
             next_attempt_at = COALESCE($5, next_attempt_at), run_id = COALESCE($6, run_id), last_error = $7, \
             claimed_by = NULL, claimed_until = NULL, updated_at = $8, \
             attempts = CASE WHEN $9 = 1 AND attempts > 0 THEN attempts - 1 ELSE attempts END, \
             throttled_since = CASE WHEN $2 = 'throttled' THEN COALESCE(throttled_since, $8) ELSE NULL END, \
             routed_by = COALESCE($11, routed_by), dispatched_at = COALESCE($12, dispatched_at) \
             WHERE id = $1 AND claimed_by = $10 AND status = 'dispatching' \
             RETURNING org_id, team_id, source, event_type, integration_id, status, run_id, last_error",
        )
        .bind(id)
        .bind(s.status.as_str())
        .bind(s.org.as_deref())
        .bind(s.team.as_deref())
        .bind(s.next_attempt_at)
        .bind(s.run_id.as_deref())
        .bind(s.error.as_deref())
        .bind(now)
        .bind(if s.refund_attempt { 1i64 } else { 0i64 })
        .bind(worker)
        .bind(s.routed_by.as_deref())
        .bind(s.dispatched_at(now))
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        timeline_entries(tx, id, s.at.unwrap_or(now), &s.timeline).await?;
        match (s.status, &s.run_id) {
            (Status::Dispatched, Some(run)) => {
                sqlx::query(
                    "UPDATE or_incident_runs SET run_id = COALESCE(run_id, $2) WHERE event_id = $1",
                )
                .bind(id)
                .bind(run)
                .execute(&mut **tx)
                .await?;
            }
            (Status::DeadLettered | Status::Unrouted, _) => {
                Store::run_never_started(tx, self.db.backend, id).await?;
                // Its incident's run never started: a follow-up may be due.
                batch.wake = true;
            }
            _ => {}
        }
        let event_type = match s.status {
            Status::Dispatched => Some("event.dispatched"),
            Status::DeadLettered => Some("event.dead_lettered"),
            Status::Unrouted => Some("event.unrouted"),
            _ => None,
        };
        let org: Option<String> = row.try_get("org_id")?;
        if let (Some(event_type), Some(org)) = (event_type, org.as_deref()) {
            let team: Option<String> = row.try_get("team_id")?;
            publish(
                &mut batch.tx,
                Publish {
                    org,
                    team: team.as_deref(),
                    event_type,
                    data: event_data(id, &row)?,
                },
            )
            .await?;
        }
        Ok(true)
    }

    /// [`Store::settle_dispatched`] in a transaction of its own, for the settler (many chains'
    /// settlements at once). On PostgreSQL, when none has timeline entries (a run started, as
    /// nearly all do), one statement outside any transaction, atomic as any statement is: the
    /// events' update, their incident runs' and their `event.dispatched` for orgs that subscribe.
    /// One round trip where `BEGIN`, the update, the incident runs, the subscribed orgs and
    /// `COMMIT` were five; a round's settle is on the dispatch's critical path (the next claim
    /// waits for it). Returns the ids whose claim was lost.
    pub async fn settle_dispatched_now(
        &self,
        worker: &str,
        items: &[(String, Settlement)],
    ) -> Result<Vec<String>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if self.db.backend != Backend::Postgres || items.iter().any(|(_, s)| !s.timeline.is_empty())
        {
            let mut batch = self.batch().await?;
            let lost = self.settle_dispatched(&mut batch, worker, items).await?;
            self.commit(batch).await?;
            return Ok(lost);
        }
        debug_assert!(items.iter().all(|(_, s)| s.is_plain_dispatch()));
        let now = now_ms();
        let n = items.len();
        let sql = format!(
            "WITH v (vid, vorg, vteam, vrun, vrouted, vat, vpub) AS (VALUES {values}), \
             upd AS ({settle}), \
             runs AS (UPDATE or_incident_runs r SET run_id = COALESCE(r.run_id, v.vrun) FROM upd JOIN v ON v.vid = upd.id \
               WHERE r.event_id = upd.id AND v.vrun IS NOT NULL), \
             published AS (INSERT INTO or_outbox (id, org_id, team_id, event_type, occurred_at, data) \
               SELECT v.vpub, upd.org_id, upd.team_id, 'event.dispatched', ${now_at}, \
               jsonb_build_object('event_id', upd.id, 'source', upd.source, 'event_type', upd.event_type, \
               'integration_id', upd.integration_id, 'status', upd.status, 'run_id', upd.run_id, 'error', upd.last_error)::text \
               FROM upd JOIN v ON v.vid = upd.id WHERE upd.org_id IS NOT NULL AND {subscribed}) \
             SELECT id FROM upd",
            values = values_rows(1, n, 7),
            settle = settling(&format!("${}", 7 * n + 1), &format!("${}", 7 * n + 2)),
            now_at = 7 * n + 1,
            subscribed = subscribed("upd.org_id"),
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql).persistent(keep_prepared(n));
        for (id, s) in items {
            q = q
                .bind(id)
                .bind(s.org.as_deref())
                .bind(s.team.as_deref())
                .bind(s.run_id.as_deref())
                .bind(s.routed_by.as_deref())
                .bind(s.dispatched_at(now))
                .bind(new_id());
        }
        let settled: std::collections::HashSet<String> = q
            .bind(now)
            .bind(worker)
            .fetch_all(&self.db.pool)
            .await?
            .into_iter()
            .collect();
        Ok(items
            .iter()
            .filter(|(id, _)| !settled.contains(id))
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// Settles, in `batch`, `worker`'s claims of plain dispatches (see
    /// [`Settlement::is_plain_dispatch`]: signals that joined an incident, and events whose run
    /// started): the multi-row form of [`Store::settle_in`], a few statements for any number.
    /// Returns the ids whose claim was lost (nothing recorded for them).
    pub async fn settle_dispatched(
        &self,
        batch: &mut Batch,
        worker: &str,
        items: &[(String, Settlement)],
    ) -> Result<Vec<String>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        debug_assert!(items.iter().all(|(_, s)| s.is_plain_dispatch()));
        let tx = &mut batch.tx;
        let now = now_ms();
        // Parameters bound in the order they appear (see `in_order`).
        let backend = self.db.backend;
        let values = values_rows_in_order(backend, 1, items.len(), 6);
        let sql = format!(
            "WITH v (vid, vorg, vteam, vrun, vrouted, vat) AS (VALUES {values}) \
             {settle}",
            settle = settling(
                &in_order(backend, 6 * items.len() + 1, 1),
                &in_order(backend, 6 * items.len() + 2, 1)
            ),
        );
        let mut q = sqlx::query(&sql);
        for (id, s) in items {
            q = q
                .bind(id)
                .bind(s.org.as_deref())
                .bind(s.team.as_deref())
                .bind(s.run_id.as_deref())
                .bind(s.routed_by.as_deref())
                .bind(s.dispatched_at(now));
        }
        let q = q.bind(now).bind(worker);
        let rows = q.fetch_all(&mut **tx).await?;
        let mut settled = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            settled.insert(row.try_get::<String, _>("id")?, row);
        }
        let entries: Vec<_> = items
            .iter()
            .filter(|(id, _)| settled.contains_key(id))
            .flat_map(|(id, s)| {
                let at = s.at.unwrap_or(now);
                s.timeline
                    .iter()
                    .map(move |(k, d)| (id.as_str(), at, *k, d.as_deref()))
            })
            .collect();
        timeline_rows(tx, &entries).await?;
        // The incident runs these events start know their runs.
        let runs: Vec<(&str, &str)> = items
            .iter()
            .filter(|(id, _)| settled.contains_key(id))
            .filter_map(|(id, s)| s.run_id.as_deref().map(|r| (id.as_str(), r)))
            .collect();
        if !runs.is_empty() {
            let sql = format!(
                "WITH v (vid, vrun) AS (VALUES {}) \
                 UPDATE or_incident_runs SET run_id = COALESCE(run_id, v.vrun) FROM v WHERE event_id = v.vid",
                (0..runs.len())
                    .map(|i| format!("({})", placeholders(2 * i + 1, 2)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (id, run) in &runs {
                q = q.bind(*id).bind(*run);
            }
            q.execute(&mut **tx).await?;
        }
        // `event.dispatched` for the orgs that subscribe (found in one query).
        let orgs: Vec<Option<String>> = rows
            .iter()
            .map(|r| r.try_get::<Option<String>, _>("org_id").ok().flatten())
            .collect();
        let subscribed = subscribed_orgs(tx, orgs.iter().flatten().map(String::as_str)).await?;
        for (id, row) in &settled {
            let org: Option<String> = row.try_get("org_id")?;
            let Some(org) = org.filter(|o| subscribed.contains(o)) else {
                continue;
            };
            let team: Option<String> = row.try_get("team_id")?;
            let event = Publish {
                org: &org,
                team: team.as_deref(),
                event_type: "event.dispatched",
                data: event_data(id, row)?,
            };
            publish(tx, event).await?;
        }
        Ok(items
            .iter()
            .filter(|(id, _)| !settled.contains_key(id))
            .map(|(id, _)| id.clone())
            .collect())
    }
}

/// The update settling plain dispatches from `v (vid, vorg, vteam, vrun, vrouted, vat)`, where the
/// claim is still `worker`'s (`now` and `worker`: their parameters), answering what their
/// `event.dispatched` reads.
fn settling(now: &str, worker: &str) -> String {
    format!(
        "UPDATE or_events SET status = 'dispatched', org_id = COALESCE(v.vorg, org_id), team_id = COALESCE(v.vteam, team_id), \
           run_id = COALESCE(v.vrun, run_id), last_error = NULL, claimed_by = NULL, claimed_until = NULL, updated_at = {now}, \
           throttled_since = NULL, routed_by = COALESCE(v.vrouted, routed_by), dispatched_at = COALESCE(v.vat, dispatched_at) \
         FROM v WHERE id = v.vid AND claimed_by = {worker} AND {STILL_DISPATCHING} \
         RETURNING id, org_id, team_id, source, event_type, integration_id, status, run_id, last_error"
    )
}
