//! The control plane's metrics.
//!
//! - [`scrape`]: `/metrics` (OpenMetrics text): what the fleet looks like from this server,
//!   read from the store at scrape time (nodes and instances by state, services), and whether
//!   this server leads and in which term, and what became of nodes' heartbeat datagrams.
//! - [`TrafficLog`]: every node's per-service summaries ([`MetricsReport`], one a second),
//!   merged per second over nodes and kept five minutes in memory on the leader: the input
//!   of SLO reports and autoscaling. Not in the store: traffic is recent or useless, and a new
//!   leader has it again within a second.

use std::collections::{BTreeMap, HashMap};

use strata_core::api::{MetricsReport, SecondSample, ServiceMetrics, SloReport};
use strata_sched::canary::{p99_over_seconds, ReleaseTraffic};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::ControlError;
use crate::plane::ControlPlane;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// The metrics text for one scrape.
pub async fn scrape(plane: &ControlPlane) -> Result<String, ControlError> {
    let nodes = plane.nodes().await?;
    let instances = plane.instance_views().await?;
    let services = plane.services(None).await?;

    let mut registry = Registry::default();
    let strata = registry.sub_registry_with_prefix("strata");
    let by_node_state = Family::<StateLabel, Gauge>::default();
    for node in &nodes {
        let state = serde_json::to_value(node.effective_state())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        by_node_state.get_or_create(&StateLabel { state }).inc();
    }
    strata.register("nodes", "Nodes by state", by_node_state);
    let by_instance_state = Family::<StateLabel, Gauge>::default();
    for view in &instances {
        let state = serde_json::to_value(view.state())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        by_instance_state.get_or_create(&StateLabel { state }).inc();
    }
    strata.register("instances", "Instances by state", by_instance_state);
    let service_count = Gauge::<i64>::default();
    service_count.set(services.len() as i64);
    strata.register("services", "Services in every environment", service_count);
    let leader = Gauge::<i64>::default();
    let term = Gauge::<i64>::default();
    if let Some(current) = plane.term() {
        leader.set(1);
        term.set(current.revision as i64);
    }
    strata.register("leader", "1 when this server runs the controllers", leader);
    strata.register(
        "leader_term",
        "The revision of this server's leader term (0: not leader)",
        term,
    );

    let datagrams = Family::<OutcomeLabel, Counter>::default();
    for (outcome, count) in plane.heartbeats().datagram_outcomes() {
        datagrams
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str().to_string(),
            })
            .inc_by(count);
    }
    strata.register(
        "heartbeat_datagrams",
        "Heartbeat datagrams this server received, by what became of them",
        datagrams,
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| ControlError::Internal(format!("encoding metrics: {e}")))?;
    Ok(text)
}

/// How long per-second samples are kept.
pub const TRAFFIC_KEPT_MS: u64 = 3_600_000;
/// What `GET .../metrics` returns: the last five minutes.
pub const RECENT_TRAFFIC_MS: u64 = 300_000;

/// Per-service, per-second traffic over every node.
#[derive(Debug, Default)]
pub struct TrafficLog {
    seconds: HashMap<(String, String), BTreeMap<u64, Second>>,
}

/// One second of a service: the merged sample, and each node's latest in-flight count (a
/// node may report more than once in a second; its requests add up, its in-flight count is
/// a gauge and replaces its previous one).
#[derive(Debug)]
struct Second {
    sample: SecondSample,
    in_flight_by_node: BTreeMap<String, i64>,
    /// While a rollout splits the service's traffic: each release's attempts that second.
    releases: BTreeMap<u64, ReleaseSecond>,
}

/// One release's attempts in one second, over every node.
#[derive(Debug, Default)]
struct ReleaseSecond {
    attempts: u64,
    failures: u64,
    /// The highest node p99 of that second.
    p99_ms: f64,
}

