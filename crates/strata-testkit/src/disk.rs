//! A filesystem of a test's own: an ext4 image file loop-mounted on a directory, so a test
//! can scan the raw bytes of what was written to it (the forensics tests: a wipe leaves none
//! of them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why this machine cannot loop-mount an ext4 image (not root, no mkfs.ext4), if so.
pub fn cannot_loop_mount() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root (the test loop-mounts an ext4 image)".into());
    }
    for tool in ["mkfs.ext4", "mount", "umount"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed (e2fsprogs, mount)"));
        }
    }
    None
}

/// An ext4 image of its own mounted on a directory; unmounted (lazily) when dropped.
pub struct LoopMount {
    pub image: PathBuf,
    pub mountpoint: PathBuf,
}

impl LoopMount {
    /// `mountpoint` (made if missing) on a fresh ext4 image of `size` bytes at `image`.
    pub fn new(image: &Path, mountpoint: &Path, size: u64) -> LoopMount {
        std::fs::create_dir_all(mountpoint).expect("mount point");
        std::fs::File::create(image)
            .and_then(|file| file.set_len(size))
            .expect("image file");
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(mountpoint));
        LoopMount {
            image: image.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
        }
    }

    /// The image's bytes as the device holds them (after a `sync`).
    pub fn raw_bytes(&self) -> Vec<u8> {
        run(&mut Command::new("sync"));
        std::fs::read(&self.image).expect("image")
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}

/// Whether `needle` is somewhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
