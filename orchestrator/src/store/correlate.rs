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
//!
//! On PostgreSQL the lock, the lookups and the write are one call of the `or_correlate` function
//! (migration 0021): a correlation is three round trips, as many as a single-row insert in its
//! own transaction. SQLite, in process, runs the same steps from here and `incident_members`.
//! The incident tests hold both to the same behaviour.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};
use switchyard_common::db::Backend;
use switchyard_common::error::Result;
use switchyard_common::ids::new_id;
use switchyard_common::time::now_ms;

use super::incident_members::{opened_detail, title};
use super::incidents::{Incident, row};
use super::{Batch, Store};
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

/// What correlation found and wrote, for [`Store::follow_found`] to complete.
#[derive(Debug)]
pub(super) enum Found {
    /// The event joined this incident at an earlier dispatch: nothing was written.
    Already(String),
    /// A resolution that matches no open incident: nothing was written.
    Nothing,
    /// A new incident, with the event as its first member and its run starting.
    Opened {
        incident: Incident,
        subscribed: bool,
    },
    /// The event joined the incident, which took its facts; `going`: its run that is going.
    Joined {
        incident: Incident,
        going: Option<String>,
        subscribed: bool,
    },
}

/// What a signal may join ([`Store::candidates`]; SQLite).
#[derive(Debug, Default)]
struct Candidates {
    /// The incident this event joined at an earlier dispatch.
    already: Option<String>,
    /// The open incident with its alert, or else its correlation key.
    by_signal: Option<String>,
    /// The open incident of its group within the window.
    by_group: Option<String>,
    /// The resolved incident of its group (within the window) a new incident follows.
    previous: Option<String>,
    /// The org has an enabled subscription: `incident.*` events are published (none are kept
    /// for an org nobody subscribes to, as `publish` decides).
    subscribed: bool,
}

