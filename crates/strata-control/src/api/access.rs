//! The API of identities: API tokens (admins), the audit log (operators), a node's
//! credential (the join token's one use) and `whoami`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use strata_core::api::ErrorBody;
use strata_core::auth::{
    AuditList, CreateToken, CreatedToken, NodeCredential, Principal, Role, TokenInfo,
};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, Plane};
use crate::guard::{AuditNote, Caller};
use crate::ControlError;

/// A node's credential, which it presents from then on: with the join token for a node this
/// server has not heard from within the down threshold (a new node, or one whose agent lost
/// its data directory), or with the node's own credential. A live node's name cannot be
/// taken with the join token.
#[utoipa::path(post, path = "/v1/nodes/{name}/credential",
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = NodeCredential), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn node_credential(
    caller: Caller,
    State(plane): Plane,
    Path(name): Path<String>,
) -> Result<Json<NodeCredential>, ControlError> {
    if !crate::plane::valid_name(&name) {
        return Err(ControlError::bad_request(
            format!("node name `{name}` is not valid"),
            Some("use lowercase letters, digits and `-` (--name)".to_string()),
        ));
    }
    if caller.principal == Principal::Bootstrap && plane.heartbeats().heard_from_recently(&name) {
        let at = match strata_core::NodeName::new(name.clone()) {
            Ok(node) => plane
                .nodes()
                .await?
                .into_iter()
                .find(|n| n.name == node)
                .map(|n| format!(" at {}", n.agent_url))
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        return Err(ControlError::Conflict {
            message: format!("node `{name}` is alive{at}; the join token cannot take its name"),
            hint: Some(
                "start the agent with its own data directory (it keeps the node's credential), or give this node another --name; a node whose agent is gone can join again once it is down"
                    .to_string(),
            ),
        });
    }
    Ok(Json(NodeCredential {
        credential: plane.credentials().node_credential(&name),
    }))
}

/// Every API token (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", responses((status = 200, body = [TokenInfo]), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(State(plane): Plane) -> Result<Json<Vec<TokenInfo>>, ControlError> {
    Ok(Json(plane.credentials().tokens().await?))
}

/// Makes an API token. The answer holds the token, shown this once; only its hash is kept.
#[utoipa::path(post, path = "/v1/tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_token(
    caller: Caller,
    State(plane): Plane,
    ApiJson(request): ApiJson<CreateToken>,
) -> Result<Response, ControlError> {
    let created = plane
        .credentials()
        .create_token(&request, &caller.name())
        .await?;
    let note = format!(
        "token={} role={} envs={}",
        created.info.name, created.info.role, created.info.envs
    );
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}

/// Revokes a token: its next request, on any server, is refused.
#[utoipa::path(delete, path = "/v1/tokens/{name}",
    params(("name" = String, Path, description = "token name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(plane): Plane,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    plane.credentials().revoke(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditParams {
    /// Only calls about this environment.
    pub env: Option<String>,
    /// Only calls by this caller (a token's name, `node:NAME`, ...).
    pub who: Option<String>,
    /// Only calls at or after this time (milliseconds since the epoch).
    pub since: Option<u64>,
    /// The newest this many (default 100, at most 10,000).
    pub limit: Option<usize>,
}

/// The audit log, oldest first: every state-changing call and every refused one.
#[utoipa::path(get, path = "/v1/audit", params(AuditParams),
    responses((status = 200, body = AuditList), (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    State(plane): Plane,
    Query(params): Query<AuditParams>,
) -> Result<Json<AuditList>, ControlError> {
    let records = crate::audit::read(
        plane.store(),
        &crate::audit::AuditQuery {
            env: params.env,
            who: params.who,
            since: params.since.unwrap_or(0),
            limit: params.limit.unwrap_or(100).min(10_000),
        },
    )
    .await?;
    Ok(Json(AuditList { records }))
}

/// Who the caller is, as the server sees its credential.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// The caller's name (a token's name, `node:NAME`, `server:ID`).
    pub name: String,
    /// `token`, `node` or `server`.
    pub kind: String,
    pub role: Option<Role>,
    /// The environments it acts in (`None`: all).
    pub envs: Option<Vec<String>>,
}

/// Who the caller is.
#[utoipa::path(get, path = "/v1/whoami", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    let (kind, role, envs) = match &caller.principal {
        Principal::User { role, envs, .. } => (
            "token",
            Some(*role),
            match envs {
                strata_core::auth::EnvScope::All => None,
                strata_core::auth::EnvScope::Only(envs) => Some(envs.iter().cloned().collect()),
            },
        ),
        Principal::Node { .. } => ("node", None, None),
        Principal::Server { .. } => ("server", None, None),
        Principal::Bootstrap | Principal::Anonymous => ("none", None, None),
    };
    Json(WhoAmI {
        name: caller.name(),
        kind: kind.into(),
        role,
        envs,
    })
}

/// A backup of the whole state, streamed as JSON lines: every key as of one store revision
/// (instances, nodes and other runtime facts left out), then every artifact, then an end line
/// with the counts and a SHA-256 of all before it. Secrets are sealed with the key given, or
/// left out. `strata store export` calls this and verifies what it gets.
#[utoipa::path(post, path = "/v1/backup", request_body = crate::backup::BackupRequest,
    responses((status = 200, content_type = "application/x-ndjson", body = String),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn backup(
    State(plane): Plane,
    ApiJson(request): ApiJson<crate::backup::BackupRequest>,
) -> Result<Response, ControlError> {
    let sealed = request.seal.is_some();
    let chunks = plane.backup(request).await?;
    let mut response = axum::response::Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(chunks),
        ))
        .map_err(|error| ControlError::Internal(error.to_string()))?;
    response.extensions_mut().insert(AuditNote(format!(
        "secrets={}",
        if sealed { "sealed" } else { "left out" }
    )));
    Ok(response)
}
