//! Config layers: validation, merging, diffs and the approval check on arbitrary JSON. Never a
//! panic; a layer merged over itself, or diffed against itself, changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use switchyard_config_service::domain::config::{
    diff, merge_chain, touched_protected, validate_layer,
};

fuzz_target!(|data: &[u8]| {
    // Up to three layers, separated by a NUL byte.
    let layers: Vec<Value> = data
        .split(|b| *b == 0)
        .take(3)
        .filter_map(|part| serde_json::from_slice(part).ok())
        .collect();
    let Some(first) = layers.first() else { return };
    let _ = validate_layer(first);
    let chain: Vec<(String, &Value)> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("n{i}"), l))
        .collect();
    let merged = merge_chain(chain.iter().map(|(n, l)| (n.as_str(), *l)));
    assert!(diff(first, first).is_empty());
    if let Value::Object(_) = first {
        let again = merge_chain([("a", first), ("b", first)]);
        let once = merge_chain([("a", first)]);
        if !contains_null(first) {
            assert_eq!(
                again.config, once.config,
                "merging a layer over itself changed it"
            );
        }
    }
    let _ = touched_protected(
        first,
        &merged.config,
        &["/agent/prompts".into(), "/a/b/0".into(), "".into()],
    );
    let _ = json!(merged.sources);
});

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().any(contains_null),
        Value::Array(a) => a.iter().any(contains_null),
        _ => false,
    }
}
