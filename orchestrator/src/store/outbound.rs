//! Publishing Switchyard's own events (ADR 0011): the outbox and its fan-out to the subscriptions
//! that match (the deliveries' queue itself is [`super::deliveries`]).
//!
//! - **Publish**: a change writes its event to `or_outbox` in its own transaction, and only when
//!   its org has an enabled subscription at that moment (nobody else could receive it).
//! - **Fan-out**: claims outbox rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL), writes one delivery
//!   per matching subscription (unique on subscription and event, so a repeated fan-out adds
//!   nothing) and deletes the rows, in one transaction.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use switchyard_api::outbound::OutboundEvent;
use switchyard_common::db::Backend;
use switchyard_common::error::Result;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::{Outbox, Publish, envelope};
use switchyard_common::time::now_ms;

use super::{Store, subscribed_orgs};

/// The orchestrator's outbox.
pub const OUTBOX: Outbox = Outbox("or_outbox");

/// The PostgreSQL advisory lock under which a batch of run events is taken over (an arbitrary
/// constant: "relay" in ASCII).
const RELAY_LOCK: i64 = 0x0072_656c_6179;

/// Whether the org `org` (an SQL expression) has an enabled subscription: what an event is
/// written to the outbox on.
pub(super) fn subscribed(org: &str) -> String {
    format!("EXISTS (SELECT 1 FROM or_subscriptions WHERE org_id = {org} AND enabled = 1)")
}

/// Writes `event` to the outbox in `tx`, if anyone in its org (`$2`) subscribes.
pub(super) async fn publish(tx: &mut Transaction<'static, Any>, event: Publish<'_>) -> Result<()> {
    OUTBOX.publish(tx, event, Some(&subscribed("$2"))).await?;
    Ok(())
}

/// Whether a subscription's pattern takes an event type: the type itself, `prefix.*`, or `*`.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    pattern == "*"
        || pattern == event_type
        || pattern.strip_suffix(".*").is_some_and(|p| {
            event_type
                .split_once('.')
                .is_some_and(|(head, _)| head == p)
        })
}

