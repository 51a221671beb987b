//! Correlation (ADR 0012): each routed event of a team opens an incident or joins the open one it
//! matches, under a per-team lock (a PostgreSQL transaction advisory lock; SQLite's single
//! writer), so two signals of one incident dispatched at once never open two incidents.
//!
//! Matching, first hit wins: an open incident that already has the signal's alert (the same
//! PagerDuty incident, the same Alertmanager group) or correlation key, whatever its age; then the
//! open incident of the same group key (the `group_by` values) whose last signal is within the
//! window; a signal with no group key joins the team's most recent open incident within the
//! window. A resolved incident never takes a signal: a new one opens and links to it. A
//! resolution that matches no open incident opens nothing (resolved alerts never count).
//!
//! The run plan is decided in the same transaction (`incidents::RunPlan`), and the incident's
//! runs are kept by the event that starts each, so a run that ends before its dispatch is settled
//! is still known.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};
use switchyard_common::db::Backend;
use switchyard_common::error::Result;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::Publish;
use switchyard_common::time::now_ms;

use super::Store;
use super::incidents::{incident_data, note_incident};
use super::outbound::publish;
use crate::incidents::{Rules, RunPlan};
use crate::sources::facts::rank;
use crate::store::Claimed;

/// What correlating one event did.
#[derive(Debug, Clone)]
pub struct Correlation {
    pub incident_id: String,
    pub opened: bool,
    /// This signal resolved the incident.
    pub resolved: bool,
    pub plan: RunPlan,
    /// The incident as a starting run's trigger carries it (with `plan == Start`).
    pub context: Option<Value>,
}

