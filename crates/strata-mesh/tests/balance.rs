//! The ingress's balancing against real HTTP servers on loopback: a slow instance gets less
//! traffic than a fast one, and an instance that refuses connections costs no failed request.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use strata_core::api::{Route, RouteTable};
use strata_mesh::{Ingress, IngressConfig, RoutingTable};

async fn server(name: &'static str, delay: Duration) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new().route(
        "/",
        get(move || async move {
            tokio::time::sleep(delay).await;
            name
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_instance_gets_less_traffic_and_a_dead_one_costs_nothing() {
    let (fast, fast_task) = server("fast", Duration::ZERO).await;
    let (slow, slow_task) = server("slow", Duration::from_millis(20)).await;
    // An address nothing listens on: connections are refused.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let table = RoutingTable::new();
    let route = |endpoints: Vec<String>| RouteTable {
        revision: 1,
        routes: vec![Route {
            env: "dev".into(),
            service: "web".into(),
            hosts: vec!["web.dev.localhost".into()],
            desired: endpoints.len() as u32,
            endpoints,
            public: true,
            allow_from: None,
            policy_rule: String::new(),
            limits: Default::default(),
            endpoint_nodes: Default::default(),
            scale_from_zero: false,
            draining: Vec::new(),
        }],
        peers: Default::default(),
    };
    table.replace(&route(vec![fast.to_string(), slow.to_string()]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ingress_addr = listener.local_addr().unwrap();
    let ingress = Ingress::new(table.clone(), IngressConfig::default());
    let ingress_task = tokio::spawn(ingress.serve(listener));

    let client = reqwest::Client::builder()
        .resolve("web.dev.localhost", ingress_addr)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://web.dev.localhost:{}/", ingress_addr.port());
    let run = |n: usize| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let (mut fast_count, mut slow_count, mut failed) = (0, 0, 0);
            for _ in 0..n {
                let response = client.get(&url).send().await.unwrap();
                if response.status() != 200 {
                    failed += 1;
                    continue;
                }
                match response.text().await.unwrap().as_str() {
                    "fast" => fast_count += 1,
                    "slow" => slow_count += 1,
                    other => panic!("unexpected answer {other}"),
                }
            }
            (fast_count, slow_count, failed)
        }
    };
    // A 20 ms instance beside a fast one gets little traffic.
    let (fast_count, slow_count, failed) = run(200).await;
    assert_eq!(failed, 0);
    assert!(
        slow_count * 10 < fast_count,
        "a 20 ms instance got {slow_count} requests, a fast one {fast_count}"
    );
    // An instance that refuses connections: requests sent to it are retried elsewhere, then
    // it loses every comparison; no request fails.
    table.replace(&route(vec![
        fast.to_string(),
        slow.to_string(),
        dead.to_string(),
    ]));
    let (fast_count, slow_count, failed) = run(200).await;
    assert_eq!(failed, 0, "the dead instance cost no request");
    assert_eq!(fast_count + slow_count, 200);
    assert!(
        slow_count < fast_count,
        "fast {fast_count}, slow {slow_count}"
    );
    ingress_task.abort();
    fast_task.abort();
    slow_task.abort();
}
