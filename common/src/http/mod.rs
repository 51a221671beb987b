//! Extractors every service uses: who is calling (tenancy and auth as handler arguments, so no
//! handler can forget them), and JSON bodies and query strings whose errors are problem+json naming
//! the offending field.
//!
//! A service's state implements [`AuthState`]: where the platform admin token and the service key
//! come from, and how an org admin or team token is resolved (the config-service from its store,
//! other services by asking the config-service).
//!
//! # Layout
//! - this file: callers and the auth extractors;
//! - [`json`]: JSON bodies and query strings with problem+json errors;
//! - [`layers`]: the middleware stack every service runs.

mod json;
mod layers;

pub use json::{ApiJson, ApiQuery, MAX_PAGE, page_limit, parse_json};
pub use layers::{REQUEST_TIMEOUT, standard_layers};

use std::collections::HashMap;
use std::future::Future;

use axum::extract::{FromRequestParts, Path};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::auth::{ServiceKey, secrets_equal};
use crate::error::Error;

/// Who performs a change, for audit logs and approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `platform-admin`, `org-admin:<token id>`, `team:<token id>` or `service:<name>`.
    pub id: String,
    /// The person or system the credential was issued to (a token's `subject`; the platform admin
    /// is its own). Four-eyes approvals compare subjects: two tokens of one person are one person.
    pub subject: String,
    pub request_id: Option<String>,
}

impl Actor {
    /// The actor id of the platform admin.
    pub const PLATFORM_ADMIN: &'static str = "platform-admin";

    /// True for the platform admin, who alone may assign tenant-wide settings such as org-level
    /// routing identifiers.
    pub fn is_platform_admin(&self) -> bool {
        self.id == Self::PLATFORM_ADMIN
    }

    pub fn system(name: &str) -> Self {
        Self {
            id: name.to_owned(),
            subject: name.to_owned(),
            request_id: None,
        }
    }

    /// A credential of `subject`.
    pub fn with_subject(id: &str, subject: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            ..Self::system(id)
        }
    }

    /// How the audit log names the actor: the subject, and the credential when they differ.
    pub fn audit_name(&self) -> String {
        if self.subject == self.id {
            self.id.clone()
        } else {
            format!("{} ({})", self.subject, self.id)
        }
    }
}

/// What a service's state must provide for the auth extractors.
pub trait AuthState: Clone + Send + Sync + 'static {
    /// The audience service JWTs for this service carry (`config-service`, `orchestrator`, ...).
    const AUDIENCE: &'static str;

    /// The platform admin token, if configured.
    fn admin_token(&self) -> Option<&str>;

    /// The key service JWTs are signed with.
    fn service_key(&self) -> &ServiceKey;

    /// Resolves an org admin or team token. Unknown, revoked and expired tokens are
    /// `Error::Unauthorized`.
    fn resolve_token(&self, token: &str) -> impl Future<Output = Result<Caller, Error>> + Send;
}

/// An authenticated caller of the public API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    PlatformAdmin,
    OrgAdmin {
        org_id: String,
        token_id: String,
        /// Who the token was issued to.
        subject: String,
    },
    Team {
        org_id: String,
        node_id: String,
        token_id: String,
        subject: String,
    },
}

impl Caller {
    pub fn actor_id(&self) -> String {
        match self {
            Caller::PlatformAdmin => Actor::PLATFORM_ADMIN.into(),
            Caller::OrgAdmin { token_id, .. } => format!("org-admin:{token_id}"),
            Caller::Team { token_id, .. } => format!("team:{token_id}"),
        }
    }

    /// The person or system behind the credential.
    pub fn subject(&self) -> String {
        match self {
            Caller::PlatformAdmin => Actor::PLATFORM_ADMIN.into(),
            Caller::OrgAdmin { subject, .. } | Caller::Team { subject, .. } => subject.clone(),
        }
    }

    /// The actor of a request made with this credential.
    pub fn actor(&self, request_id: Option<String>) -> Actor {
        Actor {
            id: self.actor_id(),
            subject: self.subject(),
            request_id,
        }
    }

    /// May administer `org`. Another tenant's org answers 404 (as if it did not exist); a team
    /// token in its own org answers 403.
    pub fn authorize_org_admin(&self, org: &str) -> Result<(), Error> {
        match self {
            Caller::PlatformAdmin => Ok(()),
            Caller::OrgAdmin { org_id, .. } if org_id == org => Ok(()),
            Caller::Team { org_id, .. } if org_id == org => Err(Error::Forbidden(
                "team tokens are read-only and scoped to their own node; use an org admin token"
                    .into(),
            )),
            _ => Err(Error::not_found(format!("organisation {org}"))),
        }
    }

