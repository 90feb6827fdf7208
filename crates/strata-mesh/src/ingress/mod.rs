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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::balance::Balancer;
use crate::identity::NodeIdentity;
use crate::metrics::MeshMetrics;
use crate::proxy::CALLER_HEADER;
use crate::resilience::Limiter;
use crate::routes::RoutingTable;
use strata_core::api::default_host;

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

type PeerClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
type InstanceClient = Client<HttpConnector, Full<Bytes>>;

thread_local! {
    /// Each serving thread's client pools, by ingress: a pooled connection is driven by a
    /// task of the thread that made it, so requests of that thread never wait on another
    /// (see [`serve_on_threads`]).
    static INSTANCE_CLIENTS: std::cell::RefCell<std::collections::HashMap<u64, InstanceClient>> =
        Default::default();
    /// The same for other nodes' proxies, with the expiry of the certificate each was made with.
    static PEER_CLIENTS: std::cell::RefCell<std::collections::HashMap<u64, (u64, PeerClient)>> =
        Default::default();
}

static NEXT_INGRESS_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How this node reaches instances on other nodes: through their proxies, over mutual TLS.
struct Peering {
    node: String,
    identity: Arc<NodeIdentity>,
}

impl Peering {
    /// This thread's client of ingress `id` with the current certificate (rebuilt when it is
    /// renewed).
    fn client(&self, id: u64) -> PeerClient {
        let configs = self.identity.current();
        PEER_CLIENTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((not_after, client)) = cache.get(&id) {
                if *not_after == configs.not_after {
                    return client.clone();
                }
            }
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*configs.client).clone())
                .https_only()
                .enable_http1()
                .wrap_connector(instance_connector(false));
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
            cache.insert(id, (configs.not_after, client.clone()));
            client
        })
    }
}

