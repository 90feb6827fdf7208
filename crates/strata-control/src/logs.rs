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
use strata_core::api::ShippedLogs;
use strata_core::{
    keys, EnvName, Instance, InstanceId, InstanceView, LogTail, Node, NodeName, Service,
    ServiceName,
};

use crate::{now_millis, ControlError, ControlPlane};

pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// How often a follower looks for instances that joined the service when no change of the
/// store's instances woke it first.
const FOLLOW_RESYNC: Duration = Duration::from_secs(2);
/// Lines of an instance that joins while a service is followed: all it has written (up to
/// the agent's 1 MiB tail window).
const JOINED_TAIL: usize = 100_000;

pub async fn service_logs(
    plane: Arc<ControlPlane>,
    env: &EnvName,
    service: &ServiceName,
    tail: usize,
    follow: bool,
    previous_too: bool,
) -> Result<LogStream, ControlError> {
    if !service_exists(&plane, env, service).await? && !previous_too {
        return Err(ControlError::not_found(
            format!("service `{service}` in environment `{env}`"),
            Some("see `strata status` for the services there".to_string()),
        ));
    }
    let views = instances_of(&plane, env, service).await?;
    if !follow {
        let mut streams: Vec<LogStream> = Vec::new();
        if previous_too {
            streams.extend(previous(&plane, env, service, tail).await?);
        }
        for view in views {
            streams.push(instance_logs(&plane, &view, tail, false).await?);
        }
        // One instance after another: each is complete and its lines stay together.
        return Ok(Box::pin(futures::stream::iter(streams).flatten()));
    }
    // Following: every instance's stream feeds one channel; instances that join (a rollout,
    // a scale-up, a replacement) are picked up as they appear, with a marker line, and one
    // that stops says so. It ends when the client goes away or the service is deleted.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let (env, service) = (env.clone(), service.clone());
    tokio::spawn(async move {
        let mut followed: BTreeSet<InstanceId> = BTreeSet::new();
        let mut first = true;
        // Instances report a status when they start and stop: a change there is what makes
        // an instance join or leave.
        let mut changes = plane.store.watch(keys::STATUS, 0).await.ok();
        while !tx.is_closed() {
            let views = match instances_of(&plane, &env, &service).await {
                Ok(views) => views,
                Err(error) => {
                    tracing::debug!(%error, "log follower cannot read instances");
                    Vec::new()
                }
            };
            for view in views {
                // Its log exists once its node has started it (and said so).
                if view.status.is_none() || !followed.insert(view.instance.id.clone()) {
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
            // Look again when an instance's status changes, or after a while.
            let changed = async {
                match changes.as_mut() {
                    Some(stream) => {
                        if stream.next().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tx.closed() => return,
                _ = changed => {}
                _ = tokio::time::sleep(FOLLOW_RESYNC) => {}
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
    env: &EnvName,
    service: &ServiceName,
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
    env: &EnvName,
    service: &ServiceName,
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
        let why = format!("node {} is gone", view.instance.node);
        return kept_or(plane, &id, tail, &why).await;
    };
    if node.effective_state() == strata_core::NodeState::Down {
        let why = format!("node {} is down", node.name);
        return kept_or(plane, &id, tail, &why).await;
    }
    let url = format!(
        "{}/v1/instances/{id}/logs?tail={tail}&follow={follow}",
        node.agent_url.trim_end_matches('/')
    );
    // The agent serves logs only to whoever presents its API key, which the control plane
    // derives from the node's credential.
    let credential =
        strata_core::auth::node_api_key(&plane.credentials().node_credential(&node.name));
    match plane.identity().get(&url, &credential).await {
        Ok(response) if response.status().is_success() => {
            Ok(prefix_lines(id.to_string(), response.bytes_stream()))
        }
        Ok(response) => {
            let why = format!("node {}'s agent answered {}", node.name, response.status());
            kept_or(plane, &id, tail, &why).await
        }
        Err(error) => {
            let why = format!("node {} is unreachable: {error}", node.name);
            kept_or(plane, &id, tail, &why).await
        }
    }
}

/// The last lines the control plane kept of an instance (its node shipped them), after a
/// line saying why they come from there; or, when it kept none, that line alone.
async fn kept_or(
    plane: &ControlPlane,
    id: &str,
    tail: usize,
    why: &str,
) -> Result<LogStream, ControlError> {
    let kept: Option<(LogTail, u64)> = plane.get(&keys::log_tail(id)).await?;
    let Some((kept, _)) = kept else {
        return Ok(line(id, &format!("(logs unavailable: {why})")));
    };
    Ok(kept_lines(
        &kept,
        tail,
        &format!("{why}; its last lines, kept by the control plane"),
    ))
}

/// A kept tail as log lines: a `(...)` note, then its last `tail` lines, each prefixed.
fn kept_lines(kept: &LogTail, tail: usize, note: &str) -> LogStream {
    let lines: Vec<&str> = kept.text.lines().collect();
    let from = lines.len().saturating_sub(tail);
    let mut out = format!("[{}] ({note})\n", kept.instance);
    for text in &lines[from..] {
        out.push_str(&format!("[{}] {text}\n", kept.instance));
    }
    let out = Bytes::from(out);
    Box::pin(futures::stream::once(async move { Ok(out) }))
}

/// The kept tails of a service's instances that are gone (within the retention): what
/// `strata logs --previous` shows first.
pub async fn previous(
    plane: &ControlPlane,
    env: &EnvName,
    service: &ServiceName,
    tail: usize,
) -> Result<Vec<LogStream>, ControlError> {
    let current: BTreeSet<InstanceId> = instances_of(plane, env, service)
        .await?
        .into_iter()
        .map(|v| v.instance.id)
        .collect();
    let kept: Vec<(LogTail, u64)> = plane.list(keys::LOGS).await?;
    let mut gone: Vec<LogTail> = kept
        .into_iter()
        .map(|(tail, _)| tail)
        .filter(|t| t.env == env && t.service == service && !current.contains(&t.instance))
        .collect();
    gone.sort_by_key(|t| t.updated_at);
    Ok(gone
        .iter()
        .map(|t| {
            let note = format!(
                "gone: release {} on node {}; its last lines, kept by the control plane",
                t.release, t.node
            );
            kept_lines(t, tail, &note)
        })
        .collect())
}

/// Keeps what a node shipped of its instances' output: appended to each instance's tail,
/// cut to the last [`LogTail::MAX_BYTES`]. Output of an instance that is not the node's is
/// dropped.
pub async fn keep(
    plane: &ControlPlane,
    node: &NodeName,
    shipped: ShippedLogs,
) -> Result<(), ControlError> {
    for chunk in shipped.chunks {
        let Some((instance, _)) = plane
            .get::<Instance>(&keys::instance(&chunk.instance))
            .await?
        else {
            continue;
        };
        if instance.node != node {
            continue;
        }
        let key = keys::log_tail(&instance.id);
        let mut tail = match plane.get::<LogTail>(&key).await? {
            Some((tail, _)) => tail,
            None => LogTail {
                instance: instance.id.clone(),
                env: instance.env.clone(),
                service: instance.service.clone(),
                release: instance.release,
                node: node.clone(),
                text: String::new(),
                updated_at: 0,
            },
        };
        tail.append(&chunk.data);
        tail.updated_at = now_millis();
        plane.store.put(&key, crate::plane::encode(&tail)).await?;
    }
    Ok(())
}

/// Deletes the kept tails of instances that are gone and were last shipped before `before`;
/// returns how many went.
pub async fn prune(plane: &ControlPlane, before: u64) -> Result<usize, ControlError> {
    let kept: Vec<(LogTail, u64)> = plane.list(keys::LOGS).await?;
    let mut removed = 0;
    for (tail, _) in kept.into_iter().filter(|(t, _)| t.updated_at < before) {
        if plane
            .get::<Instance>(&keys::instance(&tail.instance))
            .await?
            .is_none()
        {
            plane.store.delete(&keys::log_tail(&tail.instance)).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// On the leader, every minute: drops kept tails past the retention.
pub async fn run_retention(plane: Arc<ControlPlane>) {
    crate::leader::prune_on_leader(
        plane,
        "kept log tails",
        |config| config.log_retention,
        |plane, before| async move { prune(&plane, before).await },
    )
    .await
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
