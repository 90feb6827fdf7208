//! The HTTP/JSON API. Handlers parse and validate the request, call [`ControlPlane`], and map
//! its errors to a status and a JSON [`ErrorBody`]. Nothing here decides anything.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use strata_core::api::{
    EnvPolicyRequest, ErrorBody, RouteTable, ScaleRequest, ServiceMetrics, ServiceStatus,
    SloReport, WatchChange,
};
use strata_core::{EnvName, Environment, InstanceView, Service, ServiceName};
use strata_store::{StoreError, WatchEvent};
use utoipa::{IntoParams, OpenApi};

use crate::guard::{AuditNote, Caller};
use crate::{ControlError, ControlPlane};

mod access;
mod archives;
mod decommissions;
mod events;
pub mod forward;
mod nodes;
mod releases;
mod secrets;
pub use access::*;
pub use archives::*;
pub use decommissions::*;
pub use events::*;
pub use nodes::*;
pub use releases::*;
pub use secrets::*;

type Plane = State<Arc<ControlPlane>>;

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            ControlError::NotFound { .. } => StatusCode::NOT_FOUND,
            ControlError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ControlError::Conflict { .. } => StatusCode::CONFLICT,
            ControlError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ControlError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ControlError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ControlError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ControlError::Store(StoreError::Unavailable(_) | StoreError::Closed)
            | ControlError::NotLeader => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ControlError::Corrupt { .. } | ControlError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let body = ErrorBody {
            error: self.code().to_string(),
            message: self.to_string(),
            hint: self.hint(),
        };
        (status, Json(body)).into_response()
    }
}

/// Turns axum's own rejections (bad JSON, wrong content type) into our error body.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ControlError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ControlError::TooLarge {
                    message: format!(
                        "the request body is over the API's limit of {} MiB",
                        MAX_JSON_BODY >> 20
                    ),
                    hint: "deploy fewer services at once; artifacts go through PUT /v1/blobs"
                        .to_string(),
                })
            }
            Err(rejection) => Err(ControlError::bad_request(
                format!("request body: {}", rejection.body_text()),
                Some("send JSON as described at /openapi.json".to_string()),
            )),
        }
    }
}

/// Path parameters, each checked where it enters: a name that is not valid for its kind
/// (an environment, a service, a node, an instance) is a 400 with the rule, in our error body.
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ControlError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ControlError::bad_request(
                format!("request path: {}", rejection.body_text()),
                Some("the paths are listed at /openapi.json".to_string()),
            )),
        }
    }
}

/// The largest JSON request body the API reads (a deploy of many services' specs).
pub const MAX_JSON_BODY: usize = 4 * 1024 * 1024;