impl TrafficLog {
    /// Adds node `node`'s report, received at `now_ms`, to that second; drops what is older
    /// than [`TRAFFIC_KEPT_MS`].
    pub fn record(&mut self, now_ms: u64, node: &str, report: &MetricsReport) {
        let second = now_ms / 1000 * 1000;
        let oldest = now_ms.saturating_sub(TRAFFIC_KEPT_MS);
        for window in &report.services {
            let seconds = self
                .seconds
                .entry((window.env.clone(), window.service.clone()))
                .or_default();
            let entry = seconds.entry(second).or_insert_with(|| Second {
                sample: SecondSample {
                    at: second,
                    requests: 0,
                    errors: 0,
                    in_flight: 0,
                    p99_ms: 0.0,
                },
                in_flight_by_node: BTreeMap::new(),
                releases: BTreeMap::new(),
            });
            for release in &window.releases {
                let second = entry.releases.entry(release.release).or_default();
                second.attempts += release.attempts;
                second.failures += release.failures;
                if release.attempts > 0 {
                    second.p99_ms = second.p99_ms.max(release.p99_ms);
                }
            }
            entry.sample.requests += window.requests;
            entry.sample.errors += window.errors;
            entry
                .in_flight_by_node
                .insert(node.to_string(), window.in_flight);
            entry.sample.in_flight = entry.in_flight_by_node.values().sum();
            if window.requests > 0 {
                entry.sample.p99_ms = entry.sample.p99_ms.max(window.p99_ms);
            }
        }
        // Oldest first: drop from the front only (no scan of the hour kept).
        self.seconds.retain(|_, seconds| {
            while let Some(first) = seconds.first_entry() {
                if *first.key() >= oldest {
                    break;
                }
                first.remove();
            }
            !seconds.is_empty()
        });
    }

