//! Layered configuration.
//!
//! The effective config of a node is the deep merge of the layers from the org root down to the
//! node: objects merge key by key, scalars and arrays replace, and `null` removes an inherited key.
//! Layers are checked by [`validate_layer`] (`validate.rs`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use switchyard_common::problem::escape_pointer_token;

mod agent;
mod validate;

pub use agent::BUILTIN_TOOLS;

pub use validate::validate_layer;

/// The top-level sections a layer may hold.
pub const SECTIONS: [&str; 7] = [
    "agent",
    "routing",
    "pipelines",
    "quotas",
    "notifications",
    "integrations",
    "incidents",
];

/// Result of merging a chain of layers.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub config: Value,
    /// For every leaf (JSON pointer), the node whose layer set it.
    pub sources: BTreeMap<String, String>,
}

/// Merges `(node_id, layer)` pairs, root first.
pub fn merge_chain<'a>(chain: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Effective {
    let mut config = Value::Object(Map::new());
    let mut sources = BTreeMap::new();
    for (node, layer) in chain {
        merge_into(&mut config, layer, "", node, &mut sources);
    }
    Effective { config, sources }
}

fn merge_into(
    target: &mut Value,
    layer: &Value,
    at: &str,
    node: &str,
    sources: &mut BTreeMap<String, String>,
) {
    let (Value::Object(t), Value::Object(l)) = (&mut *target, layer) else {
        return;
    };
    for (key, value) in l {
        let path = format!("{at}/{}", escape_pointer_token(key));
        match value {
            Value::Null => {
                t.remove(key);
                forget(sources, &path);
            }
            Value::Object(_) if matches!(t.get(key), Some(Value::Object(_))) => {
                let child = t.get_mut(key).expect("checked above");
                merge_into(child, value, &path, node, sources);
            }
            _ => {
                forget(sources, &path);
                let cleaned = strip_nulls(value);
                record(&cleaned, &path, node, sources);
                t.insert(key.clone(), cleaned);
            }
        }
    }
}

/// A null inside a freshly set object has nothing to delete; it is dropped.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn forget(sources: &mut BTreeMap<String, String>, path: &str) {
    let prefix = format!("{path}/");
    sources.retain(|p, _| p != path && !p.starts_with(&prefix));
}

fn record(v: &Value, path: &str, node: &str, sources: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                record(
                    v,
                    &format!("{path}/{}", escape_pointer_token(k)),
                    node,
                    sources,
                );
            }
        }
        _ => {
            sources.insert(path.to_owned(), node.to_owned());
        }
    }
}

pub use switchyard_common::config_diff::{Change, diff};

/// The protected pointers whose value differs between `old` and `new` (whatever changed them: the
/// value itself, something inside it, or a replaced parent).
pub fn touched_protected(old: &Value, new: &Value, protected: &[String]) -> Vec<String> {
    protected
        .iter()
        .filter(|p| says(old, p) != says(new, p))
        .cloned()
        .collect()
}

