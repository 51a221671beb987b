//! Payloads into one envelope: event type, delivery id (the de-duplication key; derived where the
//! sender has none), routing identifiers, a correlation key (the incident, alert group, issue or
//! thread the event belongs to) and, for handshakes, the answer to send.

use http::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard_common::routing::clean_identifiers;

use super::{SlackKind, Source};

/// One normalised event.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub source: Source,
    pub event_type: String,
    pub delivery_id: String,
    /// (kind, value) pairs as the config-service's routing lookup takes them.
    pub identifiers: Vec<(String, String)>,
    pub correlation_key: String,
    /// The payload as JSON (form bodies decoded; the raw bytes are kept separately).
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Event(Envelope),
    /// A handshake or ping: answer 200 with this body, store nothing.
    Handshake(Value),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NormaliseError(pub String);

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn s(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(x) if !x.is_empty() => Some(x.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn first(v: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| s(v, p))
}

fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

fn json_body(body: &[u8]) -> Result<Value, NormaliseError> {
    serde_json::from_slice(body)
        .map_err(|e| NormaliseError(format!("the body is not valid JSON: {e}")))
}

fn push(ids: &mut Vec<(String, String)>, kind: &str, value: Option<String>) {
    if let Some(v) = value
        && !ids.iter().any(|(k, x)| k == kind && *x == v)
    {
        ids.push((kind.to_owned(), v));
    }
}

/// Normalises a verified delivery. The identifiers are those the routing lookup accepts
/// ([`clean_identifiers`]): an invalid value in one field never costs the event its routing.
pub fn normalise(
    source: Source,
    slack: Option<SlackKind>,
    h: &HeaderMap,
    body: &[u8],
) -> Result<Outcome, NormaliseError> {
    Ok(match by_source(source, slack, h, body)? {
        Outcome::Event(mut env) => {
            env.identifiers = clean_identifiers(std::mem::take(&mut env.identifiers));
            Outcome::Event(env)
        }
        handshake => handshake,
    })
}

fn by_source(
    source: Source,
    slack: Option<SlackKind>,
    h: &HeaderMap,
    body: &[u8],
) -> Result<Outcome, NormaliseError> {
    match source {
        Source::Slack => slack_event(slack.unwrap_or(SlackKind::Events), body),
        Source::Github => github(h, body),
        Source::Pagerduty => pagerduty(h, body),
        Source::Incidentio | Source::Standard => standard(source, h, body),
        Source::Alertmanager | Source::Grafana => alert_group(source, body),
        Source::Sentry => sentry(h, body),
        Source::Linear => linear(h, body),
        Source::Gitlab => gitlab(h, body),
        Source::Jira => jira(h, body),
        Source::Circleci => circleci(h, body),
        Source::Datadog | Source::Opsgenie => generic_alert(source, body),
    }
}

fn slack_event(kind: SlackKind, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let (payload, event_type, delivery, team, channel, thread) = match kind {
        SlackKind::Events => {
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
        SlackKind::Commands => {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| NormaliseError(format!("the body is not a form: {e}")))?;
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
            (
                v,
                event_type,
                delivery,
                get("team_id"),
                get("channel_id"),
                None,
            )
        }
        SlackKind::Interactions => {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| NormaliseError(format!("the body is not a form: {e}")))?;
            let raw = form
                .iter()
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    NormaliseError("interactivity bodies carry a `payload` field".into())
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
    };
    let mut ids = Vec::new();
    push(&mut ids, "slack_channel", channel.clone());
    push(&mut ids, "slack_team", team.clone());
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
    }))
}

fn github(h: &HeaderMap, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let event = header(h, "x-github-event").unwrap_or_else(|| "unknown".into());
    if event == "ping" {
        return Ok(Outcome::Handshake(json!({"ok": true, "zen": v["zen"]})));
    }
    let delivery = header(h, "x-github-delivery").unwrap_or_else(|| body_hash(body));
    let repo = s(&v, "/repository/full_name").map(|r| r.to_ascii_lowercase());
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
    }))
}