    /// May read `node` of `org`: admins of the org, or a team token of that very node.
    pub fn authorize_node_read(&self, org: &str, node: &str) -> Result<(), Error> {
        match self {
            Caller::Team {
                org_id, node_id, ..
            } if org_id == org => {
                if node_id == node {
                    Ok(())
                } else {
                    Err(Error::not_found(format!("node {node}")))
                }
            }
            _ => self.authorize_org_admin(org),
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, Error> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| {
            Error::Unauthorized("send a token as `Authorization: Bearer <token>`".into())
        })?
        .to_str()
        .map_err(|_| Error::Unauthorized("the Authorization header is not valid".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            Error::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?
        .trim();
    if token.is_empty() {
        return Err(Error::Unauthorized("the bearer token is empty".into()));
    }
    Ok(token)
}

fn request_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl<S: AuthState> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let token = bearer(parts)?;
        let caller = if state
            .admin_token()
            .is_some_and(|admin| secrets_equal(admin, token))
        {
            Caller::PlatformAdmin
        } else {
            state.resolve_token(token).await?
        };
        let span = tracing::Span::current();
        match &caller {
            Caller::PlatformAdmin => {}
            Caller::OrgAdmin { org_id, .. } => {
                span.record("org", org_id.as_str());
            }
            Caller::Team {
                org_id, node_id, ..
            } => {
                span.record("org", org_id.as_str());
                span.record("node", node_id.as_str());
            }
        }
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

async fn path_params<S: Send + Sync>(parts: &mut Parts, state: &S) -> HashMap<String, String> {
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(p)| p)
        .unwrap_or_default()
}

/// The platform admin.
#[derive(Debug, Clone)]
pub struct PlatformAdmin {
    pub actor: Actor,
}

impl<S: AuthState> FromRequestParts<S> for PlatformAdmin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match Caller::from_request_parts(parts, state).await? {
            caller @ Caller::PlatformAdmin => Ok(PlatformAdmin {
                actor: caller.actor(request_id(parts)),
            }),
            _ => Err(Error::Forbidden(
                "only the platform admin may do this".into(),
            )),
        }
    }
}

/// An admin of the org named by the `{org}` path segment (org admin or platform admin).
#[derive(Debug, Clone)]
pub struct OrgAdmin {
    pub org_id: String,
    pub actor: Actor,
    pub caller: Caller,
}

impl<S: AuthState> FromRequestParts<S> for OrgAdmin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let params = path_params(parts, state).await;
        let org = params.get("org").cloned().ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("OrgAdmin used on a route without {{org}}"))
        })?;
        caller.authorize_org_admin(&org)?;
        tracing::Span::current().record("org", org.as_str());
        Ok(OrgAdmin {
            actor: caller.actor(request_id(parts)),
            org_id: org,
            caller,
        })
    }
}

/// A caller allowed to read the node named by `{org}` and `{node}`: an admin of the org, or a
/// team token of that node.
#[derive(Debug, Clone)]
pub struct NodeReader {
    pub org_id: String,
    pub node_id: String,
    pub caller: Caller,
}

impl<S: AuthState> FromRequestParts<S> for NodeReader {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let params = path_params(parts, state).await;
        let (Some(org), Some(node)) = (params.get("org").cloned(), params.get("node").cloned())
        else {
            return Err(Error::Internal(anyhow::anyhow!(
                "NodeReader used on a route without {{org}} and {{node}}"
            )));
        };
        caller.authorize_node_read(&org, &node)?;
        let span = tracing::Span::current();
        span.record("org", org.as_str());
        span.record("node", node.as_str());
        Ok(NodeReader {
            org_id: org,
            node_id: node,
            caller,
        })
    }
}

/// Another Switchyard service, authenticated by a short-lived service JWT.
#[derive(Debug, Clone)]
pub struct Service {
    /// The calling service (`sub`).
    pub name: String,
}

impl Service {
    /// 403 unless the caller is one of `allowed`: each internal endpoint names the services that
    /// need it.
    pub fn require(&self, allowed: &[&str]) -> Result<(), Error> {
        if allowed.contains(&self.name.as_str()) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "service {} may not call this endpoint",
                self.name
            )))
        }
    }
}

impl<S: AuthState> FromRequestParts<S> for Service {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let token = bearer(parts)?;
        let claims = state
            .service_key()
            .verify(token, S::AUDIENCE)
            .map_err(|e| {
                Error::Unauthorized(format!("internal endpoints need a service JWT: {e}"))
            })?;
        Ok(Service { name: claims.sub })
    }
}

/// `listener` with `TCP_NODELAY` on every accepted connection. Without it a response written in
/// two parts waits for the peer's delayed acknowledgement (about 40 ms on Linux), which showed as
/// 40 ms added to service-to-service calls and tool calls under load.
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}
