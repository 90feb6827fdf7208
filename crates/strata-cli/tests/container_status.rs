//! Honest status for container services, end to end: health checks reach the program inside
//! the container, never the node's port forwarder (which accepts even when nothing listens
//! inside). A container that exits just after it listens is never serving; one on the wrong
//! port is named with what it listens on; a rolling update with the default check (a TCP
//! connect) under load fails no request.
//!
//! Needs root, iproute2 and nftables (scripts/deps.sh test). Without them the test says why
//! and skips, unless STRATA_REQUIRE_ROOT=1 (CI), where skipping fails.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn container_health_checks_reach_the_program_not_the_forwarder() {
    let Some((dir, tar)) = misbehave_image_dir("container status e2e test") else {
        return;
    };
    let dev = Dev::start(&dir.path().join("data"));

    // Listens, then exits after 200 ms (nginx on a bad configuration): never serving.
    let brief = container_spec(dir.path(), "brief", &tar, &["exit-after", "200"], "");
    let err = dev.deploy_fails(&brief, &["--timeout", "60s"], 1);
    assert!(!err.contains("is serving"), "{err}");
    assert!(err.contains("crash-looping"), "{err}");
    assert!(err.contains("fatal: invalid configuration"), "{err}");
    dev.delete("brief");

    // Listens on another port than PORT: the forwarder on the node accepts, the program
    // does not; the deploy says what the container listens on.
    let deaf = container_spec(dir.path(), "deaf", &tar, &["wrong-port", "9999"], "");
    let err = dev.deploy_fails(&deaf, &["--timeout", "8s"], 1);
    assert!(err.contains("nothing listens on PORT="), "{err}");
    assert!(err.contains("(listening on: 0.0.0.0:9999)"), "{err}");
    dev.delete("deaf");

    // A rolling update with the default health check, under load: no failed request.
    let one = container_spec(
        dir.path(),
        "web",
        &tar,
        &["serve", "one"],
        "[service.web.scale]\nreplicas = 2\n",
    );
    dev.deploy(&one, &["--timeout", "60s"]);
    let host = "web.dev.localhost";
    let client = dev.client(&[host]);
    let url = dev.url(host, "/");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, ok) = (stop.clone(), ok.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            // Bounded: at most 20,000 requests, and it ends when told to.
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(response) => failures.push(response.status().to_string()),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            failures
        })
    };
    let two = container_spec(
        dir.path(),
        "web",
        &tar,
        &["serve", "two"],
        "[service.web.scale]\nreplicas = 2\n",
    );
    dev.deploy(&two, &["--timeout", "60s"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let failures = load.await.unwrap();
    let served = ok.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failures.len(),
        failures.len() as u64 + served,
        &failures[..failures.len().min(10)]
    );
    assert!(served > 100, "the load barely ran: {served} requests");
    let status = dev.status("web");
    assert_eq!(status.service.desired_release, 2);
    assert!(rolled_out_to(&status, 2));
}
