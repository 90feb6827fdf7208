//! Node liveness: judged on the leader from the heartbeats held in memory, each change of a
//! node's state written to the store (which wakes the reconciler through the reflector).

use std::sync::Arc;

use strata_core::{keys, EventKind, Node, NodeState};
use strata_sched::liveness::node_state;
use strata_store::Txn;

use crate::plane::{encode, ControlPlane};
use crate::ControlError;

/// Judges node liveness every `liveness_tick` from the heartbeats held in memory, and writes
/// each change of state (which wakes the reconciler through the store's watch). Runs until the
/// task is dropped.
pub async fn run_liveness(plane: Arc<ControlPlane>) {
    let tick = plane.config.liveness_tick;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = plane.monotonic_ms();
    let mut led_before = false;
    loop {
        ticker.tick().await;
        let now = plane.monotonic_ms();
        let leads = plane.term().is_some();
        if leads && !led_before {
            // A new leader knows no heartbeats yet: every node gets a full grace period.
            plane.heartbeats().forgive_until(now);
            plane.heartbeats().grace_unknown_nodes(now);
        }
        led_before = leads;
        if !leads {
            last_tick = now;
            continue;
        }
        // If this process itself stalled (a long GC-like pause, a suspended VM), nodes did not
        // go silent: forgive the gap instead of declaring them down.
        if now.saturating_sub(last_tick) > plane.config.liveness.suspect_after_ms {
            tracing::warn!(
                stalled_ms = now - last_tick,
                "liveness checker stalled; not blaming nodes"
            );
            plane.heartbeats().forgive_until(now);
        }
        last_tick = now;
        match judge_liveness(&plane, now).await {
            Ok(()) | Err(ControlError::NotLeader) => {}
            Err(error) => tracing::warn!(%error, "liveness pass failed"),
        }
    }
}

/// One liveness pass at `now` (monotonic ms): every node's state from its last heartbeat,
/// each change written. Public so tests can drive it with their own clock.
pub async fn judge_liveness(plane: &ControlPlane, now: u64) -> Result<(), ControlError> {
    // Every node is looked at from the reflector (no listing of the store each tick); only
    // the ones whose state changes are copied out and written.
    plane.reflector_caught_up().await?;
    let changes: Vec<(Node, u64, NodeState, u64)> = {
        let state = plane.reflector().read();
        state
            .nodes()
            .filter_map(|versioned| {
                let node = &versioned.value;
                // A node not heard from since this server began to lead gets a grace period.
                let last = plane
                    .heartbeats()
                    .last(&node.name)
                    .unwrap_or(plane.heartbeats().led_since());
                let next = node_state(node.state, last, now, plane.config.liveness);
                (next != node.state).then(|| (node.clone(), versioned.revision, next, last))
            })
            .collect()
    };
    for (mut node, revision, next, last) in changes {
        let previous = node.state;
        node.state = next;
        let key = keys::node(&node.name);
        let committed = plane
            .controller_txn(Txn::new().when(&key, revision).put(&key, encode(&node)))
            .await?
            .is_committed();
        if committed {
            let mut event = crate::event_log::event(
                match next {
                    NodeState::Ready => EventKind::NodeReady,
                    NodeState::Suspect => EventKind::NodeSuspect,
                    NodeState::Down => EventKind::NodeDown,
                    NodeState::Draining => EventKind::NodeDraining,
                },
                format!(
                    "node {}: {} -> {} (no heartbeat for {} ms)",
                    node.name,
                    format!("{previous:?}").to_lowercase(),
                    format!("{next:?}").to_lowercase(),
                    now.saturating_sub(last)
                ),
            );
            event.node = Some(node.name.clone());
            plane.event_log().record(event).await;
            plane.kick();
        }
    }
    Ok(())
}
