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

/// The liveness a node should have now (ready, suspect or down; drains are a separate flag).
pub fn node_state(
    current: NodeState,
    last_heartbeat: Millis,
    now: Millis,
    thresholds: LivenessThresholds,
) -> NodeState {
    let silence = now.saturating_sub(last_heartbeat);
    if silence >= thresholds.down_after_ms {
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

#[cfg(test)]
mod tests {
    use super::*;
    use NodeState::*;

    #[test]
    fn liveness_table() {
        let t = LivenessThresholds {
            suspect_after_ms: 300,
            down_after_ms: 1000,
        };
        let table = [
            (Ready, 0, 100, Ready),
            (Ready, 0, 300, Suspect),
            (Suspect, 0, 999, Suspect),
            (Suspect, 900, 1000, Ready),
            (Ready, 0, 1000, Down),
            (Down, 900, 1000, Down),
            (Down, 0, 500, Down),
            (Ready, 2000, 1000, Ready), // clock skew: heartbeat "in the future"
        ];
        for (current, last, now, want) in table {
            assert_eq!(
                node_state(current, last, now, t),
                want,
                "{current:?} {last} {now}"
            );
        }
    }
}
