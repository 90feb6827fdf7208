//! Outbound HTTP: the only way out of a wasm guest.
//!
//! A guest has no sockets. Its `wasi:http/outgoing-handler` calls land in
//! [`OutboundHooks::send_request`], which lets through exactly one form: `http://SERVICE/...`,
//! where `SERVICE` is a bare name (letters, digits, `-`, `_`; no dots, no port). The platform's
//! [`OutboundRouter`] turns the name into the address of a healthy instance of that service,
//! and the request goes there over a pooled HTTP/1.1 connection, with `Host: SERVICE`.
//!
//! Anything else (an IP address, a dotted host name, a port, `https`) is refused: the guest
//! gets `error-code.HTTP-request-denied` and the router's [`OutboundRouter::refused`] is
//! called so the platform can record an event. A bare name the router cannot place gets
//! `error-code.destination-not-found`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::log::InstanceLog;

/// Where the platform routes a guest's outbound calls. The agent implements it: `resolve` gives
/// where to send a call to a service of the caller's environment (the node's mesh proxy, which
/// balances, retries and applies who-may-call-whom), `authorization` the caller's credentials
/// for it, `refused` records an event.
pub trait OutboundRouter: Send + Sync + 'static {
    /// Where to send a call to `service`, or `None` when no such service exists.
    fn resolve(&self, service: &str) -> Option<SocketAddr>;
    /// The `Proxy-Authorization` value proving the caller's identity to the mesh proxy.
    fn authorization(&self) -> Option<String> {
        None
    }
    /// A guest tried to reach `destination` (`scheme://authority`), which is not a Strata
    /// service; the request was refused.
    fn refused(&self, destination: &str);
}

/// A router that knows no service: every outbound call is refused or not found.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOutbound;

impl OutboundRouter for NoOutbound {
    fn resolve(&self, _service: &str) -> Option<SocketAddr> {
        None
    }
    fn refused(&self, _destination: &str) {}
}

/// The HTTP client guests' calls share: connections to other services are pooled, not opened
/// per call.
#[derive(Clone)]
pub(crate) struct OutboundClient {
    client: Client<HttpConnector, WasiBody>,
}

impl OutboundClient {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(connector);
        OutboundClient { client }
    }
}

/// The `wasi:http` hooks of one request's store.
pub(crate) struct OutboundHooks {
    pub(crate) router: Arc<dyn OutboundRouter>,
    pub(crate) client: OutboundClient,
    pub(crate) log: InstanceLog,
}

/// Why a destination is not `http://SERVICE`.
fn service_name(scheme: Option<&str>, authority: Option<&http::uri::Authority>) -> Option<String> {
    if scheme != Some("http") {
        return None;
    }
    let authority = authority?;
    if authority.port().is_some() || authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    let valid = !host.is_empty()
        && host.len() <= 63
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && host
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    valid.then(|| host.to_ascii_lowercase())
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn is_supported_scheme(&mut self, _scheme: &http::uri::Scheme) -> bool {
        // Every scheme reaches `send_request`, which refuses all but http with the right code.
        true
    }

    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        Some(http::uri::Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let uri = request.uri().clone();
        let destination = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or("")
        );
        let Some(service) = service_name(uri.scheme_str(), uri.authority()) else {
            self.log.line(&format!(
                "outbound request to {destination} refused: a wasm service may only call other \
                 services as http://SERVICE/ (a bare service name, no dots, no port)"
            ));
            self.router.refused(&destination);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        let Some(address) = self.router.resolve(&service) else {
            self.log.line(&format!(
                "outbound request to http://{service}/: no healthy instance of a service named \
                 {service:?} in this environment"
            ));
            return Box::new(async { Err(HttpError::DestinationNotFound) });
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let target = match http::Uri::builder()
            .scheme("http")
            .authority(address.to_string())
            .path_and_query(path)
            .build()
        {
            Ok(target) => target,
            Err(_) => return Box::new(async { Err(HttpError::HttpRequestUriInvalid) }),
        };
        *request.uri_mut() = target;
        // The service's name travels as the Host: the proxy resolves it.
        if let Ok(host) = http::HeaderValue::from_str(&service) {
            request.headers_mut().insert(http::header::HOST, host);
        }
        // Set here, never by the guest: its identity is not its to choose.
        request
            .headers_mut()
            .remove(http::header::PROXY_AUTHORIZATION);
        if let Some(value) = self
            .router
            .authorization()
            .and_then(|a| http::HeaderValue::from_str(&a).ok())
        {
            request
                .headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, value);
        }
        let timeout = options.and_then(|o| o.first_byte_timeout.or(o.connect_timeout));
        let client = self.client.client.clone();
        Box::new(async move {
            let sent = client.request(request);
            let response = match timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|_| HttpError::ConnectionReadTimeout)?,
                None => sent.await,
            }
            .map_err(|error| {
                if error.is_connect() {
                    HttpError::ConnectionRefused
                } else {
                    HttpError::InternalError(Some(format!("calling {service}: {error}")))
                }
            })?;
            let response = response.map(|body| body.map_err(HttpError::Hyper).boxed_unsync());
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(uri: &str) -> Option<String> {
        let uri: http::Uri = uri.parse().unwrap();
        service_name(uri.scheme_str(), uri.authority())
    }

    #[test]
    fn only_bare_http_names_are_services() {
        assert_eq!(name("http://backend/").as_deref(), Some("backend"));
        assert_eq!(name("http://Backend-2/x?y").as_deref(), Some("backend-2"));
        assert_eq!(name("http://1.1.1.1/"), None);
        assert_eq!(name("http://example.com/"), None);
        assert_eq!(name("http://backend:8080/"), None);
        assert_eq!(name("https://backend/"), None);
        assert_eq!(name("http://user@backend/"), None);
        assert_eq!(name("http://[::1]/"), None);
    }
}
