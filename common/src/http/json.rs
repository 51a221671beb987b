//! JSON bodies and query strings whose errors are problem+json naming the offending field.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::problem::{FieldError, escape_pointer_token};

/// A JSON body. A malformed body answers 400; a body of the wrong shape answers 422 with a JSON
/// pointer to the field that is wrong.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct.split(';').next().unwrap_or("").trim();
                ct == "application/json" || ct.ends_with("+json")
            });
        if !is_json {
            return Err(Error::BadRequest(
                "send the body as JSON with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::TooLarge("the body is larger than this endpoint accepts".into())
                } else {
                    Error::BadRequest(format!("could not read the body: {e}"))
                }
            })?;
        object_body(&bytes)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Every request body of the API is a JSON object: serde would otherwise read a struct from an
/// array (`[null, null]`) field by field. Not JSON at all is 400; JSON of another kind, 422.
fn object_body(bytes: &[u8]) -> Result<(), Error> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Err(e) => Err(Error::BadRequest(format!(
            "the body is not valid JSON: {e}"
        ))),
        Ok(_) => Err(Error::Validation(vec![FieldError {
            pointer: String::new(),
            detail: "the body must be a JSON object".into(),
        }])),
    }
}

/// Deserialises `bytes`, pointing at the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() || inner.is_io() {
                return Err(Error::BadRequest(format!(
                    "the body is not valid JSON: {inner}"
                )));
            }
            let mut pointer = String::new();
            for seg in e.path().iter() {
                use serde_path_to_error::Segment;
                match seg {
                    Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                    Segment::Map { key } => {
                        pointer.push('/');
                        pointer.push_str(&escape_pointer_token(key));
                    }
                    Segment::Enum { variant } => {
                        pointer.push('/');
                        pointer.push_str(&escape_pointer_token(variant));
                    }
                    Segment::Unknown => {}
                }
            }
            let msg = inner.to_string();
            // serde reports a missing field on its parent; point at the field itself.
            if let Some(field) = msg
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                pointer.push('/');
                pointer.push_str(field);
            }
            let detail = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            Err(Error::Validation(vec![FieldError { pointer, detail }]))
        }
    }
}

/// An optional JSON body: absent when the request has no body. A body of whitespace alone is
/// not JSON (400), as any other body that does not parse.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Error> {
        let has_type = req.headers().contains_key(CONTENT_TYPE);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Error::BadRequest(format!("could not read the body: {e}")))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        if !has_type {
            return Err(Error::BadRequest(
                "send the body as JSON with `Content-Type: application/json`".into(),
            ));
        }
        object_body(&bytes)?;
        parse_json(&bytes).map(|v| Some(ApiJson(v)))
    }
}

/// Largest page a list endpoint answers.
pub const MAX_PAGE: u32 = 500;

/// A list's `limit` query parameter: 1 to [`MAX_PAGE`], as the documents say; anything else is
/// refused (400, naming it) rather than quietly clamped. Use with
/// `#[serde(default, deserialize_with = "page_limit")]` and `#[param(minimum = 1, maximum = 500)]`.
pub fn page_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let raw: Option<String> = serde::Deserialize::deserialize(d)?;
    let Some(raw) = raw else { return Ok(None) };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(Some(n)),
        _ => Err(serde::de::Error::custom(format!(
            "limit must be a whole number from 1 to {MAX_PAGE}, not {raw:?}"
        ))),
    }
}

/// Query parameters; a value of the wrong type answers 400 as problem+json naming it.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| Error::BadRequest(format!("invalid query string: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Page {
        #[serde(default, deserialize_with = "page_limit")]
        limit: Option<u32>,
    }

    #[test]
    fn page_limits_outside_the_documented_range_are_refused() {
        let parse = |q: &str| serde_urlencoded::from_str::<Page>(q).map(|p| p.limit);
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("limit=1").unwrap(), Some(1));
        assert_eq!(parse("limit=500").unwrap(), Some(500));
        for bad in [
            "limit=0",
            "limit=501",
            "limit=2147483648",
            "limit=-1",
            "limit=x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(object_body(b" {\"a\": 1}").is_ok());
        assert!(matches!(
            object_body(b"[null, null]"),
            Err(Error::Validation(_))
        ));
        assert!(matches!(object_body(b"3"), Err(Error::Validation(_))));
        assert!(matches!(object_body(b"[nope"), Err(Error::BadRequest(_))));
        assert!(matches!(object_body(b""), Err(Error::BadRequest(_))));
    }

    /// An optional body is absent only when there is none: whitespace alone is not JSON.
    #[tokio::test]
    async fn an_optional_body_is_absent_only_when_empty() {
        use axum::extract::OptionalFromRequest;
        #[derive(Debug, serde::Deserialize)]
        struct Body {
            #[allow(dead_code)]
            key: Option<String>,
        }
        let with = |body: &'static str| {
            axum::http::Request::builder()
                .method("POST")
                .header(CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .unwrap()
        };
        let read = async |body| {
            <ApiJson<Body> as OptionalFromRequest<()>>::from_request(with(body), &()).await
        };
        assert!(matches!(read("").await, Ok(None)));
        assert!(matches!(read("{}").await, Ok(Some(_))));
        for bad in ["\r", " ", "\n\t", "nope"] {
            assert!(
                matches!(read(bad).await, Err(Error::BadRequest(_))),
                "{bad:?} was not refused"
            );
        }
    }
}
