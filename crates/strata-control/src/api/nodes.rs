//! The API of nodes: registration, heartbeats, assignments, status and event reports,
//! traffic, certificates (each for the node itself only, as the gate enforces), and drains.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use strata_core::api::{
    Assignments, CertificateRequest, ErrorBody, Heartbeat, HeartbeatAck, MetricsReport,
    NodeCertificate, NodeEvent, RegisterNode, Registered, ShippedLogs, StatusReports,
    StatusReportsStored,
};
use strata_core::{InstanceId, InstanceStatus, Node, NodeName};

use super::{ApiJson, ApiPath, Plane};
use crate::guard::Caller;
use crate::ControlError;

/// An agent reports what it observed of an instance.
#[utoipa::path(put, path = "/v1/instances/{id}/status", request_body = InstanceStatus,
    params(("id" = String, Path, description = "instance id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn report_status(
    caller: Caller,
    State(plane): Plane,
    ApiPath(id): ApiPath<InstanceId>,
    ApiJson(status): ApiJson<InstanceStatus>,
) -> Result<StatusCode, ControlError> {
    if !matches!(&caller.principal, strata_core::auth::Principal::Node { name } if *name == status.node)
    {
        return Err(ControlError::Forbidden {
            message: format!(
                "{} may not report the status of instances on node `{}`",
                caller.name(),
                status.node
            ),
            hint: "a node reports only its own instances".into(),
        });
    }
    if status.id != id {
        return Err(ControlError::bad_request(
            format!(
                "status is for instance `{}` but was sent to `{id}`",
                status.id
            ),
            None,
        ));
    }
    plane.report_status(status).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An agent reports what it observed of its instances since its last report, many at once.
#[utoipa::path(put, path = "/v1/nodes/{name}/status", request_body = StatusReports,
    params(("name" = String, Path, description = "the reporting node")),
    responses((status = 200, body = StatusReportsStored), (status = 400, body = ErrorBody)))]
pub async fn report_statuses(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    ApiJson(report): ApiJson<StatusReports>,
) -> Result<Json<StatusReportsStored>, ControlError> {
    if report.statuses.len() > StatusReports::MAX {
        return Err(ControlError::bad_request(
            format!(
                "{} statuses in one report; at most {} are taken",
                report.statuses.len(),
                StatusReports::MAX
            ),
            Some("send them in several reports".to_string()),
        ));
    }
    if let Some(other) = report.statuses.iter().find(|s| s.node != name) {
        return Err(ControlError::Forbidden {
            message: format!(
                "node `{name}` may not report the status of instances on node `{}`",
                other.node
            ),
            hint: "a node reports only its own instances".into(),
        });
    }
    Ok(Json(plane.report_statuses(&name, report.statuses).await?))
}

/// Lists nodes.
#[utoipa::path(get, path = "/v1/nodes", responses((status = 200, body = [Node])))]
pub async fn list_nodes(State(plane): Plane) -> Result<Json<Vec<Node>>, ControlError> {
    Ok(Json(plane.nodes().await?))
}

/// An agent registers its node (with the node's own credential).
#[utoipa::path(post, path = "/v1/nodes/{name}/register", request_body = RegisterNode,
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = Registered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn register_node(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    ApiJson(request): ApiJson<RegisterNode>,
) -> Result<Json<Registered>, ControlError> {
    if request.name != name {
        return Err(ControlError::bad_request(
            format!(
                "the registration is for node `{}` but was sent to `{name}`",
                request.name
            ),
            None,
        ));
    }
    Ok(Json(Registered {
        node: plane.register_node(request).await?,
    }))
}