/// The PostgreSQL advisory lock a team's correlations (and its runs' ends) take.
fn team_lock_key(org: &str, team: &str) -> i64 {
    let digest = Sha256::digest(format!("incidents/{org}/{team}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Takes the team's lock in `tx` (PostgreSQL; SQLite's single writer already excludes others).
pub(super) async fn lock_team(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    org: &str,
    team: &str,
) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(team_lock_key(org, team))
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
    /// Puts a routed event into its incident (see the module's description), in a transaction
    /// of its own. `None`: a resolution of no open incident, which opens nothing.
    pub async fn correlate(
        &self,
        e: &Claimed,
        org: &str,
        team: &str,
        rules: &Rules,
    ) -> Result<Option<Correlation>> {
        let mut batch = self.batch().await?;
        let correlation = self.correlate_in(&mut batch, e, org, team, rules).await?;
        self.commit(batch).await?;
        Ok(correlation)
    }

    /// [`Store::correlate`] in `batch`, which then holds the team's lock until it ends.
    pub async fn correlate_in(
        &self,
        batch: &mut Batch,
        e: &Claimed,
        org: &str,
        team: &str,
        rules: &Rules,
    ) -> Result<Option<Correlation>> {
        let now = now_ms();
        let group = rules.group_key(&e.source, &e.facts);
        let cutoff = now - rules.window_ms;
        let tx = &mut batch.tx;
        let found = match self.db.backend {
            Backend::Postgres => {
                self.correlate_in_db(tx, e, (org, team), group.as_deref(), cutoff, now)
                    .await?
            }
            Backend::Sqlite => {
                self.correlate_steps(tx, e, (org, team), group.as_deref(), cutoff, now)
                    .await?
            }
        };
        self.follow_found(tx, e, (org, team), found, now).await
    }

    /// PostgreSQL: the team's lock, the lookups and the write in one call of `or_correlate`
    /// (migration 0021), whose every statement sees what committed before the lock was taken.
    async fn correlate_in_db(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        (org, team): (&str, &str),
        group: Option<&str>,
        cutoff: i64,
        now: i64,
    ) -> Result<Found> {
        let alert = e.facts.alert.as_ref();
        let r = sqlx::query(
            "SELECT outcome, going, subscribed, (inc).* FROM or_correlate($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
               $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        )
        .bind(team_lock_key(org, team))
        .bind(&e.id)
        .bind(org)
        .bind(team)
        .bind(&e.source)
        .bind(&e.event_type)
        .bind(&e.correlation_key)
        .bind(e.facts.service.as_deref())
        .bind(e.facts.severity.as_deref())
        .bind(rank(e.facts.severity.as_deref()))
        .bind(alert.map(|a| a.key.as_str()))
        .bind(alert.map(|a| i64::from(a.resolved)))
        .bind(group)
        .bind(cutoff)
        .bind(now)
        .bind(new_id())
        .bind(title(e, team))
        .bind(new_id())
        .bind(opened_detail(e))
        .bind(new_id())
        .fetch_one(&mut **tx)
        .await?;
        let subscribed: bool = r.try_get("subscribed")?;
        Ok(match r.try_get::<String, _>("outcome")?.as_str() {
            "already" => Found::Already(r.try_get("id")?),
            "none" => Found::Nothing,
            "opened" => Found::Opened {
                incident: row(&r)?,
                subscribed,
            },
            _ => Found::Joined {
                incident: row(&r)?,
                going: r.try_get("going")?,
                subscribed,
            },
        })
    }

    /// SQLite (one writer: the transaction excludes every other): the lookups in one statement,
    /// then the writes one after another.
    async fn correlate_steps(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        scope: (&str, &str),
        group: Option<&str>,
        cutoff: i64,
        now: i64,
    ) -> Result<Found> {
        let found = self.candidates(tx, e, scope, group, cutoff).await?;
        if let Some(id) = found.already {
            return Ok(Found::Already(id));
        }
        let resolution = e.facts.alert.as_ref().is_some_and(|a| a.resolved);
        // A resolution joins only the incident that has its alert (or correlation key).
        let joining = match (found.by_signal, found.by_group) {
            (Some(id), _) => Some(id),
            (None, _) if resolution => return Ok(Found::Nothing),
            (None, g) => g,
        };
        Ok(match joining {
            Some(id) => {
                let (incident, going) = self.join_steps(tx, e, &id, now).await?;
                Found::Joined {
                    incident,
                    going,
                    subscribed: found.subscribed,
                }
            }
            None => Found::Opened {
                incident: self
                    .open_steps(tx, e, scope, group, found.previous, now)
                    .await?,
                subscribed: found.subscribed,
            },
        })
    }

    /// What the signal may join, read in one statement: the incident this event already joined
    /// (a repeated dispatch); the open incident that has its alert, or else its correlation key,
    /// whatever its age; the open incident of its group within the window (with no group: the
    /// team's latest within the window); and the resolved incident of its group an incident it
    /// opens would follow. Each through its own index: an incident may have thousands of members.
    async fn candidates(
        &self,
        tx: &mut Transaction<'static, Any>,
        e: &Claimed,
        (org, team): (&str, &str),
        group: Option<&str>,
        cutoff: i64,
    ) -> Result<Candidates> {
        let by_key = |p: i64, kind: &str| {
            format!(
                "SELECT * FROM (SELECT CAST({p} AS BIGINT) AS p, i.id AS id FROM or_incident_keys k \
                   JOIN or_incidents i ON i.id = k.incident_id WHERE k.kind = '{kind}' AND k.key_value = ${p} \
                   AND i.org_id = $4 AND i.team_id = $5 AND i.status = 'open' ORDER BY i.last_seen DESC LIMIT 1) q{p}"
            )
        };
        let in_group = if group.is_some() {
            "AND group_key = $6"
        } else {
            "AND $6 = $6"
        };
        let sql = format!(
            "SELECT CAST(0 AS BIGINT) AS p, incident_id AS id FROM or_incident_members WHERE event_id = $3 \
             UNION ALL {} UNION ALL {} \
             UNION ALL SELECT * FROM (SELECT CAST(3 AS BIGINT) AS p, id FROM or_incidents WHERE org_id = $4 AND team_id = $5 \
               AND status = 'open' {in_group} AND last_seen >= $7 ORDER BY last_seen DESC LIMIT 1) q3 \
             UNION ALL SELECT * FROM (SELECT CAST(4 AS BIGINT) AS p, id FROM or_incidents WHERE org_id = $4 AND team_id = $5 \
               AND status = 'resolved' AND group_key = $8 AND resolved_at >= $7 ORDER BY resolved_at DESC LIMIT 1) q4 \
             UNION ALL SELECT * FROM (SELECT CAST(5 AS BIGINT) AS p, id FROM or_subscriptions WHERE org_id = $4 \
               AND enabled = 1 LIMIT 1) q5",
            by_key(1, "alert"),
            by_key(2, "correlation"),
        );
        let rows = sqlx::query(&sql)
            // An empty key compares with nothing (`= NULL`).
            .bind(
                e.facts
                    .alert
                    .as_ref()
                    .map(|a| a.key.as_str())
                    .filter(|k| !k.is_empty()),
            )
            .bind(Some(e.correlation_key.as_str()).filter(|k| !k.is_empty()))
            .bind(&e.id)
            .bind(org)
            .bind(team)
            .bind(group.unwrap_or(""))
            .bind(cutoff)
            .bind(group.unwrap_or(""))
            .fetch_all(&mut **tx)
            .await?;
        let mut c = Candidates::default();
        for r in rows {
            let id: String = r.try_get("id")?;
            match r.try_get::<i64, _>("p")? {
                0 => c.already = Some(id),
                1 => c.by_signal = Some(id),
                2 => c.by_signal = c.by_signal.or(Some(id)),
                3 => c.by_group = Some(id),
                4 => c.previous = Some(id),
                _ => c.subscribed = true,
            }
        }
        Ok(c)
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

    /// Vacuums and gathers the planner's statistics, as autovacuum does in a live database once
    /// tables have grown (a benchmark's freshly seeded tables have not been yet, and autovacuum
    /// would otherwise start on them in the middle of the measurement).
    pub async fn bench_analyze(&self) -> Result<()> {
        let sql = match self.db.backend {
            Backend::Postgres => "VACUUM ANALYZE",
            Backend::Sqlite => "ANALYZE",
        };
        sqlx::query(sql).execute(&self.db.pool).await?;
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
