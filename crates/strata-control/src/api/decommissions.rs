//! Decommissions: an operator starts one (`strata node decommission`), anyone who may read
//! nodes follows it, and the node itself reports its steps and reads its history for its
//! archive. Quarantines: an operator takes one instance out of service for investigation.

use axum::extract::State;
use axum::Json;
use strata_core::api::ErrorBody;
use strata_core::decommission::{
    DecommissionProgress, DecommissionRecord, DecommissionRequest, DecommissionStatus, NodeHistory,
};
use strata_core::{Instance, InstanceId, NodeName};

use super::{ApiJson, ApiPath, Plane};
use crate::guard::Caller;
use crate::ControlError;

/// Decommissions a node (operators): it drains (replacements first), archives what it held
/// (signed, countersigned, kept), wipes its data and is revoked. `unreachable`: revoked at
/// once, nothing archived or wiped. Refused (409) when the node cannot archive itself, or
/// would stop instances no other node can take, unless `force`.
#[utoipa::path(post, path = "/v1/nodes/{name}/decommission", request_body = DecommissionRequest,
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = DecommissionStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn decommission_node(
    caller: Caller,
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    ApiJson(request): ApiJson<DecommissionRequest>,
) -> Result<Json<DecommissionStatus>, ControlError> {
    Ok(Json(
        plane
            .decommission_node(&name, &request, &caller.actor())
            .await?,
    ))
}

/// How a node's decommission stands: its phase while it runs, its record once done.
#[utoipa::path(get, path = "/v1/nodes/{name}/decommission",
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = DecommissionStatus), (status = 404, body = ErrorBody)))]
pub async fn decommission_status(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
) -> Result<Json<DecommissionStatus>, ControlError> {
    Ok(Json(plane.decommission_status(&name).await?))
}

/// Every decommissioned node's record, oldest first.
#[utoipa::path(get, path = "/v1/decommissions",
    responses((status = 200, body = [DecommissionRecord])))]
pub async fn list_decommissions(
    State(plane): Plane,
) -> Result<Json<Vec<DecommissionRecord>>, ControlError> {
    Ok(Json(plane.decommissions().await?))
}

/// A decommissioning node reports a step (the node itself): archiving, wiped, failed.
#[utoipa::path(post, path = "/v1/nodes/{name}/decommission/progress", request_body = DecommissionProgress,
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = DecommissionStatus), (status = 409, body = ErrorBody)))]
pub async fn decommission_progress(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    ApiJson(progress): ApiJson<DecommissionProgress>,
) -> Result<Json<DecommissionStatus>, ControlError> {
    Ok(Json(plane.decommission_progress(&name, &progress).await?))
}

/// The events about a decommissioning node and the audit records of its calls (the node
/// itself, for its archive; refused to a node that is not being decommissioned).
#[utoipa::path(get, path = "/v1/nodes/{name}/history",
    params(("name" = String, Path, description = "node")),
    responses((status = 200, body = NodeHistory), (status = 409, body = ErrorBody)))]
pub async fn node_history(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
) -> Result<Json<NodeHistory>, ControlError> {
    let status = plane.decommission_status(&name).await?;
    if status.running.is_none() {
        return Err(ControlError::Conflict {
            message: format!("node {name} is not being decommissioned"),
            hint: Some("a node reads its history only for its decommission archive".into()),
        });
    }
    Ok(Json(plane.node_history(&name).await?))
}

/// Quarantines an instance (operators): out of routing at once, a replacement started; its
/// node freezes it, archives it (signed, countersigned, kept) and then stops it.
#[utoipa::path(post, path = "/v1/instances/{id}/quarantine",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn quarantine_instance(
    caller: Caller,
    State(plane): Plane,
    ApiPath(id): ApiPath<InstanceId>,
) -> Result<Json<Instance>, ControlError> {
    Ok(Json(plane.quarantine_instance(&id, &caller.actor()).await?))
}
