//! The page frame, tables and the error page: what every page shares.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::session::Session;
use crate::upstream::{CallError, enc};

/// Every page's `<head>`: the stylesheet, and the copy script on signed-in pages.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Switchyard" }
            link rel="stylesheet" href="/console/assets/console.css";
            @if script { script src="/console/assets/console.js" defer {} }
        }
    }
}

/// A page without the signed-in frame (sign-in, errors).
pub fn bare_page(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title, false))
                body.bare {
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

pub fn sign_in(nonce: &str, next: &str, error: Option<&str>) -> Html<String> {
    bare_page(
        "Sign in to Switchyard",
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(nonce);
                input type="hidden" name="next" value=(next);
                label for="token" { "Token (platform admin, org admin or team)" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.hint { "The token stays on the server: the browser keeps only a sealed session cookie." }
        },
    )
}

/// Navigation entries of an organisation: (key, label, path under the org).
const ORG_NAV: &[(&str, &str, &str, bool)] = &[
    ("teams", "Teams", "", false),
    ("changes", "Approvals", "/changes", true),
    ("integrations", "Integrations", "/integrations", true),
    ("events", "Events", "/events", true),
    ("dead", "Dead letters", "/events?status=dead_lettered", true),
    ("unrouted", "Unrouted", "/events?status=unrouted", true),
    ("runs", "Agent runs", "/runs", false),
    ("incidents", "Incidents", "/incidents", false),
    ("provisioning", "Provisioning", "/provisioning", true),
    ("audit", "Audit log", "/audit", true),
];

/// A page in the signed-in frame: who is signed in, sign-out, the org's navigation.
pub fn page(s: &Session, org: Option<&str>, active: &str, title: &str, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                header {
                    a.brand href="/console" { "Switchyard" }
                    @if let Some(o) = org {
                        span.org { "org " strong { (o) } }
                    }
                    span.who {
                        (s.subject) " · " (s.kind.replace('_', " "))
                        @if let Some(n) = &s.node { " · team " (n) }
                    }
                    form.inline method="post" action="/console/logout" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        button.link type="submit" { "Sign out" }
                    }
                }
                @if let Some(o) = org {
                    nav {
                        @if s.is_platform_admin() { a href="/console" { "All organisations" } }
                        @for (key, label, path, admin_only) in ORG_NAV {
                            @if !(*admin_only && s.is_team()) {
                                a class=@if *key == active { "active" } href={ "/console/orgs/" (enc(o)) (path) } { (label) }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(html.into_string()).into_response()
}

/// The hidden CSRF field every form carries.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// A JSON value as one table cell's text.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A column: heading, JSON pointer into the row.
pub type Col<'a> = (&'a str, &'a str);

/// A table of JSON rows; the first column links to `link(row)` when it gives a path.
pub fn table(rows: &[Value], cols: &[Col], link: impl Fn(&Value) -> Option<String>) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { "Nothing here." }
        } @else {
            table {
                thead { tr { @for (h, _) in cols { th { (h) } } } }
                tbody {
                    @for row in rows {
                        tr {
                            @for (i, (_, ptr)) in cols.iter().enumerate() {
                                @let text = cell(row.pointer(ptr).unwrap_or(&Value::Null));
                                td {
                                    @if i == 0 {
                                        @if let Some(href) = link(row) { a href=(href) { (text) } }
                                        @else { (text) }
                                    } @else { (text) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A JSON document, indented.
pub fn pretty(v: &Value) -> Markup {
    html! { pre.json { (serde_json::to_string_pretty(v).unwrap_or_default()) } }
}

/// Key/value pairs of an object's scalar members.
pub fn facts(v: &Value, keys: &[&str]) -> Markup {
    html! {
        dl.facts {
            @for k in keys {
                @if let Some(x) = v.get(*k).filter(|x| !x.is_null()) {
                    dt { (k.replace('_', " ")) }
                    dd { (cell(x)) }
                }
            }
        }
    }
}

/// The notice after an action, from a fixed list (a link cannot make the console say anything).
pub fn notice(done: Option<&str>, n: Option<u64>) -> Markup {
    let text = match done {
        Some("replayed") => format!("Replayed {} event(s).", n.unwrap_or(1)),
        Some("approved") => "Change approved and applied.".to_owned(),
        Some("rejected") => "Change rejected.".to_owned(),
        Some("cancelled") => "Run cancelled.".to_owned(),
        Some("resolved") => "Incident resolved.".to_owned(),
        Some("retired") => "Secret retired: deliveries signed with it are refused now.".to_owned(),
        Some("rotated") => {
            "Secret added: the sender may sign with it or the older ones until you retire them."
                .to_owned()
        }
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// A page that could not be shown: the API's answer, or no answer.
#[derive(Debug)]
pub enum PageError {
    /// The token no longer works (revoked, expired): sign in again.
    SignedOut,
    Api {
        status: StatusCode,
        title: String,
        detail: String,
    },
    Unavailable(String),
}

impl From<CallError> for PageError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Problem { status, .. } if status == StatusCode::UNAUTHORIZED => {
                Self::SignedOut
            }
            CallError::Problem {
                status,
                title,
                detail,
            } => Self::Api {
                status,
                title,
                detail,
            },
            CallError::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::SignedOut => Redirect::to("/console/login").into_response(),
            Self::Api {
                status,
                title,
                detail,
            } => {
                let hint = match status.as_u16() {
                    403 => "Your token may not do this.",
                    404 => "It does not exist, or your token may not see it.",
                    _ => "",
                };
                (
                    status,
                    bare_page(
                        &title,
                        html! {
                            @if !detail.is_empty() { p { (detail) } }
                            @if !hint.is_empty() { p.hint { (hint) } }
                            p { a href="/console" { "Back to the console" } }
                        },
                    ),
                )
                    .into_response()
            }
            Self::Unavailable(why) => {
                tracing::warn!(error = %why, "console: an API did not answer");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    bare_page(
                        "Service unavailable",
                        html! { p { "A Switchyard service did not answer. Try again shortly." } },
                    ),
                )
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_cells_are_escaped() {
        let rows = [json!({"a": "<script>alert(1)</script>", "b": ["x", "y"]})];
        let m = table(&rows, &[("A", "/a"), ("B", "/b")], |_| None).into_string();
        assert!(!m.contains("<script>"), "{m}");
        assert!(m.contains("&lt;script&gt;"));
        assert!(m.contains("x, y"));
    }

    #[test]
    fn notices_come_from_a_fixed_list() {
        assert!(notice(Some("<b>pwned</b>"), None).into_string().is_empty());
        assert!(
            notice(Some("replayed"), Some(3))
                .into_string()
                .contains("Replayed 3")
        );
    }
}
