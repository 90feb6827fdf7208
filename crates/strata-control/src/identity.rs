//! The cluster's identity on this server: the CA (read from the store or made once, under
//! `/pki/ca`), node certificates signed from CSRs, and the HTTP client that trusts the CA (and
//! presents this server's certificate) for calls to other servers and agents.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use strata_core::api::{CertificateRequest, NodeCertificate};
use strata_core::{keys, Node, NodeName};
use strata_mesh::identity::ClusterCa;
use strata_store::{Store, Txn};
use tokio::sync::OnceCell;

use crate::plane::{decode, encode, CAS_ATTEMPTS};
use crate::ControlError;

/// The cluster CA and what is made with it.
pub struct Identity {
    store: Arc<dyn Store>,
    /// The CA of the API's certificate when the operator gives it; `None`: the cluster CA's.
    api_ca_pem: Option<String>,
    /// How long a node's certificate is valid.
    node_cert_ttl: Duration,
    /// The cluster CA, once read or made.
    cluster_ca: OnceCell<ClusterCa>,
    /// Calls to other servers (forwarding to the leader, copying artifacts) and to agents;
    /// trusts the cluster CA once it is known.
    http: RwLock<reqwest::Client>,
}

impl Identity {
    pub fn new(
        store: Arc<dyn Store>,
        api_ca_pem: Option<String>,
        node_cert_ttl: Duration,
    ) -> Identity {
        Identity {
            store,
            api_ca_pem,
            node_cert_ttl,
            cluster_ca: OnceCell::new(),
            http: RwLock::new(reqwest::Client::new()),
        }
    }

    /// The cluster's CA: read from the store, or made and stored if this is the cluster's
    /// first server (two servers racing agree on the first one written).
    pub async fn cluster_ca(&self) -> Result<ClusterCa, ControlError> {
        self.cluster_ca
            .get_or_try_init(|| async {
                let key = keys::CLUSTER_CA;
                for _ in 0..CAS_ATTEMPTS {
                    if let Some(stored) = self.store.get(key).await? {
                        let json: serde_json::Value = decode(&stored)?;
                        let ca =
                            ClusterCa::from_json(&json).map_err(|error| ControlError::Corrupt {
                                key: key.to_string(),
                                reason: error.to_string(),
                            })?;
                        self.trust(&ca);
                        return Ok(ca);
                    }
                    let made = ClusterCa::generate()
                        .map_err(|error| ControlError::Internal(error.to_string()))?;
                    let txn = Txn::new().when(key, 0).put(key, encode(&made.to_json()));
                    if self.store.txn(txn).await?.is_committed() {
                        tracing::info!("made the cluster CA");
                        self.trust(&made);
                        return Ok(made);
                    }
                }
                Err(ControlError::Internal(
                    "the cluster CA could not be stored: too many concurrent writers".into(),
                ))
            })
            .await
            .cloned()
    }

    /// Makes this server's outgoing calls trust `ca` (other servers' HTTPS APIs).
    fn trust(&self, ca: &ClusterCa) {
        self.rebuild_http(&ca.cert_pem, None);
    }

    /// From now on this server presents `cert_pem` (a client certificate of the cluster CA
    /// naming it, `ID.server.strata`) on its outgoing calls: how nodes' own APIs know it is
    /// the control plane.
    pub async fn use_client_certificate(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), ControlError> {
        let ca = self.cluster_ca().await?;
        self.rebuild_http(&ca.cert_pem, Some((cert_pem, key_pem)));
        Ok(())
    }

    fn rebuild_http(&self, cluster_ca_pem: &str, identity: Option<(&str, &str)>) {
        let roots = std::iter::once(cluster_ca_pem).chain(self.api_ca_pem.as_deref());
        let client = roots
            .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()))
            .try_fold(reqwest::Client::builder(), |builder, root| {
                root.map(|root| builder.add_root_certificate(root))
            })
            .and_then(|builder| match identity {
                Some((cert, key)) => {
                    reqwest::Identity::from_pem(format!("{key}\n{cert}").as_bytes())
                        .map(|identity| builder.identity(identity))
                }
                None => Ok(builder),
            })
            .and_then(|builder| builder.build());
        match client {
            Ok(client) => *self.http.write().expect("http lock") = client,
            Err(error) => {
                tracing::warn!(%error, "cannot set up calls to other servers and nodes")
            }
        }
    }

    /// The HTTP client for other servers and agents.
    pub fn http(&self) -> reqwest::Client {
        self.http.read().expect("http lock").clone()
    }

    /// `GET url` of another server or an agent, presenting `credential` (a bearer token).
    pub async fn get(&self, url: &str, credential: &str) -> reqwest::Result<reqwest::Response> {
        self.http().get(url).bearer_auth(credential).send().await
    }

    /// Signs node `name`'s certificate request: the certificate names the node and the
    /// address other nodes reach its proxy at, for the configured node certificate lifetime.
    pub async fn issue_node_certificate(
        &self,
        name: &NodeName,
        request: &CertificateRequest,
    ) -> Result<NodeCertificate, ControlError> {
        let address = match &request.address {
            None => None,
            Some(address) => Some(ip_of(address).ok_or_else(|| {
                ControlError::bad_request(
                    format!(
                        "certificate request of node {name}: address `{address}` is not IP:PORT"
                    ),
                    None,
                )
            })?),
        };
        // A registered node gets certificates only for the address it registered.
        if let (Some(address), Some(stored)) = (address, self.store.get(&keys::node(name)).await?) {
            let node: Node = decode(&stored)?;
            let registered = node.mesh_addr.as_deref().and_then(ip_of);
            if registered.is_some_and(|registered| registered != address) {
                return Err(ControlError::Forbidden {
                    message: format!(
                        "node {name} is registered at {}; it may get certificates only for its own address, not {address}",
                        node.mesh_addr.as_deref().unwrap_or_default()
                    ),
                    hint: "a node that moved registers again with its new --mesh-addr first".into(),
                });
            }
        }
        let ca = self.cluster_ca().await?;
        let signed = ca
            .sign_node(&request.csr, name, address, self.node_cert_ttl)
            .map_err(|error| {
                ControlError::bad_request(
                    format!("certificate request of node {name}: {error}"),
                    Some("the agent sends a PKCS #10 request in PEM".to_string()),
                )
            })?;
        Ok(NodeCertificate {
            certificate: signed.cert_pem,
            ca: ca.cert_pem,
            issued_at: signed.not_after - self.node_cert_ttl.as_secs(),
            not_after: signed.not_after,
        })
    }

    /// The CA (PEM) clients verify this API's certificate with: the operator's, or the
    /// cluster's.
    pub async fn api_ca_pem(&self) -> Result<String, ControlError> {
        match &self.api_ca_pem {
            Some(pem) => Ok(pem.clone()),
            None => Ok(self.cluster_ca().await?.cert_pem),
        }
    }
}

/// The IP of `IP:PORT` or of a bare IP.
fn ip_of(address: &str) -> Option<std::net::IpAddr> {
    address
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| address.parse::<std::net::IpAddr>())
        .ok()
}
