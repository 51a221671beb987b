//! Linear.
//!
//! Signs the body (`Linear-Signature: <hex>`); the replay guard is the body's `webhookTimestamp`
//! (ms), which must be within the integration's `timestamp_tolerance_seconds` (default 60) of now:
//! checked once the verified body is parsed. `Linear-Delivery` is the delivery id. Retries a 429.

use serde_json::Value;

use super::fields::{body_hash, first, header, json_body, push, s};
use super::verify::{VerifyError, any_secret, check_age, hex_sig};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise,
    retries_429: true,
    platform_path: None,
};

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    let name = "linear-signature";
    let sig = hex_sig(super::verify::header(d.headers, name)?, name)?;
    any_secret(secrets, &[sig], &[d.body])
}

/// Linear's replay guard, on the verified body.
fn timestamp_ok(payload: &Value, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    match payload.get("webhookTimestamp").and_then(Value::as_i64) {
        Some(ms) => check_age(ms / 1000, now, tolerance),
        None => Err(VerifyError::Malformed("webhookTimestamp")),
    }
}

fn normalise(d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let tolerance = d.settings["timestamp_tolerance_seconds"]
        .as_i64()
        .unwrap_or(60);
    timestamp_ok(&v, d.now, tolerance).map_err(Refusal::Unverified)?;
    let delivery = header(d.headers, "linear-delivery").unwrap_or_else(|| body_hash(d.body));
    let event = header(d.headers, "linear-event")
        .or_else(|| s(&v, "/type"))
        .unwrap_or_else(|| "unknown".into());
    let mut ids = Vec::new();
    push(
        &mut ids,
        "linear_team",
        first(&v, &["/data/team/key", "/data/teamId", "/data/team/id"]),
    );
    let object = s(&v, "/data/id").unwrap_or_else(|| delivery.clone());
    let event_type = match s(&v, "/action") {
        Some(a) => format!("{event}.{a}"),
        None => event,
    };
    Ok(Outcome::Event(Envelope {
        source: Source::Linear,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("linear:{object}"),
        payload: v,
        reply_to: None,
        facts: Facts::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fields::testing::{event, headers};
    use crate::sources::verify::sign::hmac_hex;

    #[test]
    fn signed_and_fresh() {
        let s = b"sek".to_vec();
        let body = br#"{"action":"create","type":"Issue","data":{"id":"i1","team":{"key":"CHK"}},"webhookTimestamp":1700000000000}"#;
        let sig = hmac_hex(&s, &[body]);
        let h = headers(&[
            ("linear-signature", &sig),
            ("linear-delivery", "d-1"),
            ("linear-event", "Issue"),
        ]);
        let d = Delivery {
            now: 1_700_000_030,
            ..Delivery::new(&h, body)
        };
        assert_eq!(verify(&d, &[s]), Ok(()));
        let e = event(Source::Linear.normalise(&d).unwrap());
        assert_eq!(
            (e.event_type.as_str(), e.identifiers[0].1.as_str()),
            ("Issue.create", "CHK")
        );
        // A replay five minutes later is refused as unverified, not as invalid.
        let late = Delivery {
            now: 1_700_000_300,
            ..d
        };
        assert_eq!(
            normalise(&late),
            Err(Refusal::Unverified(VerifyError::StaleTimestamp(60)))
        );
    }
}