/// The API router.
pub fn router(plane: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/ca", get(cluster_ca))
        .route("/metrics", get(metrics))
        .route("/v1/envs", get(list_envs))
        .route("/v1/envs/{env}/deploy", post(deploy))
        .route("/v1/envs/{env}/deploy/preview", post(preview_deploy))
        .route("/v1/envs/{env}/policy", put(set_env_policy))
        .route("/v1/envs/{env}/protection", put(set_env_protection))
        .route("/v1/envs/{env}/quota", put(set_env_quota))
        .route("/v1/envs/{env}/services", get(list_services))
        .route(
            "/v1/envs/{env}/services/{service}",
            get(get_service).delete(delete_service),
        )
        .route(
            "/v1/envs/{env}/services/{service}/scale",
            put(scale_service),
        )
        .route("/v1/envs/{env}/services/{service}/wake", post(wake_service))
        .route("/v1/envs/{env}/services/{service}/slo", get(service_slo))
        .route(
            "/v1/envs/{env}/services/{service}/releases",
            get(list_releases),
        )
        .route(
            "/v1/envs/{env}/services/{service}/rollback",
            post(rollback_service),
        )
        .route(
            "/v1/envs/{env}/services/{service}/promote",
            post(promote_service),
        )
        .route(
            "/v1/envs/{env}/services/{service}/rollout",
            get(rollout_status),
        )
        .route(
            "/v1/envs/{env}/services/{service}/rollout/{action}",
            post(steer_rollout),
        )
        .route("/v1/envs/{env}/services/{service}/logs", get(service_logs))
        .route(
            "/v1/envs/{env}/services/{service}/secrets",
            get(list_secrets),
        )
        .route(
            "/v1/envs/{env}/services/{service}/secrets/{name}",
            put(set_secret).delete(remove_secret),
        )
        .route("/v1/nodes/{name}/archive", put(put_node_archive))
        .route(
            "/v1/nodes/{name}/decommission",
            post(decommission_node).get(decommission_status),
        )
        .route(
            "/v1/nodes/{name}/decommission/progress",
            post(decommission_progress),
        )
        .route("/v1/nodes/{name}/history", get(node_history))
        .route("/v1/decommissions", get(list_decommissions))
        .route("/v1/archives", get(list_archives))
        .route("/v1/archives/{id}", get(get_archive))
        .route("/v1/secrets/rotate-key", post(rotate_secrets_key))
        .route("/v1/secrets/keys", get(secrets_keys))
        .route("/v1/services", get(list_all_services))
        .route("/v1/instances", get(list_instances))
        .route("/v1/instances/{id}/status", put(report_status))
        .route("/v1/instances/{id}/quarantine", post(quarantine_instance))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{name}", axum::routing::delete(remove_node))
        .route("/v1/nodes/{name}/register", post(register_node))
        .route("/v1/nodes/{name}/credential", post(node_credential))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{name}", axum::routing::delete(revoke_token))
        .route("/v1/audit", get(list_audit))
        .route("/v1/backup", post(backup))
        .route("/v1/whoami", get(whoami))
        .route("/v1/nodes/{name}/heartbeat", post(heartbeat))
        .route("/v1/nodes/{name}/events", post(node_event))
        .route("/v1/nodes/{name}/metrics", post(node_metrics))
        .route("/v1/nodes/{name}/logs", post(node_logs))
        .route("/v1/nodes/{name}/certificate", post(node_certificate))
        .route(
            "/v1/envs/{env}/services/{service}/metrics",
            get(service_metrics),
        )
        .route("/v1/nodes/{name}/drain", post(drain_node))
        .route("/v1/nodes/{name}/undrain", post(undrain_node))
        .route("/v1/nodes/{name}/leave", post(leave_node))
        .route("/v1/nodes/{name}/assignments", get(assignments))
        .route("/v1/nodes/{name}/status", put(report_statuses))
        .route("/v1/routes", get(routes))
        .route("/v1/leader", get(leader))
        .route("/v1/events", get(list_events))
        .route("/v1/events/follow", get(follow_events))
        .route("/v1/watch", get(watch))
        .route(
            "/v1/blobs/{digest}",
            put(put_blob).get(get_blob).head(head_blob),
        )
        // Every route passes the gate: who is asking, and may they?
        .route_layer(axum::middleware::from_fn_with_state(
            plane.clone(),
            crate::guard::gate,
        ))
        // JSON bodies are small; artifacts stream with their own limit.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY))
        .fallback(|| async {
            ControlError::not_found(
                "no such API endpoint",
                Some("the endpoints are listed at /openapi.json".to_string()),
            )
        })
        .with_state(plane)
}

/// Prometheus' scrape: OpenMetrics text (nodes and instances by state, leadership).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(plane): Plane) -> Result<impl IntoResponse, ControlError> {
    let text = crate::metrics::scrape(&plane).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// The CA of the API's certificate (PEM; public): the cluster CA, or the operator's. A
/// joining node checks its SHA-256 against the fingerprint its join token carries before it
/// trusts this server with anything.
#[utoipa::path(get, path = "/v1/ca", security(()),
    responses((status = 200, content_type = "application/x-pem-file", body = String)))]
pub async fn cluster_ca(State(plane): Plane) -> Result<Response, ControlError> {
    let pem = plane.identity().api_ca_pem().await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        pem,
    )
        .into_response())
}

async fn openapi_json() -> impl IntoResponse {
    Json(crate::openapi::ApiDoc::openapi())
}

/// Lists environments.
#[utoipa::path(get, path = "/v1/envs", responses((status = 200, body = [Environment])))]
pub async fn list_envs(
    caller: Caller,
    State(plane): Plane,
) -> Result<Json<Vec<Environment>>, ControlError> {
    let mut envs = plane.environments().await?;
    envs.retain(|e| caller.principal.sees_env(&e.name));
    Ok(Json(envs))
}

/// Sets an environment's default for calls between its services: `allow` (any service may
/// call any other) or `deny` (only what a service's `[mesh] allow_from` names). An event.
#[utoipa::path(put, path = "/v1/envs/{env}/policy", request_body = EnvPolicyRequest,
    params(("env" = String, Path, description = "environment")),
    responses((status = 200, body = Environment), (status = 400, body = ErrorBody)))]
