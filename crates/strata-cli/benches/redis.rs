//! Redis through Strata against redis-server alone, measured with redis-benchmark as a user
//! would (50 clients, SET and GET, `-n` requests each), in one run:
//!
//! - **bare**: Debian's redis-server on the host's loopback, held to one CPU by a CFS quota
//!   (a cgroup of its own, `cpu.cfs_quota_us` = the period), as a container's `cpu = 1` is;
//! - **node port**: the same redis-server packaged with `--jeos`, a container service on
//!   `strata dev` with `cpu = 1` (the same share), reached at the node's `127.0.0.1:PORT`,
//!   which the kernel translates to the container (nftables, no copy);
//! - **by name**: from inside an instance (redis-benchmark run as a sandboxed exec service,
//!   in its own network namespace), `redis:PORT` by name: the node's resolver, its TCP proxy
//!   (policy, balancing; one copy in userspace), then the node port.
//!
//! The clients run unpinned, as the servers do; the instance running redis-benchmark has
//! `cpu = 1` too. Each row is the median of RUNS runs.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo bench -p strata-cli --bench redis [-- RUNS]       # needs root (containers)
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Requests per test of a run.
const REQUESTS: u32 = 200_000;
const CLIENTS: u32 = 50;

/// The benchmark's options, as redis-benchmark takes them.
fn benchmark_args(host: &str, port: u16) -> Vec<String> {
    [
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-c",
        &CLIENTS.to_string(),
        "-n",
        &REQUESTS.to_string(),
        "-t",
        "set,get",
        "--csv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A test's figures in redis-benchmark's CSV: requests/s, p50 and p99 (ms).
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50: f64,
    p99: f64,
}

/// SET's and GET's figures in redis-benchmark's `--csv` output.
fn parse(csv: &str) -> Option<(Figures, Figures)> {
    let row = |test: &str| -> Option<Figures> {
        let line = csv
            .lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))?;
        let fields: Vec<f64> = line
            .split(',')
            .skip(1)
            .map(|f| f.trim_matches('"').parse().unwrap_or(f64::NAN))
            .collect();
        // rps, avg, min, p50, p95, p99, max
        Some(Figures {
            rps: *fields.first()?,
            p50: *fields.get(3)?,
            p99: *fields.get(5)?,
        })
    };
    Some((row("SET")?, row("GET")?))
}

/// redis-benchmark from the host.
fn from_host(tool: &Path, port: u16) -> (Figures, Figures) {
    let output = Command::new(tool)
        .args(benchmark_args("127.0.0.1", port))
        .output()
        .expect("redis-benchmark runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    parse(&text).unwrap_or_else(|| panic!("redis-benchmark said: {text}{}", stderr(&output)))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// A row's medians over its runs: (SET, GET).
fn medians(runs: &[(Figures, Figures)]) -> (Figures, Figures) {
    let of = |pick: fn(&(Figures, Figures)) -> Figures| Figures {
        rps: median(runs.iter().map(|r| pick(r).rps).collect()),
        p50: median(runs.iter().map(|r| pick(r).p50).collect()),
        p99: median(runs.iter().map(|r| pick(r).p99).collect()),
    };
    (of(|r| r.0), of(|r| r.1))
}

/// Waits until redis answers PING at `port` (30 s at most).
fn until_pong(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
            .output();
        if output.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("redis on port {port} never answered PING");
}

fn bare(server: &Path, tool: &Path, runs: usize) -> Vec<(Figures, Figures)> {
    let port = free_port();
    let mut redis: Child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(server)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    until_pong(port);
    let results = (0..runs).map(|_| from_host(tool, port)).collect();
    let _ = redis.kill();
    let _ = redis.wait();
    results
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    if !strata_testkit::containers_available("the redis benchmark") {
        return;
    }
    let server = strata_testkit::bench_tool(
        "REDIS_SERVER",
        "redis-server",
        "apt-get install redis-server",
    );
    let tool = strata_testkit::bench_tool(
        "REDIS_BENCHMARK",
        "redis-benchmark",
        "apt-get install redis-tools",
    );

    let bare_runs = bare(&server, &tool, runs);

    let dir = tempfile::tempdir().unwrap();
    let (spec, port) = redis_service(
        dir.path(),
        &server,
        "[service.redis.resources]\ncpu = 1.0\nmemory = \"256Mi\"\n",
    );
    let dev = Dev::start(&dir.path().join("data"));
    dev.deploy(&spec, &["--timeout", "60s"]);
    until_pong(port);
    let node_port_runs: Vec<_> = (0..runs).map(|_| from_host(&tool, port)).collect();

    // redis-benchmark inside an instance, by name; its output is the instance's log.
    let args = benchmark_args("redis", port).join(" ");
    let mut by_name_runs = Vec::new();
    for run in 0..runs {
        let spec = write_file(
            dir.path(),
            &format!("client-{run}.toml"),
            format!(
                r#"
[service.client-{run}]
command = ["sh", "-c", "{tool} {args}; echo BENCHMARK-DONE; sleep 3600"]
[service.client-{run}.resources]
cpu = 1.0
"#,
                tool = tool.display()
            ),
        );
        let deployed = dev.cli(&["deploy", spec.to_str().unwrap(), "--detach"]);
        assert!(deployed.status.success(), "{}", stderr(&deployed));
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut logs = String::new();
        while Instant::now() < deadline {
            logs = stdout(&dev.cli(&["logs", &format!("client-{run}"), "--tail", "50"]));
            if logs.contains("BENCHMARK-DONE") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let csv: String = logs
            .lines()
            .map(|line| line.split_once("] ").map_or(line, |(_, rest)| rest))
            .collect::<Vec<_>>()
            .join("\n");
        by_name_runs
            .push(parse(&csv).unwrap_or_else(|| panic!("no figures in:\n{logs}\n{}", dev.log())));
        dev.delete(&format!("client-{run}"));
    }

    let rows = [
        ("bare redis-server (1 CPU quota)", medians(&bare_runs)),
        ("Strata, node port (kernel DNAT)", medians(&node_port_runs)),
        (
            "Strata, by name from an instance (TCP proxy)",
            medians(&by_name_runs),
        ),
    ];
    let base = rows[0].1;
    println!("\nredis-benchmark -c {CLIENTS} -n {REQUESTS} -t set,get, median of {runs} runs:\n");
    println!("| path | SET requests/s | SET p50 / p99 (ms) | GET requests/s | GET p50 / p99 (ms) | vs bare (SET, GET) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, (set, get)) in rows {
        println!(
            "| {name} | {:.0} | {:.3} / {:.3} | {:.0} | {:.3} / {:.3} | {:.2}x, {:.2}x |",
            set.rps,
            set.p50,
            set.p99,
            get.rps,
            get.p50,
            get.p99,
            set.rps / base.0.rps,
            get.rps / base.1.rps
        );
    }
}
