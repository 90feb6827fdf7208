//! A service's `[mesh]` limits, applied by the proxy against real servers on loopback: its
//! deadline, retries only where safe, the retry budget and the circuit breaker; and requests
//! in flight to an instance that drains finish, those to one that is gone are left.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use strata_core::api::{CallLimits, Route};
use strata_mesh::{Ingress, IngressConfig, RoutingTable};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A proxy in front of `endpoints` as service `web` of `dev` with `limits`; its address.
async fn proxy(
    endpoints: Vec<String>,
    limits: CallLimits,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let table = RoutingTable::new();
    table.replace(&common::table(vec![Route {
        limits,
        ..common::route("web", endpoints)
    }]));
    common::serve_ingress(Ingress::new(table, IngressConfig::default())).await
}

fn client(proxy: SocketAddr) -> (reqwest::Client, String) {
    common::client("web", proxy, Duration::from_secs(10))
}

/// A server that reads each request and closes the connection without answering (the request
/// reached the instance: retrying it is safe only if it is idempotent); counts requests.
async fn dropping_server() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                // Dropped: the connection closes with no response.
            });
        }
    });
    (address, hits, task)
}

fn limits(retries: u32, retry_budget_permille: u32) -> CallLimits {
    CallLimits {
        retries,
        retry_budget_permille,
        ..CallLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_deadline_answers_504() {
    let app = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "late"
        }),
    );
    let (slow, server) = common::serve(app).await;
    let limits = CallLimits {
        request_timeout_ms: 200,
        ..CallLimits::default()
    };
    let (address, proxy_task) = proxy(vec![slow.to_string()], limits).await;
    let (client, url) = client(address);
    let started = std::time::Instant::now();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the 200 ms deadline, not the instance, ended the request"
    );
    assert!(response.text().await.unwrap().contains("within 200 ms"));
    proxy_task.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_idempotent_requests_are_retried_once_sent() {
    let (a, a_hits, a_task) = dropping_server().await;
    let (b, b_hits, b_task) = dropping_server().await;
    let (address, proxy_task) = proxy(vec![a.to_string(), b.to_string()], limits(3, 200)).await;
    let (client, url) = client(address);
    let hits = || a_hits.load(Ordering::SeqCst) + b_hits.load(Ordering::SeqCst);

    // A POST reached an instance: the proxy cannot know whether it took effect; no retry.
    let response = client.post(&url).body("pay 10").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(hits(), 1, "the POST was sent once");

    // A GET is retried on the other instance (3 retries allowed, 2 instances in all).
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(hits(), 3, "the GET went to both instances");
    assert_eq!(
        a_hits
            .load(Ordering::SeqCst)
            .min(b_hits.load(Ordering::SeqCst)),
        1
    );
    proxy_task.abort();
    a_task.abort();
    b_task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retry_budget_bounds_retries_during_an_outage() {
    let (a, a_hits, a_task) = dropping_server().await;
    let (b, b_hits, b_task) = dropping_server().await;
    // A budget of 0 leaves the floor of 10 retries per 10 s.
    let (address, proxy_task) = proxy(vec![a.to_string(), b.to_string()], limits(1, 0)).await;
    let (client, url) = client(address);
    let mut bodies = Vec::new();
    for _ in 0..30 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 502);
        bodies.push(response.text().await.unwrap());
    }
    let hits = a_hits.load(Ordering::SeqCst) + b_hits.load(Ordering::SeqCst);
    assert_eq!(hits, 40, "30 requests and 10 retries reached the instances");
    assert!(
        bodies[29].contains("retry budget is spent"),
        "the answer says why it was not retried: {}",
        bodies[29]
    );
    proxy_task.abort();
    a_task.abort();
    b_task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_circuit_breaker_sheds_requests_past_max_concurrent() {
    let entered = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let app = {
        let entered = entered.clone();
        let release = release.clone();
        Router::new().route(
            "/",
            get(move || {
                let entered = entered.clone();
                let release = release.clone();
                async move {
                    entered.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    "done"
                }
            }),
        )
    };
    let (instance, server) = common::serve(app).await;
    let limits = CallLimits {
        max_concurrent: 2,
        ..CallLimits::default()
    };
    let (address, proxy_task) = proxy(vec![instance.to_string()], limits).await;
    let (client, url) = client(address);

    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    for _ in 0..200 {
        if entered.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        entered.load(Ordering::SeqCst),
        2,
        "two requests are in flight"
    );

    let shed = client.get(&url).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert!(shed.text().await.unwrap().contains("max_concurrent"));
    assert_eq!(
        entered.load(Ordering::SeqCst),
        2,
        "the instance never saw it"
    );

    // Releasing both; notify_waiters wakes only those already waiting, so retry until done.
    for request in held {
        let response = loop {
            release.notify_waiters();
            tokio::time::sleep(Duration::from_millis(10)).await;
            if request.is_finished() {
                break request.await.unwrap().unwrap();
            }
        };
        assert_eq!(response.status(), 200);
    }
    let admitted = tokio::spawn(client.get(&url).send());
    let response = loop {
        release.notify_waiters();
        tokio::time::sleep(Duration::from_millis(10)).await;
        if admitted.is_finished() {
            break admitted.await.unwrap().unwrap();
        }
    };
    assert_eq!(
        response.status(),
        200,
        "the circuit closed once requests ended"
    );
    proxy_task.abort();
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_draining_instance_finishes_its_requests_and_a_gone_one_is_left() {
    let app = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "finished"
        }),
    );
    let (instance, server) = common::serve(app).await;
    let table = RoutingTable::new();
    let routes = |endpoints: Vec<String>, draining: Vec<String>| {
        common::table(vec![Route {
            desired: 1,
            limits: limits(0, 200),
            draining,
            running_on: Default::default(),
            split: None,
            ..common::route("web", endpoints)
        }])
    };
    table.replace(&routes(vec![instance.to_string()], vec![]));
    let (address, proxy_task) =
        common::serve_ingress(Ingress::new(table.clone(), IngressConfig::default())).await;
    let (client, url) = client(address);

    // Scaled down: the instance drains. Its request in flight is answered.
    let request = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    table.replace(&routes(vec![], vec![instance.to_string()]));
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");

    // Its node is gone: the request is left at once (and, with no retry allowed, 502).
    table.replace(&routes(vec![instance.to_string()], vec![]));
    let request = tokio::spawn(async move { client.get(&url).send().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    table.replace(&routes(vec![], vec![]));
    let response = request.await.unwrap().unwrap();
    // Had the proxy waited, the instance would have answered 200 "finished".
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("withdrawn"));
    proxy_task.abort();
    server.abort();
}
