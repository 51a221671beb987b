//! PagerDuty (v3 webhook subscriptions).
//!
//! Signs the body with every active secret of the subscription (`X-PagerDuty-Signature:
//! v1=<hex>[,v1=<hex>]`), no timestamp; `X-Webhook-Id` is the delivery id. Retries a 429.
//! `pagey.ping` is a handshake.

use serde_json::json;

use super::fields::{body_hash, first, header, json_body, push, s};
use super::verify::{VerifyError, any_secret, v1_hex_list};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise,
    retries_429: true,
    platform_path: None,
};

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    any_secret(
        secrets,
        &v1_hex_list(d.headers, "x-pagerduty-signature")?,
        &[d.body],
    )
}

fn normalise(d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let event_type = s(&v, "/event/event_type").unwrap_or_else(|| "unknown".into());
    if event_type == "pagey.ping" {
        return Ok(Outcome::Handshake(json!({"ok": true})));
    }
    let delivery = header(d.headers, "x-webhook-id")
        .or_else(|| s(&v, "/event/id"))
        .unwrap_or_else(|| body_hash(d.body));
    let mut ids = Vec::new();
    push(
        &mut ids,
        "pagerduty_service",
        first(
            &v,
            &["/event/data/service/id", "/event/data/incident/service/id"],
        ),
    );
    let incident_id = first(&v, &["/event/data/incident/id", "/event/data/id"]);
    // The run's answer becomes a note on the incident when it opens (or reopens), never for its
    // later events: a note of ours arrives as `incident.annotated` and must not answer itself.
    let reply_to = match (&incident_id, event_type.as_str()) {
        (Some(id), "incident.triggered" | "incident.reopened") => {
            Some(json!({"kind": "pagerduty", "incident_id": id}))
        }
        _ => None,
    };
    // The service by name, as the other senders name it; the alert is the PagerDuty incident.
    let facts = Facts::default()
        .service(first(
            &v,
            &[
                "/event/data/service/summary",
                "/event/data/incident/service/summary",
            ],
        ))
        .severity(
            first(
                &v,
                &[
                    "/event/data/priority/summary",
                    "/event/data/incident/priority/summary",
                ],
            )
            .filter(|p| super::facts::severity(p).is_some())
            .or_else(|| first(&v, &["/event/data/urgency", "/event/data/incident/urgency"])),
        )
        .alert(
            incident_id.as_ref().map(|i| format!("pagerduty:{i}")),
            event_type == "incident.resolved",
        );
    let incident = incident_id.unwrap_or_else(|| delivery.clone());
    Ok(Outcome::Event(Envelope {
        source: Source::Pagerduty,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("pagerduty:{incident}"),
        payload: v,
        reply_to,
        facts,
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::sources::fields::testing::{event, headers};
    use crate::sources::verify::sign::hmac_hex;

    #[test]
    fn accepts_any_of_several_signatures() {
        let s1 = b"secret-one".to_vec();
        let s2 = b"secret-two".to_vec();
        let body = br#"{"event":{"event_type":"incident.triggered"}}"#;
        let header = format!(
            "v1={},v1={}",
            hmac_hex(&s1, &[body]),
            hmac_hex(&s2, &[body])
        );
        let h = headers(&[("x-pagerduty-signature", &header)]);
        let d = Delivery::new(&h, body);
        assert_eq!(verify(&d, std::slice::from_ref(&s2)), Ok(()));
        assert_eq!(verify(&d, &[s1]), Ok(()));
        assert_eq!(
            verify(&d, &[b"other".to_vec()]),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn v3_incident_and_ping() {
        let body = br#"{"event":{"id":"01DEN4HPBQAAAG05V5QQYBRZMF","event_type":"incident.triggered","occurred_at":"2020-10-02T18:45:22.169Z","data":{"id":"PGR0VU2","type":"incident","service":{"id":"PF9KMXH","type":"service_reference"}}}}"#;
        let h = headers(&[("x-webhook-id", "wh-1")]);
        let e = event(
            Source::Pagerduty
                .normalise(&Delivery::new(&h, body))
                .unwrap(),
        );
        assert_eq!(
            (e.delivery_id.as_str(), e.event_type.as_str()),
            ("wh-1", "incident.triggered")
        );
        assert_eq!(
            e.identifiers,
            vec![("pagerduty_service".into(), "PF9KMXH".into())]
        );
        assert_eq!(e.correlation_key, "pagerduty:PGR0VU2");
        assert_eq!(
            e.reply_to,
            Some(json!({"kind": "pagerduty", "incident_id": "PGR0VU2"}))
        );
        // Later events of the incident (our own note among them) are not answered.
        let annotated = br#"{"event":{"event_type":"incident.annotated","data":{"incident":{"id":"PGR0VU2"},"content":"Switchyard investigation"}}}"#;
        let e = event(
            Source::Pagerduty
                .normalise(&Delivery::new(&h, annotated))
                .unwrap(),
        );
        assert_eq!(e.reply_to, None);
        let h = HeaderMap::new();
        let ping = normalise(&Delivery::new(
            &h,
            br#"{"event":{"event_type":"pagey.ping"}}"#,
        ));
        assert!(matches!(ping, Ok(Outcome::Handshake(_))));
    }
}
