//! Switchyard's web console: server-rendered HTML over the public REST APIs, served by the
//! orchestrator at `/console` (and so by `switchyard dev`).
//!
//! # How it is built
//! - Every page calls the APIs with the signed-in user's own token ([`upstream`]): the console
//!   shows exactly what that token may see and can do nothing the token cannot. A cross-tenant
//!   link is the API's 404.
//! - Sessions are sealed cookies ([`session`]); every form carries a CSRF secret.
//! - Templates are `maud` macros, escaped by default; the stylesheet and the one small script
//!   (copy to clipboard) are compiled into the binary. No JavaScript framework, no build step.
//! - Each response carries a strict Content-Security-Policy (no inline script, no third-party
//!   origin), `no-store` caching and `frame-ancestors 'none'`.
//!
//! | module | pages |
//! |---|---|
//! | [`pages::tenants`] | home, organisations, the team tree, a team's config, approvals |
//! | [`pages::traffic`] | integrations, events, replay, dead letters, unrouted |
//! | [`pages::runs`] | agent runs and transcripts, incidents |
//! | [`pages::records`] | provisioning runs, the audit log and its chain check |

pub mod pages;
pub mod session;
pub mod upstream;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use switchyard_common::crypto::Keyring;

use crate::session::{COOKIE, LOGIN_COOKIE, Posted, Session};
use crate::upstream::{CallError, Service, Upstream};

/// What the console needs: the keyring that seals sessions and the two APIs.
#[derive(Clone, Debug)]
pub struct Console {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keyring: Keyring,
    config: Upstream,
    orchestrator: Upstream,
    secure_cookies: bool,
}

impl Console {
    /// `secure_cookies`: always mark cookies `Secure` (the console is served over TLS, even when
    /// no proxy says `X-Forwarded-Proto: https`).
    pub fn new(
        keyring: Keyring,
        config: Upstream,
        orchestrator: Upstream,
        secure_cookies: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                keyring,
                config,
                orchestrator,
                secure_cookies,
            }),
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    pub fn secure_cookies(&self) -> bool {
        self.inner.secure_cookies
    }

    pub fn upstream(&self, service: Service) -> &Upstream {
        match service {
            Service::Config => &self.inner.config,
            Service::Orchestrator => &self.inner.orchestrator,
        }
    }
}

/// The console's routes, all under `/console`.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/console", get(pages::tenants::home))
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .merge(pages::tenants::router())
        .merge(pages::traffic::router())
        .merge(pages::runs::router())
        .merge(pages::records::router())
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// No caching (pages show secrets once and per-user data), no framing, no foreign code.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let csp = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
               form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: with no referrer at all Chromium sends `Origin: null`
    // on the console's own forms, which the origin check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/console.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/console.js"),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only the console's own pages are a place to go back to (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/console",
    }
}

async fn login_form(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Response {
    if session::cookie(&headers, COOKIE).is_some_and(|v| Session::open(v, &console).is_some()) {
        return Redirect::to(safe_next(q.next.as_deref())).into_response();
    }
    sign_in_page(&console, &headers, q.next.as_deref(), None)
}

fn sign_in_page(
    console: &Console,
    headers: &HeaderMap,
    next: Option<&str>,
    error: Option<&str>,
) -> Response {
    let nonce = session::random_hex(16);
    let secure = session::over_tls(console, headers);
    let cookie = session::set_cookie(LOGIN_COOKIE, &nonce, "/console/login", 600, secure);
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::SET_COOKIE, cookie)],
        view::sign_in(&nonce, safe_next(next), error),
    )
        .into_response()
}

async fn login(State(console): State<Console>, headers: HeaderMap, body: String) -> Response {
    let fields = session::parse_form(body.as_bytes());
    let field = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let next = field("next");
    let nonce_ok = session::cookie(&headers, LOGIN_COOKIE).is_some_and(|c| {
        use subtle::ConstantTimeEq;
        !c.is_empty() && bool::from(c.as_bytes().ct_eq(field("csrf").as_bytes()))
    });
    if !nonce_ok || !session::same_origin(&headers) {
        return sign_in_page(
            &console,
            &headers,
            Some(&next),
            Some("The sign-in form expired. Try again."),
        );
    }
    let token = field("token");
    if token.is_empty() {
        return sign_in_page(&console, &headers, Some(&next), Some("Enter a token."));
    }
    let me = console
        .upstream(Service::Config)
        .call(axum::http::Method::GET, "/api/v1/me", &token, None, None)
        .await;
    match me {
        Ok(me) => {
            let s = Session::new(token, &me.body);
            tracing::info!(kind = %s.kind, subject = %s.subject, "console sign-in");
            let secure = session::over_tls(&console, &headers);
            let mut resp = Redirect::to(safe_next(Some(&next))).into_response();
            let h = resp.headers_mut();
            let set = [
                session::set_cookie(
                    COOKIE,
                    &s.seal(&console),
                    "/console",
                    session::SESSION_SECONDS,
                    secure,
                ),
                session::set_cookie(LOGIN_COOKIE, "", "/console/login", 0, secure),
            ];
            for c in set {
                h.append(
                    header::SET_COOKIE,
                    HeaderValue::from_str(&c).expect("cookie values are ASCII"),
                );
            }
            resp
        }
        Err(CallError::Problem { status, .. }) if status == StatusCode::UNAUTHORIZED => {
            sign_in_page(
                &console,
                &headers,
                Some(&next),
                Some("That token was not accepted: it is unknown, revoked or expired."),
            )
        }
        Err(e) => view::PageError::from(e).into_response(),
    }
}

async fn logout(State(console): State<Console>, headers: HeaderMap, form: Posted) -> Response {
    tracing::info!(subject = %form.session.subject, "console sign-out");
    let secure = session::over_tls(&console, &headers);
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(COOKIE, "", "/console", 0, secure),
        )],
        Redirect::to("/console/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_a_next_page() {
        assert_eq!(safe_next(Some("/console/orgs/a")), "/console/orgs/a");
        assert_eq!(safe_next(Some("https://evil.example")), "/console");
        assert_eq!(safe_next(Some("/console//evil.example")), "/console");
        assert_eq!(safe_next(Some("/api/v1/orgs")), "/console");
        assert_eq!(safe_next(None), "/console");
    }
}
