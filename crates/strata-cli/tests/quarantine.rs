//! Quarantining instances on a real node (`strata dev`): an exec instance and a container,
//! each having written canary strings (the container into its writable layer). `strata instance quarantine` takes each out of
//! routing (no request to the service fails), freezes it, archives it and stops it; the
//! service gets a replacement. The archive verifies offline and holds the canaries, the
//! frozen processes with their memory maps and connections, and how they were frozen.
//!
//! A node whose agent stops between learning of a quarantine and archiving (a kill -9 of
//! `strata dev` within the drain delay) archives the instance once it is back, as it re-adopts
//! it: the evidence is not lost to the restart.
//!
//! The first test needs root (containers); it skips with the reason elsewhere, unless
//! STRATA_REQUIRE_ROOT=1 (CI), where skipping fails.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::forensics::{canary_spec, fetched_and_verified, replaced, CANARY_FILE, CANARY_LOG};
use common::Dev;
use strata_testkit::disk::contains;

const CONTAINER_CANARY: &str = "canary-61f0-in-a-writable-layer";

/// Quarantines one routable instance of `service` while requests to it run through the
/// node's ingress: none may fail. The archive, verified offline; its payload.
async fn quarantine_one(
    dev: &Dev,
    service: &str,
    host: &'static str,
    frozen_by: &[&str],
) -> Vec<(String, Vec<u8>)> {
    let before = dev.status(service);
    let suspect = before
        .instances
        .iter()
        .find(|v| v.is_routable())
        .expect("a routable instance")
        .instance
        .id
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let load = common::request_loop(dev.client(&[host]), dev.url(host, "/"), "", stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let output = dev.cli(&["instance", "quarantine", &suspect, "--timeout", "60s"]);
    let said = common::stderr(&output);
    assert!(output.status.success(), "{said}\n{}", dev.log());
    assert!(
        said.contains("out of routing") && said.contains("kept"),
        "{said}"
    );
    // The service is whole again: a replacement serves, the suspect is gone.
    replaced(dev, service, &suspect).await;
    stop.store(true, Ordering::SeqCst);
    let seen = load.await.unwrap();
    assert!(
        seen.failures.is_empty(),
        "{service}: failed requests: {:?}",
        seen.failures
    );
    assert!(seen.ok > 20, "{} requests", seen.ok);
    // Its archive: kept, verified offline against the CA.
    let listed = dev.cli(&["archive", "ls", "--json"]);
    let records: Vec<strata_core::archive::ArchiveRecord> =
        serde_json::from_slice(&listed.stdout).unwrap();
    let subject = format!("instance:{suspect}");
    let record = records
        .iter()
        .find(|r| r.subject == subject)
        .unwrap_or_else(|| panic!("no archive of {suspect}: {records:?}"));
    let file = dev.data_dir.join(format!("{suspect}.strata-archive"));
    let payload = fetched_and_verified(dev, &record.id, &file);
    let named = |pattern: &dyn Fn(&str) -> bool| payload.iter().any(|(p, _)| pattern(p));
    assert!(named(&|p| p.starts_with("proc/") && p.ends_with("/maps")));
    assert!(named(&|p| p.starts_with("net/") && p.ends_with("/tcp")));
    assert!(named(&|p| p == "instance/output.log"));
    assert!(
        !named(&|p| p.contains("environ")),
        "an environment was archived"
    );
    let note = payload
        .iter()
        .find(|(p, _)| p == "quarantine.json")
        .map(|(_, b)| serde_json::from_slice::<serde_json::Value>(b).unwrap())
        .expect("quarantine.json");
    assert_eq!(note["instance"], suspect.as_str());
    let how = note["frozen_by"].as_str().unwrap();
    assert!(frozen_by.iter().any(|f| how.starts_with(f)), "{note}");
    assert!(!note["processes"].as_array().unwrap().is_empty(), "{note}");
    payload
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantined_instance_is_frozen_archived_and_replaced() {
    if !strata_testkit::containers_available("the quarantine test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(&dir.path().join("dev"));
    // An exec instance: by the cgroup freezer when sandboxed, else SIGSTOP.
    dev.deploy(&canary_spec(dir.path(), "keeper"), &[]);
    let payload = quarantine_one(
        &dev,
        "keeper",
        "keeper.dev.localhost",
        &["cgroup freezer", "SIGSTOP"],
    )
    .await;
    let holds = |needle: &str| {
        payload
            .iter()
            .any(|(_, bytes)| contains(bytes, needle.as_bytes()))
    };
    assert!(holds(CANARY_LOG) && holds(CANARY_FILE));
    assert!(payload.iter().any(|(p, _)| p == "instance/work/notes.txt"));

    // A container: what it wrote is in its writable layer.
    let image = common::misbehave_image(dir.path());
    let spec = common::write_file(
        dir.path(),
        "vault.toml",
        format!(
            r#"
[service.vault]
driver = "container"
artifact = "{}"
args = ["write-file", "/canary.txt", "{CONTAINER_CANARY}"]
[service.vault.scale]
replicas = 2
[service.vault.health]
path = "/"
interval = "200ms"
"#,
            image.display()
        ),
    );
    dev.deploy(&spec, &[]);
    let payload = quarantine_one(&dev, "vault", "vault.dev.localhost", &["cgroup freezer"]).await;
    let layer = payload
        .iter()
        .find(|(p, _)| p == "instance/work/container/upper/canary.txt")
        .unwrap_or_else(|| {
            panic!(
                "no writable layer: {:?}",
                payload.iter().map(|(p, _)| p).collect::<Vec<_>>()
            )
        });
    assert!(contains(&layer.1, CONTAINER_CANARY.as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantine_cut_short_by_an_agent_restart_is_archived_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("dev");
    let mut dev = Dev::start(&data_dir);
    dev.deploy(&canary_spec(dir.path(), "keeper"), &[]);
    let status = dev.status("keeper");
    let view = status
        .instances
        .iter()
        .find(|v| v.is_routable())
        .expect("a routable instance");
    let suspect = view.instance.id.to_string();
    let pid = view.status.as_ref().and_then(|s| s.pid).expect("its pid");
    let output = dev.cli(&["instance", "quarantine", &suspect, "--detach"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    // Within the drain delay (500 ms) the node waits before it freezes and archives.
    dev.kill9();
    assert!(common::alive(pid), "the instance outlives its agent");
    let records = |dev: &Dev| -> Vec<strata_core::archive::ArchiveRecord> {
        serde_json::from_slice(&dev.cli(&["archive", "ls", "--json"]).stdout).unwrap_or_default()
    };

    let restarted_at = strata_core::now_millis();
    let dev = Dev::start(&data_dir);
    let subject = format!("instance:{suspect}");
    dev.eventually(Duration::from_secs(30), "the quarantine's archive", || {
        records(&dev).iter().any(|r| r.subject == subject)
    })
    .await;
    replaced(&dev, "keeper", &suspect).await;
    let record = records(&dev)
        .into_iter()
        .find(|r| r.subject == subject)
        .unwrap();
    assert!(
        record.made_at >= restarted_at,
        "archived before the kill: this run shows nothing ({record:?})"
    );
    let file = dir.path().join("suspect.strata-archive");
    let payload = fetched_and_verified(&dev, &record.id, &file);
    assert!(payload
        .iter()
        .any(|(_, bytes)| contains(bytes, CANARY_LOG.as_bytes())));
    assert!(payload.iter().any(|(p, _)| p == "quarantine.json"));
}
