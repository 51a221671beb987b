//! The deliveries' queue (ADR 0011) and its attempts log.
//!
//! - **Claims** work as the inbox's: leased (`claimed_until`), `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, at most `per_endpoint` in flight per subscription across replicas, and for an
//!   `ordered` subscription only its earliest unfinished delivery.
//! - **Settling** records the attempt, schedules the next one or gives up, and tracks since when a
//!   subscription has failed; past the platform's limit it is disabled and `subscription.disabled`
//!   goes to the org's other subscriptions.
//! - The attempts log, resend and recover are [`super::attempts`].

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use switchyard_common::crypto::{Keyring, Sealed};
use switchyard_common::db::Backend;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::Publish;
use switchyard_common::time::{now_ms, rfc3339};

use super::Store;
use super::audit::note;
use super::outbound::publish;
use super::subscriptions::secret_aad;

/// A claimed delivery, with what the worker needs to make the attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: String,
    pub subscription_id: String,
    /// The published event's id: `webhook-id`.
    pub event_id: String,
    pub event_type: String,
    /// The envelope, exactly as signed and sent on every attempt.
    pub body: String,
    /// This attempt's number (1 for the first).
    pub attempt: i64,
    /// The org whose event it is.
    pub org_id: String,
    /// A `webhook` subscription's URL (empty for `slack`).
    pub url: String,
    /// `webhook` (signed, Standard Webhooks) or `slack` (a message to an incoming webhook).
    pub kind: String,
    /// A `slack` subscription's org secret holding its incoming-webhook URL.
    pub url_secret: Option<String>,
}

/// What one attempt gave.
#[derive(Debug, Clone, Default)]
pub struct AttemptOutcome {
    pub succeeded: bool,
    pub response_code: Option<u16>,
    pub latency_ms: i64,
    /// The first 1 KB of the receiver's answer.
    pub response_body: Option<String>,
    /// Why it failed without an answer (timeout, refused, private target).
    pub error: Option<String>,
}

/// What happens to the delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Done,
    /// Try again at this time (ms).
    RetryAt(i64),
    /// The schedule ran out: `failed`, kept for resend and recover.
    GiveUp,
}

/// One attempt to record: the delivery, what the receiver did, and what follows.
#[derive(Debug, Clone)]
pub struct Settled {
    pub delivery: DueDelivery,
    pub outcome: AttemptOutcome,
    pub next: Next,
}

/// `$first, $first+1, ...`: `n` placeholders for an SQL list.
fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A subscription Switchyard disabled after it failed for too long.
#[derive(Debug, Clone)]
pub struct Disabled {
    pub subscription_id: String,
    pub failing_since: i64,
}

