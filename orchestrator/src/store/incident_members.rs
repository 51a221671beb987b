//! How a signal becomes an incident's member (ADR 0012), once [`super::correlate`] has found
//! what it joins. On PostgreSQL the lookups and these writes are one call of the `or_correlate`
//! function (migration 0021); SQLite, in process, runs the same steps from here: opening an
//! incident with the signal ([`Store::open_steps`]) or adding it to one ([`Store::join_steps`]).
//! Then, for both, what follows ([`Store::opened`], [`Store::joined`]): the published events, a
//! resolution, and the run plan.

use serde_json::json;
use sqlx::{Any, Row, Transaction};
use switchyard_common::error::Result;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::Publish;
use switchyard_common::time::rfc3339;

use super::Store;
use super::correlate::{Correlation, Found};
use super::incidents::{COLS, Incident, data_of, note_incident, row};
use super::outbound::publish;
use crate::incidents::RunPlan;
use crate::sources::facts::rank;
use crate::store::Claimed;

/// The title of an incident a signal opens.
pub(super) fn title(e: &Claimed, team: &str) -> String {
    match &e.facts.service {
        Some(s) => format!("{s}: {} {}", e.source, e.event_type),
        None => format!("{}: {} {}", team, e.source, e.event_type),
    }
}

/// The `opened` timeline entry's detail.
pub(super) fn opened_detail(e: &Claimed) -> String {
    format!("{} {} (event {})", e.source, e.event_type, e.id)
}

