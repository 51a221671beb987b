//! Reading what senders send: headers, JSON fields by pointer, derived delivery ids.

use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Refusal;

/// A header's trimmed value, if present and not empty.
pub fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A string or number at `pointer`, as a string (empty strings are absent).
pub fn s(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(x) if !x.is_empty() => Some(x.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of `pointers` present.
pub fn first(v: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| s(v, p))
}

/// Finds `paths` at the top, or in one of the payload's top-level objects (incident.io nests the
/// resource under a key named after the event type).
pub fn nested(v: &Value, paths: &[&str]) -> Option<String> {
    if let Some(x) = first(v, paths) {
        return Some(x);
    }
    v.as_object()?
        .values()
        .find_map(|inner| first(inner, paths))
}

/// The delivery id of a sender that sends none: the body's hash (a redelivery is byte-equal).
pub fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

pub fn json_body(body: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::Invalid(format!("the body is not valid JSON: {e}")))
}

/// Adds an identifier once.
pub fn push(ids: &mut Vec<(String, String)>, kind: &str, value: Option<String>) {
    if let Some(v) = value
        && !ids.iter().any(|(k, x)| k == kind && *x == v)
    {
        ids.push((kind.to_owned(), v));
    }
}

/// Test helpers.
#[cfg(test)]
pub mod testing {
    use http::{HeaderMap, HeaderValue};

    use crate::sources::{Envelope, Outcome};

    pub fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    pub fn event(o: Outcome) -> Envelope {
        match o {
            Outcome::Event(e) => e,
            Outcome::Handshake(b) => panic!("unexpected handshake {b}"),
        }
    }
}
