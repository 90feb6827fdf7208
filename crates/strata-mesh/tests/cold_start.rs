//! A service at zero instances: the proxy holds its requests (a bounded number, for a bounded
//! time) and wakes the platform, then serves them when an instance is routed; past the bounds,
//! a 503 that says why instead of a hang.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use strata_core::api::{Route, RouteTable};
use strata_mesh::{Ingress, IngressConfig, RoutingTable};

/// The table routing service `lazy`, which scales from zero, to `endpoints`.
fn table(endpoints: Vec<String>) -> RouteTable {
    common::table(vec![Route {
        scale_from_zero: true,
        tcp_port: None,
        ..common::route("lazy", endpoints)
    }])
}

async fn proxy(config: IngressConfig) -> (SocketAddr, Arc<RoutingTable>, Arc<AtomicUsize>) {
    let routes = RoutingTable::new();
    routes.replace(&table(vec![]));
    let ingress = Ingress::new(routes.clone(), config);
    let wakes = Arc::new(AtomicUsize::new(0));
    let counted = wakes.clone();
    ingress.set_waker(Arc::new(move |env: &str, service: &str| {
        assert_eq!((env, service), ("dev", "lazy"));
        counted.fetch_add(1, Ordering::SeqCst);
    }));
    let (address, _) = common::serve_ingress(ingress).await;
    (address, routes, wakes)
}

fn client(address: SocketAddr) -> (reqwest::Client, String) {
    common::client("lazy", address, Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_at_zero_is_held_until_an_instance_starts() {
    let (address, routes, wakes) = proxy(IngressConfig::default()).await;
    let (client, url) = client(address);
    let held = tokio::spawn(async move { client.get(&url).send().await });
    // The platform is woken; the instance "starts" 300 ms later.
    for _ in 0..100 {
        if wakes.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(wakes.load(Ordering::SeqCst) > 0, "the waker was called");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the request waits for an instance");
    let (instance, server) =
        common::serve(Router::new().route("/", get(|| async { "warm now" }))).await;
    routes.replace(&table(vec![instance.to_string()]));
    let response = held.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "warm now");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wait_and_the_queue_are_bounded_with_a_clear_503() {
    let config = IngressConfig {
        cold_start_wait: Duration::from_millis(600),
        max_waiting: 2,
        ..IngressConfig::default()
    };
    let (address, _routes, _wakes) = proxy(config).await;
    let (client, url) = client(address);
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).send().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third finds the queue full: answered at once.
    let started = std::time::Instant::now();
    let full = client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 503);
    assert!(started.elapsed() < Duration::from_millis(400));
    let body = full.text().await.unwrap();
    assert!(body.contains("2 requests already wait"), "{body}");
    // The two waiting ones give up after the bounded wait, saying so.
    for request in waiting {
        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status(), 503);
        let body = response.text().await.unwrap();
        assert!(
            body.contains("no instance was ready within 600 ms"),
            "{body}"
        );
    }
}
