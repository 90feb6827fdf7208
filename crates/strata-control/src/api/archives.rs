//! Forensic archives: a node sends its own (agents only), operators list and fetch them.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::TryStreamExt;
use strata_core::api::ErrorBody;
use strata_core::archive::ArchiveRecord;
use strata_core::NodeName;

use super::{ApiPath, Plane};
use crate::guard::AuditNote;
use crate::ControlError;

/// A node's forensic archive (agents only, their own): verified in full against the cluster
/// CA, countersigned, kept in the blob store and recorded. Refused, with nothing kept, when
/// it does not verify or another node made it.
#[utoipa::path(put, path = "/v1/nodes/{name}/archive",
    params(("name" = String, Path, description = "the node that made it")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ArchiveRecord), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_node_archive(
    State(plane): Plane,
    ApiPath(name): ApiPath<NodeName>,
    body: Body,
) -> Result<Response, ControlError> {
    let record = plane
        .store_node_archive(&name, body.into_data_stream())
        .await?;
    let note = format!("{} {}", record.id, record.digest);
    let mut response = (StatusCode::CREATED, Json(record)).into_response();
    response.extensions_mut().insert(AuditNote(note));
    Ok(response)
}

/// Every forensic archive kept, oldest first (operators).
#[utoipa::path(get, path = "/v1/archives",
    responses((status = 200, body = [ArchiveRecord])))]
pub async fn list_archives(State(plane): Plane) -> Result<Json<Vec<ArchiveRecord>>, ControlError> {
    Ok(Json(plane.archives().await?))
}

/// A forensic archive's bytes (operators): verify them offline with `strata archive verify`.
#[utoipa::path(get, path = "/v1/archives/{id}",
    params(("id" = String, Path, description = "the archive, as `strata archive ls` names it")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn get_archive(
    State(plane): Plane,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ControlError> {
    let (record, path) = plane.archive_file(&id).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ControlError::not_found(format!("archive {id}'s bytes"), None))?;
    let stream = tokio_util::io::ReaderStream::new(file).map_err(std::io::Error::other);
    let mut response = Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", record.size)
        .body(Body::from_stream(stream))
        .expect("static response");
    response
        .extensions_mut()
        .insert(AuditNote(format!("{id} {}", record.digest)));
    Ok(response)
}
