//! Canaries end to end, through `strata dev` with real instances, proxies and traffic: a
//! release that fails 30% of its requests is rolled back by its analysis while the stable
//! release keeps serving (`strata deploy` exits 1 with the numbers), a good one goes through
//! its steps to all the traffic, and `strata rollout status` tells each.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const HOST: &str = "hello.dev.localhost";

/// hello, four instances, deployed as a canary: 25% then 100%, 3 s a step.
fn canary_spec(dir: &std::path::Path, greeting: &str, fail_rate: f64) -> std::path::PathBuf {
    let spec = format!(
        r#"
[service.hello]
artifact = "{artifact}"
[service.hello.scale]
replicas = 4
[service.hello.config]
GREETING = "{greeting}"
FAIL_RATE = "{fail_rate}"
[service.hello.health]
path = "/healthz"
interval = "200ms"
timeout = "200ms"
[service.hello.rollout]
strategy = "canary"
steps = ["25%", "100%"]
step_interval = "3s"
min_requests = 20
"#,
        artifact = hello_bin().display()
    );
    write_file(dir, &format!("hello-{}.toml", greeting.len()), spec)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_canary_is_rolled_back_while_the_stable_serves_and_a_good_one_goes_to_all_traffic(
) {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(&dir.path().join("data"));
    // The first deploy has nothing to compare with: it serves at once.
    let err = stderr(&dev.deploy(&canary_spec(dir.path(), "One", 0.0), &[]));
    assert!(err.contains("release 1 is serving"), "{err}");

    let client = dev.client(&[HOST]);
    let url = dev.url(HOST, "/");
    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(client.clone(), url.clone(), "(release 1)", stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Release 2 fails 30% of its requests: its analysis rolls it back within its first step.
    let started = std::time::Instant::now();
    let err = dev.deploy_fails(&canary_spec(dir.path(), "Two, broken", 0.3), &[], 1);
    let took = started.elapsed();
    assert!(
        err.contains("release 2 created, rolling out beside release 1"),
        "{err}"
    );
    assert!(err.contains("takes 25% of the traffic"), "{err}");
    assert!(err.contains("release 2 was rolled back"), "{err}");
    assert!(
        err.contains("more errors than"),
        "the analysis' numbers: {err}"
    );
    assert!(
        took < Duration::from_secs(20),
        "rolled back in {took:?}: {err}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = dev.status("hello");
    assert_eq!(status.service.desired_release, 1);
    let wanted: Vec<u64> = status
        .instances
        .iter()
        .filter(|v| v.instance.desired == strata_core::DesiredState::Running)
        .map(|v| v.instance.release)
        .collect();
    assert_eq!(wanted, [1, 1, 1, 1], "{wanted:?}");
    let listed = stdout(&dev.cli(&["rollout", "status", "hello"]));
    assert!(
        listed.contains("canary of release 2 beside release 1: rolled back"),
        "{listed}"
    );
    let releases = stdout(&dev.cli(&["releases", "hello"]));
    assert!(
        releases.lines().any(|l| l.trim_start().starts_with('2')
            && l.contains("failed")
            && l.contains("canary analysis failed at 25% of the traffic")),
        "{releases}"
    );
    let events = stdout(&dev.cli(&["events", "hello"]));
    assert!(events.contains("rollout.rolled_back"), "{events}");

    // The stable release kept serving: what failed at the canary was retried on it.
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.unwrap();
    let total = seen.ok + seen.failures.len() as u64;
    assert!(total > 200, "only {total} requests were made");
    assert!(
        (seen.failures.len() as f64) < 0.01 * total as f64,
        "{} of {total} requests failed: {:?}",
        seen.failures.len(),
        &seen.failures[..seen.failures.len().min(5)]
    );

    // A good release goes through its steps to all the traffic, under load.
    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(client, url, "(release 3)", stop.clone());
    let good = dev.deploy(&canary_spec(dir.path(), "Three, good", 0.0), &[]);
    let err = stderr(&good);
    for expected in [
        "release 3 created, rolling out beside release 1",
        "step 1 of 2 (25%): release 3 takes 25% of the traffic",
        "step 1 of 2 (25%) passed",
        "release 3 passed every step and is the desired release",
        "release 3 is serving",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.unwrap();
    assert!(seen.failures.is_empty(), "{:?}", seen.failures);
    assert!(seen.marked > 0, "release 3 never answered");
    let status = dev.status("hello");
    assert_eq!(status.service.desired_release, 3);
    assert!(rolled_out_to(&status, 3));
    let json: strata_core::api::RolloutStatus =
        serde_json::from_slice(&dev.cli(&["rollout", "status", "hello", "--json"]).stdout).unwrap();
    let rollout = json.rollout.unwrap();
    assert_eq!(
        (rollout.release, rollout.phase),
        (3, strata_core::RolloutPhase::Succeeded)
    );

    // Nothing going on: steering it is bad input.
    let refused = dev.cli(&["rollout", "pause", "hello"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("no rollout going on"));

    // A canary of a fixed-port service on this one node cannot run both releases: refused
    // before anything changes (exit 2), saying what to do instead.
    let port = free_port();
    let fixed = |greeting: &str| {
        let toml = service_toml(
            "db",
            &hello_bin(),
            greeting,
            &format!("port = {port}\n[service.db.rollout]\nstrategy = \"canary\""),
        );
        write_file(dir.path(), &format!("db-{}.toml", greeting.len()), toml)
    };
    dev.deploy(&fixed("One"), &[]);
    let err = dev.deploy_fails(&fixed("Two!"), &[], 2);
    assert!(
        err.contains("a canary of a service with a fixed port")
            && err.contains("strategy = \"rolling\""),
        "{err}"
    );
    assert_eq!(
        dev.status("db").service.latest_release,
        1,
        "nothing changed"
    );
}
