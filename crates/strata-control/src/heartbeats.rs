//! Nodes' heartbeats, kept in memory on the server that leads: when each node was last heard
//! from, on the monotonic clock. A heartbeat costs no store write and wakes no watcher; after a
//! restart or a change of leader every node gets a full grace period (as Nomad resets TTLs on
//! a new leader). Liveness is judged from these by [`crate::reconcile::judge_liveness`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

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
}

impl Heartbeats {
    pub fn new(clock: Arc<dyn Clock>, down_after_ms: u64) -> Heartbeats {
        Heartbeats {
            clock,
            down_after_ms,
            last: Mutex::default(),
            led_since: AtomicU64::new(0),
            datagrams: Mutex::default(),
        }
    }

    /// Notes a heartbeat of `node` now.
    pub fn note(&self, node: &str) {
        let now = self.clock.monotonic_ms();
        self.last
            .lock()
            .expect("heartbeats lock")
            .insert(node.to_string(), now);
    }

    /// Notes a beat of `node` that came by datagram ([`crate::beats`]).
    pub fn note_datagram(&self, node: &str) {
        self.note(node);
        *self
            .datagrams
            .lock()
            .expect("heartbeats lock")
            .entry(node.to_string())
            .or_default() += 1;
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
