//! Sentry (integration platform webhooks).
//!
//! Signs the body as sent with the client secret (`Sentry-Hook-Signature: <hex>`), no timestamp;
//! `Request-ID` is the delivery id, `Sentry-Hook-Resource` the resource. Drops the delivery on a
//! 4xx, so never answered 429.

use super::fields::{body_hash, first, header, json_body, push, s};
use super::verify::{VerifyError, any_secret, hex_sig};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise,
    retries_429: false,
    platform_path: None,
};

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    let name = "sentry-hook-signature";
    let sig = hex_sig(super::verify::header(d.headers, name)?, name)?;
    any_secret(secrets, &[sig], &[d.body])
}

fn normalise(d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    // Installation events are not incidents, but are stored like any other.
    let resource = header(d.headers, "sentry-hook-resource").unwrap_or_else(|| "unknown".into());
    let delivery = header(d.headers, "request-id").unwrap_or_else(|| body_hash(d.body));
    let mut ids = Vec::new();
    push(
        &mut ids,
        "sentry_project",
        first(
            &v,
            &[
                "/data/issue/project/slug",
                "/data/event/project_slug",
                "/data/project/slug",
                "/data/issue/project/id",
                "/data/event/project",
            ],
        ),
    );
    let issue =
        first(&v, &["/data/issue/id", "/data/event/issue_id"]).unwrap_or_else(|| delivery.clone());
    let event_type = match s(&v, "/action") {
        Some(a) => format!("{resource}.{a}"),
        None => resource,
    };
    // The project is the service; the issue is the alert, resolved by its `resolved` action.
    let facts = Facts::default()
        .service(first(
            &v,
            &[
                "/data/issue/project/slug",
                "/data/event/project_slug",
                "/data/project/slug",
            ],
        ))
        .severity(first(&v, &["/data/issue/level", "/data/event/level"]))
        .alert(
            Some(format!("sentry:{issue}")),
            s(&v, "/action").as_deref() == Some("resolved"),
        );
    Ok(Outcome::Event(Envelope {
        source: Source::Sentry,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("sentry:{issue}"),
        payload: v,
        reply_to: None,
        facts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fields::testing::{event, headers};
    use crate::sources::verify::sign::hmac_hex;

    #[test]
    fn signed_issue_event() {
        let s = b"sek".to_vec();
        let body = br#"{"action":"created","data":{"issue":{"id":"123","project":{"slug":"checkout-web"}}}}"#;
        let sig = hmac_hex(&s, &[body]);
        let h = headers(&[
            ("sentry-hook-signature", &sig),
            ("sentry-hook-resource", "issue"),
            ("request-id", "r-1"),
        ]);
        let d = Delivery::new(&h, body);
        assert_eq!(verify(&d, &[s]), Ok(()));
        let e = event(Source::Sentry.normalise(&d).unwrap());
        assert_eq!(
            (e.event_type.as_str(), e.delivery_id.as_str()),
            ("issue.created", "r-1")
        );
        assert_eq!(
            e.identifiers,
            vec![("sentry_project".into(), "checkout-web".into())]
        );
    }
}
