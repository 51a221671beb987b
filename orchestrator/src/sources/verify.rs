//! The signing primitives the senders share (each sender's module says how it uses them, as
//! WEBHOOK-SOURCES.md in the design folder describes). Always on the raw bytes, before any parsing; every comparison in constant time; every
//! active secret tried, so rotation never drops an event.
//!
//! The cost of a request is bounded by what we hold, not by what the sender claims: one MAC per
//! active secret over the body, compared with each signature candidate, and at most
//! [`MAX_CANDIDATES`] candidates (a header of 3,000 `v1=` entries is refused before any hashing).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use switchyard_common::auth::secrets_equal;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused. The detail never contains a secret or an expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error("the signature does not match any active secret")]
    BadSignature,
    #[error("the timestamp is outside the {0} s tolerance (replayed or clock skew)")]
    StaleTimestamp(i64),
    #[error("the integration has no active secret")]
    NoSecret,
    #[error("more than {MAX_CANDIDATES} signatures in {0}")]
    TooManySignatures(&'static str),
}

/// Most signatures one delivery may carry. Senders send one per secret they hold (PagerDuty and
/// Standard Webhooks during rotation: two).
pub const MAX_CANDIDATES: usize = 8;

pub(super) fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    h.get(name)
        .ok_or(VerifyError::MissingHeader(name))?
        .to_str()
        .map_err(|_| VerifyError::Malformed(name))
}

pub(super) fn optional_header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// HMAC-SHA256(secret, parts...).
fn hmac(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Ok when some candidate equals the MAC under some secret. One MAC per secret, whatever the
/// number of candidates; every comparison in constant time (a wrong length is simply unequal).
pub(super) fn any_secret(
    secrets: &[Vec<u8>],
    candidates: &[Vec<u8>],
    parts: &[&[u8]],
) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let mut ok = subtle::Choice::from(0);
    for secret in secrets {
        let expected = hmac(secret, parts);
        for c in candidates {
            ok |= expected.as_slice().ct_eq(c.as_slice());
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// Within `tolerance` seconds of now, either way. Overflow-safe: a timestamp near `i64::MIN` or
/// `i64::MAX` is simply out of tolerance.
pub(super) fn check_age(ts: i64, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    match now.checked_sub(ts) {
        Some(d) if d.unsigned_abs() <= tolerance.unsigned_abs() => Ok(()),
        _ => Err(VerifyError::StaleTimestamp(tolerance)),
    }
}

/// Splits a signature header into at most [`MAX_CANDIDATES`] non-empty parts, refusing more.
pub(super) fn candidates<'a>(
    value: &'a str,
    separator: char,
    name: &'static str,
) -> Result<Vec<&'a str>, VerifyError> {
    let parts: Vec<&str> = value
        .split(separator)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .take(MAX_CANDIDATES + 1)
        .collect();
    if parts.len() > MAX_CANDIDATES {
        return Err(VerifyError::TooManySignatures(name));
    }
    Ok(parts)
}

pub(super) fn hex_sig(s: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(s.trim()).map_err(|_| VerifyError::Malformed(what))
}

/// The signatures of a `v1=<hex>[,v1=<hex>...]` header (one per secret the sender holds).
pub(super) fn v1_hex_list(h: &HeaderMap, name: &'static str) -> Result<Vec<Vec<u8>>, VerifyError> {
    let sigs: Vec<Vec<u8>> = candidates(header(h, name)?, ',', name)?
        .into_iter()
        .filter_map(|p| p.strip_prefix("v1="))
        .filter_map(|s| hex::decode(s).ok())
        .collect();
    if sigs.is_empty() {
        return Err(VerifyError::Malformed(name));
    }
    Ok(sigs)
}

/// `<name>: <prefix><hex>`, an HMAC of the body.
pub(super) fn prefixed_hex(
    h: &HeaderMap,
    name: &'static str,
    prefix: &str,
    body: &[u8],
    secrets: &[Vec<u8>],
) -> Result<(), VerifyError> {
    let v = header(h, name)?;
    let sig = v
        .trim()
        .strip_prefix(prefix)
        .ok_or(VerifyError::Malformed(name))?;
    any_secret(secrets, &[hex_sig(sig, name)?], &[body])
}

/// Shortest Standard Webhooks key accepted (the specification's 24 bytes; senders generate 32).
pub const MIN_STANDARD_KEY: usize = 24;

/// The HMAC key of a Standard Webhooks secret: base64 after the `whsec_` prefix, at least
/// [`MIN_STANDARD_KEY`] bytes (a short key is guessable, and `whsec_` alone would be an empty one).
pub fn standard_key(secret: &str) -> Option<Vec<u8>> {
    B64.decode(
        secret
            .trim()
            .strip_prefix("whsec_")
            .unwrap_or(secret.trim()),
    )
    .ok()
    .filter(|k| k.len() >= MIN_STANDARD_KEY)
}

/// Standard Webhooks (incident.io and others): `webhook-signature: v1,<base64> ...` over
/// `{id}.{timestamp}.{body}`, keyed by the base64-decoded secret; 5 minutes tolerance.
/// `keys` are the decoded keys.
pub fn standard(h: &HeaderMap, body: &[u8], keys: &[Vec<u8>], now: i64) -> Result<(), VerifyError> {
    let id = header(h, "webhook-id")?;
    let ts = header(h, "webhook-timestamp")?;
    let ts_n: i64 = ts
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed("webhook-timestamp"))?;
    let sigs: Vec<Vec<u8>> = candidates(header(h, "webhook-signature")?, ' ', "webhook-signature")?
        .into_iter()
        .filter_map(|p| p.strip_prefix("v1,"))
        .filter_map(|s| B64.decode(s).ok())
        .collect();
    if sigs.is_empty() {
        return Err(VerifyError::Malformed("webhook-signature"));
    }
    check_age(ts_n, now, 300)?;
    any_secret(
        keys,
        &sigs,
        &[id.as_bytes(), b".", ts.trim().as_bytes(), b".", body],
    )
}

