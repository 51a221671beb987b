//! What comes in: integrations (the webhook URL to give a sender, secrets to rotate and retire)
//! and events (a filtered, paginated list; one event's timeline and payload; replay of one or many;
//! the dead letters and the unrouted).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, Done, Page, after, items};
use crate::Console;
use crate::session::{Posted, Session};
use crate::upstream::{Service, enc, query};
use crate::view::{PageError, cell, csrf, facts, notice, page, pretty, table};

pub fn router() -> Router<Console> {
    Router::new()
        .route(
            "/console/orgs/{org}/integrations",
            get(integrations).post(create_integration),
        )
        .route(
            "/console/orgs/{org}/integrations/{id}/secrets",
            post(add_secret),
        )
        .route(
            "/console/orgs/{org}/integrations/{id}/secrets/{secret}/retire",
            post(retire_secret),
        )
        .route("/console/orgs/{org}/events", get(events))
        .route("/console/orgs/{org}/events/replay", post(replay_many))
        .route("/console/orgs/{org}/events/{id}", get(event))
        .route("/console/orgs/{org}/events/{id}/replay", post(replay_one))
}

/// The senders an integration can be made for (as the API names them).
const SOURCES: &[&str] = &[
    "alertmanager",
    "grafana",
    "pagerduty",
    "incidentio",
    "sentry",
    "github",
    "gitlab",
    "linear",
    "jira",
    "slack",
    "standard",
    "datadog",
    "opsgenie",
    "circleci",
];

/// The address senders reach this console's orchestrator at, as the browser sees it.
fn public_base(headers: &HeaderMap, console: &Console) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if crate::session::over_tls(console, headers) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

fn copyable(id: &str, text: &str) -> Markup {
    html! {
        span.copy {
            input.mono id=(id) type="text" readonly value=(text);
            button type="button" data-copy=(id) { "Copy" }
        }
    }
}

async fn integrations(
    State(c): State<Console>,
    s: Session,
    headers: HeaderMap,
    Path(org): Path<String>,
    Query(done): Query<Done>,
) -> Page {
    let list = Api::new(&c, &s)
        .get(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{}/integrations", enc(&org)),
        )
        .await?;
    let base = public_base(&headers, &c);
    let o = enc(&org);
    let body = html! {
        (notice(done.done.as_deref(), done.n))
        @for i in items(&list) {
            @let id = i["id"].as_str().unwrap_or_default();
            section.integration {
                h2 { (cell(&i["name"])) " " span.muted { (cell(&i["source"])) } }
                (facts(&i, &["id", "default_team", "created_at"]))
                p { "Webhook URL for the sender: " (copyable(&format!("url-{id}"), &format!("{base}{}", cell(&i["webhook_path"])))) }
                table {
                    thead { tr { th { "Secret" } th { "Added" } th {} } }
                    tbody {
                        @for sec in i["secrets"].as_array().into_iter().flatten() {
                            tr {
                                td { code { (cell(&sec["fingerprint"])) } }
                                td { (cell(&sec["created_at"])) }
                                td {
                                    form.inline method="post" action={ "/console/orgs/" (o) "/integrations/" (enc(id)) "/secrets/" (enc(sec["id"].as_str().unwrap_or_default())) "/retire" } {
                                        (csrf(&s))
                                        button.danger type="submit" { "Retire" }
                                    }
                                }
                            }
                        }
                    }
                }
                form.inline method="post" action={ "/console/orgs/" (o) "/integrations/" (enc(id)) "/secrets" } {
                    (csrf(&s))
                    input type="password" name="secret" placeholder="new signing secret" autocomplete="off" required;
                    button type="submit" { "Rotate: add secret" }
                }
            }
        }
        h2 { "New integration" }
        form.stack method="post" action={ "/console/orgs/" (o) "/integrations" } {
            (csrf(&s))
            label { "Source " select name="source" { @for src in SOURCES { option value=(src) { (src) } } } }
            label { "Name " input type="text" name="name" required; }
            label { "Default team " input type="text" name="default_team" placeholder="team id (optional)"; }
            label { "Signing secret " input type="password" name="secret" autocomplete="off" required; }
            label { "Settings (JSON, optional) " textarea name="settings" rows="2" {} }
            button type="submit" { "Create" }
        }
    };
    Ok(page(&s, Some(&org), "integrations", "Integrations", body))
}

