//! The event log: what happened to the cluster, appended under `/events/` with a sequence
//! number and who did it. Controllers' events are fenced like their other writes (a deposed
//! leader records nothing); nodes may record only the kinds they observe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata_core::api::NodeEvent;
use strata_core::{keys, Actor, Event, EventKind, NodeName};
use strata_store::{Store, Txn};

use crate::clock::Clock;
use crate::leader::Fence;
use crate::plane::encode;
use crate::ControlError;

/// The event log of one server.
pub struct EventLog {
    store: Arc<dyn Store>,
    fence: Fence,
    clock: Arc<dyn Clock>,
    server_id: String,
    /// Events written in the same millisecond, for unique sequence numbers.
    counter: AtomicU64,
}

/// A controller's event of `kind`; set its env, service, instance or node as it concerns.
pub fn event(kind: EventKind, message: impl Into<String>) -> Event {
    Event {
        seq: 0,
        at: 0,
        kind,
        env: None,
        service: None,
        instance: None,
        node: None,
        message: message.into(),
        actor: Actor::Controller { server: None },
    }
}

impl EventLog {
    pub fn new(
        store: Arc<dyn Store>,
        fence: Fence,
        clock: Arc<dyn Clock>,
        server_id: String,
    ) -> EventLog {
        EventLog {
            store,
            fence,
            clock,
            server_id,
            counter: AtomicU64::new(0),
        }
    }

    /// Appends an event. Events are best effort: a failure is logged, never fatal. A
    /// controller's events are fenced like its other writes: a deposed leader records nothing.
    pub async fn record(&self, event: Event) {
        let from_controller = event.actor.is_controller();
        let (key, event) = self.stamp(event);
        let txn = Txn::new().when(&key, 0).put(&key, encode(&event));
        let written = if from_controller {
            self.fence.txn(txn).await.map(|_| ())
        } else {
            self.store
                .txn(txn)
                .await
                .map(|_| ())
                .map_err(ControlError::from)
        };
        match written {
            Ok(()) => {
                tracing::info!(kind = %event.kind, service = ?event.service, "{}", event.message)
            }
            Err(ControlError::NotLeader) => {}
            Err(error) => tracing::warn!(%error, "could not record event"),
        }
    }

    /// Gives `event` its sequence number, time and (a controller's) server; returns its key.
    fn stamp(&self, mut event: Event) -> (String, Event) {
        let now = self.clock.now_millis();
        let counter = self.counter.fetch_add(1, Ordering::Relaxed) % 1000;
        event.seq = now * 1000 + counter;
        event.at = now;
        // A controller's event names the server it ran on.
        if event.actor.is_controller() {
            event.actor = Actor::controller(&self.server_id);
        }
        (keys::event(event.seq), event)
    }

    /// Adds a controller's `event` to `txn`, so it is written with (and only with) the
    /// change it tells of. The caller logs it once the transaction commits.
    pub fn stage(&self, txn: Txn, event: Event) -> Txn {
        let (key, event) = self.stamp(event);
        txn.when(&key, 0).put(&key, encode(&event))
    }

    /// Records what node `node` reports having seen. Only the kinds nodes may report
    /// ([`strata_core::EventKind::reported_by_nodes`]) are accepted: a node cannot write what
    /// looks like a controller's decision.
    pub async fn record_node_event(
        &self,
        node: &NodeName,
        report: NodeEvent,
    ) -> Result<(), ControlError> {
        if !report.kind.reported_by_nodes() {
            return Err(ControlError::bad_request(
                format!("nodes cannot record events of kind `{}`", report.kind),
                Some(format!(
                    "the kinds a node may record are {}",
                    EventKind::ALL
                        .iter()
                        .filter(|kind| kind.reported_by_nodes())
                        .map(|kind| kind.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
        let mut message = report.message;
        if message.len() > NodeEvent::MAX_MESSAGE {
            let mut cut = NodeEvent::MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.record(Event {
            env: report.env,
            service: report.service,
            instance: report.instance,
            node: Some(node.clone()),
            actor: Actor::Agent(node.to_string()),
            ..event(report.kind, message)
        })
        .await;
        Ok(())
    }
}
