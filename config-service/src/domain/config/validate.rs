//! Validation of a config layer against the schema of its known sections: every problem found,
//! each with a JSON pointer.

use serde_json::{Map, Value};
use switchyard_common::ids::Slug;
use switchyard_common::problem::{FieldError, escape_pointer_token};

use super::SECTIONS;
use crate::domain::routing::{RouteKind, normalise_route_value};

/// Validates a layer against the schema of known sections. Returns every problem found.
pub fn validate_layer(layer: &Value) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    let Value::Object(root) = layer else {
        return Err(vec![err("", "a config layer must be a JSON object")]);
    };
    for (key, value) in root {
        let at = format!("/{}", escape_pointer_token(key));
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "agent" => super::agent::validate(value, &at, &mut errs),
            "routing" => validate_routing(value, &at, &mut errs),
            "pipelines" => validate_pipelines(value, &at, &mut errs),
            "quotas" => validate_quotas(value, &at, &mut errs),
            "notifications" => validate_notifications(value, &at, &mut errs),
            "incidents" => validate_incidents(value, &at, &mut errs),
            "integrations" => {
                if value.is_object() {
                    crate::domain::secrets::check_integrations(value, &at, &mut errs);
                } else {
                    errs.push(err(&at, "must be an object"));
                }
            }
            _ => errs.push(err(
                &at,
                &format!("unknown section; known sections: {}", SECTIONS.join(", ")),
            )),
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// `incidents`: how the orchestrator groups a team's signals into incidents (ADR 0012):
/// `window` and `reopen_grace` are durations (`10m`, `1h`; a minute to a day), `group_by` names
/// the fields whose values must match (`service`, `source`; empty: the window alone groups).
fn validate_incidents(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = object(v, at, errs) else { return };
    check_fields(
        m,
        at,
        &[
            ("window", Ty::Str),
            ("reopen_grace", Ty::Str),
            ("group_by", Ty::StrArray),
        ],
        errs,
    );
    for key in ["window", "reopen_grace"] {
        if let Some(s) = m.get(key).and_then(Value::as_str) {
            let here = format!("{at}/{key}");
            match switchyard_common::time::parse_duration(s) {
                Ok(d) if (60..=86_400).contains(&d.as_secs()) => {}
                Ok(_) => errs.push(err(&here, "must be between 1m and 24h")),
                Err(e) => errs.push(err(&here, &e)),
            }
        }
    }
    if let Some(fields) = m.get("group_by").and_then(Value::as_array) {
        for (i, f) in fields.iter().enumerate() {
            if let Some(f) = f.as_str()
                && !GROUP_FIELDS.contains(&f)
            {
                errs.push(err(
                    &format!("{at}/group_by/{i}"),
                    &format!("unknown field; known: {}", GROUP_FIELDS.join(", ")),
                ));
            }
        }
    }
}

/// The fields an incident rule may group by (the orchestrator's `incidents::GROUP_FIELDS`).
const GROUP_FIELDS: [&str; 2] = ["service", "source"];

/// `notifications`: where every answer of the team goes besides the event's own reply target.
/// `slack`: `{"channel": "C123"}`, or `"off"` to turn off one inherited from a higher layer.
fn validate_notifications(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = object(v, at, errs) else { return };
    for (k, v) in m {
        let here = format!("{at}/{}", escape_pointer_token(k));
        match k.as_str() {
            "slack" => match v {
                Value::String(s) if s == "off" => {}
                Value::Object(o) => {
                    check_fields(o, &here, &[("channel", Ty::Str)], errs);
                    if !o.get("channel").is_some_and(Value::is_string) {
                        errs.push(err(
                            &format!("{here}/channel"),
                            "a Slack channel id is required",
                        ));
                    }
                }
                _ => errs.push(err(&here, "must be {\"channel\": \"<id>\"} or \"off\"")),
            },
            _ => errs.push(err(&here, "unknown notification destination; known: slack")),
        }
    }
}

pub(super) fn err(pointer: &str, detail: &str) -> FieldError {
    FieldError {
        pointer: pointer.to_owned(),
        detail: detail.to_owned(),
    }
}

pub(super) fn object<'a>(
    v: &'a Value,
    at: &str,
    errs: &mut Vec<FieldError>,
) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => {
            errs.push(err(at, "must be an object"));
            None
        }
    }
}

