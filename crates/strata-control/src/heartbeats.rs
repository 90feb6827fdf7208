//! Nodes' heartbeats, kept in memory on the server that leads: when each node was last heard
//! from, on the monotonic clock. A heartbeat costs no store write and wakes no watcher; after a
//! restart or a change of leader every node gets a full grace period (as Nomad resets TTLs on
//! a new leader). Liveness is judged from these by [`crate::reconcile::judge_liveness`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

/// What became of a heartbeat datagram ([`crate::beats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatagramOutcome {
    /// A beat of a ready node at its epoch: noted.
    Taken,
    /// Received by a follower and passed to the leader.
    Forwarded,
    /// Not a beat, not signed by its node, or of a node the cluster does not know.
    Refused,
    /// A number already seen (a replay, or reordered on the way).
    Replayed,
    /// Of another epoch or a node declared down: it must register again (over HTTP).
    Stale,
}

impl DatagramOutcome {
    pub const ALL: [DatagramOutcome; 5] = [
        DatagramOutcome::Taken,
        DatagramOutcome::Forwarded,
        DatagramOutcome::Refused,
        DatagramOutcome::Replayed,
        DatagramOutcome::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatagramOutcome::Taken => "taken",
            DatagramOutcome::Forwarded => "forwarded",
            DatagramOutcome::Refused => "refused",
            DatagramOutcome::Replayed => "replayed",
            DatagramOutcome::Stale => "stale",
        }
    }
}

/// When each node was last heard from.
pub struct Heartbeats {
    clock: Arc<dyn Clock>,
    /// Silence longer than this makes a node down.
    down_after_ms: u64,
    /// Last heartbeat of each node, in monotonic ms.
    last: Mutex<HashMap<String, u64>>,
    /// When this server began to lead, in monotonic ms.
    led_since: AtomicU64,
    /// Beats each node sent by datagram since its last HTTP heartbeat.
    datagrams: Mutex<HashMap<String, u64>>,
    /// Datagrams received, by outcome (in [`DatagramOutcome::ALL`] order), since start.
    outcomes: [AtomicU64; 5],
}

impl Heartbeats {
    pub fn new(clock: Arc<dyn Clock>, down_after_ms: u64) -> Heartbeats {
        Heartbeats {
            clock,
            down_after_ms,
            last: Mutex::default(),
            led_since: AtomicU64::new(0),
            datagrams: Mutex::default(),
            outcomes: Default::default(),
        }
    }

    /// Notes a heartbeat of `node` now.
    pub fn note(&self, node: &str) {
        let now = self.clock.monotonic_ms();
        let mut last = self.last.lock().expect("heartbeats lock");
        match last.get_mut(node) {
            Some(at) => *at = now,
            None => {
                last.insert(node.to_string(), now);
            }
        }
    }

    /// Notes a beat of `node` that came by datagram ([`crate::beats`]).
    pub fn note_datagram(&self, node: &str) {
        self.note(node);
        let mut datagrams = self.datagrams.lock().expect("heartbeats lock");
        match datagrams.get_mut(node) {
            Some(count) => *count += 1,
            None => {
                datagrams.insert(node.to_string(), 1);
            }
        }
    }

    /// Counts a datagram's outcome.
    pub fn count_datagram(&self, outcome: DatagramOutcome) {
        let index = DatagramOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("every outcome is listed");
        self.outcomes[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Datagrams received since start, by outcome.
    pub fn datagram_outcomes(&self) -> Vec<(DatagramOutcome, u64)> {
        DatagramOutcome::ALL
            .iter()
            .zip(&self.outcomes)
            .map(|(outcome, count)| (*outcome, count.load(Ordering::Relaxed)))
            .collect()
    }

    /// How many beats `node` sent by datagram since the last call (what its HTTP heartbeat
    /// tells it, so it knows its datagrams arrive).
    pub fn take_datagrams(&self, node: &str) -> u64 {
        self.datagrams
            .lock()
            .expect("heartbeats lock")
            .remove(node)
            .unwrap_or(0)
    }

    /// When `node` last heartbeated (monotonic ms), if it has since this process started.
    pub fn last(&self, node: &str) -> Option<u64> {
        self.last
            .lock()
            .expect("heartbeats lock")
            .get(node)
            .copied()
    }

    /// Whether `node` was heard from within the down threshold.
    pub fn heard_from_recently(&self, node: &str) -> bool {
        let now = self.clock.monotonic_ms();
        self.last(node)
            .is_some_and(|last| now.saturating_sub(last) < self.down_after_ms)
    }

    /// Remembers when this server began to lead; nodes it has not heard from yet count their
    /// silence from then.
    pub fn grace_unknown_nodes(&self, now: u64) {
        self.led_since.store(now, Ordering::SeqCst);
    }

    /// When this server began to lead (monotonic ms).
    pub fn led_since(&self) -> u64 {
        self.led_since.load(Ordering::SeqCst)
    }

    /// Forgives every node's silence up to `now` (used when this process itself stalled).
    pub fn forgive_until(&self, now: u64) {
        for last in self.last.lock().expect("heartbeats lock").values_mut() {
            *last = (*last).max(now);
        }
    }
}
