//! Request metrics of the node's proxy, per environment and service: requests by status
//! class, errors the proxy itself answered, latency to the response's headers (a histogram),
//! requests in flight and retries. Registered in the process's Prometheus registry and served
//! at `/metrics` (OpenMetrics text) by the node's agent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use strata_core::api::{ReleaseWindow, ServiceWindow};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub env: String,
    pub service: String,
}

impl ServiceLabels {
    fn new(env: &str, service: &str) -> Self {
        Self {
            env: env.to_string(),
            service: service.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub env: String,
    pub service: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub code: String,
}

/// The proxy's metrics; cheap to share (`Arc`), updated without locks on the request path
/// beyond the label family's map.
#[derive(Clone)]
pub struct MeshMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<ServiceLabels, Histogram>,
    in_flight: Family<ServiceLabels, Gauge>,
    retries: Family<ServiceLabels, Counter>,
    peer_deliveries: Family<ServiceLabels, Counter>,
    unrouted: Counter,
    /// The current window's per-service counts and latencies, taken by [`MeshMetrics::take_window`].
    window: Arc<Mutex<HashMap<ServiceLabels, Window>>>,
}

/// One service's requests in the current window.
struct Window {
    requests: u64,
    errors: u64,
    /// Microseconds, 1 us to 1 h, 3 significant digits.
    latency: hdrhistogram::Histogram<u64>,
    /// While a rollout splits the service's traffic: each release's attempts.
    releases: BTreeMap<u64, Attempts>,
}

/// One release's attempts in the current window.
struct Attempts {
    attempts: u64,
    failures: u64,
    latency: hdrhistogram::Histogram<u64>,
}

fn latency_window() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(elapsed: std::time::Duration) -> u64 {
    (elapsed.as_micros() as u64).clamp(1, 3_600_000_000)
}

impl Window {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            latency: latency_window(),
            releases: BTreeMap::new(),
        }
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to ~16 s, doubling.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

impl MeshMetrics {
    /// Creates the metrics and registers them in `registry` under `strata_proxy_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
            retries: Family::default(),
            peer_deliveries: Family::default(),
            unrouted: Counter::default(),
            window: Arc::default(),
        };
        let proxy = registry.sub_registry_with_prefix("strata_proxy");
        proxy.register(
            "requests",
            "Requests the proxy answered, by environment, service and status class",
            metrics.requests.clone(),
        );
        proxy.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response's headers",
            metrics.duration.clone(),
        );
        proxy.register(
            "requests_in_flight",
            "Requests being handled",
            metrics.in_flight.clone(),
        );
        proxy.register(
            "peer_deliveries",
            "Requests other nodes' proxies sent (mutual TLS) for this node's instances",
            metrics.peer_deliveries.clone(),
        );
        proxy.register(
            "retries",
            "Requests re-sent to another instance",
            metrics.retries.clone(),
        );
        proxy.register(
            "unrouted_requests",
            "Requests for a host no service is routed at",
            metrics.unrouted.clone(),
        );
        metrics
    }

    /// A request for `service` in `env` begins; [`RequestTimer::finish`] records its outcome.
    pub fn start(&self, env: &str, service: &str) -> RequestTimer {
        let labels = ServiceLabels::new(env, service);
        self.in_flight.get_or_create(&labels).inc();
        self.window
            .lock()
            .expect("not poisoned")
            .entry(labels.clone())
            .or_insert_with(Window::new);
        RequestTimer {
            metrics: self.clone(),
            labels,
            started: Instant::now(),
        }
    }

    /// One attempt of a request at an instance of `release` of `service` (while a rollout
    /// splits its traffic) ended after `elapsed`: `ok` when answered, not 5xx.
    pub fn attempted(
        &self,
        env: &str,
        service: &str,
        release: u64,
        elapsed: std::time::Duration,
        ok: bool,
    ) {
        let mut windows = self.window.lock().expect("not poisoned");
        let window = windows
            .entry(ServiceLabels::new(env, service))
            .or_insert_with(Window::new);
        let attempts = window.releases.entry(release).or_insert_with(|| Attempts {
            attempts: 0,
            failures: 0,
            latency: latency_window(),
        });
        attempts.attempts += 1;
        if !ok {
            attempts.failures += 1;
        }
        let _ = attempts.latency.record(micros(elapsed));
    }

    pub fn retried(&self, env: &str, service: &str) {
        self.retries
            .get_or_create(&ServiceLabels::new(env, service))
            .inc();
    }

    /// Another node's proxy sent a request for an instance of `service` on this node.
    pub fn delivered_for_peer(&self, env: &str, service: &str) {
        self.peer_deliveries
            .get_or_create(&ServiceLabels::new(env, service))
            .inc();
    }

    pub fn unrouted(&self) {
        self.unrouted.inc();
    }

    /// Requests in flight now, per service of the current window: `(env, service, count)`.
    pub fn in_flight_now(&self) -> Vec<(String, String, i64)> {
        let window = self.window.lock().expect("not poisoned");
        window
            .keys()
            .map(|labels| {
                let count = self.in_flight.get_or_create(labels).get();
                (labels.env.clone(), labels.service.clone(), count)
            })
            .collect()
    }

    /// The per-service summaries of the window since the last call (services with requests
    /// then or in flight now), and a new window begins.
    pub fn take_window(&self) -> Vec<ServiceWindow> {
        let taken = {
            let mut window = self.window.lock().expect("not poisoned");
            let taken = std::mem::take(&mut *window);
            // A service with requests still in flight is in the next window too.
            for labels in taken.keys() {
                if self.in_flight.get_or_create(labels).get() > 0 {
                    window.insert(labels.clone(), Window::new());
                }
            }
            taken
        };
        let mut summaries: Vec<ServiceWindow> = taken
            .into_iter()
            .map(|(labels, window)| {
                let in_flight = self.in_flight.get_or_create(&labels).get();
                ServiceWindow {
                    env: labels.env,
                    service: labels.service,
                    requests: window.requests,
                    errors: window.errors,
                    in_flight,
                    p50_ms: window.latency.value_at_quantile(0.5) as f64 / 1000.0,
                    p99_ms: window.latency.value_at_quantile(0.99) as f64 / 1000.0,
                    releases: window
                        .releases
                        .into_iter()
                        .map(|(release, attempts)| ReleaseWindow {
                            release,
                            attempts: attempts.attempts,
                            failures: attempts.failures,
                            p99_ms: attempts.latency.value_at_quantile(0.99) as f64 / 1000.0,
                        })
                        .collect(),
                }
            })
            .collect();
        summaries.sort_by(|a, b| (&a.env, &a.service).cmp(&(&b.env, &b.service)));
        summaries
    }
}

