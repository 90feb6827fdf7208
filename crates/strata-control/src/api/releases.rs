//! Change routes: deploys and their previews (deployers; an admin for a protected
//! environment), a service's release history (readers of the environment), rollback to one
//! of its releases, promotion of another environment's release (deployers of the
//! environment, who must also read the one promoted from), and environments' protection
//! (admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use strata_core::api::{
    DeployPreview, DeployRequest, DeployResponse, ErrorBody, PromoteRequest, Promoted,
    ProtectionRequest, RollbackRequest, RolledBack, RolloutActionRequest, RolloutStatus,
};
use strata_core::auth::{authorize, Action, Decision};
use strata_core::{EnvName, Environment, Release, Rollout, ServiceName};

use crate::rollouts::RolloutAction;

use super::{ApiJson, ApiPath, Plane};
use crate::guard::{AuditNote, Caller};
use crate::ControlError;

/// Deploys services: creates a release for every changed one and rolls it out.
#[utoipa::path(post, path = "/v1/envs/{env}/deploy", request_body = DeployRequest,
    params(("env" = String, Path, description = "environment")),
    responses((status = 200, body = DeployResponse), (status = 400, body = ErrorBody)))]
pub async fn deploy(
    caller: Caller,
    State(plane): Plane,
    ApiPath(env): ApiPath<EnvName>,
    ApiJson(request): ApiJson<DeployRequest>,
) -> Result<Response, ControlError> {
    protected_unless_admin(&plane, &caller, &env, "deploy to").await?;
    let deployed = plane.deploy(&env, request, &caller.actor()).await?;
    let note = deployed
        .services
        .iter()
        .map(|s| format!("{}#{} x{}", s.name, s.release, s.replicas))
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = Json(deployed).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}

/// A protected environment changes by promotion: deploying to it directly, or deleting a
/// service of it, needs an admin.
async fn protected_unless_admin(
    plane: &crate::ControlPlane,
    caller: &Caller,
    env: &EnvName,
    what: &str,
) -> Result<(), ControlError> {
    if plane.env_protected(env).await?
        && authorize(&caller.principal, &Action::ProtectEnv, Some(env)) != Decision::Allow
    {
        return Err(ControlError::Forbidden {
            message: format!(
                "environment {env} is protected: only promotion changes it (an admin may {what} it)"
            ),
            hint: format!(
                "promote a tested release (`strata promote SERVICE --from ENV --to {env}`), or ask an admin"
            ),
        });
    }
    Ok(())
}

/// Deletes a service (its instances are stopped; its releases stay, as its history).
#[utoipa::path(delete, path = "/v1/envs/{env}/services/{service}",
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_service(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
) -> Result<StatusCode, ControlError> {
    protected_unless_admin(&plane, &caller, &env, "delete a service of").await?;
    plane
        .delete_service(&env, &service, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Protects an environment (only promotion changes it; a direct deploy needs an admin) or
/// opens it again (admins).
#[utoipa::path(put, path = "/v1/envs/{env}/protection", request_body = ProtectionRequest,
    params(("env" = String, Path, description = "environment")),
    responses((status = 200, body = Environment), (status = 403, body = ErrorBody)))]
pub async fn set_env_protection(
    caller: Caller,
    State(plane): Plane,
    ApiPath(env): ApiPath<EnvName>,
    ApiJson(request): ApiJson<ProtectionRequest>,
) -> Result<Json<Environment>, ControlError> {
    Ok(Json(
        plane
            .set_env_protection(&env, request.protected, &caller.actor())
            .await?,
    ))
}

/// A service's releases, oldest first.
#[utoipa::path(get, path = "/v1/envs/{env}/services/{service}/releases",
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 200, body = [Release]), (status = 404, body = ErrorBody)))]
pub async fn list_releases(
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
) -> Result<Json<Vec<Release>>, ControlError> {
    Ok(Json(plane.releases(&env, &service).await?))
}

