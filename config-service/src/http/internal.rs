//! Internal endpoints other services use (service JWT only): token introspection, a node's
//! effective config, one agent run, the routing version, and the run events waiting for the
//! orchestrator to deliver them.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use switchyard_api::auth::{IntrospectRequest, Introspection};
use switchyard_api::config::TeamPipelines;
use switchyard_api::outbound::{OutboxAck, OutboxBatch};
use switchyard_api::routing::RoutingVersion;
use switchyard_api::runs::{Budget, RunContext, TokenBudgets};
use switchyard_common::auth::hash_token;

use super::extract::{ApiJson, ApiQuery, Service};
use crate::domain::secrets::references;
use crate::error::Result;
use crate::state::AppState;
use crate::store::{AgentRun, EffectiveConfig};

/// Which services call which internal endpoint: anything else answers 403.
const TOKEN_READERS: &[&str] = &["orchestrator", "agent-runner"];
const CONFIG_READERS: &[&str] = &["orchestrator", "agent-runner"];
const RUN_READERS: &[&str] = &["agent-runner"];
const ROUTING_READERS: &[&str] = &["orchestrator"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/internal/auth/introspect", post(introspect))
        .route(
            "/api/v1/internal/orgs/{org}/nodes/{node}/config",
            get(node_config),
        )
        .route("/api/v1/internal/agent-runs/{id}", get(get_run))
        .route(
            "/api/v1/internal/orgs/{org}/nodes/{node}/run-context",
            get(run_context),
        )
        .route("/api/v1/internal/routing/version", get(routing_version))
        .route("/api/v1/internal/pipelines", get(pipelines))
        .route("/api/v1/internal/outbox", get(outbox))
        .route("/api/v1/internal/outbox/ack", post(ack_outbox))
}

/// Resolve an org admin or team token (service JWT). Unknown, revoked and expired tokens answer
/// 401.
#[utoipa::path(post, path = "/api/v1/internal/auth/introspect", tag = "internal", request_body = IntrospectRequest,
    responses((status = 200, body = Introspection), (status = 401, body = switchyard_common::problem::Problem)), security(("service_jwt" = [])))]
pub async fn introspect(
    State(state): State<AppState>,
    s: Service,
    ApiJson(req): ApiJson<IntrospectRequest>,
) -> Result<Json<Introspection>> {
    s.require(TOKEN_READERS)?;
    let auth = state.store.authenticate(&hash_token(&req.token)).await?;
    Ok(Json(Introspection {
        kind: auth.kind,
        org_id: auth.org_id,
        node_id: auth.node_id,
        token_id: auth.id,
        subject: auth.subject,
    }))
}

/// A node's effective config, unredacted (service JWT): what the agent-runner runs with.
#[utoipa::path(get, path = "/api/v1/internal/orgs/{org}/nodes/{node}/config", tag = "internal",
    params(("org" = String, Path), ("node" = String, Path)),
    responses((status = 200, body = EffectiveConfig), (status = 404, body = switchyard_common::problem::Problem)), security(("service_jwt" = [])))]
pub async fn node_config(
    State(state): State<AppState>,
    s: Service,
    Path((org, node)): Path<(String, String)>,
) -> Result<Json<EffectiveConfig>> {
    s.require(CONFIG_READERS)?;
    Ok(Json(
        state.store.effective_config(&org, &node, false).await?,
    ))
}