/// Where a shared secret travels.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// As the whole value of this header (GitLab's `X-Gitlab-Token`, or the header an
    /// integration names in its `token_header` setting).
    Header(&'a str),
    /// `Authorization: Bearer <secret>`, or HTTP basic auth whose password is the secret.
    Authorization,
}

/// A shared secret sent as is, compared in constant time with every active secret.
pub fn shared_secret(
    h: &HeaderMap,
    at: Presented<'_>,
    secrets: &[Vec<u8>],
) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let presented: String = match at {
        Presented::Header(name) => optional_header(h, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(VerifyError::MissingHeader("token header"))?
            .to_owned(),
        Presented::Authorization => {
            let auth = header(h, "authorization")?;
            if let Some(b) = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
            {
                b.trim().to_owned()
            } else if let Some(basic) = auth
                .strip_prefix("Basic ")
                .or_else(|| auth.strip_prefix("basic "))
            {
                let decoded = B64
                    .decode(basic.trim())
                    .map_err(|_| VerifyError::Malformed("authorization"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| VerifyError::Malformed("authorization"))?;
                decoded
                    .split_once(':')
                    .map(|(_, p)| p.to_owned())
                    .unwrap_or(decoded)
            } else {
                return Err(VerifyError::Malformed("authorization"));
            }
        }
    };
    let ok = secrets
        .iter()
        .any(|s| secrets_equal(&String::from_utf8_lossy(s), &presented));
    if ok {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// A shared secret in the header the integration's `token_header` setting names, or in
/// `Authorization` (Alertmanager, Datadog, Opsgenie, Grafana's contact points).
pub fn configured_token(d: &super::Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    match d.settings["token_header"].as_str() {
        Some(name) => shared_secret(
            d.headers,
            Presented::Header(&name.to_ascii_lowercase()),
            secrets,
        ),
        None => shared_secret(d.headers, Presented::Authorization, secrets),
    }
}

/// Helpers that sign like the senders do (tests, fuzzing, load generation: the `testing`
/// feature).
#[cfg(any(test, feature = "testing"))]
pub mod sign {
    use super::*;

    pub fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
        hex::encode(hmac(secret, parts))
    }

    pub fn hmac_b64(key: &[u8], parts: &[&[u8]]) -> String {
        B64.encode(hmac(key, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::sign::*;
    use super::*;
    use crate::sources::fields::testing::headers;

    #[test]
    fn standard_webhooks_published_example() {
        // From the Standard Webhooks specification's reference tests.
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(
            standard(&h, body, std::slice::from_ref(&key), 1614265330),
            Ok(())
        );
        assert_eq!(
            standard(&h, body, &[key], 1614265330 + 600),
            Err(VerifyError::StaleTimestamp(300))
        );
    }

    #[test]
    fn standard_webhooks_tries_every_signature_and_key() {
        let old = b"old-key-0123456789".to_vec();
        let new = b"new-key-0123456789".to_vec();
        let body = b"{}";
        let sig_new = hmac_b64(&new, &[b"id1", b".", b"100", b".", body]);
        let h = headers(&[
            ("webhook-id", "id1"),
            ("webhook-timestamp", "100"),
            ("webhook-signature", &format!("v1,bm90LWl0 v1,{sig_new}")),
        ]);
        assert_eq!(standard(&h, body, &[old.clone(), new], 100), Ok(()));
        assert_eq!(
            standard(&h, body, &[old], 100),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn wrong_lengths_and_garbage_do_not_panic() {
        let s = vec![b"k".to_vec()];
        let sig = "x-hub-signature-256";
        let h = headers(&[(sig, "sha256=abcd")]);
        assert_eq!(
            prefixed_hex(&h, sig, "sha256=", b"x", &s),
            Err(VerifyError::BadSignature)
        );
        let h = headers(&[(sig, "sha256=zz")]);
        assert_eq!(
            prefixed_hex(&h, sig, "sha256=", b"x", &s),
            Err(VerifyError::Malformed("x-hub-signature-256"))
        );
        assert_eq!(
            prefixed_hex(&HeaderMap::new(), sig, "sha256=", b"x", &s),
            Err(VerifyError::MissingHeader("x-hub-signature-256"))
        );
        let h = headers(&[("x-pagerduty-signature", "v2=00")]);
        assert_eq!(
            v1_hex_list(&h, "x-pagerduty-signature"),
            Err(VerifyError::Malformed("x-pagerduty-signature"))
        );
        let h = headers(&[(sig, "sha256=00")]);
        assert_eq!(
            prefixed_hex(&h, sig, "sha256=", b"x", &[]),
            Err(VerifyError::NoSecret)
        );
    }

    #[test]
    fn shared_secrets_by_header_bearer_or_basic() {
        let s = vec![b"tok-123".to_vec()];
        let gitlab = Presented::Header("x-gitlab-token");
        assert_eq!(
            shared_secret(&headers(&[("x-gitlab-token", "tok-123")]), gitlab, &s),
            Ok(())
        );
        assert_eq!(
            shared_secret(&headers(&[("x-gitlab-token", "tok-124")]), gitlab, &s),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            shared_secret(&HeaderMap::new(), gitlab, &s),
            Err(VerifyError::MissingHeader("token header"))
        );
        let auth = Presented::Authorization;
        assert_eq!(
            shared_secret(&headers(&[("authorization", "Bearer tok-123")]), auth, &s),
            Ok(())
        );
        let basic = format!("Basic {}", B64.encode("alertmanager:tok-123"));
        assert_eq!(
            shared_secret(&headers(&[("authorization", &basic)]), auth, &s),
            Ok(())
        );
        assert_eq!(
            shared_secret(&headers(&[("authorization", "Token x")]), auth, &s),
            Err(VerifyError::Malformed("authorization"))
        );
    }

    /// The review's CPU attack: a 1 MB body with 3,000 `v1=00` candidates cost one MAC per
    /// candidate (1.7 s). Past [`MAX_CANDIDATES`] it is refused before hashing; up to the cap the
    /// work is one MAC per secret, so the cost no longer grows with the candidates.
    #[test]
    fn signature_candidates_are_capped() {
        let body = vec![b'x'; 1024 * 1024];
        let secret = b"pd-secret".to_vec();
        let many = vec!["v1=00"; 3000].join(",");
        for name in ["x-pagerduty-signature", "circleci-signature"] {
            let h = headers(&[(name, &many)]);
            assert_eq!(
                v1_hex_list(&h, name),
                Err(VerifyError::TooManySignatures(name))
            );
        }
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &vec!["v1,AAAA"; 3000].join(" ")),
        ]);
        assert_eq!(
            standard(&h, &body, &[vec![1; 32]], 1_700_000_000),
            Err(VerifyError::TooManySignatures("webhook-signature"))
        );
        // Eight candidates, the good one last, still verify.
        let good = hmac_hex(&secret, &[&body]);
        let mut eight = vec!["v1=00".to_owned(); 7];
        eight.push(format!("v1={good}"));
        let h = headers(&[("x-pagerduty-signature", &eight.join(","))]);
        let sigs = v1_hex_list(&h, "x-pagerduty-signature").unwrap();
        assert_eq!(any_secret(&[secret], &sigs, &[&body]), Ok(()));
    }

    #[test]
    fn timestamps_at_the_extremes_are_stale_not_a_panic() {
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX, -1] {
            assert_eq!(
                check_age(ts, 1_700_000_000, 300),
                Err(VerifyError::StaleTimestamp(300))
            );
        }
        assert_eq!(check_age(1_700_000_300, 1_700_000_000, 300), Ok(()));
        assert_eq!(
            check_age(i64::MAX, i64::MIN, 300),
            Err(VerifyError::StaleTimestamp(300))
        );
    }

    #[test]
    fn standard_keys_are_at_least_24_bytes() {
        assert_eq!(standard_key("whsec_"), None);
        assert_eq!(
            standard_key(&format!("whsec_{}", B64.encode([7u8; 23]))),
            None
        );
        assert_eq!(
            standard_key(&format!("whsec_{}", B64.encode([7u8; 24]))),
            Some(vec![7u8; 24])
        );
    }
}
