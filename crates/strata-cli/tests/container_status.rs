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
use strata_core::DesiredState;

#[tokio::test(flavor = "multi_thread")]
async fn container_health_checks_reach_the_program_not_the_forwarder() {
    if !strata_testkit::containers_available("container status e2e test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = misbehave_image(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let dev = Dev::start(&data);

    // Listens, then exits after 200 ms (nginx on a bad configuration): never serving.
    let brief = container_spec(dir.path(), "brief", &tar, &["exit-after", "200"], "");
    let output = dev.cli(&["deploy", brief.to_str().unwrap(), "--timeout", "60s"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}\n{}", dev.log());
    assert!(!err.contains("is serving"), "{err}");
    assert!(err.contains("crash-looping"), "{err}");
    assert!(err.contains("fatal: invalid configuration"), "{err}");
    let output = dev.cli(&["delete", "brief"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // Listens on another port than PORT: the forwarder on the node accepts, the program
    // does not; the deploy says what the container listens on.
    let deaf = container_spec(dir.path(), "deaf", &tar, &["wrong-port", "9999"], "");
    let output = dev.cli(&["deploy", deaf.to_str().unwrap(), "--timeout", "8s"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}\n{}", dev.log());
    assert!(err.contains("nothing listens on PORT="), "{err}");
    assert!(err.contains("(listening on: 0.0.0.0:9999)"), "{err}");
    let output = dev.cli(&["delete", "deaf"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // A rolling update with the default health check, under load: no failed request.
    let one = container_spec(
        dir.path(),
        "web",
        &tar,
        &["serve", "one"],
        "[service.web.scale]\nreplicas = 2\n",
    );
    let output = dev.cli(&["deploy", one.to_str().unwrap(), "--timeout", "60s"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        stderr(&output),
        dev.log()
    );
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
    let output = dev.cli(&["deploy", two.to_str().unwrap(), "--timeout", "60s"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        stderr(&output),
        dev.log()
    );
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
    assert!(status
        .instances
        .iter()
        .all(|v| v.instance.release == 2 || v.instance.desired == DesiredState::Stopped));
}