pub(super) enum Ty {
    Str,
    NonNegInt,
    PosInt,
    Number,
    Bool,
    StrArray,
    Object,
    StrMap,
    /// Checked by a rule of its own.
    Any,
}

fn check(v: &Value, ty: &Ty, at: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        return;
    }
    let (ok, what) = match ty {
        Ty::Str => (v.is_string(), "a string"),
        Ty::NonNegInt => (v.as_u64().is_some(), "a non-negative integer"),
        Ty::PosInt => (v.as_u64().is_some_and(|n| n > 0), "a positive integer"),
        Ty::Number => (v.is_number(), "a number"),
        Ty::Bool => (v.is_boolean(), "a boolean"),
        Ty::StrArray => (
            v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "an array of strings",
        ),
        Ty::Object => (v.is_object(), "an object"),
        Ty::Any => (true, "anything"),
        Ty::StrMap => (
            v.as_object()
                .is_some_and(|m| m.values().all(|v| v.is_string() || v.is_null())),
            "an object of strings",
        ),
    };
    if !ok {
        errs.push(err(at, &format!("must be {what}")));
    }
}

pub(super) fn check_fields(
    m: &Map<String, Value>,
    at: &str,
    fields: &[(&str, Ty)],
    errs: &mut Vec<FieldError>,
) {
    for (k, v) in m {
        let path = format!("{at}/{}", escape_pointer_token(k));
        match fields.iter().find(|(name, _)| name == k) {
            Some((_, ty)) => check(v, ty, &path, errs),
            None => {
                let known: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                errs.push(err(
                    &path,
                    &format!("unknown field; known fields: {}", known.join(", ")),
                ));
            }
        }
    }
}

fn validate_routing(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = object(v, at, errs) else { return };
    for (k, v) in m {
        let path = format!("{at}/{}", escape_pointer_token(k));
        let Some(kind) = RouteKind::parse(k) else {
            errs.push(err(
                &path,
                &format!(
                    "unknown routing identifier kind; known kinds: {}",
                    RouteKind::ALL.map(RouteKind::as_str).join(", ")
                ),
            ));
            continue;
        };
        let values: Vec<(String, &Value)> = match v {
            Value::Null => continue,
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}/{i}"), v))
                .collect(),
            other => vec![(path.clone(), other)],
        };
        for (p, v) in values {
            match v.as_str() {
                Some(s) => {
                    if let Err(e) = normalise_route_value(kind, s) {
                        errs.push(err(&p, &e));
                    }
                }
                None => errs.push(err(&p, "must be a string or an array of strings")),
            }
        }
    }
}

fn validate_pipelines(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = object(v, at, errs) else { return };
    for (name, p) in m {
        let path = format!("{at}/{}", escape_pointer_token(name));
        if let Err(e) = Slug::parse(name) {
            errs.push(err(&path, &format!("pipeline name {e}")));
        }
        if p.is_null() {
            continue;
        }
        let Some(pm) = object(p, &path, errs) else {
            continue;
        };
        check_fields(
            pm,
            &path,
            &[
                ("schedule", Ty::Str),
                ("time_zone", Ty::Str),
                ("image", Ty::Str),
                ("command", Ty::StrArray),
                ("args", Ty::StrArray),
                ("env", Ty::StrMap),
                ("enabled", Ty::Bool),
                ("resources", Ty::Object),
                ("backoff_limit", Ty::NonNegInt),
                ("active_deadline_seconds", Ty::PosInt),
            ],
            errs,
        );
        if let Some(s) = pm.get("schedule").and_then(Value::as_str)
            && let Err(e) = validate_cron(s)
        {
            errs.push(err(&format!("{path}/schedule"), &e));
        }
    }
}

pub use switchyard_common::cron::validate_cron;

fn validate_quotas(v: &Value, at: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = object(v, at, errs) else { return };
    check_fields(
        m,
        at,
        &[
            // 0 events per minute means "no limit"; 0 concurrent runs would stall the team's
            // events for ever, so at least one run must be allowed.
            ("events_per_minute", Ty::NonNegInt),
            ("concurrent_runs", Ty::PosInt),
            ("runs_per_day", Ty::NonNegInt),
            // Input and output tokens of the team's runs per UTC day (at the org's root: of all
            // the org's runs together).
            ("tokens_per_day", Ty::PosInt),
        ],
        errs,
    );
}
