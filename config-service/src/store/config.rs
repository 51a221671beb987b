//! Config layers and their history (the approval policy and change requests: `approvals.rs`).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use switchyard_common::ids::new_id;
use switchyard_common::time::{now_ms, rfc3339};

use super::approvals::CHANGE_COLS;
use super::{
    Actor, ChainLink, ChangeRequest, EffectiveConfig, HistoryEntry, LayerVersion, OrgTx, Policy,
    Store, json_col, opt_ts, ts,
};
use crate::domain::config::{diff, merge_chain, touched_protected};
use crate::domain::routing::routes_of_layer;
use crate::error::{Error, Result};

/// What a layer write did.
#[derive(Debug)]
pub enum LayerWrite {
    /// A new version is current.
    Applied(LayerVersion),
    /// The write touches protected paths and waits for another admin's approval.
    Pending(ChangeRequest),
}

/// Strong ETag of a node's own layer version.
pub fn layer_etag(version: i64) -> String {
    format!("\"v{version}\"")
}

/// Parses an `If-Match` value produced by [`layer_etag`].
pub fn parse_layer_etag(s: &str) -> Option<i64> {
    s.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .strip_prefix('v')?
        .parse()
        .ok()
}

impl Store {
    /// The node's current layer (version 0 and `{}` when it never had one). 404 if no node.
    pub async fn get_layer(&self, org: &str, node: &str) -> Result<LayerVersion> {
        let row = sqlx::query(
            "SELECT n.id, v.version, v.layer, v.author, v.approved_by, v.message, v.created_at \
             FROM cs_nodes n \
             LEFT JOIN cs_config_heads h ON h.org_id = n.org_id AND h.node_id = n.id \
             LEFT JOIN cs_config_versions v ON v.org_id = h.org_id AND v.node_id = h.node_id AND v.version = h.version \
             WHERE n.org_id = $1 AND n.id = $2",
        )
        .bind(org)
        .bind(node)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("node {node}")))?;
        let version: Option<i64> = row.try_get("version")?;
        Ok(LayerVersion {
            org_id: org.to_owned(),
            node_id: node.to_owned(),
            version: version.unwrap_or(0),
            layer: match version {
                Some(_) => json_col(&row, "layer")?,
                None => json!({}),
            },
            author: row.try_get("author")?,
            approved_by: row.try_get("approved_by")?,
            message: row.try_get("message")?,
            created_at: opt_ts(&row, "created_at")?,
        })
    }

    /// The chain of layers from the org root down to `node`, root first. 404 if no node.
    ///
    /// The heads are read by scalar subqueries, not a join: PostgreSQL overestimates a recursive
    /// CTE's rows and would hash-join against every head of the org (7x slower at 10,000 teams).
    pub async fn config_chain(&self, org: &str, node: &str) -> Result<Vec<ChainLink>> {
        let rows = sqlx::query(
            "WITH RECURSIVE up(id, parent_id, kind, depth) AS ( \
               SELECT id, parent_id, kind, 0 FROM cs_nodes WHERE org_id = $1 AND id = $2 \
               UNION ALL \
               SELECT n.id, n.parent_id, n.kind, up.depth + 1 FROM cs_nodes n JOIN up ON n.org_id = $1 AND n.id = up.parent_id) \
             SELECT up.id, up.kind, CAST(up.depth AS BIGINT) AS depth, \
               (SELECT h.version FROM cs_config_heads h WHERE h.org_id = $1 AND h.node_id = up.id) AS version, \
               (SELECT h.layer FROM cs_config_heads h WHERE h.org_id = $1 AND h.node_id = up.id) AS layer \
             FROM up ORDER BY depth DESC",
        )
        .bind(org)
        .bind(node)
        .fetch_all(&self.db.pool)
        .await?;
        if rows.is_empty() {
            return Err(Error::not_found(format!("node {node}")));
        }
        rows.iter()
            .map(|r| {
                let version: Option<i64> = r.try_get("version")?;
                Ok(ChainLink {
                    node_id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    version: version.unwrap_or(0),
                    layer: match version {
                        Some(_) => json_col(r, "layer")?,
                        None => json!({}),
                    },
                })
            })
            .collect()
    }

    /// The effective config of a node, with the source of every leaf when `explain` is set.
    pub async fn effective_config(
        &self,
        org: &str,
        node: &str,
        explain: bool,
    ) -> Result<EffectiveConfig> {
        let chain = self.config_chain(org, node).await?;
        let merged = merge_chain(chain.iter().map(|l| (l.node_id.as_str(), &l.layer)));
        let mut h = Sha256::new();
        for l in &chain {
            h.update(format!("{}@{};", l.node_id, l.version));
        }
        let etag = format!("\"e-{}\"", &hex::encode(h.finalize())[..20]);
        Ok(EffectiveConfig {
            org_id: org.to_owned(),
            node_id: node.to_owned(),
            version: chain.last().map(|l| l.version).unwrap_or(0),
            etag,
            config: merged.config,
            chain,
            explain: explain.then_some(merged.sources),
        })
    }

    /// Every team of every org with the `pipelines` section of its effective config, computed in
    /// memory from two queries (nodes, current layers), for the orchestrator's reconciler.
    pub async fn team_pipelines(&self) -> Result<Vec<(String, String, Value)>> {
        let nodes: Vec<(String, String, Option<String>, String)> =
            sqlx::query_as("SELECT org_id, id, parent_id, kind FROM cs_nodes")
                .fetch_all(&self.db.pool)
                .await?;
        let heads: Vec<(String, String, String)> =
            sqlx::query_as("SELECT org_id, node_id, layer FROM cs_config_heads")
                .fetch_all(&self.db.pool)
                .await?;
        let parents: std::collections::HashMap<(&str, &str), Option<&str>> = nodes
            .iter()
            .map(|(o, id, p, _)| ((o.as_str(), id.as_str()), p.as_deref()))
            .collect();
        let layers: std::collections::HashMap<(&str, &str), Value> = heads
            .iter()
            .filter_map(|(o, n, l)| {
                let v: Value = serde_json::from_str(l).ok()?;
                Some((
                    (o.as_str(), n.as_str()),
                    v.get("pipelines").cloned().unwrap_or(Value::Null),
                ))
            })
            .collect();
        let mut out = Vec::new();
        for (org, id, _, kind) in &nodes {
            if kind != "team" {
                continue;
            }
            // The chain root first, as merge_chain wants it.
            let mut chain = vec![id.as_str()];
            let mut cur = id.as_str();
            while let Some(Some(p)) = parents.get(&(org.as_str(), cur)) {
                chain.push(p);
                cur = p;
                if chain.len() > 64 {
                    break;
                }
            }
            chain.reverse();
            let wrapped: Vec<(&str, Value)> = chain
                .iter()
                .map(|n| {
                    let pl = layers
                        .get(&(org.as_str(), *n))
                        .cloned()
                        .unwrap_or(Value::Null);
                    (
                        *n,
                        if pl.is_null() {
                            json!({})
                        } else {
                            json!({"pipelines": pl})
                        },
                    )
                })
                .collect();
            let merged = merge_chain(wrapped.iter().map(|(n, l)| (*n, l)));
            out.push((
                org.clone(),
                id.clone(),
                merged.config.get("pipelines").cloned().unwrap_or(json!({})),
            ));
        }
        Ok(out)
    }

    /// Versions of a node's layer, newest first, each with its diff from the previous one.
    pub async fn config_history(&self, org: &str, node: &str) -> Result<Vec<HistoryEntry>> {
        if self.get_node(org, node).await?.is_none() {
            return Err(Error::not_found(format!("node {node}")));
        }
        let rows = sqlx::query(
            "SELECT version, layer, author, approved_by, message, created_at FROM cs_config_versions \
             WHERE org_id = $1 AND node_id = $2 ORDER BY version",
        )
        .bind(org)
        .bind(node)
        .fetch_all(&self.db.pool)
        .await?;
        let mut prev = json!({});
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let layer = json_col(r, "layer")?;
            out.push(HistoryEntry {
                version: r.try_get("version")?,
                author: r.try_get("author")?,
                approved_by: r.try_get("approved_by")?,
                message: r.try_get("message")?,
                created_at: ts(r, "created_at")?,
                diff: diff(&prev, &layer),
            });
            prev = layer;
        }
        out.reverse();
        Ok(out)
    }

    /// Replaces a node's layer. `expected` is the version the caller read (from `If-Match`);
    /// `None` skips the check. Writes touching protected paths become pending changes.
    /// The layer must already be validated.
    pub async fn put_layer(
        &self,
        actor: &Actor,
        org: &str,
        node: &str,
        expected: Option<i64>,
        layer: Value,
        message: Option<String>,
    ) -> Result<LayerWrite> {
        let mut otx = self.org_tx(org, actor).await?;
        let (current_version, current) = current_layer(&mut otx, node).await?;
        if let Some(expected) = expected
            && expected != current_version
        {
            return Err(Error::PreconditionFailed(format!(
                "the layer of {node} is at version {current_version}, not {expected}: read it again and retry"
            )));
        }
        let policy: Policy = serde_json::from_str(&otx.policy).unwrap_or_default();
        let touched = touched_protected(&current, &layer, &policy.protected_paths);
        if !touched.is_empty() {
            let change = ChangeRequest {
                id: new_id(),
                org_id: org.to_owned(),
                kind: "layer".into(),
                node_id: node.to_owned(),
                base_version: current_version,
                layer,
                touched,
                author: actor.id.clone(),
                author_subject: actor.subject.clone(),
                status: "pending".into(),
                created_at: rfc3339(now_ms()),
                decided_by: None,
                decided_at: None,
                reason: message,
            };
            propose(&mut otx, &change, &current).await?;
            otx.commit().await?;
            return Ok(LayerWrite::Pending(change));
        }
        let version = apply_layer(
            &mut otx,
            node,
            current_version,
            &current,
            layer,
            &actor.id,
            None,
            message,
        )
        .await?;
        otx.commit().await?;
        Ok(LayerWrite::Applied(version))
    }

    /// Restores an earlier version as a new one (through the same checks as any write).
    pub async fn rollback_layer(
        &self,
        actor: &Actor,
        org: &str,
        node: &str,
        to_version: i64,
        expected: Option<i64>,
    ) -> Result<LayerWrite> {
        let layer: Option<String> = sqlx::query_scalar(
            "SELECT layer FROM cs_config_versions WHERE org_id = $1 AND node_id = $2 AND version = $3",
        )
        .bind(org)
        .bind(node)
        .bind(to_version)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(layer) = layer else {
            if self.get_node(org, node).await?.is_none() {
                return Err(Error::not_found(format!("node {node}")));
            }
            return Err(Error::invalid(
                "/version",
                format!("{node} has no version {to_version}"),
            ));
        };
        let layer: Value = serde_json::from_str(&layer)
            .map_err(|e| Error::Internal(anyhow::anyhow!("corrupt layer: {e}")))?;
        self.put_layer(
            actor,
            org,
            node,
            expected,
            layer,
            Some(format!("rollback to version {to_version}")),
        )
        .await
    }
}

