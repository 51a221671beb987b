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
    match at(v, pointer)? {
        Value::String(x) if !x.is_empty() => Some(x.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The value at a JSON pointer (RFC 6901), as [`Value::pointer`] finds it, without its two
/// allocations per segment for the `~` escapes our pointers never have (a sender's delivery reads
/// a dozen pointers: they were 5% of the webhook path's CPU).
pub fn at<'v>(v: &'v Value, pointer: &str) -> Option<&'v Value> {
    if pointer.contains('~') || !(pointer.is_empty() || pointer.starts_with('/')) {
        return v.pointer(pointer);
    }
    pointer
        .split('/')
        .skip(1)
        .try_fold(v, |target, token| match target {
            Value::Object(map) => map.get(token),
            Value::Array(list) => parse_index(token).and_then(|i| list.get(i)),
            _ => None,
        })
}

/// An array index as RFC 6901 writes it: digits, no leading zero.
fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) || token.starts_with('+') {
        return None;
    }
    token.parse().ok()
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pointers_find_what_serde_json_finds() {
        let v = json!({"event": {"data": {"id": "P1", "n": 7, "list": [{"a": 1}, {"a": 2}],
            "": "empty key", "a/b": "slash", "m~n": "tilde"}}, "01": "zero-one"});
        for p in [
            "",
            "/event",
            "/event/data/id",
            "/event/data/n",
            "/event/data/list/1/a",
            "/event/data/list/01/a",
            "/event/data/list/+1/a",
            "/event/data/list/2/a",
            "/event/data/list/x",
            "/event/data/",
            "/event/data/a~1b",
            "/event/data/m~0n",
            "/event/data/id/deeper",
            "/01",
            "/missing",
            "event",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p}");
        }
        assert_eq!(s(&v, "/event/data/n").as_deref(), Some("7"));
        assert_eq!(s(&v, "/event/data/list/0/a").as_deref(), Some("1"));
    }
}
