//! Control plane benchmarks on etcd:
//!
//! 1. leader loss: three `strata server`s on one etcd; kill -9 the leader and time until
//!    another server leads and acts (its `/v1/leader` names itself), median and max of RUNS;
//! 2. API writes: a deploy that changes a service's config is one store transaction (service,
//!    release, config version); latency and throughput of such writes against a server on the
//!    embedded redb store and one on etcd, in the same run, with 1 and 8 concurrent clients.
//!
//!   cargo bench -p strata-cli --bench ha [-- RUNS]
//!
//! Needs etcd (Debian's etcd-server).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use strata_core::api::{DeployRequest, DeployService};
use strata_store::testing::{etcd_unavailable, EtcdServer};
use strata_testkit::ServerProcess;

fn start_server(dir: &Path, store: Option<&str>) -> ServerProcess {
    ServerProcess::start(&common::strata_bin(), dir, store)
}

async fn leader(client: &reqwest::Client, api: &str) -> Option<String> {
    let value: serde_json::Value = client
        .get(format!("{api}/v1/leader"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    value["server_id"].as_str().map(str::to_string)
}

/// The current leader's id, waiting until there is one.
async fn wait_leader(client: &reqwest::Client, api: &str) -> String {
    loop {
        if let Some(id) = leader(client, api).await {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Milliseconds from `start` until `api` names a leader other than `old`.
async fn wait_new_leader(client: &reqwest::Client, api: &str, old: &str, start: Instant) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(id) = leader(client, api).await {
            if id != old {
                return start.elapsed().as_secs_f64() * 1000.0;
            }
        }
        assert!(Instant::now() < deadline, "no new leader within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn stats(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99), samples[samples.len() - 1])
}

/// `count` config-changing deploys of `services` services from `clients` concurrent clients.
async fn write_load(
    api: &str,
    client: reqwest::Client,
    clients: usize,
    per_client: usize,
) -> (Vec<f64>, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let api = api.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let mut spec = strata_core::spec::parse(
                    "bench.toml",
                    &format!("[service.w{c}]\ncommand = [\"true\"]\n[service.w{c}.scale]\nreplicas = 0\n[service.w{c}.config]\nN = \"{i}\"\n"),
                )
                .unwrap()
                .services
                .remove(0);
                spec.config.insert("N".into(), i.to_string());
                let request = DeployRequest {
                    services: vec![DeployService { spec, artifact_digest: None }],
                };
                let t = Instant::now();
                let response = client.post(format!("{api}/v1/envs/bench/deploy")).json(&request).send().await.unwrap();
                assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let throughput = all.len() as f64 / started.elapsed().as_secs_f64();
    (all, throughput)
}

fn main() {
    let runs = strata_testkit::bench_runs(10);
    if let Some(why) = etcd_unavailable() {
        eprintln!("HA benchmark skipped: {why}");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::cluster(3);

    // 1. Leader loss.
    let store = etcd.url("/bench-leader");
    let mut servers: Vec<ServerProcess> = (0..3)
        .map(|i| start_server(&root.path().join(format!("l{i}")), Some(&store)))
        .collect();
    let client = servers[0].api_client();
    println!("leader loss: 3 servers on a 3-member etcd, leader lease 2 s");
    println!("{:>4} {:>26}", "run", "kill -9 -> new leader ms");
    let mut takeovers = Vec::new();
    for run in 1..=runs {
        let current = runtime.block_on(wait_leader(&client, &servers[0].api));
        let index = servers.iter().position(|s| s.id() == current).unwrap();
        let survivor = servers[(index + 1) % 3].api.clone();
        let start = Instant::now();
        servers[index].kill9();
        let ms = runtime.block_on(wait_new_leader(&client, &survivor, &current, start));
        println!("{run:>4} {ms:>26.0}");
        takeovers.push(ms);
        let dir = root.path().join(format!("l{index}"));
        servers[index] = start_server(&dir, Some(&store));
    }
    let (median, _, max) = stats(takeovers);
    println!("median {median:.0} ms, max {max:.0} ms\n");

    // The same with a frozen leader (SIGSTOP): it still holds its socket, so only its lease
    // ending deposes it.
    println!("{:>4} {:>26}", "run", "SIGSTOP -> new leader ms");
    let mut frozen_takeovers = Vec::new();
    for run in 1..=runs.min(5) {
        let current = runtime.block_on(wait_leader(&client, &servers[0].api));
        let index = servers.iter().position(|s| s.id() == current).unwrap();
        let survivor = servers[(index + 1) % 3].api.clone();
        let start = Instant::now();
        servers[index].freeze(true);
        let ms = runtime.block_on(wait_new_leader(&client, &survivor, &current, start));
        servers[index].freeze(false);
        println!("{run:>4} {ms:>26.0}");
        frozen_takeovers.push(ms);
        std::thread::sleep(Duration::from_secs(1));
    }
    let (median, _, max) = stats(frozen_takeovers);
    println!("median {median:.0} ms, max {max:.0} ms\n");
    drop(servers);

    // 2. API writes, redb and etcd in the same run.
    let mut redb = start_server(&root.path().join("w-redb"), None);
    let mut on_etcd = start_server(
        &root.path().join("w-etcd"),
        Some(&etcd.url("/bench-writes")),
    );
    std::thread::sleep(Duration::from_secs(3));
    println!("API writes (a deploy changing config: one transaction of 3 keys)");
    println!(
        "{:<6} {:>8} {:>9} {:>9} {:>9} {:>12}",
        "store", "clients", "p50 ms", "p99 ms", "max ms", "writes/s"
    );
    for (name, server) in [("redb", &redb), ("etcd", &on_etcd)] {
        for clients in [1usize, 8] {
            let (latencies, throughput) = runtime.block_on(write_load(
                &server.api,
                server.api_client(),
                clients,
                200 / clients.min(4),
            ));
            let (p50, p99, max) = stats(latencies);
            println!("{name:<6} {clients:>8} {p50:>9.2} {p99:>9.2} {max:>9.2} {throughput:>12.0}");
        }
    }
    redb.kill9();
    on_etcd.kill9();
    println!("\netcd's published figures (op-guide/performance.md, etcd 3.2, 8 vCPU): 583 writes/s at 1.6 ms for one client.");
}
