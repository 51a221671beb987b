//! Slack (Events API, slash commands, interactivity), usually the platform's shared app at
//! `/webhooks/slack/{events,commands,interactions}`.
//!
//! Signs `v0:{timestamp}:{body}` with the app's signing secret (`X-Slack-Signature: v0=<hex>`,
//! `X-Slack-Request-Timestamp`, 5 minutes tolerance). The Events API's `url_verification` is a
//! handshake answered with its challenge. Retries (with `X-Slack-Retry-Num`) on anything but a fast
//! 2xx, so a 429 is retried too. Replies go to the thread the event came from.

use serde_json::{Value, json};

use super::fields::{body_hash, first, json_body, push, s};
use super::verify::{VerifyError, any_secret, check_age, header, hex_sig};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise,
    retries_429: true,
    platform_path: Some("/webhooks/slack/events"),
};

fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    let ts = header(d.headers, "x-slack-request-timestamp")?;
    let ts_n: i64 = ts
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed("x-slack-request-timestamp"))?;
    let sig = header(d.headers, "x-slack-signature")?;
    let sig = sig
        .strip_prefix("v0=")
        .ok_or(VerifyError::Malformed("x-slack-signature"))?;
    let sig = hex_sig(sig, "x-slack-signature")?;
    check_age(ts_n, d.now, 300)?;
    let parts: [&[u8]; 4] = [b"v0:", ts.trim().as_bytes(), b":", d.body];
    any_secret(secrets, &[sig], &parts)
}

/// A form body's fields.
fn form(body: &[u8]) -> Result<Vec<(String, String)>, Refusal> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| Refusal::Invalid(format!("the body is not a form: {e}")))
}

