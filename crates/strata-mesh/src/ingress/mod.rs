//! The ingress: an HTTP/1.1 reverse proxy that routes by Host to a healthy instance.
//!
//! - Unknown host: 404 naming the hosts that are routed.
//! - Known service with no healthy instance: 503 saying so and what to look at.
//! - Instances are picked by power of two choices over latency and load, unhealthy ones
//!   ejected for a while ([`crate::balance`]); a request that fails to reach its instance is
//!   retried on another one (the service's `retries`, default 1) when that is safe: the
//!   connection failed (nothing was sent) or the method is idempotent, and when the service's
//!   retry budget allows ([`crate::resilience`]). Clients see no error while an instance stops
//!   or dies.
//! - Every request has a deadline: the service's `request_timeout_ms`, capped by the node's
//!   (504 past it).
//! - A circuit breaker: past the service's `max_concurrent` requests in flight from this
//!   proxy, it answers 503 at once.
//!
//! - An instance on another node is reached through that node's proxy, over mutual TLS with
//!   this node's certificate ([`Ingress::enable_peering`]); the request names the instance in
//!   `strata-endpoint` and keeps the caller's identity (`strata-caller`).
//!
//! Request bodies are buffered (up to [`IngressConfig::max_body`]) so a retry can resend them.

mod clients;
mod cold_start;
mod headers;
mod serving;
mod tcp;
pub mod tls;
mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::balance::Balancer;
use crate::identity::NodeIdentity;
use crate::metrics::MeshMetrics;
use crate::resilience::Limiter;
use crate::routes::RoutingTable;
use clients::{Peering, NEXT_INGRESS_ID};
use headers::{request_host, strip_hop_by_hop, upstream_request};

pub(crate) use serving::{accept, serve_http1};
pub use serving::{proxy_threads, serve_on_threads};
pub use tcp::{is_tcp_upgrade, TCP_UPGRADE};

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

#[derive(Debug, Clone)]
pub struct IngressConfig {
    /// Longest deadline of one request, all attempts included, whatever the service asks.
    pub request_timeout: Duration,
    /// Largest request body accepted (413 above).
    pub max_body: usize,
    /// How long a request for a service at zero instances waits for one to start (503 past
    /// it).
    pub cold_start_wait: Duration,
    /// How many requests per service may wait for it to start from zero (503 beyond).
    pub max_waiting: u32,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_body: 16 << 20,
            cold_start_wait: Duration::from_secs(20),
            max_waiting: 256,
        }
    }
}

/// Told, at most every half second per service, that requests wait for a service at zero
/// instances: `(env, service)`.
pub type Waker = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The ingress proxy.
pub struct Ingress {
    table: Arc<RoutingTable>,
    metrics: Option<MeshMetrics>,
    /// Names this ingress's client pools in each thread's cache ([`Ingress::client`]).
    id: u64,
    balancer: Balancer,
    limiter: Limiter,
    requests: AtomicUsize,
    config: IngressConfig,
    peering: std::sync::OnceLock<Peering>,
    /// Where this node's instances listen, when not on the address they are advertised at.
    instance_host: std::sync::OnceLock<String>,
    waker: std::sync::OnceLock<Waker>,
    /// When each service at zero was last woken (milliseconds on `started`'s clock).
    woken: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    started: std::time::Instant,
}

/// The header naming, on a call between nodes' proxies, the instance it is for.
pub const ENDPOINT_HEADER: &str = "strata-endpoint";

impl Ingress {
    pub fn new(table: Arc<RoutingTable>, config: IngressConfig) -> Arc<Self> {
        Self::with_metrics(table, config, None)
    }

