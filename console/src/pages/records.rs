//! What was done to the platform: provisioning runs with their steps, and the audit log with the
//! check of its hash chain.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use maud::html;
use serde::Deserialize;

use super::{Api, Page, items};
use crate::Console;
use crate::session::Session;
use crate::upstream::{Service, enc, query};
use crate::view::{cell, facts, page, table};

pub fn router() -> Router<Console> {
    Router::new()
        .route("/console/orgs/{org}/provisioning", get(provisioning))
        .route(
            "/console/orgs/{org}/provisioning/{id}",
            get(provisioning_run),
        )
        .route("/console/orgs/{org}/audit", get(audit))
}

async fn provisioning(State(c): State<Console>, s: Session, Path(org): Path<String>) -> Page {
    let o = enc(&org);
    let list = Api::new(&c, &s)
        .get(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{o}/provisioning"),
        )
        .await?;
    let body = table(
        &items(&list),
        &[
            ("Created", "/created_at"),
            ("Kind", "/kind"),
            ("Team", "/team_id"),
            ("Status", "/status"),
            ("By", "/created_by"),
            ("Finished", "/finished_at"),
            ("Error", "/error"),
        ],
        |r| {
            Some(format!(
                "/console/orgs/{o}/provisioning/{}",
                enc(r["id"].as_str()?)
            ))
        },
    );
    Ok(page(
        &s,
        Some(&org),
        "provisioning",
        "Provisioning runs",
        body,
    ))
}

async fn provisioning_run(
    State(c): State<Console>,
    s: Session,
    Path((org, id)): Path<(String, String)>,
) -> Page {
    let r = Api::new(&c, &s)
        .get(
            Service::Orchestrator,
            &format!("/api/v1/orgs/{}/provisioning/{}", enc(&org), enc(&id)),
        )
        .await?;
    let body = html! {
        (facts(&r, &["id", "kind", "team_id", "status", "created_by", "created_at", "started_at", "finished_at", "error"]))
        h2 { "Steps" }
        (table(&items(&r["steps"]), &[("#", "/seq"), ("Step", "/name"), ("Status", "/status"), ("Started", "/started_at"),
            ("Finished", "/finished_at"), ("Detail", "/detail"), ("Error", "/error")], |_| None))
    };
    Ok(page(
        &s,
        Some(&org),
        "provisioning",
        "Provisioning run",
        body,
    ))
}

#[derive(Debug, Default, Deserialize)]
struct AuditFilter {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    cursor: Option<String>,
}

async fn audit(
    State(c): State<Console>,
    s: Session,
    Path(org): Path<String>,
    Query(f): Query<AuditFilter>,
) -> Page {
    let o = enc(&org);
    let api = Api::new(&c, &s);
    let filter = [
        ("actor", f.actor.as_deref()),
        ("action", f.action.as_deref()),
        ("target", f.target.as_deref()),
    ];
    let mut q = filter.to_vec();
    q.extend([("cursor", f.cursor.as_deref()), ("limit", Some("50"))]);
    let list = api
        .get(
            Service::Config,
            &format!("/api/v1/orgs/{o}/audit{}", query(&q)),
        )
        .await?;
    let check = api
        .get(Service::Config, &format!("/api/v1/orgs/{o}/audit/verify"))
        .await?;
    let v = |x: &Option<String>| x.clone().unwrap_or_default();
    let body = html! {
        @if check["ok"].as_bool() == Some(true) {
            p.notice role="status" { "Chain intact: " (cell(&check["entries"])) " entries, every hash links to the one before." }
        } @else {
            p.error role="alert" { "Chain broken at entry " (cell(&check["first_bad_seq"])) ": " (cell(&check["problem"])) }
        }
        form.filters method="get" action={ "/console/orgs/" (o) "/audit" } {
            label { "Actor " input type="text" name="actor" value=(v(&f.actor)); }
            label { "Action " input type="text" name="action" value=(v(&f.action)); }
            label { "Target " input type="text" name="target" value=(v(&f.target)); }
            button type="submit" { "Filter" }
        }
        (table(&items(&list), &[("#", "/seq"), ("At", "/at"), ("Actor", "/actor"), ("Action", "/action"),
            ("Target", "/target"), ("Request", "/request_id")], |_| None))
        @if let Some(cur) = list["next_cursor"].as_str() {
            p { a rel="next" href={ "/console/orgs/" (o) "/audit" (query(&[filter[0], filter[1], filter[2], ("cursor", Some(cur))])) } { "Older →" } }
        }
    };
    Ok(page(&s, Some(&org), "audit", "Audit log", body))
}
