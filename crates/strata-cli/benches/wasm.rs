//! Wasm benchmark: the hello-wasm component under Strata against the same component under
//! `wasmtime serve`, measured in the same run.
//!
//!   scripts/bench-wasm.sh              # installs wrk and wasmtime-cli, builds, runs this
//!   cargo bench -p strata-cli --bench wasm [-- RUNS]
//!
//! Needs `wrk` and `wasmtime` (the wasmtime-cli crate, version 48 as Strata embeds) on PATH,
//! or their paths in `WRK` and `WASMTIME`, and examples/hello-wasm/build/hello.wasm.
//!
//! Figures:
//! - cold start after deploy: each run deploys a component with a new digest (hello.wasm plus
//!   a custom section naming the run), so compilation really happens at deploy; then the time
//!   to first byte of the first request, straight to the instance and through the ingress
//!   (the ingress figure counts from the deploy command's return, so it includes the routing
//!   table reaching the ingress). The peer: `wasmtime serve` process start to first byte.
//! - first request after idle: 3 s without traffic, then one request (a wasm service keeps no
//!   warm instance: every request instantiates). Same for the peer.
//! - sustained load: wrk, closed loop, fixed connections, requests/s and p50/p99, against the
//!   Strata instance, through Strata's ingress, and against `wasmtime serve`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOAD_SECONDS: u32 = 10;
const CONNECTIONS: u32 = 32;
const IDLE: Duration = Duration::from_secs(3);

fn tool(var: &str, name: &str) -> PathBuf {
    strata_testkit::bench_tool(var, name, "run scripts/bench-wasm.sh")
}

fn hello_wasm() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/hello-wasm/build/hello.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with examples/hello-wasm/build.sh",
            path.display()
        )
    })
}

/// `component` with a custom section appended: the same code under a new digest, so the
/// platform has to compile it afresh.
fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut section = Vec::new();
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, section.len() as u64);
    out.extend_from_slice(&section);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Milliseconds from connect until the first byte of the response, on a new connection.
/// `None` if the answer is not a 200.
async fn first_byte(addr: SocketAddr, host: &str) -> Option<f64> {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await.ok()?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    let head = String::from_utf8_lossy(&rest);
    (first[0] == b'H' && head.starts_with("TTP/1.1 200")).then_some(elapsed)
}

