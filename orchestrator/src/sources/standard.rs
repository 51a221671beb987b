//! Any Standard Webhooks sender (<https://www.standardwebhooks.com>), and the shape incident.io
//! uses too (see [`super::incidentio`]).
//!
//! Signs `{webhook-id}.{webhook-timestamp}.{body}` with the base64 key after `whsec_`
//! (`webhook-signature: v1,<base64> ...`, one per key during rotation; 5 minutes tolerance);
//! `webhook-id` is the delivery id. Retries a 429.

use serde_json::Value;

use super::fields::{body_hash, first, header, json_body, nested, push};
use super::verify::{self, VerifyError, standard_key};
use super::{Delivery, Envelope, Facts, Outcome, Refusal, Sender, Source};

pub(super) const SENDER: Sender = Sender {
    verify,
    normalise: |d| normalise_as(Source::Standard, d),
    retries_429: true,
    platform_path: None,
};

/// Verifies with every active secret's key (secrets too short to be a key never match).
pub(super) fn verify(d: &Delivery<'_>, secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    let keys: Vec<Vec<u8>> = secrets
        .iter()
        .filter_map(|s| standard_key(&String::from_utf8_lossy(s)))
        .collect();
    verify::standard(d.headers, d.body, &keys, d.now)
}

pub(super) fn normalise_as(source: Source, d: &Delivery<'_>) -> Result<Outcome, Refusal> {
    let v = json_body(d.body)?;
    let delivery = header(d.headers, "webhook-id").unwrap_or_else(|| body_hash(d.body));
    let event_type = first(&v, &["/event_type", "/type"]).unwrap_or_else(|| "unknown".into());
    let mut ids = Vec::new();
    push(
        &mut ids,
        "incidentio_alert_source",
        nested(&v, &["/alert_source_id", "/alert_source/id"]),
    );
    push(
        &mut ids,
        "service",
        first(&v, &["/service", "/data/service"]),
    );
    let incident_id = nested(&v, &["/incident/id", "/id"]);
    let facts = facts(source, &v, &event_type, incident_id.as_deref());
    let incident = incident_id.unwrap_or_else(|| delivery.clone());
    Ok(Outcome::Event(Envelope {
        source,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("{}:{incident}", source.as_str()),
        payload: v,
        reply_to: None,
        facts,
    }))
}

/// incident.io names the affected services (`custom_field_entries` of the catalog's Service
/// type, or `affected_services`), a severity and a status whose category says when it is over;
/// its incidents and alerts are the alert. A plain Standard Webhooks sender: `service` and
/// `severity` at the top level or under `data`.
fn facts(source: Source, v: &Value, event_type: &str, id: Option<&str>) -> Facts {
    let service = nested(
        v,
        &[
            "/affected_services/0/name",
            "/incident/affected_services/0/name",
            "/service",
            "/data/service",
        ],
    )
    .or_else(|| incidentio_service_field(v));
    let severity = nested(
        v,
        &[
            "/severity/name",
            "/incident/severity/name",
            "/severity",
            "/data/severity",
        ],
    );
    let category = nested(
        v,
        &[
            "/incident_status/category",
            "/incident/incident_status/category",
            "/status",
        ],
    )
    .unwrap_or_default();
    let resolved = matches!(
        category.as_str(),
        "closed" | "resolved" | "post-incident" | "canceled"
    ) || event_type.ends_with("resolved_v1")
        || event_type.ends_with(".resolved");
    Facts::default()
        .service(service)
        .severity(severity)
        .alert(id.map(|i| format!("{}:{i}", source.as_str())), resolved)
}

/// The first value of a custom field named like "Affected services" (incident.io's catalog).
fn incidentio_service_field(v: &Value) -> Option<String> {
    let resource = v
        .get(v.get("event_type").and_then(Value::as_str).unwrap_or(""))
        .unwrap_or(v);
    let entries = resource
        .pointer("/custom_field_entries")
        .or_else(|| resource.pointer("/incident/custom_field_entries"))?
        .as_array()?;
    entries.iter().find_map(|e| {
        let name = e
            .pointer("/custom_field/name")?
            .as_str()?
            .to_ascii_lowercase();
        if !name.contains("service") {
            return None;
        }
        let first = e.pointer("/values/0")?;
        first
            .pointer("/value_catalog_entry/name")
            .or_else(|| first.pointer("/value_text"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::fields::testing::{event, headers};

    #[test]
    fn a_service_routes_and_the_resource_id_correlates() {
        let h = headers(&[("webhook-id", "msg_2")]);
        let body = br#"{"type":"deploy.failed","data":{"service":"checkout-api"},"id":"dep-9"}"#;
        let e = event(
            Source::Standard
                .normalise(&Delivery::new(&h, body))
                .unwrap(),
        );
        assert_eq!(
            e.identifiers,
            vec![("service".into(), "checkout-api".into())]
        );
        assert_eq!(
            (e.delivery_id.as_str(), e.correlation_key.as_str()),
            ("msg_2", "standard:dep-9")
        );
    }
}