fn pagerduty(h: &HeaderMap, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let event_type = s(&v, "/event/event_type").unwrap_or_else(|| "unknown".into());
    if event_type == "pagey.ping" {
        return Ok(Outcome::Handshake(json!({"ok": true})));
    }
    let delivery = header(h, "x-webhook-id")
        .or_else(|| s(&v, "/event/id"))
        .unwrap_or_else(|| body_hash(body));
    let mut ids = Vec::new();
    push(
        &mut ids,
        "pagerduty_service",
        first(
            &v,
            &["/event/data/service/id", "/event/data/incident/service/id"],
        ),
    );
    let incident = first(&v, &["/event/data/incident/id", "/event/data/id"])
        .unwrap_or_else(|| delivery.clone());
    Ok(Outcome::Event(Envelope {
        source: Source::Pagerduty,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("pagerduty:{incident}"),
        payload: v,
    }))
}

/// Finds `key` in the payload's top-level objects (incident.io nests the resource under a key named
/// after the event type).
fn nested(v: &Value, paths: &[&str]) -> Option<String> {
    if let Some(x) = first(v, paths) {
        return Some(x);
    }
    v.as_object()?
        .values()
        .find_map(|inner| first(inner, paths))
}

fn standard(source: Source, h: &HeaderMap, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let delivery = header(h, "webhook-id").unwrap_or_else(|| body_hash(body));
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
    let incident = nested(&v, &["/incident/id", "/id"]).unwrap_or_else(|| delivery.clone());
    Ok(Outcome::Event(Envelope {
        source,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("{}:{incident}", source.as_str()),
        payload: v,
    }))
}

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

fn alert_group(source: Source, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
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
    Ok(Outcome::Event(Envelope {
        source,
        event_type: format!("alert.{status}"),
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("{}:{group}", source.as_str()),
        payload: v,
    }))
}

fn sentry(h: &HeaderMap, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let resource = header(h, "sentry-hook-resource").unwrap_or_else(|| "unknown".into());
    if resource == "installation" && s(&v, "/action").as_deref() == Some("created") {
        // Installation events are not incidents, but are stored like any other.
    }
    let delivery = header(h, "request-id").unwrap_or_else(|| body_hash(body));
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
    Ok(Outcome::Event(Envelope {
        source: Source::Sentry,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("sentry:{issue}"),
        payload: v,
    }))
}

fn linear(h: &HeaderMap, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let delivery = header(h, "linear-delivery").unwrap_or_else(|| body_hash(body));
    let event = header(h, "linear-event")
        .or_else(|| s(&v, "/type"))
        .unwrap_or_else(|| "unknown".into());
    let mut ids = Vec::new();
    push(
        &mut ids,
        "linear_team",
        first(&v, &["/data/team/key", "/data/teamId", "/data/team/id"]),
    );
    let object = s(&v, "/data/id").unwrap_or_else(|| delivery.clone());
    let event_type = match s(&v, "/action") {
        Some(a) => format!("{event}.{a}"),
        None => event,
    };
    Ok(Outcome::Event(Envelope {
        source: Source::Linear,
        event_type,
        delivery_id: delivery,
        identifiers: ids,
        correlation_key: format!("linear:{object}"),
        payload: v,
    }))
}

fn gitlab(h: &HeaderMap, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let delivery = header(h, "idempotency-key")
        .or_else(|| header(h, "x-gitlab-event-uuid"))
        .unwrap_or_else(|| body_hash(body));
    let event_type = first(&v, &["/object_kind", "/event_type"])
        .or_else(|| header(h, "x-gitlab-event"))
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
        payload: v,
    }))
}

fn jira(h: &HeaderMap, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let delivery = header(h, "x-atlassian-webhook-identifier").unwrap_or_else(|| body_hash(body));
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
    }))
}

fn circleci(h: &HeaderMap, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let delivery = s(&v, "/id").unwrap_or_else(|| body_hash(body));
    let event_type = s(&v, "/type")
        .or_else(|| header(h, "circleci-event-type"))
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
    }))
}

