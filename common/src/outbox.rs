//! The transactional outbox of Switchyard's own events (ADR 0011), one table per service
//! (`or_outbox`, `cs_outbox`) in one shape: a change writes its event in its own transaction, so
//! no committed change goes unreported and no rolled-back one is reported. The orchestrator fans
//! the rows out to subscriptions; the config-service's are pulled by the orchestrator first.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use switchyard_api::outbound::OutboundEvent;

use crate::db::values_rows;
use crate::ids::new_id;
use crate::time::{now_ms, rfc3339};

/// An outbox table: `or_outbox` or `cs_outbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbox(pub &'static str);

/// One event to publish.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    pub org: &'a str,
    pub team: Option<&'a str>,
    pub event_type: &'static str,
    pub data: Value,
}

const COLS: &str = "id, org_id, team_id, event_type, occurred_at, data";

impl Outbox {
    /// Writes `event` in `tx`. With `only_if` (an SQL condition on `$2`, the org), only when it
    /// holds at the time of the change: the orchestrator writes nothing for an org nobody
    /// subscribes to.
    pub async fn publish(
        self,
        tx: &mut Transaction<'static, Any>,
        event: Publish<'_>,
        only_if: Option<&str>,
    ) -> sqlx::Result<()> {
        let sql = match only_if {
            None => format!(
                "INSERT INTO {} ({COLS}) VALUES ($1, $2, $3, $4, $5, $6)",
                self.0
            ),
            Some(cond) => format!(
                "INSERT INTO {} ({COLS}) SELECT $1, $2, $3, $4, $5, $6 WHERE {cond}",
                self.0
            ),
        };
        sqlx::query(&sql)
            .bind(new_id())
            .bind(event.org)
            .bind(event.team)
            .bind(event.event_type)
            .bind(now_ms())
            .bind(event.data.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Writes `events` in `tx`, many to a statement.
    pub async fn publish_many(
        self,
        tx: &mut Transaction<'static, Any>,
        events: &[Publish<'_>],
    ) -> sqlx::Result<()> {
        let now = now_ms();
        for chunk in events.chunks(500) {
            let sql = format!(
                "INSERT INTO {} ({COLS}) VALUES {}",
                self.0,
                values_rows(1, chunk.len(), 6)
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(new_id())
                    .bind(e.org)
                    .bind(e.team)
                    .bind(e.event_type)
                    .bind(now)
                    .bind(e.data.to_string());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Waiting events, oldest first.
    pub async fn pending(
        self,
        pool: &sqlx::AnyPool,
        limit: i64,
    ) -> sqlx::Result<Vec<OutboundEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM {} ORDER BY id LIMIT $1",
            self.0
        ))
        .bind(limit)
        .fetch_all(pool)
        .await?;
        rows.iter().map(envelope).collect()
    }

    /// Drops events that were taken over.
    pub async fn delete(
        self,
        tx: &mut Transaction<'static, Any>,
        ids: &[String],
    ) -> sqlx::Result<u64> {
        let mut n = 0;
        for chunk in ids.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("DELETE FROM {} WHERE id IN ({marks})", self.0);
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            n += q.execute(&mut **tx).await?.rows_affected();
        }
        Ok(n)
    }

    /// Inserts events taken over from another service's outbox, many to a statement; one already
    /// here is skipped.
    pub async fn import(
        self,
        tx: &mut Transaction<'static, Any>,
        events: &[OutboundEvent],
    ) -> sqlx::Result<()> {
        for chunk in events.chunks(500) {
            let rows = values_rows(1, chunk.len(), 6);
            let sql = format!(
                "INSERT INTO {} ({COLS}) VALUES {rows} ON CONFLICT (id) DO NOTHING",
                self.0
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(&e.id)
                    .bind(&e.org_id)
                    .bind(e.team_id.as_deref())
                    .bind(&e.event_type)
                    .bind(crate::time::parse_rfc3339(&e.timestamp).unwrap_or_else(|_| now_ms()))
                    .bind(e.data.to_string());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The columns [`envelope`] reads.
    pub fn columns() -> &'static str {
        COLS
    }
}

/// An outbox row as the published envelope (version 1).
pub fn envelope(r: &AnyRow) -> sqlx::Result<OutboundEvent> {
    let data: String = r.try_get("data")?;
    Ok(OutboundEvent {
        id: r.try_get("id")?,
        event_type: r.try_get("event_type")?,
        version: 1,
        timestamp: rfc3339(r.try_get("occurred_at")?),
        org_id: r.try_get("org_id")?,
        team_id: r.try_get("team_id")?,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}
