//! Two nodes' proxies in one process, on loopback, with real certificates from a cluster CA:
//! a call for an instance of the other node goes through that node's inter-node port over
//! mutual TLS, keeping the caller's identity; plain text, a client without a certificate and
//! one with a certificate of another CA are refused; a renewed certificate is served to the
//! next connections.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use strata_core::api::{Route, RouteTable};
use strata_mesh::identity::{node_key_and_csr, ClusterCa, NodeIdentity, TlsConfigs};
use strata_mesh::{CallerKeys, Ingress, IngressConfig, MeshProxy, PeerListener, RoutingTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn identity(ca: &ClusterCa, node: &str, ttl: Duration) -> (TlsConfigs, String) {
    let (key, csr) = node_key_and_csr(node).unwrap();
    let signed = ca
        .sign_node(&csr, node, Some("127.0.0.1".parse().unwrap()), ttl)
        .unwrap();
    let configs = TlsConfigs::new(&signed.cert_pem, &key, &ca.cert_pem, signed.not_after).unwrap();
    (configs, signed.cert_pem)
}

/// The instance: answers with who called it and through how many hops.
async fn instance() -> SocketAddr {
    let app = Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            format!(
                "caller={} forwarded-for={}",
                header("strata-caller"),
                header("x-forwarded-for")
            )
        }),
    );
    common::serve(app).await.0
}

struct TwoNodes {
    ca: ClusterCa,
    /// node-a's ingress (public traffic) and mesh proxy (calls between services).
    ingress_a: SocketAddr,
    proxy_a: SocketAddr,
    keys_a: CallerKeys,
    /// node-b's inter-node port and identity.
    peer_b: SocketAddr,
    identity_b: Arc<NodeIdentity>,
    instance: SocketAddr,
    /// node-b's instance of `cache`, a TCP service: it echoes what it is sent.
    echo: SocketAddr,
}

/// A TCP instance that sends back every byte it gets.
async fn echo_instance() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    address
}

async fn two_nodes() -> TwoNodes {
    let ca = ClusterCa::generate().unwrap();
    let instance = instance().await;
    let echo = echo_instance().await;
    let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_b = peer_listener.local_addr().unwrap();
    let route = |service: &'static str, public: bool| Route {
        public,
        allow_from: Some(vec!["web".into()]),
        policy_rule: format!("{service}.allow_from = [web]"),
        endpoint_nodes: BTreeMap::from([(instance.to_string(), "node-b".to_string())]),
        ..common::route(service, vec![instance.to_string()])
    };
    // The caller: `web` runs on node-a (its only instance there), so node-a may call as it.
    let web = Route {
        running_on: BTreeSet::from(["node-a".to_string()]),
        split: None,
        ..common::route("web", vec![])
    };
    let table = RouteTable {
        revision: 1,
        routes: vec![
            route("db", false),
            route("site", true),
            web,
            Route {
                tcp_port: Some(echo.port()),
                endpoint_nodes: BTreeMap::from([(echo.to_string(), "node-b".to_string())]),
                ..route("cache", false)
            },
        ],
        peers: BTreeMap::from([("node-b".to_string(), peer_b.to_string())]),
        revoked: Default::default(),
    };
    // Each node has its own table, fed the same routes.
    let table_a = RoutingTable::new();
    table_a.replace(&table);
    let table_b = RoutingTable::new();
    table_b.replace(&table);

    let identity_a = NodeIdentity::new(identity(&ca, "node-a", Duration::from_secs(3600)).0);
    let identity_b = NodeIdentity::new(identity(&ca, "node-b", Duration::from_secs(3600)).0);

    let forwarder_a = Ingress::new(table_a.clone(), IngressConfig::default());
    forwarder_a.enable_peering("node-a", identity_a.clone());
    let keys_a = CallerKeys::new([1; 32]);
    let proxy = MeshProxy::new(forwarder_a.clone(), table_a.clone(), keys_a.clone(), |_| {});
    let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_a = proxy_listener.local_addr().unwrap();
    tokio::spawn(proxy.serve(proxy_listener));
    let (ingress_a, _) = common::serve_ingress(forwarder_a).await;

    let deliverer_b = Ingress::new(table_b.clone(), IngressConfig::default());
    deliverer_b.enable_peering("node-b", identity_b.clone());
    let peer = PeerListener::new("node-b", deliverer_b, table_b, identity_b.clone(), |_| {});
    tokio::spawn(peer.serve(peer_listener));
    TwoNodes {
        ca,
        ingress_a,
        proxy_a,
        keys_a,
        peer_b,
        identity_b,
        instance,
        echo,
    }
}