/// The connector to instances (and, under TLS, to other nodes' proxies).
fn instance_connector(enforce_http: bool) -> HttpConnector {
    let mut connector = HttpConnector::new();
    // Short: an instance on a node whose link is cut never answers the SYN; the request
    // is retried on another instance after this long instead of hanging.
    connector.set_connect_timeout(Some(Duration::from_millis(500)));
    connector.set_nodelay(true);
    connector.enforce_http(enforce_http);
    connector
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

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

    fn wake(&self, route: &strata_core::api::Route) {
        let Some(waker) = self.waker.get() else {
            return;
        };
        let now = self.started.elapsed().as_millis() as u64;
        let key = format!("{}/{}", route.env, route.service);
        {
            let mut woken = self.woken.lock().expect("not poisoned");
            if woken.get(&key).is_some_and(|at| now < at + 500) {
                return;
            }
            woken.insert(key, now);
        }
        waker(&route.env, &route.service);
    }

    /// Holds a request for `route`'s service, at zero instances, until an instance is routed
    /// (the route then) or the wait is over (the answer to give).
    async fn until_started(
        &self,
        host: &str,
        route: &strata_core::api::Route,
    ) -> Result<Arc<strata_core::api::Route>, Response<ProxyBody>> {
        let Some(_waiting) = self
            .limiter
            .wait(&route.env, &route.service, self.config.max_waiting)
        else {
            return Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "strata: service `{}` in environment `{}` is starting from zero and {} requests already wait for it; try again in a few seconds\n",
                    route.service, route.env, self.config.max_waiting
                ),
            ));
        };
        let deadline = tokio::time::Instant::now() + self.config.cold_start_wait;
        let mut changes = self.table.subscribe();
        loop {
            self.wake(route);
            if let Some(current) = self.table.lookup(host) {
                if !current.endpoints.is_empty() {
                    return Ok(current);
                }
            }
            tokio::select! {
                _ = changes.changed() => {}
                // Wake again now and then: a lost wake-up must not leave requests waiting.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "strata: service `{}` in environment `{}` is starting from zero and no instance was ready within {} ms; try again shortly, or keep one running with [service.{}.scale] min = 1\n",
                            route.service,
                            route.env,
                            self.config.cold_start_wait.as_millis(),
                            route.service
                        ),
                    ));
                }
            }
        }
    }

    /// From now on, instances that run on other nodes than `node` are reached through their
    /// node's proxy over mutual TLS with `identity` (which may be renewed meanwhile).
    pub fn enable_peering(&self, node: &str, identity: Arc<NodeIdentity>) {
        let _ = self.peering.set(Peering {
            node: node.to_string(),
            identity,
        });
    }

    /// This thread's client pool to instances.
    fn client(&self) -> InstanceClient {
        INSTANCE_CLIENTS.with(|cache| {
            cache
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(|| {
                    Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(5))
                        .build(instance_connector(true))
                })
                .clone()
        })
    }

    /// This node's instances listen on `host` (loopback in a cluster: only the node's own
    /// proxies reach them, other nodes through the inter-node port), though they are
    /// advertised at the node's address.
    pub fn instances_listen_on(&self, host: &str) {
        let _ = self.instance_host.set(host.to_string());
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
        serve_http1(listener, move |request, peer| {
            let ingress = ingress.clone();
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

    /// `host` and `route`: the request's, as [`Ingress::measured`] found them (`route` only
    /// if this audience may reach it).
    async fn route(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        host: Option<String>,
        route: Option<Arc<strata_core::api::Route>>,
        audience: Audience,
    ) -> Response<ProxyBody> {
        let Some(host) = host else {
            return plain(
                StatusCode::BAD_REQUEST,
                "strata: the request has no Host header; use http://SERVICE.ENV.localhost/\n"
                    .into(),
            );
        };
        let Some(route) = route else {
            let hosts = self.table.public_hosts();
            let known = if hosts.is_empty() {
                "no services are deployed yet (strata deploy FILE)".to_string()
            } else {
                format!("routed hosts: {}", hosts.join(", "))
            };
            return plain(
                StatusCode::NOT_FOUND,
                format!("strata: no service is routed at host `{host}`; {known}\n"),
            );
        };
        let route = if route.endpoints.is_empty() && route.scale_from_zero {
            match self.until_started(&host, &route).await {
                Ok(route) => route,
                Err(answer) => return answer,
            }
        } else {
            route
        };
        if route.endpoints.is_empty() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "strata: service `{}` in environment `{}` has no healthy instance ({} wanted); see `strata status {} --env {}`\n",
                    route.service, route.env, route.desired, route.service, route.env
                ),
            );
        }
        let Some(_admitted) =
            self.limiter
                .admit(&route.env, &route.service, route.limits.max_concurrent)
        else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "strata: service `{}` in environment `{}` already has {} requests in flight from this node (its [mesh] max_concurrent); try again shortly\n",
                    route.service, route.env, route.limits.max_concurrent
                ),
            );
        };
        let (parts, body) = request.into_parts();
        let body = match self.collect_body(body).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let mut tried: Vec<String> = Vec::new();
        let mut last_error = String::new();
        // The first instance, then up to `retries` others when safe and within the budget.
        for attempt in 0..=route.limits.retries {
            if attempt > 0 {
                let permille = route.limits.retry_budget_permille;
                if !self.limiter.try_retry(&route.env, &route.service, permille) {
                    last_error.push_str("; not retried: the service's retry budget is spent");
                    break;
                }
                if let Some(metrics) = &self.metrics {
                    metrics.retried(&route.env, &route.service);
                }
            }
            // A retry reads the current table: it goes where traffic goes now.
            let current = if attempt == 0 {
                Some(route.clone())
            } else {
                self.table.lookup(&host)
            };
            let Some(route) = current else {
                break;
            };
            let candidates: Vec<&String> = route
                .endpoints
                .iter()
                .filter(|e| !tried.contains(e))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let endpoint = self.balancer.pick(
                std::time::Instant::now(),
                &candidates,
                rand::random::<usize>,
            );
            tried.push(endpoint.clone());
            if self.requests.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
                let routed = self.table.endpoints();
                self.balancer.retain(|e| routed.contains(e));
                self.limiter.retain(|env, service| {
                    self.table.lookup(&default_host(service, env)).is_some()
                });
            }
            let via = self.via_peer(&route, &endpoint);
            // Through a peer, the request names the instance as routed; a local instance is
            // dialled where it listens.
            let target = if via.is_none() && self.is_local(&route, &endpoint) {
                self.local_target(&endpoint)
            } else {
                endpoint.clone()
            };
            let upstream = match upstream_request(
                &parts,
                &body,
                &target,
                via.as_deref(),
                &host,
                peer,
                audience,
            ) {
                Ok(upstream) => upstream,
                Err(error) => return plain(StatusCode::BAD_REQUEST, format!("strata: {error}\n")),
            };
            let pending = self.balancer.start(&endpoint);
            let outcome = match (&via, self.peering.get()) {
                (Some(_), Some(peering)) => {
                    let client = peering.client(self.id);
                    self.attempt(client.request(upstream), &host, &endpoint)
                        .await
                }
                _ => {
                    self.attempt(self.client().request(upstream), &host, &endpoint)
                        .await
                }
            };
            match &outcome {
                Attempt::Answered(response) => {
                    pending.answered(!response.status().is_server_error())
                }
                Attempt::Failed(_) => pending.failed(),
                // Withdrawn by the platform: says nothing about the instance.
                Attempt::Withdrawn => drop(pending),
            }
            match outcome {
                Attempt::Answered(response) => {
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    return Response::from_parts(parts, body.boxed());
                }
                Attempt::Failed(error) => {
                    let safe = error.is_connect() || idempotent;
                    last_error = format!("instance {endpoint}: {error}");
                    tracing::debug!(%last_error, safe, "upstream request failed");
                    if !safe {
                        break;
                    }
                }
                Attempt::Withdrawn => {
                    last_error =
                        format!("instance {endpoint} was withdrawn while it handled the request");
                    tracing::debug!(%last_error, idempotent, "instance withdrawn mid-request");
                    if !idempotent {
                        break;
                    }
                }
            }
        }
        plain(
            StatusCode::BAD_GATEWAY,
            format!("strata: service at `{host}` could not be reached ({last_error})\n"),
        )
    }

    /// Sends one request to one instance. Gives up early if the platform withdraws the
    /// instance from the table meanwhile (its node went down, it is being stopped): a request
    /// to an instance behind a cut link would otherwise hang until the deadline.
    async fn attempt(
        &self,
        request: impl std::future::Future<
            Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>,
        >,
        host: &str,
        endpoint: &str,
    ) -> Attempt {
        let mut changes = self.table.subscribe();
        tokio::pin!(request);
        loop {
            tokio::select! {
                result = &mut request => {
                    return match result {
                        Ok(response) => Attempt::Answered(response),
                        Err(error) => Attempt::Failed(error),
                    };
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The table is gone (shutting down): let the request finish.
                        return match request.await {
                            Ok(response) => Attempt::Answered(response),
                            Err(error) => Attempt::Failed(error),
                        };
                    }
                    if !self.table.routes_to(host, endpoint) {
                        return Attempt::Withdrawn;
                    }
                }
            }
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

/// Runs `serve` on `threads` threads, each with a single-threaded runtime of its own and the
/// same listening socket: a connection is accepted, proxied and answered by one thread, with
/// that thread's connection pools, as nginx's workers do. (A work-stealing runtime passes each
/// request between threads; this serves ~1.5x the requests on the same cores,
/// docs/benchmarks.md.) The threads run for the rest of the process.
pub fn serve_on_threads<F, Fut>(
    name: &str,
    listener: TcpListener,
    threads: usize,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(TcpListener) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let listener = listener.into_std()?;
    for i in 0..threads.max(1) {
        let socket = listener.try_clone()?;
        let serve = serve.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(socket) {
                        Ok(listener) => serve(listener).await,
                        Err(error) => tracing::error!(%error, "cannot serve on this thread"),
                    }
                })
            })?;
    }
    Ok(())
}

