//! Strata's example service: a small HTTP server.
//!
//! It does what a well-behaved service on Strata does: listens where the platform says
//! (`HOST`, `PORT`), takes its configuration from the environment (`GREETING`), answers a
//! health check, and finishes in-flight requests before exiting on SIGTERM.
//!
//! `GET /work/MS` answers after MS milliseconds (at most 10 s), as a request that takes time
//! would: load for the autoscaler. With `WORK_SLOTS=N`, an instance works on at most N such
//! requests at once and the others queue, as a server with N workers does: more load than
//! its instances can take shows as latency.
//!
//! With `FAIL_RATE=0.3` in its configuration, `GET /` answers 500 to that share of requests
//! (evenly: every third or so), as a bad release would: what a canary's analysis catches.
//!
//! `GET /call/SERVICE` calls another service of its environment by name, `http://SERVICE/`,
//! and returns what it said (with the status it answered): the application names the
//! service; the platform's mesh proxy (`HTTP_PROXY`, which the HTTP client honours) finds an
//! instance, retries, and decides whether the call is allowed. No addresses, no retry loop.
//!
//! `GET /call-tcp/NAME:PORT?send=LINE` dials a TCP service by name (`redis:6379`), sends
//! LINE (default `PING`) with `\r\n`, and returns the first line it answers: the name
//! resolves to an address the node's proxy answers for that service. With `MODE=tcp-echo` it
//! is such a service itself: on `PORT` it answers each line with `GREETING (INSTANCE): LINE`.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = match std::env::var("PORT").map(|p| p.parse()) {
        Ok(Ok(port)) => port,
        Ok(Err(_)) => {
            eprintln!("hello: PORT is not a port number");
            std::process::exit(2);
        }
        Err(_) => 8000,
    };
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
    let instance = std::env::var("STRATA_INSTANCE").unwrap_or_else(|_| "local".into());
    let release = std::env::var("STRATA_RELEASE").unwrap_or_else(|_| "-".into());
    let reply = format!("{greeting} from {instance} (release {release})\n");
    if std::env::var("MODE").as_deref() == Ok("tcp-echo") {
        return tcp_echo(&host, port, format!("{greeting} ({instance})")).await;
    }

    let slots = std::env::var("WORK_SLOTS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .map(|n| std::sync::Arc::new(tokio::sync::Semaphore::new(n)));
    let fail_rate = std::env::var("FAIL_RATE")
        .ok()
        .and_then(|rate| rate.trim().parse::<f64>().ok())
        .filter(|rate| (0.0..=1.0).contains(rate))
        .unwrap_or(0.0);
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/",
            get(move |headers: axum::http::HeaderMap| async move {
                // Request n fails when the share of failures so far falls behind the rate.
                let n = answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f64;
                if ((n + 1.0) * fail_rate).floor() > (n * fail_rate).floor() {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("failing on purpose (FAIL_RATE={fail_rate}): {reply}"),
                    );
                }
                // The mesh says which service called (never the caller itself).
                let body = match headers.get("strata-caller").and_then(|v| v.to_str().ok()) {
                    Some(caller) => format!("{} (called by {caller})\n", reply.trim_end()),
                    None => reply.clone(),
                };
                (StatusCode::OK, body)
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/call/{service}", get(call))
        .route("/call-tcp/{target}", get(call_tcp))
        .route(
            "/work/{ms}",
            get(move |Path(ms): Path<u64>| {
                let slots = slots.clone();
                async move {
                    let _slot = match &slots {
                        Some(slots) => slots.clone().acquire_owned().await.ok(),
                        None => None,
                    };
                    tokio::time::sleep(std::time::Duration::from_millis(ms.min(10_000))).await;
                    format!("worked {ms} ms\n")
                }
            }),
        );
    let addr: SocketAddr = format!("{host}:{port}").parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host}:{port}: {e}"),
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("hello: listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler installs");
            term.recv().await;
            println!("hello: SIGTERM, finishing in-flight requests");
        })
        .await
}

/// Calls `http://SERVICE/` and relays its answer.
async fn call(Path(service): Path<String>) -> (StatusCode, String) {
    let client = reqwest::Client::new();
    match client.get(format!("http://{service}/")).send().await {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("calling {service}: {error}\n"),
        ),
    }
}

/// Dials `target` (`NAME:PORT`) by name, sends one line and relays the first line answered.
async fn call_tcp(
    Path(target): Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, String) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let line = query.get("send").map_or("PING", String::as_str);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&target).await?;
        stream.write_all(format!("{line}\r\n").as_bytes()).await?;
        let mut answer = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), exchange).await {
        Ok(Ok(answer)) if !answer.is_empty() => (StatusCode::OK, answer),
        Ok(Ok(_)) => (
            StatusCode::BAD_GATEWAY,
            format!("calling {target}: the connection closed without an answer\n"),
        ),
        Ok(Err(error)) => (
            StatusCode::BAD_GATEWAY,
            format!("calling {target}: {error}\n"),
        ),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("calling {target}: no answer within 5 s\n"),
        ),
    }
}

/// `MODE=tcp-echo`: answers each line on `host:port` with `GREETING (INSTANCE): LINE`, until
/// SIGTERM.
async fn tcp_echo(host: &str, port: u16, greeting: String) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    println!("hello: echoing lines on tcp {host}:{port}");
    let greeting = std::sync::Arc::new(greeting);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = term.recv() => return Ok(()),
        };
        let greeting = greeting.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = format!("{greeting}: {}\n", line.trim_end());
                if write.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}
