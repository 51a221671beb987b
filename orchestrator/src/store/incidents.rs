//! Incidents as the API shows and changes them: listing, one incident with its members, runs and
//! timeline, resolving by hand, reopening within the grace period, and merging two. Correlation
//! itself is [`super::correlate`].

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::outbox::Publish;
use switchyard_common::time::{now_ms, rfc3339};
use utoipa::ToSchema;

use super::Store;
use super::audit::note;
use super::outbound::publish;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Incident {
    pub id: String,
    pub org_id: String,
    pub team_id: String,
    /// `open`, `resolved`, or `merged` (into `merged_into`).
    pub status: String,
    pub title: Option<String>,
    pub service: Option<String>,
    /// The highest of its members': `critical`, `high`, `medium`, `low`, `info`.
    pub severity: Option<String>,
    /// The senders of its signals.
    pub sources: Vec<String>,
    /// Signals so far.
    pub members: i64,
    /// The `group_by` values that opened it (`service=checkout`), empty when it had none.
    pub group_key: String,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved_at: Option<String>,
    /// `signals` (every alert resolved) or who resolved it.
    pub resolved_by: Option<String>,
    /// The resolved incident of the same group this one follows.
    pub previous_id: Option<String>,
    pub merged_into: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    pub event_id: String,
    pub joined_at: String,
    pub source: String,
    pub event_type: String,
    pub service: Option<String>,
    pub severity: Option<String>,
    /// The sender's alert this signal reports on; `null` for signals that cannot resolve.
    pub alert: Option<String>,
    pub resolved: Option<bool>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IncidentRun {
    /// `null` until the agent-runner has taken the run.
    pub run_id: Option<String>,
    /// The signal that started it.
    pub event_id: String,
    pub started_at: String,
    /// `starting`, `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IncidentEntry {
    pub at: String,
    /// `opened`, `follows`, `run_running`, `run_succeeded`, `run_cancelled`, `follow_up`,
    /// `run_failed`, `resolved`, `reopened`, `merged` (signals are its `member_events`).
    pub kind: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    pub member_events: Vec<Member>,
    pub runs: Vec<IncidentRun>,
    pub timeline: Vec<IncidentEntry>,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub team: Option<String>,
    pub status: Option<String>,
    /// Last seen at or after (ms).
    pub since: Option<i64>,
    /// Older than this id (the previous page's `next_cursor`).
    pub cursor: Option<String>,
    pub limit: i64,
}

pub(super) const COLS: &str = "id, org_id, team_id, status, title, service, severity, sources, members, group_key, first_seen, \
    last_seen, resolved_at, resolved_by, previous_id, merged_into";

pub(super) fn row(r: &AnyRow) -> Result<Incident> {
    Ok(Incident {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        team_id: r.try_get("team_id")?,
        status: r.try_get("status")?,
        title: r.try_get("title")?,
        service: r.try_get("service")?,
        severity: r.try_get("severity")?,
        sources: serde_json::from_str(&r.try_get::<String, _>("sources")?).unwrap_or_default(),
        members: r.try_get("members")?,
        group_key: r.try_get("group_key")?,
        first_seen: rfc3339(r.try_get("first_seen")?),
        last_seen: rfc3339(r.try_get("last_seen")?),
        resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(rfc3339),
        resolved_by: r.try_get("resolved_by")?,
        previous_id: r.try_get("previous_id")?,
        merged_into: r.try_get("merged_into")?,
    })
}

/// A member row (`event_id, joined_at, source, event_type, service, severity, alert_key,
/// alert_resolved`).
pub(super) fn member(r: &AnyRow) -> Result<Member> {
    Ok(Member {
        event_id: r.try_get("event_id")?,
        joined_at: rfc3339(r.try_get("joined_at")?),
        source: r.try_get("source")?,
        event_type: r.try_get("event_type")?,
        service: r.try_get("service")?,
        severity: r.try_get("severity")?,
        alert: r.try_get("alert_key")?,
        resolved: r
            .try_get::<Option<i64>, _>("alert_resolved")?
            .map(|x| x == 1),
    })
}

/// Adds an entry to an incident's timeline.
pub(super) async fn note_incident(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    at: i64,
    kind: &str,
    detail: Option<&str>,
) -> Result<()> {
    super::append_entry(tx, super::Timeline::Incident, id, at, kind, detail).await
}

/// The incident as its outbound events (`incident.*`) carry it.
pub(super) async fn incident_data(tx: &mut Transaction<'static, Any>, id: &str) -> Result<Value> {
    let r = sqlx::query(&format!("SELECT {COLS} FROM or_incidents WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(data_of(&row(&r)?))
}

/// [`incident_data`] of an incident already read.
pub(super) fn data_of(i: &Incident) -> Value {
    json!({"incident_id": i.id, "team_id": i.team_id, "status": i.status, "title": i.title, "service": i.service,
        "severity": i.severity, "sources": i.sources, "members": i.members, "first_seen": i.first_seen,
        "last_seen": i.last_seen, "resolved_at": i.resolved_at, "resolved_by": i.resolved_by,
        "previous_id": i.previous_id, "merged_into": i.merged_into})
}

impl Store {
    /// An org's incidents, most recently seen first.
    pub async fn list_incidents(
        &self,
        org: &str,
        q: &IncidentQuery,
    ) -> Result<(Vec<Incident>, Option<String>)> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM or_incidents WHERE org_id = $1 AND ($2 = '' OR team_id = $2) AND ($3 = '' OR status = $3) \
               AND last_seen >= $4 AND ($5 = '' OR id < $5) ORDER BY id DESC LIMIT $6"
        ))
        .bind(org)
        .bind(q.team.as_deref().unwrap_or(""))
        .bind(q.status.as_deref().unwrap_or(""))
        .bind(q.since.unwrap_or(0))
        .bind(q.cursor.as_deref().unwrap_or(""))
        .bind(q.limit + 1)
        .fetch_all(&self.db.pool)
        .await?;
        let mut items = rows.iter().map(row).collect::<Result<Vec<_>>>()?;
        let next = if items.len() as i64 > q.limit {
            items.truncate(q.limit as usize);
            items.last().map(|i| i.id.clone())
        } else {
            None
        };
        Ok((items, next))
    }

    pub async fn get_incident(&self, org: &str, id: &str) -> Result<Incident> {
        let r = sqlx::query(&format!(
            "SELECT {COLS} FROM or_incidents WHERE id = $1 AND org_id = $2"
        ))
        .bind(id)
        .bind(org)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("incident {id}")))?;
        row(&r)
    }

    /// One incident with its members, runs and timeline (oldest first).
    pub async fn incident_detail(&self, org: &str, id: &str) -> Result<IncidentDetail> {
        let incident = self.get_incident(org, id).await?;
        let members = sqlx::query(
            "SELECT event_id, joined_at, source, event_type, service, severity, alert_key, alert_resolved \
             FROM or_incident_members WHERE incident_id = $1 ORDER BY joined_at, event_id",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(member)
        .collect::<Result<Vec<_>>>()?;
        let runs = sqlx::query("SELECT run_id, event_id, started_at, status, summary FROM or_incident_runs WHERE incident_id = $1 ORDER BY started_at")
            .bind(id)
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(IncidentRun {
                    run_id: r.try_get("run_id")?,
                    event_id: r.try_get("event_id")?,
                    started_at: rfc3339(r.try_get("started_at")?),
                    status: r.try_get("status")?,
                    summary: r.try_get("summary")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let timeline = sqlx::query("SELECT at, kind, detail FROM or_incident_timeline WHERE incident_id = $1 ORDER BY at, id")
            .bind(id)
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(IncidentEntry {
                    at: rfc3339(r.try_get("at")?),
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(IncidentDetail {
            incident,
            member_events: members,
            runs,
            timeline,
        })
    }

    /// Resolves an open incident by hand. 409 unless it is open.
    pub async fn resolve_incident(
        &self,
        by: &Actor,
        org: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<Incident> {
        let (_g, mut tx) = self.begin().await?;
        let now = now_ms();
        let n = sqlx::query("UPDATE or_incidents SET status = 'resolved', resolved_at = $3, resolved_by = $4, updated_at = $3 \
                             WHERE id = $1 AND org_id = $2 AND status = 'open'")
            .bind(id)
            .bind(org)
            .bind(now)
            .bind(by.audit_name())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            let current = self.get_incident(org, id).await?;
            return Err(Error::conflict(
                "incident-not-open",
                format!("incident {id} is {}, not open", current.status),
            ));
        }
        let detail = match reason {
            Some(r) => format!("by {}: {r}", by.audit_name()),
            None => format!("by {}", by.audit_name()),
        };
        note_incident(&mut tx, id, now, "resolved", Some(&detail)).await?;
        self.changed(
            &mut tx,
            by,
            org,
            id,
            "incident.resolved",
            json!({"reason": reason}),
        )
        .await?;
        tx.commit().await?;
        self.get_incident(org, id).await
    }

    /// Reopens a resolved incident within `grace_ms` of its resolution (by hand only: a new
    /// signal never reopens one). 409 otherwise.
    pub async fn reopen_incident(
        &self,
        by: &Actor,
        org: &str,
        id: &str,
        grace_ms: i64,
    ) -> Result<Incident> {
        let (_g, mut tx) = self.begin().await?;
        let now = now_ms();
        let n = sqlx::query("UPDATE or_incidents SET status = 'open', resolved_at = NULL, resolved_by = NULL, last_seen = $3, updated_at = $3 \
                             WHERE id = $1 AND org_id = $2 AND status = 'resolved' AND resolved_at >= $4")
            .bind(id)
            .bind(org)
            .bind(now)
            .bind(now - grace_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            let current = self.get_incident(org, id).await?;
            let why = if current.status == "resolved" {
                format!(
                    "incident {id} resolved more than {} s ago: a new signal opens a new incident",
                    grace_ms / 1000
                )
            } else {
                format!("incident {id} is {}, not resolved", current.status)
            };
            return Err(Error::conflict("incident-not-reopenable", why));
        }
        note_incident(
            &mut tx,
            id,
            now,
            "reopened",
            Some(&format!("by {}", by.audit_name())),
        )
        .await?;
        self.changed(&mut tx, by, org, id, "incident.updated", json!({}))
            .await?;
        tx.commit().await?;
        self.get_incident(org, id).await
    }

    /// Moves every member and run of `from` into `into` (both of one team, neither merged
    /// already); `from` becomes `merged`. Answers `into`.
    pub async fn merge_incidents(
        &self,
        by: &Actor,
        org: &str,
        into: &str,
        from: &str,
    ) -> Result<Incident> {
        if into == from {
            return Err(Error::invalid(
                "/from",
                "an incident cannot be merged into itself",
            ));
        }
        let (_g, mut tx) = self.begin().await?;
        let a = self.get_incident(org, into).await?;
        let b = self.get_incident(org, from).await?;
        if a.team_id != b.team_id {
            return Err(Error::invalid(
                "/from",
                format!(
                    "incident {from} is team {}'s, not {}'s",
                    b.team_id, a.team_id
                ),
            ));
        }
        for i in [&a, &b] {
            if i.status == "merged" {
                return Err(Error::conflict(
                    "incident-merged",
                    format!(
                        "incident {} was merged into {}",
                        i.id,
                        i.merged_into.clone().unwrap_or_default()
                    ),
                ));
            }
        }
        let now = now_ms();
        for table in [
            "or_incident_members",
            "or_incident_runs",
            "or_incident_timeline",
        ] {
            sqlx::query(&format!(
                "UPDATE {table} SET incident_id = $1 WHERE incident_id = $2"
            ))
            .bind(into)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        }
        super::incident_members::move_keys(&mut tx, into, from).await?;
        let mut sources = a.sources.clone();
        sources.extend(b.sources.iter().filter(|s| !a.sources.contains(s)).cloned());
        sqlx::query(
            "UPDATE or_incidents SET members = members + $2, sources = $3, \
               first_seen = CASE WHEN first_seen < $4 THEN first_seen ELSE $4 END, \
               last_seen = CASE WHEN last_seen > $5 THEN last_seen ELSE $5 END, \
               severity = CASE WHEN severity_rank >= $6 THEN severity ELSE $7 END, \
               severity_rank = CASE WHEN severity_rank >= $6 THEN severity_rank ELSE $6 END, updated_at = $8 WHERE id = $1",
        )
        .bind(into)
        .bind(b.members)
        .bind(json!(sources).to_string())
        .bind(switchyard_common::time::parse_rfc3339(&b.first_seen).unwrap_or(now))
        .bind(switchyard_common::time::parse_rfc3339(&b.last_seen).unwrap_or(now))
        .bind(crate::sources::facts::rank(b.severity.as_deref()))
        .bind(b.severity.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE or_incidents SET status = 'merged', merged_into = $2, members = 0, updated_at = $3 WHERE id = $1")
            .bind(from)
            .bind(into)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        note_incident(
            &mut tx,
            into,
            now,
            "merged",
            Some(&format!("incident {from}, by {}", by.audit_name())),
        )
        .await?;
        self.changed(
            &mut tx,
            by,
            org,
            into,
            "incident.updated",
            json!({"merged": from}),
        )
        .await?;
        tx.commit().await?;
        self.get_incident(org, into).await
    }

    /// Audits a change by hand and publishes it.
    async fn changed(
        &self,
        tx: &mut Transaction<'static, Any>,
        by: &Actor,
        org: &str,
        id: &str,
        event_type: &'static str,
        extra: Value,
    ) -> Result<()> {
        let data = incident_data(tx, id).await?;
        let team = data["team_id"].as_str().unwrap_or_default().to_owned();
        let action = match event_type {
            "incident.resolved" => "incident.resolved",
            _ if extra.get("merged").is_some() => "incident.merged",
            _ => "incident.reopened",
        };
        let after = json!({"status": data["status"], "detail": extra});
        note(
            tx,
            Some(org),
            by,
            action,
            &format!("incident/{id}"),
            None,
            Some(&after),
        )
        .await?;
        publish(
            tx,
            Publish {
                org,
                team: Some(&team),
                event_type,
                data,
            },
        )
        .await?;
        Ok(())
    }
}
