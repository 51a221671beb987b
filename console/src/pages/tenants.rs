//! Organisations, the team tree, a team's configuration (effective values and where each comes
//! from, history, a diff between two versions) and pending approvals.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_common::config_diff::{at_version, diff};

use super::{Api, Done, Page, after, items};
use crate::Console;
use crate::session::{Posted, Session};
use crate::upstream::{Service, enc};
use crate::view::{PageError, cell, csrf, facts, notice, page, pretty, table};

pub fn router() -> Router<Console> {
    Router::new()
        .route("/console/orgs/{org}", get(org))
        .route("/console/orgs/{org}/teams/{node}", get(team))
        .route("/console/orgs/{org}/changes", get(changes))
        .route("/console/orgs/{org}/changes/{id}/{decision}", post(decide))
}

/// Platform admins see every organisation; an org admin goes to their org, a team to its team.
pub async fn home(State(c): State<Console>, s: Session) -> Page {
    if !s.is_platform_admin() {
        let org = enc(s.org.as_deref().unwrap_or_default());
        let to = match (&s.node, s.is_team()) {
            (Some(n), true) => format!("/console/orgs/{org}/teams/{}", enc(n)),
            _ => format!("/console/orgs/{org}"),
        };
        return Ok(Redirect::to(&to).into_response());
    }
    let orgs = Api::new(&c, &s)
        .get(Service::Config, "/api/v1/orgs")
        .await?;
    let body = table(
        &items(&orgs),
        &[
            ("Organisation", "/id"),
            ("Name", "/name"),
            ("Created", "/created_at"),
        ],
        |r| Some(format!("/console/orgs/{}", enc(r["id"].as_str()?))),
    );
    Ok(page(&s, None, "", "Organisations", body))
}

fn tree(org: &str, node: &Value) -> Markup {
    let id = node["id"].as_str().unwrap_or_default();
    let kind = node["kind"].as_str().unwrap_or_default();
    html! {
        li {
            @if kind == "org" { strong { (id) } }
            @else { a href={ "/console/orgs/" (enc(org)) "/teams/" (enc(id)) } { (id) } }
            " " span.muted { (kind) " · " (cell(&node["name"])) }
            @let children = node["children"].as_array().cloned().unwrap_or_default();
            @if !children.is_empty() {
                ul { @for c in &children { (tree(org, c)) } }
            }
        }
    }
}

async fn org(State(c): State<Console>, s: Session, Path(org): Path<String>) -> Page {
    if let (true, Some(n)) = (s.is_team(), &s.node) {
        let to = format!("/console/orgs/{}/teams/{}", enc(&org), enc(n));
        return Ok(Redirect::to(&to).into_response());
    }
    let nodes = Api::new(&c, &s)
        .get(
            Service::Config,
            &format!("/api/v1/orgs/{}/nodes", enc(&org)),
        )
        .await?;
    let body = html! {
        h2 { "Team tree" }
        ul.tree { (tree(&org, &nodes)) }
    };
    Ok(page(
        &s,
        Some(&org),
        "teams",
        &format!("Organisation {org}"),
        body,
    ))
}

#[derive(Debug, Deserialize)]
struct DiffQuery {
    from: Option<i64>,
    to: Option<i64>,
}