async fn create_integration(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(org): Path<String>,
    form: Posted,
) -> Page {
    let settings: Option<Value> = match form.get("settings").map(serde_json::from_str) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            return Err(PageError::Api {
                status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                title: "Invalid settings".into(),
                detail: format!("The settings are not JSON: {e}."),
            });
        }
    };
    let created = Api::new(&c, &form.session)
        .post(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{}/integrations", enc(&org)),
            json!({
                "source": form.get("source"),
                "name": form.get("name"),
                "default_team": form.get("default_team"),
                "secrets": [form.get("secret")],
                "settings": settings,
            }),
        )
        .await?;
    let url = format!(
        "{}{}",
        public_base(&headers, &c),
        cell(&created["webhook_path"])
    );
    let body = html! {
        p.notice role="status" { "Integration created. Configure the sender with this URL and the secret you entered." }
        p { (copyable("webhook-url", &url)) }
        (facts(&created, &["id", "source", "name", "default_team"]))
        p { a href={ "/console/orgs/" (enc(&org)) "/integrations" } { "All integrations" } }
    };
    Ok(page(
        &form.session,
        Some(&org),
        "integrations",
        "Integration created",
        body,
    ))
}

async fn add_secret(
    State(c): State<Console>,
    Path((org, id)): Path<(String, String)>,
    form: Posted,
) -> Page {
    Api::new(&c, &form.session)
        .post(
            Service::Orchestrator,
            &format!(
                "/api/v1/orgs/{}/integrations/{}/secrets",
                enc(&org),
                enc(&id)
            ),
            json!({"secret": form.get("secret")}),
        )
        .await?;
    after(
        &format!("/console/orgs/{}/integrations", enc(&org)),
        "rotated",
    )
}

async fn retire_secret(
    State(c): State<Console>,
    Path((org, id, secret)): Path<(String, String, String)>,
    form: Posted,
) -> Page {
    Api::new(&c, &form.session)
        .delete(
            Service::Orchestrator,
            &format!(
                "/api/v1/orgs/{}/integrations/{}/secrets/{}",
                enc(&org),
                enc(&id),
                enc(&secret)
            ),
        )
        .await?;
    after(
        &format!("/console/orgs/{}/integrations", enc(&org)),
        "retired",
    )
}

#[derive(Debug, Default, Deserialize)]
struct EventFilter {
    source: Option<String>,
    team: Option<String>,
    status: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
    n: Option<u64>,
}

const STATUSES: &[&str] = &[
    "received",
    "dispatching",
    "throttled",
    "retrying",
    "dispatched",
    "unrouted",
    "dead_lettered",
];

/// One page of events: 50 at a time, newest first, by cursor (an index range, never a count).
const PAGE: u32 = 50;

async fn events(
    State(c): State<Console>,
    s: Session,
    Path(org): Path<String>,
    Query(f): Query<EventFilter>,
) -> Page {
    let filter = [
        ("source", f.source.as_deref()),
        ("team", f.team.as_deref()),
        ("status", f.status.as_deref()),
        ("since", f.since.as_deref()),
    ];
    let mut q = filter.to_vec();
    let limit = PAGE.to_string();
    q.extend([("cursor", f.cursor.as_deref()), ("limit", Some(&limit))]);
    let list = Api::new(&c, &s)
        .get(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{}/events{}", enc(&org), query(&q)),
        )
        .await?;
    let rows = items(&list);
    let o = enc(&org);
    let next = list["next_cursor"].as_str().map(|cur| {
        let mut q = filter.to_vec();
        q.push(("cursor", Some(cur)));
        format!("/console/orgs/{o}/events{}", query(&q))
    });
    let active = match f.status.as_deref() {
        Some("dead_lettered") => "dead",
        Some("unrouted") => "unrouted",
        _ => "events",
    };
    let title = match active {
        "dead" => "Dead letters",
        "unrouted" => "Unrouted events",
        _ => "Events",
    };
    let v = |x: &Option<String>| x.clone().unwrap_or_default();
    let body = html! {
        (notice(f.done.as_deref(), f.n))
        form.filters method="get" action={ "/console/orgs/" (o) "/events" } {
            label { "Source " input type="text" name="source" value=(v(&f.source)); }
            label { "Team " input type="text" name="team" value=(v(&f.team)); }
            label { "Status " select name="status" {
                option value="" { "any" }
                @for st in STATUSES { option value=(st) selected[f.status.as_deref() == Some(*st)] { (st) } }
            } }
            label { "Since " input type="text" name="since" placeholder="2026-12-01T00:00:00Z" value=(v(&f.since)); }
            button type="submit" { "Filter" }
        }
        form method="post" action={ "/console/orgs/" (o) "/events/replay" } {
            (csrf(&s))
            (event_rows(&o, &rows))
            @if !rows.is_empty() {
                p {
                    button type="submit" name="selected" value="1" { "Replay selected" }
                    @if matches!(f.status.as_deref(), Some("dead_lettered" | "unrouted")) {
                        input type="hidden" name="status" value=(v(&f.status));
                        input type="hidden" name="source" value=(v(&f.source));
                        input type="hidden" name="team" value=(v(&f.team));
                        " "
                        button type="submit" name="all" value="1" { "Replay all matching" }
                    }
                }
            }
        }
        @if let Some(n) = next { p { a rel="next" href=(n) { "Older events →" } } }
    };
    Ok(page(&s, Some(&org), active, title, body))
}

