//! Releases end to end: `strata releases` lists a service's history, `strata rollback` goes
//! back to the release that served before with no failed request, says why in the events,
//! and refuses a release that does not exist (exit 2, nothing changed); the history outlives
//! `strata delete`, and a later deploy continues its numbering.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const HOST: &str = "hello.dev.localhost";

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_goes_back_to_the_release_that_served_with_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev_serving_hello(dir.path(), 2, "One");
    let second = hello_spec(dir.path(), 2, "Two, broken");
    let err = stderr(&dev.deploy(&second, &[]));
    assert!(err.contains("release 2 created"), "{err}");
    assert!(rolled_out_to(&dev.status("hello"), 2));

    // Under load, back to release 1.
    let client = dev.client(&[HOST]);
    let url = dev.url(HOST, "/");
    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(client, url, "(release 1)", stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rolled = dev.cli(&["rollback", "hello", "--reason", "release 2 is broken"]);
    let err = stderr(&rolled);
    assert!(rolled.status.success(), "{err}\n{}", dev.log());
    assert!(
        err.contains("rolling back from release 2 to release 1"),
        "{err}"
    );
    assert!(err.contains("release 1 is serving"), "{err}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.unwrap();
    assert!(
        seen.failures.is_empty(),
        "failed requests during the rollback: {:?}\n{}",
        seen.failures,
        dev.log()
    );
    assert!(seen.marked > 0, "release 1 never answered");
    let status = dev.status("hello");
    assert_eq!(status.service.desired_release, 1);
    assert!(rolled_out_to(&status, 1));

    // The history, and why.
    let listed = stdout(&dev.cli(&["releases", "hello"]));
    let row = |number: &str| {
        listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(number))
            .unwrap_or_else(|| panic!("no release {number}: {listed}"))
            .to_string()
    };
    assert!(row("1").contains("running"), "{listed}");
    assert!(row("2").contains("rolled back"), "{listed}");
    assert!(
        row("2").contains("rolled back to release 1 by admin: release 2 is broken"),
        "why: {listed}"
    );
    assert!(row("1").contains("admin"), "who made it: {listed}");
    let json: Vec<strata_core::Release> =
        serde_json::from_slice(&dev.cli(&["releases", "hello", "--json"]).stdout).unwrap();
    assert_eq!(json.iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2]);
    let events = stdout(&dev.cli(&["events", "hello"]));
    assert!(
        events.contains("rolled back from release 2 to release 1: release 2 is broken"),
        "{events}"
    );

    // A release that does not exist: bad input, nothing changed.
    let refused = dev.cli(&["rollback", "hello", "--to", "9"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("has no release 9"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(dev.status("hello").service.desired_release, 1);

    // Deleted, its history stays; deployed again, the numbering goes on.
    dev.delete("hello");
    let listed = stdout(&dev.cli(&["releases", "hello"]));
    assert_eq!(listed.matches("deleted").count(), 2, "{listed}");
    let again = hello_spec(dir.path(), 1, "Three");
    let err = stderr(&dev.deploy(&again, &[]));
    assert!(err.contains("release 3 created"), "{err}");
}

/// `strata deploy --dry-run` and `strata diff` say what would change (a new release and
/// why, configuration key names but never values, scale) and change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_says_what_would_change_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev_serving_hello(dir.path(), 2, "One");
    let changed = hello_spec(dir.path(), 3, "Secret-ish greeting");
    for args in [
        vec!["deploy", changed.to_str().unwrap(), "--dry-run"],
        vec!["diff", changed.to_str().unwrap()],
    ] {
        let output = dev.cli(&args);
        let (out, err) = (stdout(&output), stderr(&output));
        assert!(output.status.success(), "{args:?}: {err}");
        assert!(out.contains("hello:"), "{out}");
        assert!(out.contains("new release 2 (runs 1 now)"), "{out}");
        assert!(
            out.contains("config: ~GREETING (values not shown)"),
            "{out}"
        );
        assert!(out.contains("replicas 2 -> 3"), "{out}");
        assert!(
            !out.contains("Secret-ish") && !err.contains("Secret-ish"),
            "{out}{err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
    }
    let status = dev.status("hello");
    assert_eq!(status.service.desired_release, 1);
    assert_eq!(status.service.replicas, 2);
    // The same spec as running: unchanged.
    let same = hello_spec(dir.path(), 2, "One");
    let out = stdout(&dev.cli(&["diff", same.to_str().unwrap()]));
    assert!(out.contains("  unchanged"), "{out}");
}

/// `strata promote` takes staging's release (its spec as tested) into prod with prod's own
/// configuration and scale, after the soak (refused before it), and prod's release says
/// where it came from.
#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_brings_the_tested_release_with_the_targets_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(&dir.path().join("data"));
    let spec = |name: &str, greeting: &str, more: &str| {
        write_file(
            dir.path(),
            name,
            service_toml("hello", &hello_bin(), greeting, more),
        )
    };
    let staging_one = spec("staging-1.toml", "from staging", "");
    let prod_first = spec("prod.toml", "from prod", "");
    let staging_two = spec(
        "staging-2.toml",
        "from staging, two",
        "[service.hello.resources]\nmemory = \"96Mi\"",
    );
    for (file, env) in [
        (&staging_one, "staging"),
        (&prod_first, "prod"),
        (&staging_two, "staging"),
    ] {
        let output = dev.deploy(file, &["--env", env]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    // prod is protected from here on: promotion still changes it.
    let protect = dev.cli(&["env", "protect", "prod"]);
    assert!(
        stdout(&protect).contains("environment prod: protected"),
        "{}",
        stderr(&protect)
    );
    let listed = stdout(&dev.cli(&["env", "ls"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("prod") && l.contains("yes")),
        "{listed}"
    );
    // The soak (10 min by default) is not over.
    let early = dev.cli(&["promote", "hello", "--from", "staging", "--to", "prod"]);
    assert_eq!(early.status.code(), Some(1), "{}", stderr(&early));
    assert!(
        stderr(&early).contains("less than the 600 s soak"),
        "{}",
        stderr(&early)
    );

    let promoted = dev.cli(&[
        "promote", "hello", "--from", "staging", "--to", "prod", "--soak", "0s",
    ]);
    let err = stderr(&promoted);
    assert!(promoted.status.success(), "{err}\n{}", dev.log());
    assert!(
        err.contains("release 2 of staging promoted to prod as release 2"),
        "{err}"
    );
    assert!(err.contains("release 2 is serving"), "{err}");
    let host = "hello.prod.localhost";
    let body = dev
        .client(&[host])
        .get(dev.url(host, "/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("from prod"), "prod's configuration: {body}");
    let releases: Vec<strata_core::Release> = serde_json::from_slice(
        &dev.cli(&["releases", "hello", "--env", "prod", "--json"])
            .stdout,
    )
    .unwrap();
    let last = releases.last().unwrap();
    assert_eq!(last.spec.resources.memory_bytes, 96 << 20, "staging's spec");
    let origin = last.promoted_from.as_ref().expect("where it came from");
    assert_eq!((origin.env.as_str(), origin.release), ("staging", 2));
    // Promoted again: nothing to do.
    let again = dev.cli(&[
        "promote", "hello", "--from", "staging", "--to", "prod", "--soak", "0s",
    ]);
    assert!(
        stderr(&again).contains("nothing to do"),
        "{}",
        stderr(&again)
    );
}

/// A service with a fixed port on the only node changes by recreating (its replacement
/// cannot start beside it): the deploy says so and ends serving the new release, instead of
/// waiting forever for a port its old instance holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_port_service_on_one_node_is_recreated_and_the_deploy_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(&dir.path().join("data"));
    let port = strata_testkit::free_port();
    let spec = |name: &str, greeting: &str| {
        write_file(
            dir.path(),
            name,
            service_toml("hello", &hello_bin(), greeting, &format!("port = {port}")),
        )
    };
    let first = dev.deploy(&spec("one.toml", "One"), &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = dev.deploy(&spec("two.toml", "Two"), &["--timeout", "60s"]);
    let err = stderr(&second);
    assert!(second.status.success(), "{err}\n{}", dev.log());
    assert!(err.contains("recreating"), "{err}");
    assert!(err.contains("release 2 is serving"), "{err}");
    let status = dev.status("hello");
    assert!(rolled_out_to(&status, 2));
}
