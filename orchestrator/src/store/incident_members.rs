//! How a signal becomes an incident's member (ADR 0012), once [`super::correlate`] has found
//! what it joins: opening an incident with it, or joining one (the incident takes its facts, a
//! resolution may resolve it, and the run plan follows). On PostgreSQL each is one statement
//! besides the lookup; SQLite, in-process, runs the same writes one after another.

use serde_json::json;
use sqlx::{Any, Row, Transaction};
use switchyard_common::db::Backend;
use switchyard_common::error::Result;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::Publish;
use switchyard_common::time::rfc3339;

use super::Store;
use super::correlate::Correlation;
use super::incidents::{COLS, data_of, note_incident, row};
use super::outbound::publish;
use crate::incidents::RunPlan;
use crate::sources::facts::rank;
use crate::store::Claimed;

/// A member row's columns, in the order correlation writes them.
const MEMBER: &str = "or_incident_members (incident_id, event_id, joined_at, source, event_type, correlation_key, \
    service, severity, alert_key, alert_resolved, seen_by)";

/// A new incident's first run, starting ($1 the incident, $12 the event, $10 now).
const INSERT_RUN: &str = "INSERT INTO or_incident_runs (incident_id, event_id, started_at, status) VALUES ($1, $12, $10, 'starting')";

