//! Orchestrator storage over PostgreSQL or SQLite (the portable-SQL approach of ADR 0001).
//!
//! The inbox is `or_events`: one atomic `INSERT ... ON CONFLICT DO NOTHING RETURNING` per
//! delivery, so a duplicate can never slip in between a check and an insert. Dispatchers claim due
//! events with `FOR UPDATE SKIP LOCKED` on PostgreSQL (replicas never claim the same event) and a
//! lease (`claimed_until`): an event claimed by a replica that died is claimable again once the
//! lease runs out; settling checks the claim is still this worker's. An event is not claimed while
//! an earlier event of the same integration with the same correlation key is still pending, which
//! keeps one incident's events in arrival order without one tenant waiting on another's.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use switchyard_common::db::{Backend, Db, WriteTx};
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::ids::new_id;
use switchyard_common::time::{now_ms, rfc3339};
use tokio::sync::{Notify, OwnedMutexGuard};
use utoipa::ToSchema;

use crate::sources::Source;
use crate::sources::normalise::Envelope;
use switchyard_common::crypto::{Keyring, Sealed};

/// Statuses an event moves through.
pub mod status {
    pub const RECEIVED: &str = "received";
    pub const DISPATCHING: &str = "dispatching";
    pub const THROTTLED: &str = "throttled";
    pub const RETRYING: &str = "retrying";
    pub const DISPATCHED: &str = "dispatched";
    pub const UNROUTED: &str = "unrouted";
    pub const DEAD_LETTERED: &str = "dead_lettered";
    pub const ALL: [&str; 7] = [
        RECEIVED,
        DISPATCHING,
        THROTTLED,
        RETRYING,
        DISPATCHED,
        UNROUTED,
        DEAD_LETTERED,
    ];
}

#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// Wakes this process's dispatcher when an event is stored (SQLite; PostgreSQL uses NOTIFY,
    /// which reaches every replica).
    pub wake: Arc<Notify>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecretInfo {
    pub id: String,
    /// The first 12 hex digits of the secret's SHA-256: tells secrets apart without revealing them.
    pub fingerprint: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Integration {
    pub id: String,
    /// `null` for a platform-wide integration (shared Slack app or GitHub App).
    pub org_id: Option<String>,
    pub source: Source,
    pub name: String,
    /// The team events go to when routing finds none.
    pub default_team: Option<String>,
    #[schema(value_type = Object)]
    pub settings: Value,
    /// The path to configure at the sender (append it to the orchestrator's public URL).
    pub webhook_path: String,
    /// Active secrets (never their values).
    pub secrets: Vec<SecretInfo>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub id: String,
    pub integration_id: String,
    pub delivery_id: String,
    pub org_id: Option<String>,
    pub source: String,
    pub event_type: String,
    pub correlation_key: String,
    /// Routing identifiers as (kind, value) pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub identifiers: Vec<(String, String)>,
    pub status: String,
    pub team_id: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub run_id: Option<String>,
    pub last_error: Option<String>,
    pub received_at: String,
    pub updated_at: String,
}

/// An event with its payload and timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: Event,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct TimelineEntry {
    pub at: String,
    /// `received`, `verified`, `routed`, `unrouted`, `throttled`, `dispatch_attempt`,
    /// `dispatch_failed`, `dispatched`, `dead_lettered`, `replayed`.
    pub kind: String,
    pub detail: Option<String>,
}

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New(String),
    /// Already stored under this event id: acknowledge again, trigger nothing.
    Duplicate(String),
}

/// A claimed event, as the dispatcher needs it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub integration_id: String,
    pub org_id: Option<String>,
    pub source: String,
    pub event_type: String,
    pub correlation_key: String,
    pub identifiers: Vec<(String, String)>,
    pub payload: Value,
    pub team_id: Option<String>,
    pub attempts: i64,
    /// The webhook request's trace, continued by dispatch.
    pub traceparent: Option<String>,
    /// Since when the event has been throttled without a break (ms), if it is.
    pub throttled_since: Option<i64>,
    /// Replays so far (0: the original delivery).
    pub generation: i64,
}