pub(super) async fn lock_team(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    org: &str,
    team: &str,
) -> Result<()> {
    if backend == Backend::Postgres {
        let digest = Sha256::digest(format!("incidents/{org}/{team}").as_bytes());
        let key = i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(super) async fn one(
    tx: &mut Transaction<'static, Any>,
    sql: &str,
    binds: &[&str],
    n: Option<i64>,
) -> Result<Option<String>> {
    let mut q = sqlx::query_scalar::<_, String>(sql);
    for b in binds {
        q = q.bind(*b);
    }
    if let Some(n) = n {
        q = q.bind(n);
    }
    Ok(q.fetch_optional(&mut **tx).await?)
}

impl Store {
    /// Puts a routed event into its incident (see the module's description). `None`: a
    /// resolution of no open incident, which opens nothing.
    pub async fn correlate(
        &self,
        e: &Claimed,
        org: &str,
        team: &str,
        rules: &Rules,
    ) -> Result<Option<Correlation>> {
        let (_g, mut tx) = self.begin().await?;
        lock_team(&mut tx, self.db.backend, org, team).await?;
        let now = now_ms();
        // A repeated dispatch of an event already correlated.
        if let Some(id) = one(
            &mut tx,
            "SELECT incident_id FROM or_events WHERE id = $1 AND incident_id IS NOT NULL",
            &[&e.id],
            None,
        )
        .await?
        {
            let (plan, context) = self.plan(&mut tx, &id, e).await?;
            tx.commit().await?;
            return Ok(Some(Correlation {
                incident_id: id,
                opened: false,
                resolved: false,
                plan,
                context,
            }));
        }
        let alert_key = e.facts.alert.as_ref().map(|a| a.key.as_str()).unwrap_or("");
        let resolution = e.facts.alert.as_ref().is_some_and(|a| a.resolved);
        // Each through its own index: an incident may have thousands of members.
        let mut found = None;
        for (column, value) in [
            ("alert_key", alert_key),
            ("correlation_key", e.correlation_key.as_str()),
        ] {
            if found.is_some() || value.is_empty() {
                continue;
            }
            found = one(
                &mut tx,
                &format!(
                    "SELECT i.id FROM or_incident_members m JOIN or_incidents i ON i.id = m.incident_id \
                     WHERE m.{column} = $3 AND i.org_id = $1 AND i.team_id = $2 AND i.status = 'open' \
                     ORDER BY i.last_seen DESC LIMIT 1"
                ),
                &[org, team, value],
                None,
            )
            .await?;
        }
        if found.is_none() && resolution {
            tx.commit().await?;
            return Ok(None);
        }
        let group = rules.group_key(&e.source, &e.facts);
        let cutoff = now - rules.window_ms;
        if found.is_none() {
            found = match &group {
                Some(k) => one(&mut tx,
                    "SELECT id FROM or_incidents WHERE org_id = $1 AND team_id = $2 AND status = 'open' AND group_key = $3 \
                       AND last_seen >= $4 ORDER BY last_seen DESC LIMIT 1",
                    &[org, team, k], Some(cutoff)).await?,
                None => one(&mut tx,
                    "SELECT id FROM or_incidents WHERE org_id = $1 AND team_id = $2 AND status = 'open' \
                       AND last_seen >= $3 ORDER BY last_seen DESC LIMIT 1",
                    &[org, team], Some(cutoff)).await?,
            };
        }
        let opened = found.is_none();
        let id = match found {
            Some(id) => id,
            None => {
                self.open_incident(
                    &mut tx,
                    e,
                    org,
                    team,
                    group.as_deref().unwrap_or(""),
                    cutoff,
                    now,
                )
                .await?
            }
        };
        sqlx::query(
            "INSERT INTO or_incident_members (incident_id, event_id, joined_at, source, event_type, correlation_key, service, \
               severity, alert_key, alert_resolved) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(&e.id)
        .bind(now)
        .bind(&e.source)
        .bind(&e.event_type)
        .bind(&e.correlation_key)
        .bind(e.facts.service.as_deref())
        .bind(e.facts.severity.as_deref())
        .bind(e.facts.alert.as_ref().map(|a| a.key.as_str()))
        .bind(e.facts.alert.as_ref().map(|a| i64::from(a.resolved)))
        .execute(&mut *tx)
        .await?;
        self.absorb(&mut tx, &id, e, now).await?;
        sqlx::query("UPDATE or_events SET incident_id = $2 WHERE id = $1")
            .bind(&e.id)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        if opened {
            let detail = format!("{} {} (event {})", e.source, e.event_type, e.id);
            note_incident(&mut tx, &id, now, "opened", Some(&detail)).await?;
        }
        let resolved = resolution && self.all_resolved(&mut tx, &id).await?;
        if resolved {
            sqlx::query("UPDATE or_incidents SET status = 'resolved', resolved_at = $2, resolved_by = 'signals', updated_at = $2 WHERE id = $1")
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            note_incident(
                &mut tx,
                &id,
                now,
                "resolved",
                Some("every alert of the incident resolved"),
            )
            .await?;
        }
        let data = incident_data(&mut tx, &id).await?;
        let types: &[&'static str] = match (opened, resolved) {
            (true, false) => &["incident.opened"],
            (true, true) => &["incident.opened", "incident.resolved"],
            (false, false) => &["incident.updated"],
            (false, true) => &["incident.updated", "incident.resolved"],
        };
        for t in types {
            publish(
                &mut tx,
                Publish {
                    org,
                    team: Some(team),
                    event_type: t,
                    data: data.clone(),
                },
            )
            .await?;
        }
        let (plan, context) = self.plan(&mut tx, &id, e).await?;
        tx.commit().await?;
        Ok(Some(Correlation {
            incident_id: id,
            opened,
            resolved,
            plan,
            context,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn open_incident(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        org: &str,
        team: &str,
        group: &str,
        cutoff: i64,
        now: i64,
    ) -> Result<String> {
        // The incident this one follows: the same group's, resolved within the window.
        let previous = one(tx,
            "SELECT id FROM or_incidents WHERE org_id = $1 AND team_id = $2 AND status = 'resolved' AND group_key = $3 \
               AND resolved_at >= $4 ORDER BY resolved_at DESC LIMIT 1",
            &[org, team, group], Some(cutoff)).await?;
        let id = new_id();
        let title = match &e.facts.service {
            Some(s) => format!("{s}: {} {}", e.source, e.event_type),
            None => format!("{}: {} {}", team, e.source, e.event_type),
        };
        sqlx::query(
            "INSERT INTO or_incidents (id, org_id, team_id, status, group_key, title, service, severity, severity_rank, sources, \
               members, first_seen, last_seen, previous_id, created_at, updated_at) \
             VALUES ($1, $2, $3, 'open', $4, $5, NULL, NULL, 0, '[]', 0, $6, $6, $7, $6, $6)",
        )
        .bind(&id)
        .bind(org)
        .bind(team)
        .bind(group)
        .bind(&title)
        .bind(now)
        .bind(previous.as_deref())
        .execute(&mut **tx)
        .await?;
        if let Some(p) = previous {
            note_incident(
                tx,
                &id,
                now,
                "follows",
                Some(&format!("incident {p}, resolved within the window")),
            )
            .await?;
        }
        Ok(id)
    }

    /// The incident takes a member's facts: last seen, count, the highest severity, its sources.
    async fn absorb(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
        e: &Claimed,
        now: i64,
    ) -> Result<()> {
        let r = sqlx::query("SELECT sources, severity_rank FROM or_incidents WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
        let mut sources: Vec<String> =
            serde_json::from_str(&r.try_get::<String, _>("sources")?).unwrap_or_default();
        if !sources.contains(&e.source) {
            sources.push(e.source.clone());
        }
        let higher = rank(e.facts.severity.as_deref()) > r.try_get::<i64, _>("severity_rank")?;
        sqlx::query(
            "UPDATE or_incidents SET last_seen = $2, members = members + 1, sources = $3, updated_at = $2, \
               service = COALESCE(service, $4), \
               severity = CASE WHEN $5 = 1 THEN $6 ELSE severity END, \
               severity_rank = CASE WHEN $5 = 1 THEN $7 ELSE severity_rank END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(json!(sources).to_string())
        .bind(e.facts.service.as_deref())
        .bind(i64::from(higher))
        .bind(e.facts.severity.as_deref())
        .bind(rank(e.facts.severity.as_deref()))
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

/// Helpers for the correlation benchmark (`benches/outbound.rs`), with the `testing` feature only.
#[cfg(feature = "testing")]
impl Store {
    /// Stores a claimed-looking event as dispatching, so correlation can record its incident.
    pub async fn bench_event(&self, e: &Claimed) -> Result<()> {
        let _g = self.write_guard().await;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO or_events (id, integration_id, delivery_id, org_id, source, event_type, correlation_key, identifiers, \
               payload, status, next_attempt_at, received_at, updated_at, facts) \
             VALUES ($1, $2, $1, $3, $4, $5, $6, '[]', 'null', 'dispatching', $7, $7, $7, $8)",
        )
        .bind(&e.id)
        .bind(&e.integration_id)
        .bind(e.org_id.as_deref())
        .bind(&e.source)
        .bind(&e.event_type)
        .bind(&e.correlation_key)
        .bind(now)
        .bind(serde_json::to_string(&e.facts).unwrap_or_default())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// One single-row insert in a transaction: the floor a correlation is compared with.
    pub async fn bench_insert_row(&self) -> Result<()> {
        let (_g, mut tx) = self.begin().await?;
        sqlx::query("INSERT INTO or_incident_timeline (id, incident_id, at, kind) VALUES ($1, 'bench', $2, 'bench')")
            .bind(switchyard_common::ids::new_id())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
