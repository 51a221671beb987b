//! The routing index: identifiers to the node that owns them, unique per org.

use serde_json::json;
use sqlx::Row;

use super::{Lookup, OrgTx, Route, RouteMatch, Store};
use crate::domain::routing::{Candidate, Decision, RouteKind, decide};
use crate::error::{Error, Result};

/// Replaces the node's identifiers with `routes`. An identifier another node of the org owns
/// answers 409 naming that node; one another org owns (only org-level identifiers are unique
/// across orgs) answers 409 without naming the other tenant. The unique keys make this race-free.
///
/// Adding an org-level identifier (`slack_team`, `github_owner`) needs `may_assign_org_level`
/// (the platform admin wrote or approved the change): an org admin could otherwise claim another
/// tenant's Slack workspace and receive its events through the shared app. Releasing one is
/// anyone's right.
pub(crate) async fn replace_node_routes(
    otx: &mut OrgTx,
    node: &str,
    routes: &[(RouteKind, String)],
    may_assign_org_level: bool,
    now: i64,
) -> Result<()> {
    if !may_assign_org_level {
        let held: Vec<(String, String)> =
            sqlx::query_as("SELECT kind, value FROM cs_routes WHERE org_id = $1 AND node_id = $2")
                .bind(&otx.org)
                .bind(node)
                .fetch_all(&mut *otx.tx)
                .await?;
        if let Some((kind, value)) = routes.iter().find(|(k, v)| {
            k.is_org_level() && !held.iter().any(|(hk, hv)| hk == k.as_str() && hv == v)
        }) {
            return Err(Error::Forbidden(format!(
                "routing.{} names a whole {} and is assigned by the platform admin only; ask them to assign {value} to this organisation",
                kind.as_str(),
                if *kind == RouteKind::SlackTeam {
                    "Slack workspace"
                } else {
                    "GitHub account"
                },
            )));
        }
    }
    bump_routing_version(otx).await?;
    sqlx::query("DELETE FROM cs_routes WHERE org_id = $1 AND node_id = $2")
        .bind(&otx.org)
        .bind(node)
        .execute(&mut *otx.tx)
        .await?;
    for (kind, value) in routes {
        // No conflict target: both the per-org key and the cross-org index of org-level kinds.
        let inserted = sqlx::query(
            "INSERT INTO cs_routes (org_id, kind, value, node_id, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
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
            let owner: Option<(String, String)> = sqlx::query_as(
                "SELECT org_id, node_id FROM cs_routes WHERE kind = $1 AND value = $2 \
                 ORDER BY CASE WHEN org_id = $3 THEN 0 ELSE 1 END LIMIT 1",
            )
            .bind(kind.as_str())
            .bind(value)
            .bind(&otx.org)
            .fetch_optional(&mut *otx.tx)
            .await?;
            let mut extensions = serde_json::Map::new();
            extensions.insert("kind".into(), json!(kind.as_str()));
            extensions.insert("value".into(), json!(value));
            let detail = match owner {
                Some((org, owner)) if org == otx.org => {
                    extensions.insert("owner".into(), json!(owner));
                    format!(
                        "routing identifier {}={value} is already owned by node {owner}",
                        kind.as_str()
                    )
                }
                _ => format!(
                    "routing identifier {}={value} is assigned to another organisation",
                    kind.as_str()
                ),
            };
            return Err(Error::Conflict {
                code: "routing-conflict",
                detail,
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
    /// Within an org the most specific identifier wins ([`RouteKind::ALL`] order). Without `org`
    /// (events of the platform's shared apps), the identifiers are a claim made by whoever sent
    /// the event, so two rules keep one tenant from receiving another's events:
    /// - matches in more than one org are ambiguous and resolved in favour of none;
    /// - the org must be the one the platform admin assigned the event's Slack workspace or
    ///   GitHub account to (an org-level identifier); a channel or repository claimed by an org
    ///   without that assignment routes nothing.
    pub async fn lookup_route(
        &self,
        org: Option<&str>,
        identifiers: &[(RouteKind, String)],
    ) -> Result<Lookup> {
        if identifiers.is_empty() {
            return Ok(Lookup::Unrouted(
                "the event carries no routing identifier".into(),
            ));
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
        let candidates: Vec<Candidate> = matches
            .iter()
            .map(|(kind, m)| Candidate {
                kind: *kind,
                org: &m.org_id,
                value: &m.matched_value,
            })
            .collect();
        Ok(match decide(org.is_some(), &candidates) {
            Decision::Best(i) => Lookup::Matched(matches.swap_remove(i).1),
            Decision::Unrouted(why) => Lookup::Unrouted(why),
            Decision::Ambiguous(why) => Lookup::Ambiguous(why),
        })
    }
}
