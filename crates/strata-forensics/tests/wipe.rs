//! The wipe on a real filesystem: an ext4 image the test makes and loop-mounts, files holding
//! known canary strings (as instances write them), wiped; then the raw bytes of the image are
//! scanned and hold none of them. Needs root (mounts); skips with the reason elsewhere,
//! unless STRATA_REQUIRE_ROOT=1 (CI), where skipping fails.

use std::path::Path;
use std::process::Command;

use strata_forensics::wipe;

const CANARIES: [&str; 3] = [
    "canary-3f9a-instance-wrote-this",
    "canary-77c1-a-log-line",
    "canary-e02d-in-a-big-file",
];

fn run(what: &str, command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether the test can mount; the reason it cannot otherwise.
fn can_mount() -> Result<(), String> {
    // /proc/self belongs to the process's effective user.
    let euid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    if euid != 0 {
        return Err("not running as root (the test loop-mounts an ext4 image)".into());
    }
    for tool in ["mkfs.ext4", "mount", "umount"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Err(format!("{tool} is not installed (e2fsprogs, mount)"));
        }
    }
    Ok(())
}

/// Unmounts `mountpoint` when dropped, whatever the test did.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn after_a_wipe_the_raw_bytes_of_the_filesystem_hold_none_of_what_was_written() {
    if let Err(why) = can_mount() {
        if std::env::var("STRATA_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
            panic!("STRATA_REQUIRE_ROOT=1 but the wipe test cannot run: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("node-data.img");
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let file = std::fs::File::create(&image).unwrap();
    file.set_len(64 << 20).unwrap();
    drop(file);
    run(
        "mkfs.ext4",
        Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image),
    );
    run(
        "mount",
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint),
    );
    let mounted = Mounted(&mountpoint);
    // What a node's data directory holds: instances' work directories and logs, a big file.
    let work = mountpoint.join("instances/web-1/work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("notes.txt"), format!("{}\n", CANARIES[0])).unwrap();
    std::fs::write(
        mountpoint.join("instances/web-1/stdout.log"),
        format!("hello: {}\n", CANARIES[1]).repeat(1000),
    )
    .unwrap();
    let mut big = vec![b'x'; 8 << 20];
    big[4 << 20..(4 << 20) + CANARIES[2].len()].copy_from_slice(CANARIES[2].as_bytes());
    std::fs::write(work.join("big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("work/notes.txt", mountpoint.join("instances/web-1/latest"))
        .unwrap();
    run("sync", &mut Command::new("sync"));
    // Before: the raw image holds every canary (the scan finds what is there).
    let before = std::fs::read(&image).unwrap();
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
    drop(mounted);

    let after = std::fs::read(&image).unwrap();
    for canary in CANARIES {
        assert!(
            !contains(&after, canary.as_bytes()),
            "{canary} is still in the image's raw bytes"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