fn generic_alert(source: Source, body: &[u8]) -> Result<Outcome, NormaliseError> {
    let v = json_body(body)?;
    let delivery = first(&v, &["/id", "/alertId", "/alert/alertId", "/event_id"])
        .unwrap_or_else(|| body_hash(body));
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
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn event(o: Outcome) -> Envelope {
        match o {
            Outcome::Event(e) => e,
            Outcome::Handshake(b) => panic!("unexpected handshake {b}"),
        }
    }

    #[test]
    fn slack_url_verification_is_a_handshake() {
        let o = normalise(Source::Slack, Some(SlackKind::Events), &HeaderMap::new(), br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","token":"x"}"#).unwrap();
        assert_eq!(
            o,
            Outcome::Handshake(
                json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
            )
        );
    }

    #[test]
    fn slack_event_callback() {
        let body = br#"{"type":"event_callback","team_id":"T0001","event_id":"Ev0PV52K21","event":{"type":"app_mention","channel":"C0CHECKOUT","ts":"1515449522.000016","text":"<@U0LAN0Z89> is checkout down?"}}"#;
        let e = event(
            normalise(
                Source::Slack,
                Some(SlackKind::Events),
                &HeaderMap::new(),
                body,
            )
            .unwrap(),
        );
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
    }

    #[test]
    fn slack_commands_and_interactions_are_forms() {
        let e = event(normalise(Source::Slack, Some(SlackKind::Commands), &HeaderMap::new(), b"team_id=T1&channel_id=C2&command=%2Fincident&text=db+down&trigger_id=13345224609.738474920.8088930838d88f008e0").unwrap());
        assert_eq!(
            (e.event_type.as_str(), e.delivery_id.as_str()),
            (
                "command:/incident",
                "13345224609.738474920.8088930838d88f008e0"
            )
        );
        assert_eq!(e.payload["text"], "db down");
        let payload = serde_urlencoded::to_string([("payload", r#"{"type":"block_actions","trigger_id":"t-1","team":{"id":"T1"},"channel":{"id":"C2"},"message":{"ts":"1.2"}}"#)]).unwrap();
        let e = event(
            normalise(
                Source::Slack,
                Some(SlackKind::Interactions),
                &HeaderMap::new(),
                payload.as_bytes(),
            )
            .unwrap(),
        );
        assert_eq!(
            (
                e.event_type.as_str(),
                e.delivery_id.as_str(),
                e.correlation_key.as_str()
            ),
            ("interaction:block_actions", "t-1", "slack:T1:C2:1.2")
        );
    }

    #[test]
    fn github_issue_comment_and_ping() {
        let headers = h(&[
            ("x-github-event", "issue_comment"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ]);
        let body = br#"{"action":"created","issue":{"number":7},"comment":{"body":"@switchyard why?"},"repository":{"full_name":"Acme/Checkout","owner":{"login":"Acme"}}}"#;
        let e = event(normalise(Source::Github, None, &headers, body).unwrap());
        assert_eq!(e.event_type, "issue_comment.created");
        assert_eq!(
            e.identifiers,
            vec![
                ("github_repo".into(), "acme/checkout".into()),
                ("github_owner".into(), "acme".into())
            ]
        );
        assert_eq!(e.correlation_key, "github:acme/checkout#7");
        let ping = normalise(
            Source::Github,
            None,
            &h(&[("x-github-event", "ping")]),
            br#"{"zen":"Keep it logically awesome."}"#,
        )
        .unwrap();
        assert!(matches!(ping, Outcome::Handshake(_)));
    }

    #[test]
    fn pagerduty_v3_incident_and_ping() {
        let body = br#"{"event":{"id":"01DEN4HPBQAAAG05V5QQYBRZMF","event_type":"incident.triggered","occurred_at":"2020-10-02T18:45:22.169Z","data":{"id":"PGR0VU2","type":"incident","service":{"id":"PF9KMXH","type":"service_reference"}}}}"#;
        let e = event(
            normalise(
                Source::Pagerduty,
                None,
                &h(&[("x-webhook-id", "wh-1")]),
                body,
            )
            .unwrap(),
        );
        assert_eq!(
            (e.delivery_id.as_str(), e.event_type.as_str()),
            ("wh-1", "incident.triggered")
        );
        assert_eq!(
            e.identifiers,
            vec![("pagerduty_service".into(), "PF9KMXH".into())]
        );
        assert_eq!(e.correlation_key, "pagerduty:PGR0VU2");
        let ping = normalise(
            Source::Pagerduty,
            None,
            &HeaderMap::new(),
            br#"{"event":{"event_type":"pagey.ping"}}"#,
        )
        .unwrap();
        assert!(matches!(ping, Outcome::Handshake(_)));
    }

    #[test]
    fn incidentio_nested_resource() {
        let body = br#"{"event_type":"public_alert.alert_created_v1","public_alert.alert_created_v1":{"id":"01ALERT","alert_source_id":"01SOURCE","title":"High error rate"}}"#;
        let e = event(
            normalise(
                Source::Incidentio,
                None,
                &h(&[("webhook-id", "msg_1")]),
                body,
            )
            .unwrap(),
        );
        assert_eq!(e.delivery_id, "msg_1");
        assert_eq!(
            e.identifiers,
            vec![("incidentio_alert_source".into(), "01SOURCE".into())]
        );
        assert_eq!(e.correlation_key, "incidentio:01ALERT");
    }

    #[test]
    fn alertmanager_derives_a_stable_delivery_id() {
        let body = json!({"version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "receiver": "switchyard", "status": "firing",
            "commonLabels": {"alertname": "HighLatency", "team": "checkout", "service": "checkout-api"},
            "alerts": [{"status": "firing", "fingerprint": "b", "labels": {"instance": "a"}}, {"status": "firing", "fingerprint": "a", "labels": {"instance": "b"}}]});
        let e = event(
            normalise(
                Source::Alertmanager,
                None,
                &HeaderMap::new(),
                body.to_string().as_bytes(),
            )
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
    fn identifiers_the_lookup_would_refuse_are_dropped() {
        // A GitHub event whose repository name is not owner/name keeps its owner; a Jira project
        // key of 300 characters is dropped; an alert with 200 labels is capped at the lookup's
        // maximum.
        let e = event(
            normalise(
                Source::Github,
                None,
                &h(&[("x-github-event", "issues"), ("x-github-delivery", "d")]),
                br#"{"repository":{"full_name":"broken","owner":{"login":"Acme"}}}"#,
            )
            .unwrap(),
        );
        assert_eq!(e.identifiers, vec![("github_owner".into(), "acme".into())]);
        let body = json!({"webhookEvent": "jira:issue_created", "issue": {"key": "K-1", "fields": {"project": {"key": "P".repeat(300)}}}});
        let e = event(
            normalise(
                Source::Jira,
                None,
                &HeaderMap::new(),
                body.to_string().as_bytes(),
            )
            .unwrap(),
        );
        assert!(e.identifiers.is_empty());
        let labels: serde_json::Map<String, Value> =
            (0..200).map(|i| (format!("l{i}"), json!("v"))).collect();
        let body = json!({"groupKey": "g", "status": "firing", "alerts": [{"labels": labels}]});
        let e = event(
            normalise(
                Source::Alertmanager,
                None,
                &HeaderMap::new(),
                body.to_string().as_bytes(),
            )
            .unwrap(),
        );
        assert!(!e.identifiers.is_empty());
        assert!(e.identifiers.len() <= switchyard_common::routing::MAX_IDENTIFIERS);
    }

    #[test]
    fn sentry_linear_gitlab_jira() {
        let e = event(normalise(Source::Sentry, None, &h(&[("sentry-hook-resource", "issue"), ("request-id", "r-1")]), br#"{"action":"created","data":{"issue":{"id":"123","project":{"slug":"checkout-web"}}}}"#).unwrap());
        assert_eq!(
            (e.event_type.as_str(), e.delivery_id.as_str()),
            ("issue.created", "r-1")
        );
        assert_eq!(
            e.identifiers,
            vec![("sentry_project".into(), "checkout-web".into())]
        );
        let e = event(normalise(Source::Linear, None, &h(&[("linear-delivery", "d-1"), ("linear-event", "Issue")]), br#"{"action":"create","type":"Issue","data":{"id":"i1","team":{"key":"CHK"}},"webhookTimestamp":1}"#).unwrap());
        assert_eq!(
            (e.event_type.as_str(), e.identifiers[0].1.as_str()),
            ("Issue.create", "CHK")
        );
        let e = event(normalise(Source::Gitlab, None, &h(&[("idempotency-key", "k-1")]), br#"{"object_kind":"issue","project":{"path_with_namespace":"Acme/Api"},"object_attributes":{"iid":4}}"#).unwrap());
        assert_eq!(
            (e.delivery_id.as_str(), e.correlation_key.as_str()),
            ("k-1", "gitlab:acme/api#4")
        );
        let e = event(normalise(Source::Jira, None, &h(&[("x-atlassian-webhook-identifier", "j-1")]), br#"{"webhookEvent":"jira:issue_created","issue":{"key":"OPS-1","fields":{"project":{"key":"OPS"}}}}"#).unwrap());
        assert_eq!(
            (e.identifiers[0].1.as_str(), e.correlation_key.as_str()),
            ("OPS", "jira:OPS-1")
        );
    }

    #[test]
    fn bad_json_is_a_clear_error() {
        assert!(normalise(Source::Github, None, &HeaderMap::new(), b"{nope").is_err());
    }
}
