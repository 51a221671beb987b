//! Routing identifiers in config layers. The kinds and their validation are shared with the
//! orchestrator and live in `switchyard_common::routing`.

use serde_json::Value;
pub use switchyard_common::routing::*;

/// The identifiers a layer's `routing` section declares, normalised and de-duplicated. Assumes
/// the layer passed validation.
pub fn routes_of_layer(layer: &Value) -> Vec<(RouteKind, String)> {
    let mut out = Vec::new();
    let Some(routing) = layer.get("routing").and_then(Value::as_object) else {
        return out;
    };
    for (k, v) in routing {
        let Some(kind) = RouteKind::parse(k) else {
            continue;
        };
        let values: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            Value::Null => continue,
            other => vec![other],
        };
        for v in values {
            if let Some(s) = v.as_str()
                && let Ok(n) = normalise_route_value(kind, s)
                && !out.contains(&(kind, n.clone()))
            {
                out.push((kind, n));
            }
        }
    }
    out
}

/// An identifier of an event that some node owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub kind: RouteKind,
    pub org: &'a str,
    pub value: &'a str,
}

/// Which owner an event goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The index of the winning candidate.
    Best(usize),
    Unrouted(String),
    Ambiguous(String),
}

/// Picks the owner among the candidates a lookup found. Within an org (`scoped`: the caller named
/// it) the most specific identifier wins ([`RouteKind::ALL`] order; ties by value, so the answer
/// never depends on row order). Without an org (events of the shared apps), candidates from more
/// than one org are ambiguous and go to none, and a single org must hold an org-level identifier
/// (`slack_team`, `github_owner`: assigned by the platform admin) to own the event.
pub fn decide(scoped: bool, candidates: &[Candidate<'_>]) -> Decision {
    let best = (0..candidates.len()).min_by_key(|&i| {
        let c = &candidates[i];
        (c.kind.precedence(), c.org, c.value)
    });
    let Some(best) = best else {
        return Decision::Unrouted("no team owns any of the event's routing identifiers".into());
    };
    if !scoped {
        let mut orgs: Vec<&str> = candidates.iter().map(|c| c.org).collect();
        orgs.sort_unstable();
        orgs.dedup();
        if orgs.len() > 1 {
            let mut which: Vec<String> = candidates
                .iter()
                .map(|c| format!("{}={} in {}", c.kind.as_str(), c.value, c.org))
                .collect();
            which.sort();
            return Decision::Ambiguous(format!(
                "the identifiers match in several organisations ({}); routed to none of them",
                which.join(", ")
            ));
        }
        if !candidates.iter().any(|c| c.kind.is_org_level()) {
            let c = &candidates[best];
            return Decision::Unrouted(format!(
                "{} is routed in organisation {}, which has not been assigned this event's Slack workspace or GitHub account (slack_team / github_owner, assigned by the platform admin)",
                c.kind.as_str(),
                c.org
            ));
        }
    }
    Decision::Best(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn candidates() -> impl Strategy<Value = Vec<(RouteKind, String, String)>> {
        prop::collection::vec(
            (
                prop::sample::select(RouteKind::ALL.to_vec()),
                prop::sample::select(vec!["acme".to_owned(), "beta".to_owned()]),
                "[a-c]{1,2}",
            ),
            0..8,
        )
    }

    fn as_candidates(v: &[(RouteKind, String, String)]) -> Vec<Candidate<'_>> {
        v.iter()
            .map(|(kind, org, value)| Candidate {
                kind: *kind,
                org,
                value,
            })
            .collect()
    }

    proptest! {
        /// Within an org the winner is a most specific candidate, and the order the rows came in
        /// never changes the answer.
        #[test]
        fn the_most_specific_identifier_wins(mut raw in candidates()) {
            raw.retain(|(_, org, _)| org == "acme");
            let c = as_candidates(&raw);
            match decide(true, &c) {
                Decision::Best(i) => {
                    let min = c.iter().map(|x| x.kind.precedence()).min().unwrap();
                    prop_assert_eq!(c[i].kind.precedence(), min);
                    let mut reversed = raw.clone();
                    reversed.reverse();
                    let r = as_candidates(&reversed);
                    let Decision::Best(j) = decide(true, &r) else { panic!("reversed differs") };
                    prop_assert_eq!((r[j].kind, r[j].value), (c[i].kind, c[i].value));
                }
                other => prop_assert!(c.is_empty(), "{:?}", other),
            }
        }

        /// Without an org, an event never goes to one of two orgs, and only to an org that holds
        /// an org-level identifier among the matches.
        #[test]
        fn shared_app_events_need_one_assigned_org(raw in candidates()) {
            let c = as_candidates(&raw);
            let orgs: std::collections::BTreeSet<&str> = c.iter().map(|x| x.org).collect();
            match decide(false, &c) {
                Decision::Best(i) => {
                    prop_assert_eq!(orgs.len(), 1);
                    prop_assert!(c.iter().any(|x| x.kind.is_org_level() && x.org == c[i].org));
                }
                Decision::Ambiguous(_) => prop_assert!(orgs.len() > 1),
                Decision::Unrouted(_) => prop_assert!(orgs.len() <= 1),
            }
        }
    }

    #[test]
    fn extracts_layer_routes() {
        let layer = json!({"routing": {"service": ["api", "api", "web"], "github_repo": "Acme/Api", "slack_channel": null}});
        let routes = routes_of_layer(&layer);
        assert_eq!(routes.len(), 3);
        assert!(routes.contains(&(RouteKind::GithubRepo, "acme/api".into())));
    }
}
