//! The ingress's routing table and the task that keeps it current from the control plane.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use strata_core::api::{Route, RouteTable};

/// Host (lowercase, without port) -> route. Swapped whole on every update.
#[derive(Debug)]
pub struct RoutingTable {
    current: RwLock<Arc<HashMap<String, Arc<Route>>>>,
    /// Node -> where its proxy takes calls from other nodes.
    peers: RwLock<Arc<std::collections::BTreeMap<String, String>>>,
    /// Bumped at every update, so in-flight requests can notice their instance was withdrawn.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for RoutingTable {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
            peers: RwLock::default(),
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl RoutingTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A receiver that wakes at every update of the table.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether `endpoint` still serves `host`'s requests in flight: routed, or draining.
    pub fn routes_to(&self, host: &str, endpoint: &str) -> bool {
        self.lookup(host).is_some_and(|route| {
            route.endpoints.iter().any(|e| e == endpoint)
                || route.draining.iter().any(|e| e == endpoint)
        })
    }

    /// Where node `node`'s proxy takes calls from other nodes.
    pub fn peer(&self, node: &str) -> Option<String> {
        self.peers.read().expect("routes lock").get(node).cloned()
    }

    pub fn lookup(&self, host: &str) -> Option<Arc<Route>> {
        self.current.read().expect("routes lock").get(host).cloned()
    }

    /// Every routed instance address.
    pub fn endpoints(&self) -> std::collections::HashSet<String> {
        self.current
            .read()
            .expect("routes lock")
            .values()
            .flat_map(|route| route.endpoints.iter().cloned())
            .collect()
    }

    /// Hosts of public services (what the ingress serves).
    pub fn public_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .current
            .read()
            .expect("routes lock")
            .iter()
            .filter(|(_, route)| route.public)
            .map(|(host, _)| host.clone())
            .collect();
        hosts.sort();
        hosts
    }

    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .current
            .read()
            .expect("routes lock")
            .keys()
            .cloned()
            .collect();
        hosts.sort();
        hosts
    }

    pub fn replace(&self, table: &RouteTable) {
        let mut by_host = HashMap::new();
        for route in &table.routes {
            let route = Arc::new(route.clone());
            for host in &route.hosts {
                by_host.insert(host.to_ascii_lowercase(), route.clone());
            }
        }
        *self.current.write().expect("routes lock") = Arc::new(by_host);
        *self.peers.write().expect("routes lock") = Arc::new(table.peers.clone());
        self.changes.send_modify(|generation| *generation += 1);
    }
}

/// `builder`, trusting `ca_pem` (when given and valid) as its only root.
fn trust(builder: reqwest::ClientBuilder, ca_pem: Option<&str>) -> reqwest::ClientBuilder {
    match ca_pem.map(|pem| reqwest::Certificate::from_pem(pem.as_bytes())) {
        Some(Ok(root)) => builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(root),
        Some(Err(error)) => {
            tracing::warn!(%error, "the cluster CA is not valid PEM");
            builder
        }
        None => builder,
    }
}

/// Fetches the routing table from the control plane and keeps it current.
#[derive(Debug, Clone)]
pub struct RouteSource {
    /// One or several servers; the source moves to the next when one fails.
    bases: Arc<Vec<String>>,
    current: Arc<std::sync::atomic::AtomicUsize>,
    /// Shared by clones: [`RouteSource::present_certificate`] switches all of them.
    http: Arc<std::sync::RwLock<reqwest::Client>>,
    ca_pem: Option<Arc<String>>,
}

impl RouteSource {
    pub fn new(control_url: &str, token: Option<&str>) -> Self {
        Self::trusting(control_url, token, None)
    }

    /// A source presenting `token`, trusting `ca_pem` (the cluster CA) for an HTTPS API.
    pub fn trusting(control_url: &str, token: Option<&str>, ca_pem: Option<&str>) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        let bases = control_url
            .split(',')
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty())
            .collect();
        Self {
            bases: Arc::new(bases),
            current: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            http: Arc::new(std::sync::RwLock::new(
                trust(
                    reqwest::Client::builder()
                        .default_headers(headers)
                        .connect_timeout(Duration::from_secs(1)),
                    ca_pem,
                )
                .build()
                .expect("http client builds"),
            )),
            ca_pem: ca_pem.map(|pem| Arc::new(pem.to_string())),
        }
    }

    /// From now on the source authenticates with the node's certificate (mutual TLS) instead
    /// of its bearer credential.
    pub fn present_certificate(&self, cert_pem: &str, key_pem: &str) -> Result<(), reqwest::Error> {
        let identity = reqwest::Identity::from_pem(format!("{key_pem}\n{cert_pem}").as_bytes())?;
        let client = trust(
            reqwest::Client::builder().connect_timeout(Duration::from_secs(1)),
            self.ca_pem.as_deref().map(String::as_str),
        )
        .identity(identity)
        .build()?;
        *self.http.write().expect("routes http lock") = client;
        Ok(())
    }

    fn http(&self) -> reqwest::Client {
        self.http.read().expect("routes http lock").clone()
    }

    fn base(&self) -> String {
        let index =
            self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len().max(1);
        self.bases.get(index).cloned().unwrap_or_default()
    }

    /// Moves to the next server (after a failure).
    fn rotate(&self) {
        self.current
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub async fn fetch(&self) -> Result<RouteTable, reqwest::Error> {
        let result = self.fetch_from(&self.base()).await;
        if result.is_err() {
            self.rotate();
        }
        result
    }

    async fn fetch_from(&self, base: &str) -> Result<RouteTable, reqwest::Error> {
        self.http()
            .get(format!("{base}/v1/routes"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// Refreshes `table` whenever the control plane's state changes (SSE watch), and at least
    /// every `resync`. Runs forever.
    pub async fn run(self, table: Arc<RoutingTable>, resync: Duration) {
        let wake = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(self.clone().watch(wake.clone()));
        loop {
            match self.fetch().await {
                Ok(routes) => table.replace(&routes),
                Err(error) => tracing::debug!(%error, "cannot fetch routes"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(resync) => {}
            }
        }
    }

    async fn watch(self, wake: Arc<tokio::sync::Notify>) {
        loop {
            let response = self
                .http()
                .get(format!("{}/v1/watch", self.base()))
                .send()
                .await
                .and_then(|r| r.error_for_status());
            if let Ok(response) = response {
                let mut body = response.bytes_stream();
                while let Some(Ok(chunk)) = body.next().await {
                    // Events are logged for people; they never change routing.
                    let text = String::from_utf8_lossy(&chunk);
                    if !text.contains("\"key\":\"/events/") {
                        wake.notify_one();
                    }
                }
            }
            self.rotate();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
