//! Integrations (one per sender configuration) and their secrets, sealed at rest with the
//! master keyring: the ciphertext is bound to `integration/secret` so a row copied elsewhere does
//! not open.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};
use switchyard_common::crypto::{Keyring, Sealed};
use switchyard_common::db::Backend;
use switchyard_common::error::{Error, Result};
use switchyard_common::http::Actor;
use switchyard_common::ids::new_id;
use switchyard_common::outbox::Publish;
use switchyard_common::time::{now_ms, rfc3339};
use utoipa::ToSchema;

use super::Store;
use super::audit::note;
use crate::sources::Source;

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
    // Empty when read by `Store::integration_row` (never answered by the API).
    pub secrets: Vec<SecretInfo>,
    pub created_at: String,
    pub updated_at: String,
}

/// A validated integration to create.
#[derive(Debug, Clone)]
pub struct NewIntegration<'a> {
    /// `None`: the platform-wide integration of its source.
    pub org: Option<&'a str>,
    pub source: Source,
    pub name: &'a str,
    pub default_team: Option<&'a str>,
    pub settings: &'a Value,
    pub secrets: &'a [String],
}

/// What an update changes (`None`: keep).
#[derive(Debug, Clone, Default)]
pub struct IntegrationChange<'a> {
    pub name: Option<&'a str>,
    /// `Some(None)` clears the default team.
    pub default_team: Option<Option<&'a str>>,
    pub settings: Option<&'a Value>,
}

fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))[..12].to_owned()
}

fn secret_aad(integration: &str, secret_id: &str) -> String {
    format!("{integration}/{secret_id}")
}

impl Store {
    pub async fn create_integration(
        &self,
        keyring: &Keyring,
        by: &Actor,
        new: &NewIntegration<'_>,
    ) -> Result<Integration> {
        let (org, source) = (new.org, new.source);
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
        .bind(new.name)
        .bind(new.default_team)
        .bind(new.settings.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| switchyard_common::error::on_unique(e, "integration-exists", format!("a platform-wide {} integration already exists", source.as_str())))?;
        let mut added = Vec::with_capacity(new.secrets.len());
        for secret in new.secrets {
            added.push(insert_secret(&mut tx, keyring, &id, secret, now).await?);
        }
        let after = json!({"id": id, "source": source.as_str(), "name": new.name, "default_team": new.default_team,
            "settings": new.settings, "secrets": added});
        let target = format!("integration/{id}");
        note(
            &mut tx,
            org,
            by,
            "integration.created",
            &target,
            None,
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        self.get_integration(&id)
            .await?
            .ok_or_else(|| Error::not_found("integration"))
    }

    /// A live integration by id, with its active secrets' fingerprints.
    pub async fn get_integration(&self, id: &str) -> Result<Option<Integration>> {
        let Some(mut i) = self.integration_row(id).await? else {
            return Ok(None);
        };
        i.secrets = sqlx::query(
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
        Ok(Some(i))
    }

    /// A live integration by id in one round trip, without its secrets' fingerprints (`secrets`
    /// is empty): what the hot path and the dispatcher need, which verify with the decrypted
    /// secrets instead.
    pub async fn integration_row(&self, id: &str) -> Result<Option<Integration>> {
        let row = sqlx::query(
            "SELECT id, org_id, source, name, default_team, settings, created_at, updated_at FROM or_integrations \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let source: String = r.try_get("source")?;
        let source = Source::parse(&source)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown source {source}")))?;
        let org_id: Option<String> = r.try_get("org_id")?;
        let settings: String = r.try_get("settings")?;
        Ok(Some(Integration {
            webhook_path: source.webhook_path(id, org_id.is_none()),
            id: r.try_get("id")?,
            org_id,
            source,
            name: r.try_get("name")?,
            default_team: r.try_get("default_team")?,
            settings: serde_json::from_str(&settings).unwrap_or(Value::Null),
            secrets: Vec::new(),
            created_at: rfc3339(r.try_get("created_at")?),
            updated_at: rfc3339(r.try_get("updated_at")?),
        }))
    }

    /// The platform-wide integration of a source (shared Slack app, GitHub App).
    /// Read as [`Store::integration_row`] reads it (for the hot path).
    pub async fn platform_integration(&self, source: Source) -> Result<Option<Integration>> {
        self.integration_row(&format!("platform-{}", source.as_str()))
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
        change: &IntegrationChange<'_>,
    ) -> Result<Integration> {
        let current = self
            .get_integration(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("integration {id}")))?;
        let (g, mut tx) = self.begin().await?;
        let (name, default_team, settings) = (
            change.name.unwrap_or(&current.name),
            change
                .default_team
                .unwrap_or(current.default_team.as_deref()),
            change.settings.unwrap_or(&current.settings),
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
        let (org, target) = (current.org_id.as_deref(), format!("integration/{id}"));
        note(
            &mut tx,
            org,
            by,
            "integration.updated",
            &target,
            Some(&before),
            Some(&after),
        )
        .await?;
        tx.commit().await?;
        drop(g);
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
        let (org, target) = (current.org_id.as_deref(), format!("integration/{id}"));
        let before = json!(current);
        note(
            &mut tx,
            org,
            by,
            "integration.deleted",
            &target,
            Some(&before),
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
        let target = format!("integration/{id}/secrets/{}", info.id);
        let after = json!(info);
        let org = i.org_id.as_deref();
        note(
            &mut tx,
            org,
            by,
            "integration.secret_added",
            &target,
            None,
            Some(&after),
        )
        .await?;
        if let Some(org) = org {
            let data = json!({"integration_id": id, "source": i.source.as_str(), "secret": after});
            super::outbound::publish(
                &mut tx,
                Publish {
                    org,
                    team: i.default_team.as_deref(),
                    event_type: "integration.secret_rotated",
                    data,
                },
            )
            .await?;
        }
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
        let target = format!("integration/{id}/secrets/{secret_id}");
        let before = json!({"id": secret_id});
        let action = "integration.secret_retired";
        note(
            &mut tx,
            org.as_deref(),
            by,
            action,
            &target,
            Some(&before),
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
