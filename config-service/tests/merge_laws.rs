//! Property tests of layered configuration: the laws every effective config obeys, whatever the
//! layers (bounded JSON with colliding keys, nulls included).

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchyard_config_service::domain::config::{diff, merge_chain};

/// JSON values of bounded depth over a few keys, so layers collide often.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        "[a-c]{0,2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn layer() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-d]", value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A null as an object member, reached through objects only (inside an array a null is data: the
/// array replaces the inherited one whole).
fn has_null_member(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().any(|v| v.is_null() || has_null_member(v)),
        _ => false,
    }
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().any(has_null),
        Value::Array(a) => a.iter().any(has_null),
        _ => false,
    }
}

/// Every (pointer, leaf) of a value: scalars, arrays and empty objects.
fn leaves(v: &Value, at: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                leaves(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        other => out.push((at, other.clone())),
    }
}

fn merged(layers: &[&Value]) -> Value {
    let named: Vec<(String, &Value)> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("n{i}"), *l))
        .collect();
    merge_chain(named.iter().map(|(n, l)| (n.as_str(), *l))).config
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A null deletes; it never survives into the effective config as a member.
    #[test]
    fn the_result_has_no_null_members(a in layer(), b in layer(), c in layer()) {
        prop_assert!(!has_null_member(&merged(&[&a, &b, &c])));
    }

    /// An empty layer anywhere changes nothing.
    #[test]
    fn an_empty_layer_is_the_identity(a in layer(), b in layer()) {
        let empty = json!({});
        let base = merged(&[&a, &b]);
        prop_assert_eq!(&merged(&[&empty, &a, &b]), &base);
        prop_assert_eq!(&merged(&[&a, &empty, &b]), &base);
        prop_assert_eq!(&merged(&[&a, &b, &empty]), &base);
    }

    /// Merging is a left fold: the chain equals merging the last layer over the rest's result.
    #[test]
    fn merging_is_a_left_fold(a in layer(), b in layer(), c in layer()) {
        let ab = merged(&[&a, &b]);
        prop_assert_eq!(merged(&[&a, &b, &c]), merged(&[&ab, &c]));
    }

    /// A layer without nulls merged over itself is itself.
    #[test]
    fn a_null_free_layer_is_idempotent(a in layer()) {
        prop_assume!(!has_null(&a));
        prop_assert_eq!(merged(&[&a, &a]), merged(&[&a]));
    }

    /// The nearest layer wins: every leaf it sets (nulls aside) is in the result as it set it.
    #[test]
    fn the_nearest_layer_wins(a in layer(), b in layer()) {
        let out = merged(&[&a, &b]);
        let mut set = Vec::new();
        leaves(&b, String::new(), &mut set);
        for (at, v) in set {
            if has_null(&v) || at.is_empty() {
                continue;
            }
            match &v {
                Value::Object(m) if m.is_empty() => prop_assert!(out.pointer(&at).is_some_and(Value::is_object)),
                _ => prop_assert_eq!(out.pointer(&at), Some(&v), "at {}", at),
            }
        }
    }

    /// Every leaf of the effective config names the node that set it, and that node's layer
    /// holds that value.
    #[test]
    fn every_leaf_has_its_source(a in layer(), b in layer()) {
        let eff = merge_chain([("root", &a), ("team", &b)]);
        let mut out = Vec::new();
        leaves(&eff.config, String::new(), &mut out);
        for (at, v) in out {
            if at.is_empty() || matches!(&v, Value::Object(_)) {
                continue;
            }
            let node = eff.sources.get(&at);
            prop_assert!(node.is_some(), "no source for {}", at);
            let layer = if node.map(String::as_str) == Some("team") { &b } else { &a };
            // The leaf, or an ancestor set as a whole, comes from that layer.
            let from_layer = std::iter::successors(Some(at.as_str()), |p| p.rfind('/').map(|i| &p[..i]))
                .any(|p| !p.is_empty() && layer.pointer(p).is_some());
            prop_assert!(from_layer, "{} = {} is not in the {:?} layer", at, v, node);
        }
    }

    /// A diff is empty exactly when the layers are equal.
    #[test]
    fn diff_is_empty_only_for_equal_layers(a in layer(), b in layer()) {
        prop_assert_eq!(diff(&a, &b).is_empty(), a == b);
    }
}
