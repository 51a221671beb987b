//! GitLab (project and group webhooks).
//!
//! No signature: the secret token as is in `X-Gitlab-Token`. `Idempotency-Key` (or
//! `X-Gitlab-Event-UUID`) is the delivery id. GitLab disables a hook after repeated 4xx, so it is
//! never answered 429.

use super::fields::{body_hash, first, header, json_body, push, s};
use super::verify::{Presented, VerifyError, shared_secret};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise,
    retries_429: false,
    platform_path: None,
};

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    shared_secret(d.headers, Presented::Header("x-gitlab-token"), secrets)
}

fn normalise(d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let delivery = header(d.headers, "idempotency-key")
        .or_else(|| header(d.headers, "x-gitlab-event-uuid"))
        .unwrap_or_else(|| body_hash(d.body));
    let event_type = first(&v, &["/object_kind", "/event_type"])
        .or_else(|| header(d.headers, "x-gitlab-event"))
        .unwrap_or_else(|| "unknown".into());
    let project = s(&v, "/project/path_with_namespace").map(|p| p.to_ascii_lowercase());
    let mut ids = Vec::new();
    push(&mut ids, "gitlab_project", project.clone());
    let iid = s(&v, "/object_attributes/iid");
    let correlation = match (project, iid) {
        (Some(p), Some(i)) => format!("gitlab:{p}#{i}"),
        _ => format!("gitlab:{delivery}"),
    };
    Ok(Outcome::Event(Envelope {
        source: Source::Gitlab,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: correlation,
        facts: Facts::default().service(s(&v, "/project/name").or_else(|| s(&v, "/project/path"))),
        payload: v,
        reply_to: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fields::testing::{event, headers};

    #[test]
    fn issue_event() {
        let h = headers(&[("idempotency-key", "k-1"), ("x-gitlab-token", "tok")]);
        let body = br#"{"object_kind":"issue","project":{"path_with_namespace":"Acme/Api"},"object_attributes":{"iid":4}}"#;
        let d = Delivery::new(&h, body);
        assert_eq!(verify(&d, &[b"tok".to_vec()]), Ok(()));
        let e = event(Source::Gitlab.normalise(&d).unwrap());
        assert_eq!(
            (e.delivery_id.as_str(), e.correlation_key.as_str()),
            ("k-1", "gitlab:acme/api#4")
        );
    }
}
