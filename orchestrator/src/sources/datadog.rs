//! Datadog (webhooks integration), and the generic alert shape Opsgenie shares (see
//! [`super::opsgenie`]).
//!
//! No signature: a shared secret as `Authorization: Bearer`, basic auth, or the header named by
//! the integration's `token_header` setting. Never answered 429.

use serde_json::Value;

use super::fields::{body_hash, first, json_body, push};
use super::verify::configured_token;
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify: configured_token,
    normalise: |d| normalise_alert(Source::Datadog, d),
    retries_429: false,
    platform_path: None,
};

/// An alert with an id, a `service` and `key:value` tags.
pub(super) fn normalise_alert(source: Source, d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let delivery = first(&v, &["/id", "/alertId", "/alert/alertId", "/event_id"])
        .unwrap_or_else(|| body_hash(d.body));
    let event_type = first(&v, &["/event_type", "/action", "/alert_transition"])
        .unwrap_or_else(|| "alert".into());
    let mut ids = Vec::new();
    push(
        &mut ids,
        "service",
        first(
            &v,
            &["/service", "/alert/service", "/alert/details/service"],
        ),
    );
    if let Some(tags) = v
        .pointer("/alert/tags")
        .or_else(|| v.get("tags"))
        .and_then(Value::as_array)
    {
        for t in tags.iter().filter_map(Value::as_str) {
            if let Some((k, val)) = t.split_once(':').or_else(|| t.split_once('=')) {
                push(&mut ids, "alert_label", Some(format!("{k}={val}")));
            }
        }
    }
    let group = first(&v, &["/alert/alias", "/aggreg_key", "/alert/alertId"])
        .unwrap_or_else(|| delivery.clone());
    Ok(Outcome::Event(Envelope {
        source,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("{}:{group}", source.as_str()),
        payload: v,
        reply_to: None,
        facts: Facts::default(),
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::sources::fields::testing::event;

    #[test]
    fn tags_become_labels() {
        let body = br#"{"id":"dd-1","event_type":"triggered","service":"checkout-api","tags":["env:prod","team=checkout"],"aggreg_key":"agg-1"}"#;
        let h = HeaderMap::new();
        let e = event(Source::Datadog.normalise(&Delivery::new(&h, body)).unwrap());
        assert_eq!(e.delivery_id, "dd-1");
        assert_eq!(e.correlation_key, "datadog:agg-1");
        assert_eq!(
            e.identifiers,
            vec![
                ("service".into(), "checkout-api".into()),
                ("alert_label".into(), "env=prod".into()),
                ("alert_label".into(), "team=checkout".into())
            ]
        );
    }
}
