//! The event log: records, with a sequence number and the actor, and the events nodes
//! report.

use super::*;

impl ControlPlane {
    /// Appends an event. Events are best effort: a failure is logged, never fatal. A
    /// controller's events are fenced like its other writes: a deposed leader records nothing.
    pub async fn record(&self, mut event: Event) {
        let now = now_millis();
        let counter = self.event_counter.fetch_add(1, Ordering::Relaxed) % 1000;
        event.seq = now * 1000 + counter;
        event.at = now;
        let from_controller = event.actor == "controller";
        if from_controller {
            event.actor = format!("controller@{}", self.config.server_id);
        }
        let key = keys::event(event.seq);
        let txn = Txn::new().when(&key, 0).put(&key, encode(&event));
        let written = if from_controller {
            self.controller_txn(txn).await.map(|_| ())
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

    /// Records what node `node` reports having seen. Only the kinds nodes may report
    /// ([`strata_core::EventKind::reported_by_nodes`])
    /// are accepted: a node cannot write what looks like a controller's decision.
    pub async fn record_node_event(
        &self,
        node: &str,
        event: NodeEvent,
    ) -> Result<(), ControlError> {
        if !event.kind.reported_by_nodes() {
            return Err(ControlError::bad_request(
                format!("nodes cannot record events of kind `{}`", event.kind),
                Some(format!(
                    "the kinds a node may record are {}",
                    strata_core::EventKind::ALL
                        .iter()
                        .filter(|kind| kind.reported_by_nodes())
                        .map(|kind| kind.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
        let mut message = event.message;
        if message.len() > NodeEvent::MAX_MESSAGE {
            let mut cut = NodeEvent::MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.record(Event {
            env: event.env,
            service: event.service,
            instance: event.instance,
            node: Some(node.to_string()),
            actor: format!("agent:{node}"),
            ..Self::event(event.kind, message)
        })
        .await;
        Ok(())
    }

    pub(crate) fn event(kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            seq: 0,
            at: 0,
            kind,
            env: None,
            service: None,
            instance: None,
            node: None,
            message: message.into(),
            actor: "controller".into(),
        }
    }
}
