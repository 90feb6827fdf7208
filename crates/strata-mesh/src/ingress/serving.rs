//! Serving: accepting connections (a failed accept is retried, not fatal), HTTP/1.1 on each,
//! and running a proxy on one single-threaded runtime per core.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::ProxyBody;

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
        let (stream, peer) = accept(&listener, "proxy accept failed").await;
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let _open = crate::handover::OpenConnection::new();
            let service = hyper::service::service_fn(move |request| {
                let handler = handler.clone();
                async move {
                    let mut response = handler(request, peer).await;
                    crate::handover::mark(&mut response);
                    Ok::<_, Infallible>(response)
                }
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

/// The next connection on `listener`. A failed accept (out of file descriptors and the like)
/// is logged as `what` and retried after a moment: it never ends the serving.
/// While this process holds its listeners it waits; once it stops accepting
/// ([`crate::handover`]), it waits forever: the listening socket is the new process's.
pub(crate) async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        if !crate::handover::may_accept().await {
            return std::future::pending().await;
        }
        let accepted = tokio::select! {
            biased;
            _ = crate::handover::stopped() => std::future::pending().await,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, "{what}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
