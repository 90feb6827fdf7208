//! `strata logs`: the control plane gathers a service's logs from the agents of the nodes its
//! instances run on (each agent serves its instances' log files), prefixes every line with
//! its instance id and merges the streams.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use strata_core::{keys, Node, Service};

use crate::{ControlError, ControlPlane};

pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub async fn service_logs(
    plane: &ControlPlane,
    env: &str,
    service: &str,
    tail: usize,
    follow: bool,
) -> Result<LogStream, ControlError> {
    if plane
        .get::<Service>(&keys::service(env, service))
        .await?
        .is_none()
    {
        // Still show logs of a deleted service's remaining instances, if any.
        let any = plane
            .instance_views()
            .await?
            .iter()
            .any(|v| v.instance.env == env && v.instance.service == service);
        if !any {
            return Err(ControlError::not_found(
                format!("service `{service}` in environment `{env}`"),
                Some("see `strata status` for the services there".to_string()),
            ));
        }
    }
    let nodes: Vec<Node> = plane.nodes().await?;
    let views = plane.instance_views().await?;
    let mut streams: Vec<LogStream> = Vec::new();
    for view in views
        .into_iter()
        .filter(|v| v.instance.env == env && v.instance.service == service)
    {
        let id = view.instance.id.clone();
        let Some(node) = nodes.iter().find(|n| n.name == view.instance.node) else {
            continue;
        };
        let url = format!(
            "{}/v1/instances/{id}/logs?tail={tail}&follow={follow}",
            node.agent_url.trim_end_matches('/')
        );
        // The agent serves logs only to whoever presents its API key, which the control plane
        // derives from the node's credential.
        let credential =
            strata_core::auth::node_api_key(&plane.credentials().node_credential(&node.name));
        let response = match plane.http().get(&url).bearer_auth(credential).send().await {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                let line = format!(
                    "[{id}] (logs unavailable: agent answered {})\n",
                    response.status()
                );
                streams.push(Box::pin(futures::stream::once(async move {
                    Ok(Bytes::from(line))
                })));
                continue;
            }
            Err(error) => {
                let line = format!(
                    "[{id}] (logs unavailable: node {} unreachable: {error})\n",
                    node.name
                );
                streams.push(Box::pin(futures::stream::once(async move {
                    Ok(Bytes::from(line))
                })));
                continue;
            }
        };
        streams.push(prefix_lines(id, response.bytes_stream()));
    }
    Ok(Box::pin(futures::stream::select_all(streams)))
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
