//! A progressive rollout's traffic split, through a real proxy to real servers on loopback:
//! the new release gets its share of requests, every attempt counts for its release, and a
//! request the new release answers with a server error is sent again to the stable release.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use strata_core::api::{CallLimits, Route, TrafficSplit};
use strata_mesh::metrics::MeshMetrics;
use strata_mesh::{Ingress, IngressConfig, RoutingTable};

/// A server answering `status` with `body`, counting its requests.
async fn server(
    status: StatusCode,
    body: &'static str,
) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { (status, body) }
        }),
    );
    let (address, task) = common::serve(app).await;
    (address.to_string(), hits, task)
}

async fn proxy_with_split(
    stable: Vec<String>,
    canary: String,
    weight: u8,
) -> (
    std::net::SocketAddr,
    MeshMetrics,
    tokio::task::JoinHandle<()>,
) {
    let table = RoutingTable::new();
    let mut endpoints = stable;
    endpoints.push(canary.clone());
    table.replace(&common::table(vec![Route {
        // A canary failing every request it gets needs a retry per canary request. A budget
        // of one retry per request covers that at every point of the run; half would be
        // spent whenever the random split happens to send more than half of the early
        // requests (past the minimum of 10 retries) to the canary, which it did once in CI.
        limits: CallLimits {
            retry_budget_permille: 1000,
            ..CallLimits::default()
        },
        split: Some(TrafficSplit {
            release: 3,
            stable: 2,
            weight,
            endpoints: vec![canary],
        }),
        ..common::route("web", endpoints)
    }]));
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = MeshMetrics::register(&mut registry);
    let ingress = Ingress::with_metrics(table, IngressConfig::default(), Some(metrics.clone()));
    let (address, task) = common::serve_ingress(ingress).await;
    (address, metrics, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_new_release_gets_its_share_and_its_failures_are_retried_on_the_stable() {
    let (stable_a, hits_a, _a) = server(StatusCode::OK, "stable").await;
    let (stable_b, hits_b, _b) = server(StatusCode::OK, "stable").await;
    let (canary, canary_hits, _c) = server(StatusCode::INTERNAL_SERVER_ERROR, "canary").await;
    let (proxy, metrics, _p) = proxy_with_split(vec![stable_a, stable_b], canary, 25).await;
    let (client, url) = common::client("web", proxy, Duration::from_secs(10));
    for _ in 0..400 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "a canary's 500 is retried on the stable"
        );
        assert_eq!(response.text().await.unwrap(), "stable");
    }
    let to_canary = canary_hits.load(Ordering::SeqCst);
    assert!(
        (60..=140).contains(&to_canary),
        "25% of 400 first attempts, got {to_canary}"
    );
    assert_eq!(
        hits_a.load(Ordering::SeqCst) + hits_b.load(Ordering::SeqCst),
        400,
        "every request answered by the stable, first or on retry"
    );
    let window = metrics.take_window();
    let web = window.iter().find(|w| w.service == "web").unwrap();
    assert_eq!((web.requests, web.errors), (400, 0));
    let attempts: Vec<(u64, u64, u64)> = web
        .releases
        .iter()
        .map(|r| (r.release, r.attempts, r.failures))
        .collect();
    assert_eq!(
        attempts,
        [(2, 400, 0), (3, to_canary as u64, to_canary as u64)],
        "each attempt counted for its release"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_not_safe_to_repeat_gets_the_canarys_answer() {
    let (stable, stable_hits, _a) = server(StatusCode::OK, "stable").await;
    let app = Router::new().route(
        "/",
        axum::routing::post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "canary") }),
    );
    let (canary, _c) = common::serve(app).await;
    let (proxy, _metrics, _p) = proxy_with_split(vec![stable], canary.to_string(), 100).await;
    let (client, url) = common::client("web", proxy, Duration::from_secs(10));
    let response = client.post(&url).body("x").send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(stable_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_stable_instance_left_the_canarys_answer_is_the_callers() {
    let (canary, hits, _c) = server(StatusCode::INTERNAL_SERVER_ERROR, "canary").await;
    let (proxy, _metrics, _p) = proxy_with_split(vec![], canary, 100).await;
    let (client, url) = common::client("web", proxy, Duration::from_secs(10));
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(
        response.status(),
        500,
        "the answer, not a 502 for a retry never made"
    );
    assert_eq!(response.text().await.unwrap(), "canary");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
