//! The orchestrator's OpenAPI document.

use utoipa::OpenApi;

use crate::http::*;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard orchestrator",
        description = "Webhook front door, integrations, the events API and outbound subscriptions. Webhook endpoints: POST /webhooks/slack/{events,commands,interactions}, /webhooks/github, /webhooks/{source}/{integration_id}; each verifies its sender's signature."
    ),
    paths(
        healthz,
        readyz,
        metrics,
        integrations::create,
        integrations::list,
        integrations::get_one,
        integrations::update,
        integrations::remove,
        integrations::add_secret,
        integrations::retire_secret,
        integrations::create_platform,
        integrations::list_platform,
        integrations::add_platform_secret,
        integrations::retire_platform_secret,
        events::list,
        events::list_all,
        events::get_one,
        events::replay_one,
        events::bulk_replay,
        events::bulk_replay_all,
        events::purge,
        subscriptions::create,
        subscriptions::list,
        subscriptions::get_one,
        subscriptions::update,
        subscriptions::remove,
        subscriptions::rotate_secret,
        incidents::list,
        incidents::get_one,
        incidents::resolve,
        incidents::reopen,
        incidents::merge,
        deliveries::attempts,
        deliveries::resend,
        deliveries::recover,
        provisioning::provision,
        provisioning::list,
        provisioning::get_one,
        provisioning::deprovision,
        provisioning::run_pipeline,
        internal::team_events,
        internal::joined_signals,
    )
)]
pub struct ApiDoc;

pub fn json() -> String {
    switchyard_common::openapi::finish(
        &ApiDoc::openapi(),
        &switchyard_common::openapi::Contract { service_paths: &[] },
    )
}