/// A call of service `db` by service `caller`, through node-a's mesh proxy.
async fn call_db(nodes: &TwoNodes, caller: &str) -> reqwest::Response {
    let url = nodes.keys_a.proxy_url(nodes.proxy_a, "dev", caller);
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(url).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get("http://db/")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_for_another_nodes_instance_goes_over_mutual_tls_with_the_callers_identity() {
    let nodes = two_nodes().await;
    let response = call_db(&nodes, "web").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.starts_with("caller=web "), "{body}");
    // Two proxies handled it: node-a's, then node-b's inter-node port.
    assert_eq!(
        body.matches("127.0.0.1").count(),
        2,
        "forwarded through two proxies: {body}"
    );

    // Policy at node-a: a forbidden caller never leaves it.
    let response = call_db(&nodes, "intruder").await;
    assert_eq!(response.status(), 403);

    // Public traffic through node-a's ingress takes the same way; a caller header sent from
    // outside is dropped, never believed.
    let client = reqwest::Client::builder()
        .resolve("site.dev.localhost", nodes.ingress_a)
        .build()
        .unwrap();
    let response = client
        .get(format!(
            "http://site.dev.localhost:{}/",
            nodes.ingress_a.port()
        ))
        .header("strata-caller", "web")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().starts_with("caller=- "));
}

/// A TLS client with `roots`, and with `client_auth` if given; the handshake's result.
async fn tls_handshake(
    peer: SocketAddr,
    ca_pem: &str,
    client_auth: Option<&TlsConfigs>,
) -> Result<Vec<u8>, std::io::Error> {
    let config = match client_auth {
        Some(configs) => (*configs.client).clone(),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(peer).await?;
    let name = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
    let mut tls = connector.connect(name, stream).await?;
    // TLS 1.3 clients learn of a refused certificate on their first read.
    tls.write_all(b"GET / HTTP/1.1\r\nHost: db.dev.localhost\r\n\r\n")
        .await?;
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut answer))
        .await
        .map_err(std::io::Error::other)??;
    if n == 0 {
        return Err(std::io::Error::other("closed without an answer"));
    }
    let (_, connection) = tls.get_ref();
    Ok(connection
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.to_vec())
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inter_node_port_refuses_plain_text_and_strangers() {
    let nodes = two_nodes().await;

    // Plain HTTP: no HTTP answer, ever.
    let mut stream = TcpStream::connect(nodes.peer_b).await.unwrap();
    stream
        .write_all(
            format!(
                "GET / HTTP/1.1\r\nHost: db.dev.localhost\r\nstrata-endpoint: {}\r\n\r\n",
                nodes.instance
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "plain text got an HTTP answer: {answer:?}"
    );

    // TLS without a client certificate.
    let refused = tls_handshake(nodes.peer_b, &nodes.ca.cert_pem, None).await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );

    // A certificate of another cluster's CA.
    let stranger_ca = ClusterCa::generate().unwrap();
    let (stranger, _) = identity(&stranger_ca, "node-x", Duration::from_secs(3600));
    let refused = tls_handshake(nodes.peer_b, &stranger_ca.cert_pem, Some(&stranger)).await;
    assert!(refused.is_err(), "another CA's node was served");

    // A node of this cluster is served.
    let (member, _) = identity(&nodes.ca, "node-c", Duration::from_secs(3600));
    tls_handshake(nodes.peer_b, &nodes.ca.cert_pem, Some(&member))
        .await
        .expect("a node of the cluster is served");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_serves_the_next_connections() {
    let nodes = two_nodes().await;
    let (member, _) = identity(&nodes.ca, "node-c", Duration::from_secs(3600));
    let before = tls_handshake(nodes.peer_b, &nodes.ca.cert_pem, Some(&member))
        .await
        .unwrap();
    let (renewed, renewed_pem) = identity(&nodes.ca, "node-b", Duration::from_secs(7200));
    nodes.identity_b.replace(renewed);
    let after = tls_handshake(nodes.peer_b, &nodes.ca.cert_pem, Some(&member))
        .await
        .unwrap();
    let renewed_der = CertificateDer::from_pem_slice(renewed_pem.as_bytes()).unwrap();
    assert_ne!(before, after);
    assert_eq!(
        after,
        renewed_der.to_vec(),
        "the renewed certificate is served"
    );
    // Calls keep flowing.
    let response = call_db(&nodes, "web").await;
    assert_eq!(response.status(), 200);
}

/// An instance answering any method with its name, counting what reached it.
async fn counted_instance(name: &'static str) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reached.clone();
    let app = Router::new().route(
        "/",
        axum::routing::any(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                name
            }
        }),
    );
    (common::serve(app).await.0, reached)
}

