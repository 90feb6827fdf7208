//! Canary benchmark: how fast a bad canary is caught and taken out, and what callers pay
//! meanwhile. Through `strata dev` (release build) with real instances, proxies and traffic:
//! a service of four instances serves release 1 under a steady request loop; release 2 fails
//! 30% of its requests (`FAIL_RATE=0.3`) and is deployed as a canary with a first step of 5%
//! or 25% and the default analysis (30 s steps, 20 requests before a judgement, a 1% error
//! margin). Measured from the callers' side: the first request release 2 failed, the last
//! request that reached release 2 (the rollback complete), and the share of requests that
//! failed in between, with the mesh retrying nothing (callers see the canary's answers) and
//! with its default retry (a canary's 5xx to a GET is sent again to the stable release).
//!
//!   cargo build --release -p hello && cargo bench -p strata-cli --bench canary [-- RUNS]
//!
//! The peers' figures are their documented defaults and examples (no Kubernetes here):
//! Flagger analyses every `interval` (1m in its docs) and rolls back after `threshold` failed
//! checks (5): about 5 minutes; Argo Rollouts' analysis example measures every 5m with
//! `failureLimit: 3`: the fourth failed measurement, about 15 minutes in.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

/// What the request loop saw of one deploy.
#[derive(Default)]
struct Seen {
    /// When (since the loop began) each answer came, whether it failed, and whether release
    /// 2 answered it.
    answers: Vec<(Duration, bool, bool)>,
}

struct Row {
    step: u8,
    retries: u32,
    first_failure_to_rollback_ms: Option<f64>,
    exposed_ms: f64,
    failed: usize,
    requests: usize,
    total_s: f64,
}

fn spec(
    dir: &std::path::Path,
    name: &str,
    step: u8,
    retries: u32,
    fail_rate: f64,
) -> std::path::PathBuf {
    let toml = format!(
        r#"
[service.{name}]
artifact = "{artifact}"
[service.{name}.scale]
replicas = 4
[service.{name}.config]
GREETING = "Hello"
FAIL_RATE = "{fail_rate}"
[service.{name}.health]
path = "/healthz"
interval = "200ms"
timeout = "200ms"
[service.{name}.resources]
cpu = 0.01
[service.{name}.mesh]
retries = {retries}
[service.{name}.rollout]
strategy = "canary"
steps = ["{step}%", "100%"]
"#,
        artifact = hello_bin().display()
    );
    write_file(dir, &format!("{name}-{fail_rate}.toml"), toml)
}

async fn run(dev: &Dev, dir: &std::path::Path, step: u8, retries: u32, round: u32) -> Row {
    let name = format!("canary-{step}-r{retries}-{round}");
    let host = format!("{name}.dev.localhost");
    dev.deploy(&spec(dir, &name, step, retries, 0.0), &[]);
    let client = dev.client(&[&host]);
    let url = dev.url(&host, "/");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let began = Instant::now();
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Seen::default();
            // About 200 requests a second, one after another.
            for _ in 0..200_000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let (failed, canary) = match client.get(&url).send().await {
                    Ok(response) => {
                        let failed = response.status().is_server_error();
                        let body = response.text().await.unwrap_or_default();
                        (failed, body.contains("(release 2)"))
                    }
                    Err(_) => (true, false),
                };
                seen.answers.push((began.elapsed(), failed, canary));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deploy_began = began.elapsed();
    let bad = spec(dir, &name, step, retries, 0.3);
    let output = dev.cli(&["deploy", bad.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the bad canary must be rolled back: {}",
        stderr(&output)
    );
    let total_s = (began.elapsed() - deploy_began).as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = load.await.unwrap();
    dev.delete(&name);
    let to_canary: Vec<&(Duration, bool, bool)> = seen
        .answers
        .iter()
        .filter(|(_, _, canary)| *canary)
        .collect();
    let first = to_canary.first().map(|(at, _, _)| *at).unwrap_or_default();
    let last = to_canary.last().map(|(at, _, _)| *at).unwrap_or_default();
    let first_failure = to_canary
        .iter()
        .find(|(_, failed, _)| *failed)
        .map(|(at, _, _)| *at);
    let exposed: Vec<&(Duration, bool, bool)> = seen
        .answers
        .iter()
        .filter(|(at, _, _)| *at >= first && *at <= last)
        .collect();
    Row {
        step,
        retries,
        first_failure_to_rollback_ms: first_failure
            .map(|at| (last.saturating_sub(at)).as_secs_f64() * 1000.0),
        exposed_ms: (last - first).as_secs_f64() * 1000.0,
        failed: exposed.iter().filter(|(_, failed, _)| *failed).count(),
        requests: exposed.len(),
        total_s,
    }
}

fn main() {
    let runs: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let dev = Dev::start(&dir.path().join("data"));
        let mut rows = Vec::new();
        for round in 0..runs {
            for (step, retries) in [(5, 0), (25, 0), (5, 1), (25, 1)] {
                let row = run(&dev, dir.path(), step, retries, round).await;
                eprintln!(
                    "run {round}: step {step}%, retries {retries}: exposed {:.0} ms, {} of {} failed",
                    row.exposed_ms, row.failed, row.requests
                );
                rows.push(row);
            }
        }
        println!(
            "| first step | mesh retries | first failed request -> last request to the canary (median) | canary exposed (median) | failed requests (of those meanwhile) | deploy -> rolled back (median) |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        for (step, retries) in [(5u8, 0u32), (25, 0), (5, 1), (25, 1)] {
            let of: Vec<&Row> = rows
                .iter()
                .filter(|r| r.step == step && r.retries == retries)
                .collect();
            let median = |mut values: Vec<f64>| {
                values.sort_by(f64::total_cmp);
                values.get(values.len() / 2).copied()
            };
            let detect = median(
                of.iter()
                    .filter_map(|r| r.first_failure_to_rollback_ms)
                    .collect(),
            );
            let exposed = median(of.iter().map(|r| r.exposed_ms).collect()).unwrap_or(0.0);
            let total = median(of.iter().map(|r| r.total_s).collect()).unwrap_or(0.0);
            let failed: usize = of.iter().map(|r| r.failed).sum();
            let requests: usize = of.iter().map(|r| r.requests).sum();
            println!(
                "| {step}% | {retries} | {} | {exposed:.0} ms | {failed} of {requests} ({:.2}%) | {total:.1} s |",
                detect.map_or("none failed (retried)".to_string(), |ms| format!("{ms:.0} ms")),
                failed as f64 * 100.0 / requests.max(1) as f64
            );
        }
        println!(
            "| Flagger (docs: interval 1m, threshold 5) | - | about 5 min | about 5 min | the step's share x the error rate, for minutes | - |"
        );
        println!(
            "| Argo Rollouts (docs example: interval 5m, failureLimit 3) | - | about 15 min | about 15 min | the step's share x the error rate, for minutes | - |"
        );
    });
}