/// One request in flight. Dropped without [`RequestTimer::finish`] (the client went away),
/// it only leaves the in-flight count.
pub struct RequestTimer {
    metrics: MeshMetrics,
    labels: ServiceLabels,
    started: Instant,
}

impl RequestTimer {
    pub fn finish(self, status: u16) {
        let elapsed = self.started.elapsed();
        {
            let mut windows = self.metrics.window.lock().expect("not poisoned");
            let window = windows
                .entry(self.labels.clone())
                .or_insert_with(Window::new);
            window.requests += 1;
            if status >= 500 {
                window.errors += 1;
            }
            let _ = window.latency.record(micros(elapsed));
        }
        let code = format!("{}xx", status / 100);
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                env: self.labels.env.clone(),
                service: self.labels.service.clone(),
                code,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&self.labels)
            .observe(elapsed.as_secs_f64());
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.metrics.in_flight.get_or_create(&self.labels).dec();
    }
}

/// The registry as OpenMetrics text (what `/metrics` serves).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(%error, "cannot encode metrics");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_service_and_class() {
        let mut registry = Registry::default();
        let metrics = MeshMetrics::register(&mut registry);
        metrics.start("dev", "web").finish(200);
        metrics.start("dev", "web").finish(204);
        metrics.start("dev", "web").finish(503);
        let open = metrics.start("dev", "api");
        metrics.retried("dev", "web");
        metrics.unrouted();
        let text = encode(&registry);
        assert!(
            text.contains(r#"strata_proxy_requests_total{env="dev",service="web",code="2xx"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_proxy_requests_total{env="dev",service="web",code="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_proxy_requests_in_flight{env="dev",service="api"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_proxy_requests_in_flight{env="dev",service="web"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"strata_proxy_request_duration_seconds_count{env="dev",service="web"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_proxy_retries_total{env="dev",service="web"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("strata_proxy_unrouted_requests_total 1"),
            "{text}"
        );
        let window = metrics.take_window();
        let web = window.iter().find(|w| w.service == "web").unwrap();
        assert_eq!((web.requests, web.errors, web.in_flight), (3, 1, 0));
        assert!(web.p99_ms >= web.p50_ms && web.p50_ms >= 0.0);
        let api = window.iter().find(|w| w.service == "api").unwrap();
        assert_eq!(
            (api.requests, api.in_flight),
            (0, 1),
            "in flight, nothing answered yet"
        );
        let next = metrics.take_window();
        assert_eq!(
            next.len(),
            1,
            "a new window begins, with what is still in flight: {next:?}"
        );
        drop(open);
        let text = encode(&registry);
        assert!(
            text.contains(r#"strata_proxy_requests_in_flight{env="dev",service="api"} 0"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn attempts_are_counted_by_release_apart_from_requests() {
        let mut registry = Registry::default();
        let metrics = MeshMetrics::register(&mut registry);
        // A request failed at the canary (release 3) and was retried at the stable (2).
        let request = metrics.start("dev", "web");
        metrics.attempted("dev", "web", 3, std::time::Duration::from_millis(5), false);
        metrics.attempted("dev", "web", 2, std::time::Duration::from_millis(7), true);
        request.finish(200);
        metrics.attempted("dev", "web", 3, std::time::Duration::from_millis(2), true);
        let window = metrics.take_window();
        let web = window.iter().find(|w| w.service == "web").unwrap();
        assert_eq!(
            (web.requests, web.errors),
            (1, 0),
            "the caller saw one success"
        );
        let by_release: Vec<(u64, u64, u64)> = web
            .releases
            .iter()
            .map(|r| (r.release, r.attempts, r.failures))
            .collect();
        assert_eq!(by_release, [(2, 1, 0), (3, 2, 1)]);
        assert!(web.releases[0].p99_ms >= 6.9, "{:?}", web.releases);
        assert!(
            metrics.take_window().is_empty(),
            "a new window begins empty"
        );
    }
}
