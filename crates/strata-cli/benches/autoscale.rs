//! Autoscaling benchmark, on `strata dev` (release build):
//!
//! - A 10x load step: the example service (`WORK_SLOTS=4`: an instance works on 4 requests at
//!   once, 50 ms each, the rest queue) autoscaled 1..10 at 4 in flight per instance with a p99
//!   SLO of 150 ms, under 2 closed-loop clients, then 20. Measured from the step: until an
//!   added instance serves (healthy and in the routing table, polled every 50 ms), and until
//!   the clients' p99 is back within the SLO for good (every later 500 ms window).
//! - Cold start from zero: a service with `min = 0` at zero instances, one request: the time
//!   to its response (process, wasm and, when the node can run them, container services).
//!
//! ```sh
//! cargo build --release -p hello && examples/hello-wasm/build.sh
//! cargo bench -p strata-cli --bench autoscale [-- RUNS]
//! ```
//!
//! The peers' figures are their published defaults (ANCHORS.md): Kubernetes' HPA looks every
//! 15 s; Knative's panic mode needs a 6 s window; Knative cold starts are reported at 2-18 s.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SLO_P99_MS: f64 = 150.0;
const WINDOW: Duration = Duration::from_millis(500);
const STEP_SECONDS: u64 = 12;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn p99(latencies: &mut [f64]) -> f64 {
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let index = ((latencies.len() as f64) * 0.99).ceil() as usize;
    latencies[index.saturating_sub(1).min(latencies.len() - 1)]
}

fn client(dev: &Dev, host: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve(host, dev.ingress)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One response: when it came (since the clients started) and its latency.
struct Sample {
    at: Duration,
    latency_ms: f64,
}

/// Closed-loop clients on `/work/50` until `stop`; every response is recorded.
fn clients(
    dev: &Dev,
    count: usize,
    origin: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..count)
        .map(|_| {
            let client = client(dev, "web.dev.localhost");
            let url = dev.url("web.dev.localhost", "/work/50");
            let (stop, samples) = (stop.clone(), samples.clone());
            tokio::spawn(async move {
                let mut failed = 0;
                while !stop.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            let _ = response.bytes().await;
                            samples.lock().unwrap().push(Sample {
                                at: sent.elapsed() + sent.duration_since(origin),
                                latency_ms: sent.elapsed().as_secs_f64() * 1000.0,
                            });
                        }
                        Ok(response) => {
                            let status = response.status();
                            let body = response.text().await.unwrap_or_default();
                            eprintln!("failed request: {status} {}", body.trim());
                            failed += 1;
                        }
                        Err(error) => {
                            eprintln!("failed request: {error}");
                            failed += 1;
                        }
                    }
                }
                failed
            })
        })
        .collect()
}

fn routable(dev: &Dev, service: &str) -> BTreeSet<String> {
    dev.status(service)
        .instances
        .iter()
        .filter(|v| v.is_routable())
        .filter_map(|v| v.status.as_ref().and_then(|s| s.address.clone()))
        .collect()
}

