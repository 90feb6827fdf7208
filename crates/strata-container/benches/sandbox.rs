//! The exec sandbox's cost: the example service started and served unsandboxed (the plain
//! `exec` driver: a process of the agent's user) and sandboxed (own user, cgroup, mount,
//! PID and network namespaces, reached through the node's port forwarder), in the same run.
//!
//!   cargo build --release -p hello && cargo bench -p strata-container --bench sandbox [-- STARTS SECONDS]
//!
//! Needs root, iproute2 and nftables (scripts/deps.sh bench). Cold start is from "start this
//! instance" until it answers HTTP on the node's port, STARTS times each (default 20).
//! Throughput is 4 client threads sending keep-alive `GET /` for SECONDS (default 3) to one
//! instance, with each request's latency recorded.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{hello_bin, until_ready, NoImages};
use strata_container::{ContainerConfig, ContainerDriver, SandboxConfig, SandboxedExec};
use strata_runtime::exec::ExecDriver;
use strata_runtime::{Driver, DriverSettings, ExecSettings, StartSpec};

fn spec(dir: &Path, id: &str) -> StartSpec {
    let port = strata_testkit::free_port();
    StartSpec {
        instance_id: id.to_string(),
        name: "hello".into(),
        program: hello_bin(),
        args: Vec::new(),
        env: BTreeMap::from([
            ("PORT".to_string(), port.to_string()),
            ("HOST".to_string(), "127.0.0.1".to_string()),
        ]),
        secret_files: Vec::new(),
        log_path: dir.join(format!("{id}.log")),
        work_dir: dir.join("agent/instances").join(id).join("work"),
        settings: DriverSettings::Exec(ExecSettings {
            memory_bytes: Some(128 << 20),
            cpu_millis: Some(2000),
        }),
    }
}

fn port(spec: &StartSpec) -> SocketAddr {
    format!("127.0.0.1:{}", spec.env["PORT"]).parse().unwrap()
}

/// Starts `runs` instances one after another with `driver`, each until it answers, then
/// stops it; the start times in ms, sorted.
async fn cold_starts(driver: &dyn Driver, dir: &Path, label: &str, runs: usize) -> Vec<f64> {
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let spec = spec(dir, &format!("{label}-{run}"));
        let started = Instant::now();
        let handle = driver.start(&spec).await.expect("starts");
        let addr = port(&spec);
        let ms = tokio::task::spawn_blocking(move || until_ready(started, addr))
            .await
            .unwrap();
        times.push(ms);
        handle.stop(Duration::from_secs(5)).await;
    }
    times.sort_by(f64::total_cmp);
    times
}

/// One keep-alive `GET /`: the answer read whole (by its Content-Length).
fn get(stream: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    stream
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: hello\r\n\r\n")?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("closed"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line
            .to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(str::trim)
            .map(str::to_string)
        {
            length = value.parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)
}

/// Requests per second and p50/p99 latency (µs) of 4 keep-alive clients for `seconds`.
fn throughput(addr: SocketAddr, seconds: u64) -> (f64, u64, u64) {
    let until = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut latencies = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                let mut stream = BufReader::new(TcpStream::connect(addr).unwrap());
                stream.get_mut().set_nodelay(true).unwrap();
                while Instant::now() < until {
                    let sent = Instant::now();
                    get(&mut stream).expect("answered");
                    latencies.record(sent.elapsed().as_micros() as u64).unwrap();
                }
                latencies
            })
        })
        .collect();
    let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for thread in threads {
        all.add(thread.join().unwrap()).unwrap();
    }
    (
        all.len() as f64 / seconds as f64,
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
    )
}

async fn served(driver: &dyn Driver, dir: &Path, label: &str, seconds: u64) -> (f64, u64, u64) {
    let spec = spec(dir, &format!("{label}-served"));
    let handle = driver.start(&spec).await.expect("starts");
    let addr = port(&spec);
    let result = tokio::task::spawn_blocking(move || {
        until_ready(Instant::now(), addr);
        throughput(addr, seconds)
    })
    .await
    .unwrap();
    handle.stop(Duration::from_secs(5)).await;
    result
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the sandbox benchmark needs root (namespaces, cgroups, mounts)");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent");
    std::fs::create_dir_all(agent.join("instances")).unwrap();
    let shim = env!("CARGO_BIN_EXE_strata-container-shim").to_string();
    let config = ContainerConfig::new(agent.join("containers"), vec![shim]);
    let containers = Arc::new(ContainerDriver::new(config, Arc::new(NoImages)).expect("driver"));
    let sandboxed = SandboxedExec::new(containers.clone(), SandboxConfig::new(&agent));
    let plain = ExecDriver;

    // One of each first, not counted: the program's pages and the driver's pools warm.
    cold_starts(&plain, dir.path(), "warm-exec", 1).await;
    cold_starts(&sandboxed, dir.path(), "warm-sandbox", 1).await;
    let exec_starts = cold_starts(&plain, dir.path(), "exec", runs).await;
    let sandbox_starts = cold_starts(&sandboxed, dir.path(), "sandbox", runs).await;
    let exec_served = served(&plain, dir.path(), "exec", seconds).await;
    let sandbox_served = served(&sandboxed, dir.path(), "sandbox", seconds).await;

    println!("exec sandbox cost, {runs} cold starts and {seconds} s of 4 keep-alive clients each");
    println!();
    println!(
        "| | start p50 | start p90 | start max | req/s | p50 | p99 |\n|---|---|---|---|---|---|---|"
    );
    for (label, starts, (rate, p50, p99)) in [
        ("exec, unsandboxed", &exec_starts, exec_served),
        ("exec, sandboxed", &sandbox_starts, sandbox_served),
    ] {
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {:.1} ms | {rate:.0} | {p50} µs | {p99} µs |",
            quantile(starts, 0.5),
            quantile(starts, 0.9),
            starts[starts.len() - 1],
        );
    }
    println!();
    println!(
        "sandboxed / unsandboxed: start p50 {:.2}x, throughput {:.2}x",
        quantile(&sandbox_starts, 0.5) / quantile(&exec_starts, 0.5),
        sandbox_served.0 / exec_served.0
    );
}
