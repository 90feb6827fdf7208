//! Instances archived when they fail (`[forensics] archive_on = "failure"`), on a real node
//! (`strata dev`): an exec instance that writes canaries then crashes, and a container that
//! writes a canary into its writable layer then is killed for its memory. Each failure's
//! archive is kept with its expiry, verifies offline, and holds the canaries, the instance's
//! log and `failure.json` saying how it ended; a crash loop is archived three times in ten
//! minutes, then its status says why not; the node's outbox is emptied once the control plane
//! keeps each archive.
//!
//! Needs root (containers); skips with the reason elsewhere, unless STRATA_REQUIRE_ROOT=1
//! (CI), where skipping fails.

mod common;

use std::path::Path;
use std::time::Duration;

use common::forensics::{fetched_and_verified, CANARY_FILE, CANARY_LOG};
use common::Dev;
use strata_core::archive::ArchiveRecord;
use strata_testkit::disk::contains;

const CONTAINER_CANARY: &str = "canary-2e7d-left-by-a-container-that-failed";

/// The archives of failures of `service`'s instances, oldest first.
fn failure_archives(dev: &Dev, instance_prefix: &str) -> Vec<ArchiveRecord> {
    let listed = dev.cli(&["archive", "ls", "--json"]);
    assert!(listed.status.success(), "{}", common::stderr(&listed));
    let records: Vec<ArchiveRecord> = serde_json::from_slice(&listed.stdout).unwrap();
    records
        .into_iter()
        .filter(|r| r.subject.starts_with(&format!("failure:{instance_prefix}")))
        .collect()
}

fn failure_note(payload: &[(String, Vec<u8>)]) -> serde_json::Value {
    payload
        .iter()
        .find(|(p, _)| p == "failure.json")
        .map(|(_, b)| serde_json::from_slice(b).unwrap())
        .unwrap_or_else(|| {
            panic!(
                "no failure.json: {:?}",
                payload.iter().map(|(p, _)| p).collect::<Vec<_>>()
            )
        })
}

fn file_of<'p>(payload: &'p [(String, Vec<u8>)], path: &str) -> &'p [u8] {
    payload
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, b)| b.as_slice())
        .unwrap_or_else(|| {
            panic!(
                "no {path}: {:?}",
                payload.iter().map(|(p, _)| p).collect::<Vec<_>>()
            )
        })
}

/// Files the node's outbox holds.
fn outbox(dev: &Dev) -> Vec<String> {
    std::fs::read_dir(dev.data_dir.join("agent").join(".outbox"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn spec(dir: &Path, name: &str, body: String) -> std::path::PathBuf {
    common::write_file(dir, &format!("{name}.toml"), body)
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_instances_are_archived_with_how_they_ended_and_a_crash_loop_only_so_often() {
    if !strata_testkit::containers_available("the failure archive test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(&dir.path().join("dev"));

    // An exec instance that writes its canaries, serves a moment, then exits with code 1.
    let crasher = spec(
        dir.path(),
        "crasher",
        format!(
            r#"
[service.crasher]
artifact = "{}"
args = ["exit-after", "700"]
[service.crasher.config]
SAY = "{CANARY_LOG}"
WRITE_PATH = "notes.txt"
WRITE_TEXT = "{CANARY_FILE}"
[service.crasher.forensics]
archive_on = "failure"
keep = "2h"
"#,
            common::misbehave_bin().display()
        ),
    );
    dev.deploy(&crasher, &["--detach"]);
    dev.eventually(Duration::from_secs(60), "a crash archived", || {
        !failure_archives(&dev, "crasher-").is_empty()
    })
    .await;
    let first = failure_archives(&dev, "crasher-").remove(0);
    assert_eq!(first.expires_at, Some(first.stored_at + 2 * 3_600_000));
    assert_eq!(first.releases, ["dev/crasher#1"]);
    let payload = fetched_and_verified(&dev, &first.id, &dev.data_dir.join("first.strata-archive"));
    let note = failure_note(&payload);
    assert_eq!(note["code"], 1, "{note}");
    assert_eq!(note["oom_killed"], false, "{note}");
    assert_eq!(note["description"], "exited with code 1", "{note}");
    assert_eq!(note["restarts"], 1, "{note}");
    assert_eq!(note["failures_not_archived_before"], 0, "{note}");
    assert!(note["ran_for_ms"].as_u64().unwrap() >= 700, "{note}");
    let log = file_of(&payload, "instance/output.log");
    assert!(contains(log, CANARY_LOG.as_bytes()));
    assert!(contains(log, b"fatal: invalid configuration"));
    assert!(contains(
        file_of(&payload, "instance/work/notes.txt"),
        CANARY_FILE.as_bytes()
    ));

    // It keeps crashing: three archives, then its status says why there are no more.
    const NO_MORE: &str = "not archived (3 archives in 10 minutes already)";
    let mut looping = String::new();
    dev.eventually(Duration::from_secs(90), NO_MORE, || {
        let status = dev.status("crasher");
        let said = status.instances.iter().find(|v| {
            v.status
                .as_ref()
                .is_some_and(|s| s.message.contains(NO_MORE))
        });
        if let Some(view) = said {
            looping = view.instance.id.to_string();
        }
        said.is_some()
    })
    .await;
    dev.eventually(Duration::from_secs(30), "the outbox emptied", || {
        outbox(&dev).is_empty()
    })
    .await;
    let archived = failure_archives(&dev, &looping);
    assert_eq!(archived.len(), 3, "{archived:?}");
    dev.delete("crasher");

    // A container that leaves a canary in its writable layer, then eats memory.
    let image = common::misbehave_image(dir.path());
    let hog = spec(
        dir.path(),
        "hog",
        format!(
            r#"
[service.hog]
driver = "container"
artifact = "{}"
args = ["eat-memory"]
[service.hog.resources]
memory = "32Mi"
[service.hog.config]
WRITE_PATH = "/canary.txt"
WRITE_TEXT = "{CONTAINER_CANARY}"
[service.hog.forensics]
archive_on = "failure"
"#,
            image.display()
        ),
    );
    dev.deploy(&hog, &["--detach"]);
    dev.eventually(Duration::from_secs(90), "an OOM kill archived", || {
        !failure_archives(&dev, "hog-").is_empty()
    })
    .await;
    let record = failure_archives(&dev, "hog-").remove(0);
    assert_eq!(
        record.expires_at,
        Some(record.stored_at + 7 * 24 * 3_600_000)
    );
    let payload = fetched_and_verified(&dev, &record.id, &dev.data_dir.join("hog.strata-archive"));
    let note = failure_note(&payload);
    assert_eq!(note["oom_killed"], true, "{note}");
    assert_eq!(
        note["description"], "killed: memory limit 32Mi reached",
        "{note}"
    );
    assert!(contains(
        file_of(&payload, "instance/work/container/upper/canary.txt"),
        CONTAINER_CANARY.as_bytes()
    ));
    dev.delete("hog");
}
