//! Prometheus Alertmanager (webhook receiver, payload version 4), and the alert-group shape
//! Grafana sends too (see [`super::grafana`]).
//!
//! No signature: a shared secret as `Authorization: Bearer`, basic auth, or the header named by
//! the integration's `token_header` setting. No delivery id either: it is derived (see
//! [`alert_group_delivery_id`]). Drops the notification on any 4xx, so never answered 429.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::fields::{json_body, push, s};
use super::verify::configured_token;
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify: configured_token,
    normalise: |d| normalise_group(Source::Alertmanager, d),
    retries_429: false,
    platform_path: None,
};

/// Alertmanager (payload version 4) and Grafana: no delivery id, so it is derived from the group
/// key, receiver, status and the sorted `fingerprint:status:startsAt` of every alert. HA pairs and
/// Grafana's duplicates then collapse into one event; a change of any alert's state is a new
/// event, and so is an alert that resolved and fired again (a new `startsAt`), however soon.
pub fn alert_group_delivery_id(v: &Value) -> String {
    let mut parts: Vec<String> = v["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "{}:{}:{}",
                        s(x, "/fingerprint").unwrap_or_default(),
                        s(x, "/status").unwrap_or_default(),
                        s(x, "/startsAt").unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    let key = format!(
        "{}\n{}\n{}\n{}",
        s(v, "/groupKey").unwrap_or_default(),
        s(v, "/receiver").unwrap_or_default(),
        s(v, "/status").unwrap_or_default(),
        parts.join(",")
    );
    format!("derived:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// One notification of an alert group: routed by the `service` labels first, then every label.
pub(super) fn normalise_group(source: Source, d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let delivery = alert_group_delivery_id(&v);
    let mut ids = Vec::new();
    let mut label_sets: Vec<&serde_json::Map<String, Value>> = Vec::new();
    if let Some(c) = v["commonLabels"].as_object() {
        label_sets.push(c);
    }
    if let Some(alerts) = v["alerts"].as_array() {
        label_sets.extend(alerts.iter().filter_map(|a| a["labels"].as_object()));
    }
    for labels in &label_sets {
        if let Some(svc) = labels.get("service").and_then(Value::as_str) {
            push(&mut ids, "service", Some(svc.to_owned()));
        }
    }
    for labels in &label_sets {
        for (k, val) in labels.iter() {
            if let Some(val) = val.as_str() {
                push(&mut ids, "alert_label", Some(format!("{k}={val}")));
            }
        }
    }
    ids.truncate(48);
    let status = s(&v, "/status").unwrap_or_else(|| "unknown".into());
    let group = s(&v, "/groupKey").unwrap_or_else(|| delivery.clone());
    // The group's `service` label (common to its alerts, or the first alert's), its highest
    // `severity`, and the group as the alert: `resolved` when the whole group has.
    let service = label_sets
        .iter()
        .find_map(|l| l.get("service").and_then(Value::as_str).map(str::to_owned));
    let severity = label_sets
        .iter()
        .filter_map(|l| l.get("severity").and_then(Value::as_str))
        .filter_map(super::facts::severity)
        .max_by_key(|s| super::facts::rank(Some(s)))
        .map(str::to_owned);
    let facts = Facts::default().service(service).severity(severity).alert(
        Some(format!("{}:{group}", source.as_str())),
        status == "resolved",
    );
    Ok(Outcome::Event(Envelope {
        source,
        event_type: format!("alert.{status}"),
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("{}:{group}", source.as_str()),
        payload: v,
        reply_to: None,
        facts,
    }))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use serde_json::json;

    use super::*;
    use crate::sources::VerifyError;
    use crate::sources::fields::testing::{event, headers};

    #[test]
    fn derives_a_stable_delivery_id() {
        let body = json!({"version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "receiver": "switchyard", "status": "firing",
            "commonLabels": {"alertname": "HighLatency", "team": "checkout", "service": "checkout-api"},
            "alerts": [{"status": "firing", "fingerprint": "b", "labels": {"instance": "a"}}, {"status": "firing", "fingerprint": "a", "labels": {"instance": "b"}}]});
        let h = HeaderMap::new();
        let raw = body.to_string();
        let e = event(
            Source::Alertmanager
                .normalise(&Delivery::new(&h, raw.as_bytes()))
                .unwrap(),
        );
        assert_eq!(e.identifiers[0], ("service".into(), "checkout-api".into()));
        assert!(
            e.identifiers
                .contains(&("alert_label".into(), "team=checkout".into()))
        );
        assert_eq!(e.event_type, "alert.firing");
        // The same group from the other HA replica, alerts in another order: same id.
        let mut swapped = body.clone();
        swapped["alerts"].as_array_mut().unwrap().reverse();
        assert_eq!(alert_group_delivery_id(&swapped), e.delivery_id);
        // An alert resolving is a new event.
        let mut resolved = body.clone();
        resolved["alerts"][0]["status"] = json!("resolved");
        assert_ne!(alert_group_delivery_id(&resolved), e.delivery_id);
    }

    #[test]
    fn an_alert_that_fires_again_is_a_new_delivery() {
        let fired = |starts: &str| {
            json!({"groupKey": "g", "receiver": "r", "status": "firing",
                "alerts": [{"status": "firing", "fingerprint": "f1", "startsAt": starts}]})
        };
        let first = alert_group_delivery_id(&fired("2026-11-22T10:00:00Z"));
        // Resolved, then firing again a few minutes later: same group, fingerprint and status.
        let again = alert_group_delivery_id(&fired("2026-11-22T10:07:00Z"));
        assert_ne!(first, again);
        // The HA twin of the first notification is still the same delivery.
        assert_eq!(
            first,
            alert_group_delivery_id(&fired("2026-11-22T10:00:00Z"))
        );
    }

    #[test]
    fn labels_are_capped_at_what_the_lookup_takes() {
        let labels: serde_json::Map<String, Value> =
            (0..200).map(|i| (format!("l{i}"), json!("v"))).collect();
        let body = json!({"groupKey": "g", "status": "firing", "alerts": [{"labels": labels}]});
        let (h, raw) = (HeaderMap::new(), body.to_string());
        let e = event(
            Source::Alertmanager
                .normalise(&Delivery::new(&h, raw.as_bytes()))
                .unwrap(),
        );
        assert!(!e.identifiers.is_empty());
        assert!(e.identifiers.len() <= switchyard_common::routing::MAX_IDENTIFIERS);
    }

    #[test]
    fn the_token_comes_from_the_configured_header_or_authorization() {
        let secrets = [b"tok-1".to_vec()];
        let settings = json!({"token_header": "X-Token"});
        let h = headers(&[("x-token", "tok-1")]);
        let d = Delivery {
            settings: &settings,
            ..Delivery::new(&h, b"{}")
        };
        assert_eq!(configured_token(&d, &secrets), Ok(()));
        let h = headers(&[("x-token", "tok-2")]);
        let d = Delivery {
            settings: &settings,
            ..Delivery::new(&h, b"{}")
        };
        assert_eq!(
            configured_token(&d, &secrets),
            Err(VerifyError::BadSignature)
        );
        let h = headers(&[("authorization", "Bearer tok-1")]);
        assert_eq!(
            configured_token(&Delivery::new(&h, b"{}"), &secrets),
            Ok(())
        );
        // With a configured header, Authorization does not count.
        let d = Delivery {
            settings: &settings,
            ..Delivery::new(&h, b"{}")
        };
        assert_eq!(
            configured_token(&d, &secrets),
            Err(VerifyError::MissingHeader("token header"))
        );
    }
}
