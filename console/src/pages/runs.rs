//! What the agent did: runs with their transcript (model turns, tool calls, sub-agents, signals
//! that joined, usage), cancelling a run; incidents with their members, runs and timeline.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, Page, after, items};
use crate::Console;
use crate::session::{Posted, Session};
use crate::upstream::{Service, enc, query};
use crate::view::{cell, csrf, facts, notice, page, pretty, table};

pub fn router() -> Router<Console> {
    Router::new()
        .route("/console/orgs/{org}/runs", get(runs))
        .route("/console/orgs/{org}/runs/{id}", get(run))
        .route("/console/orgs/{org}/runs/{id}/cancel", post(cancel))
        .route("/console/orgs/{org}/incidents", get(incidents))
        .route("/console/orgs/{org}/incidents/{id}", get(incident))
        .route("/console/orgs/{org}/incidents/{id}/resolve", post(resolve))
}

#[derive(Debug, Default, Deserialize)]
struct Filter {
    team: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

impl Filter {
    /// The list API's query: the filter, the cursor, 50 a page.
    fn api_query(&self) -> String {
        query(&[
            ("team", self.team.as_deref()),
            ("status", self.status.as_deref()),
            ("cursor", self.cursor.as_deref()),
            ("limit", Some("50")),
        ])
    }
}

/// A filter form and the link to the next page, shared by the runs and incidents lists.
fn filters(action: &str, f: &Filter, statuses: &[&str]) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            label { "Team " input type="text" name="team" value=(f.team.clone().unwrap_or_default()); }
            label { "Status " select name="status" {
                option value="" { "any" }
                @for st in statuses { option value=(st) selected[f.status.as_deref() == Some(*st)] { (st) } }
            } }
            button type="submit" { "Filter" }
        }
    }
}

fn next_page(action: &str, f: &Filter, list: &Value) -> Markup {
    html! {
        @if let Some(cur) = list["next_cursor"].as_str() {
            p { a rel="next" href={ (action) (query(&[("team", f.team.as_deref()), ("status", f.status.as_deref()), ("cursor", Some(cur))])) } { "Older →" } }
        }
    }
}

async fn runs(
    State(c): State<Console>,
    s: Session,
    Path(org): Path<String>,
    Query(f): Query<Filter>,
) -> Page {
    let o = enc(&org);
    let q = f.api_query();
    let list = Api::new(&c, &s)
        .get(Service::Config, &format!("/api/v1/orgs/{o}/agent-runs{q}"))
        .await?;
    let action = format!("/console/orgs/{o}/runs");
    let statuses = [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
    ];
    let body = html! {
        (filters(&action, &f, &statuses))
        (table(&items(&list), &[("Created", "/created_at"), ("Team", "/team_id"), ("Status", "/status"),
            ("Source", "/trigger/source"), ("Summary", "/summary"), ("Error", "/error")],
            |r| Some(format!("{action}/{}", enc(r["id"].as_str()?)))))
        (next_page(&action, &f, &list))
    };
    Ok(page(&s, Some(&org), "runs", "Agent runs", body))
}

/// A transcript's steps, with a sub-agent's steps nested under its tool call.
fn transcript(t: &Value) -> Markup {
    html! {
        ol.transcript {
            @for step in t["steps"].as_array().into_iter().flatten() {
                @let kind = step["kind"].as_str().unwrap_or_default();
                li class={ "step " (kind) } {
                    span.turn { "turn " (cell(&step["turn"])) }
                    @match kind {
                        "model" => {
                            strong { "model" }
                            " " span.muted { (cell(&step["duration_ms"])) " ms · "
                                (cell(&step["usage"]["input_tokens"])) " in / " (cell(&step["usage"]["output_tokens"])) " out tokens" }
                            @if let Some(text) = step["text"].as_str() { pre.text { (text) } }
                            @let calls = cell(&step["tool_calls"]);
                            @if !calls.is_empty() { p { "calls: " code { (calls) } } }
                        }
                        "tool" => {
                            strong { "tool " code { (cell(&step["name"])) } }
                            @if step["error"].as_bool() == Some(true) { " " span.status.failed { "error" } }
                            " " span.muted { (cell(&step["duration_ms"])) " ms" }
                            details {
                                summary { "arguments and output" }
                                (pretty(&step["arguments"]))
                                pre.text { (cell(&step["output"])) }
                            }
                            @if step["sub_agent"].is_object() {
                                div.subagent { p { "sub-agent:" } (transcript(&step["sub_agent"])) }
                            }
                        }
                        "signals" => {
                            strong { "signals joined" } " " span.muted { "at " (cell(&step["at"])) }
                            (pretty(&step["signals"]))
                        }
                        _ => { (pretty(step)) }
                    }
                }
            }
        }
    }
}

