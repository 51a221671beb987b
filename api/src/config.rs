//! Config as services read it: `GET /api/v1/internal/orgs/{org}/nodes/{node}/config`,
//! `GET /api/v1/internal/pipelines`, `GET /api/v1/internal/orgs/{org}/secrets/{name}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The part of an effective config a service works with (the answer carries more: where each
/// value comes from, versions).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeConfig {
    pub config: Value,
    /// Changes whenever any layer in the chain changes.
    #[serde(default)]
    pub etag: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TeamPipelines {
    pub org_id: String,
    pub team_id: String,
    /// The `pipelines` section of the team's effective config.
    #[schema(value_type = Object)]
    pub pipelines: Value,
}

/// A value of the org secrets store, as the agent-runner reads it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevealedSecret {
    pub name: String,
    pub value: String,
}