fn normalise(d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let body = d.body;
    let (payload, event_type, delivery, team, channel, thread) = match d.endpoint {
        "commands" => {
            let form = form(body)?;
            let get = |k: &str| {
                form.iter()
                    .find(|(a, _)| a == k)
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty())
            };
            let v = Value::Object(
                form.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            );
            let event_type = format!("command:{}", get("command").unwrap_or_default());
            let delivery = get("trigger_id").unwrap_or_else(|| body_hash(body));
            let (team, channel) = (get("team_id"), get("channel_id"));
            (v, event_type, delivery, team, channel, None)
        }
        "interactions" => {
            let raw = form(body)?
                .into_iter()
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    Refusal::Invalid("interactivity bodies carry a `payload` field".into())
                })?;
            let v = json_body(raw.as_bytes())?;
            let event_type = format!("interaction:{}", s(&v, "/type").unwrap_or_default());
            let delivery = first(&v, &["/trigger_id", "/action_ts", "/actions/0/action_ts"])
                .unwrap_or_else(|| body_hash(body));
            let team = first(&v, &["/team/id", "/user/team_id"]);
            let channel = first(&v, &["/channel/id", "/container/channel_id"]);
            let thread = first(
                &v,
                &["/message/thread_ts", "/message/ts", "/container/message_ts"],
            );
            (v, event_type, delivery, team, channel, thread)
        }
        _ => {
            let v = json_body(body)?;
            if v["type"] == "url_verification" {
                return Ok(Outcome::Handshake(json!({"challenge": v["challenge"]})));
            }
            let event_type =
                first(&v, &["/event/type", "/type"]).unwrap_or_else(|| "unknown".into());
            let delivery = s(&v, "/event_id").unwrap_or_else(|| body_hash(body));
            let team = first(&v, &["/team_id", "/authorizations/0/team_id"]);
            let channel = first(
                &v,
                &["/event/channel", "/event/item/channel", "/event/channel_id"],
            );
            let thread = first(&v, &["/event/thread_ts", "/event/ts", "/event/item/ts"]);
            (v, event_type, delivery, team, channel, thread)
        }
    };
    let mut ids = Vec::new();
    push(&mut ids, "slack_channel", channel.clone());
    push(&mut ids, "slack_team", team.clone());
    // Never answer a bot's message (ours among them): each answer would be the next question.
    let from_bot = payload
        .pointer("/event/bot_id")
        .is_some_and(|b| !b.is_null())
        || s(&payload, "/event/subtype").as_deref() == Some("bot_message");
    let reply_to = channel
        .as_ref()
        .filter(|_| !from_bot)
        .map(|c| json!({"kind": "slack", "team": team, "channel": c, "thread_ts": thread}));
    let correlation = format!(
        "slack:{}:{}:{}",
        team.unwrap_or_default(),
        channel.unwrap_or_default(),
        thread.unwrap_or_else(|| delivery.clone())
    );
    Ok(Outcome::Event(Envelope {
        source: Source::Slack,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: correlation,
        payload,
        reply_to,
        facts: Facts::default(),
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::sources::fields::testing::{event, headers};

    fn at<'a>(endpoint: &'a str, h: &'a HeaderMap, body: &'a [u8]) -> Delivery<'a> {
        Delivery {
            endpoint,
            ..Delivery::new(h, body)
        }
    }

    #[test]
    fn signs_version_timestamp_and_body() {
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
        let d = |body: &'static [u8], now| Delivery {
            now,
            ..Delivery::new(&h, body)
        };
        let secrets = std::slice::from_ref(&secret);
        assert_eq!(verify(&d(body, 1531420618 + 10), secrets), Ok(()));
        assert_eq!(
            verify(&d(body, 1531420618 + 301), secrets),
            Err(VerifyError::StaleTimestamp(300))
        );
        assert_eq!(
            verify(&d(b"tampered", 1531420618), secrets),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_timestamp_at_the_extremes_is_stale_not_a_panic() {
        let h = headers(&[
            ("x-slack-request-timestamp", "-9223372036854775808"),
            ("x-slack-signature", "v0=00"),
        ]);
        assert!(matches!(
            verify(&Delivery::new(&h, b"{}"), &[b"s".to_vec()]),
            Err(VerifyError::StaleTimestamp(_))
        ));
    }

    #[test]
    fn url_verification_is_a_handshake() {
        let h = HeaderMap::new();
        let o = normalise(&at("events", &h, br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","token":"x"}"#)).unwrap();
        assert_eq!(
            o,
            Outcome::Handshake(
                json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
            )
        );
    }

    #[test]
    fn event_callback_with_its_thread_as_reply_target() {
        let body = br#"{"type":"event_callback","team_id":"T0001","event_id":"Ev0PV52K21","event":{"type":"app_mention","channel":"C0CHECKOUT","ts":"1515449522.000016","text":"<@U0LAN0Z89> is checkout down?"}}"#;
        let h = HeaderMap::new();
        let e = event(Source::Slack.normalise(&at("events", &h, body)).unwrap());
        assert_eq!(e.delivery_id, "Ev0PV52K21");
        assert_eq!(e.event_type, "app_mention");
        assert_eq!(
            e.identifiers,
            vec![
                ("slack_channel".into(), "C0CHECKOUT".into()),
                ("slack_team".into(), "T0001".into())
            ]
        );
        assert_eq!(
            e.correlation_key,
            "slack:T0001:C0CHECKOUT:1515449522.000016"
        );
        assert_eq!(
            e.reply_to,
            Some(
                json!({"kind": "slack", "team": "T0001", "channel": "C0CHECKOUT", "thread_ts": "1515449522.000016"})
            )
        );
        let threaded = br#"{"team_id":"T1","event":{"type":"message","channel":"C1","ts":"1.5","thread_ts":"1.0"}}"#;
        let e = event(normalise(&at("events", &h, threaded)).unwrap());
        assert_eq!(
            e.reply_to,
            Some(json!({"kind": "slack", "team": "T1", "channel": "C1", "thread_ts": "1.0"}))
        );
        // A bot's message (our own answer among them) is kept, never answered.
        for bot in [
            br#"{"team_id":"T1","event":{"type":"message","channel":"C1","ts":"1.6","thread_ts":"1.0","bot_id":"B1"}}"#.as_slice(),
            br#"{"team_id":"T1","event":{"type":"message","subtype":"bot_message","channel":"C1","ts":"1.7"}}"#,
        ] {
            let e = event(normalise(&at("events", &h, bot)).unwrap());
            assert_eq!(e.reply_to, None);
            assert_eq!(e.identifiers[0], ("slack_channel".into(), "C1".into()));
        }
    }

    #[test]
    fn commands_and_interactions_are_forms() {
        let h = HeaderMap::new();
        let e = event(normalise(&at("commands", &h, b"team_id=T1&channel_id=C2&command=%2Fincident&text=db+down&trigger_id=13345224609.738474920.8088930838d88f008e0")).unwrap());
        assert_eq!(
            (e.event_type.as_str(), e.delivery_id.as_str()),
            (
                "command:/incident",
                "13345224609.738474920.8088930838d88f008e0"
            )
        );
        assert_eq!(e.payload["text"], "db down");
        let payload = serde_urlencoded::to_string([("payload", r#"{"type":"block_actions","trigger_id":"t-1","team":{"id":"T1"},"channel":{"id":"C2"},"message":{"ts":"1.2"}}"#)]).unwrap();
        let e = event(normalise(&at("interactions", &h, payload.as_bytes())).unwrap());
        assert_eq!(
            (
                e.event_type.as_str(),
                e.delivery_id.as_str(),
                e.correlation_key.as_str()
            ),
            ("interaction:block_actions", "t-1", "slack:T1:C2:1.2")
        );
    }
}
