//! An incident's agent runs (ADR 0012), kept by the event that starts each: what a signal means
//! for them (`incidents::RunPlan`), the context a run gets, following runs from their relayed
//! events, and the follow-up run for signals that came while a run was going.

use serde_json::{Value, json};
use sqlx::{Any, Row, Transaction};
use switchyard_api::events::{JoinedSignal, JoinedSignals};
use switchyard_common::db::Backend;
use switchyard_common::error::Result;
use switchyard_common::time::{now_ms, rfc3339};

use super::Store;
use super::correlate::{lock_team, one};
use super::incidents::{incident_data, member, note_incident};
use crate::incidents::RunPlan;
use crate::sources::facts::{AlertState, Facts};
use crate::store::Claimed;

/// One signal as a run's context lists it; `new`: no earlier run had it.
fn member_context(
    event_id: &str,
    joined_at: i64,
    source: &str,
    event_type: &str,
    f: &Facts,
    new: bool,
) -> Value {
    json!({
        "event_id": event_id,
        "joined_at": rfc3339(joined_at),
        "source": source,
        "event_type": event_type,
        "service": f.service,
        "severity": f.severity,
        "alert": f.alert.as_ref().map(|a| &a.key),
        "resolved": f.alert.as_ref().map(|a| a.resolved),
        "new": new,
    })
}

/// Members a run's context lists at most (the latest).
const CONTEXT_MEMBERS: i64 = 50;
/// Signals a going run takes at once at most (the earliest; the rest at its next turn).
const JOINED_AT_ONCE: i64 = 20;
/// How much of a joined signal's payload its run reads.
const EXCERPT: usize = 2048;

impl Store {
    /// What the signal means for the incident's runs (`incidents::RunPlan`). Starting one records
    /// it (by this event) and the members it will have in its context.
    pub(super) async fn plan(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
        e: &Claimed,
    ) -> Result<(RunPlan, Option<Value>)> {
        let own = one(
            tx,
            "SELECT status FROM or_incident_runs WHERE incident_id = $1 AND event_id = $2",
            &[id, &e.id],
            None,
        )
        .await?;
        if own.is_some() {
            return Ok((RunPlan::Start, Some(self.run_context(tx, id).await?)));
        }
        if let Some(by) = one(tx, "SELECT seen_by FROM or_incident_members WHERE incident_id = $1 AND event_id = $2 AND seen_by IS NOT NULL",
            &[id, &e.id], None).await?
        {
            let run = one(tx, "SELECT run_id FROM or_incident_runs WHERE incident_id = $1 AND event_id = $2 AND run_id IS NOT NULL",
                &[id, &by], None).await?;
            return Ok((RunPlan::Seen { run_id: run.unwrap_or(by) }, None));
        }
        if let Some(r) = sqlx::query(
            "SELECT event_id, run_id FROM or_incident_runs WHERE incident_id = $1 AND status IN ('starting', 'running') LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        {
            let run_id = r.try_get::<Option<String>, _>("run_id")?.unwrap_or(r.try_get("event_id")?);
            return Ok((RunPlan::Wait { run_id }, None));
        }
        if e.facts.alert.as_ref().is_some_and(|a| a.resolved) {
            return Ok((RunPlan::None("a resolution starts no run".into()), None));
        }
        let status = one(
            tx,
            "SELECT status FROM or_incidents WHERE id = $1",
            &[id],
            None,
        )
        .await?;
        if status.as_deref() != Some("open") {
            return Ok((
                RunPlan::None(format!("the incident is {}", status.unwrap_or_default())),
                None,
            ));
        }
        let now = now_ms();
        super::incident_members::start_run(tx, id, &e.id, now).await?;
        let context = self.run_context(tx, id).await?;
        sqlx::query("UPDATE or_incident_members SET seen_by = $2 WHERE incident_id = $1 AND seen_by IS NULL")
            .bind(id)
            .bind(&e.id)
            .execute(&mut **tx)
            .await?;
        Ok((RunPlan::Start, Some(context)))
    }

