//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchyard config-service", description = "Organisations, team tree, layered configuration, tokens, routing, audit and agent runs."),
    paths(
        health::healthz, health::readyz, health::metrics,
        me::me,
        orgs::create_org, orgs::list_orgs, orgs::get_org,
        nodes::create_node, nodes::tree, nodes::get_node, nodes::update_node, nodes::delete_node, nodes::archived,
        config::effective, config::my_config, config::get_layer, config::put_layer, config::history, config::rollback,
        approvals::get_policy, approvals::put_policy, approvals::list_changes, approvals::get_change, approvals::approve, approvals::reject,
        tokens::create_admin_token, tokens::list_admin_tokens, tokens::revoke_admin_token,
        tokens::create_team_token, tokens::list_team_tokens, tokens::revoke_team_token,
        secrets::put_secret, secrets::list_secrets, secrets::delete_secret, secrets::secret_value,
        routing::list_routes, routing::lookup,
        audit::list, audit::verify, audit::list_platform, audit::verify_platform, audit::append,
        agent_runs::create, agent_runs::update, agent_runs::batch, agent_runs::renew_lease, agent_runs::recover, agent_runs::list, agent_runs::get_one, agent_runs::cancel,
        internal::introspect, internal::node_config, internal::run_context, internal::get_run, internal::routing_version, internal::pipelines, internal::outbox, internal::ack_outbox,
    ),
    modifiers(&Security),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Platform admin, org admin or team token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "service_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "EdDSA service JWT signed by the calling service (kid = sub), aud = config-service, at most 5 minutes",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as committed under `openapi/config-service.json`.
pub fn json() -> String {
    switchyard_common::openapi::finish(
        &ApiDoc::openapi(),
        &switchyard_common::openapi::Contract { service_paths: &[] },
    )
}
