//! Signature verification, exactly as each sender signs (see WEBHOOK-SOURCES.md in the design
//! folder). Always on the raw bytes, before any parsing; every comparison in constant time; every
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

fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    h.get(name)
        .ok_or(VerifyError::MissingHeader(name))?
        .to_str()
        .map_err(|_| VerifyError::Malformed(name))
}

fn optional_header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
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
fn any_secret(
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
fn check_age(ts: i64, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    match now.checked_sub(ts) {
        Some(d) if d.unsigned_abs() <= tolerance.unsigned_abs() => Ok(()),
        _ => Err(VerifyError::StaleTimestamp(tolerance)),
    }
}

/// Splits a signature header into at most [`MAX_CANDIDATES`] non-empty parts, refusing more.
fn candidates<'a>(
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

fn hex_sig(s: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(s.trim()).map_err(|_| VerifyError::Malformed(what))
}

/// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`, 5 minutes tolerance.
pub fn slack(h: &HeaderMap, body: &[u8], secrets: &[Vec<u8>], now: i64) -> Result<(), VerifyError> {
    let ts = header(h, "x-slack-request-timestamp")?;
    let ts_n: i64 = ts
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed("x-slack-request-timestamp"))?;
    let sig = header(h, "x-slack-signature")?;
    let sig = sig
        .strip_prefix("v0=")
        .ok_or(VerifyError::Malformed("x-slack-signature"))?;
    let sig = hex_sig(sig, "x-slack-signature")?;
    check_age(ts_n, now, 300)?;
    any_secret(secrets, &[sig], &[b"v0:", ts.trim().as_bytes(), b":", body])
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body; no timestamp.
pub fn github(h: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    prefixed_hex(h, "x-hub-signature-256", "sha256=", body, secrets)
}

/// Jira Cloud: `X-Hub-Signature: sha256=<hex>` over the body.
pub fn jira(h: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    prefixed_hex(h, "x-hub-signature", "sha256=", body, secrets)
}

/// CircleCI: `circleci-signature: v1=<hex>[,...]` over the body.
pub fn circleci(h: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    any_secret(secrets, &v1_hex_list(h, "circleci-signature")?, &[body])
}

/// The signatures of a `v1=<hex>[,v1=<hex>...]` header (one per secret the sender holds).
fn v1_hex_list(h: &HeaderMap, name: &'static str) -> Result<Vec<Vec<u8>>, VerifyError> {
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

fn prefixed_hex(
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

/// PagerDuty v3: `X-PagerDuty-Signature: v1=<hex>,v1=<hex>` (one per active secret on their side).
pub fn pagerduty(h: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    any_secret(secrets, &v1_hex_list(h, "x-pagerduty-signature")?, &[body])
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
/// `secrets` are the decoded keys.
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

/// Sentry: `Sentry-Hook-Signature: <hex>` over the body as sent, keyed by the client secret.
pub fn sentry(h: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    let sig = hex_sig(header(h, "sentry-hook-signature")?, "sentry-hook-signature")?;
    any_secret(secrets, &[sig], &[body])
}

/// Linear: `Linear-Signature: <hex>` over the body; the body's `webhookTimestamp` (ms) must be
/// within `tolerance` seconds (checked by the caller after parsing, see [`linear_timestamp_ok`]).
pub fn linear(h: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    let sig = hex_sig(header(h, "linear-signature")?, "linear-signature")?;
    any_secret(secrets, &[sig], &[body])
}

/// Linear's replay guard, on the verified body.
pub fn linear_timestamp_ok(
    payload: &serde_json::Value,
    now: i64,
    tolerance: i64,
) -> Result<(), VerifyError> {
    match payload
        .get("webhookTimestamp")
        .and_then(serde_json::Value::as_i64)
    {
        Some(ms) => check_age(ms / 1000, now, tolerance),
        None => Err(VerifyError::Malformed("webhookTimestamp")),
    }
}

/// Grafana alerting: optional HMAC in a configurable header (default
/// `X-Grafana-Alerting-Signature`), over `{timestamp}:{body}` when a timestamp header is sent.
pub fn grafana(
    h: &HeaderMap,
    body: &[u8],
    secrets: &[Vec<u8>],
    now: i64,
    signature_header: &'static str,
    timestamp_header: &'static str,
) -> Result<(), VerifyError> {
    let sig = hex_sig(header(h, signature_header)?, signature_header)?;
    match optional_header(h, timestamp_header) {
        Some(ts) => {
            let ts_n: i64 = ts
                .trim()
                .parse()
                .map_err(|_| VerifyError::Malformed(timestamp_header))?;
            check_age(ts_n, now, 300)?;
            any_secret(secrets, &[sig], &[ts.trim().as_bytes(), b":", body])
        }
        None => any_secret(secrets, &[sig], &[body]),
    }
}

/// A shared secret sent as is: GitLab's `X-Gitlab-Token`, or `Authorization: Bearer <secret>`
/// (Alertmanager, Datadog, Opsgenie), or HTTP basic auth whose password is the secret.
pub fn shared_secret(
    h: &HeaderMap,
    header_name: Option<&'static str>,
    secrets: &[Vec<u8>],
) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let presented: String = match header_name {
        Some(name) => header(h, name)?.trim().to_owned(),
        None => {
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

/// Test helpers that sign like the senders do.
pub mod sign {
    use super::*;

    pub fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
        for p in parts {
            mac.update(p);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn hmac_b64(key: &[u8], parts: &[&[u8]]) -> String {
        let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
        for p in parts {
            mac.update(p);
        }
        B64.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::sign::*;
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn github_published_test_vector() {
        // From GitHub's documentation (WEBHOOK-SOURCES.md).
        let secret = b"It's a Secret to Everybody".to_vec();
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            github(&h, b"Hello, World!", std::slice::from_ref(&secret)),
            Ok(())
        );
        assert_eq!(
            github(&h, b"Hello, World?", &[secret]),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn slack_signs_version_timestamp_and_body() {
        // Slack's documented example.
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5".to_vec();
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = headers(&[
            ("x-slack-request-timestamp", "1531420618"),
            (
                "x-slack-signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ]);
        assert_eq!(
            slack(&h, body, std::slice::from_ref(&secret), 1531420618 + 10),
            Ok(())
        );
        assert_eq!(
            slack(&h, body, std::slice::from_ref(&secret), 1531420618 + 301),
            Err(VerifyError::StaleTimestamp(300))
        );
        assert_eq!(
            slack(&h, b"tampered", &[secret], 1531420618),
            Err(VerifyError::BadSignature)
        );
    }

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
    fn pagerduty_accepts_any_of_several_signatures() {
        let s1 = b"secret-one".to_vec();
        let s2 = b"secret-two".to_vec();
        let body = br#"{"event":{"event_type":"incident.triggered"}}"#;
        let header = format!(
            "v1={},v1={}",
            hmac_hex(&s1, &[body]),
            hmac_hex(&s2, &[body])
        );
        let h = headers(&[("x-pagerduty-signature", &header)]);
        assert_eq!(pagerduty(&h, body, std::slice::from_ref(&s2)), Ok(()));
        assert_eq!(pagerduty(&h, body, &[s1]), Ok(()));
        assert_eq!(
            pagerduty(&h, body, &[b"other".to_vec()]),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn wrong_lengths_and_garbage_do_not_panic() {
        let s = vec![b"k".to_vec()];
        let h = headers(&[("x-hub-signature-256", "sha256=abcd")]);
        assert_eq!(github(&h, b"x", &s), Err(VerifyError::BadSignature));
        let h = headers(&[("x-hub-signature-256", "sha256=zz")]);
        assert_eq!(
            github(&h, b"x", &s),
            Err(VerifyError::Malformed("x-hub-signature-256"))
        );
        assert_eq!(
            github(&HeaderMap::new(), b"x", &s),
            Err(VerifyError::MissingHeader("x-hub-signature-256"))
        );
        let h = headers(&[("x-pagerduty-signature", "v2=00")]);
        assert_eq!(
            pagerduty(&h, b"x", &s),
            Err(VerifyError::Malformed("x-pagerduty-signature"))
        );
        let h = headers(&[("x-hub-signature-256", "sha256=00")]);
        assert_eq!(github(&h, b"x", &[]), Err(VerifyError::NoSecret));
    }

    #[test]
    fn shared_secrets_by_header_bearer_or_basic() {
        let s = vec![b"tok-123".to_vec()];
        assert_eq!(
            shared_secret(
                &headers(&[("x-gitlab-token", "tok-123")]),
                Some("x-gitlab-token"),
                &s
            ),
            Ok(())
        );
        assert_eq!(
            shared_secret(
                &headers(&[("x-gitlab-token", "tok-124")]),
                Some("x-gitlab-token"),
                &s
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            shared_secret(&headers(&[("authorization", "Bearer tok-123")]), None, &s),
            Ok(())
        );
        let basic = format!("Basic {}", B64.encode("alertmanager:tok-123"));
        assert_eq!(
            shared_secret(&headers(&[("authorization", &basic)]), None, &s),
            Ok(())
        );
        assert_eq!(
            shared_secret(&headers(&[("authorization", "Token x")]), None, &s),
            Err(VerifyError::Malformed("authorization"))
        );
    }

    #[test]
    fn sentry_linear_jira_circleci_grafana() {
        let s = b"sek".to_vec();
        let body = br#"{"webhookTimestamp": 1700000000000}"#;
        let sig = hmac_hex(&s, &[body]);
        assert_eq!(
            sentry(
                &headers(&[("sentry-hook-signature", &sig)]),
                body,
                std::slice::from_ref(&s)
            ),
            Ok(())
        );
        assert_eq!(
            linear(
                &headers(&[("linear-signature", &sig)]),
                body,
                std::slice::from_ref(&s)
            ),
            Ok(())
        );
        let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(linear_timestamp_ok(&payload, 1_700_000_030, 60), Ok(()));
        assert!(linear_timestamp_ok(&payload, 1_700_000_300, 60).is_err());
        assert_eq!(
            jira(
                &headers(&[("x-hub-signature", &format!("sha256={sig}"))]),
                body,
                std::slice::from_ref(&s)
            ),
            Ok(())
        );
        assert_eq!(
            circleci(
                &headers(&[("circleci-signature", &format!("v1={sig}"))]),
                body,
                std::slice::from_ref(&s)
            ),
            Ok(())
        );
        let gts = hmac_hex(&s, &[b"1700000000", b":", body]);
        let h = headers(&[
            ("x-grafana-alerting-signature", &gts),
            ("x-grafana-alerting-signature-timestamp", "1700000000"),
        ]);
        assert_eq!(
            grafana(
                &h,
                body,
                std::slice::from_ref(&s),
                1_700_000_010,
                "x-grafana-alerting-signature",
                "x-grafana-alerting-signature-timestamp"
            ),
            Ok(())
        );
        let h = headers(&[("x-grafana-alerting-signature", &sig)]);
        assert_eq!(
            grafana(
                &h,
                body,
                &[s],
                0,
                "x-grafana-alerting-signature",
                "x-grafana-alerting-signature-timestamp"
            ),
            Ok(())
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
            let r = if name == "circleci-signature" {
                circleci(&h, &body, std::slice::from_ref(&secret))
            } else {
                pagerduty(&h, &body, std::slice::from_ref(&secret))
            };
            assert_eq!(r, Err(VerifyError::TooManySignatures(name)));
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
        assert_eq!(pagerduty(&h, &body, &[secret]), Ok(()));
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
        let h = headers(&[
            ("x-slack-request-timestamp", "-9223372036854775808"),
            ("x-slack-signature", "v0=00"),
        ]);
        assert!(matches!(
            slack(&h, b"{}", &[b"s".to_vec()], 1_700_000_000),
            Err(VerifyError::StaleTimestamp(_))
        ));
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
