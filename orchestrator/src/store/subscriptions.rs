//! Outbound subscriptions (ADR 0011) and their signing secrets, sealed at rest with the master
//! keyring and bound to `subscription/secret`. Every change is audited, never with a secret.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_common::crypto::Keyring;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::ids::new_id;
use switchyard_common::time::{now_ms, rfc3339};
use utoipa::ToSchema;

use super::Store;
use super::audit::note;

/// A subscription as the API answers it (never its secrets, only their fingerprints).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    pub org_id: String,
    /// `webhook` (signed with the `whsec_` secret) or `slack` (a readable message posted to an
    /// incoming webhook).
    pub kind: String,
    /// A `webhook` subscription's target; `null` for `slack`.
    pub url: Option<String>,
    /// A `slack` subscription's org secret (shared with the orchestrator) that holds its
    /// incoming-webhook URL.
    pub url_secret: Option<String>,
    /// Patterns: an event type, `prefix.*`, or `*`.
    pub event_types: Vec<String>,
    /// Only these teams' events; `null`: every team of the org, and org-wide events.
    pub teams: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Delivered one at a time, in event time order.
    pub ordered: bool,
    /// Why it was disabled, when Switchyard disabled it.
    pub disabled_reason: Option<String>,
    /// Fingerprints of the secrets that sign now (two during a rotation's overlap).
    pub secrets: Vec<SubscriptionSecret>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionSecret {
    /// The first 12 hex digits of the secret's SHA-256.
    pub fingerprint: String,
    pub created_at: String,
    /// When a rotated-out secret stops signing.
    pub expires_at: Option<String>,
}

/// A validated subscription to create or the fields of one to change.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFields {
    /// `webhook` or `slack` (set on creation only).
    pub kind: Option<String>,
    pub url: Option<String>,
    pub url_secret: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `Some(None)`: every team.
    pub teams: Option<Option<Vec<String>>>,
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub ordered: Option<bool>,
}

const COLS: &str = "id, org_id, kind, url, url_secret, event_types, team_ids, description, enabled, ordered, disabled_reason, created_at, updated_at";

fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))[..12].to_owned()
}

pub(super) fn secret_aad(subscription: &str, secret: &str) -> String {
    format!("or_subscription_secrets/{subscription}/{secret}")
}

fn row(r: &AnyRow) -> Result<Subscription> {
    let list = |col: &str| -> Result<Option<Vec<String>>> {
        let s: Option<String> = r.try_get(col)?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
    };
    Ok(Subscription {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        kind: r.try_get("kind")?,
        url: Some(r.try_get::<String, _>("url")?).filter(|u| !u.is_empty()),
        url_secret: r.try_get("url_secret")?,
        event_types: list("event_types")?.unwrap_or_default(),
        teams: list("team_ids")?,
        description: r.try_get("description")?,
        enabled: r.try_get::<i64, _>("enabled")? == 1,
        ordered: r.try_get::<i64, _>("ordered")? == 1,
        disabled_reason: r.try_get("disabled_reason")?,
        secrets: Vec::new(),
        created_at: rfc3339(r.try_get("created_at")?),
        updated_at: rfc3339(r.try_get("updated_at")?),
    })
}

/// The audited view of a subscription (what it is, not its secrets).
fn audited(s: &Subscription) -> Value {
    json!({"kind": s.kind, "url": s.url, "url_secret": s.url_secret, "event_types": s.event_types, "teams": s.teams, "description": s.description,
        "enabled": s.enabled, "ordered": s.ordered})
}

/// A new `whsec_` secret: 24 random bytes, base64.
pub fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

