//! One delivery attempt: the Standard Webhooks signature, the POST, and what the receiver said.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::target::check_url;
use crate::store::{AttemptOutcome, DueDelivery};

/// How much of a receiver's answer is kept in the attempts log.
pub const BODY_KEPT: usize = 1024;

/// The `webhook-signature` header: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` for
/// each secret, space-separated (two during a rotation's overlap). Each `whsec_` secret's key is
/// the base64 after the prefix; a secret that does not decode signs nothing.
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|s| B64.decode(s.strip_prefix("whsec_").unwrap_or(s)).ok())
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body.as_bytes());
            format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The wait a `Retry-After` header asks for (seconds; an HTTP date is not honoured), in ms.
fn retry_after(resp: &reqwest::Response) -> Option<i64> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()
        .map(|s| s.clamp(0, 86_400) * 1000)
}

/// Reads at most [`BODY_KEPT`] bytes of the answer and drops the rest unread.
async fn body_prefix(mut resp: reqwest::Response) -> Option<String> {
    let mut kept = Vec::new();
    while kept.len() < BODY_KEPT {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                kept.extend_from_slice(&chunk[..chunk.len().min(BODY_KEPT - kept.len())])
            }
            _ => break,
        }
    }
    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
}

/// Why a request got no answer, without the URL (which the attempts log already names).
fn transport_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} ms", timeout.as_millis());
    }
    let mut msg = if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// An attempt that was not made, and why.
fn not_made(why: String) -> (AttemptOutcome, Option<i64>) {
    (
        AttemptOutcome {
            error: Some(why),
            ..AttemptOutcome::default()
        },
        None,
    )
}

/// Sends `req` and records what the receiver answered (or why it did not), with the wait it
/// asked for, if it did.
async fn send(req: reqwest::RequestBuilder, timeout: Duration) -> (AttemptOutcome, Option<i64>) {
    let started = Instant::now();
    match req.send().await {
        Ok(resp) => {
            let code = resp.status();
            let wait = retry_after(&resp);
            let body = body_prefix(resp).await;
            (
                AttemptOutcome {
                    succeeded: code.is_success(),
                    response_code: Some(code.as_u16()),
                    latency_ms: started.elapsed().as_millis() as i64,
                    response_body: body,
                    error: None,
                },
                wait,
            )
        }
        Err(e) => (
            AttemptOutcome {
                latency_ms: started.elapsed().as_millis() as i64,
                error: Some(transport_error(&e, timeout)),
                ..AttemptOutcome::default()
            },
            None,
        ),
    }
}

/// Makes one attempt of `d`, signed with `secrets`. Answers what happened and the wait the
/// receiver asked for, if it did.
pub async fn attempt(
    http: &reqwest::Client,
    d: &DueDelivery,
    secrets: &[String],
    allow_private: bool,
    timeout: Duration,
) -> (AttemptOutcome, Option<i64>) {
    let url = match check_url(&d.url, allow_private) {
        Ok(u) => u,
        Err(why) => return not_made(format!("the target is refused: {why}")),
    };
    if secrets.is_empty() {
        return not_made("the subscription has no signing secret".into());
    }
    let ts = switchyard_common::time::now_ms() / 1000;
    let req = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, "Switchyard-Webhooks/1")
        .header("webhook-id", &d.event_id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            signature(secrets, &d.event_id, ts, &d.body),
        )
        .body(d.body.clone());
    send(req, timeout).await
}

/// Makes one attempt of a `slack` delivery: the event as a readable message, POSTed to the
/// incoming-webhook `url` (read from the secrets store, checked as any target; never recorded).
pub async fn attempt_slack(
    http: &reqwest::Client,
    d: &DueDelivery,
    url: &str,
    allow_private: bool,
    timeout: Duration,
) -> (AttemptOutcome, Option<i64>) {
    let url = match check_url(url, allow_private) {
        Ok(u) => u,
        Err(why) => return not_made(format!("the incoming-webhook URL is refused: {why}")),
    };
    let Ok(envelope) = serde_json::from_str(&d.body) else {
        return not_made("the published event is not JSON".into());
    };
    let req = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, "Switchyard-Webhooks/1")
        .body(super::slack::message(&envelope).to_string());
    send(req, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's example: this secret, id, timestamp and body sign
    /// to this signature.
    #[test]
    fn signs_as_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        let sig = signature(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_signs_during_an_overlap() {
        let a = format!("whsec_{}", B64.encode([1u8; 24]));
        let b = format!("whsec_{}", B64.encode([2u8; 24]));
        let both = signature(&[a.clone(), b.clone()], "id", 1, "{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&[a], "id", 1, "{}"));
        assert_eq!(parts[1], signature(&[b], "id", 1, "{}"));
    }
}
