//! Rolling-update benchmark, on `strata dev` (release build): the example service, 2
//! replicas, with the default health check (no `[health]` table: a TCP connect to the program
//! itself) and the default `min_ready` (1 s), under 4 closed-loop clients through the ingress,
//! rolled to a new release RUNS times; as a process (`exec`) and, when the node runs them, as
//! a container (the example packaged with `--jeos`). Counts every request and every failed
//! one (an error or a status other than 200), and times each rollout (`strata deploy` until
//! it says the release serves: new instances available, old ones stopped).
//!
//! ```sh
//! cargo build --release -p hello
//! cargo bench -p strata-cli --bench rollout [-- RUNS]
//! ```
//!
//! No peer runs on this machine (no Kubernetes or Nomad); their behaviour is described from
//! their documentation in docs/benchmarks.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: usize = 4;

fn spec(dir: &Path, driver: &str, artifact: &Path, version: usize) -> PathBuf {
    let path = dir.join(format!("rollout-{driver}-{version}.toml"));
    std::fs::write(
        &path,
        format!(
            "[service.web]\ndriver = \"{driver}\"\nartifact = \"{}\"\n[service.web.scale]\nreplicas = 2\n[service.web.config]\nGREETING = \"Version {version}\"\n",
            artifact.display()
        ),
    )
    .unwrap();
    path
}

/// One driver's runs: (requests, failed, rollout times in ms, first failures).
async fn rollouts(
    dev: &Dev,
    dir: &Path,
    driver: &str,
    artifact: &Path,
    runs: usize,
) -> (u64, u64, Vec<f64>, Vec<String>) {
    let first = dev.cli(&[
        "deploy",
        spec(dir, driver, artifact, 0).to_str().unwrap(),
        "--timeout",
        "120s",
    ]);
    assert!(first.status.success(), "deploy: {}", stderr(&first));
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = dev.client(&["web.dev.localhost"]);
            let url = dev.url("web.dev.localhost", "/");
            let (stop, requests) = (stop.clone(), requests.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    requests.fetch_add(1, Ordering::SeqCst);
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => {
                            let _ = response.bytes().await;
                        }
                        Ok(response) => failures.push(response.status().to_string()),
                        Err(error) => failures.push(error.to_string()),
                    }
                }
                failures
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut times = Vec::new();
    for version in 1..=runs {
        let started = Instant::now();
        let output = dev.cli(&[
            "deploy",
            spec(dir, driver, artifact, version).to_str().unwrap(),
            "--timeout",
            "120s",
        ]);
        assert!(output.status.success(), "deploy: {}", stderr(&output));
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        // Load across the old instances' drain and stop too.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    let output = dev.cli(&["delete", "web"]);
    assert!(output.status.success(), "{}", stderr(&output));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed = failures.len() as u64;
    failures.truncate(5);
    (requests.load(Ordering::SeqCst), failed, times, failures)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let runs = strata_testkit::bench_runs(5);
    let dir = tempfile::tempdir().unwrap();
    let mut drivers: Vec<(&str, PathBuf)> = vec![("exec", hello_bin())];
    if strata_testkit::containers_available("the container rollout") {
        let images = dir.path().join("images");
        let tar = dir.path().join("hello.tar");
        build_jeos(&images, &hello_bin(), &[], "hello:1");
        save_image(&images, "hello:1", &tar);
        drivers.push(("container", tar));
    }
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let dev = Dev::start(&data);
    let mut rows = Vec::new();
    for (driver, artifact) in &drivers {
        let (requests, failed, mut times, examples) =
            rollouts(&dev, dir.path(), driver, artifact, runs).await;
        eprintln!(
            "{driver}: {requests} requests, {failed} failed {examples:?}, rollouts {times:?} ms"
        );
        let max = times.iter().copied().fold(f64::NAN, f64::max);
        rows.push((*driver, requests, failed, median(&mut times), max));
    }
    println!();
    println!("Rolling updates under load ({CLIENTS} closed-loop clients through the ingress, 2 replicas, default health check and min_ready), {runs} rollouts per driver:");
    println!();
    println!("| driver | requests | failed | rollout median (ms) | rollout max (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for (driver, requests, failed, median, max) in rows {
        println!("| {driver} | {requests} | {failed} | {median:.0} | {max:.0} |");
    }
}
