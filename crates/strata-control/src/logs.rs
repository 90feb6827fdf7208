//! `strata logs`: the control plane gathers a service's logs from the agents of the nodes its
//! instances run on (each agent serves its instances' log files), prefixes every line with
//! its instance id and merges the streams. Following (`-f`) follows the service, not a set
//! of instances: instances that join later (a rollout, a restart elsewhere, a scale-up) are
//! added with a `--- ID joined ---` line, and one whose stream ends says `--- ID left ---`.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use strata_core::{keys, InstanceView, Node, Service};

use crate::{ControlError, ControlPlane};

pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// How often a follower looks for instances that joined the service.
const FOLLOW_POLL: Duration = Duration::from_millis(300);
/// Lines of an instance that joins while a service is followed: all it has written (up to
/// the agent's 1 MiB tail window).
const JOINED_TAIL: usize = 100_000;

pub async fn service_logs(
    plane: Arc<ControlPlane>,
    env: &str,
    service: &str,
    tail: usize,
    follow: bool,
) -> Result<LogStream, ControlError> {
    if !service_exists(&plane, env, service).await? {
        return Err(ControlError::not_found(
            format!("service `{service}` in environment `{env}`"),
            Some("see `strata status` for the services there".to_string()),
        ));
    }
    let views = instances_of(&plane, env, service).await?;
    if !follow {
        let mut streams: Vec<LogStream> = Vec::new();
        for view in views {
            streams.push(instance_logs(&plane, &view, tail, false).await?);
        }
        return Ok(Box::pin(futures::stream::select_all(streams)));
    }
    // Following: every instance's stream feeds one channel; instances that join (a rollout,
    // a scale-up, a replacement) are picked up as they appear, with a marker line, and one
    // that stops says so. It ends when the client goes away or the service is deleted.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let (env, service) = (env.to_string(), service.to_string());
    tokio::spawn(async move {
        let mut followed: BTreeSet<String> = BTreeSet::new();
        let mut first = true;
        while !tx.is_closed() {
            let views = match instances_of(&plane, &env, &service).await {
                Ok(views) => views,
                Err(error) => {
                    tracing::debug!(%error, "log follower cannot read instances");
                    Vec::new()
                }
            };
            for view in views {
                if !followed.insert(view.instance.id.clone()) {
                    continue;
                }
                let lines = if first { tail } else { JOINED_TAIL };
                if !first {
                    let marker = format!(
                        "--- {} joined: release {} on node {} ---\n",
                        view.instance.id, view.instance.release, view.instance.node
                    );
                    if tx.send(Bytes::from(marker)).await.is_err() {
                        return;
                    }
                }
                let stream = match instance_logs(&plane, &view, lines, true).await {
                    Ok(stream) => stream,
                    Err(error) => line(&view.instance.id, &format!("(logs unavailable: {error})")),
                };
                let (tx, id) = (tx.clone(), view.instance.id.clone());
                tokio::spawn(async move {
                    let mut stream = stream;
                    while let Some(Ok(chunk)) = stream.next().await {
                        if tx.send(chunk).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Bytes::from(format!("--- {id} left ---\n"))).await;
                });
            }
            first = false;
            if !matches!(service_exists(&plane, &env, &service).await, Ok(true)) {
                let _ = tx
                    .send(Bytes::from(format!("--- service {service} deleted ---\n")))
                    .await;
                return;
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    });
    Ok(Box::pin(
        tokio_stream_from(rx).map(Ok::<Bytes, std::io::Error>),
    ))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl Stream<Item = Bytes> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Whether the service exists, or a deleted one still has instances whose logs can be read.
async fn service_exists(
    plane: &ControlPlane,
    env: &str,
    service: &str,
) -> Result<bool, ControlError> {
    if plane
        .get::<Service>(&keys::service(env, service))
        .await?
        .is_some()
    {
        return Ok(true);
    }
    Ok(!instances_of(plane, env, service).await?.is_empty())
}

async fn instances_of(
    plane: &ControlPlane,
    env: &str,
    service: &str,
) -> Result<Vec<InstanceView>, ControlError> {
    let mut views = plane.instance_views().await?;
    views.retain(|v| v.instance.env == env && v.instance.service == service);
    Ok(views)
}

/// One line, prefixed like an instance's log lines.
fn line(id: &str, text: &str) -> LogStream {
    let line = Bytes::from(format!("[{id}] {text}\n"));
    Box::pin(futures::stream::once(async move { Ok(line) }))
}

/// One instance's log lines from its node's agent, each prefixed with its id.
async fn instance_logs(
    plane: &ControlPlane,
    view: &InstanceView,
    tail: usize,
    follow: bool,
) -> Result<LogStream, ControlError> {
    let id = view.instance.id.clone();
    let nodes: Vec<Node> = plane.nodes().await?;
    let Some(node) = nodes.iter().find(|n| n.name == view.instance.node) else {
        return Ok(line(
            &id,
            &format!("(logs unavailable: node {} is gone)", view.instance.node),
        ));
    };
    let url = format!(
        "{}/v1/instances/{id}/logs?tail={tail}&follow={follow}",
        node.agent_url.trim_end_matches('/')
    );
    // The agent serves logs only to whoever presents its API key, which the control plane
    // derives from the node's credential.
    let credential =
        strata_core::auth::node_api_key(&plane.credentials().node_credential(&node.name));
    Ok(
        match plane.http().get(&url).bearer_auth(credential).send().await {
            Ok(response) if response.status().is_success() => {
                prefix_lines(id, response.bytes_stream())
            }
            Ok(response) => line(
                &id,
                &format!("(logs unavailable: agent answered {})", response.status()),
            ),
            Err(error) => line(
                &id,
                &format!(
                    "(logs unavailable: node {} unreachable: {error})",
                    node.name
                ),
            ),
        },
    )
}

/// Splits a byte stream into lines and prefixes each with `[id] `.
fn prefix_lines<S>(id: String, body: S) -> LogStream
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    let state = (Box::pin(body), Vec::<u8>::new(), id, false);
    Box::pin(futures::stream::unfold(
        state,
        |(mut body, mut pending, id, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(newline) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=newline).collect();
                    let mut out = format!("[{id}] ").into_bytes();
                    out.extend_from_slice(&line);
                    return Some((Ok(Bytes::from(out)), (body, pending, id, false)));
                }
                match body.next().await {
                    Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                    Some(Err(error)) => {
                        let out = Bytes::from(format!("[{id}] (log stream ended: {error})\n"));
                        return Some((Ok(out), (body, pending, id, true)));
                    }
                    None if pending.is_empty() => return None,
                    None => {
                        let mut out = format!("[{id}] ").into_bytes();
                        out.append(&mut pending);
                        out.push(b'\n');
                        return Some((Ok(Bytes::from(out)), (body, pending, id, true)));
                    }
                }
            }
        },
    ))
}
