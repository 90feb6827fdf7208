//! Nodes' per-service traffic, kept in memory on the leader (followers forward the reports):
//! what the autoscaler, `strata top` and the SLO reports read.

use std::sync::{Arc, Mutex};

use strata_core::api::{MetricsReport, ServiceMetrics};

use crate::clock::Clock;
use crate::metrics::{TrafficLog, RECENT_TRAFFIC_MS};

/// Every node's per-service traffic, per second (see [`TrafficLog`]).
pub struct Traffic {
    clock: Arc<dyn Clock>,
    log: Mutex<TrafficLog>,
}

impl Traffic {
    pub fn new(clock: Arc<dyn Clock>) -> Traffic {
        Traffic {
            clock,
            log: Mutex::default(),
        }
    }

    /// Adds a node's per-service traffic report.
    pub fn record(&self, node: &str, report: &MetricsReport) {
        let now = self.clock.now_millis();
        self.log
            .lock()
            .expect("traffic lock")
            .record(now, node, report);
    }

    /// A service's traffic over the last minutes, per second.
    pub fn recent(&self, env: &str, service: &str) -> ServiceMetrics {
        let from = self.clock.now_millis().saturating_sub(RECENT_TRAFFIC_MS);
        self.since(env, service, from)
    }

    /// Each release's attempts at a service from `from_ms` on, while a rollout split its
    /// traffic.
    pub fn releases_since(
        &self,
        env: &str,
        service: &str,
        from_ms: u64,
    ) -> std::collections::BTreeMap<u64, strata_sched::canary::ReleaseTraffic> {
        self.log
            .lock()
            .expect("traffic lock")
            .releases(env, service, from_ms)
    }

    /// A service's traffic per second from `from_ms` on (at most what the log keeps).
    pub fn since(&self, env: &str, service: &str, from_ms: u64) -> ServiceMetrics {
        self.log
            .lock()
            .expect("traffic lock")
            .service(env, service, from_ms)
    }
}
