//! Helpers shared by the integration tests: routes and route tables, servers on loopback, and
//! clients that reach a service's host through a proxy.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use strata_core::api::{Route, RouteTable};
use strata_mesh::Ingress;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A public route of `service` in environment `dev`, at `SERVICE.dev.localhost`, to
/// `endpoints` (as many wanted), with default limits.
pub fn route(service: &'static str, endpoints: Vec<String>) -> Route {
    Route {
        env: strata_core::EnvName::from_static("dev"),
        service: strata_core::ServiceName::from_static(service),
        hosts: vec![format!("{service}.dev.localhost")],
        desired: endpoints.len() as u32,
        endpoints,
        public: true,
        allow_from: None,
        policy_rule: String::new(),
        limits: Default::default(),
        endpoint_nodes: Default::default(),
        scale_from_zero: false,
        tcp_port: None,
        draining: Vec::new(),
        running_on: Default::default(),
        split: None,
    }
}

/// A route table of `routes`, at revision 1, with no peers.
pub fn table(routes: Vec<Route>) -> RouteTable {
    RouteTable {
        revision: 1,
        routes,
        peers: Default::default(),
        revoked: Default::default(),
    }
}

/// Serves `app` on a loopback port: its address, and the task serving it.
pub async fn serve(app: Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, task)
}

/// A client that reaches `SERVICE.dev.localhost` at `proxy`, and the URL of its `/`.
pub fn client(service: &str, proxy: SocketAddr, timeout: Duration) -> (reqwest::Client, String) {
    let host = format!("{service}.dev.localhost");
    let client = reqwest::Client::builder()
        .resolve(&host, proxy)
        .timeout(timeout)
        .build()
        .unwrap();
    (client, format!("http://{host}:{}/", proxy.port()))
}

/// Serves `ingress` on a loopback port: its address, and the task serving it.
pub async fn serve_ingress(ingress: Arc<Ingress>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (address, tokio::spawn(ingress.serve(listener)))
}
