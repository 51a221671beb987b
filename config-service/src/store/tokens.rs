//! API tokens: issued once, stored hashed, revocable, expiring.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_common::auth::{TokenKind, generate_token, secrets_equal};
use switchyard_common::ids::new_id;
use switchyard_common::time::now_ms;

use super::{Actor, IssuedToken, Store, TokenAuth, TokenInfo, opt_ts, ts};
use crate::error::{Error, Result};

const TOKEN_COLS: &str = "id, org_id, node_id, kind, label, subject, prefix, created_by, created_at, expires_at, last_used_at, revoked_at";

/// `last_used_at` is refreshed at most this often, so authentication is not a write per request.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

fn token_row(r: &AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        node_id: r.try_get("node_id")?,
        kind: r.try_get("kind")?,
        label: r.try_get("label")?,
        subject: r.try_get("subject")?,
        prefix: r.try_get("prefix")?,
        created_by: r.try_get("created_by")?,
        created_at: ts(r, "created_at")?,
        expires_at: opt_ts(r, "expires_at")?,
        last_used_at: opt_ts(r, "last_used_at")?,
        revoked_at: opt_ts(r, "revoked_at")?,
    })
}

impl Store {
    /// Issues an org admin token (`node` = `None`) or a team token scoped to `node`, to
    /// `subject` (the person or system that will hold it; required for admin tokens).
    pub async fn create_token(
        &self,
        actor: &Actor,
        org: &str,
        node: Option<&str>,
        label: &str,
        subject: Option<&str>,
        expires_at: Option<i64>,
    ) -> Result<IssuedToken> {
        if node.is_none() && subject.is_none_or(|s| s.trim().is_empty()) {
            return Err(Error::invalid(
                "/subject",
                "admin tokens name the person or system they are issued to, e.g. alice@example.com",
            ));
        }
        let mut otx = self.org_tx(org, actor).await?;
        if let Some(node) = node {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT id FROM cs_nodes WHERE org_id = $1 AND id = $2")
                    .bind(org)
                    .bind(node)
                    .fetch_optional(&mut *otx.tx)
                    .await?;
            if exists.is_none() {
                return Err(Error::not_found(format!("node {node}")));
            }
        }
        let kind = if node.is_some() {
            TokenKind::Team
        } else {
            TokenKind::OrgAdmin
        };
        let token = generate_token(kind);
        let id = new_id();
        let row = sqlx::query(&format!(
            "INSERT INTO cs_tokens (id, org_id, node_id, kind, label, prefix, hash, created_by, created_at, expires_at, subject) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {TOKEN_COLS}"
        ))
        .bind(&id)
        .bind(org)
        .bind(node)
        .bind(kind.as_str())
        .bind(label)
        .bind(&token.display_prefix)
        .bind(&token.hash)
        .bind(&actor.id)
        .bind(now_ms())
        .bind(expires_at)
        .bind(subject.map(str::trim))
        .fetch_one(&mut *otx.tx)
        .await?;
        let info = token_row(&row)?;
        otx.audit(
            "token.created",
            &format!("token/{id}"),
            None,
            Some(&json!(info)),
        )
        .await?;
        otx.commit().await?;
        Ok(IssuedToken {
            info,
            secret: token.secret,
        })
    }

    /// Tokens of an org: admin tokens (`node` = `None`) or one node's team tokens.
    pub async fn list_tokens(&self, org: &str, node: Option<&str>) -> Result<Vec<TokenInfo>> {
        let rows = match node {
            Some(node) => sqlx::query(&format!(
                "SELECT {TOKEN_COLS} FROM cs_tokens WHERE org_id = $1 AND node_id = $2 ORDER BY id"
            ))
            .bind(org)
            .bind(node)
            .fetch_all(&self.db.pool)
            .await?,
            None => sqlx::query(&format!(
                "SELECT {TOKEN_COLS} FROM cs_tokens WHERE org_id = $1 AND kind = 'org_admin' ORDER BY id"
            ))
            .bind(org)
            .fetch_all(&self.db.pool)
            .await?,
        };
        rows.iter().map(token_row).collect()
    }

    /// Revokes a token within its scope. Revoking twice is not an error.
    pub async fn revoke_token(
        &self,
        actor: &Actor,
        org: &str,
        node: Option<&str>,
        id: &str,
    ) -> Result<TokenInfo> {
        let mut otx = self.org_tx(org, actor).await?;
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM cs_tokens WHERE id = $1 AND org_id = $2 AND \
             ((node_id IS NULL AND $3 = '') OR node_id = $3)"
        ))
        .bind(id)
        .bind(org)
        .bind(node.unwrap_or(""))
        .fetch_optional(&mut *otx.tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("token {id}")))?;
        let before = token_row(&row)?;
        if before.revoked_at.is_some() {
            return Ok(before);
        }
        let row = sqlx::query(&format!(
            "UPDATE cs_tokens SET revoked_at = $2 WHERE id = $1 RETURNING {TOKEN_COLS}"
        ))
        .bind(id)
        .bind(now_ms())
        .fetch_one(&mut *otx.tx)
        .await?;
        let after = token_row(&row)?;
        otx.audit(
            "token.revoked",
            &format!("token/{id}"),
            Some(&json!(before)),
            Some(&json!(after)),
        )
        .await?;
        otx.commit().await?;
        Ok(after)
    }

    /// Finds the live token with this hash. Unknown, revoked and expired tokens answer 401 with a
    /// reason the holder can act on (never whose token it was).
    pub async fn authenticate(&self, hash: &str) -> Result<TokenAuth> {
        let row = sqlx::query(
            "SELECT id, org_id, node_id, kind, subject, hash, expires_at, revoked_at, last_used_at FROM cs_tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::Unauthorized("the token is not valid".into()))?;
        let stored: String = row.try_get("hash")?;
        if !secrets_equal(&stored, hash) {
            return Err(Error::Unauthorized("the token is not valid".into()));
        }
        let now = now_ms();
        if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            return Err(Error::Unauthorized("the token has been revoked".into()));
        }
        if row
            .try_get::<Option<i64>, _>("expires_at")?
            .is_some_and(|e| e <= now)
        {
            return Err(Error::Unauthorized("the token has expired".into()));
        }
        let id: String = row.try_get("id")?;
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        if last_used.is_none_or(|t| now - t > LAST_USED_GRANULARITY_MS) {
            let _guard = self.write_guard().await;
            sqlx::query("UPDATE cs_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(&id)
                .bind(now)
                .execute(&self.db.pool)
                .await?;
        }
        let subject: Option<String> = row.try_get("subject")?;
        Ok(TokenAuth {
            subject: subject.unwrap_or_else(|| format!("token:{id}")),
            id,
            org_id: row.try_get("org_id")?,
            node_id: row.try_get("node_id")?,
            kind: row.try_get("kind")?,
        })
    }
}
