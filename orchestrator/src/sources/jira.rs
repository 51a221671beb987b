//! Jira Cloud.
//!
//! Signs the body (`X-Hub-Signature: sha256=<hex>`); `X-Atlassian-Webhook-Identifier` is the
//! delivery id. Retries a 429.

use super::fields::{body_hash, header, json_body, push, s};
use super::verify::{VerifyError, prefixed_hex};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise,
    retries_429: true,
    platform_path: None,
};

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    prefixed_hex(d.headers, "x-hub-signature", "sha256=", d.body, secrets)
}

fn normalise(d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let delivery =
        header(d.headers, "x-atlassian-webhook-identifier").unwrap_or_else(|| body_hash(d.body));
    let event_type = s(&v, "/webhookEvent").unwrap_or_else(|| "unknown".into());
    let mut ids = Vec::new();
    push(&mut ids, "jira_project", s(&v, "/issue/fields/project/key"));
    let issue = s(&v, "/issue/key").unwrap_or_else(|| delivery.clone());
    Ok(Outcome::Event(Envelope {
        source: Source::Jira,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("jira:{issue}"),
        payload: v,
        reply_to: None,
        facts: Facts::default(),
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::sources::fields::testing::{event, headers};
    use crate::sources::verify::sign::hmac_hex;

    #[test]
    fn signed_issue_created() {
        let s = b"sek".to_vec();
        let body = br#"{"webhookEvent":"jira:issue_created","issue":{"key":"OPS-1","fields":{"project":{"key":"OPS"}}}}"#;
        let sig = format!("sha256={}", hmac_hex(&s, &[body]));
        let h = headers(&[
            ("x-atlassian-webhook-identifier", "j-1"),
            ("x-hub-signature", &sig),
        ]);
        let d = Delivery::new(&h, body);
        assert_eq!(verify(&d, &[s]), Ok(()));
        let e = event(Source::Jira.normalise(&d).unwrap());
        assert_eq!(
            (e.identifiers[0].1.as_str(), e.correlation_key.as_str()),
            ("OPS", "jira:OPS-1")
        );
    }

    #[test]
    fn an_oversized_project_key_is_dropped() {
        let body = json!({"webhookEvent": "jira:issue_created", "issue": {"key": "K-1", "fields": {"project": {"key": "P".repeat(300)}}}});
        let (h, raw) = (HeaderMap::new(), body.to_string());
        let e = event(
            Source::Jira
                .normalise(&Delivery::new(&h, raw.as_bytes()))
                .unwrap(),
        );
        assert!(e.identifiers.is_empty());
    }
}
