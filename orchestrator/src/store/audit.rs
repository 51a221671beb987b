//! The audit outbox: every control action writes its entry here, in the transaction of the
//! change it records; the relay (`crate::audit`) appends entries to the config-service's
//! hash-chained log and then drops them.

use serde::Serialize;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
use switchyard_common::error::Result;
use switchyard_common::http::Actor;
use switchyard_common::ids::new_id;
use switchyard_common::time::now_ms;

use super::Store;

/// An audit entry waiting in the outbox, as the config-service's relay endpoint takes it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEntry {
    pub source_id: String,
    pub org_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<String>,
}

/// Writes an audit entry to the outbox, in the transaction of the change it records; the relay
/// appends it to the config-service's hash-chained log (the org's chain, or the platform's when
/// `org` is `None`). Never put a secret in `before` or `after`.
pub(super) async fn note(
    tx: &mut Transaction<'static, Any>,
    org: Option<&str>,
    by: &Actor,
    action: &str,
    target: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO or_audit_outbox (id, org_id, actor, action, target, before_state, after_state, request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_id())
    .bind(org)
    .bind(by.audit_name())
    .bind(action)
    .bind(target)
    .bind(before.map(Value::to_string))
    .bind(after.map(Value::to_string))
    .bind(by.request_id.clone())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Audit entries waiting for the relay, oldest first.
    pub async fn pending_audit(&self, limit: i64) -> Result<Vec<OutboxEntry>> {
        let rows = sqlx::query(
            "SELECT id, org_id, actor, action, target, before_state, after_state, request_id FROM or_audit_outbox ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let json = |col: &str| -> Result<Option<Value>> {
                    Ok(r.try_get::<Option<String>, _>(col)?
                        .and_then(|s| serde_json::from_str(&s).ok()))
                };
                Ok(OutboxEntry {
                    source_id: r.try_get("id")?,
                    org_id: r.try_get("org_id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    before: json("before_state")?,
                    after: json("after_state")?,
                    request_id: r.try_get("request_id")?,
                })
            })
            .collect()
    }

    /// Drops entries the audit log has appended.
    pub async fn relayed_audit(&self, ids: &[String]) -> Result<()> {
        let (_g, mut tx) = self.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM or_audit_outbox WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