/// What a layer says about the value at `pointer`: the value itself, `Some(null)` when the layer
/// deletes it (a `null` there or at any ancestor, which `merge` treats as "delete this subtree"),
/// or `None` when the layer leaves it to its parents.
fn says<'a>(layer: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut cur = layer;
    for token in pointer.split('/').skip(1) {
        if cur.is_null() {
            return Some(cur);
        }
        let key = token.replace("~1", "/").replace("~0", "~");
        cur = match cur {
            Value::Object(m) => m.get(&key)?,
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

use super::secrets::is_secret_key;

pub const REDACTED: &str = "<redacted>";

/// Replaces every secret-looking value under `integrations` with a marker.
pub fn redact_secrets(config: &mut Value) {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    if is_secret_key(k) && !v.is_null() {
                        *v = Value::String(REDACTED.into());
                    } else {
                        walk(v);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if let Some(i) = config.get_mut("integrations") {
        walk(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_objects_replaces_scalars_and_arrays_null_deletes() {
        let org = json!({"agent": {"model": "m1", "tools": ["a", "b"], "prompts": {"system": "s"}}, "quotas": {"concurrent_runs": 2}});
        let group = json!({"agent": {"tools": ["c"], "prompts": {"triage": "t"}}, "quotas": null});
        let team = json!({"agent": {"model": "m2", "prompts": {"system": null}}});
        let e = merge_chain([("org", &org), ("group", &group), ("team", &team)]);
        assert_eq!(
            e.config,
            json!({"agent": {"model": "m2", "tools": ["c"], "prompts": {"triage": "t"}}})
        );
        assert_eq!(e.sources["/agent/model"], "team");
        assert_eq!(e.sources["/agent/tools"], "group");
        assert_eq!(e.sources["/agent/prompts/triage"], "group");
        assert!(!e.sources.contains_key("/agent/prompts/system"));
        assert!(!e.sources.keys().any(|k| k.starts_with("/quotas")));
    }

    #[test]
    fn replacing_an_object_with_a_scalar_forgets_its_leaves() {
        let a = json!({"notifications": {"slack": {"channel": "x"}}});
        let b = json!({"notifications": {"slack": "off"}});
        let e = merge_chain([("a", &a), ("b", &b)]);
        assert_eq!(e.config, json!({"notifications": {"slack": "off"}}));
        assert_eq!(e.sources.len(), 1);
        assert_eq!(e.sources["/notifications/slack"], "b");
    }

    #[test]
    fn diffs_layers() {
        let old = json!({"agent": {"model": "a", "tools": ["x"]}, "quotas": {}});
        let new = json!({"agent": {"model": "b", "tools": ["x"]}, "routing": {"service": "api"}});
        let d = diff(&old, &new);
        let paths: Vec<(&str, &str)> = d.iter().map(|c| (c.op, c.path.as_str())).collect();
        assert_eq!(
            paths,
            vec![
                ("replace", "/agent/model"),
                ("remove", "/quotas"),
                ("add", "/routing")
            ]
        );
    }

    #[test]
    fn detects_protected_paths() {
        let protected = vec!["/agent/prompts".to_owned(), "/agent/tools".to_owned()];
        let old = json!({"agent": {"prompts": {"system": "a"}, "model": "m"}});
        assert!(
            touched_protected(
                &old,
                &json!({"agent": {"prompts": {"system": "a"}, "model": "n"}}),
                &protected
            )
            .is_empty()
        );
        assert_eq!(
            touched_protected(
                &old,
                &json!({"agent": {"prompts": {"system": "b"}, "model": "m"}}),
                &protected
            ),
            vec!["/agent/prompts"]
        );
        // Removing the whole agent section touches the protected path beneath it that had a value.
        assert_eq!(
            touched_protected(&old, &json!({}), &protected),
            vec!["/agent/prompts"]
        );
        // Adding an agent section without prompts touches nothing protected.
        assert!(
            touched_protected(&json!({}), &json!({"agent": {"model": "m"}}), &protected).is_empty()
        );
        assert_eq!(
            touched_protected(&json!({}), &json!({"agent": {"tools": ["t"]}}), &protected),
            vec!["/agent/tools"]
        );
        // A null deletes the inherited value, at the path or at any ancestor: both touch it.
        assert_eq!(
            touched_protected(&json!({}), &json!({"agent": null}), &protected),
            protected
        );
        assert_eq!(
            touched_protected(&json!({}), &json!({"agent": {"prompts": null}}), &protected),
            vec!["/agent/prompts"]
        );
        assert_eq!(
            touched_protected(&json!({"agent": null}), &json!({"agent": null}), &protected),
            Vec::<String>::new(),
            "an unchanged deletion touches nothing"
        );
    }

    #[test]
    fn redacts_integration_secrets_only() {
        let mut c = json!({"integrations": {"slack": {"bot_token": "xoxb", "channel": "C1", "nested": [{"api_key": "k"}]}}, "agent": {"token_budget": 5}});
        redact_secrets(&mut c);
        assert_eq!(c["integrations"]["slack"]["bot_token"], REDACTED);
        assert_eq!(c["integrations"]["slack"]["channel"], "C1");
        assert_eq!(c["integrations"]["slack"]["nested"][0]["api_key"], REDACTED);
        assert_eq!(c["agent"]["token_budget"], 5);
    }

    #[test]
    fn validation_points_at_offending_fields() {
        let errs = validate_layer(&json!({"quotas": {"concurrent_runs": 0}})).unwrap_err();
        assert_eq!(errs[0].pointer, "/quotas/concurrent_runs");
        assert!(validate_layer(&json!({"agent": {"model": "m", "tools": ["prometheus_query"]}, "quotas": {"concurrent_runs": 3}, "routing": {"service": ["api"]}, "pipelines": {"ingest": {"schedule": "*/15 * * * *"}}})).is_ok());
        let errs = validate_layer(&json!({"bogus": 1, "agent": {"model": 5, "temperature": 9}, "quotas": {"concurrent_runs": -1}, "routing": {"nope": "x", "alert_label": "missing-equals"}, "pipelines": {"Bad Name": {"schedule": "61 * * * *"}}})).unwrap_err();
        let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        for expected in [
            "/bogus",
            "/agent/model",
            "/agent/temperature",
            "/quotas/concurrent_runs",
            "/routing/nope",
            "/routing/alert_label",
            "/pipelines/Bad Name",
            "/pipelines/Bad Name/schedule",
        ] {
            assert!(
                pointers.contains(&expected),
                "{expected} missing from {pointers:?}"
            );
        }
        assert_eq!(validate_layer(&json!([1])).unwrap_err()[0].pointer, "");
    }
}
