//! Secrets routes: set and remove a service's secrets (deployers of the environment), list
//! their names and versions (never a value: no route returns one), rotate the key-encryption
//! key (admins), and copy the key-encryption keys between servers (servers only).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use strata_core::api::ErrorBody;
use strata_core::secret::{KeyRotated, SecretInfo, SecretSet, SetSecretRequest};
use strata_core::{EnvName, ServiceName};

use super::{ApiPath, Plane};
use crate::guard::{AuditNote, Caller};
use crate::ControlError;

/// Sets a new version of a service's secret (the value in the body, never echoed: a body
/// that does not parse is refused without quoting it). When the service runs with the
/// secret, a new release rolls the version out. An event (name and version only).
#[utoipa::path(put, path = "/v1/envs/{env}/services/{service}/secrets/{name}",
    request_body = SetSecretRequest,
    params(("env" = String, Path, description = "environment"),
        ("service" = String, Path, description = "service"),
        ("name" = String, Path, description = "secret")),
    responses((status = 200, body = SecretSet), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_secret(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service, name)): ApiPath<(EnvName, ServiceName, String)>,
    body: Bytes,
) -> Result<Response, ControlError> {
    // Parsed here rather than by the JSON extractor, whose errors may quote the body.
    let request: SetSecretRequest = serde_json::from_slice(&body).map_err(|_| {
        ControlError::bad_request(
            "the body is not a secret: send JSON {\"value\": \"...\"}",
            Some("`strata secret set SERVICE NAME` reads the value from stdin".to_string()),
        )
    })?;
    let set = plane
        .set_secret(&env, &service, &name, &request.value, &caller.actor())
        .await?;
    let note = format!("{service} {name} v{}", set.version);
    let mut response = Json(set).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}

/// A service's secrets: names, versions, who set each and when. Never a value.
#[utoipa::path(get, path = "/v1/envs/{env}/services/{service}/secrets",
    params(("env" = String, Path, description = "environment"),
        ("service" = String, Path, description = "service")),
    responses((status = 200, body = [SecretInfo]), (status = 403, body = ErrorBody)))]
pub async fn list_secrets(
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
) -> Result<Json<Vec<SecretInfo>>, ControlError> {
    Ok(Json(plane.list_secrets(&env, &service).await?))
}

/// Removes a service's secret (refused while its desired release runs with it). An event.
#[utoipa::path(delete, path = "/v1/envs/{env}/services/{service}/secrets/{name}",
    params(("env" = String, Path, description = "environment"),
        ("service" = String, Path, description = "service"),
        ("name" = String, Path, description = "secret")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_secret(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service, name)): ApiPath<(EnvName, ServiceName, String)>,
) -> Result<StatusCode, ControlError> {
    plane
        .remove_secret(&env, &service, &name, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Seals the secrets' data key under a fresh key-encryption key, added to this server's key
/// file (other servers copy it). No value is re-sealed; nothing restarts. An event.
#[utoipa::path(post, path = "/v1/secrets/rotate-key",
    responses((status = 200, body = KeyRotated), (status = 403, body = ErrorBody)))]
pub async fn rotate_secrets_key(
    caller: Caller,
    State(plane): Plane,
) -> Result<Response, ControlError> {
    let rotated = plane.rotate_secrets_key(&caller.actor()).await?;
    let note = format!("{} -> {}", rotated.previous, rotated.kek);
    let mut response = Json(rotated).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}

/// This server's key-encryption keys, for another server of the cluster that lacks one
/// (servers only: no person's token, whatever its role, may read them).
#[utoipa::path(get, path = "/v1/secrets/keys",
    responses((status = 200, body = BTreeMap<String, String>), (status = 403, body = ErrorBody)))]
pub async fn secrets_keys(State(plane): Plane) -> Json<BTreeMap<String, String>> {
    Json(plane.secrets_keys())
}
