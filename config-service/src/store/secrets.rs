//! The org secrets store: write-only credentials, sealed at rest, audited without their values.

use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use switchyard_common::crypto::{Keyring, Sealed};
use switchyard_common::time::now_ms;

use std::collections::{BTreeMap, BTreeSet};

use super::{Actor, Arg, Filter, SecretInfo, Store, ts};
use crate::error::{Error, Result};

/// Associated data binding a sealed value to its org and name: a ciphertext copied to another
/// org or name does not decrypt.
fn aad(org: &str, name: &str) -> String {
    format!("cs_secrets/{org}/{name}")
}

/// Tells values apart without revealing them (the first 12 hex digits of their SHA-256).
fn fingerprint(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))[..12].to_owned()
}

fn info(r: &sqlx::any::AnyRow) -> Result<SecretInfo> {
    Ok(SecretInfo {
        name: r.try_get("name")?,
        fingerprint: r.try_get("fingerprint")?,
        readers: serde_json::from_str(&r.try_get::<String, _>("readers")?).unwrap_or_default(),
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

/// The columns [`info`] reads.
const INFO: &str = "name, fingerprint, readers, created_at, updated_at";

impl Store {
    /// Sets a secret (creating or replacing it) with the services that may read it. Answers its
    /// description and whether it is new. The audit entry records the change and the
    /// fingerprints, never the value.
    pub async fn put_secret(
        &self,
        actor: &Actor,
        keyring: &Keyring,
        org: &str,
        name: &str,
        value: &str,
        readers: &[String],
    ) -> Result<(SecretInfo, bool)> {
        let mut otx = self.org_tx(org, actor).await?;
        let before = sqlx::query(&format!(
            "SELECT {INFO} FROM cs_secrets WHERE org_id = $1 AND name = $2"
        ))
        .bind(org)
        .bind(name)
        .fetch_optional(&mut *otx.tx)
        .await?
        .map(|r| info(&r))
        .transpose()?;
        let sealed = keyring.seal(value.as_bytes(), &aad(org, name));
        let now = now_ms();
        let row = sqlx::query(
            &format!("INSERT INTO cs_secrets (org_id, name, key_id, nonce, ciphertext, fingerprint, readers, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7) \
             ON CONFLICT (org_id, name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce, \
               ciphertext = excluded.ciphertext, fingerprint = excluded.fingerprint, readers = excluded.readers, \
               updated_at = excluded.updated_at \
             RETURNING {INFO}"),
        )
        .bind(org)
        .bind(name)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(fingerprint(value))
        .bind(now)
        .bind(json!(readers).to_string())
        .fetch_one(&mut *otx.tx)
        .await?;
        let after = info(&row)?;
        otx.audit(
            if before.is_some() {
                "secret.updated"
            } else {
                "secret.created"
            },
            &format!("secret/{name}"),
            before.as_ref().map(|b| json!(b)).as_ref(),
            Some(&json!(after)),
        )
        .await?;
        otx.commit().await?;
        Ok((after, before.is_none()))
    }

    /// The org's secrets: names, fingerprints and times only.
    pub async fn list_secrets(&self, org: &str) -> Result<Vec<SecretInfo>> {
        if self.get_org(org).await?.is_none() {
            return Err(Error::not_found(format!("organisation {org}")));
        }
        sqlx::query(&format!(
            "SELECT {INFO} FROM cs_secrets WHERE org_id = $1 ORDER BY name"
        ))
        .bind(org)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(info)
        .collect()
    }

    /// Deletes a secret; 404 if there is none by that name.
    pub async fn delete_secret(&self, actor: &Actor, org: &str, name: &str) -> Result<()> {
        let mut otx = self.org_tx(org, actor).await?;
        let row = sqlx::query(&format!(
            "DELETE FROM cs_secrets WHERE org_id = $1 AND name = $2 RETURNING {INFO}"
        ))
        .bind(org)
        .bind(name)
        .fetch_optional(&mut *otx.tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("secret {name}")))?;
        let before = info(&row)?;
        otx.audit(
            "secret.deleted",
            &format!("secret/{name}"),
            Some(&json!(before)),
            None,
        )
        .await?;
        otx.commit().await?;
        Ok(())
    }

    /// A secret's value, decrypted, for `service` (never on a public endpoint): 404 when the
    /// org has no such secret, 403 when it is not shared with `service`.
    pub async fn secret_value(
        &self,
        keyring: &Keyring,
        service: &str,
        org: &str,
        name: &str,
    ) -> Result<String> {
        let row = sqlx::query(
            "SELECT name, key_id, nonce, ciphertext, readers FROM cs_secrets WHERE org_id = $1 AND name = $2",
        )
        .bind(org)
        .bind(name)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("secret {name}")))?;
        let readers: Vec<String> =
            serde_json::from_str(&row.try_get::<String, _>("readers")?).unwrap_or_default();
        if !readers.iter().any(|r| r == service) {
            return Err(Error::Forbidden(format!(
                "secret {name} is not shared with the {service}: set it with \"readers\" naming it"
            )));
        }
        open(keyring, org, &row).map(|(_, v)| v)
    }

    /// The values of the org's secrets `names` that the agent-runner may read, decrypted, in one
    /// query; a name the org does not have (or has not shared with it) is absent from the answer.
    pub async fn secret_values(
        &self,
        keyring: &Keyring,
        org: &str,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut f = Filter::default();
        f.push("org_id = $?", Arg::Text(org.to_owned()));
        let mut among = Vec::with_capacity(names.len());
        for n in names {
            f.args.push(Arg::Text(n.clone()));
            among.push(format!("${}", f.args.len()));
        }
        let sql = format!(
            "SELECT name, key_id, nonce, ciphertext FROM cs_secrets WHERE {} AND name IN ({}) \
             AND readers LIKE '%\"agent-runner\"%'",
            f.sql(),
            among.join(", ")
        );
        let rows = f.bind(sqlx::query(&sql)).fetch_all(&self.db.pool).await?;
        rows.iter().map(|r| open(keyring, org, r)).collect()
    }
}

/// A secret row's name and decrypted value.
fn open(keyring: &Keyring, org: &str, row: &sqlx::any::AnyRow) -> Result<(String, String)> {
    let name: String = row.try_get("name")?;
    let sealed = Sealed {
        key_id: row.try_get("key_id")?,
        nonce: row.try_get("nonce")?,
        ciphertext: row.try_get("ciphertext")?,
    };
    let plain = keyring
        .open(&sealed, &aad(org, &name))
        .map_err(|e| Error::Internal(anyhow::anyhow!("secret {name} of {org}: {e}")))?;
    let value = String::from_utf8(plain)
        .map_err(|_| Error::Internal(anyhow::anyhow!("secret {name} of {org} is not UTF-8")))?;
    Ok((name, value))
}
