//! Token introspection: `POST /api/v1/internal/auth/introspect`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectRequest {
    /// An org admin or team token presented to another service.
    pub token: String,
}

/// What a token is. Platform admin tokens are not introspected: each service holds that secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Introspection {
    /// `org_admin` or `team`.
    pub kind: String,
    pub org_id: String,
    pub node_id: Option<String>,
    pub token_id: String,
    /// Who the token was issued to.
    pub subject: String,
}
