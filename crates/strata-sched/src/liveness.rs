//! Node liveness: how long since a node's last heartbeat decides whether it is ready,
//! suspect or down. Thresholds come from the server's config; the time is passed in.

use strata_core::{Millis, NodeState};

/// Missed-heartbeat thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessThresholds {
    /// Silence after which a ready node is suspect (no new work goes there).
    pub suspect_after_ms: u64,
    /// Silence after which a node is down (its instances are replaced).
    pub down_after_ms: u64,
}

impl LivenessThresholds {
    /// For `strata dev`, where the node and the control plane share one process and a node
    /// cannot fail alone: only a very long silence (a suspended process) counts.
    pub fn lenient() -> Self {
        Self {
            suspect_after_ms: 5_000,
            down_after_ms: 15_000,
        }
    }
}

/// The defaults of `strata server`, for agents heartbeating every 100 ms: a node is suspect
/// after 3 missed heartbeats and down after 6, so its work serves elsewhere within a second.
impl Default for LivenessThresholds {
    fn default() -> Self {
        Self {
            suspect_after_ms: 300,
            down_after_ms: 600,
        }
    }
}

/// Whether a node's agent still waits on the control plane: a node's agent holds a blocking
/// query of its assignments open all the time; when the connection that carried it breaks
/// (the agent's process died, its machine reset the connection), the server sees the query
/// abandoned by its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// A query is open, or answered and not abandoned since: nothing says the agent is gone.
    Held,
    /// The node's last query was abandoned by its caller, and none was opened since.
    Abandoned,
}

/// The liveness a node should have now (ready, suspect or down; drains are a separate flag).
/// Silence past `down_after_ms` makes a node down; so does silence past `suspect_after_ms`
/// once its agent's connection broke ([`Connection::Abandoned`]): a process that died is
/// known dead sooner than a machine gone quiet, whose connection may still look open.
pub fn node_state(
    current: NodeState,
    last_heartbeat: Millis,
    now: Millis,
    thresholds: LivenessThresholds,
    connection: Connection,
) -> NodeState {
    let silence = now.saturating_sub(last_heartbeat);
    if silence >= thresholds.down_after_ms
        || (silence >= thresholds.suspect_after_ms && connection == Connection::Abandoned)
    {
        NodeState::Down
    } else if current == NodeState::Down {
        // A down node stays down until it registers again (new epoch): fenced.
        NodeState::Down
    } else if silence >= thresholds.suspect_after_ms {
        NodeState::Suspect
    } else {
        NodeState::Ready
    }
}

/// What the control plane knows of a node it may remove: its state, whether this server heard
/// from it within the down threshold, the instance records still on it, and (for forgetting
/// it unasked) how long ago its last heartbeat was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRemains {
    pub state: NodeState,
    pub heard_recently: bool,
    pub instances: usize,
}

/// Why node `name` may not be removed now (`None`: it may): an operator removes only a node
/// that is down, silent, and holds no instance record (its instances are replaced and their
/// records forgotten soon after it goes down).
pub fn removal_refusal(name: &str, node: NodeRemains) -> Option<(String, String)> {
    if node.heard_recently || node.state != NodeState::Down {
        return Some((
            format!(
                "node {name} is {} and heard from; only a down node can be removed",
                format!("{:?}", node.state).to_lowercase()
            ),
            format!("stop its agent (or `strata node drain {name}` first to move its work with no downtime); once it is down, remove it"),
        ));
    }
    if node.instances > 0 {
        return Some((
            format!(
                "node {name} still holds {} instance record(s)",
                node.instances
            ),
            "they are replaced elsewhere and forgotten shortly after the node goes down; try again in a few seconds (see `strata status`)".to_string(),
        ));
    }
    None
}

/// Whether a down node is forgotten unasked: it may be removed ([`removal_refusal`]) and has
/// been silent for `forget_after_ms` (0: never forget) by the control plane's clock.
pub fn forget_now(
    node: NodeRemains,
    last_heartbeat: Millis,
    now: Millis,
    forget_after_ms: u64,
) -> bool {
    forget_after_ms > 0
        && removal_refusal("", node).is_none()
        && now.saturating_sub(last_heartbeat) >= forget_after_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeState::*;

    #[test]
    fn removal_and_forgetting_table() {
        let node = |state, heard_recently, instances| NodeRemains {
            state,
            heard_recently,
            instances,
        };
        const DAY: u64 = 86_400_000;
        // (node, last heartbeat, now, forget after, may be removed, forgotten unasked)
        let table = [
            (node(Down, false, 0), 0, DAY, DAY, true, true),
            (node(Down, false, 0), 1, DAY, DAY, true, false),
            (node(Down, false, 0), 0, DAY, 0, true, false),
            (node(Down, false, 2), 0, 2 * DAY, DAY, false, false),
            (node(Down, true, 0), 0, 2 * DAY, DAY, false, false),
            (node(Suspect, false, 0), 0, 2 * DAY, DAY, false, false),
            (node(Ready, true, 0), 0, 2 * DAY, DAY, false, false),
            (node(Draining, false, 0), 0, 2 * DAY, DAY, false, false),
        ];
        for (row, (node, last, now, after, removable, forgotten)) in table.into_iter().enumerate() {
            assert_eq!(
                removal_refusal("n1", node).is_none(),
                removable,
                "row {row}: {node:?}"
            );
            assert_eq!(
                forget_now(node, last, now, after),
                forgotten,
                "row {row}: {node:?}"
            );
        }
        let (why, hint) = removal_refusal("n1", node(Ready, true, 0)).unwrap();
        assert!(
            why.contains("node n1 is ready") && hint.contains("drain n1"),
            "{why} {hint}"
        );
        let (why, _) = removal_refusal("n1", node(Down, false, 3)).unwrap();
        assert!(why.contains("3 instance record(s)"), "{why}");
    }

    #[test]
    fn liveness_table() {
        let t = LivenessThresholds {
            suspect_after_ms: 300,
            down_after_ms: 1000,
        };
        use Connection::{Abandoned, Held};
        let table = [
            (Ready, 0, 100, Held, Ready),
            (Ready, 0, 300, Held, Suspect),
            (Suspect, 0, 999, Held, Suspect),
            (Suspect, 900, 1000, Held, Ready),
            (Ready, 0, 1000, Held, Down),
            (Down, 900, 1000, Held, Down),
            (Down, 0, 500, Held, Down),
            (Ready, 2000, 1000, Held, Ready), // clock skew: heartbeat "in the future"
            // Its agent's connection broke: down once silent past the suspect threshold.
            (Ready, 0, 299, Abandoned, Ready),
            (Ready, 0, 300, Abandoned, Down),
            (Suspect, 0, 450, Abandoned, Down),
            // Still beating (its next query on its way): nothing changes.
            (Ready, 900, 1000, Abandoned, Ready),
            (Suspect, 900, 1000, Abandoned, Ready),
        ];
        for (current, last, now, connection, want) in table {
            assert_eq!(
                node_state(current, last, now, t, connection),
                want,
                "{current:?} {last} {now} {connection:?}"
            );
        }
    }
}
