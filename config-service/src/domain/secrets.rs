//! Secrets in config: a layer never holds a credential, only a reference to the org secrets store
//! (`{"secret": "<name>"}`), which keeps the value encrypted, write-only and out of every layer
//! version, node archive and audit entry.

use serde_json::Value;
use switchyard_common::ids::Slug;
use switchyard_common::problem::FieldError;

/// Largest secret value accepted (a PEM private key fits many times over).
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// Keys whose values are credentials wherever they appear under `integrations`.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "token",
        "password",
        "passwd",
        "key",
        "credential",
        "private",
        "auth",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The name a reference points at, if `v` is a well-formed `{"secret": "<name>"}`.
pub fn reference(v: &Value) -> Option<&str> {
    let m = v.as_object()?;
    if m.len() != 1 {
        return None;
    }
    m.get("secret")?.as_str().filter(|n| Slug::parse(n).is_ok())
}

/// Every secret a config refers to, wherever the reference is.
pub fn references(config: &Value) -> std::collections::BTreeSet<String> {
    fn walk(v: &Value, out: &mut std::collections::BTreeSet<String>) {
        if let Some(name) = reference(v) {
            out.insert(name.to_owned());
            return;
        }
        match v {
            Value::Object(m) => m.values().for_each(|v| walk(v, out)),
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(config, &mut out);
    out
}

/// Checks the value at a known secret path: `null` or a reference, never a literal.
pub fn check_reference(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() || reference(v).is_some() {
        return;
    }
    let detail = if v.is_string() {
        "a credential is never stored in config: put it in the org secrets store (PUT /api/v1/orgs/{org}/secrets/{name}) and refer to it here as {\"secret\": \"<name>\"}"
    } else {
        "must be a reference to the org secrets store: {\"secret\": \"<name>\"}, the name in lowercase letters, digits, '-' and '_'"
    };
    errs.push(FieldError {
        pointer: at.to_owned(),
        detail: detail.to_owned(),
    });
}

/// Walks `integrations`: every secret-looking key holds a reference; other values are walked (a
/// reference found on the way is fine wherever it is).
pub fn check_integrations(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    if reference(v).is_some() {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                if is_secret_key(k) {
                    check_reference(v, &path, errs);
                } else {
                    check_integrations(v, &path, errs);
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                check_integrations(v, &format!("{at}/{i}"), errs);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_found_wherever_they_are() {
        let config = json!({"agent": {"api_key": {"secret": "llm"},
                "toolsets": {"mcp": {"servers": [{"headers": {"x": {"secret": "mcp-key"}}}]}}},
            "integrations": {"slack": {"bot_token": {"secret": "slack"}}},
            "odd": {"secret": "Not A Slug"}, "two": {"secret": "a", "b": 1}});
        let names: Vec<String> = references(&config).into_iter().collect();
        assert_eq!(names, ["llm", "mcp-key", "slack"]);
    }

    #[test]
    fn literals_are_refused_with_their_path() {
        let mut errs = Vec::new();
        check_integrations(
            &json!({"slack": {"bot_token": "xoxb-1", "channel": "C1", "signing": {"secret": "llm"}},
                    "github": {"token": {"secret": "gh"}, "apps": [{"private_key": "-----BEGIN"}]},
                    "pagerduty": {"api_key": {"secret": "Not A Slug"}}}),
            "/integrations",
            &mut errs,
        );
        let at: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            at,
            [
                "/integrations/github/apps/0/private_key",
                "/integrations/pagerduty/api_key",
                "/integrations/slack/bot_token",
            ]
        );
        assert!(errs[2].detail.contains("secrets store"));
        assert_eq!(reference(&json!({"secret": "gh"})), Some("gh"));
        assert_eq!(reference(&json!({"secret": "gh", "x": 1})), None);
    }
}