    /// An ingress that records every request in `metrics`.
    pub fn with_metrics(
        table: Arc<RoutingTable>,
        config: IngressConfig,
        metrics: Option<MeshMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            table,
            metrics,
            id: NEXT_INGRESS_ID.fetch_add(1, Ordering::Relaxed),
            balancer: Balancer::default(),
            limiter: Limiter::default(),
            requests: AtomicUsize::new(0),
            config,
            peering: std::sync::OnceLock::new(),
            instance_host: std::sync::OnceLock::new(),
            waker: std::sync::OnceLock::new(),
            woken: Default::default(),
            started: std::time::Instant::now(),
        })
    }

    /// `waker` is told when requests wait for a service at zero instances (the platform asks
    /// the control plane to start one).
    pub fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// From now on, instances that run on other nodes than `node` are reached through their
    /// node's proxy over mutual TLS with `identity` (which may be renewed meanwhile).
    pub fn enable_peering(&self, node: &str, identity: Arc<NodeIdentity>) {
        let _ = self.peering.set(Peering {
            node: node.to_string(),
            identity,
        });
    }

    /// This node's instances listen on `host` (loopback in a cluster: only the node's own
    /// proxies reach them, other nodes through the inter-node port), though they are
    /// advertised at the node's address.
    pub fn instances_listen_on(&self, host: &str) {
        let _ = self.instance_host.set(host.to_string());
    }

    /// An instance among `candidates` (non-empty) by the balancer, noted as `tried`.
    fn pick(&self, candidates: &[&String], tried: &mut Vec<String>) -> String {
        let endpoint =
            self.balancer
                .pick(std::time::Instant::now(), candidates, rand::random::<usize>);
        tried.push(endpoint.clone());
        endpoint
    }

    /// Where to connect for `endpoint`, an instance of this node.
    fn local_target(&self, endpoint: &str) -> String {
        match (self.instance_host.get(), endpoint.rsplit_once(':')) {
            (Some(host), Some((_, port))) => format!("{host}:{port}"),
            _ => endpoint.to_string(),
        }
    }

    /// Whether `endpoint` of `route` runs on this node (known only with peering).
    fn is_local(&self, route: &strata_core::api::Route, endpoint: &str) -> bool {
        self.peering
            .get()
            .is_some_and(|peering| route.endpoint_nodes.get(endpoint) == Some(&peering.node))
    }

    /// The proxy `endpoint` of `route` is reached through, when it runs on another node.
    fn via_peer(&self, route: &strata_core::api::Route, endpoint: &str) -> Option<String> {
        let peering = self.peering.get()?;
        let node = route.endpoint_nodes.get(endpoint)?;
        if *node == peering.node {
            return None;
        }
        self.table.peer(node)
    }

    /// A call from another node's proxy for `endpoint`, an instance of this node: sent as it
    /// is, once (the calling proxy balances and retries).
    pub async fn deliver(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        route: &strata_core::api::Route,
        endpoint: &str,
    ) -> Response<ProxyBody> {
        if let Some(metrics) = &self.metrics {
            metrics.delivered_for_peer(&route.env, &route.service);
        }
        let host = request_host(&request).unwrap_or_default();
        let (parts, body) = request.into_parts();
        let body = match self.collect_body(body).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let upstream = match upstream_request(
            &parts,
            &body,
            &self.local_target(endpoint),
            None,
            &host,
            peer,
            Audience::Mesh,
        ) {
            Ok(upstream) => upstream,
            Err(error) => return plain(StatusCode::BAD_REQUEST, format!("strata: {error}\n")),
        };
        match tokio::time::timeout(self.config.request_timeout, self.client().request(upstream))
            .await
        {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.boxed())
            }
            Ok(Err(error)) => plain(
                StatusCode::BAD_GATEWAY,
                format!("strata: instance {endpoint} could not be reached: {error}\n"),
            ),
            Err(_) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "strata: instance {endpoint} did not answer within {} ms\n",
                    self.config.request_timeout.as_millis()
                ),
            ),
        }
    }

    async fn collect_body(&self, body: Incoming) -> Result<Bytes, Response<ProxyBody>> {
        match Limited::new(body, self.config.max_body).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) => {
                let too_large = error
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                Err(if too_large {
                    plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("strata: request body over {} bytes\n", self.config.max_body),
                    )
                } else {
                    plain(
                        StatusCode::BAD_REQUEST,
                        format!("strata: reading the request body: {error}\n"),
                    )
                })
            }
        }
    }

    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let ingress = self.clone();
        serve_http1(listener, move |mut request: Request<Incoming>, peer| {
            let ingress = ingress.clone();
            // Said by the ingress, never taken from the client.
            request
                .headers_mut()
                .insert("x-forwarded-proto", HeaderValue::from_static("http"));
            async move { ingress.handle(request, peer).await }
        })
        .await
    }

    /// A request from outside: served if its host is a public service's.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        self.measured(request, peer, Audience::Public).await
    }

    /// A call between services, already authorized by the mesh proxy: any service's host.
    pub async fn forward(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        self.measured(request, peer, Audience::Mesh).await
    }

    async fn measured(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        audience: Audience,
    ) -> Response<ProxyBody> {
        let host = request_host(&request);
        // Services that are not public are reached only through the mesh, by name.
        let route = host
            .as_deref()
            .and_then(|host| self.table.lookup(host))
            .filter(|route| audience == Audience::Mesh || route.public);
        let timer = self.metrics.as_ref().and_then(|metrics| match &route {
            Some(route) => Some(metrics.start(&route.env, &route.service)),
            None => {
                metrics.unrouted();
                None
            }
        });
        let response = self.answer(request, peer, host, route, audience).await;
        if let Some(timer) = timer {
            timer.finish(response.status().as_u16());
        }
        response
    }

    async fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        host: Option<String>,
        route: Option<Arc<strata_core::api::Route>>,
        audience: Audience,
    ) -> Response<ProxyBody> {
        let deadline = route
            .as_ref()
            .map(|route| Duration::from_millis(route.limits.request_timeout_ms))
            .map_or(self.config.request_timeout, |service| {
                service.min(self.config.request_timeout)
            });
        let routed = self.route(request, peer, host, route, audience);
        match tokio::time::timeout(deadline, routed).await {
            Ok(response) => response,
            Err(_) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "strata: the service did not answer within {} ms\n",
                    deadline.as_millis()
                ),
            ),
        }
    }
}

/// Who a request comes from: outside (the ingress: public services only) or another service
/// through the mesh proxy (every service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Public,
    Mesh,
}

pub(crate) fn plain(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