impl Store {
    /// Fans up to `limit` outbox rows out to the deliveries of the subscriptions they match, and
    /// deletes them. Answers how many rows it took (0: the outbox is empty).
    pub async fn fan_out(&self, limit: i64) -> Result<usize> {
        let lock = match self.db.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let (_g, mut tx) = self.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM or_outbox ORDER BY id LIMIT $1 {lock}",
            Outbox::columns()
        ))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let events = rows
            .iter()
            .map(envelope)
            .collect::<sqlx::Result<Vec<_>>>()?;
        let mut subscriptions: HashMap<String, Vec<Target>> = HashMap::new();
        let now = now_ms();
        for e in &events {
            if !subscriptions.contains_key(&e.org_id) {
                let targets = enabled_subscriptions(&mut tx, &e.org_id).await?;
                subscriptions.insert(e.org_id.clone(), targets);
            }
            let body = serde_json::to_string(e).unwrap_or_default();
            let occurred = switchyard_common::time::parse_rfc3339(&e.timestamp).unwrap_or(now);
            for t in &subscriptions[&e.org_id] {
                if !t.takes(e) {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO or_deliveries (id, subscription_id, event_id, org_id, team_id, event_type, body, occurred_at, \
                       status, attempts, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9, $9) \
                     ON CONFLICT (subscription_id, event_id) DO NOTHING",
                )
                .bind(new_id())
                .bind(&t.id)
                .bind(&e.id)
                .bind(&e.org_id)
                .bind(e.team_id.as_deref())
                .bind(&e.event_type)
                .bind(&body)
                .bind(occurred)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        OUTBOX.delete(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// Takes over a batch of the config-service's run events, in one transaction with a few
    /// statements whatever its size; taking the same events again changes nothing.
    /// - each finished run's outcome goes to its trigger event's timeline (`run_succeeded`,
    ///   `run_failed` with the reason, `run_cancelled`), once;
    /// - an incident's runs follow their runs' events;
    /// - the events of orgs with an enabled subscription wait in the outbox for the fan-out
    ///   (the rule [`publish`] applies to the orchestrator's own).
    pub async fn import_outbox(&self, events: &[OutboundEvent]) -> Result<()> {
        let (_g, mut tx) = self.begin().await?;
        // Replicas' relays may pull the same batch at once: one takes it over at a time, so the
        // second sees what the first committed (no outcome twice on a timeline). SQLite's single
        // writer already does this.
        if self.db.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(RELAY_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let subscribed = subscribed_orgs(&mut tx, events.iter().map(|e| e.org_id.as_str())).await?;
        let wanted: Vec<OutboundEvent> = events
            .iter()
            .filter(|e| subscribed.contains(&e.org_id))
            .cloned()
            .collect();
        OUTBOX.import(&mut tx, &wanted).await?;
        let runs: Vec<RunEvent> = events.iter().filter_map(RunEvent::of).collect();
        note_run_outcomes(&mut tx, &runs).await?;
        let triggers: Vec<&str> = runs.iter().map(|r| r.trigger).collect();
        let with_incident = existing(
            &mut tx,
            "SELECT event_id FROM or_incident_runs WHERE event_id IN",
            &triggers,
        )
        .await?;
        for r in runs.iter().filter(|r| with_incident.contains(r.trigger)) {
            Store::follow_run(
                &mut tx,
                self.db.backend,
                r.trigger,
                r.run,
                r.status,
                r.event.data["summary"].as_str(),
            )
            .await?;
        }
        tx.commit().await?;
        // A run that ended may have sent a signal back to dispatch (a follow-up run).
        if !with_incident.is_empty() {
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// A `run.*` event of the config-service, as the import reads it.
struct RunEvent<'a> {
    event: &'a OutboundEvent,
    trigger: &'a str,
    run: &'a str,
    status: &'a str,
}

impl<'a> RunEvent<'a> {
    fn of(e: &'a OutboundEvent) -> Option<Self> {
        if !e.event_type.starts_with("run.") {
            return None;
        }
        let d = &e.data;
        Some(Self {
            event: e,
            trigger: d["trigger_event_id"].as_str()?,
            run: d["run_id"].as_str()?,
            status: d["status"].as_str()?,
        })
    }

    /// The entry its trigger event's timeline gets: how the run ended (nothing while it goes).
    fn entry(&self) -> Option<(&'static str, String)> {
        let kind = match self.status {
            "succeeded" => "run_succeeded",
            "failed" => "run_failed",
            "cancelled" => "run_cancelled",
            _ => return None,
        };
        let detail = match self.event.data["error"].as_str() {
            Some(e) => format!("run {}: {e}", self.run),
            None => format!("run {}", self.run),
        };
        Some((kind, detail))
    }
}

/// Which of `ids` the query (`... IN`, completed with the list) finds.
async fn existing(
    tx: &mut Transaction<'static, Any>,
    query: &str,
    ids: &[&str],
) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(500) {
        let sql = format!("{query} ({})", super::placeholders(1, chunk.len()));
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        found.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(found)
}

/// Adds finished runs' outcomes to their trigger events' timelines, when the event is the run's
/// org's (or not yet routed), in one statement. An entry already there (the same event taken over
/// twice) is not added again; its time is when the run ended, and it is listed after what the
/// timeline had when it was taken over (a fast run may end before its dispatch is settled).
async fn note_run_outcomes(
    tx: &mut Transaction<'static, Any>,
    runs: &[RunEvent<'_>],
) -> Result<()> {
    let ended: Vec<(&RunEvent, (&str, String))> = runs
        .iter()
        .filter_map(|r| r.entry().map(|e| (r, e)))
        .collect();
    if ended.is_empty() {
        return Ok(());
    }
    let triggers: Vec<&str> = ended.iter().map(|(r, _)| r.trigger).collect();
    let mut events: HashMap<String, Option<String>> = HashMap::new();
    for chunk in triggers.chunks(500) {
        let sql = format!(
            "SELECT id, org_id FROM or_events WHERE id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (String, Option<String>)>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        events.extend(q.fetch_all(&mut **tx).await?);
    }
    let rows: Vec<_> = ended
        .into_iter()
        .filter(|(r, _)| {
            events
                .get(r.trigger)
                .is_some_and(|org| org.as_deref().is_none_or(|o| o == r.event.org_id))
        })
        .collect();
    for chunk in rows.chunks(500) {
        let sql = format!(
            // An entry already there is looked for per row, through the event's index (a scalar
            // subquery: as an anti-join PostgreSQL may scan the whole timeline table instead).
            "WITH v (id, event_id, at, kind, detail) AS (VALUES {}) \
             INSERT INTO or_event_timeline (id, event_id, at, kind, detail) \
             SELECT v.id, v.event_id, v.at, v.kind, v.detail FROM v WHERE ( \
               SELECT COUNT(*) FROM or_event_timeline t \
               WHERE t.event_id = v.event_id AND t.kind = v.kind AND t.detail = v.detail) = 0",
            (0..chunk.len())
                .map(|i| format!("({})", super::placeholders(5 * i + 1, 5)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (r, (kind, detail)) in chunk {
            let at = switchyard_common::time::parse_rfc3339(&r.event.timestamp)
                .unwrap_or_else(|_| now_ms());
            q = q
                .bind(new_id())
                .bind(r.trigger)
                .bind(at)
                .bind(*kind)
                .bind(detail.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// An enabled subscription as the fan-out matches events against it.
struct Target {
    id: String,
    patterns: Vec<String>,
    teams: Option<Vec<String>>,
}

impl Target {
    /// Its patterns take the event's type, and its teams (if it names any) the event's team:
    /// a subscription limited to teams never gets org-wide events.
    fn takes(&self, e: &OutboundEvent) -> bool {
        self.patterns.iter().any(|p| type_matches(p, &e.event_type))
            && match (&self.teams, &e.team_id) {
                (None, _) => true,
                (Some(teams), Some(t)) => teams.contains(t),
                (Some(_), None) => false,
            }
    }
}

async fn enabled_subscriptions(
    tx: &mut Transaction<'static, Any>,
    org: &str,
) -> Result<Vec<Target>> {
    let rows = sqlx::query(
        "SELECT id, event_types, team_ids FROM or_subscriptions WHERE org_id = $1 AND enabled = 1",
    )
    .bind(org)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let list = |col: &str| -> Result<Option<Vec<String>>> {
                Ok(r.try_get::<Option<String>, _>(col)?
                    .and_then(|s| serde_json::from_str(&s).ok()))
            };
            Ok(Target {
                id: r.try_get("id")?,
                patterns: list("event_types")?.unwrap_or_default(),
                teams: list("team_ids")?,
            })
        })
        .collect()
}

/// The data of an event's status change, for `event.*`.
pub(super) fn event_data(id: &str, r: &AnyRow) -> Result<Value> {
    Ok(json!({
        "event_id": id,
        "source": r.try_get::<String, _>("source")?,
        "event_type": r.try_get::<String, _>("event_type")?,
        "integration_id": r.try_get::<String, _>("integration_id")?,
        "status": r.try_get::<String, _>("status")?,
        "run_id": r.try_get::<Option<String>, _>("run_id")?,
        "error": r.try_get::<Option<String>, _>("last_error")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_common::time::rfc3339;

    #[test]
    fn patterns_take_their_types() {
        assert!(type_matches("*", "run.failed"));
        assert!(type_matches("run.*", "run.failed"));
        assert!(type_matches("run.failed", "run.failed"));
        assert!(!type_matches("run.*", "runs.failed"));
        assert!(!type_matches("run.succeeded", "run.failed"));
        assert!(!type_matches("incident.*", "run.failed"));
    }

    #[test]
    fn team_limited_subscriptions_get_only_their_teams_events() {
        let event = |team: Option<&str>| OutboundEvent {
            id: "e".into(),
            event_type: "run.succeeded".into(),
            version: 1,
            timestamp: rfc3339(0),
            org_id: "acme".into(),
            team_id: team.map(str::to_owned),
            data: Value::Null,
        };
        let org_wide = Target {
            id: "a".into(),
            patterns: vec!["run.*".into()],
            teams: None,
        };
        let checkout = Target {
            id: "b".into(),
            patterns: vec!["*".into()],
            teams: Some(vec!["checkout".into()]),
        };
        assert!(org_wide.takes(&event(Some("search"))));
        assert!(org_wide.takes(&event(None)));
        assert!(checkout.takes(&event(Some("checkout"))));
        assert!(!checkout.takes(&event(Some("search"))));
        assert!(!checkout.takes(&event(None)));
    }
}
