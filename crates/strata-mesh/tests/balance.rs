//! The ingress's balancing against real HTTP servers on loopback: a slow instance gets less
//! traffic than a fast one, and an instance that refuses connections costs no failed request.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use strata_mesh::{Ingress, IngressConfig, RoutingTable};

async fn server(name: &'static str, delay: Duration) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    common::serve(Router::new().route(
        "/",
        get(move || async move {
            tokio::time::sleep(delay).await;
            name
        }),
    ))
    .await
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
    let route = |endpoints: Vec<String>| common::table(vec![common::route("web", endpoints)]);
    table.replace(&route(vec![fast.to_string(), slow.to_string()]));
    let (ingress_addr, ingress_task) =
        common::serve_ingress(Ingress::new(table.clone(), IngressConfig::default())).await;

    let (client, url) = common::client("web", ingress_addr, Duration::from_secs(5));
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