    /// `service`'s seconds from `from_ms` on, oldest first.
    pub fn service(&self, env: &str, service: &str, from_ms: u64) -> ServiceMetrics {
        ServiceMetrics {
            env: env.to_string(),
            service: service.to_string(),
            seconds: self
                .seconds
                .get(&(env.to_string(), service.to_string()))
                .map(|seconds| {
                    seconds
                        .range(from_ms..)
                        .map(|(_, s)| s.sample.clone())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl TrafficLog {
    /// Each release's attempts at `service` from `from_ms` on (only while a rollout split its
    /// traffic): summed, with the p99 over the seconds ([`p99_over_seconds`]).
    pub fn releases(
        &self,
        env: &str,
        service: &str,
        from_ms: u64,
    ) -> BTreeMap<u64, ReleaseTraffic> {
        let mut per_second: BTreeMap<u64, (ReleaseTraffic, Vec<f64>)> = BTreeMap::new();
        let Some(seconds) = self.seconds.get(&(env.to_string(), service.to_string())) else {
            return BTreeMap::new();
        };
        for second in seconds.range(from_ms..).map(|(_, s)| s) {
            for (release, counts) in &second.releases {
                let (traffic, p99s) = per_second.entry(*release).or_default();
                traffic.attempts += counts.attempts;
                traffic.failures += counts.failures;
                if counts.attempts > 0 {
                    p99s.push(counts.p99_ms);
                }
            }
        }
        per_second
            .into_iter()
            .map(|(release, (traffic, p99s))| {
                let p99_ms = p99_over_seconds(p99s);
                (release, ReleaseTraffic { p99_ms, ..traffic })
            })
            .collect()
    }
}

/// How `traffic` (a service's seconds) measures up to `slo`. Success is per request (a 5xx is
/// a failure); the error budget is the failures the SLO allows (`1 - availability`, or
/// `error_rate`, whichever is stricter) and what is left of it; latency is the fraction of
/// seconds with requests whose p99 met the target.
pub fn slo_report(slo: &strata_core::spec::SloSpec, traffic: &ServiceMetrics) -> SloReport {
    let seconds = &traffic.seconds;
    let requests: u64 = seconds.iter().map(|s| s.requests).sum();
    let errors: u64 = seconds.iter().map(|s| s.errors).sum();
    let success = (requests > 0).then(|| 1.0 - errors as f64 / requests as f64);
    let allowed_failures = [
        slo.availability.map(|a| 1.0 - a.as_f64()),
        slo.error_rate.map(|r| r.as_f64()),
    ]
    .into_iter()
    .flatten()
    .reduce(f64::min);
    let error_budget_left = match (success, allowed_failures) {
        (Some(success), Some(allowed)) if allowed > 0.0 => Some(1.0 - (1.0 - success) / allowed),
        _ => None,
    };
    let busy: Vec<&SecondSample> = seconds.iter().filter(|s| s.requests > 0).collect();
    let p99_attainment = slo.p99_ms.filter(|_| !busy.is_empty()).map(|target| {
        let met = busy.iter().filter(|s| s.p99_ms <= target as f64).count();
        met as f64 / busy.len() as f64
    });
    let worst_p99_ms = busy.iter().map(|s| s.p99_ms).reduce(f64::max);
    let covered_s = match (seconds.first(), seconds.last()) {
        (Some(first), Some(last)) => (last.at - first.at) / 1000 + 1,
        _ => 0,
    };
    SloReport {
        env: traffic.env.clone(),
        service: traffic.service.clone(),
        covered_s,
        requests,
        errors,
        success,
        allowed_failures,
        error_budget_left,
        p99_target_ms: slo.p99_ms,
        p99_attainment,
        worst_p99_ms,
    }
}

#[cfg(test)]
mod tests {
    use strata_core::api::ServiceWindow;

    use super::*;

    fn window(
        service: &str,
        requests: u64,
        errors: u64,
        in_flight: i64,
        p99_ms: f64,
    ) -> ServiceWindow {
        ServiceWindow {
            env: "dev".into(),
            service: service.into(),
            requests,
            errors,
            in_flight,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            releases: Vec::new(),
        }
    }

    #[test]
    fn each_releases_attempts_add_up_over_nodes_and_seconds() {
        use strata_core::api::ReleaseWindow;
        let attempts = |release, attempts, failures, p99_ms| ReleaseWindow {
            release,
            attempts,
            failures,
            p99_ms,
        };
        let mut log = TrafficLog::default();
        let mut a = window("web", 10, 0, 0, 5.0);
        a.releases = vec![attempts(2, 9, 0, 5.0), attempts(3, 2, 1, 40.0)];
        let mut b = window("web", 10, 0, 0, 5.0);
        b.releases = vec![attempts(2, 10, 0, 6.0), attempts(3, 1, 1, 50.0)];
        log.record(10_100, "node-a", &report(vec![a.clone()]));
        log.record(10_200, "node-b", &report(vec![b]));
        log.record(11_100, "node-a", &report(vec![a]));
        let releases = log.releases("dev", "web", 10_000);
        let canary = releases[&3];
        assert_eq!((canary.attempts, canary.failures), (5, 3));
        // Per second the highest node p99 (50, then 40); over the seconds the 90th percentile.
        assert_eq!(canary.p99_ms, Some(50.0));
        assert_eq!((releases[&2].attempts, releases[&2].failures), (28, 0));
        // From a later second on, only that second counts.
        assert_eq!(log.releases("dev", "web", 11_000)[&3].attempts, 2);
        assert!(log.releases("dev", "other", 0).is_empty());
    }

    fn report(windows: Vec<ServiceWindow>) -> MetricsReport {
        MetricsReport {
            window_ms: 1000,
            services: windows,
        }
    }

    #[test]
    fn reports_of_one_second_merge_over_nodes() {
        let mut log = TrafficLog::default();
        // Two nodes report the same second; a third report lands in the next one.
        log.record(
            10_100,
            "node-a",
            &report(vec![
                window("web", 100, 2, 3, 12.0),
                window("api", 5, 0, 0, 1.0),
            ]),
        );
        log.record(
            10_900,
            "node-b",
            &report(vec![window("web", 50, 0, 1, 40.0)]),
        );
        log.record(
            11_050,
            "node-a",
            &report(vec![
                window("web", 10, 1, 0, 5.0),
                window("web-idle", 0, 0, 2, 0.0),
            ]),
        );
        let web = log.service("dev", "web", 0);
        assert_eq!(
            web.seconds,
            vec![
                SecondSample {
                    at: 10_000,
                    requests: 150,
                    errors: 2,
                    in_flight: 4,
                    p99_ms: 40.0
                },
                SecondSample {
                    at: 11_000,
                    requests: 10,
                    errors: 1,
                    in_flight: 0,
                    p99_ms: 5.0
                },
            ]
        );
        // A second with requests in flight but none answered has no latency.
        assert_eq!(log.service("dev", "web-idle", 0).seconds[0].p99_ms, 0.0);
        assert!(log.service("dev", "nothing", 0).seconds.is_empty());
        assert!(log.service("prod", "web", 0).seconds.is_empty());
    }

    #[test]
    fn a_node_reporting_twice_in_a_second_adds_requests_but_not_in_flight() {
        let mut log = TrafficLog::default();
        log.record(5_000, "node-a", &report(vec![window("web", 10, 0, 8, 5.0)]));
        log.record(5_250, "node-b", &report(vec![window("web", 4, 0, 2, 5.0)]));
        // node-a again, 500 ms later: its in-flight count replaces its earlier one.
        log.record(
            5_500,
            "node-a",
            &report(vec![window("web", 10, 1, 20, 9.0)]),
        );
        let seconds = log.service("dev", "web", 0).seconds;
        assert_eq!(seconds.len(), 1);
        assert_eq!(
            (seconds[0].requests, seconds[0].errors, seconds[0].in_flight),
            (24, 1, 22)
        );
        assert_eq!(seconds[0].p99_ms, 9.0);
    }

    #[test]
    fn old_seconds_are_dropped() {
        let mut log = TrafficLog::default();
        log.record(1_000, "node-a", &report(vec![window("web", 1, 0, 0, 1.0)]));
        log.record(
            1_000 + TRAFFIC_KEPT_MS,
            "node-a",
            &report(vec![window("web", 2, 0, 0, 1.0)]),
        );
        let seconds = log.service("dev", "web", 0).seconds;
        assert_eq!(seconds.len(), 2, "exactly five minutes old is kept");
        log.record(2_000 + TRAFFIC_KEPT_MS, "node-a", &report(vec![]));
        let seconds = log.service("dev", "web", 0).seconds;
        assert_eq!(
            seconds.iter().map(|s| s.requests).collect::<Vec<_>>(),
            vec![2]
        );
    }

    fn second(at: u64, requests: u64, errors: u64, p99_ms: f64) -> SecondSample {
        SecondSample {
            at,
            requests,
            errors,
            in_flight: 0,
            p99_ms,
        }
    }

    #[test]
    fn slo_reports_table() {
        use strata_core::spec::{Ratio, SloSpec};
        let slo =
            |p99_ms: Option<u64>, availability: Option<f64>, error_rate: Option<f64>| SloSpec {
                p99_ms,
                availability: availability.and_then(Ratio::from_f64),
                error_rate: error_rate.and_then(Ratio::from_f64),
            };
        let traffic = |seconds: Vec<SecondSample>| ServiceMetrics {
            env: "dev".into(),
            service: "web".into(),
            seconds,
        };
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            (a, b) => a == b,
        };
        // (case, slo, seconds, success, budget left, p99 attainment)
        let cases = [
            (
                "half the budget spent: 0.05% failed of 0.1% allowed",
                slo(None, Some(0.999), None),
                vec![second(0, 10_000, 5, 10.0), second(1000, 10_000, 5, 10.0)],
                Some(0.9995),
                Some(0.5),
                None,
            ),
            (
                "overspent: 0.3% failed of 0.1% allowed",
                slo(None, Some(0.999), None),
                vec![second(0, 1000, 3, 10.0)],
                Some(0.997),
                Some(-2.0),
                None,
            ),
            (
                "the stricter of availability and error rate sets the budget",
                slo(None, Some(0.99), Some(0.001)),
                vec![second(0, 1000, 1, 10.0)],
                Some(0.999),
                Some(0.0),
                None,
            ),
            (
                "p99 met in 3 of 4 busy seconds; idle seconds do not count",
                slo(Some(100), None, None),
                vec![
                    second(0, 10, 0, 50.0),
                    second(1000, 10, 0, 212.0),
                    second(2000, 0, 0, 0.0),
                    second(3000, 10, 0, 99.0),
                    second(4000, 10, 0, 100.0),
                ],
                Some(1.0),
                None,
                Some(0.75),
            ),
            (
                "no traffic: nothing to judge",
                slo(Some(100), Some(0.999), None),
                vec![],
                None,
                None,
                None,
            ),
        ];
        for (case, slo, seconds, success, budget, p99) in cases {
            let report = slo_report(&slo, &traffic(seconds));
            assert!(
                close(report.success, success),
                "{case}: success {:?}",
                report.success
            );
            assert!(
                close(report.error_budget_left, budget),
                "{case}: budget {:?}",
                report.error_budget_left
            );
            assert!(
                close(report.p99_attainment, p99),
                "{case}: p99 {:?}",
                report.p99_attainment
            );
        }
    }
}
