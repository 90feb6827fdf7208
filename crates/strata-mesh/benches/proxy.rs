//! Mesh proxy benchmark: the latency a proxy hop adds (p50, p99 at fixed request rates) and
//! the most requests per second through it, for one and two hops, against a direct connection
//! and against nginx as the same reverse proxy, all in the same run on loopback.
//!
//!   scripts/bench-mesh.sh            # installs oha and nginx, runs this
//!   cargo bench -p strata-mesh --bench proxy [-- SECONDS]
//!
//! Needs `oha` (cargo install oha) and `nginx` (Debian) on PATH, or their paths in `OHA` and
//! `NGINX`.
//!
//! The targets, each serving `GET /` from the same upstream (a small hyper server, 2 bytes):
//! - direct: the load generator to the upstream;
//! - Strata, 1 hop: Strata's proxy (`Ingress`, routing by Host, P2C balancing, metrics off)
//!   to the upstream: what the ingress and a same-node call through the mesh pay;
//! - Strata, 2 hops: node A's proxy to node B's inter-node port over mutual TLS (certificates
//!   of a cluster CA made here), B delivers to the upstream: a call across nodes;
//! - nginx, 1 hop: `proxy_pass` with upstream keep-alive;
//! - nginx, 2 hops: nginx to nginx over mutual TLS (client certificate verified, sessions
//!   reused, keep-alive), then to the upstream.
//!
//! Strata's proxies run in this process as on a node: each on two threads with a
//! single-threaded runtime apiece (`serve_on_threads`); nginx runs with `worker_processes 2`;
//! the upstream on a 2-thread tokio runtime. The load generator shares the machine's two cores
//! with them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use strata_core::api::{Route, RouteTable};
use strata_mesh::identity::{node_key_and_csr, ClusterCa, NodeIdentity, TlsConfigs};
use strata_mesh::ingress::serve_on_threads;
use strata_mesh::{Ingress, IngressConfig, PeerListener, RoutingTable};
use tokio::net::TcpListener;

const RATES: [u32; 2] = [1000, 4000];
const CONNECTIONS: u32 = 32;
/// Threads of each Strata proxy and of nginx: one per core of this machine.
const THREADS: usize = 2;
const HOST: &str = "bench.dev.localhost";

fn tool(var: &str, name: &str) -> PathBuf {
    strata_testkit::bench_tool(var, name, "run scripts/bench-mesh.sh")
}

