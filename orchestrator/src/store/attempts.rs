//! The attempts log of outbound deliveries, and sending deliveries again: `resend` one, or
//! `recover` every failed one since a time.

use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::time::{now_ms, rfc3339};
use utoipa::ToSchema;

use super::Store;
use super::audit::note;

/// One attempt, as `GET .../subscriptions/{id}/attempts` answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Attempt {
    pub id: String,
    pub delivery_id: String,
    /// The event's id, sent as `webhook-id`.
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt of the delivery.
    pub attempt: i64,
    pub at: String,
    /// `succeeded` or `failed`.
    pub status: String,
    pub response_code: Option<i64>,
    pub latency_ms: i64,
    /// The first 1 KB of the receiver's answer.
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// The delivery's state now: `pending`, `delivering`, `succeeded` or `failed`.
    pub delivery_status: String,
}

impl Store {
    /// A subscription's attempts, newest first; `cursor` is the last id of the previous page.
    pub async fn list_attempts(
        &self,
        subscription: &str,
        status: Option<&str>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<Attempt>, Option<String>)> {
        let rows = sqlx::query(
            "SELECT a.id, a.delivery_id, a.attempt, a.at, a.status, a.response_code, a.latency_ms, a.response_body, a.error, \
               d.event_id, d.event_type, d.status AS delivery_status \
             FROM or_delivery_attempts a JOIN or_deliveries d ON d.id = a.delivery_id \
             WHERE a.subscription_id = $1 AND ($2 = '' OR a.status = $2) AND ($3 = '' OR a.id < $3) \
             ORDER BY a.id DESC LIMIT $4",
        )
        .bind(subscription)
        .bind(status.unwrap_or(""))
        .bind(cursor.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(&self.db.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(Attempt {
                    id: r.try_get("id")?,
                    delivery_id: r.try_get("delivery_id")?,
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    attempt: r.try_get("attempt")?,
                    at: rfc3339(r.try_get("at")?),
                    status: r.try_get("status")?,
                    response_code: r.try_get("response_code")?,
                    latency_ms: r.try_get("latency_ms")?,
                    response_body: r.try_get("response_body")?,
                    error: r.try_get("error")?,
                    delivery_status: r.try_get("delivery_status")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|a| a.id.clone())
        } else {
            None
        };
        Ok((items, next))
    }

    /// Sends the delivery of one of the subscription's attempts again, now: a finished delivery
    /// starts a fresh schedule; one waiting for its next retry is brought forward. 409 while an
    /// attempt is in flight.
    pub async fn resend(
        &self,
        by: &Actor,
        org: &str,
        subscription: &str,
        attempt: &str,
    ) -> Result<String> {
        let (_g, mut tx) = self.begin().await?;
        let row = sqlx::query(
            "SELECT d.id, d.status FROM or_delivery_attempts a JOIN or_deliveries d ON d.id = a.delivery_id \
             WHERE a.id = $1 AND a.subscription_id = $2 AND d.org_id = $3",
        )
        .bind(attempt)
        .bind(subscription)
        .bind(org)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("attempt {attempt}")))?;
        let delivery: String = row.try_get("id")?;
        let status: String = row.try_get("status")?;
        if status == "delivering" {
            return Err(Error::conflict(
                "delivery-in-flight",
                format!(
                    "delivery {delivery} is being attempted now; resend it once the attempt is logged"
                ),
            ));
        }
        sqlx::query(
            "UPDATE or_deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $2, \
               attempts = CASE WHEN status = 'pending' THEN attempts ELSE 0 END WHERE id = $1",
        )
        .bind(&delivery)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let target = format!("subscription/{subscription}");
        note(
            &mut tx,
            Some(org),
            by,
            "subscription.delivery_resent",
            &target,
            None,
            Some(&json!({"delivery_id": delivery, "attempt_id": attempt})),
        )
        .await?;
        tx.commit().await?;
        Ok(delivery)
    }

    /// Sends every delivery of the subscription that failed (its schedule ran out) for events
    /// since `since` (ms) again, each on a fresh schedule. Answers how many.
    pub async fn recover(
        &self,
        by: &Actor,
        org: &str,
        subscription: &str,
        since: i64,
    ) -> Result<u64> {
        let (_g, mut tx) = self.begin().await?;
        let n = sqlx::query(
            "UPDATE or_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $4, updated_at = $4 \
             WHERE subscription_id = $1 AND org_id = $2 AND status = 'failed' AND occurred_at >= $3",
        )
        .bind(subscription)
        .bind(org)
        .bind(since)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let target = format!("subscription/{subscription}");
        note(
            &mut tx,
            Some(org),
            by,
            "subscription.recovered",
            &target,
            None,
            Some(&json!({"since": rfc3339(since), "deliveries": n})),
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }
}
