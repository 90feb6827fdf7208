//! The OpenAPI document served at `/openapi.json`, generated from the handlers and the wire
//! types themselves (utoipa), so it cannot drift from the code.

use utoipa::OpenApi;

use crate::api;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata control plane API",
        description = "Environments, services, releases, instances, nodes and events of a Strata platform."
    ),
    paths(
        api::list_envs,
        api::set_env_policy,
        api::set_env_quota,
        api::deploy,
        api::list_services,
        api::list_all_services,
        api::get_service,
        api::delete_service,
        api::scale_service,
        api::wake_service,
        api::node_certificate,
        api::list_releases,
        api::rollback_service,
        api::preview_deploy,
        api::promote_service,
        api::rollout_status,
        api::steer_rollout,
        api::set_env_protection,
        api::service_logs,
        api::list_instances,
        api::report_status,
        api::list_nodes,
        api::register_node,
        api::heartbeat,
        api::node_event,
        api::node_metrics,
        api::node_logs,
        api::service_metrics,
        api::service_slo,
        api::drain_node,
        api::undrain_node,
        api::remove_node,
        api::assignments,
        api::report_statuses,
        api::routes,
        api::leader,
        api::list_events,
        api::follow_events,
        api::watch,
        api::put_blob,
        api::get_blob,
        api::head_blob,
        api::node_credential,
        api::list_tokens,
        api::create_token,
        api::revoke_token,
        api::list_audit,
        api::leave_node,
        api::backup,
        api::whoami,
        api::cluster_ca,
        api::metrics,
        api::set_secret,
        api::list_secrets,
        api::remove_secret,
        api::rotate_secrets_key,
        api::secrets_keys,
        api::put_node_archive,
        api::list_archives,
        api::get_archive,
        api::decommission_node,
        api::decommission_status,
        api::list_decommissions,
        api::decommission_progress,
        api::node_history,
        api::quarantine_instance,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Every route but `/healthz` and `/openapi.json` takes `Authorization: Bearer TOKEN`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
