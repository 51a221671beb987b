//! Differences between config layers, and a layer as it was at an earlier version.
//!
//! Each version in a node's history records what it changed against the one before ([`diff`]);
//! [`at_version`] rebuilds an earlier layer from the current one by undoing later changes. The
//! config-service records the changes; the admin CLI and the web console rebuild and compare
//! versions with the same code.

use serde_json::{Map, Value};

use crate::problem::escape_pointer_token;

/// One difference between two layers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Change {
    /// `add`, `remove` or `replace`.
    pub op: &'static str,
    pub path: String,
    /// The value before (any JSON); absent for `add`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub from: Option<Value>,
    /// The value after (any JSON); absent for `remove`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<Value>,
}

/// The changes that turn `old` into `new`, objects compared key by key.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    diff_at(old, new, "", &mut out);
    out
}

fn diff_at(old: &Value, new: &Value, at: &str, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, ov) in o {
                let path = format!("{at}/{}", escape_pointer_token(k));
                match n.get(k) {
                    Some(nv) => diff_at(ov, nv, &path, out),
                    None => out.push(Change {
                        op: "remove",
                        path,
                        from: Some(ov.clone()),
                        value: None,
                    }),
                }
            }
            for (k, nv) in n {
                if !o.contains_key(k) {
                    out.push(Change {
                        op: "add",
                        path: format!("{at}/{}", escape_pointer_token(k)),
                        from: None,
                        value: Some(nv.clone()),
                    });
                }
            }
        }
        (o, n) if o != n => out.push(Change {
            op: "replace",
            path: at.to_owned(),
            from: Some(o.clone()),
            value: Some(n.clone()),
        }),
        _ => {}
    }
}

/// The layer at `version`: the current layer (`current_version`) with the changes of every later
/// version undone, newest first. `history` is the history endpoint's answer.
pub fn at_version(
    current: &Value,
    current_version: i64,
    history: &[Value],
    version: i64,
) -> Result<Value, String> {
    if version > current_version || version < 0 {
        return Err(format!(
            "version {version} does not exist (the layer is at version {current_version})"
        ));
    }
    let mut layer = current.clone();
    let mut later: Vec<&Value> = history
        .iter()
        .filter(|h| h["version"].as_i64().is_some_and(|v| v > version))
        .collect();
    later.sort_by_key(|h| std::cmp::Reverse(h["version"].as_i64()));
    for entry in later {
        let changes = entry["diff"].as_array().cloned().unwrap_or_default();
        for c in changes.iter().rev() {
            let path = c["path"].as_str().unwrap_or_default();
            match c["op"].as_str() {
                // Undo an add: remove; undo a remove or a replace: put the old value back.
                Some("add") => remove(&mut layer, path),
                Some("remove") | Some("replace") => set(&mut layer, path, c["from"].clone()),
                other => return Err(format!("unknown change {other:?} in the history")),
            }
        }
    }
    Ok(layer)
}

fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn set(root: &mut Value, pointer: &str, value: Value) {
    let toks = tokens(pointer);
    let Some((last, parents)) = toks.split_last() else {
        *root = value;
        return;
    };
    let mut at = root;
    for t in parents {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at
            .as_object_mut()
            .expect("an object")
            .entry(t.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    at.as_object_mut()
        .expect("an object")
        .insert(last.clone(), value);
}

fn remove(root: &mut Value, pointer: &str) {
    let toks = tokens(pointer);
    let Some((last, parents)) = toks.split_last() else {
        *root = Value::Object(Map::new());
        return;
    };
    let mut at = root;
    for t in parents {
        match at.get_mut(t.as_str()) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(o) = at.as_object_mut() {
        o.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn undoes_later_versions() {
        // v1: {a:1}; v2: a→2, b added; v3: b removed, c/d added.
        let history = vec![
            json!({"version": 3, "diff": [
                {"op": "remove", "path": "/b", "from": "x"},
                {"op": "add", "path": "/c", "value": {"d": true}}]}),
            json!({"version": 2, "diff": [
                {"op": "replace", "path": "/a", "from": 1, "value": 2},
                {"op": "add", "path": "/b", "value": "x"}]}),
            json!({"version": 1, "diff": [{"op": "add", "path": "/a", "value": 1}]}),
        ];
        let current = json!({"a": 2, "c": {"d": true}});
        assert_eq!(at_version(&current, 3, &history, 3).unwrap(), current);
        assert_eq!(
            at_version(&current, 3, &history, 2).unwrap(),
            json!({"a": 2, "b": "x"})
        );
        assert_eq!(
            at_version(&current, 3, &history, 1).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(at_version(&current, 3, &history, 0).unwrap(), json!({}));
        assert!(at_version(&current, 3, &history, 4).is_err());
    }
}
