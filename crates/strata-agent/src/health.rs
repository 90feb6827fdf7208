//! Health checks of one instance: an HTTP GET of the spec's path, or, without a health check
//! in the spec, a TCP connect to the instance's port (so "running" always means "accepts
//! connections", and a rollout never shifts traffic to an instance that cannot take it).
//!
//! [`HealthTracker`] turns a series of check results into healthy/unhealthy transitions with
//! the spec's thresholds; it is pure and table-tested.

use std::net::SocketAddr;
use std::time::Duration;

use strata_core::spec::HealthSpec;

/// The outcome of one check: `Err` carries a sentence for the instance's status message.
pub type CheckResult = Result<(), String>;

/// Runs one check against `addr`.
pub async fn check(
    client: &reqwest::Client,
    addr: SocketAddr,
    spec: Option<&HealthSpec>,
) -> CheckResult {
    match spec {
        Some(spec) => {
            let url = format!("http://{addr}{}", spec.path);
            match client
                .get(&url)
                .timeout(Duration::from_millis(spec.timeout_ms))
                .send()
                .await
            {
                Ok(response)
                    if response.status().is_success() || response.status().is_redirection() =>
                {
                    Ok(())
                }
                Ok(response) => Err(format!(
                    "health check GET {} answered {}",
                    spec.path,
                    response.status()
                )),
                Err(error) if error.is_timeout() => Err(format!(
                    "health check GET {} timed out after {} ms",
                    spec.path, spec.timeout_ms
                )),
                Err(error) if error.is_connect() => Err(format!(
                    "health check GET {}: nothing accepts connections on port {}",
                    spec.path,
                    addr.port()
                )),
                Err(error) => Err(format!("health check GET {}: {error}", spec.path)),
            }
        }
        None => {
            match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(format!("port {}: {error}", addr.port())),
                Err(_) => Err(format!("port {}: connect timed out", addr.port())),
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
        // (healthy_threshold, unhealthy_threshold, results, flips)
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
}
