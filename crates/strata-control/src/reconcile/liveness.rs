//! Node liveness: judged on the leader from the heartbeats held in memory, each change of a
//! node's state written to the store (which wakes the reconciler through the reflector).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_core::{keys, EventKind, Node, NodeName, NodeState};
use strata_sched::liveness::node_state;
use strata_store::{StoreError, Txn};

use crate::plane::{encode, ControlPlane};
use crate::ControlError;

/// How many nodes' changes of state are written at once (each its own transaction, which
/// the store commits together): a pass after a mass event (a zone lost, a leader's first
/// look) takes a few commits, not one per node, so the next pass is not held up.
const WRITES_AT_ONCE: usize = 256;

/// How often the leader looks for down nodes to forget.
const FORGET_EVERY: Duration = Duration::from_secs(30);

/// The least time between two warnings that beats were lost.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Judges node liveness every `liveness_tick` from the heartbeats held in memory, and writes
/// each change of state (which wakes the reconciler through the store's watch). Runs until the
/// task is dropped.
pub async fn run_liveness(plane: Arc<ControlPlane>) {
    let tick = plane.config.liveness_tick;
    let stall = Duration::from_millis(plane.config.liveness.suspect_after_ms);
    // The term judged under last: a term this loop has not seen is a new leadership, even
    // when it lost and won again between two of its turns (or while it waited on the store).
    let mut term_before = None;
    let mut warned = None;
    // Whether the last pass was held back by a store that did not answer (one event a spell).
    let mut store_paused = false;
    let mut wake_at = tokio::time::Instant::now() + tick;
    let mut forget_at = tokio::time::Instant::now() + FORGET_EVERY;
    loop {
        tokio::time::sleep_until(wake_at).await;
        // How late this task woke: the process or its runtime could not run (a suspended VM,
        // a machine starved of CPU). How long the last pass took is not a stall: beats were
        // received meanwhile on their own task.
        let late = wake_at.elapsed();
        let now = plane.monotonic_ms();
        let term = plane.term().map(|term| term.revision);
        let leads = term.is_some();
        if leads && term != term_before {
            // A new leader knows no heartbeats yet: every node gets a full grace period.
            plane.heartbeats().forgive_until(now);
            plane.heartbeats().grace_unknown_nodes(now);
            record_pause(
                &plane,
                format!(
                    "liveness paused: this server began to lead; every node has {} ms to be heard from before it can be marked down",
                    plane.config.liveness.down_after_ms
                ),
            );
        }
        term_before = term;
        if let Some(at) = plane.heartbeats().take_dropped().filter(|_| leads) {
            // Beats were lost before they were read (this server's socket buffer was full):
            // whose, nobody can tell. Forgive every node's silence up to then.
            if warned.is_none_or(|w: tokio::time::Instant| w.elapsed() >= WARN_EVERY) {
                warned = Some(tokio::time::Instant::now());
                tracing::warn!(
                    "heartbeat datagrams were lost at this server (its receive buffer was full): not blaming nodes for the gap; this server cannot keep up with its fleet's beats"
                );
            }
            plane.heartbeats().forgive_until(at);
            record_pause(
                &plane,
                "liveness paused: heartbeat datagrams were lost at this server (its receive buffer was full); no node is blamed for the gap".to_string(),
            );
        }
        if leads && late > stall {
            // Nodes did not go silent: this server did. Forgive the gap instead of
            // declaring them down.
            tracing::warn!(
                late_ms = late.as_millis() as u64,
                "liveness checker woke late; not blaming nodes for the gap"
            );
            plane.heartbeats().forgive_until(now);
            record_pause(
                &plane,
                format!(
                    "liveness paused for {} ms: this server stalled (not its nodes); no node is blamed for the gap",
                    late.as_millis()
                ),
            );
        }
        if leads {
            let judged = plane.heartbeats().judged_now(now);
            if now.saturating_sub(judged) > plane.config.liveness.down_after_ms
                && warned.is_none_or(|w: tokio::time::Instant| w.elapsed() >= WARN_EVERY)
            {
                warned = Some(tokio::time::Instant::now());
                tracing::warn!(
                    behind_ms = now - judged,
                    "the heartbeat receiver is behind: liveness waits for it rather than blame nodes whose beats it has not read"
                );
            }
            match judge_liveness(&plane, judged).await {
                Ok(()) | Err(ControlError::NotLeader) => store_paused = false,
                Err(ControlError::Store(StoreError::Unavailable(why))) => {
                    plane.heartbeats().forgive_until(judged);
                    if !store_paused {
                        store_paused = true;
                        tracing::warn!(%why, "liveness paused: no node is marked down while the store is unavailable or slow");
                        record_pause(
                            &plane,
                            format!("liveness paused: {why}; no node is marked down until it answers, and then every node has {} ms to be heard from", plane.config.liveness.down_after_ms),
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "liveness pass failed"),
            }
        }
        if leads && tokio::time::Instant::now() >= forget_at {
            forget_at = tokio::time::Instant::now() + FORGET_EVERY;
            forget_down_nodes(&plane);
        }
        wake_at = tokio::time::Instant::now() + tick;
    }
}

/// Removes the nodes down, silent and empty for the forget period, each with an event, on a
/// task of its own (the store may be slow; judging goes on).
fn forget_down_nodes(plane: &Arc<ControlPlane>) {
    let forgotten = plane.nodes_to_forget();
    if forgotten.is_empty() {
        return;
    }
    let plane = Arc::clone(plane);
    tokio::spawn(async move {
        for name in forgotten {
            if let Err(error) = plane.remove_node(&name, crate::Remover::Leader).await {
                tracing::debug!(node = %name, %error, "a down node was not forgotten");
            }
        }
    });
}

/// Records that liveness forgave a gap of its own, in the event log, without holding up the
/// next judgement (the store may be what is slow).
fn record_pause(plane: &Arc<ControlPlane>, message: String) {
    let plane = Arc::clone(plane);
    tokio::spawn(async move {
        let event = crate::event_log::event(EventKind::LivenessPaused, message);
        plane.event_log().record(event).await;
    });
}

/// One liveness pass at `now` (monotonic ms): every node's state from its last heartbeat,
/// each change written (with its event, in the same transaction). Public so tests can drive
/// it with their own clock.
pub async fn judge_liveness(plane: &ControlPlane, now: u64) -> Result<(), ControlError> {
    // Every node is looked at from the reflector (no listing of the store each tick); only
    // the ones whose state changes are copied out and written.
    plane.reflector_caught_up().await?;
    let changes: Vec<(Node, u64, NodeState, u64)> = {
        let state = plane.reflector().read();
        let heartbeats = plane.heartbeats();
        let roster = heartbeats.roster(state.node_set_version(), || {
            state.nodes().map(|n| n.value.name.clone()).collect()
        });
        // A node not heard from since this server began to lead gets a grace period.
        let led_since = heartbeats.led_since();
        let thresholds = plane.config.liveness;
        // Only two kinds of node can change state: one silent past the suspect threshold,
        // and one not ready now. The rest (nearly all, nearly always) stay ready.
        let silent = roster.iter().filter_map(|(name, slot)| {
            let last = slot.last().unwrap_or(led_since);
            (now.saturating_sub(last) >= thresholds.suspect_after_ms).then_some(name)
        });
        let candidates: std::collections::BTreeSet<&NodeName> =
            silent.chain(state.unready_nodes()).collect();
        let wall_now = plane.now();
        candidates
            .into_iter()
            .filter_map(|name| {
                let versioned = state.node(name)?;
                let node = &versioned.value;
                // A registration is a sign of life too, whichever server took it (only that
                // server noted it as a beat): the record's time of it counts, so a node that
                // registered through a follower is not judged on the leader's stale beats
                // (it was marked down at once, and registered again, every 100 ms).
                let recorded = now.saturating_sub(wall_now.saturating_sub(node.last_heartbeat));
                let last = heartbeats.last(name).unwrap_or(led_since).max(recorded);
                let next = node_state(
                    node.state,
                    last,
                    now,
                    thresholds,
                    heartbeats.connection(name),
                );
                (next != node.state).then(|| (node.clone(), versioned.revision, next, last))
            })
            .collect()
    };
    if changes.is_empty() {
        return Ok(());
    }
    // A node is marked down on evidence that it went silent, not the control plane: while
    // the store does not answer promptly, no node is (its beats may be lost behind the
    // store: a registration it could not make, a reply it could not get), and every node's
    // silence is forgiven up to now, so it gets a full grace period once the store is back.
    if changes
        .iter()
        .any(|(_, _, next, _)| *next == NodeState::Down)
    {
        let limit = Duration::from_millis(plane.config.liveness.suspect_after_ms.max(100));
        let answered = tokio::time::timeout(limit, plane.store().revision()).await;
        if !matches!(answered, Ok(Ok(_))) {
            plane.heartbeats().forgive_until(now);
            return Err(ControlError::Store(StoreError::Unavailable(format!(
                "the store did not answer within {} ms",
                limit.as_millis()
            ))));
        }
    }
    let written: Vec<Result<bool, ControlError>> = futures::stream::iter(changes)
        .map(|(node, revision, next, last)| {
            write_state(plane, node, revision, next, now.saturating_sub(last))
        })
        .buffer_unordered(WRITES_AT_ONCE)
        .collect()
        .await;
    if written.iter().any(|w| matches!(w, Ok(true))) {
        plane.kick();
    }
    // A node whose record changed meanwhile is judged again on the next tick.
    written
        .into_iter()
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

/// Writes `node`'s new state `next` if its record is still at `revision`, with its event;
/// whether it was written.
async fn write_state(
    plane: &ControlPlane,
    mut node: Node,
    revision: u64,
    next: NodeState,
    silent_ms: u64,
) -> Result<bool, ControlError> {
    let previous = node.state;
    node.state = next;
    if next == NodeState::Down {
        // When it was last heard from, by the wall clock: what its record keeps, and what
        // forgetting a down node counts from.
        node.last_heartbeat = plane.now().saturating_sub(silent_ms);
    }
    let key = keys::node(&node.name);
    let mut event = crate::event_log::event(
        match next {
            NodeState::Ready => EventKind::NodeReady,
            NodeState::Suspect => EventKind::NodeSuspect,
            NodeState::Down => EventKind::NodeDown,
            NodeState::Draining => EventKind::NodeDraining,
        },
        match next {
            NodeState::Ready => format!(
                "node {}: {} -> ready (heartbeats resumed)",
                node.name,
                format!("{previous:?}").to_lowercase()
            ),
            _ => format!(
                "node {}: {} -> {} (no heartbeat for {silent_ms} ms)",
                node.name,
                format!("{previous:?}").to_lowercase(),
                format!("{next:?}").to_lowercase(),
            ),
        },
    );
    event.node = Some(node.name.clone());
    let message = event.message.clone();
    let kind = event.kind;
    let txn = Txn::new().when(&key, revision).put(&key, encode(&node));
    let txn = plane.event_log().stage(txn, event);
    let committed = plane.controller_txn(txn).await?.is_committed();
    if committed {
        tracing::info!(%kind, node = %node.name, "{message}");
    }
    Ok(committed)
}
