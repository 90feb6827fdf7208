//! The agent's own small HTTP API: the logs of its instances (the control plane gathers them
//! from here for `strata logs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::supervisor::AgentDirs;

/// How the log endpoint learns whether an instance still runs here (to end a follow).
pub trait InstanceLiveness: Send + Sync + 'static {
    fn is_running_here(&self, id: &str) -> bool;
}

struct LogState {
    dirs: AgentDirs,
    liveness: Arc<dyn InstanceLiveness>,
}

/// The log API.
pub fn router(dirs: AgentDirs, liveness: Arc<dyn InstanceLiveness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/instances/{id}/logs", get(instance_logs))
        .with_state(Arc::new(LogState { dirs, liveness }))
}

/// Whether a request comes from the control plane by its client certificate (the TLS layer
/// that serves the agent's API knows; see `strata_mesh::serve`).
pub type FromControlPlane = Arc<dyn Fn(&axum::extract::Request) -> bool + Send + Sync>;

/// `router` with every route but `/healthz` closed to strangers. Without `control_plane`
/// (plain HTTP), every route takes the node's API key (`strata_core::auth::node_api_key`,
/// `Authorization: Bearer`), which only the node and the control plane (which derives it)
/// know. With it (the API is served over mutual TLS), instance logs are served only to the
/// control plane, proven by its client certificate; `/metrics` also takes the API key (for
/// Prometheus). Logs and metrics of a node are the control plane's to hand out, by role.
pub fn guarded(
    router: Router,
    credential: String,
    control_plane: Option<FromControlPlane>,
) -> Router {
    let credential = Arc::new(credential);
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let credential = credential.clone();
            let control_plane = control_plane.clone();
            async move {
                let path = request.uri().path();
                let allowed = match &control_plane {
                    _ if path == "/healthz" => true,
                    None => presents(request.headers(), &credential),
                    Some(from_control_plane) => {
                        from_control_plane(&request)
                            || (path == "/metrics" && presents(request.headers(), &credential))
                    }
                };
                if allowed {
                    next.run(request).await
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        "this node's API is for the control plane only: read logs with `strata logs`, metrics with the node's API key\n",
                    )
                        .into_response()
                }
            }
        },
    ))
}

fn presents(headers: &axum::http::HeaderMap, credential: &str) -> bool {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    presented.len() == credential.len()
        && presented
            .bytes()
            .zip(credential.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[derive(Debug, Deserialize)]
struct LogParams {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

/// The most of a log's end read for a tail.
const TAIL_WINDOW: u64 = 1 << 20;

async fn instance_logs(
    State(state): State<Arc<LogState>>,
    Path(id): Path<String>,
    Query(params): Query<LogParams>,
) -> Response {
    if id.contains('/') || id.contains("..") {
        return (StatusCode::BAD_REQUEST, "bad instance id\n").into_response();
    }
    let path = state.dirs.log(&id);
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return (
            StatusCode::NOT_FOUND,
            format!("no logs for instance {id} on this node\n"),
        )
            .into_response();
    };
    let tail = params.tail.unwrap_or(100);
    let (initial, offset) = match read_tail(&mut file, tail).await {
        Ok(found) => found,
        Err(error) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read log: {error}\n"),
            )
                .into_response()
        }
    };
    if !params.follow {
        return Response::new(Body::from(initial));
    }
    let follow = follow_stream(path, offset, id, state.liveness.clone());
    let first = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(initial)) });
    let stream = futures::StreamExt::chain(first, follow);
    Response::new(Body::from_stream(stream))
}

/// The last `lines` lines of a file, and the file's length.
async fn read_tail(file: &mut tokio::fs::File, lines: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let len = file.metadata().await?.len();
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    file.take(len - start).read_to_end(&mut buf).await?;
    let mut cut = buf.len();
    let mut seen = 0;
    let body_end = if buf.ends_with(b"\n") {
        buf.len() - 1
    } else {
        buf.len()
    };
    for (i, byte) in buf[..body_end].iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                cut = i + 1;
                break;
            }
        }
        cut = i;
    }
    if lines == 0 {
        cut = buf.len();
    }
    Ok((buf[cut..].to_vec(), len))
}

fn follow_stream(
    path: PathBuf,
    offset: u64,
    id: String,
    liveness: Arc<dyn InstanceLiveness>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::unfold(
        (path, offset, id, liveness, false),
        |(path, mut offset, id, liveness, ending)| async move {
            loop {
                let mut file = match tokio::fs::File::open(&path).await {
                    Ok(file) => file,
                    Err(_) => return None,
                };
                let len = file.metadata().await.map(|m| m.len()).unwrap_or(offset);
                if len < offset {
                    offset = 0; // truncated
                }
                if len > offset {
                    let mut buf = Vec::new();
                    if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
                        return None;
                    }
                    if (&mut file)
                        .take(len - offset)
                        .read_to_end(&mut buf)
                        .await
                        .is_err()
                    {
                        return None;
                    }
                    offset = len;
                    return Some((Ok(Bytes::from(buf)), (path, offset, id, liveness, ending)));
                }
                if ending {
                    return None;
                }
                let running = liveness.is_running_here(&id);
                tokio::time::sleep(Duration::from_millis(200)).await;
                if !running {
                    // One last read after it stopped, then end.
                    return Some((Ok(Bytes::new()), (path, offset, id, liveness, true)));
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let table: &[(&str, usize, &str)] = &[
            ("a\nb\nc\n", 2, "b\nc\n"),
            ("a\nb\nc\n", 5, "a\nb\nc\n"),
            ("a\nb\nc", 1, "c"),
            ("a\nb\nc\n", 1, "c\n"),
            ("", 3, ""),
            ("a\n", 0, ""),
        ];
        for (content, lines, want) in table {
            std::fs::write(&path, content).unwrap();
            let mut file = tokio::fs::File::open(&path).await.unwrap();
            let (got, len) = read_tail(&mut file, *lines).await.unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                *want,
                "{content:?} tail {lines}"
            );
            assert_eq!(len, content.len() as u64);
        }
    }
}