    /// The incident as a run's trigger carries it: its facts, its latest members (`new` for those
    /// no earlier run had), and how earlier runs ended, with their findings.
    pub(super) async fn run_context(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
    ) -> Result<Value> {
        let mut incident = incident_data(tx, id).await?;
        let members = sqlx::query(
            "SELECT event_id, joined_at, source, event_type, service, severity, alert_key, alert_resolved, seen_by \
             FROM or_incident_members WHERE incident_id = $1 ORDER BY joined_at DESC, event_id DESC LIMIT $2",
        )
        .bind(id)
        .bind(CONTEXT_MEMBERS)
        .fetch_all(&mut **tx)
        .await?;
        let members: Vec<Value> = members
            .iter()
            .map(|r| {
                Ok(member_context(
                    &r.try_get::<String, _>("event_id")?,
                    r.try_get("joined_at")?,
                    &r.try_get::<String, _>("source")?,
                    &r.try_get::<String, _>("event_type")?,
                    &Facts {
                        service: r.try_get("service")?,
                        severity: r.try_get("severity")?,
                        alert: r
                            .try_get::<Option<String>, _>("alert_key")?
                            .map(|key| AlertState {
                                key,
                                resolved: r
                                    .try_get::<Option<i64>, _>("alert_resolved")
                                    .ok()
                                    .flatten()
                                    == Some(1),
                            }),
                    },
                    r.try_get::<Option<String>, _>("seen_by")?.is_none(),
                ))
            })
            .collect::<Result<_>>()?;
        let runs = sqlx::query(
            "SELECT run_id, status, summary, started_at FROM or_incident_runs WHERE incident_id = $1 \
               AND status NOT IN ('starting', 'running') ORDER BY started_at",
        )
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
        let runs: Vec<Value> = runs
            .iter()
            .map(|r| {
                Ok(json!({
                    "run_id": r.try_get::<Option<String>, _>("run_id")?,
                    "status": r.try_get::<String, _>("status")?,
                    "findings": r.try_get::<Option<String>, _>("summary")?,
                    "started_at": rfc3339(r.try_get("started_at")?),
                }))
            })
            .collect::<Result<_>>()?;
        incident["members"] = json!(members);
        incident["previous_runs"] = json!(runs);
        Ok(incident)
    }

    /// The signals of `org`'s incident whose run `trigger` started that no run has had, now in
    /// that run's context (the agent-runner asks between the agent's turns): each is marked seen
    /// by the run, and its event's and the incident's timelines say when. Nothing once the run has
    /// ended: a signal it did not take goes to a follow-up run (the team lock orders the two).
    pub async fn take_joined_signals(&self, org: &str, trigger: &str) -> Result<JoinedSignals> {
        let (_g, mut tx) = self.begin().await?;
        let Some(incident) = Self::lock_incident_of_run(&mut tx, self.db.backend, trigger).await?
        else {
            return Ok(JoinedSignals::default());
        };
        let going = sqlx::query(
            "SELECT r.run_id FROM or_incident_runs r JOIN or_incidents i ON i.id = r.incident_id \
             WHERE r.event_id = $1 AND i.org_id = $2 AND r.status IN ('starting', 'running')",
        )
        .bind(trigger)
        .bind(org)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(going) = going else {
            return Ok(JoinedSignals::default());
        };
        let run = going
            .try_get::<Option<String>, _>("run_id")?
            .unwrap_or_else(|| format!("of event {trigger}"));
        let rows = sqlx::query(
            "SELECT m.event_id, m.joined_at, m.source, m.event_type, m.service, m.severity, m.alert_key, \
               m.alert_resolved, e.payload FROM or_incident_members m JOIN or_events e ON e.id = m.event_id \
             WHERE m.incident_id = $1 AND m.seen_by IS NULL AND m.event_id <> $2 \
             ORDER BY m.joined_at, m.event_id LIMIT $3",
        )
        .bind(&incident)
        .bind(trigger)
        .bind(JOINED_AT_ONCE)
        .fetch_all(&mut *tx)
        .await?;
        let now = now_ms();
        let mut signals = Vec::with_capacity(rows.len());
        for r in &rows {
            let payload: String = r.try_get("payload")?;
            let m = member(r)?;
            let signal = JoinedSignal {
                event_id: m.event_id,
                joined_at: m.joined_at,
                source: m.source,
                event_type: m.event_type,
                service: m.service,
                severity: m.severity,
                alert: m.alert,
                resolved: m.resolved,
                excerpt: switchyard_common::text::prefix(&payload, EXCERPT).to_owned(),
            };
            sqlx::query("UPDATE or_incident_members SET seen_by = $3 WHERE incident_id = $1 AND event_id = $2")
                .bind(&incident)
                .bind(&signal.event_id)
                .bind(trigger)
                .execute(&mut *tx)
                .await?;
            let added = format!("added to the context of run {run} while it was going");
            super::timeline(&mut tx, &signal.event_id, now, "joined_run", Some(&added)).await?;
            let joined = format!(
                "event {} joined run {run} while it was going",
                signal.event_id
            );
            note_incident(&mut tx, &incident, now, "signal_joined_run", Some(&joined)).await?;
            signals.push(signal);
        }
        tx.commit().await?;
        Ok(JoinedSignals {
            incident_id: Some(incident),
            signals,
        })
    }

    /// The context of the run a new incident's first signal starts: the incident (`data`, as
    /// just written), that one signal, no earlier runs. What [`Self::run_context`] would read.
    pub(super) fn first_run_context(mut data: Value, e: &Claimed, now: i64) -> Value {
        let member = member_context(&e.id, now, &e.source, &e.event_type, &e.facts, true);
        data["members"] = json!([member]);
        data["previous_runs"] = json!([]);
        data
    }

