//! Failover benchmark: how long from `kill -9` of a node (its agent and every process it
//! started) until (a) the control plane marks it down and (b) a replacement instance serves
//! on another node, at the default settings (agents heartbeat every 100 ms; a node is suspect
//! after 300 ms and down after 600 ms of silence). A request loop through a surviving node's
//! ingress counts failed requests meanwhile.
//!
//!   cargo build --release -p hello && cargo bench -p strata-cli --bench failover [-- RUNS]
//!
//! Needs root and network namespaces (each node is an agent in its own namespace). Times are
//! read from the control plane's own watch stream, so they are the platform's view, not a
//! polling interval.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_core::api::{ServiceStatus, WatchChange};
use strata_testkit::{request_loop, Cluster, Options};

const HOST: &str = "hello.dev.localhost";

fn status(cluster: &Cluster) -> ServiceStatus {
    let output = cluster.cli(&["status", "hello", "--json"]);
    let mut list: Vec<ServiceStatus> = serde_json::from_slice(&output.stdout).expect("status json");
    list.remove(0)
}

/// Milliseconds from `start` until the watch shows (a) `victim` down and (b) a new instance
/// (not in `known`) running on another node.
async fn observe(
    api: &str,
    client: reqwest::Client,
    victim: &str,
    known: BTreeSet<String>,
    start: Instant,
    kill: impl FnOnce(),
) -> (f64, f64) {
    let response = client
        .get(format!("{api}/v1/watch?prefix=/"))
        .send()
        .await
        .expect("watch opens");
    let mut body = response.bytes_stream();
    kill();
    let mut buffer = String::new();
    let (mut down, mut serving) = (None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while down.is_none() || serving.is_none() {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("failover within 30 s")
            .expect("watch stream open")
            .expect("watch chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let Ok(change) = serde_json::from_str::<WatchChange>(data.trim()) else {
                continue;
            };
            let Some(value) = change.value else { continue };
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            if change.key == format!("/nodes/{victim}")
                && value["state"] == "down"
                && down.is_none()
            {
                down = Some(ms);
            }
            if let Some(id) = change.key.strip_prefix("/status/") {
                if value["state"] == "running"
                    && value["node"] != victim
                    && !known.contains(id)
                    && serving.is_none()
                {
                    serving = Some(ms);
                }
            }
        }
    }
    (down.unwrap(), serving.unwrap())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let runs = strata_testkit::bench_runs(10);
    if let Some(why) = strata_testkit::unavailable() {
        eprintln!("failover benchmark skipped: it {why}");
        return;
    }
    let _ = common::hello_bin();
    let mut cluster = Cluster::start(Options {
        strata: common::strata_bin(),
        node_labels: (0..3).map(|i| format!("zone=z{i}")).collect(),
        server_args: vec![],
    });
    let spec = common::hello_spec(cluster.root.path(), 2, "Bench");
    let output = cluster.cli(&["deploy", spec.to_str().unwrap(), "--timeout", "60s"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let runtime = tokio::runtime::Runtime::new().unwrap();

    println!("failover after kill -9 of a node: 3 nodes, 2 replicas, default settings");
    println!(
        "{:>4} {:>14} {:>22} {:>10} {:>9}",
        "run", "marked down ms", "replacement serving ms", "requests", "failed"
    );
    let (mut downs, mut servings) = (Vec::new(), Vec::new());
    let mut total_failed = 0;
    for run in 1..=runs {
        let current = status(&cluster);
        let routable: Vec<_> = current
            .instances
            .iter()
            .filter(|v| v.is_routable())
            .collect();
        assert_eq!(routable.len(), 2, "settled before the run");
        let victim_name = routable[0].instance.node.clone();
        let survivor_name = routable[1].instance.node.clone();
        let victim = cluster
            .nodes
            .iter()
            .position(|n| n.name == victim_name)
            .unwrap();
        let survivor = cluster
            .nodes
            .iter()
            .position(|n| n.name == survivor_name)
            .unwrap();
        let known: BTreeSet<String> = current
            .instances
            .iter()
            .map(|v| v.instance.id.to_string())
            .collect();

        // Load through the survivor's ingress while the victim dies.
        let stop = Arc::new(AtomicBool::new(false));
        let load = request_loop(HOST, cluster.nodes[survivor].ingress(), stop.clone());
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        let api = cluster.api.clone();
        let admin = cluster.api_client();
        let (down, serving) = {
            let cluster_ref = &mut cluster;
            runtime.block_on(observe(&api, admin, &victim_name, known, start, || {
                cluster_ref.kill_node(victim)
            }))
        };
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let (failures, ok) = load.join().unwrap();
        let (sent, failed) = (ok + failures.len(), failures.len());
        total_failed += failed;
        println!("{run:>4} {down:>14.0} {serving:>22.0} {sent:>10} {failed:>9}");
        downs.push(down);
        servings.push(serving);

        // Bring the node back and let the cluster settle before the next run.
        cluster.start_agent(victim);
        cluster.wait_ready(3, Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(30);
        while status(&cluster)
            .instances
            .iter()
            .filter(|v| v.is_routable())
            .count()
            != 2
            || status(&cluster).instances.len() != 2
        {
            assert!(
                Instant::now() < deadline,
                "cluster did not settle\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    downs.sort_by(f64::total_cmp);
    servings.sort_by(f64::total_cmp);
    println!();
    println!("{:<34} {:>10} {:>10}", "", "median ms", "max ms");
    println!(
        "{:<34} {:>10.0} {:>10.0}",
        "kill -9 -> node marked down",
        percentile(&downs, 0.5),
        downs[downs.len() - 1]
    );
    println!(
        "{:<34} {:>10.0} {:>10.0}",
        "kill -9 -> replacement serving",
        percentile(&servings, 0.5),
        servings[servings.len() - 1]
    );
    println!("{:<34} {:>10}", "failed requests, all runs", total_failed);
    println!();
    println!(
        "peers' defaults (published): Kubernetes ~40-50 s to notice, pods evicted after 300 s;"
    );
    println!("Nomad heartbeat TTL 20-30 s (10-100 clients); Docker Swarm ~15 s.");
}