impl Claimed {
    /// The run's idempotency key: the event id, plus the replay generation once replayed, so a
    /// replay starts a new run and a repeated dispatch of one generation never does.
    pub fn idempotency_key(&self) -> String {
        match self.generation {
            0 => self.id.clone(),
            g => format!("{}:replay-{g}", self.id),
        }
    }
}

/// The outcome of one dispatch attempt, as [`Store::settle`] records it.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    pub status: &'static str,
    /// The org and team the event was routed to (kept when `None`).
    pub org: Option<String>,
    pub team: Option<String>,
    /// When to try again (waiting statuses).
    pub next_attempt_at: Option<i64>,
    pub run_id: Option<String>,
    /// The last error, or why the event is unrouted (cleared when `None`).
    pub error: Option<String>,
    /// Give back the attempt the claim counted (throttling is not a failed attempt).
    pub refund_attempt: bool,
    /// Timeline entries, in order.
    pub timeline: Vec<(&'static str, Option<String>)>,
}

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

/// Filters for listing events.
#[derive(Debug, Default, Clone)]
pub struct EventQuery {
    /// `None`: every org (platform admin).
    pub org: Option<String>,
    pub team: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub since: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

const EVENT_COLS: &str = "id, integration_id, delivery_id, org_id, source, event_type, correlation_key, identifiers, status, team_id, attempts, next_attempt_at, run_id, last_error, received_at, updated_at";

fn event_row(r: &AnyRow) -> Result<Event> {
    let ids: String = r.try_get("identifiers")?;
    Ok(Event {
        id: r.try_get("id")?,
        integration_id: r.try_get("integration_id")?,
        delivery_id: r.try_get("delivery_id")?,
        org_id: r.try_get("org_id")?,
        source: r.try_get("source")?,
        event_type: r.try_get("event_type")?,
        correlation_key: r.try_get("correlation_key")?,
        identifiers: serde_json::from_str(&ids).unwrap_or_default(),
        status: r.try_get("status")?,
        team_id: r.try_get("team_id")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: rfc3339(r.try_get("next_attempt_at")?),
        run_id: r.try_get("run_id")?,
        last_error: r.try_get("last_error")?,
        received_at: rfc3339(r.try_get("received_at")?),
        updated_at: rfc3339(r.try_get("updated_at")?),
    })
}

fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))[..12].to_owned()
}

fn secret_aad(integration: &str, secret_id: &str) -> String {
    format!("{integration}/{secret_id}")
}

