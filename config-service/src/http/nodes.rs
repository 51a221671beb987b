//! The node tree: groups and teams.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, NodeReader, OrgAdmin};
use super::orgs::{check_name, check_slug};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{ArchivedNode, Node, NodePatch, TreeNode};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orgs/{org}/nodes", get(tree).post(create_node))
        .route(
            "/api/v1/orgs/{org}/nodes/{node}",
            get(get_node).patch(update_node).delete(delete_node),
        )
        .route("/api/v1/orgs/{org}/archived-nodes", get(archived))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNode {
    /// Slug, unique in the org (and different from the org id, which names the root node).
    pub id: String,
    /// A group (or the org id); absent: directly under the organisation.
    pub parent_id: Option<String>,
    /// `group` or `team`.
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNode {
    pub name: Option<String>,
    /// Move under this group (or the org id). Cycles are refused.
    pub parent_id: Option<String>,
}

/// Create a group or team.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/nodes", tag = "nodes", params(("org" = String, Path)),
    request_body = CreateNode, responses((status = 201, body = Node), (status = 409, body = switchyard_common::problem::Problem), (status = 422, body = switchyard_common::problem::Problem)))]
pub async fn create_node(
    State(state): State<AppState>,
    admin: OrgAdmin,
    ApiJson(req): ApiJson<CreateNode>,
) -> Result<(StatusCode, Json<Node>)> {
    let id = check_slug(&req.id, "/id")?;
    if !matches!(req.kind.as_str(), "group" | "team") {
        return Err(Error::invalid("/kind", "must be \"group\" or \"team\""));
    }
    let name = check_name(&req.name, "/name")?;
    let node = state
        .store
        .create_node(
            &admin.actor,
            &admin.org_id,
            &id,
            req.parent_id.as_deref(),
            &req.kind,
            &name,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(node)))
}

/// The org's node tree, from its root.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/nodes", tag = "nodes", params(("org" = String, Path)),
    responses((status = 200, body = TreeNode)))]
pub async fn tree(State(state): State<AppState>, admin: OrgAdmin) -> Result<Json<TreeNode>> {
    Ok(Json(state.store.node_tree(&admin.org_id).await?))
}

/// Get one node.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/nodes/{node}", tag = "nodes",
    params(("org" = String, Path), ("node" = String, Path)), responses((status = 200, body = Node), (status = 404, body = switchyard_common::problem::Problem)))]
pub async fn get_node(State(state): State<AppState>, reader: NodeReader) -> Result<Json<Node>> {
    state
        .store
        .get_node(&reader.org_id, &reader.node_id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("node {}", reader.node_id)))
}

/// Rename or move a node.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/nodes/{node}", tag = "nodes",
    params(("org" = String, Path), ("node" = String, Path)), request_body = UpdateNode,
    responses((status = 200, body = Node), (status = 422, description = "Unknown parent or a cycle", body = switchyard_common::problem::Problem)))]
pub async fn update_node(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateNode>,
) -> Result<Json<Node>> {
    let name = req
        .name
        .as_deref()
        .map(|n| check_name(n, "/name"))
        .transpose()?;
    let node = state
        .store
        .update_node(
            &admin.actor,
            &admin.org_id,
            &node,
            NodePatch {
                name,
                parent_id: req.parent_id,
            },
        )
        .await?;
    Ok(Json(node))
}

/// Nodes that were deleted or deprovisioned, each with its whole layer history.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/archived-nodes", tag = "nodes", params(("org" = String, Path)),
    responses((status = 200, body = Vec<ArchivedNode>)))]
pub async fn archived(
    State(state): State<AppState>,
    admin: OrgAdmin,
) -> Result<Json<Vec<ArchivedNode>>> {
    Ok(Json(state.store.archived_nodes(&admin.org_id).await?))
}

/// Delete a node without children: it is archived with its layer history, then its config,
/// routing and tokens go.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/nodes/{node}", tag = "nodes",
    params(("org" = String, Path), ("node" = String, Path)),
    responses((status = 204), (status = 409, description = "The node has children", body = switchyard_common::problem::Problem)))]
pub async fn delete_node(
    State(state): State<AppState>,
    admin: OrgAdmin,
    Path((_, node)): Path<(String, String)>,
) -> Result<StatusCode> {
    state
        .store
        .delete_node(&admin.actor, &admin.org_id, &node)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
