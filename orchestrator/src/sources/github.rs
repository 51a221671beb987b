//! GitHub (repository and organisation webhooks, or the platform's GitHub App at
//! `/webhooks/github`).
//!
//! Signs the body (`X-Hub-Signature-256: sha256=<hex>`), no timestamp; `X-GitHub-Delivery` is the
//! delivery id (a redelivery keeps it). Never retries on its own, so a 429 would lose the event:
//! always accepted. `ping` is a handshake. Replies go to the issue or pull request.

use serde_json::{Value, json};

use super::fields::{body_hash, first, header, json_body, push, s};
use super::verify::{VerifyError, prefixed_hex};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise,
    retries_429: false,
    platform_path: Some("/webhooks/github"),
};

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    prefixed_hex(d.headers, "x-hub-signature-256", "sha256=", d.body, secrets)
}

fn normalise(d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let event = header(d.headers, "x-github-event").unwrap_or_else(|| "unknown".into());
    if event == "ping" {
        return Ok(Outcome::Handshake(json!({"ok": true, "zen": v["zen"]})));
    }
    let delivery = header(d.headers, "x-github-delivery").unwrap_or_else(|| body_hash(d.body));
    let full_name = s(&v, "/repository/full_name");
    let repo = full_name.as_ref().map(|r| r.to_ascii_lowercase());
    let owner = first(
        &v,
        &[
            "/repository/owner/login",
            "/organization/login",
            "/installation/account/login",
        ],
    )
    .map(|o| o.to_ascii_lowercase());
    let mut ids = Vec::new();
    push(&mut ids, "github_repo", repo.clone());
    push(&mut ids, "github_owner", owner);
    let number = first(
        &v,
        &[
            "/issue/number",
            "/pull_request/number",
            "/discussion/number",
        ],
    );
    // Comments go on issues and pull requests (discussions have no comment API of that kind).
    let commentable = v
        .pointer("/issue/number")
        .or_else(|| v.pointer("/pull_request/number"))
        .and_then(Value::as_i64);
    // Never answer a bot, nor a comment of ours (a token of a user posts as that user): each
    // answer would be the next question.
    let from_bot = s(&v, "/sender/type").as_deref() == Some("Bot")
        || s(&v, "/comment/body").is_some_and(|b| {
            b.trim_start_matches('#')
                .trim_start()
                .starts_with(switchyard_api::runs::REPLY_TITLE)
        });
    let reply_to = match (&full_name, commentable) {
        (Some(r), Some(n)) if !from_bot => {
            Some(json!({"kind": "github", "repo": r, "issue_number": n}))
        }
        _ => None,
    };
    let correlation = match (&repo, number) {
        (Some(r), Some(n)) => format!("github:{r}#{n}"),
        (Some(r), None) => format!("github:{r}:{delivery}"),
        _ => format!("github:{delivery}"),
    };
    let event_type = match s(&v, "/action") {
        Some(a) => format!("{event}.{a}"),
        None => event,
    };
    Ok(Outcome::Event(Envelope {
        source: Source::Github,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: correlation,
        payload: v,
        reply_to,
        facts: Facts::default(),
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::sources::fields::testing::{event, headers};

    #[test]
    fn published_test_vector() {
        // From GitHub's documentation (WEBHOOK-SOURCES.md).
        let secret = b"It's a Secret to Everybody".to_vec();
        let h = headers(&[(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        let secrets = std::slice::from_ref(&secret);
        assert_eq!(
            verify(&Delivery::new(&h, b"Hello, World!"), secrets),
            Ok(())
        );
        assert_eq!(
            verify(&Delivery::new(&h, b"Hello, World?"), secrets),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn issue_comment_and_ping() {
        let h = headers(&[
            ("x-github-event", "issue_comment"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ]);
        let body = br#"{"action":"created","issue":{"number":7},"comment":{"body":"@switchyard why?"},"repository":{"full_name":"Acme/Checkout","owner":{"login":"Acme"}}}"#;
        let e = event(Source::Github.normalise(&Delivery::new(&h, body)).unwrap());
        assert_eq!(e.event_type, "issue_comment.created");
        assert_eq!(
            e.identifiers,
            vec![
                ("github_repo".into(), "acme/checkout".into()),
                ("github_owner".into(), "acme".into())
            ]
        );
        assert_eq!(e.correlation_key, "github:acme/checkout#7");
        assert_eq!(
            e.reply_to,
            Some(json!({"kind": "github", "repo": "Acme/Checkout", "issue_number": 7}))
        );
        let h = headers(&[("x-github-event", "ping")]);
        let ping = normalise(&Delivery::new(
            &h,
            br#"{"zen":"Keep it logically awesome."}"#,
        ));
        assert!(matches!(ping, Ok(Outcome::Handshake(_))));
    }

    #[test]
    fn our_own_comments_and_bots_are_not_answered() {
        let h = headers(&[
            ("x-github-event", "issue_comment"),
            ("x-github-delivery", "d"),
        ]);
        for body in [
            br####"{"action":"created","issue":{"number":7},"comment":{"body":"### Switchyard investigation\n\ncheckout is down"},"sender":{"type":"User"},"repository":{"full_name":"a/b"}}"####.as_slice(),
            br#"{"action":"created","issue":{"number":7},"comment":{"body":"deployed"},"sender":{"type":"Bot"},"repository":{"full_name":"a/b"}}"#,
        ] {
            let e = event(Source::Github.normalise(&Delivery::new(&h, body)).unwrap());
            assert_eq!(e.reply_to, None);
            assert_eq!(e.correlation_key, "github:a/b#7");
        }
    }

    #[test]
    fn no_reply_target_without_an_issue_or_pull_request() {
        let h = HeaderMap::new();
        let e =
            event(normalise(&Delivery::new(&h, br#"{"repository":{"full_name":"a/b"}}"#)).unwrap());
        assert_eq!(e.reply_to, None);
    }

    #[test]
    fn identifiers_the_lookup_would_refuse_are_dropped() {
        // A repository name that is not owner/name: the owner is kept.
        let h = headers(&[("x-github-event", "issues"), ("x-github-delivery", "d")]);
        let body = br#"{"repository":{"full_name":"broken","owner":{"login":"Acme"}}}"#;
        let e = event(Source::Github.normalise(&Delivery::new(&h, body)).unwrap());
        assert_eq!(e.identifiers, vec![("github_owner".into(), "acme".into())]);
    }
}
