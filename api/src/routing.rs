//! The routing lookup: `POST /api/v1/internal/routing/lookup` and
//! `GET /api/v1/internal/routing/version`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One identifier value, or several of the same kind (an alert has many labels).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// Restrict the lookup to this org. Without it, org-level identifiers (`slack_team`,
    /// `github_owner`) choose the org.
    pub org_id: Option<String>,
    /// Identifier kind to value(s), e.g. `{"slack_team": "T1", "slack_channel": "C1"}`.
    pub identifiers: BTreeMap<String, OneOrMany>,
}

impl LookupRequest {
    /// The request for `(kind, value)` pairs, values of one kind gathered.
    pub fn new(org_id: Option<&str>, identifiers: &[(String, String)]) -> Self {
        let mut ids: BTreeMap<String, OneOrMany> = BTreeMap::new();
        for (k, v) in identifiers {
            match ids.get_mut(k) {
                Some(OneOrMany::Many(a)) => a.push(v.clone()),
                Some(one) => {
                    let OneOrMany::One(first) = std::mem::replace(one, OneOrMany::Many(vec![]))
                    else {
                        unreachable!("matched above")
                    };
                    *one = OneOrMany::Many(vec![first, v.clone()]);
                }
                None => {
                    ids.insert(k.clone(), OneOrMany::One(v.clone()));
                }
            }
        }
        Self {
            org_id: org_id.map(str::to_owned),
            identifiers: ids,
        }
    }
}

/// A routing match: the config-service's lookup answer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, ToSchema)]
pub struct RouteMatch {
    pub org_id: String,
    /// The node that owns the identifier (normally a team).
    pub team_node_id: String,
    /// `team`, `group` or `org` (an org-level identifier is owned by the org's root).
    pub node_kind: String,
    /// The identifier kind that decided the match.
    pub matched_by: String,
    pub matched_value: String,
}

/// What a routing lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Matched(RouteMatch),
    /// Nobody owns the identifiers (the reason says what was missing).
    Unrouted(String),
    /// The identifiers match in several organisations.
    Ambiguous(String),
}

/// The routing table's version: it moves whenever a route changes (caches key on it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoutingVersion {
    /// Changes whenever any routing identifier is added or removed.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_one_kind_are_gathered() {
        let ids = [
            ("alert_label".to_owned(), "a=1".to_owned()),
            ("service".to_owned(), "api".to_owned()),
            ("alert_label".to_owned(), "b=2".to_owned()),
            ("alert_label".to_owned(), "c=3".to_owned()),
        ];
        let r = LookupRequest::new(Some("acme"), &ids);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"org_id": "acme", "identifiers": {"alert_label": ["a=1", "b=2", "c=3"], "service": "api"}})
        );
    }
}