pub async fn set_env_policy(
    caller: Caller,
    State(plane): Plane,
    ApiPath(env): ApiPath<EnvName>,
    ApiJson(request): ApiJson<EnvPolicyRequest>,
) -> Result<Json<Environment>, ControlError> {
    Ok(Json(
        plane
            .set_env_policy(&env, request.policy, &caller.actor())
            .await?,
    ))
}

/// Sets an environment's quota: the most instances, CPU and memory its services may use
/// together (each limit optional; an autoscaled service counts for its maximum). Checked at
/// every deploy and scale change. An event.
#[utoipa::path(put, path = "/v1/envs/{env}/quota", request_body = strata_core::Quota,
    params(("env" = String, Path, description = "environment")),
    responses((status = 200, body = Environment), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_env_quota(
    caller: Caller,
    State(plane): Plane,
    ApiPath(env): ApiPath<EnvName>,
    ApiJson(quota): ApiJson<strata_core::Quota>,
) -> Result<Json<Environment>, ControlError> {
    Ok(Json(plane.set_quota(&env, quota, &caller.actor()).await?))
}

/// Changes a service's scale by hand: a count (within its autoscaling bounds, if any) and/or
/// the bounds (`min` and `max`; both turn autoscaling on for a fixed service). An event.
#[utoipa::path(put, path = "/v1/envs/{env}/services/{service}/scale", request_body = ScaleRequest,
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 200, body = Service), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn scale_service(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
    ApiJson(request): ApiJson<ScaleRequest>,
) -> Result<Response, ControlError> {
    let scaled = plane
        .scale_by_hand(&env, &service, &request, &caller.actor())
        .await?;
    let note = match &scaled.autoscale {
        Some(bounds) => format!(
            "{service} x{} (autoscaled {}..{})",
            scaled.replicas, bounds.min, bounds.max
        ),
        None => format!("{service} x{}", scaled.replicas),
    };
    let mut response = Json(scaled).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}

/// A request waits for a service at zero instances (nodes' proxies only): if it scales to
/// zero, the leader starts an instance now.
#[utoipa::path(post, path = "/v1/envs/{env}/services/{service}/wake",
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn wake_service(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
    headers: axum::http::HeaderMap,
) -> Result<StatusCode, ControlError> {
    if plane.term().is_none() {
        forward::to_leader(
            &plane,
            reqwest::Method::POST,
            &format!("/v1/envs/{env}/services/{service}/wake"),
            None::<&()>,
            &crate::guard::forwarding_headers(&plane, &caller, &headers),
        )
        .await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    plane.wake(&env, &service).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the services of one environment with their instances.
#[utoipa::path(get, path = "/v1/envs/{env}/services",
    params(("env" = String, Path, description = "environment")),
    responses((status = 200, body = [ServiceStatus])))]
pub async fn list_services(
    State(plane): Plane,
    ApiPath(env): ApiPath<EnvName>,
) -> Result<Json<Vec<ServiceStatus>>, ControlError> {
    Ok(Json(plane.services(Some(&env)).await?))
}

/// Lists the services of every environment.
#[utoipa::path(get, path = "/v1/services", responses((status = 200, body = [ServiceStatus])))]
pub async fn list_all_services(
    caller: Caller,
    State(plane): Plane,
) -> Result<Json<Vec<ServiceStatus>>, ControlError> {
    let mut services = plane.services(None).await?;
    services.retain(|s| caller.principal.sees_env(&s.service.env));
    Ok(Json(services))
}