impl Store {
    /// Claims up to `limit` due deliveries of enabled subscriptions for `worker`, leased for
    /// `lease_ms`: at most `per_endpoint` in flight per subscription, counting other replicas'
    /// claims, and for an ordered subscription only its earliest unfinished delivery.
    ///
    /// Subscriptions with due deliveries are taken in a random order and claimed from at once;
    /// each in a transaction that locks its row (`FOR UPDATE SKIP LOCKED`: a replica claiming for it
    /// already makes this one pass it by), counts what is in flight and takes its free slots.
    /// Every statement reads one subscription's rows through an index, whatever the backlog.
    pub async fn claim_deliveries(
        &self,
        worker: &str,
        limit: i64,
        lease_ms: i64,
        per_endpoint: i64,
    ) -> Result<Vec<DueDelivery>> {
        let now = now_ms();
        // Enabled subscriptions with something due, each found through its own index probe (the
        // cost follows the number of subscriptions, not the backlog), in a random order so that
        // none waits behind others when there are more than slots.
        let due: Vec<(String,)> = sqlx::query_as(
            "SELECT s.id FROM or_subscriptions s WHERE s.enabled = 1 AND ( \
               EXISTS (SELECT 1 FROM or_deliveries d WHERE d.subscription_id = s.id AND d.status = 'pending' \
                         AND d.next_attempt_at <= $1) \
               OR EXISTS (SELECT 1 FROM or_deliveries d WHERE d.subscription_id = s.id AND d.status = 'delivering' \
                         AND d.claimed_until < $1)) \
             ORDER BY RANDOM() LIMIT $2",
        )
        .bind(now)
        .bind(limit.max(1))
        .fetch_all(&self.db.pool)
        .await?;
        // Each subscription gets up to its per-endpoint share of the room, handed out before
        // the claims start, so that all of them claim at once (each its own transaction on its
        // own connection) and together never take more than `limit`.
        let mut left = limit;
        let mut shares = Vec::new();
        for (subscription,) in due {
            let room = per_endpoint.max(1).min(left);
            if room <= 0 {
                break;
            }
            left -= room;
            shares.push((subscription, room));
        }
        let claims = shares.iter().map(|(subscription, room)| {
            self.claim_for(subscription, worker, *room, lease_ms, per_endpoint, now)
        });
        // What was claimed is answered even when another subscription's claim failed (it would
        // otherwise wait for its lease to run out).
        let (mut out, mut failed) = (Vec::new(), None);
        for claimed in futures_util::future::join_all(claims).await {
            match claimed {
                Ok(c) => out.extend(c),
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) if out.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "claiming one subscription's deliveries failed");
                Ok(out)
            }
            None => Ok(out),
        }
    }

    /// Claims up to `room` due deliveries of one subscription (see [`Store::claim_deliveries`]).
    async fn claim_for(
        &self,
        subscription: &str,
        worker: &str,
        room: i64,
        lease_ms: i64,
        per_endpoint: i64,
        now: i64,
    ) -> Result<Vec<DueDelivery>> {
        let lock = match self.db.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let (_g, mut tx) = self.begin().await?;
        let Some(sub) = sqlx::query(&format!(
            "SELECT url, kind, url_secret, ordered FROM or_subscriptions WHERE id = $1 AND enabled = 1 {lock}"
        ))
        .bind(subscription)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Vec::new());
        };
        let busy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM or_deliveries WHERE subscription_id = $1 AND status = 'delivering' AND claimed_until >= $2",
        )
        .bind(subscription)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let ordered = sub.try_get::<i64, _>("ordered")? == 1;
        let free = if ordered {
            1 - busy
        } else {
            per_endpoint.max(1) - busy
        }
        .min(room);
        if free <= 0 {
            return Ok(Vec::new());
        }
        // Ordered: only the earliest unfinished delivery, and only once it is due.
        let candidates = if ordered {
            "SELECT id FROM or_deliveries WHERE id = (SELECT id FROM or_deliveries WHERE subscription_id = $1 \
               AND status IN ('pending', 'delivering') ORDER BY occurred_at, id LIMIT 1) \
               AND ((status = 'pending' AND next_attempt_at <= $2) OR (status = 'delivering' AND claimed_until < $2)) \
               AND $3 > 0"
        } else {
            "SELECT id FROM or_deliveries WHERE subscription_id = $1 \
               AND ((status = 'pending' AND next_attempt_at <= $2) OR (status = 'delivering' AND claimed_until < $2)) \
             ORDER BY occurred_at, id LIMIT $3"
        };
        let rows = sqlx::query(&format!(
            "UPDATE or_deliveries SET status = 'delivering', claimed_by = $4, claimed_until = $5, attempts = attempts + 1, updated_at = $2 \
             WHERE id IN ({candidates}) RETURNING id, org_id, event_id, event_type, body, attempts"
        ))
        .bind(subscription)
        .bind(now)
        .bind(free)
        .bind(worker)
        .bind(now + lease_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let (url, kind): (String, String) = (sub.try_get("url")?, sub.try_get("kind")?);
        let url_secret: Option<String> = sub.try_get("url_secret")?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: r.try_get("id")?,
                    subscription_id: subscription.to_owned(),
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    body: r.try_get("body")?,
                    attempt: r.try_get("attempts")?,
                    org_id: r.try_get("org_id")?,
                    url: url.clone(),
                    kind: kind.clone(),
                    url_secret: url_secret.clone(),
                })
            })
            .collect()
    }

    /// The earliest time a pending delivery becomes due or a claim runs out (to sleep until).
    pub async fn next_delivery_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(CASE WHEN status = 'delivering' THEN claimed_until ELSE next_attempt_at END) \
             FROM or_deliveries WHERE status IN ('pending', 'delivering')",
        )
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// Records attempts and what follows each, in one transaction. A delivery moves only while
    /// `worker` still holds its claim; its attempt is logged either way (it was made). A success
    /// ends its subscription's failing streak; a failure starts or continues it, and a streak of
    /// `disable_after_ms` disables the subscription and publishes `subscription.disabled`.
    /// Successes, the attempts log and the streaks are written with one statement each per batch.
    pub async fn settle_deliveries(
        &self,
        batch: &[Settled],
        worker: &str,
        disable_after_ms: i64,
    ) -> Result<Vec<Disabled>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let (_g, mut tx) = self.begin().await?;
        let succeeded: Vec<&str> = batch
            .iter()
            .filter(|s| s.next == Next::Done)
            .map(|s| s.delivery.id.as_str())
            .collect();
        for chunk in succeeded.chunks(500) {
            let sql = format!(
                "UPDATE or_deliveries SET status = 'succeeded', claimed_by = NULL, claimed_until = NULL, updated_at = $2 \
                 WHERE claimed_by = $1 AND status = 'delivering' AND id IN ({})",
                marks(3, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(worker).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        for s in batch.iter().filter(|s| s.next != Next::Done) {
            let (status, next_at) = match s.next {
                Next::RetryAt(at) => ("pending", Some(at)),
                _ => ("failed", None),
            };
            sqlx::query(
                "UPDATE or_deliveries SET status = $3, next_attempt_at = COALESCE($4, next_attempt_at), \
                   claimed_by = NULL, claimed_until = NULL, updated_at = $5 \
                 WHERE id = $1 AND claimed_by = $2 AND status = 'delivering'",
            )
            .bind(&s.delivery.id)
            .bind(worker)
            .bind(status)
            .bind(next_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in batch.chunks(100) {
            let rows = (0..chunk.len())
                .map(|i| format!("({})", marks(i * 10 + 1, 10)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO or_delivery_attempts (id, delivery_id, subscription_id, attempt, at, status, response_code, \
                   latency_ms, response_body, error) VALUES {rows}"
            );
            let mut q = sqlx::query(&sql);
            for s in chunk {
                let o = &s.outcome;
                q = q
                    .bind(new_id())
                    .bind(&s.delivery.id)
                    .bind(&s.delivery.subscription_id)
                    .bind(s.delivery.attempt)
                    .bind(now)
                    .bind(if o.succeeded { "succeeded" } else { "failed" })
                    .bind(o.response_code.map(i64::from))
                    .bind(o.latency_ms)
                    .bind(o.response_body.clone())
                    .bind(o.error.clone());
            }
            q.execute(&mut *tx).await?;
        }
        // Streaks: a subscription with a success in the batch is healthy; one with failures only
        // keeps failing.
        let mut healthy: Vec<&str> = batch
            .iter()
            .filter(|s| s.outcome.succeeded)
            .map(|s| s.delivery.subscription_id.as_str())
            .collect();
        healthy.sort_unstable();
        healthy.dedup();
        if !healthy.is_empty() {
            let sql = format!(
                "UPDATE or_subscriptions SET failing_since = NULL WHERE failing_since IS NOT NULL AND id IN ({})",
                marks(1, healthy.len())
            );
            let mut q = sqlx::query(&sql);
            for id in &healthy {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        let mut failing: Vec<&str> = batch
            .iter()
            .filter(|s| !s.outcome.succeeded)
            .map(|s| s.delivery.subscription_id.as_str())
            .filter(|id| healthy.binary_search(id).is_err())
            .collect();
        failing.sort_unstable();
        failing.dedup();
        let mut disabled = Vec::new();
        for id in failing {
            let row = sqlx::query(
                "UPDATE or_subscriptions SET failing_since = COALESCE(failing_since, $2) WHERE id = $1 \
                 RETURNING org_id, team_ids, kind, url, enabled, failing_since",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = row {
                let since: i64 = r.try_get("failing_since")?;
                let enabled = r.try_get::<i64, _>("enabled")? == 1;
                if enabled && now - since >= disable_after_ms {
                    disabled.push(self.disable_failing(&mut tx, id, &r, since).await?);
                }
            }
        }
        tx.commit().await?;
        Ok(disabled)
    }

    /// Disables a subscription that has failed since `since`, audits it and tells the org's other
    /// subscriptions (`subscription.disabled`).
    async fn disable_failing(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
        r: &AnyRow,
        since: i64,
    ) -> Result<Disabled> {
        let org: String = r.try_get("org_id")?;
        let kind: String = r.try_get("kind")?;
        // A `slack` subscription's URL is a credential in the secrets store: never published.
        let url = Some(r.try_get::<String, _>("url")?).filter(|u| !u.is_empty());
        let teams: Option<Vec<String>> = r
            .try_get::<Option<String>, _>("team_ids")?
            .and_then(|s| serde_json::from_str(&s).ok());
        let reason = format!(
            "every delivery failed since {}; re-enable it once the endpoint answers 2xx",
            rfc3339(since)
        );
        sqlx::query("UPDATE or_subscriptions SET enabled = 0, disabled_reason = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(&reason)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
        let target = format!("subscription/{id}");
        let after = json!({"enabled": false, "disabled_reason": reason});
        note(
            tx,
            Some(&org),
            &Actor::system("system:outbound"),
            "subscription.disabled",
            &target,
            None,
            Some(&after),
        )
        .await?;
        // A subscription of exactly one team is that team's news; otherwise the org's.
        let team = match teams.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        };
        publish(
            tx,
            Publish {
                org: &org,
                team,
                event_type: "subscription.disabled",
                data: json!({"subscription_id": id, "kind": kind, "url": url, "reason": reason,
                    "failing_since": rfc3339(since)}),
            },
        )
        .await?;
        Ok(Disabled {
            subscription_id: id.to_owned(),
            failing_since: since,
        })
    }

    /// Puts `worker`'s claimed deliveries back without counting the attempt (shutdown).
    pub async fn release_deliveries(&self, worker: &str) -> Result<u64> {
        let _g = self.write_guard().await;
        Ok(sqlx::query(
            "UPDATE or_deliveries SET status = 'pending', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             claimed_by = NULL, claimed_until = NULL WHERE status = 'delivering' AND claimed_by = $1",
        )
        .bind(worker)
        .execute(&self.db.pool)
        .await?
        .rows_affected())
    }

    /// The secrets that sign a subscription's deliveries now (two during a rotation's overlap).
    pub async fn signing_secrets(
        &self,
        keyring: &Keyring,
        subscription: &str,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id, key_id, nonce, ciphertext FROM or_subscription_secrets \
             WHERE subscription_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC",
        )
        .bind(subscription)
        .bind(now_ms())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let sid: String = r.try_get("id")?;
                let sealed = Sealed {
                    key_id: r.try_get("key_id")?,
                    nonce: r.try_get("nonce")?,
                    ciphertext: r.try_get("ciphertext")?,
                };
                let plain = keyring
                    .open(&sealed, &secret_aad(subscription, &sid))
                    .map_err(|e| {
                        Error::Internal(anyhow::anyhow!("subscription secret {sid}: {e}"))
                    })?;
                String::from_utf8(plain).map_err(|_| {
                    Error::Internal(anyhow::anyhow!("subscription secret {sid} is not text"))
                })
            })
            .collect()
    }
}
