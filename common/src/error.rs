//! The services' error type, and how each variant becomes problem+json (never a stack trace or
//! SQL text; 5xx causes are logged).

use crate::problem::{FieldError, Problem};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials, or credentials that are not valid (unknown, revoked, expired).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that may not do this (within the caller's own tenant).
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or belonging to another tenant: the two are indistinguishable on purpose.
    #[error("{0} not found")]
    NotFound(String),
    /// 404 with a whole sentence saying why (the routing lookup's reason an event is unrouted).
    #[error("{0}")]
    NotFoundBecause(String),
    #[error("the request is not valid")]
    Validation(Vec<FieldError>),
    /// A conflict with the current state; `code` becomes the problem type.
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: String,
        extensions: serde_json::Map<String, serde_json::Value>,
    },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PreconditionRequired(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    /// A dependency (database, another service) is down: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Slow down: retry after this many seconds.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    #[cfg(feature = "db")]
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(pointer: &str, detail: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError {
            pointer: pointer.to_owned(),
            detail: detail.into(),
        }])
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            detail: detail.into(),
            extensions: serde_json::Map::new(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into())
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) | Error::NotFoundBecause(_) => StatusCode::NOT_FOUND,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Error::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            #[cfg(feature = "db")]
            Error::Database(e) if is_unavailable(e) => StatusCode::SERVICE_UNAVAILABLE,
            #[cfg(feature = "db")]
            Error::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn to_problem(&self) -> Problem {
        let status = self.status_code();
        match self {
            Error::Unauthorized(d) => {
                Problem::new(status, "unauthorized", "Authentication required").detail(d)
            }
            Error::Forbidden(d) => Problem::new(status, "forbidden", "Not allowed").detail(d),
            Error::NotFound(what) => {
                Problem::new(status, "not-found", "Not found").detail(format!("{what} not found"))
            }
            Error::NotFoundBecause(why) => {
                Problem::new(status, "not-found", "Not found").detail(why)
            }
            Error::Validation(errors) => Problem::validation(errors.clone()),
            Error::Conflict {
                code,
                detail,
                extensions,
            } => {
                let mut p = Problem::new(status, code, "Conflict").detail(detail);
                p.extensions = extensions.clone();
                p
            }
            Error::PreconditionFailed(d) => {
                Problem::new(status, "precondition-failed", "Precondition failed").detail(d)
            }
            Error::PreconditionRequired(d) => {
                Problem::new(status, "precondition-required", "Precondition required").detail(d)
            }
            Error::BadRequest(d) => Problem::new(status, "bad-request", "Bad request").detail(d),
            Error::TooLarge(d) => Problem::new(status, "too-large", "Body too large").detail(d),
            Error::Unavailable(d) => {
                let mut p = Problem::new(status, "unavailable", "Service unavailable").detail(d);
                p.retry_after = Some(5);
                p
            }
            Error::TooManyRequests {
                detail,
                retry_after,
            } => {
                let mut p =
                    Problem::new(status, "too-many-requests", "Too many requests").detail(detail);
                p.retry_after = Some(*retry_after);
                p
            }
            #[cfg(feature = "db")]
            Error::Database(_) if status == StatusCode::SERVICE_UNAVAILABLE => {
                let mut p = Problem::new(status, "unavailable", "Service unavailable")
                    .detail("the database is unavailable; retry later");
                p.retry_after = Some(5);
                p
            }
            #[cfg(feature = "db")]
            Error::Database(_) => internal(status),
            Error::Internal(_) => internal(status),
        }
    }
}

fn internal(status: StatusCode) -> Problem {
    Problem::new(status, "internal", "Internal error")
        .detail("an unexpected error occurred; it has been logged")
}

/// Connection-level failures (the database is down or saturated), as opposed to a bad query.
#[cfg(feature = "db")]
fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
    )
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let unauthorized = matches!(self, Error::Unauthorized(_));
        let mut resp = self.to_problem().into_response();
        if unauthorized {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Maps a unique-constraint violation to a 409 with `code` and `detail`; anything else passes.
#[cfg(feature = "db")]
pub fn on_unique(e: sqlx::Error, code: &'static str, detail: impl Into<String>) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            Error::conflict(code, detail)
        }
        _ => Error::Database(e),
    }
}