/// node-a's table routes `db` to two instances on node-b; node-b's table has not caught up
/// with the first (it holds only the second). node-b refuses a call for the first as
/// misdirected (421: nothing reached an instance), and node-a sends it to the other one,
/// whatever its method: every call, a POST included, is answered by the instance node-b
/// holds, and none reaches the one it does not.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_a_peer_refuses_as_misdirected_goes_to_another_instance() {
    let ca = ClusterCa::generate().unwrap();
    let (unknown, unknown_reached) = counted_instance("unknown").await;
    let (known, known_reached) = counted_instance("known").await;
    let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_b = peer_listener.local_addr().unwrap();
    let table = |endpoints: Vec<SocketAddr>| RouteTable {
        revision: endpoints.len() as u64,
        routes: vec![
            Route {
                public: false,
                endpoint_nodes: endpoints
                    .iter()
                    .map(|e| (e.to_string(), "node-b".to_string()))
                    .collect(),
                ..common::route("db", endpoints.iter().map(|e| e.to_string()).collect())
            },
            // The caller, `web`, runs on node-a.
            Route {
                running_on: BTreeSet::from(["node-a".to_string()]),
                split: None,
                ..common::route("web", vec![])
            },
        ],
        peers: BTreeMap::from([("node-b".to_string(), peer_b.to_string())]),
        revoked: Default::default(),
    };
    let table_a = RoutingTable::new();
    table_a.replace(&table(vec![unknown, known]));
    let table_b = RoutingTable::new();
    table_b.replace(&table(vec![known]));

    let identity_a = NodeIdentity::new(identity(&ca, "node-a", Duration::from_secs(3600)).0);
    let identity_b = NodeIdentity::new(identity(&ca, "node-b", Duration::from_secs(3600)).0);
    let forwarder_a = Ingress::new(table_a.clone(), IngressConfig::default());
    forwarder_a.enable_peering("node-a", identity_a);
    let keys_a = CallerKeys::new([1; 32]);
    let proxy = MeshProxy::new(forwarder_a, table_a, keys_a.clone(), |_| {});
    let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_a = proxy_listener.local_addr().unwrap();
    tokio::spawn(proxy.serve(proxy_listener));
    let deliverer_b = Ingress::new(table_b.clone(), IngressConfig::default());
    deliverer_b.enable_peering("node-b", identity_b.clone());
    let peer = PeerListener::new("node-b", deliverer_b, table_b, identity_b, |_| {});
    tokio::spawn(peer.serve(peer_listener));

    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(keys_a.proxy_url(proxy_a, "dev", "web")).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..30 {
        let request = if i % 2 == 0 {
            client.post("http://db/").body("not idempotent")
        } else {
            client.get("http://db/")
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!((status.as_u16(), body.as_str()), (200, "known"), "call {i}");
    }
    assert_eq!(known_reached.load(std::sync::atomic::Ordering::SeqCst), 30);
    assert_eq!(unknown_reached.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A connection to node-b's inter-node port over mutual TLS, as `node` (a member of the
/// cluster, with a certificate of its CA).
async fn connect_as(nodes: &TwoNodes, node: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (configs, _) = identity(&nodes.ca, node, Duration::from_secs(3600));
    let connector = tokio_rustls::TlsConnector::from(configs.client.clone());
    let stream = TcpStream::connect(nodes.peer_b).await.unwrap();
    let name = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
    connector.connect(name, stream).await.unwrap()
}

/// A request sent straight to node-b's inter-node port over mutual TLS as `node` (a member
/// of the cluster), calling `db` as `caller`; the answer's status line and body.
async fn call_as(nodes: &TwoNodes, node: &str, caller: &str) -> String {
    let mut tls = connect_as(nodes, node).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: db.dev.localhost\r\nstrata-endpoint: {}\r\nstrata-caller: {caller}\r\nConnection: close\r\n\r\n",
        nodes.instance
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A node of the cluster that forges its caller is refused where the call arrives: node-b
/// believes a node's word for its caller only for a service that node runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_caller_is_refused_by_the_callees_node() {
    let nodes = two_nodes().await;
    // node-c runs no instance of `web`, which `db` allows: refused, whatever it says.
    let forged = call_as(&nodes, "node-c", "web").await;
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    assert!(
        forged.contains("node node-c runs no instance of `web`"),
        "{forged}"
    );
    // node-a runs `web`: the same call is delivered.
    let vouched = call_as(&nodes, "node-a", "web").await;
    assert!(vouched.starts_with("HTTP/1.1 200"), "{vouched}");
    assert!(vouched.contains("caller=web"), "{vouched}");
    // And what `db`'s policy forbids is refused even from a node that could speak for it.
    let forbidden = call_as(&nodes, "node-a", "site").await;
    assert!(forbidden.starts_with("HTTP/1.1 403"), "{forbidden}");
}

/// Asks node-b's inter-node port, as node `node` for `caller`, to carry a TCP connection to
/// `service`'s instance `endpoint`; the answer's head, and the TLS stream.
async fn carry_as(
    nodes: &TwoNodes,
    node: &str,
    caller: &str,
    service: &str,
    endpoint: SocketAddr,
) -> (String, tokio_rustls::client::TlsStream<TcpStream>) {
    let mut tls = connect_as(nodes, node).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {service}.dev.localhost\r\nstrata-endpoint: {endpoint}\r\nstrata-caller: {caller}\r\nConnection: upgrade\r\nUpgrade: strata-tcp\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    // The head, byte by byte up to its blank line (what follows is the carried stream's).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    (String::from_utf8_lossy(&head).into_owned(), tls)
}

/// A TCP connection carried between nodes is checked as a call is: a node that forges its
/// caller is refused, as is a caller the service's policy forbids and a connection to an
/// HTTP service; a node that runs the caller gets the bytes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_carried_tcp_connection_is_checked_as_a_call_is() {
    let nodes = two_nodes().await;
    let (forged, _) = carry_as(&nodes, "node-c", "web", "cache", nodes.echo).await;
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    let (forbidden, _) = carry_as(&nodes, "node-a", "site", "cache", nodes.echo).await;
    assert!(forbidden.starts_with("HTTP/1.1 403"), "{forbidden}");
    let (http, _) = carry_as(&nodes, "node-a", "web", "db", nodes.instance).await;
    assert!(http.starts_with("HTTP/1.1 400"), "{http}");
    // Another service's instance named under `cache`: not one of its instances here.
    let (misdirected, _) = carry_as(&nodes, "node-a", "web", "cache", nodes.instance).await;
    assert!(misdirected.starts_with("HTTP/1.1 421"), "{misdirected}");

    let (head, mut tls) = carry_as(&nodes, "node-a", "web", "cache", nodes.echo).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: strata-tcp"),
        "{head}"
    );
    tls.write_all(b"PING\r\n").await.unwrap();
    let mut echoed = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echoed))
        .await
        .expect("echoed in time")
        .unwrap();
    assert_eq!(&echoed, b"PING\r\n");
}