/// Rolls a service back to one of its releases as it was (default: the newest that served
/// in full before the one it runs), rolled out as any release; refused with nothing changed
/// when that release, its artifact, configuration or a secret's version is gone.
#[utoipa::path(post, path = "/v1/envs/{env}/services/{service}/rollback",
    request_body = RollbackRequest,
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 200, body = RolledBack), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rollback_service(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
    ApiJson(request): ApiJson<RollbackRequest>,
) -> Result<Response, ControlError> {
    let rolled = plane
        .rollback(&env, &service, &request, &caller.actor())
        .await?;
    let note = format!("{service} #{} -> #{}", rolled.from, rolled.to);
    let mut response = Json(rolled).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}

/// A service's progressive rollout (canary, blue-green): going on, or the last one's
/// outcome, with its new release's instances and each release's traffic since its share.
#[utoipa::path(get, path = "/v1/envs/{env}/services/{service}/rollout",
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody)))]
pub async fn rollout_status(
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
) -> Result<Json<RolloutStatus>, ControlError> {
    Ok(Json(plane.rollout_status(&env, &service).await?))
}

/// Pauses (holds the step; a failed analysis still rolls back), resumes, or aborts (the new
/// release out, the stable one alone) a service's rollout.
#[utoipa::path(post, path = "/v1/envs/{env}/services/{service}/rollout/{action}",
    request_body = RolloutActionRequest,
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service"),
        ("action" = String, Path, description = "pause, resume or abort")),
    responses((status = 200, body = Rollout), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn steer_rollout(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service, action)): ApiPath<(EnvName, ServiceName, String)>,
    ApiJson(request): ApiJson<RolloutActionRequest>,
) -> Result<Response, ControlError> {
    let Some(steer) = RolloutAction::parse(&action) else {
        return Err(ControlError::not_found(
            format!("rollout action `{action}`"),
            Some("the actions are pause, resume and abort".to_string()),
        ));
    };
    let reason = request.reason.as_deref().map(str::trim).unwrap_or("");
    if reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(ControlError::bad_request(
            "the reason is over 200 characters or holds control characters",
            Some("say why in one line".to_string()),
        ));
    }
    let rollout = plane
        .steer_rollout(&env, &service, steer, Some(reason), &caller.actor())
        .await?;
    let note = format!("{service} {action} #{}", rollout.release);
    let mut response = Json(rollout).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}

/// What a deploy would change, service by service, with nothing written.
#[utoipa::path(post, path = "/v1/envs/{env}/deploy/preview", request_body = DeployRequest,
    params(("env" = String, Path, description = "environment")),
    responses((status = 200, body = DeployPreview), (status = 400, body = ErrorBody)))]
pub async fn preview_deploy(
    State(plane): Plane,
    ApiPath(env): ApiPath<EnvName>,
    ApiJson(request): ApiJson<DeployRequest>,
) -> Result<Json<DeployPreview>, ControlError> {
    Ok(Json(plane.preview(&env, &request).await?))
}

/// Promotes a release of another environment into this one: its artifact and spec as they
/// were tested, this environment's configuration, secrets and scale. Refused, unless forced,
/// when it does not serve in full there, soaked too little or missed its SLO.
#[utoipa::path(post, path = "/v1/envs/{env}/services/{service}/promote",
    request_body = PromoteRequest,
    params(("env" = String, Path, description = "environment promoted into"), ("service" = String, Path, description = "service")),
    responses((status = 200, body = Promoted), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn promote_service(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
    ApiJson(request): ApiJson<PromoteRequest>,
) -> Result<Response, ControlError> {
    // The gate let the caller deploy to `env`; it must also see what it promotes.
    let source = request.from.as_str();
    if let Decision::Forbidden { reason } | Decision::Unauthenticated { hint: reason } =
        authorize(&caller.principal, &Action::Read, Some(source))
    {
        return Err(ControlError::Forbidden {
            message: format!("cannot promote from {source}: {reason}"),
            hint: format!("ask for a token that may read {source}"),
        });
    }
    let promoted = plane
        .promote(&env, &service, &request, &caller.actor())
        .await?;
    let note = format!(
        "{service} {}#{} -> {env}#{}{}",
        promoted.from.env,
        promoted.from.release,
        promoted.release,
        if request.force { " (forced)" } else { "" }
    );
    let mut response = Json(promoted).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}