impl Store {
    /// Opens an incident with the signal as its first member, and starts its run (the member is
    /// in that run's context from the start).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn open(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        (org, team): (&str, &str),
        group: &Option<String>,
        previous: Option<String>,
        subscribed: bool,
        now: i64,
    ) -> Result<Correlation> {
        let id = new_id();
        let title = match &e.facts.service {
            Some(s) => format!("{s}: {} {}", e.source, e.event_type),
            None => format!("{}: {} {}", team, e.source, e.event_type),
        };
        // A severity the scale does not rank is not the incident's (as when a signal joins).
        let severity = e.facts.severity.as_deref().filter(|s| rank(Some(s)) > 0);
        // PostgreSQL: the incident, its first member, the timeline's `opened` and the run in one
        // statement (a round trip each otherwise); SQLite runs in-process, one after another.
        let pg = self.db.backend == Backend::Postgres;
        let detail = format!("{} {} (event {})", e.source, e.event_type, e.id);
        let insert = format!(
            "INSERT INTO or_incidents (id, org_id, team_id, status, group_key, title, service, severity, severity_rank, sources, \
               members, first_seen, last_seen, previous_id, created_at, updated_at) \
             VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, 1, $10, $10, $11, $10, $10) RETURNING {COLS}"
        );
        let sql = if pg {
            format!(
                "WITH inc AS ({insert}), \
                 m AS (INSERT INTO {MEMBER} VALUES ($1, $12, $10, $13, $14, $15, $6, $16, $17, $18, $12)), \
                 n AS (INSERT INTO or_incident_timeline (id, incident_id, at, kind, detail) VALUES ($19, $1, $10, 'opened', $20)), \
                 r AS ({INSERT_RUN}) \
                 SELECT * FROM inc"
            )
        } else {
            insert
        };
        let q = sqlx::query(&sql)
            .bind(&id)
            .bind(org)
            .bind(team)
            .bind(group.as_deref().unwrap_or(""))
            .bind(&title)
            .bind(e.facts.service.as_deref())
            .bind(severity)
            .bind(rank(severity))
            .bind(json!([e.source]).to_string())
            .bind(now)
            .bind(previous.as_deref());
        let q = if pg {
            let alert = e.facts.alert.as_ref();
            q.bind(&e.id)
                .bind(&e.source)
                .bind(&e.event_type)
                .bind(&e.correlation_key)
                .bind(e.facts.severity.as_deref())
                .bind(alert.map(|a| a.key.as_str()))
                .bind(alert.map(|a| i64::from(a.resolved)))
                .bind(new_id())
                .bind(&detail)
        } else {
            q
        };
        let r = q.fetch_one(&mut **tx).await?;
        let data = data_of(&row(&r)?);
        if !pg {
            self.add_member(tx, &id, e, now, Some(&e.id)).await?;
            note_incident(tx, &id, now, "opened", Some(&detail)).await?;
            sqlx::query("INSERT INTO or_incident_runs (incident_id, event_id, started_at, status) VALUES ($1, $2, $3, 'starting')")
                .bind(&id)
                .bind(&e.id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        if let Some(p) = previous {
            let detail = format!("incident {p}, resolved within the window");
            note_incident(tx, &id, now, "follows", Some(&detail)).await?;
        }
        let opened = Publish {
            org,
            team: Some(team),
            event_type: "incident.opened",
            data: data.clone(),
        };
        if subscribed {
            publish(tx, opened).await?;
        }
        Ok(Correlation {
            context: Some(Self::first_run_context(data, e, now)),
            incident_id: id,
            opened: true,
            resolved: false,
            plan: RunPlan::Start,
        })
    }

    /// The signal joins incident `id`: the incident takes its facts (last seen, count, the highest
    /// severity, its source) in the statement that also answers the incident and whether a run of
    /// it is going; a resolution may resolve it. The run plan is `plan`'s for a fresh signal.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn join(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        (org, team): (&str, &str),
        id: &str,
        resolution: bool,
        subscribed: bool,
        now: i64,
    ) -> Result<Correlation> {
        // PostgreSQL: the member goes in with the update (one round trip); SQLite runs in-process.
        let pg = self.db.backend == Backend::Postgres;
        let with_member = if pg {
            format!(
                "WITH m AS (INSERT INTO {MEMBER} VALUES ($1, $8, $2, $4, $9, $10, $5, $7, $11, $12, NULL)) "
            )
        } else {
            self.add_member(tx, id, e, now, None).await?;
            String::new()
        };
        let severity = e.facts.severity.as_deref();
        // `sources` is a JSON array of sender names (slugs: nothing to escape).
        let sql = format!(
            "{with_member}UPDATE or_incidents SET last_seen = $2, members = members + 1, updated_at = $2, \
               sources = CASE WHEN sources LIKE $3 THEN sources WHEN sources = '[]' THEN '[\"' || $4 || '\"]' \
                 ELSE substr(sources, 1, length(sources) - 1) || ',\"' || $4 || '\"]' END, \
               service = COALESCE(service, $5), \
               severity = CASE WHEN severity_rank < $6 THEN $7 ELSE severity END, \
               severity_rank = CASE WHEN severity_rank < $6 THEN $6 ELSE severity_rank END \
             WHERE id = $1 RETURNING {COLS}, \
               (SELECT COALESCE(r.run_id, r.event_id) FROM or_incident_runs r WHERE r.incident_id = $1 \
                  AND r.status IN ('starting', 'running') LIMIT 1) AS going"
        );
        let q = sqlx::query(&sql)
            .bind(id)
            .bind(now)
            .bind(format!("%\"{}\"%", e.source))
            .bind(&e.source)
            .bind(e.facts.service.as_deref())
            .bind(rank(severity))
            .bind(severity);
        let q = if pg {
            let alert = e.facts.alert.as_ref();
            q.bind(&e.id)
                .bind(&e.event_type)
                .bind(&e.correlation_key)
                .bind(alert.map(|a| a.key.as_str()))
                .bind(alert.map(|a| i64::from(a.resolved)))
        } else {
            q
        };
        let r = q.fetch_one(&mut **tx).await?;
        let going: Option<String> = r.try_get("going")?;
        let mut incident = row(&r)?;
        let resolved = resolution && self.all_resolved(tx, id).await?;
        if resolved {
            sqlx::query("UPDATE or_incidents SET status = 'resolved', resolved_at = $2, resolved_by = 'signals', updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            let why = "every alert of the incident resolved";
            note_incident(tx, id, now, "resolved", Some(why)).await?;
            incident.status = "resolved".into();
            incident.resolved_at = Some(rfc3339(now));
            incident.resolved_by = Some("signals".into());
        }
        let data = data_of(&incident);
        let types: &[&'static str] = if resolved {
            &["incident.updated", "incident.resolved"]
        } else {
            &["incident.updated"]
        };
        for t in types.iter().filter(|_| subscribed) {
            let event = Publish {
                org,
                team: Some(team),
                event_type: t,
                data: data.clone(),
            };
            publish(tx, event).await?;
        }
        let (plan, context) = if let Some(run_id) = going {
            (RunPlan::Wait { run_id }, None)
        } else if resolution {
            (RunPlan::None("a resolution starts no run".into()), None)
        } else if incident.status != "open" {
            let why = format!("the incident is {}", incident.status);
            (RunPlan::None(why), None)
        } else {
            sqlx::query("INSERT INTO or_incident_runs (incident_id, event_id, started_at, status) VALUES ($1, $2, $3, 'starting')")
                .bind(id)
                .bind(&e.id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            let context = self.run_context(tx, id).await?;
            sqlx::query("UPDATE or_incident_members SET seen_by = $2 WHERE incident_id = $1 AND seen_by IS NULL")
                .bind(id)
                .bind(&e.id)
                .execute(&mut **tx)
                .await?;
            (RunPlan::Start, Some(context))
        };
        Ok(Correlation {
            incident_id: id.to_owned(),
            opened: false,
            resolved,
            plan,
            context,
        })
    }

    /// Adds the signal to incident `id` (already seen by the run `seen_by` starts, if any).
    async fn add_member(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
        e: &Claimed,
        now: i64,
        seen_by: Option<&str>,
    ) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO {MEMBER} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(id)
        .bind(&e.id)
        .bind(now)
        .bind(&e.source)
        .bind(&e.event_type)
        .bind(&e.correlation_key)
        .bind(e.facts.service.as_deref())
        .bind(e.facts.severity.as_deref())
        .bind(e.facts.alert.as_ref().map(|a| a.key.as_str()))
        .bind(e.facts.alert.as_ref().map(|a| i64::from(a.resolved)))
        .bind(seen_by)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Whether every alert of the incident says, in its latest signal, that it resolved.
    async fn all_resolved(&self, tx: &mut Transaction<'static, Any>, id: &str) -> Result<bool> {
        let rows = sqlx::query(
            "SELECT alert_key, alert_resolved FROM or_incident_members WHERE incident_id = $1 AND alert_key IS NOT NULL \
             ORDER BY joined_at, event_id",
        )
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
        let mut latest = std::collections::HashMap::new();
        for r in &rows {
            latest.insert(
                r.try_get::<String, _>("alert_key")?,
                r.try_get::<i64, _>("alert_resolved")? == 1,
            );
        }
        Ok(!latest.is_empty() && latest.values().all(|r| *r))
    }
}
