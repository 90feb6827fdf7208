//! Request metrics of the node's proxy, per environment and service: requests by status
//! class, errors the proxy itself answered, latency to the response's headers (a histogram),
//! requests in flight and retries. Registered in the process's Prometheus registry and served
//! at `/metrics` (OpenMetrics text) by the node's agent.

use std::time::Instant;

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
    unrouted: Counter,
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
            unrouted: Counter::default(),
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
        let labels = ServiceLabels {
            env: env.to_string(),
            service: service.to_string(),
        };
        self.in_flight.get_or_create(&labels).inc();
        RequestTimer {
            metrics: self.clone(),
            labels,
            started: Instant::now(),
        }
    }

    pub fn retried(&self, env: &str, service: &str) {
        self.retries
            .get_or_create(&ServiceLabels {
                env: env.to_string(),
                service: service.to_string(),
            })
            .inc();
    }

    pub fn unrouted(&self) {
        self.unrouted.inc();
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
            .observe(self.started.elapsed().as_secs_f64());
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
        drop(open);
        let text = encode(&registry);
        assert!(
            text.contains(r#"strata_proxy_requests_in_flight{env="dev",service="api"} 0"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