/// Records the incident's run that `event` starts (`starting` until the agent-runner reports it).
pub(super) async fn start_run(
    tx: &mut Transaction<'static, Any>,
    incident: &str,
    event: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO or_incident_runs (incident_id, event_id, started_at, status) VALUES ($1, $2, $3, 'starting')")
        .bind(incident)
        .bind(event)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// SQLite: opens an incident with the signal as its first member (seen by the run it
    /// starts), its timeline's `opened` (and `follows`) and that run.
    pub(super) async fn open_steps(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        (org, team): (&str, &str),
        group: Option<&str>,
        previous: Option<String>,
        now: i64,
    ) -> Result<Incident> {
        let id = new_id();
        // A severity the scale does not rank is not the incident's (as when a signal joins).
        let severity = e.facts.severity.as_deref().filter(|s| rank(Some(s)) > 0);
        let r = sqlx::query(&format!(
            "INSERT INTO or_incidents (id, org_id, team_id, status, group_key, title, service, severity, severity_rank, sources, \
               members, first_seen, last_seen, previous_id, created_at, updated_at) \
             VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $9, 1, $10, $10, $11, $10, $10) RETURNING {COLS}"
        ))
        .bind(&id)
        .bind(org)
        .bind(team)
        .bind(group.unwrap_or(""))
        .bind(title(e, team))
        .bind(e.facts.service.as_deref())
        .bind(severity)
        .bind(rank(severity))
        .bind(json!([e.source]).to_string())
        .bind(now)
        .bind(previous.as_deref())
        .fetch_one(&mut **tx)
        .await?;
        self.add_member(tx, &id, e, now, Some(&e.id)).await?;
        note_incident(tx, &id, now, "opened", Some(&opened_detail(e))).await?;
        if let Some(p) = previous {
            let detail = format!("incident {p}, resolved within the window");
            note_incident(tx, &id, now, "follows", Some(&detail)).await?;
        }
        start_run(tx, &id, &e.id, now).await?;
        row(&r)
    }

    /// SQLite: adds the signal to incident `id`, which takes its facts (last seen, count, the
    /// highest severity, its source); answers the incident and the run of it that is going.
    pub(super) async fn join_steps(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        id: &str,
        now: i64,
    ) -> Result<(Incident, Option<String>)> {
        self.add_member(tx, id, e, now, None).await?;
        let severity = e.facts.severity.as_deref();
        // `sources` is a JSON array of sender names (slugs: nothing to escape).
        let r = sqlx::query(&format!(
            "UPDATE or_incidents SET last_seen = $2, members = members + 1, updated_at = $2, \
               sources = CASE WHEN sources LIKE $3 THEN sources WHEN sources = '[]' THEN '[\"' || $4 || '\"]' \
                 ELSE substr(sources, 1, length(sources) - 1) || ',\"' || $4 || '\"]' END, \
               service = COALESCE(service, $5), \
               severity = CASE WHEN severity_rank < $6 THEN $7 ELSE severity END, \
               severity_rank = CASE WHEN severity_rank < $6 THEN $6 ELSE severity_rank END \
             WHERE id = $1 RETURNING {COLS}, \
               (SELECT COALESCE(r.run_id, r.event_id) FROM or_incident_runs r WHERE r.incident_id = $1 \
                  AND r.status IN ('starting', 'running') LIMIT 1) AS going"
        ))
        .bind(id)
        .bind(now)
        .bind(format!("%\"{}\"%", e.source))
        .bind(&e.source)
        .bind(e.facts.service.as_deref())
        .bind(rank(severity))
        .bind(severity)
        .fetch_one(&mut **tx)
        .await?;
        Ok((row(&r)?, r.try_get("going")?))
    }

    /// What follows a signal opening `incident`: `incident.opened` (when the org subscribes),
    /// and its run, which starts with the incident and this one signal in view.
    pub(super) async fn opened(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        (org, team): (&str, &str),
        incident: Incident,
        subscribed: bool,
        now: i64,
    ) -> Result<Correlation> {
        let data = data_of(&incident);
        if subscribed {
            let opened = Publish {
                org,
                team: Some(team),
                event_type: "incident.opened",
                data: data.clone(),
            };
            publish(tx, opened).await?;
        }
        Ok(Correlation {
            context: Some(Self::first_run_context(data, e, now)),
            incident_id: incident.id,
            opened: true,
            resolved: false,
            plan: RunPlan::Start,
        })
    }

    /// What follows a signal joining `incident`: a resolution may resolve it, `incident.updated`
    /// (and `.resolved`) when the org subscribes, and the run plan (`plan`'s for a fresh signal:
    /// wait for the run that is going, none for a resolution or an incident no longer open, or
    /// start one with every signal no run had).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn joined(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        (org, team): (&str, &str),
        mut incident: Incident,
        going: Option<String>,
        subscribed: bool,
        now: i64,
    ) -> Result<Correlation> {
        let id = incident.id.clone();
        let resolution = e.facts.alert.as_ref().is_some_and(|a| a.resolved);
        let resolved = resolution && self.all_resolved(tx, &id).await?;
        if resolved {
            sqlx::query("UPDATE or_incidents SET status = 'resolved', resolved_at = $2, resolved_by = 'signals', updated_at = $2 WHERE id = $1")
                .bind(&id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            let why = "every alert of the incident resolved";
            note_incident(tx, &id, now, "resolved", Some(why)).await?;
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
            start_run(tx, &id, &e.id, now).await?;
            let context = self.run_context(tx, &id).await?;
            sqlx::query("UPDATE or_incident_members SET seen_by = $2 WHERE incident_id = $1 AND seen_by IS NULL")
                .bind(&id)
                .bind(&e.id)
                .execute(&mut **tx)
                .await?;
            (RunPlan::Start, Some(context))
        };
        Ok(Correlation {
            incident_id: id,
            opened: false,
            resolved,
            plan,
            context,
        })
    }

    /// Completes a correlation from what was found (see [`Found`]).
    pub(super) async fn follow_found(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        scope: (&str, &str),
        found: Found,
        now: i64,
    ) -> Result<Option<Correlation>> {
        Ok(match found {
            Found::Already(id) => {
                let (plan, context) = self.plan(tx, &id, e).await?;
                Some(Correlation {
                    incident_id: id,
                    opened: false,
                    resolved: false,
                    plan,
                    context,
                })
            }
            Found::Nothing => None,
            Found::Opened {
                incident,
                subscribed,
            } => Some(self.opened(tx, e, scope, incident, subscribed, now).await?),
            Found::Joined {
                incident,
                going,
                subscribed,
            } => Some(
                self.joined(tx, e, scope, incident, going, subscribed, now)
                    .await?,
            ),
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
        sqlx::query(
            "INSERT INTO or_incident_members (incident_id, event_id, joined_at, source, event_type, correlation_key, \
               service, severity, alert_key, alert_resolved, seen_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
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
        // The incident's keys, once each (what correlation looks signals up by).
        let alert = e.facts.alert.as_ref().map(|a| a.key.as_str());
        for (kind, key) in [
            ("alert", alert),
            ("correlation", Some(e.correlation_key.as_str())),
        ] {
            if let Some(key) = key.filter(|k| !k.is_empty()) {
                sqlx::query(
                    "INSERT INTO or_incident_keys (incident_id, kind, key_value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(kind)
                .bind(key)
                .execute(&mut **tx)
                .await?;
            }
        }
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

/// Gives the keys incident `from` was found by to `into` (a merge).
pub(super) async fn move_keys(
    tx: &mut Transaction<'static, Any>,
    into: &str,
    from: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO or_incident_keys (incident_id, kind, key_value) SELECT $1, kind, key_value FROM or_incident_keys \
         WHERE incident_id = $2 ON CONFLICT DO NOTHING",
    )
    .bind(into)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM or_incident_keys WHERE incident_id = $1")
        .bind(from)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
