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
    /// Nodes whose identity is revoked.
    revoked: RwLock<Arc<std::collections::BTreeSet<String>>>,
    /// Bumped at every update, so in-flight requests can notice their instance was withdrawn.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for RoutingTable {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
            peers: RwLock::default(),
            revoked: RwLock::default(),
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl RoutingTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether the table was loaded at least once (until then, no name is known to be
    /// unknown).
    pub fn loaded(&self) -> bool {
        *self.changes.borrow() > 0
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

    /// Whether node `node`'s identity is revoked (it was decommissioned).
    pub fn is_revoked(&self, node: &str) -> bool {
        self.revoked.read().expect("routes lock").contains(node)
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
        *self.revoked.write().expect("routes lock") = Arc::new(table.revoked.clone());
        self.changes.send_modify(|generation| *generation += 1);
    }
}

/// Fetches the routing table from the control plane and keeps it current.
#[derive(Debug, Clone)]
pub struct RouteSource {
    /// One or several servers (failover), the credential and the CA trusted.
    api: strata_client::Client,
}

impl RouteSource {
    pub fn new(control_url: &str, token: Option<&str>) -> Self {
        Self::trusting(control_url, token, None)
    }

    /// A source presenting `token`, trusting `ca_pem` (the cluster CA) for an HTTPS API.
    pub fn trusting(control_url: &str, token: Option<&str>, ca_pem: Option<&str>) -> Self {
        Self {
            api: strata_client::Client::new(control_url, token, ca_pem),
        }
    }

    /// From now on the source authenticates with the node's certificate (mutual TLS) instead
    /// of its bearer credential.
    pub fn present_certificate(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), strata_client::ClientError> {
        self.api.present_certificate(cert_pem, key_pem)
    }

    pub async fn fetch(&self) -> Result<RouteTable, strata_client::ClientError> {
        let response = self
            .api
            .send(|http, base| {
                http.get(format!("{base}/v1/routes"))
                    .timeout(Duration::from_secs(5))
            })
            .await?;
        let response = strata_client::Client::check("the routes", response).await?;
        response
            .json()
            .await
            .map_err(|source| strata_client::ClientError::Unreachable {
                url: self.api.base(),
                source,
            })
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
                .api
                .http()
                .get(format!("{}/v1/watch", self.api.base()))
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
            self.api.rotate();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
