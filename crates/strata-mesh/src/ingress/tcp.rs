//! TCP connections through the proxy (a `protocol = "tcp"` service): which instance a
//! connection goes to, and how it gets there. An instance of this node is dialled where it
//! listens; one of another node through that node's inter-node port, over mutual TLS: an
//! HTTP/1.1 upgrade (`Upgrade: strata-tcp`) names the instance and the caller, the peer checks
//! them as it checks a request, and from its `101` on the TLS connection carries the bytes.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use strata_core::api::{default_host, Route};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{plain, Ingress, ProxyBody, ENDPOINT_HEADER};
use crate::proxy::CALLER_HEADER;

/// The `Upgrade` protocol of a TCP connection carried between nodes' proxies.
pub const TCP_UPGRADE: &str = "strata-tcp";

/// How long dialling an instance may take before another is tried: an instance on a node
/// whose link is cut never answers the SYN.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a peer has to accept a carried connection (TLS, its checks, its own dial).
const TUNNEL_TIMEOUT: Duration = Duration::from_secs(3);

/// The most instances one connection tries before it is given up.
const MAX_TRIES: usize = 3;

/// Either end of a carried connection.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Ingress {
    /// Opens a connection for `caller` (a service of `route`'s environment) to an instance of
    /// `route`: balanced over its routed instances, another tried when one cannot be reached
    /// (nothing was sent to it). The instance's endpoint and the connection, or why none.
    pub(crate) async fn open_tcp(
        &self,
        route: &Route,
        caller: &str,
    ) -> Result<(String, Box<dyn Stream>), String> {
        let host = default_host(&route.service, &route.env);
        let mut tried: Vec<String> = Vec::new();
        let mut last_error = format!(
            "service `{}` in environment `{}` has no healthy instance ({} wanted)",
            route.service, route.env, route.desired
        );
        for attempt in 0..MAX_TRIES {
            // A retry reads the current table: it goes where traffic goes now.
            let current = match attempt {
                0 => Some(std::sync::Arc::new(route.clone())),
                _ => self.table.lookup(&host),
            };
            let Some(route) = current else { break };
            let candidates: Vec<&String> = route
                .endpoints
                .iter()
                .filter(|endpoint| !tried.contains(endpoint))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let endpoint = self.pick(&candidates, &mut tried);
            let pending = self.balancer.start(&endpoint);
            let opened = match self.via_peer(&route, &endpoint) {
                Some(proxy) => self.tunnel(&proxy, &host, &endpoint, caller).await,
                None => {
                    let target = if self.is_local(&route, &endpoint) {
                        self.local_target(&endpoint)
                    } else {
                        endpoint.clone()
                    };
                    dial(&target)
                        .await
                        .map(|stream| Box::new(stream) as Box<dyn Stream>)
                }
            };
            match opened {
                Ok(stream) => {
                    pending.answered(true);
                    return Ok((endpoint, stream));
                }
                Err(error) => {
                    pending.failed();
                    last_error = format!("instance {endpoint}: {error}");
                    tracing::debug!(%last_error, "a tcp connection's instance could not be reached");
                }
            }
        }
        Err(last_error)
    }

    /// A connection to `endpoint` through the proxy at `proxy` (another node's inter-node
    /// port), over mutual TLS.
    async fn tunnel(
        &self,
        proxy: &str,
        host: &str,
        endpoint: &str,
        caller: &str,
    ) -> Result<Box<dyn Stream>, String> {
        let peering = self.peering.get().ok_or("this node has no peering")?;
        let request = Request::builder()
            .uri(format!("https://{proxy}/"))
            .header(header::HOST, host)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, TCP_UPGRADE)
            .header(ENDPOINT_HEADER, endpoint)
            .header(CALLER_HEADER, caller)
            .body(Full::new(Bytes::new()))
            .map_err(|error| error.to_string())?;
        let client = peering.client(self.id);
        let response = tokio::time::timeout(TUNNEL_TIMEOUT, client.request(request))
            .await
            .map_err(|_| format!("node proxy {proxy} did not answer within {TUNNEL_TIMEOUT:?}"))?
            .map_err(|error| format!("node proxy {proxy}: {error}"))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_default();
            return Err(format!("node proxy {proxy} answered {status}: {body}"));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|error| format!("node proxy {proxy}: {error}"))?;
        Ok(Box::new(TokioIo::new(upgraded)))
    }

    /// A carried connection from another node's proxy for `endpoint`, an instance of this
    /// node (the request already checked as any call between nodes is): the instance is
    /// dialled first, so a failure is answered (and the caller's node tries another), then
    /// `101` and the bytes both ways.
    pub(crate) async fn deliver_tcp(
        &self,
        request: Request<Incoming>,
        route: &Route,
        endpoint: &str,
    ) -> Response<ProxyBody> {
        if route.tcp_port.is_none() {
            return plain(
                StatusCode::BAD_REQUEST,
                format!(
                    "strata: `{}` is an HTTP service; a TCP connection cannot be carried to it\n",
                    route.service
                ),
            );
        }
        let target = self.local_target(endpoint);
        let instance = match dial(&target).await {
            Ok(instance) => instance,
            Err(error) => {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    format!("strata: instance {endpoint} could not be reached: {error}\n"),
                )
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.delivered_for_peer(&route.env, &route.service);
        }
        let endpoint = endpoint.to_string();
        tokio::spawn(async move {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    let mut upgraded = TokioIo::new(upgraded);
                    let mut instance = instance;
                    if let Err(error) =
                        tokio::io::copy_bidirectional(&mut upgraded, &mut instance).await
                    {
                        tracing::debug!(%error, %endpoint, "a carried tcp connection ended");
                    }
                }
                Err(error) => tracing::debug!(%error, %endpoint, "a tcp upgrade failed"),
            }
        });
        let mut response = Response::new(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        );
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static(TCP_UPGRADE));
        response
    }
}

/// Whether `request` asks to carry a TCP connection.
pub fn is_tcp_upgrade<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(TCP_UPGRADE.as_bytes()))
}

/// Dials `target` (`host:port`), within [`CONNECT_TIMEOUT`].
async fn dial(target: &str) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| format!("no answer within {} ms", CONNECT_TIMEOUT.as_millis()))?
        .map_err(|error| error.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
