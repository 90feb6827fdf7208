//! The control plane's clocks, behind one trait so that tests can drive time: the wall clock
//! (records' timestamps, `min_ready`) and a monotonic clock (heartbeats and node liveness,
//! which must not jump with the wall clock). [`SystemClock`] is the real one;
//! [`ManualClock`] moves only when a test says so (the control-plane harness).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
    /// Milliseconds since an arbitrary start, never going back.
    fn monotonic_ms(&self) -> u64;
}

/// The machine's clocks.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        strata_core::now_millis()
    }

    fn monotonic_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// Clocks that stand still until [`ManualClock::advance`]: both move together.
#[derive(Debug)]
pub struct ManualClock {
    wall: AtomicU64,
    monotonic: AtomicU64,
}

impl ManualClock {
    /// Starting at `wall_ms` since the epoch (and 0 on the monotonic clock).
    pub fn starting_at(wall_ms: u64) -> Self {
        Self {
            wall: AtomicU64::new(wall_ms),
            monotonic: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, ms: u64) {
        self.wall.fetch_add(ms, Ordering::SeqCst);
        self.monotonic.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.monotonic.load(Ordering::SeqCst)
    }
}
