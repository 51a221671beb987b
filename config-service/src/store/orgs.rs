//! Organisations and the node tree.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_common::time::now_ms;

use super::{Actor, ArchivedNode, Node, Org, Store, TreeNode, ts};
use crate::error::{Error, Result, on_unique};

const NODE_COLS: &str = "org_id, id, parent_id, kind, name, created_at, updated_at";

fn org_row(r: &AnyRow) -> Result<Org> {
    Ok(Org {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_at: ts(r, "created_at")?,
    })
}

pub(crate) fn node_row(r: &AnyRow) -> Result<Node> {
    Ok(Node {
        org_id: r.try_get("org_id")?,
        id: r.try_get("id")?,
        parent_id: r.try_get("parent_id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

/// (version, layer, author, approved_by, message, created_at) of one layer version.
type VersionRow = (i64, String, String, Option<String>, Option<String>, i64);

/// Fields of a node that can change.
#[derive(Debug, Default, Clone)]
pub struct NodePatch {
    pub name: Option<String>,
    /// New parent; `None` leaves it as it is.
    pub parent_id: Option<String>,
}

impl Store {
    /// Creates an org and its root node. 409 if the id is taken.
    pub async fn create_org(&self, actor: &Actor, id: &str, name: &str) -> Result<Org> {
        let (_guard, mut tx) = self.begin().await?;
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO cs_orgs (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(id)
        .bind(name)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            return Err(Error::conflict(
                "org-exists",
                format!("organisation {id} already exists"),
            ));
        }
        sqlx::query(
            "INSERT INTO cs_nodes (org_id, id, parent_id, kind, name, created_at, updated_at) VALUES ($1, $1, NULL, 'org', $2, $3, $3)",
        )
        .bind(id)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let org = Org {
            id: id.to_owned(),
            name: name.to_owned(),
            created_at: switchyard_common::time::rfc3339(now),
        };
        let mut otx = super::OrgTx {
            tx,
            _guard,
            org: id.to_owned(),
            seq: 0,
            head: String::new(),
            start_seq: 0,
            policy: String::new(),
            actor: actor.clone(),
            source_id: None,
        };
        otx.audit("org.created", &format!("org/{id}"), None, Some(&json!(org)))
            .await?;
        otx.commit().await?;
        Ok(org)
    }

    pub async fn get_org(&self, id: &str) -> Result<Option<Org>> {
        let row = sqlx::query("SELECT id, name, created_at FROM cs_orgs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(org_row).transpose()
    }

    /// All orgs, or only `only` when given (an org admin sees its own).
    pub async fn list_orgs(&self, only: Option<&str>) -> Result<Vec<Org>> {
        let rows = match only {
            Some(id) => {
                sqlx::query("SELECT id, name, created_at FROM cs_orgs WHERE id = $1")
                    .bind(id)
                    .fetch_all(&self.db.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT id, name, created_at FROM cs_orgs ORDER BY id")
                    .fetch_all(&self.db.pool)
                    .await?
            }
        };
        rows.iter().map(org_row).collect()
    }

    pub async fn get_node(&self, org: &str, id: &str) -> Result<Option<Node>> {
        let row = sqlx::query(&format!(
            "SELECT {NODE_COLS} FROM cs_nodes WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.as_ref().map(node_row).transpose()
    }

    pub async fn list_nodes(&self, org: &str) -> Result<Vec<Node>> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLS} FROM cs_nodes WHERE org_id = $1 ORDER BY id"
        ))
        .bind(org)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(node_row).collect()
    }

    /// The org's nodes as a tree under its root.
    pub async fn node_tree(&self, org: &str) -> Result<TreeNode> {
        let nodes = self.list_nodes(org).await?;
        fn build(id: &str, nodes: &[Node]) -> Vec<TreeNode> {
            nodes
                .iter()
                .filter(|n| n.parent_id.as_deref() == Some(id))
                .map(|n| TreeNode {
                    node: n.clone(),
                    children: build(&n.id, nodes),
                })
                .collect()
        }
        let root = nodes
            .iter()
            .find(|n| n.parent_id.is_none())
            .cloned()
            .ok_or_else(|| Error::not_found(format!("organisation {org}")))?;
        Ok(TreeNode {
            children: build(&root.id, &nodes),
            node: root,
        })
    }

    /// Creates a group or team under `parent` (the org root when `None`).
    pub async fn create_node(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        parent: Option<&str>,
        kind: &str,
        name: &str,
    ) -> Result<Node> {
        let mut otx = self.org_tx(org, actor).await?;
        let parent = parent.unwrap_or(org);
        let parent_kind: Option<String> =
            sqlx::query_scalar("SELECT kind FROM cs_nodes WHERE org_id = $1 AND id = $2")
                .bind(org)
                .bind(parent)
                .fetch_optional(&mut *otx.tx)
                .await?;
        match parent_kind.as_deref() {
            None => {
                return Err(Error::invalid(
                    "/parent_id",
                    format!("parent node {parent} does not exist"),
                ));
            }
            Some("team") => {
                return Err(Error::invalid(
                    "/parent_id",
                    format!("{parent} is a team; only groups and the org can have children"),
                ));
            }
            _ => {}
        }
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO cs_nodes ({NODE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (org_id, id) DO NOTHING RETURNING {NODE_COLS}"
        ))
        .bind(org)
        .bind(id)
        .bind(parent)
        .bind(kind)
        .bind(name)
        .bind(now)
        .fetch_optional(&mut *otx.tx)
        .await?
        .ok_or_else(|| {
            Error::conflict("node-exists", format!("node {id} already exists in {org}"))
        })?;
        let node = node_row(&row)?;
        otx.audit(
            "node.created",
            &format!("node/{id}"),
            None,
            Some(&json!(node)),
        )
        .await?;
        otx.commit().await?;
        Ok(node)
    }

    /// Renames and/or moves a node. A move that would create a cycle is refused.
    pub async fn update_node(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        patch: NodePatch,
    ) -> Result<Node> {
        let mut otx = self.org_tx(org, actor).await?;
        let row = sqlx::query(&format!(
            "SELECT {NODE_COLS} FROM cs_nodes WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *otx.tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("node {id}")))?;
        let before = node_row(&row)?;
        if before.kind == "org" && patch.parent_id.is_some() {
            return Err(Error::invalid(
                "/parent_id",
                "the org's root node cannot move",
            ));
        }
        if let Some(parent) = &patch.parent_id {
            // The new parent's ancestors (itself included) must not contain the node.
            let ancestors: Vec<(String, String)> = sqlx::query_as(
                "WITH RECURSIVE up(id, parent_id, kind) AS ( \
                   SELECT id, parent_id, kind FROM cs_nodes WHERE org_id = $1 AND id = $2 \
                   UNION ALL \
                   SELECT n.id, n.parent_id, n.kind FROM cs_nodes n JOIN up ON n.org_id = $1 AND n.id = up.parent_id) \
                 SELECT id, kind FROM up",
            )
            .bind(org)
            .bind(parent)
            .fetch_all(&mut *otx.tx)
            .await?;
            match ancestors.first() {
                None => {
                    return Err(Error::invalid(
                        "/parent_id",
                        format!("parent node {parent} does not exist"),
                    ));
                }
                Some((_, kind)) if kind == "team" => {
                    return Err(Error::invalid(
                        "/parent_id",
                        format!("{parent} is a team; only groups and the org can have children"),
                    ));
                }
                _ => {}
            }
            if ancestors.iter().any(|(a, _)| a == id) {
                return Err(Error::invalid(
                    "/parent_id",
                    format!("moving {id} under {parent} would create a cycle"),
                ));
            }
        }
        let row = sqlx::query(&format!(
            "UPDATE cs_nodes SET name = $3, parent_id = $4, updated_at = $5 \
             WHERE org_id = $1 AND id = $2 RETURNING {NODE_COLS}"
        ))
        .bind(org)
        .bind(id)
        .bind(patch.name.as_deref().unwrap_or(&before.name))
        .bind(patch.parent_id.as_deref().or(before.parent_id.as_deref()))
        .bind(now_ms())
        .fetch_one(&mut *otx.tx)
        .await?;
        let after = node_row(&row)?;
        otx.audit(
            "node.updated",
            &format!("node/{id}"),
            Some(&json!(before)),
            Some(&json!(after)),
        )
        .await?;
        otx.commit().await?;
        Ok(after)
    }

    /// Deletes a node with no children: it is archived first with its whole layer history (see
    /// [`Store::archived_nodes`]), then its layers, routes and pending changes go, and its tokens are
    /// revoked. The audit entry keeps what it was. The id can be used again.
    pub async fn delete_node(&self, actor: &Actor, org: &str, id: &str) -> Result<()> {
        let mut otx = self.org_tx(org, actor).await?;
        let row = sqlx::query(&format!(
            "SELECT {NODE_COLS} FROM cs_nodes WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *otx.tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("node {id}")))?;
        let node = node_row(&row)?;
        if node.kind == "org" {
            return Err(Error::conflict(
                "root-node",
                "the org's root node cannot be deleted",
            ));
        }
        let children: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM cs_nodes WHERE org_id = $1 AND parent_id = $2",
        )
        .bind(org)
        .bind(id)
        .fetch_one(&mut *otx.tx)
        .await?;
        if children > 0 {
            return Err(Error::conflict(
                "node-has-children",
                format!("node {id} has {children} children; move or delete them first"),
            ));
        }
        let layer: Option<String> = sqlx::query_scalar(
            "SELECT layer FROM cs_config_heads WHERE org_id = $1 AND node_id = $2",
        )
        .bind(org)
        .bind(id)
        .fetch_optional(&mut *otx.tx)
        .await?;
        let now = now_ms();
        // Archive first: the node and every version of its layer, so nothing is lost.
        let versions: Vec<VersionRow> = sqlx::query_as(
            "SELECT version, layer, author, approved_by, message, created_at FROM cs_config_versions \
             WHERE org_id = $1 AND node_id = $2 ORDER BY version",
        )
        .bind(org)
        .bind(id)
        .fetch_all(&mut *otx.tx)
        .await?;
        let versions: Vec<serde_json::Value> = versions
            .into_iter()
            .map(|(version, layer, author, approved_by, message, at)| {
                json!({
                    "version": version,
                    "layer": serde_json::from_str::<serde_json::Value>(&layer).unwrap_or(serde_json::Value::Null),
                    "author": author,
                    "approved_by": approved_by,
                    "message": message,
                    "created_at": switchyard_common::time::rfc3339(at),
                })
            })
            .collect();
        sqlx::query(
            "INSERT INTO cs_node_archive (id, org_id, node_id, archived_at, archived_by, node, versions) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(switchyard_common::ids::new_id())
        .bind(org)
        .bind(id)
        .bind(now)
        .bind(&otx.actor.id)
        .bind(json!(node).to_string())
        .bind(serde_json::Value::Array(versions).to_string())
        .execute(&mut *otx.tx)
        .await?;
        sqlx::query("UPDATE cs_tokens SET revoked_at = $3 WHERE org_id = $1 AND node_id = $2 AND revoked_at IS NULL")
            .bind(org)
            .bind(id)
            .bind(now)
            .execute(&mut *otx.tx)
            .await?;
        super::routing::bump_routing_version(&mut otx).await?;
        for table in [
            "cs_changes",
            "cs_routes",
            "cs_config_heads",
            "cs_config_versions",
        ] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE org_id = $1 AND node_id = $2"
            ))
            .bind(org)
            .bind(id)
            .execute(&mut *otx.tx)
            .await?;
        }
        sqlx::query("DELETE FROM cs_nodes WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(&mut *otx.tx)
            .await
            .map_err(|e| on_unique(e, "node-in-use", "node is still referenced"))?;
        let layer: Option<serde_json::Value> = layer.and_then(|l| serde_json::from_str(&l).ok());
        otx.audit(
            "node.deleted",
            &format!("node/{id}"),
            Some(&json!({"node": node, "layer": layer})),
            None,
        )
        .await?;
        otx.commit().await?;
        Ok(())
    }

    /// Archived (deleted or deprovisioned) nodes of an org, newest first.
    pub async fn archived_nodes(&self, org: &str) -> Result<Vec<ArchivedNode>> {
        let rows = sqlx::query(
            "SELECT id, node_id, archived_at, archived_by, node, versions FROM cs_node_archive WHERE org_id = $1 ORDER BY id DESC LIMIT 500",
        )
        .bind(org)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ArchivedNode {
                    id: r.try_get("id")?,
                    node_id: r.try_get("node_id")?,
                    archived_at: ts(r, "archived_at")?,
                    archived_by: r.try_get("archived_by")?,
                    node: super::json_col(r, "node")?,
                    versions: super::json_col(r, "versions")?,
                })
            })
            .collect()
    }
}
