//! The wipe on a real filesystem: an ext4 image the test makes and loop-mounts, files holding
//! known canary strings (as instances write them), wiped; then the raw bytes of the image are
//! scanned and hold none of them. Needs root (mounts); skips with the reason elsewhere,
//! unless STRATA_REQUIRE_ROOT=1 (CI), where skipping fails.

use strata_forensics::{wipe, wipe_device_under};
use strata_testkit::disk::{cannot_loop_mount, contains, LoopMount};

const CANARIES: [&str; 3] = [
    "canary-3f9a-instance-wrote-this",
    "canary-77c1-a-log-line",
    "canary-e02d-in-a-big-file",
];

/// Whether the test runs here: it skips (saying why) where it cannot mount, unless
/// STRATA_REQUIRE_ROOT=1 (CI), where it fails.
fn can_run(test: &str) -> bool {
    let Some(why) = cannot_loop_mount() else {
        return true;
    };
    if std::env::var("STRATA_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
        panic!("STRATA_REQUIRE_ROOT=1 but {test} cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
    false
}

/// What a node's data directory holds, written under `root`: instances' work directories
/// and logs, a big file, a link.
fn write_node_data(root: &std::path::Path) {
    let work = root.join("instances/web-1/work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("notes.txt"), format!("{}\n", CANARIES[0])).unwrap();
    std::fs::write(
        root.join("instances/web-1/stdout.log"),
        format!("hello: {}\n", CANARIES[1]).repeat(1000),
    )
    .unwrap();
    let mut big = vec![b'x'; 8 << 20];
    big[4 << 20..(4 << 20) + CANARIES[2].len()].copy_from_slice(CANARIES[2].as_bytes());
    std::fs::write(work.join("big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("work/notes.txt", root.join("instances/web-1/latest")).unwrap();
}

#[test]
fn after_a_wipe_the_raw_bytes_of_the_filesystem_hold_none_of_what_was_written() {
    if !can_run("the wipe test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopMount::new(
        &dir.path().join("node-data.img"),
        &dir.path().join("mnt"),
        64 << 20,
    );
    let mountpoint = disk.mountpoint.clone();
    write_node_data(&mountpoint);
    // Before: the raw image holds every canary (the scan finds what is there).
    let before = disk.raw_bytes();
    for canary in CANARIES {
        assert!(contains(&before, canary.as_bytes()), "{canary} not written");
    }

    let report = wipe(&mountpoint).unwrap();
    assert_eq!(report.files, 3);
    assert_eq!(
        report.bytes,
        (8 << 20) + 1000 * (CANARIES[1].len() as u64 + 8) + CANARIES[0].len() as u64 + 1
    );
    let left: Vec<_> = std::fs::read_dir(&mountpoint)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|name| name != "lost+found")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let image = disk.image.clone();
    drop(disk);

    let after = std::fs::read(&image).unwrap();
    for canary in CANARIES {
        assert!(
            !contains(&after, canary.as_bytes()),
            "{canary} is still in the image's raw bytes"
        );
    }
}

#[test]
fn a_device_wipe_leaves_every_byte_of_the_device_zero() {
    if !can_run("the device wipe test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopMount::new(
        &dir.path().join("node-data.img"),
        &dir.path().join("mnt"),
        32 << 20,
    );
    write_node_data(&disk.mountpoint);
    wipe(&disk.mountpoint).unwrap();
    let device = wipe_device_under(&disk.mountpoint).unwrap();
    assert!(
        device.device.to_string_lossy().starts_with("/dev/loop"),
        "{device:?}"
    );
    assert_eq!(device.bytes, 32 << 20);
    let image = disk.image.clone();
    drop(disk);
    // The journal, the free blocks, the directories' names: all zero now.
    let after = std::fs::read(&image).unwrap();
    assert!(after.iter().all(|b| *b == 0), "a non-zero byte is left");
}
