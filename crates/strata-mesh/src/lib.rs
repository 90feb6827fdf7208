//! Strata's data plane. For now: the ingress, which serves `http://SERVICE.ENV.localhost/`
//! (and each service's extra hosts) by proxying to a healthy instance, with its routing table
//! fed by the control plane's watch.
//!
//! - [`routes`]: the routing table and the task that keeps it current (a watch wakes it; a
//!   periodic resync guarantees it converges even if a change is missed).
//! - [`ingress`]: the HTTP proxy: Host routing, 404/503 bodies a person can act on, one retry
//!   on another instance when that is safe, a per-request deadline.
//! - [`balance`]: power of two choices over an EWMA of latency times load, with passive
//!   outlier ejection.
//! - [`metrics`]: requests, errors, latency histograms and in-flight counts per service, in
//!   Prometheus' registry.

pub mod balance;
pub mod ingress;
pub mod metrics;
pub mod routes;

pub use ingress::{Ingress, IngressConfig};
pub use metrics::MeshMetrics;
pub use routes::{RouteSource, RoutingTable};
