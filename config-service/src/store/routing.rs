//! The routing index: identifiers to the node that owns them, unique per org.

use serde_json::json;
use sqlx::Row;

use super::{OrgTx, Route, RouteMatch, Store};
use crate::domain::routing::RouteKind;
use crate::error::{Error, Result};

/// Replaces the node's identifiers with `routes`. An identifier another node of the org owns
/// answers 409 naming that node; the unique key (org, kind, value) makes this race-free.
pub(crate) async fn replace_node_routes(
    otx: &mut OrgTx,
    node: &str,
    routes: &[(RouteKind, String)],
    now: i64,
) -> Result<()> {
    bump_routing_version(otx).await?;
    sqlx::query("DELETE FROM cs_routes WHERE org_id = $1 AND node_id = $2")
        .bind(&otx.org)
        .bind(node)
        .execute(&mut *otx.tx)
        .await?;
    for (kind, value) in routes {
        let inserted = sqlx::query(
            "INSERT INTO cs_routes (org_id, kind, value, node_id, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, kind, value) DO NOTHING",
        )
        .bind(&otx.org)
        .bind(kind.as_str())
        .bind(value)
        .bind(node)
        .bind(now)
        .execute(&mut *otx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let owner: Option<String> = sqlx::query_scalar(
                "SELECT node_id FROM cs_routes WHERE org_id = $1 AND kind = $2 AND value = $3",
            )
            .bind(&otx.org)
            .bind(kind.as_str())
            .bind(value)
            .fetch_optional(&mut *otx.tx)
            .await?;
            let owner = owner.unwrap_or_else(|| "another node".into());
            let mut extensions = serde_json::Map::new();
            extensions.insert("owner".into(), json!(owner));
            extensions.insert("kind".into(), json!(kind.as_str()));
            extensions.insert("value".into(), json!(value));
            return Err(Error::Conflict {
                code: "routing-conflict",
                detail: format!(
                    "routing identifier {}={value} is already owned by node {owner}",
                    kind.as_str()
                ),
                extensions,
            });
        }
    }
    Ok(())
}

/// Moves the routing version on, inside the change's transaction.
pub(crate) async fn bump_routing_version(otx: &mut OrgTx) -> Result<()> {
    sqlx::query("UPDATE cs_routing_version SET version = version + 1 WHERE id = 1")
        .execute(&mut *otx.tx)
        .await?;
    Ok(())
}

impl Store {
    /// The current routing version: changes whenever any identifier is added or removed.
    pub async fn routing_version(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT version FROM cs_routing_version WHERE id = 1")
                .fetch_one(&self.db.pool)
                .await?,
        )
    }

    /// The org's routing table, optionally filtered by kind and/or value.
    pub async fn list_routes(
        &self,
        org: &str,
        kind: Option<&str>,
        value: Option<&str>,
    ) -> Result<Vec<Route>> {
        let rows = sqlx::query(
            "SELECT org_id, kind, value, node_id FROM cs_routes \
             WHERE org_id = $1 AND ($2 = '' OR kind = $2) AND ($3 = '' OR value = $3) \
             ORDER BY kind, value LIMIT 1000",
        )
        .bind(org)
        .bind(kind.unwrap_or(""))
        .bind(value.unwrap_or(""))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Route {
                    org_id: r.try_get("org_id")?,
                    kind: r.try_get("kind")?,
                    value: r.try_get("value")?,
                    node_id: r.try_get("node_id")?,
                })
            })
            .collect()
    }

    /// Finds the node owning an event's identifiers with one indexed query.
    ///
    /// Precedence: within an org, the most specific identifier wins ([`RouteKind::ALL`] order).
    /// Without `org`, org-level identifiers (`slack_team`, `github_owner`) choose the org; failing
    /// that, the best match decides, and a best match present in several orgs answers 409.
    pub async fn lookup_route(
        &self,
        org: Option<&str>,
        identifiers: &[(RouteKind, String)],
    ) -> Result<Option<RouteMatch>> {
        if identifiers.is_empty() {
            return Ok(None);
        }
        let mut sql = String::from(
            "SELECT r.org_id, r.kind, r.value, r.node_id, n.kind AS node_kind FROM cs_routes r \
             JOIN cs_nodes n ON n.org_id = r.org_id AND n.id = r.node_id WHERE (",
        );
        for i in 0..identifiers.len() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!(
                "(r.kind = ${} AND r.value = ${})",
                2 * i + 1,
                2 * i + 2
            ));
        }
        sql.push(')');
        if org.is_some() {
            sql.push_str(&format!(" AND r.org_id = ${}", 2 * identifiers.len() + 1));
        }
        let mut q = sqlx::query(&sql);
        for (k, v) in identifiers {
            q = q.bind(k.as_str()).bind(v.as_str());
        }
        if let Some(org) = org {
            q = q.bind(org);
        }
        let rows = q.fetch_all(&self.db.pool).await?;
        let mut matches: Vec<(RouteKind, RouteMatch)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            let Some(k) = RouteKind::parse(&kind) else {
                continue;
            };
            matches.push((
                k,
                RouteMatch {
                    org_id: r.try_get("org_id")?,
                    team_node_id: r.try_get("node_id")?,
                    node_kind: r.try_get("node_kind")?,
                    matched_by: kind,
                    matched_value: r.try_get("value")?,
                },
            ));
        }
        if org.is_none() {
            let mut org_level: Vec<&str> = matches
                .iter()
                .filter(|(k, _)| k.is_org_level())
                .map(|(_, m)| m.org_id.as_str())
                .collect();
            org_level.sort_unstable();
            org_level.dedup();
            if let [only] = org_level[..] {
                let only = only.to_owned();
                matches.retain(|(_, m)| m.org_id == only);
            }
        }
        matches.sort_by_key(|(k, m)| (k.precedence(), m.org_id.clone()));
        let Some((best_kind, best)) = matches.first() else {
            return Ok(None);
        };
        let ambiguous: Vec<&str> = matches
            .iter()
            .filter(|(k, m)| k == best_kind && m.matched_value == best.matched_value)
            .map(|(_, m)| m.org_id.as_str())
            .collect();
        if ambiguous.len() > 1 {
            return Err(Error::conflict(
                "ambiguous-route",
                format!(
                    "{}={} is routed in several organisations ({}); pass org_id or an org-level identifier",
                    best.matched_by,
                    best.matched_value,
                    ambiguous.join(", ")
                ),
            ));
        }
        Ok(Some(best.clone()))
    }
}