async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One load step; (ms until an added instance served, ms until p99 within the SLO, failed).
async fn load_step(dev: &Dev) -> (f64, f64, usize) {
    until("web at one instance", Duration::from_secs(60), || {
        dev.status("web").service.replicas == 1 && routable(dev, "web").len() == 1
    })
    .await;
    let before = routable(dev, "web");
    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let baseline = clients(dev, 2, origin, stop.clone(), samples.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let step = Instant::now();
    let step_at = step.duration_since(origin);
    let surge = clients(dev, 18, origin, stop.clone(), samples.clone());
    // Which addresses are new: the routing table's, polled while the load runs.
    let mut added: BTreeSet<String> = BTreeSet::new();
    let mut first_added: Option<Duration> = None;
    while step.elapsed() < Duration::from_secs(STEP_SECONDS) {
        let now = routable(dev, "web");
        for address in now.difference(&before) {
            if added.insert(address.clone()) && first_added.is_none() {
                first_added = Some(step.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut failed = 0;
    for task in baseline.into_iter().chain(surge) {
        failed += task.await.unwrap();
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    // An added instance serving: healthy and routed (the ingress sends it traffic from then).
    let served_by_new = first_added.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    // p99 back within the SLO for good: the end of the last 500 ms window over it.
    let end = step_at + Duration::from_secs(STEP_SECONDS);
    let mut last_bad = step_at;
    let mut window_start = step_at;
    while window_start + WINDOW <= end {
        let mut in_window: Vec<f64> = samples
            .iter()
            .filter(|s| s.at >= window_start && s.at < window_start + WINDOW)
            .map(|s| s.latency_ms)
            .collect();
        if !in_window.is_empty() && p99(&mut in_window) > SLO_P99_MS {
            last_bad = window_start + WINDOW;
        }
        window_start += WINDOW;
    }
    let within_slo = (last_bad - step_at).as_secs_f64() * 1000.0;
    (served_by_new, within_slo, failed)
}

/// One cold start of `service` (scaled to zero first): ms from the request to its answer.
async fn cold_start(dev: &Dev, service: &str) -> f64 {
    until(
        &format!("{service} at zero"),
        Duration::from_secs(60),
        || dev.status(service).service.replicas == 0 && routable(dev, service).is_empty(),
    )
    .await;
    let host = format!("{service}.dev.localhost");
    let client = client(dev, &host);
    let sent = Instant::now();
    let response = client.get(dev.url(&host, "/")).send().await.unwrap();
    let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(response.status(), 200, "{service}: {}", dev.log());
    elapsed
}

fn write_spec(dir: &Path, containers: Option<&Path>, wasm: Option<&Path>) -> std::path::PathBuf {
    let hello = hello_bin();
    let mut text = format!(
        r#"
[service.web]
artifact = "{hello}"
[service.web.scale]
min = 1
max = 10
target_concurrency = 4
[service.web.slo]
p99_ms = {SLO_P99_MS}
[service.web.config]
WORK_SLOTS = "4"
[service.web.health]
path = "/healthz"
interval = "200ms"

[service.cold-process]
artifact = "{hello}"
[service.cold-process.scale]
min = 0
max = 1
scale_to_zero_after = "1s"
[service.cold-process.health]
path = "/healthz"
interval = "100ms"
"#,
        hello = hello.display()
    );
    if let Some(image) = containers {
        text.push_str(&format!(
            "\n[service.cold-container]\ndriver = \"container\"\nartifact = \"{}\"\n[service.cold-container.scale]\nmin = 0\nmax = 1\nscale_to_zero_after = \"1s\"\n[service.cold-container.health]\npath = \"/healthz\"\ninterval = \"100ms\"\n",
            image.display()
        ));
    }
    if let Some(component) = wasm {
        text.push_str(&format!(
            "\n[service.cold-wasm]\ndriver = \"wasm\"\nartifact = \"{}\"\n[service.cold-wasm.scale]\nmin = 0\nmax = 1\nscale_to_zero_after = \"1s\"\n",
            component.display()
        ));
    }
    let path = dir.join("autoscale.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::main]
async fn main() {
    let runs = strata_testkit::bench_runs(3);
    let dir = tempfile::tempdir().unwrap();
    // The container image: the example, packaged with --jeos, when this node runs containers.
    let container_image =
        strata_testkit::containers_available("the container cold start").then(|| {
            let images = dir.path().join("images");
            let image = dir.path().join("hello.tar");
            build_jeos(&images, &hello_bin(), &[], "hello:1");
            save_image(&images, "hello:1", &image);
            image
        });
    let wasm =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-wasm/build/hello.wasm");
    let wasm = wasm.exists().then_some(wasm);
    if wasm.is_none() {
        eprintln!(
            "no examples/hello-wasm/build/hello.wasm (examples/hello-wasm/build.sh): no wasm row"
        );
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let dev = Dev::start_with(&data, &["--scale-down-window", "5s"]);
    let spec = write_spec(dir.path(), container_image.as_deref(), wasm.as_deref());
    let deploy = dev.cli(&["deploy", spec.to_str().unwrap(), "--timeout", "120s"]);
    assert!(deploy.status.success(), "deploy: {}", stderr(&deploy));

    let (mut added, mut slo, mut failures) = (Vec::new(), Vec::new(), 0);
    for run in 0..runs {
        let (served, within, failed) = load_step(&dev).await;
        eprintln!("load step {run}: added instance serving after {served:.0} ms, p99 within the SLO after {within:.0} ms, {failed} failed");
        added.push(served);
        slo.push(within);
        failures += failed;
    }
    let mut cold: Vec<(&str, Vec<f64>)> = vec![("process (exec)", Vec::new())];
    if container_image.is_some() {
        cold.push(("container", Vec::new()));
    }
    if wasm.is_some() {
        cold.push(("wasm", Vec::new()));
    }
    for (kind, times) in cold.iter_mut() {
        let service = match *kind {
            "container" => "cold-container",
            "wasm" => "cold-wasm",
            _ => "cold-process",
        };
        for _ in 0..5 {
            times.push(cold_start(&dev, service).await);
        }
        eprintln!("cold start {kind}: {times:?}");
    }

    println!();
    println!("10x load step (2 -> 20 closed-loop clients, 50 ms requests, 4 slots per instance; autoscaled 1..10 at 4 in flight per instance; SLO p99 {SLO_P99_MS} ms), {runs} runs:");
    println!();
    println!("| from the step until | median (ms) | max (ms) | Kubernetes HPA (default) | Knative KPA (default) |");
    println!("|---|---:|---:|---|---|");
    let max_added = max(&added);
    let max_slo = max(&slo);
    println!(
        "| an added instance serves | {:.0} | {:.0} | looks every 15 s, then the pod starts | panic mode needs a 6 s window |",
        median(&mut added),
        max_added
    );
    println!(
        "| p99 back within the SLO for good | {:.0} | {:.0} | - | - |",
        median(&mut slo),
        max_slo
    );
    println!();
    println!("Failed requests during the load steps: {failures}");
    println!();
    println!("Cold start from zero (a request to a service at zero instances, until its answer), 5 runs each:");
    println!();
    println!("| service | median (ms) | max (ms) | Knative (reported) |");
    println!("|---|---:|---:|---|");
    for (kind, mut times) in cold {
        let worst = max(&times);
        println!(
            "| {kind} | {:.0} | {worst:.0} | 2-18 s |",
            median(&mut times)
        );
    }
}
