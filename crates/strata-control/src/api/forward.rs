//! Handing a request that only the leader serves over to it: a follower sends it on with the
//! caller's credential (or its own vouching for a node, [`crate::guard::forwarding_headers`]).

use axum::http::{header, HeaderMap, HeaderName};
use serde::Serialize;
use strata_core::api::{Heartbeat, HeartbeatAck};

use crate::{ControlError, ControlPlane};

/// Sends the request to the leader's API at `path`. `NotLeader` when no other server leads.
pub async fn to_leader(
    plane: &ControlPlane,
    method: reqwest::Method,
    path: &str,
    body: Option<&impl Serialize>,
    headers: &HeaderMap,
) -> Result<reqwest::Response, ControlError> {
    let leader = crate::leader::current_leader(plane.store())
        .await
        .ok_or(ControlError::NotLeader)?;
    if leader.server_id == plane.server_id() {
        return Err(ControlError::NotLeader);
    }
    let mut request = plane
        .identity()
        .http()
        .request(
            method,
            format!("{}{path}", leader.api_url.trim_end_matches('/')),
        )
        .timeout(std::time::Duration::from_secs(2));
    if let Some(body) = body {
        request = request.json(body);
    }
    for name in [
        header::AUTHORIZATION,
        HeaderName::from_static(crate::guard::ON_BEHALF_OF),
    ] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name.clone(), value.clone());
        }
    }
    let response = request.send().await.map_err(|error| {
        ControlError::Internal(format!("leader {} unreachable: {error}", leader.api_url))
    })?;
    if !response.status().is_success() {
        return Err(ControlError::Internal(format!(
            "leader {} refused {path}: HTTP {}",
            leader.api_url,
            response.status()
        )));
    }
    Ok(response)
}

/// Hands an agent's heartbeat to the leader (liveness is judged there).
pub async fn heartbeat(
    plane: &ControlPlane,
    node: &str,
    beat: &Heartbeat,
    headers: &HeaderMap,
) -> Result<HeartbeatAck, ControlError> {
    to_leader(
        plane,
        reqwest::Method::POST,
        &format!("/v1/nodes/{node}/heartbeat"),
        Some(beat),
        headers,
    )
    .await?
    .json()
    .await
    .map_err(|error| ControlError::Internal(format!("the leader answered badly: {error}")))
}
