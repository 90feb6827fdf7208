//! Strata's data plane: the ingress, which serves `http://SERVICE.ENV.localhost/` (and each
//! public service's extra hosts) by proxying to a healthy instance, and the mesh proxy through
//! which services call each other by name; both fed by the control plane's watch.
//!
//! - [`routes`]: the routing table and the task that keeps it current (a watch wakes it; a
//!   periodic resync guarantees it converges even if a change is missed).
//! - [`ingress`]: the HTTP proxy: Host routing, 404/503 bodies a person can act on, one retry
//!   on another instance when that is safe, a per-request deadline.
//! - [`balance`]: power of two choices over an EWMA of latency times load, with passive
//!   outlier ejection.
//! - [`identity`]: the cluster CA, node certificates, and the rustls configurations of mutual
//!   TLS between nodes' proxies.
//! - [`peer`]: the inter-node port, where other nodes' proxies deliver calls for this node's
//!   instances over mutual TLS.
//! - [`resilience`]: per service, a retry budget and a circuit breaker on requests in flight.
//! - [`metrics`]: requests, errors, latency histograms and in-flight counts per service, in
//!   Prometheus' registry.
//! - [`proxy`]: the node's mesh proxy: instances call other services by name through it
//!   (`HTTP_PROXY` with the caller's credentials); it authenticates the caller, applies
//!   [`policy`] (403 and an audit event for a forbidden call) and forwards like the ingress.
//! - [`tcp`]: services that speak any protocol over TCP, called by name (`redis:6379`): the
//!   node's resolver, service addresses, and the TCP proxy that applies policy and carries
//!   each connection to an instance, across nodes over mutual TLS.
//! - [`serve`]: an HTTP API over TLS that knows which node or server (by its certificate of
//!   the cluster CA) each connection is: the control plane's API and a node's own.

pub mod balance;
pub mod handover;
pub mod identity;
pub mod ingress;
pub mod metrics;
pub mod peer;
pub mod policy;
pub mod proxy;
pub mod resilience;
pub mod routes;
pub mod serve;
pub mod split;
pub mod tcp;

pub use ingress::{Ingress, IngressConfig};
pub use metrics::MeshMetrics;
pub use peer::PeerListener;
pub use proxy::{CallerKeys, Denial, MeshProxy};
pub use routes::{RouteSource, RoutingTable};
