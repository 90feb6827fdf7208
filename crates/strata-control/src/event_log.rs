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

/// Deletes the events older than `before` (milliseconds since the epoch); returns how many
/// went.
pub async fn prune(store: &Arc<dyn Store>, before: u64) -> Result<usize, ControlError> {
    crate::leader::delete_keys_before(store, keys::EVENTS, &keys::event(before * 1000)).await
}

/// On the leader, every minute: drops events older than the retention.
pub async fn run_retention(plane: Arc<crate::ControlPlane>) {
    crate::leader::prune_on_leader(
        plane,
        "events",
        |config| config.event_retention,
        |plane, before| async move { prune(plane.store(), before).await },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::RedbStore;

    #[tokio::test]
    async fn events_past_the_retention_go_and_the_recent_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("s")).await.unwrap());
        // 1,200 events a millisecond apart (more than one page of deletes), and a record
        // under another prefix that sorts near them.
        for at in 0..1_200u64 {
            let mut record = event(EventKind::NodeReady, format!("event {at}"));
            record.at = 10_000 + at;
            record.seq = record.at * 1000;
            store
                .put(&keys::event(record.seq), encode(&record))
                .await
                .unwrap();
        }
        store.put("/evidence", b"kept".to_vec()).await.unwrap();
        assert_eq!(prune(&store, 11_100).await.unwrap(), 1_100);
        let left = store.list(keys::EVENTS).await.unwrap().kvs;
        assert_eq!(left.len(), 100);
        let first: Event = serde_json::from_slice(&left[0].value).unwrap();
        assert_eq!(
            first.at, 11_100,
            "the first kept is the first at the cutoff"
        );
        assert_eq!(prune(&store, 11_100).await.unwrap(), 0);
        assert!(store.get("/evidence").await.unwrap().is_some());
    }
}