/// Retries [`first_byte`] until a 200 (at most 10 s); milliseconds from `since` to that
/// first byte.
async fn first_ok_since(since: Instant, addr: SocketAddr, host: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if first_byte(addr, host).await.is_some() {
            return since.elapsed().as_secs_f64() * 1000.0;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    panic!("{host} at {addr} did not answer 200 within 10 s");
}

fn instance_addr(dev: &Dev, service: &str) -> SocketAddr {
    let status = dev.status(service);
    let address = status
        .instances
        .iter()
        .filter_map(|i| i.status.as_ref())
        .find_map(|s| s.address.clone())
        .expect("a running instance has an address");
    address.parse().expect("instance address")
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// wrk's closed-loop load against `url`, with `host` as the Host header.
fn wrk(url: &str, host: &str) -> Load {
    let output = Command::new(tool("WRK", "wrk"))
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{LOAD_SECONDS}s"),
        ])
        .args(["--latency", "-H", &format!("Host: {host}"), url])
        .stderr(Stdio::inherit())
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
    };
    let ms = |v: String| -> f64 {
        let (number, factor) = if let Some(n) = v.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1000.0)
        } else {
            (v.as_str(), 1.0)
        };
        number.parse::<f64>().expect("wrk latency") * factor
    };
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = field("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Load {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("wrk printed no Requests/sec:\n{text}")),
        p50_ms: ms(field("50%").expect("wrk p50")),
        p99_ms: ms(field("99%").expect("wrk p99")),
        errors: non_2xx + socket_errors,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn max(values: &[f64]) -> f64 {
    values.iter().cloned().fold(f64::MIN, f64::max)
}

/// `wasmtime serve` of `component`; killed when dropped.
struct WasmtimeServe {
    child: std::process::Child,
    addr: SocketAddr,
}

impl WasmtimeServe {
    fn start(component: &Path, extra: &[&str]) -> (Self, Instant) {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let started = Instant::now();
        let child = Command::new(tool("WASMTIME", "wasmtime"))
            .args(["serve", "-Scli", "--addr", &addr.to_string()])
            .args(["--env", "GREETING=Hello from wasmtime serve"])
            .args(extra)
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wasmtime serve starts");
        (Self { child, addr }, started)
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn version(tool_path: &Path) -> String {
    Command::new(tool_path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let runs = strata_testkit::bench_runs(10);
    let wasmtime = tool("WASMTIME", "wasmtime");
    let wrk_path = tool("WRK", "wrk");
    let component = hello_wasm();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "wasm benchmark: {runs} cold starts; {LOAD_SECONDS} s of wrk -t1 -c{CONNECTIONS} per target; {} ; {}",
        version(&wasmtime),
        version(&wrk_path).lines().next().unwrap_or("wrk")
    );

    // -- Strata: cold start after deploy, and after idle ------------------------------------
    let dev = Dev::start(dir.path());
    let (mut deploy_ms, mut direct_ms, mut ingress_ms, mut idle_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let service = format!("hello-{run}");
        let artifact = dir.path().join(format!("{service}.wasm"));
        std::fs::write(
            &artifact,
            with_custom_section(&component, "strata-bench", service.as_bytes()),
        )
        .unwrap();
        let spec = dir.path().join(format!("{service}.toml"));
        std::fs::write(
            &spec,
            format!(
                "[service.{service}]\ndriver = \"wasm\"\nartifact = \"{}\"\n[service.{service}.config]\nGREETING = \"run {run}\"\n",
                artifact.display()
            ),
        )
        .unwrap();
        let started = Instant::now();
        let output = dev.cli(&["deploy", spec.to_str().unwrap()]);
        assert!(output.status.success(), "deploy: {}", stderr(&output));
        let deployed = Instant::now();
        deploy_ms.push((deployed - started).as_secs_f64() * 1000.0);
        let host = format!("{service}.dev.localhost");
        let addr = instance_addr(&dev, &service);
        direct_ms.push(
            first_byte(addr, &host)
                .await
                .expect("first request after deploy answered 200"),
        );
        ingress_ms.push(first_ok_since(deployed, dev.ingress, &host).await);
        if run < 3 {
            tokio::time::sleep(IDLE).await;
            idle_ms.push(first_byte(addr, &host).await.expect("request after idle"));
        }
    }
    assert!(
        dev.log()
            .matches("wasm component compiled and cached")
            .count()
            >= runs,
        "every run compiled at deploy"
    );

    // -- Strata: sustained load ---------------------------------------------------------------
    let host = "hello-0.dev.localhost";
    let addr = instance_addr(&dev, "hello-0");
    let strata_direct = wrk(&format!("http://{addr}/"), host);
    let strata_ingress = wrk(&format!("http://{}/", dev.ingress), host);
    drop(dev);

    // -- wasmtime serve: start to first byte, idle, load -------------------------------------
    let plain = dir.path().join("hello.wasm");
    std::fs::write(&plain, &component).unwrap();
    let mut peer_compile_ms = Vec::new();
    let mut peer_cached_ms = Vec::new();
    let mut peer_idle_ms = Vec::new();
    for run in 0..runs.min(5) {
        // A new digest: wasmtime compiles it (and fills its own cache).
        let fresh = dir.path().join(format!("peer-{run}.wasm"));
        let bytes =
            with_custom_section(&component, "strata-bench", format!("peer-{run}").as_bytes());
        std::fs::write(&fresh, bytes).unwrap();
        let (serve, started) = WasmtimeServe::start(&fresh, &[]);
        peer_compile_ms.push(first_ok_since(started, serve.addr, "localhost").await);
        drop(serve);
        // The same file again: served from wasmtime's compile cache.
        let (serve, started) = WasmtimeServe::start(&fresh, &[]);
        peer_cached_ms.push(first_ok_since(started, serve.addr, "localhost").await);
        if run < 3 {
            tokio::time::sleep(IDLE).await;
            peer_idle_ms.push(
                first_byte(serve.addr, "localhost")
                    .await
                    .expect("wasmtime serve after idle"),
            );
        }
    }
    let (serve, started) = WasmtimeServe::start(&plain, &[]);
    first_ok_since(started, serve.addr, "localhost").await;
    let peer = wrk(&format!("http://{}/", serve.addr), "localhost");
    drop(serve);
    let (serve, started) = WasmtimeServe::start(&plain, &["-O", "pooling-allocator=y"]);
    first_ok_since(started, serve.addr, "localhost").await;
    let peer_pooling = wrk(&format!("http://{}/", serve.addr), "localhost");
    drop(serve);

    // -- Tables --------------------------------------------------------------------------------
    println!("\n## Cold start (ms)\n");
    println!("| | median | max | runs |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, values: &mut Vec<f64>| {
        let m = max(values);
        println!(
            "| {name} | {:.2} | {:.2} | {} |",
            median(values),
            m,
            values.len()
        );
    };
    row(
        "Strata: `strata deploy` (upload, compile, start, healthy)",
        &mut deploy_ms,
    );
    row(
        "Strata: first request after deploy, to first byte (instance)",
        &mut direct_ms,
    );
    row(
        "Strata: deploy returned -> first byte through the ingress",
        &mut ingress_ms,
    );
    row(
        "Strata: first request after 3 s idle (instance)",
        &mut idle_ms,
    );
    row(
        "wasmtime serve: process start -> first byte, new component (compiles)",
        &mut peer_compile_ms,
    );
    row(
        "wasmtime serve: process start -> first byte, from its compile cache",
        &mut peer_cached_ms,
    );
    row(
        "wasmtime serve: first request after 3 s idle",
        &mut peer_idle_ms,
    );

    println!(
        "\n## Sustained load: wrk -t1 -c{CONNECTIONS}, {LOAD_SECONDS} s, GET / of hello.wasm\n"
    );
    println!("| target | requests/s | p50 (ms) | p99 (ms) | errors | vs wasmtime serve (rps) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, load) in [
        ("Strata instance (wasm driver)", &strata_direct),
        (
            "Strata through the ingress (one proxy hop)",
            &strata_ingress,
        ),
        ("wasmtime serve (defaults)", &peer),
        ("wasmtime serve -O pooling-allocator=y", &peer_pooling),
    ] {
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} | {} | {:.2}x |",
            load.rps,
            load.p50_ms,
            load.p99_ms,
            load.errors,
            load.rps / peer.rps
        );
    }
}
