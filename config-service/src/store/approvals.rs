//! The approval policy (protected paths) and change requests: a write touching a protected path
//! waits for a second person, who approves or rejects it.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_common::ids::new_id;
use switchyard_common::time::{now_ms, rfc3339};

use super::config::{apply_layer, current_layer, propose};
use super::{Actor, ChangeRequest, OrgTx, Policy, Store, json_col, opt_ts, ts};
use crate::error::{Error, Result};

pub(super) const CHANGE_COLS: &str = "id, org_id, node_id, base_version, layer, touched, author, status, created_at, decided_by, decided_at, reason, author_subject, kind";

fn change_row(r: &AnyRow) -> Result<ChangeRequest> {
    let touched: String = r.try_get("touched")?;
    let author: String = r.try_get("author")?;
    let author_subject: Option<String> = r.try_get("author_subject")?;
    Ok(ChangeRequest {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        kind: r.try_get("kind")?,
        author_subject: author_subject.unwrap_or_else(|| author.clone()),
        node_id: r.try_get("node_id")?,
        base_version: r.try_get("base_version")?,
        layer: json_col(r, "layer")?,
        touched: serde_json::from_str(&touched).unwrap_or_default(),
        author,
        status: r.try_get("status")?,
        created_at: ts(r, "created_at")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: opt_ts(r, "decided_at")?,
        reason: r.try_get("reason")?,
    })
}

impl Store {
    pub async fn get_policy(&self, org: &str) -> Result<Policy> {
        let s: Option<String> = sqlx::query_scalar("SELECT policy FROM cs_orgs WHERE id = $1")
            .bind(org)
            .fetch_optional(&self.db.pool)
            .await?;
        let s = s.ok_or_else(|| Error::not_found(format!("organisation {org}")))?;
        Ok(serde_json::from_str(&s).unwrap_or_default())
    }

    /// Sets the approval policy. While the current policy protects anything, changing it is
    /// itself a protected change: it waits for another subject's approval (otherwise one admin
    /// could switch four-eyes off, make the change, and switch it on again).
    pub async fn put_policy(
        &self,
        actor: &Actor,
        org: &str,
        policy: &Policy,
    ) -> Result<PolicyWrite> {
        let mut otx = self.org_tx(org, actor).await?;
        let current: Policy = serde_json::from_str(&otx.policy).unwrap_or_default();
        if current.protected_paths.is_empty() || current == *policy {
            apply_policy(&mut otx, policy).await?;
            otx.commit().await?;
            return Ok(PolicyWrite::Applied(policy.clone()));
        }
        let change = ChangeRequest {
            id: new_id(),
            org_id: org.to_owned(),
            kind: "policy".into(),
            node_id: org.to_owned(),
            base_version: 0,
            layer: json!(policy),
            touched: vec!["/policy".into()],
            author: actor.id.clone(),
            author_subject: actor.subject.clone(),
            status: "pending".into(),
            created_at: rfc3339(now_ms()),
            decided_by: None,
            decided_at: None,
            reason: None,
        };
        propose(&mut otx, &change, &json!(current)).await?;
        otx.commit().await?;
        Ok(PolicyWrite::Pending(Box::new(change)))
    }

    pub async fn list_changes(
        &self,
        org: &str,
        status: Option<&str>,
    ) -> Result<Vec<ChangeRequest>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLS} FROM cs_changes WHERE org_id = $1 AND ($2 = '' OR status = $2) ORDER BY id DESC LIMIT 500"
        ))
        .bind(org)
        .bind(status.unwrap_or(""))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(change_row).collect()
    }

    pub async fn get_change(&self, org: &str, id: &str) -> Result<ChangeRequest> {
        let row = sqlx::query(&format!(
            "SELECT {CHANGE_COLS} FROM cs_changes WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("change {id}")))?;
        change_row(&row)
    }

    /// Approves (applies) or rejects a pending change. Nobody approves their own change; the
    /// author may reject (withdraw) it.
    pub async fn decide_change(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<ChangeRequest> {
        let mut otx = self.org_tx(org, actor).await?;
        let row = sqlx::query(&format!(
            "SELECT {CHANGE_COLS} FROM cs_changes WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *otx.tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("change {id}")))?;
        let change = change_row(&row)?;
        if change.status != "pending" {
            return Err(Error::conflict(
                "change-decided",
                format!("change {id} is already {}", change.status),
            ));
        }
        if approve && change.author_subject == actor.subject {
            return Err(Error::Forbidden(format!(
                "nobody approves their own change ({} proposed it): another person must approve it",
                change.author_subject
            )));
        }
        if approve && change.kind == "policy" {
            let policy: Policy = serde_json::from_value(change.layer.clone())
                .map_err(|e| Error::Internal(anyhow::anyhow!("corrupt policy change: {e}")))?;
            apply_policy(&mut otx, &policy).await?;
        } else if approve {
            let (current_version, current) = current_layer(&mut otx, &change.node_id).await?;
            if current_version != change.base_version {
                return Err(Error::conflict(
                    "change-stale",
                    format!(
                        "the layer of {} moved from version {} to {current_version} since this change was proposed; reject it and propose again",
                        change.node_id, change.base_version
                    ),
                ));
            }
            apply_layer(
                &mut otx,
                &change.node_id,
                current_version,
                &current,
                change.layer.clone(),
                &change.author,
                Some(&actor.id),
                change.reason.clone(),
            )
            .await?;
        }
        let status = if approve { "approved" } else { "rejected" };
        let now = now_ms();
        sqlx::query(
            "UPDATE cs_changes SET status = $3, decided_by = $4, decided_at = $5, reason = COALESCE($6, reason) WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(id)
        .bind(status)
        .bind(actor.audit_name())
        .bind(now)
        .bind(reason.clone())
        .execute(&mut *otx.tx)
        .await?;
        let decided = ChangeRequest {
            status: status.into(),
            decided_by: Some(actor.audit_name()),
            decided_at: Some(rfc3339(now)),
            reason: reason.or(change.reason.clone()),
            ..change
        };
        otx.audit(
            &format!("config.change_{status}"),
            &format!("change/{id}"),
            None,
            Some(&json!(decided)),
        )
        .await?;
        otx.commit().await?;
        Ok(decided)
    }
}

/// What a policy write did.
#[derive(Debug)]
pub enum PolicyWrite {
    Applied(Policy),
    /// The policy protects something, so changing it waits for another person's approval.
    Pending(Box<ChangeRequest>),
}

async fn apply_policy(otx: &mut OrgTx, policy: &Policy) -> Result<()> {
    let before: Value = serde_json::from_str(&otx.policy).unwrap_or(json!(null));
    sqlx::query("UPDATE cs_orgs SET policy = $1 WHERE id = $2")
        .bind(json!(policy).to_string())
        .bind(&otx.org)
        .execute(&mut *otx.tx)
        .await?;
    let org = otx.org.clone();
    otx.audit(
        "policy.updated",
        &format!("org/{org}"),
        Some(&before),
        Some(&json!(policy)),
    )
    .await?;
    otx.policy = json!(policy).to_string();
    Ok(())
}
