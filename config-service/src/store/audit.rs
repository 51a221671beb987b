//! Reading and verifying the audit log.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    Actor, Arg, AuditEntry, AuditVerification, EntryFields, Filter, PLATFORM_CHAIN, Page,
    RelayedEntry, Store, entry_hash, opt_json_col, page_limit, ts,
};
use crate::error::{Error, Result};

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

const AUDIT_COLS: &str = "org_id, seq, at, actor, action, target, before_state, after_state, request_id, prev_hash, hash";

fn audit_row(r: &AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        org_id: r.try_get("org_id")?,
        seq: r.try_get("seq")?,
        at: ts(r, "at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        before: opt_json_col(r, "before_state")?,
        after: opt_json_col(r, "after_state")?,
        request_id: r.try_get("request_id")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// Filters for the audit log; all optional.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Milliseconds since the epoch, inclusive.
    pub since: Option<i64>,
    /// Milliseconds since the epoch, exclusive.
    pub until: Option<i64>,
    /// Entries older than this sequence number (from `next_cursor`).
    pub cursor: Option<i64>,
    pub limit: Option<u32>,
}

impl Store {
    /// Appends entries another service wrote to its outbox (in the same transaction as the
    /// action), each to its org's chain, or the platform chain without an org (or when the org no
    /// longer exists). An entry already appended (same `source_id`) is skipped, so a relay that
    /// retries after a crash appends each once. Returns how many were new.
    pub async fn append_relayed(&self, entries: &[RelayedEntry]) -> Result<usize> {
        let mut appended = 0;
        for e in entries {
            let seen: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM cs_audit WHERE source_id = $1")
                    .bind(&e.source_id)
                    .fetch_optional(&self.db.pool)
                    .await?;
            if seen.is_some() {
                continue;
            }
            let actor = Actor {
                id: e.actor.clone(),
                subject: e.actor.clone(),
                request_id: e.request_id.clone(),
            };
            let chain = e.org_id.as_deref().unwrap_or(PLATFORM_CHAIN);
            let mut otx = match self.org_tx(chain, &actor).await {
                Ok(otx) => otx,
                Err(Error::NotFound(_)) => self.org_tx(PLATFORM_CHAIN, &actor).await?,
                Err(err) => return Err(err),
            };
            otx.source_id = Some(e.source_id.clone());
            match otx
                .audit(&e.action, &e.target, e.before.as_ref(), e.after.as_ref())
                .await
            {
                Ok(()) => {}
                // Another relay appended it a moment ago (dropping the transaction rolls back).
                Err(Error::Database(err)) if is_unique_violation(&err) => continue,
                Err(err) => return Err(err),
            }
            otx.commit().await?;
            appended += 1;
        }
        Ok(appended)
    }

    /// Audit entries, newest first.
    pub async fn list_audit(&self, org: &str, q: &AuditQuery) -> Result<Page<AuditEntry>> {
        let mut f = Filter::default();
        f.push("org_id = $?", Arg::Text(org.to_owned()));
        if let Some(a) = &q.actor {
            f.push("actor = $?", Arg::Text(a.clone()));
        }
        if let Some(a) = &q.action {
            f.push("action = $?", Arg::Text(a.clone()));
        }
        if let Some(t) = &q.target {
            f.push("target = $?", Arg::Text(t.clone()));
        }
        if let Some(s) = q.since {
            f.push("at >= $?", Arg::Int(s));
        }
        if let Some(u) = q.until {
            f.push("at < $?", Arg::Int(u));
        }
        if let Some(c) = q.cursor {
            f.push("seq < $?", Arg::Int(c));
        }
        let limit = page_limit(q.limit, 50, 500);
        let sql = format!(
            "SELECT {AUDIT_COLS} FROM cs_audit WHERE {} ORDER BY seq DESC LIMIT {}",
            f.sql(),
            limit + 1
        );
        let rows = f.bind(sqlx::query(&sql)).fetch_all(&self.db.pool).await?;
        let mut items = rows.iter().map(audit_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Re-computes the org's hash chain: a modified entry breaks its own hash, a removed one
    /// breaks the sequence or the next entry's link, and removing the newest entries no longer
    /// matches the head kept on the org.
    pub async fn verify_audit(&self, org: &str) -> Result<AuditVerification> {
        let sql = if org == PLATFORM_CHAIN {
            "SELECT audit_seq, audit_head FROM cs_audit_heads WHERE chain = $1"
        } else {
            "SELECT audit_seq, audit_head FROM cs_orgs WHERE id = $1"
        };
        let head = sqlx::query(sql)
            .bind(org)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| Error::not_found(format!("organisation {org}")))?;
        let head_seq: i64 = head.try_get("audit_seq")?;
        let head_hash: String = head.try_get("audit_head")?;
        let bad = |seq: i64, entries: i64, problem: String| AuditVerification {
            org_id: org.to_owned(),
            ok: false,
            entries,
            first_bad_seq: Some(seq),
            problem: Some(problem),
        };
        let mut expected_seq = 1;
        let mut prev = String::new();
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLS} FROM cs_audit WHERE org_id = $1 AND seq >= $2 ORDER BY seq LIMIT 1000"
            ))
            .bind(org)
            .bind(expected_seq)
            .fetch_all(&self.db.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                let checked = expected_seq - 1;
                if seq != expected_seq {
                    return Ok(bad(
                        expected_seq,
                        checked,
                        format!("entry {expected_seq} is missing"),
                    ));
                }
                let before: Option<String> = r.try_get("before_state")?;
                let after: Option<String> = r.try_get("after_state")?;
                let request_id: Option<String> = r.try_get("request_id")?;
                let prev_hash: String = r.try_get("prev_hash")?;
                let hash: String = r.try_get("hash")?;
                let actor: String = r.try_get("actor")?;
                let action: String = r.try_get("action")?;
                let target: String = r.try_get("target")?;
                if prev_hash != prev {
                    return Ok(bad(
                        seq,
                        checked,
                        format!("entry {seq} does not link to entry {}", seq - 1),
                    ));
                }
                let computed = entry_hash(&EntryFields {
                    org,
                    seq,
                    at: r.try_get("at")?,
                    actor: &actor,
                    action: &action,
                    target: &target,
                    before: before.as_deref(),
                    after: after.as_deref(),
                    request_id: request_id.as_deref(),
                    prev_hash: &prev_hash,
                });
                if computed != hash {
                    return Ok(bad(seq, checked, format!("entry {seq} has been modified")));
                }
                prev = hash;
                expected_seq += 1;
            }
        }
        let entries = expected_seq - 1;
        if entries != head_seq || prev != head_hash {
            return Ok(bad(
                entries + 1,
                entries,
                format!(
                    "the log ends at entry {entries} but the org's head is entry {head_seq}: newer entries were removed"
                ),
            ));
        }
        Ok(AuditVerification {
            org_id: org.to_owned(),
            ok: true,
            entries,
            first_bad_seq: None,
            problem: None,
        })
    }
}
