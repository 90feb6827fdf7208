//! Operating a fleet, measured (issue 24's figures):
//!
//! 1. **False failovers under etcd leader loss**: a 3-member etcd, a server, two nodes (agents
//!    in network namespaces) running hello twice; the etcd raft leader is killed `--kills`
//!    times (restarted after 4 s each). Counted: nodes marked down, instances replaced.
//! 2. **An agent upgraded in place under load**: a server and an agent on loopback, hello
//!    twice, four request loops through the node's ingress; the agent binary is replaced
//!    `--upgrades` times (a new process takes the node over). Counted: requests, failed ones,
//!    and how long each takeover took until the old process exited.
//! 3. **Backup and restore of N services**: a server on etcd holding N services (each with a
//!    release and its configuration); `strata store export` through the live server,
//!    `strata store verify`, and `strata store import` into a fresh etcd namespace are timed.
//!
//!   cargo build --release -p hello && cargo bench -p strata-cli --bench operations \
//!       [-- --kills 3 --upgrades 5 --services 100,1000]
//!
//! Needs root, network namespaces and etcd (scenario 1), and etcd (scenario 3). No peer runs
//! here; docs/benchmarks.md says what Kubernetes and Nomad do in the same situations.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::api::ServiceStatus;
use strata_core::DesiredState;
use strata_store::testing::EtcdServer;
use strata_testkit::{request_loop, AgentProcess, Cluster, Options, ServerProcess};

const HOST: &str = "hello.dev.localhost";

struct Args {
    kills: usize,
    upgrades: usize,
    services: Vec<usize>,
}