    /// Follows an incident run from the config-service's run events (relayed in `tx`): its run id,
    /// status and findings. When it ends, the signals it did not have go to a follow-up run.
    pub(super) async fn follow_run(
        tx: &mut Transaction<'static, Any>,
        backend: Backend,
        trigger_event: &str,
        run_id: &str,
        status: &str,
        summary: Option<&str>,
    ) -> Result<()> {
        let Some(incident) = Self::lock_incident_of_run(tx, backend, trigger_event).await? else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE or_incident_runs SET run_id = COALESCE(run_id, $2), \
               status = CASE WHEN $3 = 'running' AND status <> 'starting' THEN status ELSE $3 END, \
               summary = COALESCE($4, summary) WHERE event_id = $1",
        )
        .bind(trigger_event)
        .bind(run_id)
        .bind(status)
        .bind(summary)
        .execute(&mut **tx)
        .await?;
        let now = now_ms();
        note_incident(
            tx,
            &incident,
            now,
            &format!("run_{status}"),
            Some(&format!("run {run_id}")),
        )
        .await?;
        if status != "running" {
            Self::follow_up(tx, &incident, now).await?;
        }
        Ok(())
    }

    /// An event whose incident run was to start was given up on (dead-lettered): its run never
    /// started, and the signals it was to have go to a follow-up run.
    pub(super) async fn run_never_started(
        tx: &mut Transaction<'static, Any>,
        backend: Backend,
        event: &str,
    ) -> Result<()> {
        let Some(incident) = Self::lock_incident_of_run(tx, backend, event).await? else {
            return Ok(());
        };
        let n = sqlx::query("UPDATE or_incident_runs SET status = 'failed', summary = 'the run could not be started' \
                             WHERE event_id = $1 AND status = 'starting'")
            .bind(event)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if n > 0 {
            // Its members are not seen by any run after all.
            sqlx::query("UPDATE or_incident_members SET seen_by = NULL WHERE incident_id = $1 AND seen_by = $2 AND event_id <> $2")
                .bind(&incident)
                .bind(event)
                .execute(&mut **tx)
                .await?;
            Self::follow_up(tx, &incident, now_ms()).await?;
        }
        Ok(())
    }

    /// The incident of the run started by `event`, with its team locked (as correlation locks it,
    /// so a signal joining while the run ends is either seen here or sees the run ended).
    async fn lock_incident_of_run(
        tx: &mut Transaction<'static, Any>,
        backend: Backend,
        event: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT i.id, i.org_id, i.team_id FROM or_incident_runs r JOIN or_incidents i ON i.id = r.incident_id WHERE r.event_id = $1",
        )
        .bind(event)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let (org, team): (String, String) = (r.try_get("org_id")?, r.try_get("team_id")?);
        lock_team(tx, backend, &org, &team).await?;
        Ok(Some(r.try_get("id")?))
    }

    /// With no run of the open incident going, sends its latest signal that no run had (and that
    /// is not a resolution) through dispatch again: its run takes every such signal.
    async fn follow_up(tx: &mut Transaction<'static, Any>, incident: &str, now: i64) -> Result<()> {
        let going = one(tx, "SELECT event_id FROM or_incident_runs WHERE incident_id = $1 AND status IN ('starting', 'running') LIMIT 1",
            &[incident], None).await?;
        let open = one(
            tx,
            "SELECT id FROM or_incidents WHERE id = $1 AND status = 'open'",
            &[incident],
            None,
        )
        .await?;
        if going.is_some() || open.is_none() {
            return Ok(());
        }
        let Some(event) = one(tx,
            "SELECT event_id FROM or_incident_members WHERE incident_id = $1 AND seen_by IS NULL \
               AND (alert_resolved IS NULL OR alert_resolved = 0) ORDER BY joined_at DESC, event_id DESC LIMIT 1",
            &[incident], None).await? else {
            return Ok(());
        };
        // Finished, or still being dispatched: a signal that joined while the run was going may
        // not be settled yet when the run ends. Taking its claim back makes that dispatch's
        // settle record nothing, and the signal goes through dispatch again for the follow-up.
        let finished = super::sql_list(|s| s.is_final() || s == super::Status::Dispatching);
        let n = sqlx::query(&format!(
            "UPDATE or_events SET status = 'received', generation = generation + 1, next_attempt_at = $2, attempts = 0, \
               claimed_by = NULL, claimed_until = NULL, updated_at = $2 WHERE id = $1 AND status IN ({finished})"
        ))
        .bind(&event)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n > 0 {
            // Every replica's dispatcher hears of it with the commit (this process's is woken by
            // the caller).
            super::notify_due(tx).await?;
            super::timeline(tx, &event, now, "follow_up", Some(&format!("incident {incident}: its last run ended before this signal was in a run's context"))).await?;
            note_incident(
                tx,
                incident,
                now,
                "follow_up",
                Some(&format!("a follow-up run for event {event}")),
            )
            .await?;
        }
        Ok(())
    }
}