/// The upstream: answers every request with `ok`.
async fn upstream() -> SocketAddr {
    use http_body_util::Full;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

fn route(endpoint: SocketAddr, node: &str) -> Route {
    Route {
        env: strata_core::EnvName::from_static("dev"),
        service: strata_core::ServiceName::from_static("bench"),
        hosts: vec![HOST.into()],
        endpoints: vec![endpoint.to_string()],
        desired: 1,
        public: true,
        allow_from: None,
        policy_rule: String::new(),
        limits: Default::default(),
        endpoint_nodes: BTreeMap::from([(endpoint.to_string(), node.to_string())]),
        scale_from_zero: false,
        tcp_port: None,
        draining: Vec::new(),
        running_on: Default::default(),
        split: None,
    }
}

/// A node's certificate files (PEM): certificate, key.
fn node_certificate(ca: &ClusterCa, node: &str) -> (String, String, u64) {
    let (key, csr) = node_key_and_csr(node).unwrap();
    let signed = ca
        .sign_node(
            &csr,
            node,
            Some("127.0.0.1".parse().unwrap()),
            Duration::from_secs(3600),
        )
        .unwrap();
    (signed.cert_pem, key, signed.not_after)
}

/// Strata's proxies: one hop (ingress -> upstream) and two (A -> B over mTLS -> upstream).
async fn strata(upstream: SocketAddr, ca: &ClusterCa) -> (SocketAddr, SocketAddr) {
    // One hop: the instance is this node's.
    let table = RoutingTable::new();
    table.replace(&RouteTable {
        revision: 1,
        routes: vec![route(upstream, "node-a")],
        peers: BTreeMap::new(),
        revoked: Default::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let one_hop = listener.local_addr().unwrap();
    let ingress = Ingress::new(table, IngressConfig::default());
    serve_on_threads("bench-1hop", listener, THREADS, move |l| {
        ingress.clone().serve(l)
    })
    .unwrap();

    // Two hops: the instance is node B's.
    let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_b = peer_listener.local_addr().unwrap();
    let routes = RouteTable {
        revision: 1,
        routes: vec![route(upstream, "node-b")],
        peers: BTreeMap::from([("node-b".to_string(), peer_b.to_string())]),
        revoked: Default::default(),
    };
    let identity = |node: &str| {
        let (cert, key, not_after) = node_certificate(ca, node);
        NodeIdentity::new(TlsConfigs::new(&cert, &key, &ca.cert_pem, not_after).unwrap())
    };
    let table_a = RoutingTable::new();
    table_a.replace(&routes);
    let ingress_a = Ingress::new(table_a, IngressConfig::default());
    ingress_a.enable_peering("node-a", identity("node-a"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let two_hops = listener.local_addr().unwrap();
    serve_on_threads("bench-2hop-a", listener, THREADS, move |l| {
        ingress_a.clone().serve(l)
    })
    .unwrap();
    let table_b = RoutingTable::new();
    table_b.replace(&routes);
    let identity_b = identity("node-b");
    let deliverer = Ingress::new(table_b.clone(), IngressConfig::default());
    deliverer.enable_peering("node-b", identity_b.clone());
    let peers = PeerListener::new("node-b", deliverer, table_b, identity_b, |_| {});
    serve_on_threads("bench-2hop-b", peer_listener, THREADS, move |l| {
        peers.clone().serve(l)
    })
    .unwrap();
    (one_hop, two_hops)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx with two servers: one hop (-> upstream) and the first of two hops (-> the second
/// server over mutual TLS -> upstream). Returns the process and the two addresses.
fn nginx(dir: &Path, upstream: SocketAddr, ca: &ClusterCa) -> (Child, SocketAddr, SocketAddr) {
    let (server_cert, server_key, _) = node_certificate(ca, "nginx-b");
    let (client_cert, client_key, _) = node_certificate(ca, "nginx-a");
    for (name, text) in [
        ("ca.crt", ca.cert_pem.as_str()),
        ("server.crt", &server_cert),
        ("server.key", &server_key),
        ("client.crt", &client_cert),
        ("client.key", &client_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let (one, first, second) = (free_port(), free_port(), free_port());
    let d = dir.display();
    let conf = format!(
        r#"
user root;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream app {{ server {upstream}; keepalive 64; }}
  upstream second {{ server 127.0.0.1:{second}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{one};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
  server {{
    listen 127.0.0.1:{first};
    location / {{
      proxy_pass https://second;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate {d}/client.crt;
      proxy_ssl_certificate_key {d}/client.key;
      proxy_ssl_trusted_certificate {d}/ca.crt;
      proxy_ssl_verify on;
      proxy_ssl_name nginx-b.node.strata;
      proxy_ssl_session_reuse on;
    }}
  }}
  server {{
    listen 127.0.0.1:{second} ssl;
    ssl_certificate {d}/server.crt;
    ssl_certificate_key {d}/server.key;
    ssl_client_certificate {d}/ca.crt;
    ssl_verify_client on;
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(tool("NGINX", "nginx"))
        .arg("-c")
        .arg(&path)
        .args(["-p", &d.to_string(), "-g", "daemon off;"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    let addresses = (
        SocketAddr::from(([127, 0, 0, 1], one)),
        SocketAddr::from(([127, 0, 0, 1], first)),
    );
    for address in [addresses.0, addresses.1] {
        let mut up = false;
        for _ in 0..100 {
            if std::net::TcpStream::connect(address).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(up, "nginx does not listen on {address}: {}", d);
    }
    (child, addresses.0, addresses.1)
}

/// One oha run against `address`: `rate` requests per second (open loop), or as many as
/// `CONNECTIONS` connections can do (`None`).
#[derive(Debug, Clone, Copy)]
struct Outcome {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn oha(address: SocketAddr, rate: Option<u32>, seconds: u32) -> Outcome {
    let mut command = Command::new(tool("OHA", "oha"));
    command
        .args(["--no-tui", "--output-format", "json", "-z"])
        .arg(format!("{seconds}s"))
        .args(["-c", &CONNECTIONS.to_string()])
        .args(["-H", &format!("Host: {HOST}")]);
    if let Some(rate) = rate {
        // Latencies from each request's scheduled time: a stall counts for every request
        // it delayed (no coordinated omission).
        command.args(["-q", &rate.to_string(), "--latency-correction"]);
    }
    let output = command
        .arg(format!("http://{address}/"))
        .output()
        .expect("oha runs");
    assert!(
        output.status.success(),
        "oha: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("oha prints JSON");
    let seconds_to_ms = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) * 1000.0;
    let ok = report["statusCodeDistribution"]["200"]
        .as_u64()
        .unwrap_or(0);
    let all: u64 = report["statusCodeDistribution"]
        .as_object()
        .map(|codes| codes.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    // Requests still in flight when the run's time is up are cut by oha ("aborted due to
    // deadline"): not errors of the target.
    let failed: u64 = report["errorDistribution"]
        .as_object()
        .map(|errors| {
            errors
                .iter()
                .filter(|(kind, _)| !kind.contains("deadline"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0);
    Outcome {
        rps: report["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_ms: seconds_to_ms(&report["latencyPercentiles"]["p50"]),
        p99_ms: seconds_to_ms(&report["latencyPercentiles"]["p99"]),
        errors: all - ok + failed,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the first plain number is the seconds per run.
    let seconds: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(8);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ca = ClusterCa::generate().unwrap();
    let upstream = runtime.block_on(upstream());
    let (strata_one, strata_two) = runtime.block_on(strata(upstream, &ca));
    let dir = tempfile::tempdir().unwrap();
    let (mut nginx_process, nginx_one, nginx_two) = nginx(dir.path(), upstream, &ca);

    let targets = [
        ("direct (no proxy)", upstream),
        ("Strata, 1 hop", strata_one),
        ("nginx, 1 hop", nginx_one),
        ("Strata, 2 hops (mutual TLS between them)", strata_two),
        ("nginx, 2 hops (mutual TLS between them)", nginx_two),
    ];
    // Warm every path (connection pools, TLS sessions).
    for (_, address) in targets {
        oha(address, None, 1);
    }
    let mut rows: Vec<(String, Vec<Outcome>, Outcome)> = Vec::new();
    for (name, address) in targets {
        let fixed: Vec<Outcome> = RATES
            .iter()
            .map(|rate| oha(address, Some(*rate), seconds))
            .collect();
        let max = oha(address, None, seconds);
        eprintln!("{name}: {fixed:?} max {max:?}");
        rows.push((name.to_string(), fixed, max));
    }
    let _ = nginx_process.kill();
    let _ = nginx_process.wait();

    let direct = rows[0].clone();
    println!();
    println!(
        "Latency at fixed rates (oha -q RATE, {CONNECTIONS} connections, {seconds} s; added = minus direct):"
    );
    println!();
    println!("| target | rate | p50 (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, fixed, _) in &rows {
        for (i, outcome) in fixed.iter().enumerate() {
            println!(
                "| {name} | {} | {:.3} | {:.3} | {:+.3} | {:+.3} | {} |",
                RATES[i],
                outcome.p50_ms,
                outcome.p99_ms,
                outcome.p50_ms - direct.1[i].p50_ms,
                outcome.p99_ms - direct.1[i].p99_ms,
                outcome.errors
            );
        }
    }
    println!();
    println!(
        "Most requests per second (oha, {CONNECTIONS} connections, closed loop, {seconds} s):"
    );
    println!();
    println!("| target | requests/s | p50 (ms) | p99 (ms) | errors | vs nginx, same hops |");
    println!("|---|---:|---:|---:|---:|---:|");
    let nginx_max = |name: &str| {
        let hops = if name.contains("2 hops") {
            "nginx, 2"
        } else {
            "nginx, 1"
        };
        rows.iter()
            .find(|(n, _, _)| n.starts_with(hops))
            .map(|(_, _, max)| max.rps)
    };
    for (name, _, max) in &rows {
        let versus = match (name.starts_with("Strata"), nginx_max(name)) {
            (true, Some(peer)) => format!("{:.2}x", max.rps / peer),
            _ => "".to_string(),
        };
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} | {} | {versus} |",
            max.rps, max.p50_ms, max.p99_ms, max.errors
        );
    }
}