/// One service: its desired release and instances.
#[utoipa::path(get, path = "/v1/envs/{env}/services/{service}",
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 200, body = ServiceStatus), (status = 404, body = ErrorBody)))]
pub async fn get_service(
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
) -> Result<Json<ServiceStatus>, ControlError> {
    Ok(Json(plane.service_status(&env, &service).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LogParams {
    /// Lines from the end of each instance's log (default 100).
    pub tail: Option<usize>,
    /// Keep streaming new lines.
    #[serde(default)]
    pub follow: bool,
    /// Also the last lines of instances that are gone (replaced, or on a node that died),
    /// as the control plane kept them.
    #[serde(default)]
    pub previous: bool,
}

/// The logs of every instance of a service, each line prefixed with its instance id.
#[utoipa::path(get, path = "/v1/envs/{env}/services/{service}/logs",
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service"), LogParams),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub async fn service_logs(
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
    Query(params): Query<LogParams>,
) -> Result<Response, ControlError> {
    let stream = crate::logs::service_logs(
        plane.clone(),
        &env,
        &service,
        params.tail.unwrap_or(100),
        params.follow,
        params.previous,
    )
    .await?;
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .expect("static response"))
}

/// Every instance with its observed status.
#[utoipa::path(get, path = "/v1/instances", responses((status = 200, body = [InstanceView])))]
pub async fn list_instances(
    caller: Caller,
    State(plane): Plane,
) -> Result<Json<Vec<InstanceView>>, ControlError> {
    let mut views = plane.instance_views().await?;
    views.retain(|v| caller.principal.sees_env(&v.instance.env));
    Ok(Json(views))
}

/// A service's traffic over the last five minutes, per second, over every node (from the
/// leader; a follower asks it).
#[utoipa::path(get, path = "/v1/envs/{env}/services/{service}/metrics",
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 200, body = ServiceMetrics)))]
pub async fn service_metrics(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
    headers: axum::http::HeaderMap,
) -> Result<Json<ServiceMetrics>, ControlError> {
    if plane.term().is_none() {
        let path = format!("/v1/envs/{env}/services/{service}/metrics");
        return Ok(Json(from_leader(&plane, &caller, &headers, &path).await?));
    }
    Ok(Json(plane.traffic().recent(&env, &service)))
}

/// `GET path` answered by the leader (what only it holds: traffic, SLOs), as the caller.
async fn from_leader<T: serde::de::DeserializeOwned>(
    plane: &ControlPlane,
    caller: &Caller,
    headers: &axum::http::HeaderMap,
    path: &str,
) -> Result<T, ControlError> {
    forward::to_leader(
        plane,
        reqwest::Method::GET,
        path,
        None::<&()>,
        &crate::guard::forwarding_headers(plane, caller, headers),
    )
    .await?
    .json()
    .await
    .map_err(|e| ControlError::Internal(format!("the leader answered badly: {e}")))
}

/// How a service did against its SLO over the last hour: success ratio, error budget left,
/// p99 attainment (from the leader; a follower asks it). `null` when it has no SLO.
#[utoipa::path(get, path = "/v1/envs/{env}/services/{service}/slo",
    params(("env" = String, Path, description = "environment"), ("service" = String, Path, description = "service")),
    responses((status = 200, body = Option<SloReport>), (status = 404, body = ErrorBody)))]
pub async fn service_slo(
    caller: Caller,
    State(plane): Plane,
    ApiPath((env, service)): ApiPath<(EnvName, ServiceName)>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Option<SloReport>>, ControlError> {
    if plane.term().is_none() {
        let path = format!("/v1/envs/{env}/services/{service}/slo");
        return Ok(Json(from_leader(&plane, &caller, &headers, &path).await?));
    }
    Ok(Json(plane.slo_report(&env, &service).await?))
}

/// Which server leads (runs the controllers), if any.
#[utoipa::path(get, path = "/v1/leader", responses((status = 200, body = LeaderInfo), (status = 503, body = ErrorBody)))]
pub async fn leader(State(plane): Plane) -> Result<Json<LeaderInfo>, ControlError> {
    let record = crate::leader::current_leader(plane.store())
        .await
        .ok_or(ControlError::NotLeader)?;
    Ok(Json(LeaderInfo {
        server_id: record.server_id,
        api_url: record.api_url,
        this_server: plane.server_id().to_string(),
    }))
}

/// The leader, as `GET /v1/leader` shows it.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LeaderInfo {
    pub server_id: String,
    pub api_url: String,
    /// The id of the server that answered.
    pub this_server: String,
}

