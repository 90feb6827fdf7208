//! The ingress's HTTP clients: to this node's instances, and (with peering) to other nodes'
//! proxies over mutual TLS; one pool per serving thread, so that a request never waits on a
//! connection driven by another thread.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Ingress;
use crate::identity::NodeIdentity;

type PeerClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
type InstanceClient = Client<HttpConnector, Full<Bytes>>;

thread_local! {
    /// Each serving thread's client pools, by ingress: a pooled connection is driven by a
    /// task of the thread that made it, so requests of that thread never wait on another
    /// (see [`serve_on_threads`]).
    static INSTANCE_CLIENTS: std::cell::RefCell<std::collections::HashMap<u64, InstanceClient>> =
        Default::default();
    /// The same for other nodes' proxies, with the expiry of the certificate each was made with.
    static PEER_CLIENTS: std::cell::RefCell<std::collections::HashMap<u64, (u64, PeerClient)>> =
        Default::default();
}

pub(super) static NEXT_INGRESS_ID: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// How this node reaches instances on other nodes: through their proxies, over mutual TLS.
pub(super) struct Peering {
    pub(super) node: String,
    pub(super) identity: Arc<NodeIdentity>,
}

impl Peering {
    /// This thread's client of ingress `id` with the current certificate (rebuilt when it is
    /// renewed).
    pub(super) fn client(&self, id: u64) -> PeerClient {
        let configs = self.identity.current();
        PEER_CLIENTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((not_after, client)) = cache.get(&id) {
                if *not_after == configs.not_after {
                    return client.clone();
                }
            }
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*configs.client).clone())
                .https_only()
                .enable_http1()
                .wrap_connector(instance_connector(false));
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
            cache.insert(id, (configs.not_after, client.clone()));
            client
        })
    }
}

/// The connector to instances (and, under TLS, to other nodes' proxies).
fn instance_connector(enforce_http: bool) -> HttpConnector {
    let mut connector = HttpConnector::new();
    // Short: an instance on a node whose link is cut never answers the SYN; the request
    // is retried on another instance after this long instead of hanging.
    connector.set_connect_timeout(Some(Duration::from_millis(500)));
    connector.set_nodelay(true);
    connector.enforce_http(enforce_http);
    connector
}

impl Ingress {
    /// This thread's client pool to instances.
    pub(super) fn client(&self) -> InstanceClient {
        INSTANCE_CLIENTS.with(|cache| {
            cache
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(|| {
                    Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(5))
                        .build(instance_connector(true))
                })
                .clone()
        })
    }
}
