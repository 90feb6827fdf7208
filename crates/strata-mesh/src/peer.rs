//! The node's inter-node port: where other nodes' proxies send calls for this node's
//! instances. Mutual TLS only: a connection without a certificate of the cluster CA, or in
//! plain text, is refused during the handshake. Each request names its instance
//! (`strata-endpoint`), which must be one of this node's for the requested service; the
//! caller's identity (`strata-caller`, vouched for by the calling node's certificate) is
//! checked against the callee's policy again here, so a node never delivers a call its own
//! policy view forbids; and a node's word for its caller is believed only for a service it
//! runs (the caller's route lists the nodes holding its instances), so a compromised node
//! cannot call as a service that has no instance on it. A TCP connection to an instance of a
//! `protocol = "tcp"` service comes as an upgrade (`Upgrade: strata-tcp`) checked the same
//! way, then carries the connection's bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::identity::NodeIdentity;
use crate::ingress::{plain, Ingress, ProxyBody, ENDPOINT_HEADER};
use crate::policy;
use crate::proxy::{Denial, CALLER_HEADER};
use crate::routes::RoutingTable;

/// How long a peer has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The listener of calls from other nodes.
pub struct PeerListener {
    node: String,
    ingress: Arc<Ingress>,
    table: Arc<RoutingTable>,
    identity: Arc<NodeIdentity>,
    on_denial: Box<dyn Fn(Denial) + Send + Sync>,
}

impl PeerListener {
    /// Delivers calls for node `node`'s instances through `ingress` (its client and limits).
    pub fn new(
        node: &str,
        ingress: Arc<Ingress>,
        table: Arc<RoutingTable>,
        identity: Arc<NodeIdentity>,
        on_denial: impl Fn(Denial) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            node: node.to_string(),
            ingress,
            table,
            identity,
            on_denial: Box::new(on_denial),
        })
    }

    /// Serves TLS connections from `listener` until the task is dropped. Each connection is
    /// accepted with the certificate current at that moment (renewals apply to new ones).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) =
                crate::ingress::accept(&listener, "inter-node accept failed").await;
            let _ = stream.set_nodelay(true);
            let acceptor = TlsAcceptor::from(self.identity.current().server);
            let this = self.clone();
            tokio::spawn(async move {
                let _open = crate::handover::OpenConnection::new();
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::info!(%peer, %error, "inter-node connection refused");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "inter-node TLS handshake timed out");
                            return;
                        }
                    };
                // The calling node, as its certificate names it (verified against the CA
                // in the handshake).
                let calling_node: Option<Arc<str>> = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| crate::identity::node_of_certificate(cert.as_ref()))
                    .map(Arc::from);
                // A decommissioned node's certificate is refused, however valid.
                if let Some(node) = calling_node.as_deref().filter(|n| this.table.is_revoked(n)) {
                    tracing::warn!(%peer, node, "inter-node connection refused: the node's identity is revoked (decommissioned)");
                    return;
                }
                let service = hyper::service::service_fn(move |request| {
                    let this = this.clone();
                    let calling_node = calling_node.clone();
                    async move {
                        let mut response =
                            this.handle(request, peer, calling_node.as_deref()).await;
                        crate::handover::mark(&mut response);
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                // With upgrades: a TCP connection is carried on its own TLS connection.
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(%error, "inter-node connection ended");
                }
            });
        }
    }

    async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        calling_node: Option<&str>,
    ) -> Response<ProxyBody> {
        // Revoked while its connection was open: nothing more on it.
        if let Some(node) = calling_node.filter(|n| self.table.is_revoked(n)) {
            return plain(
                StatusCode::FORBIDDEN,
                format!("strata: node {node}'s identity is revoked (decommissioned)\n"),
            );
        }
        let Some(endpoint) = request
            .headers()
            .get(ENDPOINT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("strata: a call between nodes names its instance in `{ENDPOINT_HEADER}`\n"),
            );
        };
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase())
            .unwrap_or_default();
        let Some(route) = self.table.lookup(&host) else {
            return plain(
                StatusCode::NOT_FOUND,
                format!(
                    "strata: no service is routed at host `{host}` on node {}\n",
                    self.node
                ),
            );
        };
        if route.endpoint_nodes.get(&endpoint) != Some(&self.node) {
            return plain(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "strata: {endpoint} is not an instance of `{}` on node {}\n",
                    route.service, self.node
                ),
            );
        }
        let caller = request
            .headers()
            .get(CALLER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let allowed = match &caller {
            Some(caller) => policy::decide(caller, &route)
                .and_then(|()| self.vouched_for(caller, &route, calling_node))
                .inspect_err(|rule| {
                    (self.on_denial)(Denial {
                        env: route.env.to_string(),
                        caller: caller.clone(),
                        callee: route.service.to_string(),
                        rule: rule.clone(),
                    });
                }),
            None if route.public => Ok(()),
            None => Err(format!("{} is not public", route.service)),
        };
        if let Err(rule) = allowed {
            return plain(
                StatusCode::FORBIDDEN,
                format!("strata: call to `{}` refused ({rule})\n", route.service),
            );
        }
        if crate::ingress::is_tcp_upgrade(&request) {
            return self.ingress.deliver_tcp(request, &route, &endpoint).await;
        }
        self.ingress.deliver(request, peer, &route, &endpoint).await
    }

    /// Whether `calling_node` may speak for `caller` (a service of `route`'s environment): it
    /// holds an instance of it, by this node's routing table.
    fn vouched_for(
        &self,
        caller: &str,
        route: &strata_core::api::Route,
        calling_node: Option<&str>,
    ) -> Result<(), String> {
        let Some(node) = calling_node else {
            return Err(format!(
                "the calling peer is not a node and cannot call as `{caller}`"
            ));
        };
        let host = strata_core::api::default_host(caller, &route.env);
        match self.table.lookup(&host) {
            Some(callers) if callers.running_on.contains(node) => Ok(()),
            _ => Err(format!(
                "node {node} runs no instance of `{caller}` and cannot call as it"
            )),
        }
    }
}