fn event_rows(o: &str, rows: &[Value]) -> Markup {
    html! {
        @if rows.is_empty() { p.empty { "No events match." } }
        @else {
            table.events {
                thead { tr { th {} th { "Received" } th { "Source" } th { "Type" } th { "Status" } th { "Team" } th { "Error" } } }
                tbody {
                    @for e in rows {
                        @let id = e["id"].as_str().unwrap_or_default();
                        tr {
                            td { input type="checkbox" name="id" value=(id) aria-label="select"; }
                            td { a href={ "/console/orgs/" (o) "/events/" (enc(id)) } { (cell(&e["received_at"])) } }
                            td { (cell(&e["source"])) }
                            td { (cell(&e["event_type"])) }
                            td { span class={ "status " (cell(&e["status"])) } { (cell(&e["status"])) } }
                            td { (cell(&e["team_id"])) }
                            td { (cell(&e["last_error"])) }
                        }
                    }
                }
            }
        }
    }
}

async fn replay_many(State(c): State<Console>, Path(org): Path<String>, form: Posted) -> Page {
    let api = Api::new(&c, &form.session);
    let o = enc(&org);
    let replayed = if form.get("all").is_some() {
        let r = api
            .post(
                Service::Orchestrator,
                &format!("/api/v1/orgs/{o}/events/replay"),
                json!({"status": form.get("status"), "source": form.get("source"), "team": form.get("team")}),
            )
            .await?;
        r["replayed"].as_u64().unwrap_or(0)
    } else {
        let ids = form.all("id");
        for id in ids.iter().take(PAGE as usize) {
            api.post(
                Service::Orchestrator,
                &format!("/api/v1/orgs/{o}/events/{}/replay", enc(id)),
                json!({}),
            )
            .await?;
        }
        ids.len().min(PAGE as usize) as u64
    };
    Ok(axum::response::Redirect::to(&format!(
        "/console/orgs/{o}/events?done=replayed&n={replayed}"
    ))
    .into_response())
}

async fn event(
    State(c): State<Console>,
    s: Session,
    Path((org, id)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Page {
    let e = Api::new(&c, &s)
        .get(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{}/events/{}", enc(&org), enc(&id)),
        )
        .await?;
    let o = enc(&org);
    let body = html! {
        (notice(done.done.as_deref(), done.n))
        (facts(&e, &["id", "source", "event_type", "status", "team_id", "correlation_key", "delivery_id",
            "integration_id", "attempts", "received_at", "updated_at", "last_error"]))
        @if let Some(run) = e["run_id"].as_str() {
            p { "Agent run: " a href={ "/console/orgs/" (o) "/runs/" (enc(run)) } { (run) } }
        }
        form.inline method="post" action={ "/console/orgs/" (o) "/events/" (enc(&id)) "/replay" } {
            (csrf(&s))
            button type="submit" { "Replay" }
        }
        h2 { "Timeline" }
        (table(&items(&e["timeline"]), &[("At", "/at"), ("What", "/kind"), ("Detail", "/detail")], |_| None))
        h2 { "Payload" }
        (pretty(&e["payload"]))
    };
    Ok(page(&s, Some(&org), "events", "Event", body))
}

async fn replay_one(
    State(c): State<Console>,
    Path((org, id)): Path<(String, String)>,
    form: Posted,
) -> Page {
    Api::new(&c, &form.session)
        .post(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{}/events/{}/replay", enc(&org), enc(&id)),
            json!({}),
        )
        .await?;
    after(
        &format!("/console/orgs/{}/events/{}", enc(&org), enc(&id)),
        "replayed",
    )
}
