//! A service at zero instances: the proxy holds its requests (a bounded number, for a bounded
//! time) and wakes the platform, then serves them when an instance is routed; past the bounds,
//! a 503 that says why instead of a hang.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use strata_core::api::{Route, RouteTable};
use strata_mesh::{Ingress, IngressConfig, RoutingTable};
use tokio::net::TcpListener;

fn table(endpoints: Vec<String>) -> RouteTable {
    RouteTable {
        revision: 1,
        routes: vec![Route {
            env: "dev".into(),
            service: "lazy".into(),
            hosts: vec!["lazy.dev.localhost".into()],
            desired: endpoints.len() as u32,
            endpoints,
            public: true,
            allow_from: None,
            policy_rule: String::new(),
            limits: Default::default(),
            endpoint_nodes: Default::default(),
            scale_from_zero: true,
            draining: Vec::new(),
        }],
        peers: Default::default(),
    }
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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(ingress.serve(listener));
    (address, routes, wakes)
}

fn client(address: SocketAddr) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .resolve("lazy.dev.localhost", address)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    (
        client,
        format!("http://lazy.dev.localhost:{}/", address.port()),
    )
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
    let app = Router::new().route("/", get(|| async { "warm now" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let instance = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
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
