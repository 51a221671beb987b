//! Every verifier on arbitrary headers and bodies: never a panic, never an acceptance of a
//! signature made with another secret, and a delivery signed as its sender signs is accepted.

#![no_main]

#[path = "common.rs"]
mod common;

use base64::Engine;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use serde_json::Value;
use switchyard_orchestrator::sources::verify::sign::{hmac_b64, hmac_hex};
use switchyard_orchestrator::sources::{Delivery, Source, VerifyError};

const SECRET: &str = "fuzz-secret-0123456789";
const KEY: [u8; 32] = [7; 32];

/// Verifies as the hot path does, with the integration's settings.
fn verify(
    source: Source,
    token_header: bool,
    h: &http::HeaderMap,
    body: &[u8],
    secrets: &[Vec<u8>],
) -> Result<(), VerifyError> {
    let settings = if token_header {
        json!({"token_header": "x-token"})
    } else {
        Value::Null
    };
    let d = Delivery {
        settings: &settings,
        ..Delivery::new(h, body)
    };
    source.verify(&d, secrets)
}

fuzz_target!(|req: common::Request| {
    let source = req.source();
    let secrets = match source {
        Source::Incidentio | Source::Standard => vec![
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(KEY)
            )
            .into_bytes(),
        ],
        _ => vec![SECRET.as_bytes().to_vec()],
    };
    let token_header = req.body.first().is_some_and(|b| b % 2 == 0);
    let h = req.header_map();
    // Arbitrary input: any answer but a panic. An acceptance needs a real signature, which the
    // fuzzer cannot forge: accepting would mean a verifier ignores part of its input.
    if verify(source, token_header, &h, &req.body, &secrets).is_ok() {
        assert!(
            matches!(
                source,
                Source::Gitlab
                    | Source::Alertmanager
                    | Source::Datadog
                    | Source::Opsgenie
                    | Source::Grafana
            ),
            "{source:?} accepted an unsigned fuzz input"
        );
    }
    // The same body signed as its sender signs it is accepted.
    let now = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()) as i64;
    let ts = now.to_string();
    let mut h = http::HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        h.insert(k, HeaderValue::from_str(&v).unwrap());
    };
    let body = &req.body;
    let signed = match source {
        Source::Github => {
            set(
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(SECRET.as_bytes(), &[body])),
            );
            true
        }
        Source::Pagerduty => {
            set(
                "x-pagerduty-signature",
                format!("v1={}", hmac_hex(SECRET.as_bytes(), &[body])),
            );
            true
        }
        Source::Slack => {
            set("x-slack-request-timestamp", ts.clone());
            set(
                "x-slack-signature",
                format!(
                    "v0={}",
                    hmac_hex(SECRET.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body])
                ),
            );
            true
        }
        Source::Incidentio | Source::Standard => {
            set("webhook-id", "msg_fuzz".into());
            set("webhook-timestamp", ts.clone());
            set(
                "webhook-signature",
                format!(
                    "v1,{}",
                    hmac_b64(&KEY, &[b"msg_fuzz", b".", ts.as_bytes(), b".", body])
                ),
            );
            true
        }
        _ => false,
    };
    if signed {
        let r = verify(source, false, &h, body, &secrets);
        assert_eq!(r, Ok(()), "{source:?} refused a correctly signed delivery");
    }
});