/// Everything a run starts with, in one read (agent-runner only): the team's effective config
/// unredacted, the day's token budgets (the team's effective `quotas.tokens_per_day` and the org
/// root's, with the tokens recorded since midnight UTC, read only where there is a limit), and
/// the value of every org secret the config refers to.
#[utoipa::path(get, path = "/api/v1/internal/orgs/{org}/nodes/{node}/run-context", tag = "internal",
    params(("org" = String, Path), ("node" = String, Path)),
    responses((status = 200, body = RunContext), (status = 403, body = switchyard_common::problem::Problem), (status = 404, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn run_context(
    State(state): State<AppState>,
    s: Service,
    Path((org, node)): Path<(String, String)>,
) -> Result<Json<RunContext>> {
    s.require(RUN_READERS)?;
    let limit = |c: &serde_json::Value| {
        c.pointer("/quotas/tokens_per_day")
            .and_then(serde_json::Value::as_i64)
    };
    let team = state.store.effective_config(&org, &node, false).await?;
    // The org root's own value: a team's override does not lift the org's budget.
    let root_limit = team
        .chain
        .iter()
        .find(|l| l.node_id == org)
        .and_then(|l| limit(&l.layer));
    let midnight = {
        let now = switchyard_common::time::now_ms();
        now - now.rem_euclid(86_400_000)
    };
    let used = async |l: Option<i64>, team: Option<&str>| -> Result<Budget> {
        Ok(Budget {
            limit: l,
            used_today: match l {
                Some(_) => state.store.tokens_used(&org, team, midnight).await?,
                None => 0,
            },
        })
    };
    let budgets = TokenBudgets {
        team: used(limit(&team.config), Some(&node)).await?,
        org: used(root_limit, None).await?,
    };
    let names = references(&team.config);
    let secrets = state
        .store
        .secret_values(&state.keyring, &org, &names)
        .await?;
    if !names.is_empty() {
        tracing::info!(org = %org, node = %node, secrets = ?names, service = %s.name, "secrets read for a run");
    }
    Ok(Json(RunContext {
        config: team.config,
        etag: team.etag,
        budgets,
        secrets,
    }))
}

/// One agent run by id (service JWT).
#[utoipa::path(get, path = "/api/v1/internal/agent-runs/{id}", tag = "internal", params(("id" = String, Path)),
    responses((status = 200, body = AgentRun), (status = 404, body = switchyard_common::problem::Problem)), security(("service_jwt" = [])))]
pub async fn get_run(
    State(state): State<AppState>,
    s: Service,
    Path(id): Path<String>,
) -> Result<Json<AgentRun>> {
    s.require(RUN_READERS)?;
    Ok(Json(state.store.get_run(None, &id).await?))
}

/// The routing version, for invalidating cached lookups (service JWT).
#[utoipa::path(get, path = "/api/v1/internal/routing/version", tag = "internal",
    responses((status = 200, body = RoutingVersion)), security(("service_jwt" = [])))]
pub async fn routing_version(
    State(state): State<AppState>,
    s: Service,
) -> Result<Json<RoutingVersion>> {
    s.require(ROUTING_READERS)?;
    Ok(Json(RoutingVersion {
        version: state.store.routing_version().await?,
    }))
}

/// Every team with its effective pipelines (service JWT): the reconciler's desired state.
#[utoipa::path(get, path = "/api/v1/internal/pipelines", tag = "internal",
    responses((status = 200, body = Vec<TeamPipelines>)), security(("service_jwt" = [])))]
pub async fn pipelines(
    State(state): State<AppState>,
    s: Service,
) -> Result<Json<Vec<TeamPipelines>>> {
    s.require(ROUTING_READERS)?;
    Ok(Json(
        state
            .store
            .team_pipelines()
            .await?
            .into_iter()
            .map(|(org_id, team_id, pipelines)| TeamPipelines {
                org_id,
                team_id,
                pipelines,
            })
            .collect(),
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxParams {
    /// 1 to 500, default 100.
    #[serde(default, deserialize_with = "switchyard_common::http::page_limit")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Run events waiting to be delivered, oldest first (service JWT of the orchestrator, which
/// takes them over and acknowledges them).
#[utoipa::path(get, path = "/api/v1/internal/outbox", tag = "internal", params(OutboxParams),
    responses((status = 200, body = OutboxBatch), (status = 403, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn outbox(
    State(state): State<AppState>,
    s: Service,
    ApiQuery(p): ApiQuery<OutboxParams>,
) -> Result<Json<OutboxBatch>> {
    s.require(ROUTING_READERS)?;
    let limit = i64::from(p.limit.unwrap_or(100).clamp(1, 500));
    Ok(Json(OutboxBatch {
        events: state.store.pending_run_events(limit).await?,
    }))
}

/// Drop run events the orchestrator has stored in its own outbox (service JWT of the orchestrator).
#[utoipa::path(post, path = "/api/v1/internal/outbox/ack", tag = "internal", request_body = OutboxAck,
    responses((status = 204), (status = 403, body = switchyard_common::problem::Problem),
        (status = 422, body = switchyard_common::problem::Problem)),
    security(("service_jwt" = [])))]
pub async fn ack_outbox(
    State(state): State<AppState>,
    s: Service,
    ApiJson(req): ApiJson<OutboxAck>,
) -> Result<axum::http::StatusCode> {
    s.require(ROUTING_READERS)?;
    if req.ids.len() > 500 {
        return Err(crate::error::Error::invalid(
            "/ids",
            "at most 500 ids at once",
        ));
    }
    state.store.ack_run_events(&req.ids).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
