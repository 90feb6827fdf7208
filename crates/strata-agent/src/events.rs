//! [`EventReporter`]: events a node observes (a guest's refused outbound call, ...) sent to
//! the control plane's event log without ever blocking the code that saw them.
//!
//! Reporting is fire-and-forget through a bounded queue, and repeats are folded: the first
//! event of a kind, service and message is sent at once; the same event again within
//! [`FOLD_WINDOW`] is only counted, and one summary ("... (28 more in the last 10s)") follows
//! when the window closes. A guest that hammers a refused address makes one event per window,
//! not one per request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strata_core::api::NodeEvent;
use tokio::sync::mpsc;

use crate::client::ControlClient;

/// Repeats of one event within this window are folded into one summary.
pub const FOLD_WINDOW: Duration = Duration::from_secs(10);
/// Events waiting to be sent; more are dropped (and counted in the node's log).
const QUEUE: usize = 256;
/// Distinct events being folded at once; past this, all are flushed early.
const MAX_FOLDING: usize = 1024;

/// A cheap handle that queues events for the control plane.
#[derive(Clone)]
pub struct EventReporter {
    queue: mpsc::Sender<NodeEvent>,
}

impl EventReporter {
    /// Starts the task that sends node `node`'s events through `client`. Must be called
    /// within a tokio runtime; the task ends when every handle is dropped.
    pub fn start(client: ControlClient, node: String) -> Self {
        Self::with_window(client, node, FOLD_WINDOW)
    }

    /// [`EventReporter::start`] with a fold window other than [`FOLD_WINDOW`].
    pub fn with_window(client: ControlClient, node: String, window: Duration) -> Self {
        let (queue, events) = mpsc::channel(QUEUE);
        tokio::spawn(send_loop(client, node, events, window));
        Self { queue }
    }

    /// Queues `event`; never waits. When the queue is full the event is dropped with a
    /// warning in the node's log.
    pub fn report(&self, event: NodeEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.queue.try_send(event) {
            tracing::warn!(kind = %event.kind, "event queue full; event dropped: {}", event.message);
        }
    }
}

/// Identifies "the same event" for folding.
type FoldKey = (
    strata_core::EventKind,
    Option<strata_core::EnvName>,
    Option<strata_core::ServiceName>,
    String,
);

struct Folding {
    event: NodeEvent,
    opened: Instant,
    repeats: u64,
}

async fn send_loop(
    client: ControlClient,
    node: String,
    mut events: mpsc::Receiver<NodeEvent>,
    window: Duration,
) {
    let mut folding: HashMap<FoldKey, Folding> = HashMap::new();
    let mut tick = tokio::time::interval((window / 10).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = events.recv() => {
                let Some(event) = received else { break };
                let key = (
                    event.kind,
                    event.env.clone(),
                    event.service.clone(),
                    event.message.clone(),
                );
                if let Some(open) = folding.get_mut(&key) {
                    open.repeats += 1;
                    continue;
                }
                send(&client, &node, &event).await;
                folding.insert(key, Folding { event, opened: Instant::now(), repeats: 0 });
                if folding.len() > MAX_FOLDING {
                    flush(&client, &node, &mut folding, |_| true).await;
                }
            }
            _ = tick.tick() => {
                flush(&client, &node, &mut folding, |open| open.opened.elapsed() >= window).await;
            }
        }
    }
    flush(&client, &node, &mut folding, |_| true).await;
}

/// Closes the windows `closing` selects, sending a summary for each that saw repeats.
async fn flush(
    client: &ControlClient,
    node: &str,
    folding: &mut HashMap<FoldKey, Folding>,
    closing: impl Fn(&Folding) -> bool,
) {
    let closed: Vec<FoldKey> = folding
        .iter()
        .filter(|(_, open)| closing(open))
        .map(|(key, _)| key.clone())
        .collect();
    for key in closed {
        let Some(open) = folding.remove(&key) else {
            continue;
        };
        if open.repeats > 0 {
            let summary = NodeEvent {
                message: format!(
                    "{} ({} more in the last {})",
                    open.event.message,
                    open.repeats,
                    humantime::format_duration(Duration::from_secs(
                        open.opened.elapsed().as_secs().max(1)
                    ))
                ),
                ..open.event
            };
            send(client, node, &summary).await;
        }
    }
}

async fn send(client: &ControlClient, node: &str, event: &NodeEvent) {
    if let Err(error) = client.event(node, event).await {
        tracing::warn!(%error, kind = %event.kind, "could not record event: {}", event.message);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::routing::post;
    use axum::{Json, Router};

    use super::*;

    type Received = Arc<Mutex<Vec<(String, NodeEvent)>>>;

    /// A control plane stand-in on loopback that keeps what it is sent.
    async fn receiver() -> (String, Received, tokio::task::JoinHandle<()>) {
        let received: Received = Arc::default();
        let app = Router::new()
            .route(
                "/v1/nodes/{name}/events",
                post(
                    |State(received): State<Received>,
                     Path(node): Path<String>,
                     Json(event): Json<NodeEvent>| async move {
                        received.lock().unwrap().push((node, event));
                        axum::http::StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (url, received, server)
    }

    fn refused(destination: &str) -> NodeEvent {
        NodeEvent {
            kind: strata_core::EventKind::OutboundRefused,
            env: Some(strata_core::EnvName::from_static("dev")),
            service: Some(strata_core::ServiceName::from_static("front")),
            instance: Some(strata_core::InstanceId::from_static("front-1")),
            message: format!("front called {destination}: refused"),
        }
    }

    #[tokio::test]
    async fn repeats_fold_into_one_summary_per_window() {
        let (url, received, server) = receiver().await;
        let window = Duration::from_millis(300);
        let reporter =
            EventReporter::with_window(ControlClient::new(&url, None), "n1".into(), window);
        for _ in 0..30 {
            reporter.report(refused("http://example.com"));
        }
        reporter.report(refused("http://10.0.0.1"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.lock().unwrap().len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(window).await;
        let got: Vec<(String, String)> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(node, e)| (node.clone(), e.message.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "n1".into(),
                    "front called http://example.com: refused".into()
                ),
                ("n1".into(), "front called http://10.0.0.1: refused".into()),
                (
                    "n1".into(),
                    "front called http://example.com: refused (29 more in the last 1s)".into()
                ),
            ]
        );
        server.abort();
    }
}