fn changes_table(changes: &[Value]) -> Markup {
    html! {
        @if changes.is_empty() { p.empty { "No difference." } }
        @else {
            table.diff {
                thead { tr { th { "Change" } th { "Path" } th { "Before" } th { "After" } } }
                tbody {
                    @for ch in changes {
                        tr class=(cell(&ch["op"])) {
                            td { (cell(&ch["op"])) }
                            td { code { (cell(&ch["path"])) } }
                            td { code { (ch.get("from").map(Value::to_string).unwrap_or_default()) } }
                            td { code { (ch.get("value").map(Value::to_string).unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
    }
}

async fn team(
    State(c): State<Console>,
    s: Session,
    Path((org, node)): Path<(String, String)>,
    Query(q): Query<DiffQuery>,
) -> Page {
    let api = Api::new(&c, &s);
    let base = format!("/api/v1/orgs/{}/nodes/{}", enc(&org), enc(&node));
    let info = api.get(Service::Config, &base).await?;
    let config = api
        .get(Service::Config, &format!("{base}/config?explain=true"))
        .await?;
    // The history and the layer are for org admins; a team token sees the effective values.
    let history = match api
        .get(Service::Config, &format!("{base}/config/history"))
        .await
    {
        Ok(h) => Some(items(&h)),
        Err(PageError::Api { status, .. }) if status == StatusCode::FORBIDDEN => None,
        Err(e) => return Err(e),
    };
    let current = config["version"].as_i64().unwrap_or(0);
    let mut values: Vec<Value> = config["explain"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(p, from)| json!({"path": p, "value": config["config"].pointer(p), "from": from}))
        .collect();
    values.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let (from, to) = (
        q.from.unwrap_or((current - 1).max(0)),
        q.to.unwrap_or(current),
    );
    let compared = if let (Some(history), true) = (&history, q.from.is_some() || q.to.is_some()) {
        let layer = api
            .get(Service::Config, &format!("{base}/config/layer"))
            .await?;
        let at = |v| at_version(&layer["layer"], current, history, v);
        Some(match (at(from), at(to)) {
            (Ok(old), Ok(new)) => {
                let changes: Vec<Value> = diff(&old, &new)
                    .into_iter()
                    .map(|c| serde_json::to_value(c).unwrap_or_default())
                    .collect();
                changes_table(&changes)
            }
            (Err(e), _) | (_, Err(e)) => html! { p.error { (e) } },
        })
    } else {
        None
    };
    let history_rows: Vec<Value> = history
        .iter()
        .flatten()
        .map(|h| {
            let paths: Vec<&str> = h["diff"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["path"].as_str())
                .collect();
            json!({"version": h["version"], "author": h["author"], "approved_by": h["approved_by"],
                "at": h["created_at"], "message": h["message"], "changed": paths.join(" ")})
        })
        .collect();
    let here = format!("/console/orgs/{}/teams/{}", enc(&org), enc(&node));
    let body = html! {
        (facts(&info, &["id", "kind", "name", "parent_id", "created_at", "updated_at"]))
        h2 { "Effective configuration" }
        p.muted { "Layer version " (current) ", etag " code { (cell(&config["etag"])) } ". Each value shows the node whose layer set it." }
        (table(&values, &[("Path", "/path"), ("Value", "/value"), ("Set by", "/from")], |_| None))
        details {
            summary { "As JSON" }
            (pretty(&config["config"]))
        }
        h2 { "History" }
        @if history.is_none() { p.muted { "The history and diffs are for org admins." } }
        @else {
        (table(&history_rows, &[("Version", "/version"), ("Author", "/author"), ("Approved by", "/approved_by"),
            ("At", "/at"), ("Message", "/message"), ("Changed", "/changed")], |r| {
            let v = r["version"].as_i64()?;
            Some(format!("{here}?from={}&to={v}#diff", (v - 1).max(0)))
        }))
        h2 #diff { "Compare versions" }
        form.inline method="get" action=(here) {
            label { "from " input type="number" name="from" min="0" max=(current) value=(from); }
            label { " to " input type="number" name="to" min="0" max=(current) value=(to); }
            button type="submit" { "Compare" }
        }
        @if let Some(m) = compared {
            h3 { "Layer changes from version " (from) " to " (to) }
            (m)
        }
        }
    };
    Ok(page(&s, Some(&org), "teams", &format!("Team {node}"), body))
}

async fn changes(
    State(c): State<Console>,
    s: Session,
    Path(org): Path<String>,
    Query(done): Query<Done>,
) -> Page {
    let list = Api::new(&c, &s)
        .get(
            Service::Config,
            &format!("/api/v1/orgs/{}/changes?status=pending", enc(&org)),
        )
        .await?;
    let list = items(&list);
    let o = enc(&org);
    // What each layer change would do: its diff against the node's current layer.
    let mut diffs = Vec::with_capacity(list.len());
    for ch in &list {
        let node = ch["node_id"].as_str().filter(|_| ch["kind"] == "layer");
        let current = match node {
            Some(n) => Some(
                Api::new(&c, &s)
                    .get(
                        Service::Config,
                        &format!("/api/v1/orgs/{o}/nodes/{}/config/layer", enc(n)),
                    )
                    .await?,
            ),
            None => None,
        };
        diffs.push(current.map(|cur| {
            diff(&cur["layer"], &ch["layer"])
                .into_iter()
                .map(|c| serde_json::to_value(c).unwrap_or_default())
                .collect::<Vec<Value>>()
        }));
    }
    let body = html! {
        (notice(done.done.as_deref(), done.n))
        @if list.is_empty() { p.empty { "No change awaits approval." } }
        @for (ch, changed) in list.iter().zip(&diffs) {
            @let id = ch["id"].as_str().unwrap_or_default();
            section.change id={ "change-" (id) } {
                h2 { (cell(&ch["kind"])) " change to " (cell(&ch["node_id"])) }
                (facts(ch, &["id", "author", "created_at", "base_version", "reason"]))
                p { "Touches protected paths: " code { (cell(&ch["touched"])) } }
                @if let Some(changed) = changed {
                    h3 { "What it changes in the layer" }
                    (changes_table(changed))
                }
                details { summary { "Proposed layer" } (pretty(&ch["layer"])) }
                form.inline method="post" action={ "/console/orgs/" (o) "/changes/" (enc(id)) "/approve" } {
                    (csrf(&s))
                    input type="text" name="reason" placeholder="reason (optional)";
                    button type="submit" name="approve" { "Approve" }
                }
                form.inline method="post" action={ "/console/orgs/" (o) "/changes/" (enc(id)) "/reject" } {
                    (csrf(&s))
                    input type="text" name="reason" placeholder="reason (optional)";
                    button.danger type="submit" name="reject" { "Reject" }
                }
            }
        }
    };
    Ok(page(&s, Some(&org), "changes", "Pending approvals", body))
}

async fn decide(
    State(c): State<Console>,
    Path((org, id, decision)): Path<(String, String, String)>,
    form: Posted,
) -> Page {
    let (verb, done) = match decision.as_str() {
        "approve" => ("approve", "approved"),
        "reject" => ("reject", "rejected"),
        _ => return Ok(axum::http::StatusCode::NOT_FOUND.into_response()),
    };
    Api::new(&c, &form.session)
        .post(
            Service::Config,
            &format!("/api/v1/orgs/{}/changes/{}/{verb}", enc(&org), enc(&id)),
            json!({"reason": form.get("reason")}),
        )
        .await?;
    after(&format!("/console/orgs/{}/changes", enc(&org)), done)
}
