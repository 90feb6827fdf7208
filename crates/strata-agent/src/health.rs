//! Health checks of one instance: an HTTP GET of the spec's path, or, without a health check
//! in the spec, a TCP connect to the instance's port (so "running" always means "accepts
//! connections", and a rollout never shifts traffic to an instance that cannot take it).
//! Checks go to the program's own address (a container's, not the node's forwarder), so they
//! pass only when the program itself answers. `[liveness]` checks use the same [`Probe`].
//!
//! [`HealthTracker`] turns a series of check results into healthy/unhealthy transitions with
//! the spec's thresholds; it is pure and table-tested.

use std::net::SocketAddr;
use std::time::Duration;

use strata_core::spec::{HealthSpec, LivenessSpec};

/// The outcome of one check: `Err` carries a sentence for the instance's status message.
pub type CheckResult = Result<(), String>;

/// What one check does: GET a path (2xx or 3xx passes) or, without one, connect over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub path: Option<String>,
    pub timeout: Duration,
    pub interval: Duration,
}

impl Probe {
    /// The readiness check: the spec's `[health]`, else a TCP connect every second.
    pub fn readiness(spec: Option<&HealthSpec>) -> Self {
        match spec {
            Some(spec) => Self {
                path: Some(spec.path.clone()),
                timeout: Duration::from_millis(spec.timeout_ms),
                interval: Duration::from_millis(spec.interval_ms),
            },
            None => Self {
                path: None,
                timeout: Duration::from_secs(1),
                interval: Duration::from_secs(1),
            },
        }
    }

    /// The spec's `[liveness]` check.
    pub fn liveness(spec: &LivenessSpec) -> Self {
        Self {
            path: spec.path.clone(),
            timeout: Duration::from_millis(spec.timeout_ms),
            interval: Duration::from_millis(spec.interval_ms),
        }
    }
}

/// Runs one check against `addr`, the program's own address.
pub async fn check(client: &reqwest::Client, addr: SocketAddr, probe: &Probe) -> CheckResult {
    let timeout_ms = probe.timeout.as_millis();
    match &probe.path {
        Some(path) => {
            let url = format!("http://{addr}{path}");
            match client.get(&url).timeout(probe.timeout).send().await {
                Ok(response)
                    if response.status().is_success() || response.status().is_redirection() =>
                {
                    Ok(())
                }
                Ok(response) => Err(format!(
                    "health check GET {path} answered {}",
                    response.status()
                )),
                Err(error) if error.is_timeout() => Err(format!(
                    "health check GET {path} timed out after {timeout_ms} ms"
                )),
                Err(error) if error.is_connect() => Err(format!(
                    "health check GET {path}: nothing accepts connections on port {}",
                    addr.port()
                )),
                Err(error) => Err(format!("health check GET {path}: {error}")),
            }
        }
        None => {
            match tokio::time::timeout(probe.timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(format!("port {}: {error}", addr.port())),
                Err(_) => Err(format!(
                    "port {}: connect timed out after {timeout_ms} ms",
                    addr.port()
                )),
            }
        }
    }
}

/// Healthy or not, from consecutive results and thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    passes: u32,
    failures: u32,
    healthy: bool,
}

impl HealthTracker {
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32) -> Self {
        Self {
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
            passes: 0,
            failures: 0,
            healthy: false,
        }
    }

    pub fn for_spec(spec: Option<&HealthSpec>) -> Self {
        match spec {
            Some(spec) => Self::new(spec.healthy_threshold, spec.unhealthy_threshold),
            None => Self::new(1, 3),
        }
    }

    /// A liveness tracker: alive until `unhealthy_threshold` failures in a row.
    pub fn alive(unhealthy_threshold: u32) -> Self {
        let mut tracker = Self::new(1, unhealthy_threshold);
        tracker.healthy = true;
        tracker
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records a result; returns `Some(new health)` when it flips.
    pub fn record(&mut self, passed: bool) -> Option<bool> {
        if passed {
            self.passes += 1;
            self.failures = 0;
            if !self.healthy && self.passes >= self.healthy_threshold {
                self.healthy = true;
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.passes = 0;
            if self.healthy && self.failures >= self.unhealthy_threshold {
                self.healthy = false;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_table() {
        // (healthy threshold, unhealthy threshold, results, flips)
        type Row = (u32, u32, &'static [bool], &'static [Option<bool>]);
        let table: &[Row] = &[
            (1, 3, &[true], &[Some(true)]),
            (2, 3, &[true, true], &[None, Some(true)]),
            (
                2,
                3,
                &[true, false, true, true],
                &[None, None, None, Some(true)],
            ),
            (
                1,
                3,
                &[true, false, false, false],
                &[Some(true), None, None, Some(false)],
            ),
            (
                1,
                3,
                &[true, false, false, true, false],
                &[Some(true), None, None, None, None],
            ),
            (1, 1, &[false, false], &[None, None]),
            (
                1,
                2,
                &[true, false, false, true],
                &[Some(true), None, Some(false), Some(true)],
            ),
        ];
        for (healthy, unhealthy, results, flips) in table {
            let mut tracker = HealthTracker::new(*healthy, *unhealthy);
            let got: Vec<Option<bool>> = results.iter().map(|r| tracker.record(*r)).collect();
            assert_eq!(
                &got, flips,
                "thresholds {healthy}/{unhealthy}, results {results:?}"
            );
        }
    }

    #[test]
    fn liveness_fails_after_the_threshold_in_a_row() {
        let table: &[(u32, &[bool], Option<usize>)] = &[
            (3, &[false, false, false], Some(2)),
            (3, &[false, false, true, false, false], None),
            (1, &[true, false], Some(1)),
            (2, &[true, true, true], None),
        ];
        for (threshold, results, dies_at) in table {
            let mut tracker = HealthTracker::alive(*threshold);
            let died = results
                .iter()
                .position(|passed| tracker.record(*passed) == Some(false));
            assert_eq!(died, *dies_at, "threshold {threshold}, results {results:?}");
        }
    }

    #[tokio::test]
    async fn a_check_reaches_the_address_or_says_why() {
        let client = reqwest::Client::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let tcp = Probe::readiness(None);
        assert_eq!(check(&client, open, &tcp).await, Ok(()));
        drop(listener);
        let refused = check(&client, open, &tcp).await.unwrap_err();
        assert!(
            refused.starts_with(&format!("port {}:", open.port())),
            "{refused}"
        );
        let http = Probe {
            path: Some("/healthz".into()),
            ..Probe::readiness(None)
        };
        let refused = check(&client, open, &http).await.unwrap_err();
        assert!(refused.contains("nothing accepts connections"), "{refused}");
    }
}
