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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_layer_routes() {
        let layer = json!({"routing": {"service": ["api", "api", "web"], "github_repo": "Acme/Api", "slack_channel": null}});
        let routes = routes_of_layer(&layer);
        assert_eq!(routes.len(), 3);
        assert!(routes.contains(&(RouteKind::GithubRepo, "acme/api".into())));
    }
}