/// How many threads the node's proxies serve on: one per core.
pub fn proxy_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Serves HTTP/1.1 connections from `listener` with `handler` until the task is dropped.
pub(crate) async fn serve_http1<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<ProxyBody>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(request, peer).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "proxy connection ended");
            }
        });
    }
}

enum Attempt {
    Answered(Response<Incoming>),
    Failed(hyper_util::client::legacy::Error),
    Withdrawn,
}

fn request_host<B>(request: &Request<B>) -> Option<String> {
    let raw = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())?;
    let host = host_without_port(raw)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// `hello.dev.localhost:8080` -> `hello.dev.localhost`; `[::1]:80` -> `::1`.
fn host_without_port(raw: &str) -> &str {
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match raw.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => raw,
    }
}

/// The request to send to `endpoint`: directly, or `via` its node's proxy (over TLS, naming
/// the instance in [`ENDPOINT_HEADER`]). A caller's identity is kept only on calls between
/// services: from outside, a `strata-caller` header is dropped, never believed.
fn upstream_request(
    parts: &http::request::Parts,
    body: &Bytes,
    endpoint: &str,
    via: Option<&str>,
    host: &str,
    peer: SocketAddr,
    audience: Audience,
) -> Result<Request<Full<Bytes>>, String> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let target = match via {
        Some(proxy) => format!("https://{proxy}{path}"),
        None => format!("http://{endpoint}{path}"),
    };
    let uri: Uri = target
        .parse()
        .map_err(|error| format!("bad request path `{path}`: {error}"))?;
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .version(http::Version::HTTP_11)
        .body(Full::new(body.clone()))
        .map_err(|error| error.to_string())?;
    let headers = request.headers_mut();
    headers.clone_from(&parts.headers);
    strip_hop_by_hop(headers);
    headers.remove(ENDPOINT_HEADER);
    if audience == Audience::Public {
        headers.remove(CALLER_HEADER);
    }
    if via.is_some() {
        let value = HeaderValue::from_str(endpoint).map_err(|error| error.to_string())?;
        headers.insert(ENDPOINT_HEADER, value);
    }
    let forwarded_for = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(previous) => format!("{previous}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    Ok(request)
}

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP.iter().map(|s| s.to_string()).chain(named) {
        headers.remove(name.as_str());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_table() {
        let table = [
            ("hello.dev.localhost:8080", Some("hello.dev.localhost")),
            ("Hello.Dev.Localhost", Some("hello.dev.localhost")),
            ("hello.dev.localhost.", Some("hello.dev.localhost")),
            ("[::1]:8080", Some("::1")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            (":80", None),
        ];
        for (raw, want) in table {
            let request = Request::builder()
                .header(header::HOST, raw)
                .body(())
                .unwrap();
            assert_eq!(request_host(&request).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = http::HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);
    }
}