/// An agent's heartbeat.
#[utoipa::path(post, path = "/v1/nodes/{name}/heartbeat", request_body = Heartbeat,
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = HeartbeatAck)))]
pub async fn heartbeat(
    caller: Caller,
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    headers: axum::http::HeaderMap,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatAck>, ControlError> {
    if plane.term().is_none() {
        // Liveness is judged by the leader: hand the heartbeat on.
        return Ok(Json(
            super::forward::heartbeat(
                &plane,
                &name,
                &beat,
                &crate::guard::forwarding_headers(&plane, &caller, &headers),
            )
            .await?,
        ));
    }
    Ok(Json(HeartbeatAck {
        reregister: plane.heartbeat(&name, beat.epoch).await?,
        datagrams: plane.heartbeats().take_datagrams(&name),
    }))
}

/// Records an event a node observed (agents only; the kind must be one nodes may report).
#[utoipa::path(post, path = "/v1/nodes/{name}/events",
    params(("name" = String, Path, description = "the reporting node")),
    request_body = NodeEvent,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn node_event(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    ApiJson(event): ApiJson<NodeEvent>,
) -> Result<StatusCode, ControlError> {
    plane.event_log().record_node_event(&name, event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a node's instances wrote since its last shipment (agents only): the control plane
/// keeps the last lines of each, readable with `strata logs` once the node is gone.
#[utoipa::path(post, path = "/v1/nodes/{name}/logs",
    params(("name" = String, Path, description = "the shipping node")),
    request_body = ShippedLogs,
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn node_logs(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    ApiJson(shipped): ApiJson<ShippedLogs>,
) -> Result<StatusCode, ControlError> {
    crate::logs::keep(&plane, &name, shipped).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Signs a node's certificate for mutual TLS between nodes' proxies (agents only): on join
/// and at every renewal. Any server can: the CA is in the store.
#[utoipa::path(post, path = "/v1/nodes/{name}/certificate",
    params(("name" = String, Path, description = "the node")),
    request_body = CertificateRequest,
    responses((status = 200, body = NodeCertificate), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn node_certificate(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    ApiJson(request): ApiJson<CertificateRequest>,
) -> Result<Json<NodeCertificate>, ControlError> {
    Ok(Json(
        plane
            .identity()
            .issue_node_certificate(&name, &request)
            .await?,
    ))
}

/// A node's per-service traffic of the last window (agents only). Followers hand it to the
/// leader, where autoscaling and SLO reports read it.
#[utoipa::path(post, path = "/v1/nodes/{name}/metrics",
    params(("name" = String, Path, description = "the reporting node")),
    request_body = MetricsReport,
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn node_metrics(
    caller: Caller,
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    headers: axum::http::HeaderMap,
    ApiJson(report): ApiJson<MetricsReport>,
) -> Result<StatusCode, ControlError> {
    if plane.term().is_none() {
        super::forward::to_leader(
            &plane,
            reqwest::Method::POST,
            &format!("/v1/nodes/{name}/metrics"),
            Some(&report),
            &crate::guard::forwarding_headers(&plane, &caller, &headers),
        )
        .await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    plane.traffic().record(&name, &report);
    Ok(StatusCode::NO_CONTENT)
}

/// Drains a node: its instances move elsewhere with no downtime; it takes no new work.
#[utoipa::path(post, path = "/v1/nodes/{name}/drain",
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody)))]
pub async fn drain_node(
    caller: Caller,
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
) -> Result<Json<Node>, ControlError> {
    Ok(Json(
        plane.set_draining(&name, true, &caller.actor()).await?,
    ))
}

/// Removes a down node's record (`strata node rm`): refused (409) while the node is alive
/// or holds instance records.
#[utoipa::path(delete, path = "/v1/nodes/{name}",
    params(("name" = String, Path, description = "node")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove_node(
    caller: Caller,
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
) -> Result<axum::http::StatusCode, ControlError> {
    plane
        .remove_node(&name, crate::Remover::Operator(caller.actor()))
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The node's agent is stopping: its instances move elsewhere first (the node itself only).
#[utoipa::path(post, path = "/v1/nodes/{name}/leave",
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = strata_core::api::Leaving), (status = 404, body = ErrorBody)))]
pub async fn leave_node(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
) -> Result<Json<strata_core::api::Leaving>, ControlError> {
    let node = plane.set_leaving(&name).await?;
    let nodes_taking_work = plane
        .nodes()
        .await?
        .iter()
        .filter(|n| n.name != name && n.effective_state() == strata_core::NodeState::Ready)
        .count();
    Ok(Json(strata_core::api::Leaving {
        node,
        nodes_taking_work,
    }))
}

/// Ends a drain: the node takes new work again.
#[utoipa::path(post, path = "/v1/nodes/{name}/undrain",
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody)))]
pub async fn undrain_node(
    caller: Caller,
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
) -> Result<Json<Node>, ControlError> {
    Ok(Json(
        plane.set_draining(&name, false, &caller.actor()).await?,
    ))
}

/// A blocking query of a node's assignments: `index` is the `revision` of the assignments
/// the node holds; the answer comes when they change after it, or after `wait_ms`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct AssignmentsQuery {
    /// Answer only once what the node must run changed after this revision.
    pub index: Option<u64>,
    /// How long to wait for that, in milliseconds (default 30,000, at most 60,000).
    pub wait_ms: Option<u64>,
    /// Whether the caller takes an answer by removals (`since` and `removed`) instead of
    /// every unchanged id.
    #[serde(default)]
    pub removals: bool,
}

/// The longest a blocking assignments query is held.
const MAX_ASSIGNMENTS_WAIT_MS: u64 = 60_000;

/// What a node must run (with `index`: a blocking query that answers when it changes).
#[utoipa::path(get, path = "/v1/nodes/{name}/assignments",
    params(("name" = String, Path, description = "node"), AssignmentsQuery),
    responses((status = 200, body = Assignments)))]
pub async fn assignments(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    axum::extract::Query(query): axum::extract::Query<AssignmentsQuery>,
) -> Result<Json<Assignments>, ControlError> {
    Ok(Json(match query.index {
        Some(index) => {
            let wait = query.wait_ms.unwrap_or(30_000).min(MAX_ASSIGNMENTS_WAIT_MS);
            plane
                .assignments_after(
                    &name,
                    index,
                    std::time::Duration::from_millis(wait),
                    query.removals,
                )
                .await
        }
        None => plane.assignments(&name).await?,
    }))
}
