//! Serving the API over HTTPS: a TLS accept loop (tokio-rustls) in front of the axum router,
//! each connection served by hyper with the caller's address attached (the gate audits it)
//! and, when the client presented a node certificate of the cluster CA (rustls verified it),
//! the node it names ([`crate::guard::PeerNode`]).
//! A handshake that does not finish within ten seconds is dropped, so a slow or silent
//! client cannot hold a task forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` over TLS with `tls`, until the task is dropped.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a moment, keep serving.
                tracing::warn!(%error, "cannot accept an API connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %remote, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let node = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| strata_mesh::identity::node_of_certificate(der));
            serve_connection(stream, remote, node, router).await;
        });
    }
}

async fn serve_connection<S>(stream: S, remote: SocketAddr, node: Option<String>, router: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        if let Some(node) = &node {
            request
                .extensions_mut()
                .insert(crate::guard::PeerNode(node.clone()));
        }
        tower::ServiceExt::oneshot(router.clone(), request)
    });
    if let Err(error) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%error, %remote, "API connection ended");
    }
}