async fn run(
    State(c): State<Console>,
    s: Session,
    Path((org, id)): Path<(String, String)>,
    Query(f): Query<Filter>,
) -> Page {
    let o = enc(&org);
    let r = Api::new(&c, &s)
        .get(
            Service::Config,
            &format!("/api/v1/orgs/{o}/agent-runs/{}", enc(&id)),
        )
        .await?;
    let status = r["status"].as_str().unwrap_or_default();
    let body = html! {
        (notice(f.done.as_deref(), None))
        (facts(&r, &["id", "team_id", "status", "attempts", "created_at", "started_at", "finished_at",
            "deadline_at", "summary", "error", "config_etag"]))
        p { "Usage: " (cell(&r["usage"]["input_tokens"])) " input, " (cell(&r["usage"]["output_tokens"])) " output tokens" }
        @if let Some(ev) = r["trigger"]["event_id"].as_str() {
            p { "Triggered by event " a href={ "/console/orgs/" (o) "/events/" (enc(ev)) } { (ev) } }
        }
        @if let Some(inc) = r["trigger"]["incident"]["incident_id"].as_str() {
            p { "Incident " a href={ "/console/orgs/" (o) "/incidents/" (enc(inc)) } { (inc) } }
        }
        @if matches!(status, "queued" | "running") {
            form.inline method="post" action={ "/console/orgs/" (o) "/runs/" (enc(&id)) "/cancel" } {
                (csrf(&s))
                button.danger type="submit" { "Cancel run" }
            }
        }
        h2 { "Transcript" }
        (transcript(&r["transcript"]))
        details { summary { "Trigger" } (pretty(&r["trigger"])) }
    };
    Ok(page(&s, Some(&org), "runs", "Agent run", body))
}

async fn cancel(
    State(c): State<Console>,
    Path((org, id)): Path<(String, String)>,
    form: Posted,
) -> Page {
    let path = format!("/api/v1/orgs/{}/agent-runs/{}/cancel", enc(&org), enc(&id));
    Api::new(&c, &form.session)
        .post(Service::Config, &path, json!({}))
        .await?;
    after(
        &format!("/console/orgs/{}/runs/{}", enc(&org), enc(&id)),
        "cancelled",
    )
}

async fn incidents(
    State(c): State<Console>,
    s: Session,
    Path(org): Path<String>,
    Query(f): Query<Filter>,
) -> Page {
    let o = enc(&org);
    let q = f.api_query();
    let list = Api::new(&c, &s)
        .get(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{o}/incidents{q}"),
        )
        .await?;
    let action = format!("/console/orgs/{o}/incidents");
    let body = html! {
        (filters(&action, &f, &["open", "resolved", "merged"]))
        (table(&items(&list), &[("Title", "/title"), ("Team", "/team_id"), ("Status", "/status"),
            ("Severity", "/severity"), ("Service", "/service"), ("Sources", "/sources"),
            ("First seen", "/first_seen"), ("Last seen", "/last_seen")],
            |r| Some(format!("{action}/{}", enc(r["id"].as_str()?)))))
        (next_page(&action, &f, &list))
    };
    Ok(page(&s, Some(&org), "incidents", "Incidents", body))
}

async fn incident(
    State(c): State<Console>,
    s: Session,
    Path((org, id)): Path<(String, String)>,
    Query(f): Query<Filter>,
) -> Page {
    let o = enc(&org);
    let i = Api::new(&c, &s)
        .get(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{o}/incidents/{}", enc(&id)),
        )
        .await?;
    let body = html! {
        (notice(f.done.as_deref(), None))
        (facts(&i, &["id", "title", "team_id", "status", "severity", "service", "sources", "group_key",
            "first_seen", "last_seen", "resolved_at", "resolved_by", "previous_id", "merged_into"]))
        @if i["status"].as_str() == Some("open") {
            form.inline method="post" action={ "/console/orgs/" (o) "/incidents/" (enc(&id)) "/resolve" } {
                (csrf(&s))
                input type="text" name="reason" placeholder="reason (optional)";
                button type="submit" { "Resolve" }
            }
        }
        h2 { "Members" }
        (table(&items(&i["member_events"]), &[("Event", "/event_id"), ("Source", "/source"), ("Type", "/event_type"),
            ("Service", "/service"), ("Severity", "/severity"), ("Resolved", "/resolved"), ("Joined", "/joined_at")],
            |r| Some(format!("/console/orgs/{o}/events/{}", enc(r["event_id"].as_str()?)))))
        h2 { "Runs" }
        (table(&items(&i["runs"]), &[("Run", "/run_id"), ("Status", "/status"), ("Started", "/started_at"), ("Summary", "/summary")],
            |r| Some(format!("/console/orgs/{o}/runs/{}", enc(r["run_id"].as_str()?)))))
        h2 { "Timeline" }
        (table(&items(&i["timeline"]), &[("At", "/at"), ("What", "/kind"), ("Detail", "/detail")], |_| None))
    };
    Ok(page(&s, Some(&org), "incidents", "Incident", body))
}

async fn resolve(
    State(c): State<Console>,
    Path((org, id)): Path<(String, String)>,
    form: Posted,
) -> Page {
    let path = format!("/api/v1/orgs/{}/incidents/{}/resolve", enc(&org), enc(&id));
    Api::new(&c, &form.session)
        .post(
            Service::Orchestrator,
            &path,
            json!({"reason": form.get("reason")}),
        )
        .await?;
    after(
        &format!("/console/orgs/{}/incidents/{}", enc(&org), enc(&id)),
        "resolved",
    )
}
