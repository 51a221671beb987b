//! RFC 9457 problem details.
//!
//! Every error leaves a service as `application/problem+json` with a stable `type` URI
//! (`urn:switchyard:problem:<code>`) that clients can match on, a human `title` and `detail`, and
//! for validation errors a JSON pointer to the offending field. Never a stack trace or SQL text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) to the offending value in the request body.
    pub pointer: String,
    pub detail: String,
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g. `urn:switchyard:problem:not-found`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For validation errors: pointer to the first offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// For validation errors: every offending field.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
    /// Extra members specific to the problem type (for example the owner of a conflicting route).
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty", default)]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// Seconds to wait before retrying, sent as the `Retry-After` header too.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, title: &str) -> Self {
        Self {
            type_: format!("urn:switchyard:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            pointer: None,
            errors: Vec::new(),
            extensions: serde_json::Map::new(),
            retry_after: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let first = errors.first().cloned();
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request is not valid",
        );
        if let Some(first) = first {
            p.detail = Some(format!(
                "{}: {}",
                display_pointer(&first.pointer),
                first.detail
            ));
            p.pointer = Some(first.pointer);
        }
        p.errors = errors;
        p
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

fn display_pointer(p: &str) -> &str {
    if p.is_empty() { "(body)" } else { p }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after;
        let mut resp = (status, axum::Json(self)).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Escapes one JSON pointer reference token (RFC 6901).
pub fn escape_pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_points_at_first_field() {
        let p = Problem::validation(vec![FieldError {
            pointer: "/agent/model".into(),
            detail: "must be a string".into(),
        }]);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:switchyard:problem:validation");
        assert_eq!(v["status"], 422);
        assert_eq!(v["pointer"], "/agent/model");
        assert_eq!(v["errors"][0]["detail"], "must be a string");
    }

    #[test]
    fn problem_response_has_problem_content_type() {
        let resp = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "down")
            .with("owner", "team-a")
            .into_response();
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "down");
        p.retry_after = Some(5);
        assert_eq!(p.into_response().headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn escapes_pointer_tokens() {
        assert_eq!(escape_pointer_token("a/b~c"), "a~1b~0c");
    }
}