/// The webhook path of an integration.
pub fn webhook_path(source: Source, id: &str, platform: bool) -> String {
    match (source, platform) {
        (Source::Slack, true) => "/webhooks/slack/events".into(),
        (Source::Github, true) => "/webhooks/github".into(),
        _ => format!("/webhooks/{}/{id}", source.as_str()),
    }
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The process's SQLite write lock around a single write statement (`Db::write_guard`).
    async fn write_guard(&self) -> Option<OwnedMutexGuard<()>> {
        self.db.write_guard().await
    }

    async fn begin(&self) -> Result<WriteTx> {
        Ok(self.db.begin_write().await?)
    }

    // ---- integrations -------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub async fn create_integration(
        &self,
        keyring: &Keyring,
        by: &Actor,
        org: Option<&str>,
        source: Source,
        name: &str,
        default_team: Option<&str>,
        settings: &Value,
        secrets: &[String],
    ) -> Result<Integration> {
        let id = match org {
            Some(_) => new_id(),
            None => format!("platform-{}", source.as_str()),
        };
        let (_g, mut tx) = self.begin().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO or_integrations (id, org_id, source, name, default_team, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&id)
        .bind(org)
        .bind(source.as_str())
        .bind(name)
        .bind(default_team)
        .bind(settings.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| switchyard_common::error::on_unique(e, "integration-exists", format!("a platform-wide {} integration already exists", source.as_str())))?;
        let mut added = Vec::with_capacity(secrets.len());
        for secret in secrets {
            added.push(insert_secret(&mut tx, keyring, &id, secret, now).await?);
        }
        let after = json!({"id": id, "source": source.as_str(), "name": name, "default_team": default_team,
            "settings": settings, "secrets": added});
        note(
            &mut tx,
            org,
            by,
            "integration.created",
            &format!("integration/{id}"),
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        self.get_integration(&id)
            .await?
            .ok_or_else(|| Error::not_found("integration"))
    }

    /// A live integration by id.
    pub async fn get_integration(&self, id: &str) -> Result<Option<Integration>> {
        let row = sqlx::query(
            "SELECT id, org_id, source, name, default_team, settings, created_at, updated_at FROM or_integrations \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let secrets = sqlx::query(
            "SELECT id, fingerprint, created_at FROM or_integration_secrets WHERE integration_id = $1 AND retired_at IS NULL ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|s| {
            Ok(SecretInfo {
                id: s.try_get("id")?,
                fingerprint: s.try_get("fingerprint")?,
                created_at: rfc3339(s.try_get("created_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let source: String = r.try_get("source")?;
        let source = Source::parse(&source)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown source {source}")))?;
        let org_id: Option<String> = r.try_get("org_id")?;
        let settings: String = r.try_get("settings")?;
        Ok(Some(Integration {
            webhook_path: webhook_path(source, id, org_id.is_none()),
            id: r.try_get("id")?,
            org_id,
            source,
            name: r.try_get("name")?,
            default_team: r.try_get("default_team")?,
            settings: serde_json::from_str(&settings).unwrap_or(Value::Null),
            secrets,
            created_at: rfc3339(r.try_get("created_at")?),
            updated_at: rfc3339(r.try_get("updated_at")?),
        }))
    }

    /// The platform-wide integration of a source (shared Slack app, GitHub App).
    pub async fn platform_integration(&self, source: Source) -> Result<Option<Integration>> {
        self.get_integration(&format!("platform-{}", source.as_str()))
            .await
    }

    pub async fn list_integrations(&self, org: Option<&str>) -> Result<Vec<Integration>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM or_integrations WHERE deleted_at IS NULL AND (($1 = '' AND org_id IS NULL) OR org_id = $1) ORDER BY id",
        )
        .bind(org.unwrap_or(""))
        .fetch_all(&self.db.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(i) = self.get_integration(&id).await? {
                out.push(i);
            }
        }
        Ok(out)
    }

    pub async fn update_integration(
        &self,
        by: &Actor,
        id: &str,
        name: Option<&str>,
        default_team: Option<Option<&str>>,
        settings: Option<&Value>,
    ) -> Result<Integration> {
        let current = self
            .get_integration(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("integration {id}")))?;
        let (_g, mut tx) = self.begin().await?;
        let (name, default_team, settings) = (
            name.unwrap_or(&current.name),
            default_team.unwrap_or(current.default_team.as_deref()),
            settings.unwrap_or(&current.settings),
        );
        sqlx::query("UPDATE or_integrations SET name = $2, default_team = $3, settings = $4, updated_at = $5 WHERE id = $1")
            .bind(id)
            .bind(name)
            .bind(default_team)
            .bind(settings.to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let before = json!({"name": current.name, "default_team": current.default_team, "settings": current.settings});
        let after = json!({"name": name, "default_team": default_team, "settings": settings});
        note(
            &mut tx,
            current.org_id.as_deref(),
            by,
            "integration.updated",
            &format!("integration/{id}"),
            Some(&before),
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        drop(_g);
        self.get_integration(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("integration {id}")))
    }

    /// Deletes an integration: its URL stops accepting deliveries; stored events stay.
    pub async fn delete_integration(&self, by: &Actor, id: &str) -> Result<()> {
        let current = self
            .get_integration(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("integration {id}")))?;
        let (_g, mut tx) = self.begin().await?;
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE or_integrations SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Error::not_found(format!("integration {id}")));
        }
        sqlx::query("UPDATE or_integration_secrets SET retired_at = $2 WHERE integration_id = $1 AND retired_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        note(
            &mut tx,
            current.org_id.as_deref(),
            by,
            "integration.deleted",
            &format!("integration/{id}"),
            Some(&json!(current)),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn add_secret(
        &self,
        keyring: &Keyring,
        by: &Actor,
        id: &str,
        secret: &str,
    ) -> Result<SecretInfo> {
        let i = self
            .get_integration(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("integration {id}")))?;
        let (_g, mut tx) = self.begin().await?;
        let info = insert_secret(&mut tx, keyring, id, secret, now_ms()).await?;
        note(
            &mut tx,
            i.org_id.as_deref(),
            by,
            "integration.secret_added",
            &format!("integration/{id}/secrets/{}", info.id),
            None,
            Some(&json!(info)),
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }

    /// Retires a secret; the last active one cannot be retired (every delivery would fail). The
    /// integration's row is locked first, so two retirements at once are counted one after the
    /// other and cannot both see "two active" and leave none.
    pub async fn retire_secret(&self, by: &Actor, id: &str, secret_id: &str) -> Result<()> {
        let (_g, mut tx) = self.begin().await?;
        let lock = match self.db.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let org: Option<String> = sqlx::query_scalar(&format!(
            "SELECT org_id FROM or_integrations WHERE id = $1 AND deleted_at IS NULL{lock}"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("integration {id}")))?;
        let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM or_integration_secrets WHERE integration_id = $1 AND retired_at IS NULL")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM or_integration_secrets WHERE integration_id = $1 AND id = $2 AND retired_at IS NULL")
            .bind(id)
            .bind(secret_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(Error::not_found(format!("secret {secret_id}")));
        }
        if active <= 1 {
            return Err(Error::conflict(
                "last-secret",
                "this is the integration's only active secret: add its successor first",
            ));
        }
        sqlx::query("UPDATE or_integration_secrets SET retired_at = $3 WHERE integration_id = $1 AND id = $2")
            .bind(id)
            .bind(secret_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        note(
            &mut tx,
            org.as_deref(),
            by,
            "integration.secret_retired",
            &format!("integration/{id}/secrets/{secret_id}"),
            Some(&json!({"id": secret_id})),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The decrypted active secrets of an integration.
    pub async fn active_secrets(&self, keyring: &Keyring, id: &str) -> Result<Vec<Vec<u8>>> {
        let rows = sqlx::query("SELECT id, key_id, nonce, ciphertext FROM or_integration_secrets WHERE integration_id = $1 AND retired_at IS NULL")
            .bind(id)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let secret_id: String = r.try_get("id")?;
                let sealed = Sealed {
                    key_id: r.try_get("key_id")?,
                    nonce: r.try_get("nonce")?,
                    ciphertext: r.try_get("ciphertext")?,
                };
                keyring
                    .open(&sealed, &secret_aad(id, &secret_id))
                    .map_err(|e| {
                        Error::Internal(anyhow::anyhow!("secret {secret_id} of {id}: {e}"))
                    })
            })
            .collect()
    }

    // ---- events ------------------------------------------------------------------------

    /// Stores a verified delivery, or finds the one it duplicates. Commits before returning.
    pub async fn store_event(
        &self,
        integration: &Integration,
        env: &Envelope,
        org: Option<&str>,
    ) -> Result<Stored> {
        let (_g, mut tx) = self.begin().await?;
        let id = new_id();
        let now = now_ms();
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO or_events (id, integration_id, delivery_id, org_id, source, event_type, correlation_key, identifiers, payload, status, next_attempt_at, received_at, updated_at, traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'received', $10, $10, $10, $11) \
             ON CONFLICT (integration_id, delivery_id) DO NOTHING RETURNING id",
        )
        .bind(&id)
        .bind(&integration.id)
        .bind(&env.delivery_id)
        .bind(org)
        .bind(env.source.as_str())
        .bind(&env.event_type)
        .bind(&env.correlation_key)
        .bind(serde_json::to_string(&env.identifiers).unwrap_or_default())
        .bind(env.payload.to_string())
        .bind(now)
        .bind(switchyard_common::trace::TraceContext::current().map(|c| c.header()))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = inserted else {
            let existing: String = sqlx::query_scalar(
                "SELECT id FROM or_events WHERE integration_id = $1 AND delivery_id = $2",
            )
            .bind(&integration.id)
            .bind(&env.delivery_id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Stored::Duplicate(existing));
        };
        timeline(
            &mut tx,
            &id,
            now,
            "received",
            Some(&format!(
                "delivery {} via {}",
                env.delivery_id, integration.webhook_path
            )),
        )
        .await?;
        timeline(&mut tx, &id, now, "verified", None).await?;
        if self.db.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify('or_events', '')")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.wake.notify_one();
        Ok(Stored::New(id))
    }

    /// Claims up to `limit` due events for `worker`, leasing them for `lease_ms`.
    pub async fn claim(&self, worker: &str, limit: i64, lease_ms: i64) -> Result<Vec<Claimed>> {
        let now = now_ms();
        let lock = match self.db.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let _g = self.write_guard().await;
        // One statement: pick due events (waiting, or claimed by a replica whose lease ran out)
        // whose correlation key has no earlier pending event, lock them, lease them.
        let rows = sqlx::query(&format!(
            "UPDATE or_events SET status = 'dispatching', claimed_by = $3, claimed_until = $4, attempts = attempts + 1, updated_at = $1 \
             WHERE id IN ( \
               SELECT e.id FROM or_events e \
               WHERE ((e.status IN ('received', 'retrying', 'throttled') AND e.next_attempt_at <= $1) \
                      OR (e.status = 'dispatching' AND e.claimed_until < $1)) \
                 AND NOT EXISTS (SELECT 1 FROM or_events p WHERE p.integration_id = e.integration_id \
                                 AND p.correlation_key = e.correlation_key AND p.id < e.id \
                                 AND p.status IN ('received', 'retrying', 'throttled', 'dispatching')) \
               ORDER BY e.id LIMIT $2 {lock}) \
             RETURNING id, integration_id, org_id, source, event_type, correlation_key, identifiers, payload, team_id, attempts, traceparent, throttled_since, generation"
        ))
        .bind(now)
        .bind(limit)
        .bind(worker)
        .bind(now + lease_ms)
        .fetch_all(&self.db.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let ids: String = row.try_get("identifiers")?;
            let payload: String = row.try_get("payload")?;
            out.push(Claimed {
                id: row.try_get("id")?,
                integration_id: row.try_get("integration_id")?,
                org_id: row.try_get("org_id")?,
                source: row.try_get("source")?,
                event_type: row.try_get("event_type")?,
                correlation_key: row.try_get("correlation_key")?,
                identifiers: serde_json::from_str(&ids).unwrap_or_default(),
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                team_id: row.try_get("team_id")?,
                attempts: row.try_get("attempts")?,
                traceparent: row.try_get("traceparent")?,
                throttled_since: row.try_get("throttled_since")?,
                generation: row.try_get("generation")?,
            });
        }
        // RETURNING has no order; dispatch in arrival order.
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The earliest time any waiting event becomes due, or a claim's lease runs out (to sleep
    /// until then).
    pub async fn next_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(CASE WHEN status = 'dispatching' THEN claimed_until ELSE next_attempt_at END) FROM or_events \
             WHERE status IN ('received', 'retrying', 'throttled', 'dispatching')",
        )
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// Records the outcome of a dispatch attempt by `worker`: the new status and what the
    /// timeline says. Only while `worker` still holds the claim: a dispatcher whose lease ran out
    /// (and whose event another replica claimed since) must not overwrite the newer outcome.
    /// Returns false, recording nothing, when the claim was lost.
    pub async fn settle(&self, id: &str, worker: &str, s: &Settlement) -> Result<bool> {
        let (_g, mut tx) = self.begin().await?;
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE or_events SET status = $2, org_id = COALESCE($3, org_id), team_id = COALESCE($4, team_id), \
             next_attempt_at = COALESCE($5, next_attempt_at), run_id = COALESCE($6, run_id), last_error = $7, \
             claimed_by = NULL, claimed_until = NULL, updated_at = $8, \
             attempts = CASE WHEN $9 = 1 AND attempts > 0 THEN attempts - 1 ELSE attempts END, \
             throttled_since = CASE WHEN $2 = 'throttled' THEN COALESCE(throttled_since, $8) ELSE NULL END \
             WHERE id = $1 AND claimed_by = $10 AND status = 'dispatching'",
        )
        .bind(id)
        .bind(s.status)
        .bind(s.org.as_deref())
        .bind(s.team.as_deref())
        .bind(s.next_attempt_at)
        .bind(s.run_id.as_deref())
        .bind(s.error.as_deref())
        .bind(now)
        .bind(if s.refund_attempt { 1i64 } else { 0i64 })
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        for (kind, detail) in &s.timeline {
            timeline(&mut tx, id, now, kind, detail.as_deref()).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Extends `worker`'s claim on an event it is still dispatching. False when the claim is gone.
    pub async fn renew_claim(&self, id: &str, worker: &str, lease_ms: i64) -> Result<bool> {
        let _g = self.write_guard().await;
        Ok(sqlx::query(
            "UPDATE or_events SET claimed_until = $3 WHERE id = $1 AND claimed_by = $2 AND status = 'dispatching'",
        )
        .bind(id)
        .bind(worker)
        .bind(now_ms() + lease_ms)
        .execute(&self.db.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Puts claimed events back without counting the attempt (graceful shutdown).
    pub async fn release(&self, worker: &str) -> Result<u64> {
        let _g = self.write_guard().await;
        Ok(sqlx::query(
            "UPDATE or_events SET status = 'received', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             claimed_by = NULL, claimed_until = NULL WHERE status = 'dispatching' AND claimed_by = $1",
        )
        .bind(worker)
        .execute(&self.db.pool)
        .await?
        .rows_affected())
    }

    pub async fn list_events(&self, q: &EventQuery) -> Result<(Vec<Event>, Option<String>)> {
        let limit = q.limit.unwrap_or(50).clamp(1, 500) as i64;
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM or_events WHERE ($1 = '' OR org_id = $1) AND ($2 = '' OR team_id = $2) \
             AND ($3 = '' OR source = $3) AND ($4 = '' OR status = $4) AND received_at >= $5 AND ($6 = '' OR id < $6) \
             ORDER BY id DESC LIMIT {}",
            limit + 1
        ))
        .bind(q.org.as_deref().unwrap_or(""))
        .bind(q.team.as_deref().unwrap_or(""))
        .bind(q.source.as_deref().unwrap_or(""))
        .bind(q.status.as_deref().unwrap_or(""))
        .bind(q.since.unwrap_or(0))
        .bind(q.cursor.as_deref().unwrap_or(""))
        .fetch_all(&self.db.pool)
        .await?;
        let mut items = rows.iter().map(event_row).collect::<Result<Vec<_>>>()?;
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok((items, next))
    }

    /// One event with payload and timeline; `org` restricts it to a tenant (`None`: any).
    pub async fn get_event(&self, org: Option<&str>, id: &str) -> Result<EventDetail> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLS}, payload FROM or_events WHERE id = $1 AND ($2 = '' OR org_id = $2)"
        ))
        .bind(id)
        .bind(org.unwrap_or(""))
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("event {id}")))?;
        let payload: String = row.try_get("payload")?;
        let timeline = sqlx::query(
            "SELECT at, kind, detail FROM or_event_timeline WHERE event_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|t| {
            Ok(TimelineEntry {
                at: rfc3339(t.try_get("at")?),
                kind: t.try_get("kind")?,
                detail: t.try_get("detail")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(EventDetail {
            event: event_row(&row)?,
            payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            timeline,
        })
    }

    /// Sends finished events (dispatched, unrouted, dead-lettered) matching the filter through
    /// dispatch again. Returns how many.
    pub async fn replay(&self, by: &Actor, q: &EventQuery, id: Option<&str>) -> Result<u64> {
        let (_g, mut tx) = self.begin().await?;
        let now = now_ms();
        let found: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT id, org_id FROM or_events WHERE ($1 = '' OR org_id = $1) AND ($2 = '' OR id = $2) AND ($3 = '' OR status = $3) \
             AND ($4 = '' OR source = $4) AND ($5 = '' OR team_id = $5) AND status IN ('dispatched', 'unrouted', 'dead_lettered') LIMIT 10000",
        )
        .bind(q.org.as_deref().unwrap_or(""))
        .bind(id.unwrap_or(""))
        .bind(q.status.as_deref().unwrap_or(""))
        .bind(q.source.as_deref().unwrap_or(""))
        .bind(q.team.as_deref().unwrap_or(""))
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<&String> = found.iter().map(|(id, _)| id).collect();
        // One audit entry per org touched, naming the events (or, for many, how many).
        let mut by_org: std::collections::BTreeMap<Option<&str>, Vec<&str>> = Default::default();
        for (id, org) in &found {
            by_org.entry(org.as_deref()).or_default().push(id);
        }
        let filter = json!({"status": q.status, "source": q.source, "team": q.team, "event": id});
        for (org, events) in &by_org {
            let target = match events.as_slice() {
                [one] => format!("event/{one}"),
                _ => "events".to_owned(),
            };
            let after = json!({"replayed": events.len(), "filter": filter,
                "events": events.iter().take(100).collect::<Vec<_>>()});
            note(
                &mut tx,
                *org,
                by,
                "events.replayed",
                &target,
                None,
                Some(&after),
            )
            .await?;
        }
        for id in &ids {
            sqlx::query("UPDATE or_events SET status = 'received', attempts = 0, next_attempt_at = $2, last_error = NULL, updated_at = $2, \
                         throttled_since = NULL, generation = generation + 1 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            timeline(&mut tx, id, now, "replayed", None).await?;
        }
        if self.db.backend == Backend::Postgres && !ids.is_empty() {
            sqlx::query("SELECT pg_notify('or_events', '')")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.wake.notify_one();
        Ok(ids.len() as u64)
    }

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

    /// Deletes finished events received before `before` (and their timelines). Delivery ids go
    /// with them, so the retention must exceed the longest sender retry window.
    pub async fn purge(&self, by: &Actor, before: i64) -> Result<u64> {
        let (_g, mut tx) = self.begin().await?;
        let per_org: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT org_id, COUNT(*) FROM or_events WHERE received_at < $1 \
             AND status IN ('dispatched', 'unrouted', 'dead_lettered') GROUP BY org_id",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        for (org, n) in &per_org {
            let after = json!({"purged": n, "received_before": rfc3339(before)});
            note(
                &mut tx,
                org.as_deref(),
                by,
                "events.purged",
                "events",
                None,
                Some(&after),
            )
            .await?;
        }
        sqlx::query(
            "DELETE FROM or_event_timeline WHERE event_id IN (SELECT id FROM or_events WHERE received_at < $1 \
             AND status IN ('dispatched', 'unrouted', 'dead_lettered'))",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query("DELETE FROM or_events WHERE received_at < $1 AND status IN ('dispatched', 'unrouted', 'dead_lettered')")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Counts by status, for metrics and tests.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as(
                "SELECT status, COUNT(*) FROM or_events GROUP BY status ORDER BY status",
            )
            .fetch_all(&self.db.pool)
            .await?,
        )
    }
}

async fn insert_secret(
    tx: &mut Transaction<'static, Any>,
    keyring: &Keyring,
    integration: &str,
    secret: &str,
    now: i64,
) -> Result<SecretInfo> {
    let id = new_id();
    let sealed = keyring.seal(secret.as_bytes(), &secret_aad(integration, &id));
    let fp = fingerprint(secret);
    sqlx::query(
        "INSERT INTO or_integration_secrets (id, integration_id, key_id, nonce, ciphertext, fingerprint, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(integration)
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .bind(&fp)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(SecretInfo {
        id,
        fingerprint: fp,
        created_at: rfc3339(now),
    })
}

/// Writes an audit entry to the outbox, in the transaction of the change it records; the relay
/// appends it to the config-service's hash-chained log (the org's chain, or the platform's when
/// `org` is `None`). Never put a secret in `before` or `after`.
pub(crate) async fn note(
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

async fn timeline(
    tx: &mut Transaction<'static, Any>,
    event: &str,
    at: i64,
    kind: &str,
    detail: Option<&str>,
) -> Result<()> {
    sqlx::query("INSERT INTO or_event_timeline (id, event_id, at, kind, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(new_id())
        .bind(event)
        .bind(at)
        .bind(kind)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
