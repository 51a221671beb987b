//! CircleCI (project webhooks).
//!
//! Signs the body (`circleci-signature: v1=<hex>[,...]`); the body's `id` is the delivery id.
//! Routed by the GitHub repository of the project slug. Never answered 429.

use super::fields::{body_hash, header, json_body, push, s};
use super::verify::{VerifyError, any_secret, v1_hex_list};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise,
    retries_429: false,
    platform_path: None,
};

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    any_secret(
        secrets,
        &v1_hex_list(d.headers, "circleci-signature")?,
        &[d.body],
    )
}

fn normalise(d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let delivery = s(&v, "/id").unwrap_or_else(|| body_hash(d.body));
    let event_type = s(&v, "/type")
        .or_else(|| header(d.headers, "circleci-event-type"))
        .unwrap_or_else(|| "unknown".into());
    let mut ids = Vec::new();
    // Project slugs look like gh/owner/repo or github/owner/repo.
    if let Some(slug) = s(&v, "/project/slug") {
        let parts: Vec<&str> = slug.splitn(2, '/').collect();
        if parts.len() == 2 && matches!(parts[0], "gh" | "github") {
            push(&mut ids, "github_repo", Some(parts[1].to_ascii_lowercase()));
        }
    }
    let pipeline = s(&v, "/pipeline/id").unwrap_or_else(|| delivery.clone());
    Ok(Outcome::Event(Envelope {
        source: Source::Circleci,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("circleci:{pipeline}"),
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
    fn signed_workflow_routed_by_its_repository() {
        let s = b"sek".to_vec();
        let body = br#"{"id":"c-1","type":"workflow-completed","project":{"slug":"gh/Acme/Api"},"pipeline":{"id":"p-1"}}"#;
        let sig = format!("v1={}", hmac_hex(&s, &[body]));
        let h = headers(&[("circleci-signature", &sig)]);
        let d = Delivery::new(&h, body);
        assert_eq!(verify(&d, &[s]), Ok(()));
        let e = event(Source::Circleci.normalise(&d).unwrap());
        assert_eq!(
            e.identifiers,
            vec![("github_repo".into(), "acme/api".into())]
        );
        assert_eq!(e.correlation_key, "circleci:p-1");
    }
}