fn args() -> Args {
    let mut args = Args {
        kills: 3,
        upgrades: 5,
        services: vec![100, 1000],
    };
    let list: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < list.len() {
        let value = list.get(i + 1).cloned().unwrap_or_default();
        match list[i].as_str() {
            "--kills" => args.kills = value.parse().expect("--kills N"),
            "--upgrades" => args.upgrades = value.parse().expect("--upgrades N"),
            "--services" => {
                args.services = value
                    .split(',')
                    .map(|n| n.parse().expect("--services N,M"))
                    .collect()
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    args
}

fn cli(api: &str, args: &[&str]) -> std::process::Output {
    Command::new(common::strata_bin())
        .args(args)
        .env("STRATA_ADDR", api)
        .output()
        .expect("strata runs")
}

fn wanted(status: &[u8]) -> Vec<String> {
    let list: Vec<ServiceStatus> = serde_json::from_slice(status).unwrap_or_default();
    let mut ids: Vec<String> = list
        .iter()
        .flat_map(|s| &s.instances)
        .filter(|v| v.instance.desired == DesiredState::Running)
        .map(|v| v.instance.id.to_string())
        .collect();
    ids.sort();
    ids
}

/// Scenario 1: (nodes marked down, instances replaced, liveness pauses told).
fn etcd_leader_loss(kills: usize) -> Option<(usize, usize, usize)> {
    if let Some(why) = strata_testkit::unavailable() {
        eprintln!("etcd leader loss: skipped ({why})");
        return None;
    }
    let mut etcd = EtcdServer::cluster(3);
    let cluster = Cluster::start(Options {
        strata: common::strata_bin(),
        node_labels: vec!["zone=a".into(), "zone=b".into()],
        server_args: vec!["--store".into(), etcd.url("/strata-ops")],
    });
    let spec = common::hello_spec(cluster.root.path(), 2, "Steady");
    let output = cluster.cli(&["deploy", spec.to_str().unwrap(), "--timeout", "60s"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let before = wanted(&cluster.cli(&["status", "hello", "--json"]).stdout);
    for _ in 0..kills {
        let deadline = Instant::now() + Duration::from_secs(10);
        let leader = loop {
            if let Some(leader) = etcd.leader() {
                break leader;
            }
            assert!(Instant::now() < deadline, "etcd elects no leader");
            std::thread::sleep(Duration::from_millis(100));
        };
        etcd.kill(leader);
        std::thread::sleep(Duration::from_secs(4));
        etcd.restart(leader);
        std::thread::sleep(Duration::from_secs(2));
    }
    std::thread::sleep(Duration::from_secs(3));
    let after = wanted(&cluster.cli(&["status", "hello", "--json"]).stdout);
    let events = common::stdout(&cluster.cli(&["events", "--limit", "10000"]));
    let downs = events.matches("-> down").count();
    let replaced = before.iter().filter(|id| !after.contains(id)).count();
    let pauses = events.matches("liveness paused").count();
    Some((downs, replaced, pauses))
}

/// Scenario 2: (requests, failed, takeover times in ms).
fn agent_upgrades(upgrades: usize) -> (usize, usize, Vec<f64>) {
    let root = tempfile::tempdir().unwrap();
    let (server, binaries, mut running) = common::serving_hello_to_upgrade(root.path(), "Upgraded");
    let agent_dir = root.path().join("agent");
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| request_loop(HOST, running.ingress.clone(), stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut times = Vec::new();
    for round in 0..upgrades {
        let started = Instant::now();
        let next = AgentProcess::start(
            &binaries[(round + 1) % 2],
            &agent_dir,
            &server.api,
            &server.token(),
        );
        running
            .wait_exit(Duration::from_secs(30))
            .expect("the old agent exits");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        running = next;
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::SeqCst);
    let (failures, ok) = strata_testkit::join_request_loops(loads);
    (ok + failures.len(), failures.len(), times)
}

/// Scenario 3: (export s, verify s, import s, bytes) for `services` services.
fn backup(services: usize) -> (f64, f64, f64, u64) {
    let root = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::cluster(1);
    let server = ServerProcess::start(
        &common::strata_bin(),
        &root.path().join("server"),
        Some(&etcd.url("/strata-live")),
    );
    let hello = common::hello_bin();
    let mut spec = String::new();
    for i in 0..services {
        spec.push_str(&common::service_toml(
            &format!("s{i:05}"),
            &hello,
            &format!("service {i}"),
            &format!("[service.s{i:05}.scale]\nreplicas = 0"),
        ));
    }
    let spec = common::write_file(root.path(), "services.toml", spec);
    let output = cli(&server.api, &["deploy", spec.to_str().unwrap(), "--detach"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let file = root.path().join("backup.jsonl");
    let timed = |what: &str, command: &mut Command| {
        let started = Instant::now();
        let output = command.output().expect("strata runs");
        assert!(
            output.status.success(),
            "{what}: {}",
            common::stderr(&output)
        );
        started.elapsed().as_secs_f64()
    };
    let passphrase = "a benchmark passphrase";
    let export = timed(
        "export",
        Command::new(common::strata_bin())
            .args(["store", "export", "--include-secrets", "-o"])
            .arg(&file)
            .env("STRATA_ADDR", &server.api)
            .env("STRATA_BACKUP_PASSPHRASE", passphrase),
    );
    let verify = timed(
        "verify",
        Command::new(common::strata_bin())
            .args(["store", "verify"])
            .arg(&file)
            .env("STRATA_BACKUP_PASSPHRASE", passphrase),
    );
    let import = timed(
        "import",
        Command::new(common::strata_bin())
            .args(["store", "import"])
            .arg(&file)
            .args(["--store", &etcd.url("/strata-restored"), "--data-dir"])
            .arg(root.path().join("restored"))
            .env("STRATA_BACKUP_PASSPHRASE", passphrase),
    );
    let bytes = std::fs::metadata(&file).unwrap().len();
    (export, verify, import, bytes)
}

fn main() {
    let args = args();
    println!("| scenario | measure | value |");
    println!("|---|---|---|");
    if let Some((downs, replaced, pauses)) = etcd_leader_loss(args.kills) {
        let scenario = format!("etcd raft leader killed {}x", args.kills);
        println!("| {scenario} | nodes marked down | {downs} |");
        println!("| {scenario} | instances replaced | {replaced} |");
        println!("| {scenario} | liveness pauses told | {pauses} |");
    }
    let (requests, failed, times) = agent_upgrades(args.upgrades);
    let scenario = format!("agent upgraded in place {}x", args.upgrades);
    println!("| {scenario} | requests (4 loops) | {requests} |");
    println!("| {scenario} | failed requests | {failed} |");
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let max = times.iter().copied().fold(0.0, f64::max);
    println!("| {scenario} | takeover, mean / max | {mean:.0} / {max:.0} ms |");
    for services in args.services {
        let (export, verify, import, bytes) = backup(services);
        let scenario = format!("backup of {services} services");
        println!("| {scenario} | export (live, via a server) | {export:.2} s |");
        println!("| {scenario} | verify | {verify:.2} s |");
        println!("| {scenario} | import into a fresh etcd namespace | {import:.2} s |");
        println!(
            "| {scenario} | file | {:.1} MiB |",
            bytes as f64 / 1048576.0
        );
    }
}
