//! TCP connections through the node's proxy, per environment and service: opened, refused
//! (policy) and failed (no instance reachable), open now, and bytes each way. Registered
//! under `strata_proxy_tcp_*` beside the HTTP request metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::ServiceLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub env: String,
    pub service: String,
    /// `opened`, `refused` (by policy) or `failed` (no instance could be reached).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByteLabels {
    pub env: String,
    pub service: String,
    /// `to_service` or `from_service`.
    pub direction: String,
}

/// How a connection for a service ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Opened,
    Refused,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Opened => "opened",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// The TCP metrics; cheap to clone.
#[derive(Clone, Default)]
pub struct TcpMetrics {
    connections: Family<ConnectionLabels, Counter>,
    open: Family<ServiceLabels, Gauge>,
    bytes: Family<ByteLabels, Counter>,
}

impl TcpMetrics {
    /// Creates the metrics and registers them in `registry` under `strata_proxy_tcp_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let proxy = registry.sub_registry_with_prefix("strata_proxy_tcp");
        proxy.register(
            "connections",
            "TCP connections callers opened to a service, by outcome (opened, refused by policy, failed)",
            metrics.connections.clone(),
        );
        proxy.register(
            "connections_open",
            "TCP connections to a service open now",
            metrics.open.clone(),
        );
        proxy.register(
            "bytes",
            "Bytes carried on TCP connections to a service, by direction",
            metrics.bytes.clone(),
        );
        metrics
    }

    pub fn connection(&self, env: &str, service: &str, outcome: Outcome) {
        self.connections
            .get_or_create(&ConnectionLabels {
                env: env.to_string(),
                service: service.to_string(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
    }

    /// A connection opened: counted open until the guard is dropped.
    pub fn opened(&self, env: &str, service: &str) -> OpenConnection {
        self.connection(env, service, Outcome::Opened);
        let gauge = self
            .open
            .get_or_create(&ServiceLabels {
                env: env.to_string(),
                service: service.to_string(),
            })
            .clone();
        gauge.inc();
        OpenConnection(gauge)
    }

    /// Bytes carried: `to` the service, `from` it.
    pub fn carried(&self, env: &str, service: &str, to: u64, from: u64) {
        for (direction, bytes) in [("to_service", to), ("from_service", from)] {
            self.bytes
                .get_or_create(&ByteLabels {
                    env: env.to_string(),
                    service: service.to_string(),
                    direction: direction.to_string(),
                })
                .inc_by(bytes);
        }
    }
}

/// A connection counted open.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
