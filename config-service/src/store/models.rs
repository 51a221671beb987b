//! What the store returns; these are also the API's response bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::config::Change;

pub use switchyard_common::http::Actor;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Org {
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Node {
    pub org_id: String,
    pub id: String,
    /// The parent node; `null` only for the org's root node (kind `org`, id = org id).
    pub parent_id: Option<String>,
    /// `org` (the root), `group` or `team`.
    pub kind: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A node as it was when deleted or deprovisioned, with every version of its layer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArchivedNode {
    pub id: String,
    pub node_id: String,
    pub archived_at: String,
    pub archived_by: String,
    #[schema(value_type = Object)]
    pub node: Value,
    /// Oldest first: version, layer, author, approved_by, message, created_at.
    #[schema(value_type = Vec<Object>)]
    pub versions: Value,
}

/// A node with its children, for the tree view.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TreeNode {
    #[serde(flatten)]
    pub node: Node,
    #[schema(no_recursion)]
    pub children: Vec<TreeNode>,
}

/// One version of a node's own layer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LayerVersion {
    pub org_id: String,
    pub node_id: String,
    /// 0 when the node has never had a layer.
    pub version: i64,
    #[schema(value_type = Object)]
    pub layer: Value,
    pub author: Option<String>,
    pub approved_by: Option<String>,
    pub message: Option<String>,
    pub created_at: Option<String>,
}

/// One link of the chain an effective config is merged from.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct ChainLink {
    pub node_id: String,
    pub kind: String,
    pub version: i64,
    #[serde(skip)]
    pub layer: Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EffectiveConfig {
    pub org_id: String,
    pub node_id: String,
    /// The node's own layer version.
    pub version: i64,
    /// Changes whenever any layer in the chain changes.
    pub etag: String,
    #[schema(value_type = Object)]
    pub config: Value,
    /// The layers merged, root first.
    pub chain: Vec<ChainLink>,
    /// With `?explain=true`: for every leaf (JSON pointer), the node that set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub version: i64,
    pub author: String,
    pub approved_by: Option<String>,
    pub message: Option<String>,
    pub created_at: String,
    /// What this version changed compared with the one before it.
    pub diff: Vec<Change>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
pub struct Policy {
    /// JSON pointers into a layer, such as `/agent/prompts`. A write that changes one of them (or
    /// anything inside or containing it) needs a second admin's approval.
    pub protected_paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangeRequest {
    pub id: String,
    pub org_id: String,
    /// `layer` (a node's config layer) or `policy` (the org's approval policy itself).
    pub kind: String,
    /// The node whose layer changes (the org's root node for a policy change).
    pub node_id: String,
    /// The layer version the change was proposed against.
    pub base_version: i64,
    /// The proposed layer, or the proposed policy.
    #[schema(value_type = Object)]
    pub layer: Value,
    /// The protected paths it touches (`/policy` for a policy change).
    pub touched: Vec<String>,
    pub author: String,
    /// The person who proposed it: nobody with the same subject may approve it.
    pub author_subject: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub created_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub org_id: String,
    /// The node a team token is scoped to; `null` for org admin tokens.
    pub node_id: Option<String>,
    /// `org_admin` or `team`.
    pub kind: String,
    pub label: String,
    /// Who the token was issued to (`null` for tokens issued before subjects existed).
    pub subject: Option<String>,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A token as issued: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer secret. Store it now: it cannot be shown again.
    pub secret: String,
}

/// What authentication found for a token.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub id: String,
    pub org_id: String,
    pub node_id: Option<String>,
    pub kind: String,
    /// Who holds it (`token:<id>` for tokens issued without a subject).
    pub subject: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Route {
    pub org_id: String,
    pub kind: String,
    pub value: String,
    pub node_id: String,
}

/// The lookup's answer and outcome are the wire types the orchestrator's client reads.
pub use switchyard_api::routing::{Lookup, RouteMatch};
pub use switchyard_api::runs::AgentRun;

/// An audit entry another service relays from its outbox.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayedEntry {
    /// Unique per entry at its source: a repeated id is appended once.
    pub source_id: String,
    /// The org whose chain it joins; `null`: the platform chain.
    pub org_id: Option<String>,
    /// Who acted, as the source names them (subject and credential).
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The state before, as the source recorded it (any JSON).
    #[schema(value_type = Option<serde_json::Value>)]
    pub before: Option<Value>,
    /// The state after (any JSON).
    #[schema(value_type = Option<serde_json::Value>)]
    pub after: Option<Value>,
    pub request_id: Option<String>,
}

/// A secret of the org secrets store, as anyone may see it: never the value.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct SecretInfo {
    pub name: String,
    /// The first 12 hex digits of the value's SHA-256: tells values apart without revealing them.
    pub fingerprint: String,
    /// The services that may read the value: `agent-runner` (LLM keys, tool and reply tokens),
    /// `orchestrator` (the incoming-webhook URL of a `slack` subscription).
    pub readers: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    pub org_id: String,
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The state before, as the source recorded it (any JSON).
    #[schema(value_type = Option<serde_json::Value>)]
    pub before: Option<Value>,
    /// The state after (any JSON).
    #[schema(value_type = Option<serde_json::Value>)]
    pub after: Option<Value>,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct AuditVerification {
    pub org_id: String,
    /// True when every entry is intact and none is missing.
    pub ok: bool,
    pub entries: i64,
    /// The first entry that fails, if any.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
}

/// One page of a list, newest first; pass `next_cursor` as `cursor` for the next page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