/// Records a pending change and audits the proposal.
pub(super) async fn propose(
    otx: &mut OrgTx,
    change: &ChangeRequest,
    current: &Value,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO cs_changes ({CHANGE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, NULL, NULL, $9, $10, $11)"
    ))
    .bind(&change.id)
    .bind(&change.org_id)
    .bind(&change.node_id)
    .bind(change.base_version)
    .bind(change.layer.to_string())
    .bind(json!(change.touched).to_string())
    .bind(&change.author)
    .bind(now_ms())
    .bind(change.reason.clone())
    .bind(&change.author_subject)
    .bind(&change.kind)
    .execute(&mut *otx.tx)
    .await?;
    otx.audit(
        "config.change_proposed",
        &format!("change/{}", change.id),
        Some(current),
        Some(&json!(change)),
    )
    .await
}

/// The node's current (version, layer) inside a write; 404 if the node does not exist.
pub(super) async fn current_layer(otx: &mut OrgTx, node: &str) -> Result<(i64, Value)> {
    let row = sqlx::query(
        "SELECT n.id, h.version, h.layer FROM cs_nodes n \
         LEFT JOIN cs_config_heads h ON h.org_id = n.org_id AND h.node_id = n.id \
         WHERE n.org_id = $1 AND n.id = $2",
    )
    .bind(&otx.org)
    .bind(node)
    .fetch_optional(&mut *otx.tx)
    .await?
    .ok_or_else(|| Error::not_found(format!("node {node}")))?;
    let version: Option<i64> = row.try_get("version")?;
    Ok(match version {
        Some(v) => (v, json_col(&row, "layer")?),
        None => (0, json!({})),
    })
}