/// The ingress routing table.
#[utoipa::path(get, path = "/v1/routes", responses((status = 200, body = RouteTable)))]
pub async fn routes(State(plane): Plane) -> Result<Json<RouteTable>, ControlError> {
    Ok(Json(plane.routes().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct WatchParams {
    /// Key prefix to watch, e.g. `/instances/` (default: everything).
    pub prefix: Option<String>,
    /// Replay changes from this revision (default: only new ones).
    pub from: Option<u64>,
}

/// Server-sent events: one `data:` line of [`WatchChange`] JSON per change, with the revision
/// as the event id.
#[utoipa::path(get, path = "/v1/watch", params(WatchParams),
    responses((status = 200, content_type = "text/event-stream", body = WatchChange)))]
pub async fn watch(
    caller: Caller,
    State(plane): Plane,
    Query(params): Query<WatchParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ControlError> {
    let prefix = params.prefix.unwrap_or_else(|| "/".to_string());
    let slot = plane.watchers().enter(&caller.name())?;
    let changes = plane
        .store()
        .watch(&prefix, params.from.unwrap_or(0))
        .await?;
    // An allow-list: each change (replayed history too) reaches the caller only if its role
    // may read that key. Secrets (the CA key, the join token, token hashes, the credential
    // key) are readable by no one.
    let principal = caller.principal;
    let changes = changes.filter(move |change| {
        let readable = match change {
            Ok(change) => strata_core::auth::may_read_key(&principal, change.key()),
            Err(_) => true,
        };
        futures::future::ready(readable)
    });
    let events = changes.map(move |change| {
        let _held = &slot;
        let event = match change {
            Ok(WatchEvent::Put(kv)) => {
                let change = WatchChange {
                    revision: kv.mod_revision,
                    key: kv.key.clone(),
                    kind: "put".into(),
                    value: serde_json::from_slice(&kv.value).ok(),
                };
                SseEvent::default()
                    .id(kv.mod_revision.to_string())
                    .json_data(change)
                    .expect("change serializes")
            }
            Ok(WatchEvent::Delete { key, revision, .. }) => {
                let change = WatchChange {
                    revision,
                    key,
                    kind: "delete".into(),
                    value: None,
                };
                SseEvent::default()
                    .id(revision.to_string())
                    .json_data(change)
                    .expect("change serializes")
            }
            Err(error) => SseEvent::default().event("error").data(error.to_string()),
        };
        Ok(event)
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

/// Uploads an artifact. The body's sha256 must match the digest in the path.
#[utoipa::path(put, path = "/v1/blobs/{digest}", request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("digest" = String, Path, description = "sha256:<hex>")),
    responses((status = 201), (status = 400, body = ErrorBody)))]
pub async fn put_blob(
    State(plane): Plane,
    Path(digest): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<StatusCode, ControlError> {
    let limit = plane.config().max_artifact_size;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|size| size > limit) {
        return Err(crate::blobs::too_large(limit));
    }
    let stream = body.into_data_stream();
    let size = plane.blobs().put(&digest, stream, limit).await?;
    plane
        .note_blob_held(&digest, size, crate::replicate::BlobKind::Artifact)
        .await?;
    // Acknowledged once a second server holds it too (if there is one), so that losing this
    // server right after does not lose the artifact a release names.
    plane.await_blob_copy(&digest).await?;
    Ok(StatusCode::CREATED)
}

/// Downloads an artifact.
#[utoipa::path(get, path = "/v1/blobs/{digest}",
    params(("digest" = String, Path, description = "sha256:<hex>")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn get_blob(
    caller: Caller,
    State(plane): Plane,
    Path(digest): Path<String>,
) -> Result<Response, ControlError> {
    let path = plane.blobs().path(&digest)?;
    plane.may_serve_blob(&digest, &caller.principal).await?;
    if !plane.blobs().exists(&digest).await? {
        // Uploaded to another server and not copied here yet: fetch it now.
        plane.fetch_blob_from_peers(&digest).await?;
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ControlError::not_found(format!("blob {digest}"), None))?;
    let stream = tokio_util::io::ReaderStream::new(file).map_err(std::io::Error::other);
    Ok(Response::builder()
        .header("content-type", "application/octet-stream")
        .body(Body::from_stream(stream))
        .expect("static response"))
}

/// Whether an artifact can be had: this server holds it, or fetches it now from a server
/// that does. An artifact recorded but held by no server that answers is not there (a
/// client uploads it again).
#[utoipa::path(head, path = "/v1/blobs/{digest}",
    params(("digest" = String, Path, description = "sha256:<hex>")),
    responses((status = 200), (status = 404)))]
pub async fn head_blob(
    caller: Caller,
    State(plane): Plane,
    Path(digest): Path<String>,
) -> Result<StatusCode, ControlError> {
    plane.blobs().path(&digest)?;
    plane.may_serve_blob(&digest, &caller.principal).await?;
    if plane.blobs().exists(&digest).await? {
        return Ok(StatusCode::OK);
    }
    match plane.fetch_blob_from_peers(&digest).await {
        Ok(()) => Ok(StatusCode::OK),
        Err(error) => {
            tracing::debug!(%error, "artifact asked about is not to be had");
            Err(ControlError::not_found(format!("blob {digest}"), None))
        }
    }
}
