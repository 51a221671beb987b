//! The console's pages, by area. Each handler reads what it shows from the APIs with the
//! signed-in user's token ([`Api`]) and renders it with [`crate::view`].

pub mod records;
pub mod runs;
pub mod tenants;
pub mod traffic;

use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::Console;
use crate::session::Session;
use crate::upstream::{Reply, Service};
use crate::view::PageError;

/// The APIs as the signed-in user.
pub struct Api<'a> {
    console: &'a Console,
    session: &'a Session,
}

pub type Page = Result<Response, PageError>;

impl<'a> Api<'a> {
    pub fn new(console: &'a Console, session: &'a Session) -> Self {
        Self { console, session }
    }

    pub async fn call(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, PageError> {
        Ok(self
            .console
            .upstream(service)
            .call(method, path, self.session.token(), body, if_match)
            .await?)
    }

    pub async fn get(&self, service: Service, path: &str) -> Result<Value, PageError> {
        Ok(self
            .call(service, Method::GET, path, None, None)
            .await?
            .body)
    }

    pub async fn post(
        &self,
        service: Service,
        path: &str,
        body: Value,
    ) -> Result<Value, PageError> {
        Ok(self
            .call(service, Method::POST, path, Some(&body), None)
            .await?
            .body)
    }

    pub async fn delete(&self, service: Service, path: &str) -> Result<Value, PageError> {
        Ok(self
            .call(service, Method::DELETE, path, None, None)
            .await?
            .body)
    }
}

/// `?done=...&n=...` after an action (see [`crate::view::notice`]).
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    pub done: Option<String>,
    pub n: Option<u64>,
}

/// Back to `to` after an action, with its notice.
pub fn after(to: &str, done: &str) -> Page {
    let sep = if to.contains('?') { '&' } else { '?' };
    Ok(Redirect::to(&format!("{to}{sep}done={done}")).into_response())
}

/// The items of a page answer (`{items: [...]}`) or of a bare array.
pub fn items(v: &Value) -> Vec<Value> {
    v.get("items")
        .unwrap_or(v)
        .as_array()
        .cloned()
        .unwrap_or_default()
}