impl Store {
    /// Creates a subscription; a `webhook` one with a new signing secret, answered this once
    /// (`slack` ones are not signed: `None`).
    pub async fn create_subscription(
        &self,
        keyring: &Keyring,
        by: &Actor,
        org: &str,
        new: &SubscriptionFields,
    ) -> Result<(Subscription, Option<String>)> {
        let id = new_id();
        let now = now_ms();
        let kind = new.kind.as_deref().unwrap_or("webhook");
        let secret = (kind == "webhook").then(new_secret);
        let (_g, mut tx) = self.begin().await?;
        sqlx::query(
            "INSERT INTO or_subscriptions (id, org_id, kind, url, url_secret, event_types, team_ids, description, enabled, ordered, created_at, updated_at) \
             VALUES ($1, $2, $10, $3, $11, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(&id)
        .bind(org)
        .bind(new.url.as_deref().unwrap_or_default())
        .bind(json!(new.event_types.clone().unwrap_or_default()).to_string())
        .bind(new.teams.clone().flatten().map(|t| json!(t).to_string()))
        .bind(new.description.clone().flatten())
        .bind(i64::from(new.enabled.unwrap_or(true)))
        .bind(i64::from(new.ordered.unwrap_or(false)))
        .bind(now)
        .bind(kind)
        .bind(new.url_secret.as_deref())
        .execute(&mut *tx)
        .await?;
        if let Some(secret) = &secret {
            self.insert_subscription_secret(&mut tx, keyring, &id, secret, now)
                .await?;
        }
        let created = self.subscription_in(&mut tx, org, &id).await?;
        let target = format!("subscription/{id}");
        note(
            &mut tx,
            Some(org),
            by,
            "subscription.created",
            &target,
            None,
            Some(&audited(&created)),
        )
        .await?;
        tx.commit().await?;
        Ok((self.get_subscription(org, &id).await?, secret))
    }

    /// One subscription of `org` with its secrets' fingerprints; 404 when `org` has none by that id.
    pub async fn get_subscription(&self, org: &str, id: &str) -> Result<Subscription> {
        let r = sqlx::query(&format!(
            "SELECT {COLS} FROM or_subscriptions WHERE id = $1 AND org_id = $2"
        ))
        .bind(id)
        .bind(org)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("subscription {id}")))?;
        let mut s = row(&r)?;
        let now = now_ms();
        let secrets = sqlx::query(
            "SELECT fingerprint, created_at, expires_at FROM or_subscription_secrets \
             WHERE subscription_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC",
        )
        .bind(id)
        .bind(now)
        .fetch_all(&self.db.pool)
        .await?;
        for r in &secrets {
            s.secrets.push(SubscriptionSecret {
                fingerprint: r.try_get("fingerprint")?,
                created_at: rfc3339(r.try_get("created_at")?),
                expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(rfc3339),
            });
        }
        Ok(s)
    }

    /// The org's subscriptions, oldest first (without their secrets' fingerprints).
    pub async fn list_subscriptions(&self, org: &str) -> Result<Vec<Subscription>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM or_subscriptions WHERE org_id = $1 ORDER BY id"
        ))
        .bind(org)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    /// Changes the given fields (`None`: kept). Re-enabling clears the reason it was disabled.
    pub async fn update_subscription(
        &self,
        by: &Actor,
        org: &str,
        id: &str,
        change: &SubscriptionFields,
    ) -> Result<Subscription> {
        let (_g, mut tx) = self.begin().await?;
        let before = self.subscription_in(&mut tx, org, id).await?;
        let enabled = change.enabled.unwrap_or(before.enabled);
        sqlx::query(
            "UPDATE or_subscriptions SET url = $3, url_secret = $10, event_types = $4, team_ids = $5, description = $6, enabled = $7, \
               ordered = $8, disabled_reason = CASE WHEN $7 = 1 THEN NULL ELSE disabled_reason END, updated_at = $9 \
             WHERE id = $1 AND org_id = $2",
        )
        .bind(id)
        .bind(org)
        .bind(
            change
                .url
                .as_deref()
                .or(before.url.as_deref())
                .unwrap_or_default(),
        )
        .bind(json!(change.event_types.as_ref().unwrap_or(&before.event_types)).to_string())
        .bind(change.teams.clone().unwrap_or(before.teams.clone()).map(|t| json!(t).to_string()))
        .bind(change.description.clone().unwrap_or(before.description.clone()))
        .bind(i64::from(enabled))
        .bind(i64::from(change.ordered.unwrap_or(before.ordered)))
        .bind(now_ms())
        .bind(change.url_secret.clone().or(before.url_secret.clone()))
        .execute(&mut *tx)
        .await?;
        let after = self.subscription_in(&mut tx, org, id).await?;
        let target = format!("subscription/{id}");
        note(
            &mut tx,
            Some(org),
            by,
            "subscription.updated",
            &target,
            Some(&audited(&before)),
            Some(&audited(&after)),
        )
        .await?;
        tx.commit().await?;
        self.get_subscription(org, id).await
    }

    pub async fn delete_subscription(&self, by: &Actor, org: &str, id: &str) -> Result<()> {
        let (_g, mut tx) = self.begin().await?;
        let before = self.subscription_in(&mut tx, org, id).await?;
        sqlx::query("DELETE FROM or_subscription_secrets WHERE subscription_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM or_subscriptions WHERE id = $1 AND org_id = $2")
            .bind(id)
            .bind(org)
            .execute(&mut *tx)
            .await?;
        let target = format!("subscription/{id}");
        note(
            &mut tx,
            Some(org),
            by,
            "subscription.deleted",
            &target,
            Some(&audited(&before)),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A new signing secret (answered once). The secrets signing until now keep signing for
    /// `overlap_ms` (0: they stop at once), so receivers can switch without missing a delivery.
    pub async fn rotate_subscription_secret(
        &self,
        keyring: &Keyring,
        by: &Actor,
        org: &str,
        id: &str,
        overlap_ms: i64,
    ) -> Result<(Subscription, String)> {
        let now = now_ms();
        let secret = new_secret();
        let (_g, mut tx) = self.begin().await?;
        if self.subscription_in(&mut tx, org, id).await?.kind != "webhook" {
            return Err(Error::conflict(
                "not-signed",
                "a slack subscription is not signed: change its incoming-webhook URL in the secrets store instead",
            ));
        }
        // Every secret signing now stops at the end of the overlap (or earlier, as it was set).
        sqlx::query(
            "UPDATE or_subscription_secrets SET expires_at = $2 \
             WHERE subscription_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(id)
        .bind(now + overlap_ms.max(0))
        .execute(&mut *tx)
        .await?;
        self.insert_subscription_secret(&mut tx, keyring, id, &secret, now)
            .await?;
        let target = format!("subscription/{id}");
        let after =
            json!({"fingerprint": fingerprint(&secret), "overlap_seconds": overlap_ms / 1000});
        note(
            &mut tx,
            Some(org),
            by,
            "subscription.secret_rotated",
            &target,
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        Ok((self.get_subscription(org, id).await?, secret))
    }

    async fn subscription_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        org: &str,
        id: &str,
    ) -> Result<Subscription> {
        let r = sqlx::query(&format!(
            "SELECT {COLS} FROM or_subscriptions WHERE id = $1 AND org_id = $2"
        ))
        .bind(id)
        .bind(org)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("subscription {id}")))?;
        row(&r)
    }

    async fn insert_subscription_secret(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        keyring: &Keyring,
        subscription: &str,
        secret: &str,
        now: i64,
    ) -> Result<()> {
        let sid = new_id();
        let sealed = keyring.seal(secret.as_bytes(), &secret_aad(subscription, &sid));
        sqlx::query(
            "INSERT INTO or_subscription_secrets (id, subscription_id, key_id, nonce, ciphertext, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&sid)
        .bind(subscription)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(fingerprint(secret))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
