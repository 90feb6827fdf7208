//! Serving an HTTP API over TLS (the control plane's, a node's own): a TLS accept loop
//! (tokio-rustls) in front of an axum router, each connection served by hyper with the
//! caller's address attached (`ConnectInfo`) and, when the client presented a certificate of
//! the cluster CA (rustls verified it), who it names ([`crate::identity::Peer`]). The TLS
//! configuration is read at each connection, so a renewed certificate takes effect at once.
//! A handshake that does not finish within ten seconds is dropped, so a slow or silent
//! client cannot hold a task forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;

/// The TLS configuration to accept the next connection with.
pub type CurrentTls = Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>;
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
    serve_tls_current(listener, Arc::new(move || tls.clone()), router).await
}

/// [`serve_tls`] with the configuration `current` gives at each connection.
pub async fn serve_tls_current(
    listener: TcpListener,
    current: CurrentTls,
    router: Router,
) -> std::io::Result<()> {
    loop {
        let (tcp, remote) =
            crate::ingress::accept(&listener, "cannot accept an API connection").await;
        let acceptor = tokio_rustls::TlsAcceptor::from(current());
        let router = router.clone();
        tokio::spawn(async move {
            let _open = crate::handover::OpenConnection::new();
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %remote, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| crate::identity::peer_of_certificate(der));
            serve_connection(stream, remote, peer, router).await;
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    remote: SocketAddr,
    peer: Option<crate::identity::Peer>,
    router: Router,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        if let Some(peer) = &peer {
            request.extensions_mut().insert(peer.clone());
        }
        let response = tower::ServiceExt::oneshot(router.clone(), request);
        async move {
            let mut response = response.await?;
            crate::handover::mark(&mut response);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    if let Err(error) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%error, %remote, "API connection ended");
    }
}
