//! Signing in and staying signed in.
//!
//! The session is a cookie the browser cannot read (HttpOnly), sends only to the console's own
//! pages (Path=/console, SameSite=Strict) and only over TLS when the console is behind TLS
//! (Secure). Its value is the token, a CSRF secret and an expiry, sealed with the orchestrator's
//! master keyring (XChaCha20-Poly1305, bound to its purpose): no server-side session table, any
//! replica can read it, rotating the master key signs everyone out. The token never appears in a
//! page, a URL or a log line; each page calls the APIs with it, so revoking the token ends the
//! session at the next click.
//!
//! Every form carries the session's CSRF secret and is refused (403) without it; the sign-in form
//! itself uses a double-submit cookie.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use switchyard_common::crypto::Sealed;
use switchyard_common::time::now_ms;

use crate::Console;

pub const COOKIE: &str = "sy_console";
pub const LOGIN_COOKIE: &str = "sy_console_login";
/// What the sealed cookie is bound to (a ciphertext made for another purpose does not open).
const PURPOSE: &str = "switchyard-console-session-v1";
/// How long a session lasts without signing in again.
pub const SESSION_SECONDS: i64 = 8 * 3600;

/// The signed-in user: who the API said the token is, and the token to call it with.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "t")]
    token: String,
    #[serde(rename = "c")]
    pub csrf: String,
    #[serde(rename = "e")]
    expires_ms: i64,
    /// `platform_admin`, `org_admin` or `team`.
    pub kind: String,
    pub org: Option<String>,
    pub node: Option<String>,
    pub subject: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("kind", &self.kind)
            .field("org", &self.org)
            .field("node", &self.node)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Session {
    /// A new session for `token`, from the API's description of it (`GET /api/v1/me`).
    pub fn new(token: String, me: &serde_json::Value) -> Self {
        let s = |k: &str| me[k].as_str().map(str::to_owned);
        Self {
            token,
            csrf: random_hex(16),
            expires_ms: now_ms() + SESSION_SECONDS * 1000,
            kind: s("kind").unwrap_or_default(),
            org: s("org_id"),
            node: s("node_id"),
            subject: s("subject").unwrap_or_default(),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn is_platform_admin(&self) -> bool {
        self.kind == "platform_admin"
    }

    pub fn is_team(&self) -> bool {
        self.kind == "team"
    }

    /// The cookie value: `key_id.nonce.ciphertext`.
    pub fn seal(&self, console: &Console) -> String {
        let json = serde_json::to_vec(self).expect("a session serialises");
        let s = console.keyring().seal(&json, PURPOSE);
        format!("{}.{}.{}", s.key_id, s.nonce, s.ciphertext)
    }

    pub fn open(value: &str, console: &Console) -> Option<Self> {
        let mut parts = value.splitn(3, '.');
        let sealed = Sealed {
            key_id: parts.next()?.to_owned(),
            nonce: parts.next()?.to_owned(),
            ciphertext: parts.next()?.to_owned(),
        };
        let json = console.keyring().open(&sealed, PURPOSE).ok()?;
        let s: Self = serde_json::from_slice(&json).ok()?;
        (s.expires_ms > now_ms()).then_some(s)
    }

    /// Whether a submitted CSRF value is this session's (constant time).
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        self.csrf.as_bytes().ct_eq(submitted.as_bytes()).into()
    }
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached the console over TLS (directly or through a proxy that says so).
pub fn over_tls(console: &Console, headers: &HeaderMap) -> bool {
    console.secure_cookies()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for the console's cookies (`max_age` 0 deletes it).
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Where a signed-out browser goes: the sign-in page, then back where it was.
fn to_sign_in(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/console");
    Redirect::to(&format!(
        "/console/login?next={}",
        crate::upstream::enc(here)
    ))
    .into_response()
}

impl FromRequestParts<Console> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        cookie(&parts.headers, COOKIE)
            .and_then(|v| Session::open(v, console))
            .ok_or_else(|| to_sign_in(parts))
    }
}

/// A submitted console form, from a signed-in session whose CSRF secret it carries.
#[derive(Debug)]
pub struct Posted {
    pub session: Session,
    fields: Vec<(String, String)>,
}

impl Posted {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Refuses a form from another site: its `Origin`, when the browser sends one, must be this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, h)| !host.is_empty() && h == host)
}

/// The 403 page for a refused form (kept here, without the page frame, so that sessions do not
/// depend on the views that depend on them).
pub fn refused(why: &str) -> Response {
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Refused · Switchyard" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body.bare { main { h1 { "Refused" } p { (why) } p { a href="/console" { "Back to the console" } } } }
        }
    };
    (
        StatusCode::FORBIDDEN,
        axum::response::Html(page.into_string()),
    )
        .into_response()
}

pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

impl FromRequest<Console> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, console).await?;
        if !same_origin(&parts.headers) {
            return Err(refused("This form was sent from another site."));
        }
        let body = Bytes::from_request(Request::from_parts(parts, body), console)
            .await
            .map_err(IntoResponse::into_response)?;
        let fields = parse_form(&body);
        let submitted = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        if !session.csrf_matches(submitted) {
            return Err(refused(
                "This form has expired or did not come from the console. Go back, reload the page and try again.",
            ));
        }
        Ok(Self { session, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_by_name_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sy_console=x.y.z; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("x.y.z"));
        assert_eq!(cookie(&h, "sy"), None);
    }

    #[test]
    fn forms_from_another_origin_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("sy.example:8080"));
        assert!(same_origin(&h), "no Origin header: rely on CSRF alone");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://sy.example:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
    }

    #[test]
    fn repeated_form_fields_are_all_kept() {
        let f = parse_form(b"csrf=abc&id=1&id=2&note=a+b");
        let p = Posted {
            session: Session::new("t".into(), &serde_json::json!({"kind": "team"})),
            fields: f,
        };
        assert_eq!(p.all("id"), ["1", "2"]);
        assert_eq!(p.get("note"), Some("a b"));
        assert_eq!(p.get("missing"), None);
    }
}