/// Writes a new version, makes it current, re-indexes the node's routing identifiers (409 naming
/// the owner on a conflict) and audits the change.
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply_layer(
    otx: &mut OrgTx,
    node: &str,
    current_version: i64,
    current: &Value,
    layer: Value,
    author: &str,
    approved_by: Option<&str>,
    message: Option<String>,
) -> Result<LayerVersion> {
    let version = current_version + 1;
    let now = now_ms();
    let text = layer.to_string();
    sqlx::query(
        "INSERT INTO cs_config_versions (org_id, node_id, version, layer, author, approved_by, message, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&otx.org)
    .bind(node)
    .bind(version)
    .bind(&text)
    .bind(author)
    .bind(approved_by)
    .bind(message.clone())
    .bind(now)
    .execute(&mut *otx.tx)
    .await?;
    sqlx::query(
        "INSERT INTO cs_config_heads (org_id, node_id, version, layer) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id, node_id) DO UPDATE SET version = excluded.version, layer = excluded.layer",
    )
    .bind(&otx.org)
    .bind(node)
    .bind(version)
    .bind(&text)
    .execute(&mut *otx.tx)
    .await?;
    let may_assign_org_level = otx.actor.is_platform_admin() || author == Actor::PLATFORM_ADMIN;
    super::routing::replace_node_routes(
        otx,
        node,
        &routes_of_layer(&layer),
        may_assign_org_level,
        now,
    )
    .await?;
    otx.audit(
        "config.layer_updated",
        &format!("node/{node}"),
        Some(current),
        Some(&layer),
    )
    .await?;
    Ok(LayerVersion {
        org_id: otx.org.clone(),
        node_id: node.to_owned(),
        version,
        layer,
        author: Some(author.to_owned()),
        approved_by: approved_by.map(str::to_owned),
        message,
        created_at: Some(rfc3339(now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_etags_round_trip() {
        assert_eq!(parse_layer_etag(&layer_etag(7)), Some(7));
        assert_eq!(parse_layer_etag("W/\"v3\""), Some(3));
        assert_eq!(parse_layer_etag("\"e-abc\""), None);
        assert_eq!(parse_layer_etag("*"), None);
    }
}
