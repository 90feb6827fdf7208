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

impl Default for LivenessThresholds {
    fn default() -> Self {
        Self {
            suspect_after_ms: 600,
            down_after_ms: 2_000,
        }
    }
}

/// The state a node should be in now. A draining node stays draining while it heartbeats.
pub fn node_state(
    current: NodeState,
    last_heartbeat: Millis,
    now: Millis,
    thresholds: LivenessThresholds,
) -> NodeState {
    let silence = now.saturating_sub(last_heartbeat);
    if silence >= thresholds.down_after_ms {
        NodeState::Down
    } else if silence >= thresholds.suspect_after_ms {
        match current {
            NodeState::Down => NodeState::Down,
            _ => NodeState::Suspect,
        }
    } else {
        match current {
            NodeState::Draining => NodeState::Draining,
            // A down node stays down until it registers again (new epoch): fenced.
            NodeState::Down => NodeState::Down,
            _ => NodeState::Ready,
        }
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
            (Draining, 900, 1000, Draining),
            (Draining, 0, 500, Suspect),
            (Draining, 0, 5000, Down),
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
