//! Wiping the device under a node's data directory (`strata node decommission --wipe
//! device`), after its files were wiped: where the data directory is a filesystem of its
//! own (a disk, a partition, a loop-mounted image), it is unmounted and the whole device is
//! overwritten with zeros, synced, dropped from the page cache and read back. That reaches
//! what a file wipe cannot: the filesystem's journal, its free blocks, file names in its
//! directories. A data directory on a filesystem it shares is refused (its device holds
//! more than the node's data).

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::ForensicsError;

/// What a device wipe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceWipe {
    /// The device overwritten.
    pub device: PathBuf,
    /// Its size: every byte of it is now zero.
    pub bytes: u64,
    /// The filesystem was still in use (a file held open) and was detached rather than
    /// unmounted: what is written through what was open lands on the zeroed device after.
    pub detached_while_busy: bool,
}

/// The device mounted at `dir` and its filesystem's type, from `/proc/self/mountinfo`'s
/// text (the last mount at `dir` wins: mounts stack). `None`: `dir` is not a mount point.
pub fn device_of(mountinfo: &str, dir: &Path) -> Option<(PathBuf, String)> {
    let dir = dir.to_string_lossy();
    mountinfo.lines().rev().find_map(|line| {
        let (mount, rest) = line.split_once(" - ")?;
        let point = unescape(mount.split_whitespace().nth(4)?);
        let mut rest = rest.split_whitespace();
        let fstype = rest.next()?.to_string();
        let source = unescape(rest.next()?);
        (point == dir).then(|| (PathBuf::from(source), fstype))
    })
}

/// Mountinfo escapes spaces, tabs, newlines and backslashes as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let octal: String = chars.by_ref().take(3).collect();
            if let Ok(byte) = u8::from_str_radix(&octal, 8) {
                out.push(byte as char);
                continue;
            }
            out.push(c);
            out.push_str(&octal);
        } else {
            out.push(c);
        }
    }
    out
}

/// Unmounts the filesystem at `dir` (its own) and overwrites its device: see the module.
pub fn wipe_device_under(dir: &Path) -> Result<DeviceWipe, ForensicsError> {
    let refuse = |why: String| ForensicsError::io(dir.display(), std::io::Error::other(why));
    let dir = dir
        .canonicalize()
        .map_err(|e| ForensicsError::io(dir.display(), e))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ForensicsError::io("/proc/self/mountinfo", e))?;
    let Some((device, _fstype)) = device_of(&mountinfo, &dir) else {
        return Err(refuse(
            "not a filesystem of its own: a device wipe would erase more than the node's data (mount the data directory on its own disk, partition or image)".into(),
        ));
    };
    if !device.starts_with("/dev/") {
        return Err(refuse(format!(
            "mounted from {}, not a block device",
            device.display()
        )));
    }
    // Opened before it is unmounted: a loop device mounted with `-o loop` is let go when
    // its last user is (autoclear), and this keeps it until the wipe is done.
    let mut file = open_device(&device)?;
    nix::unistd::sync();
    let detached_while_busy = match nix::mount::umount(&dir) {
        Ok(()) => false,
        Err(nix::errno::Errno::EBUSY) => {
            nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| ForensicsError::io(dir.display(), e.into()))?;
            true
        }
        Err(e) => return Err(ForensicsError::io(dir.display(), e.into())),
    };
    let bytes = zero_device(&mut file, &device)?;
    Ok(DeviceWipe {
        device,
        bytes,
        detached_while_busy,
    })
}

/// Overwrites `device` (a block device, or an image file) with zeros to its end, synced,
/// dropped from the page cache and read back: its size.
pub fn wipe_device(device: &Path) -> Result<u64, ForensicsError> {
    zero_device(&mut open_device(device)?, device)
}

fn open_device(device: &Path) -> Result<std::fs::File, ForensicsError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(|e| ForensicsError::io(device.display(), e))
}

/// [`wipe_device`] of `file`, opened on `device`.
fn zero_device(file: &mut std::fs::File, device: &Path) -> Result<u64, ForensicsError> {
    let io = |e| ForensicsError::io(device.display(), e);
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    crate::wipe::zero_fill(file, len).map_err(io)?;
    // Read from the device, not from the pages just written.
    nix::fcntl::posix_fadvise(
        file.as_raw_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .map_err(|e| io(e.into()))?;
    crate::wipe::check_zeroed(file, len).map_err(|at| match at {
        Some(at) => ForensicsError::FileChanged {
            path: device.display().to_string(),
            field: "wiped bytes",
            expected: "zeros".into(),
            found: format!("a non-zero byte at offset {at}"),
        },
        None => ForensicsError::io(device.display(), std::io::Error::other("reading back")),
    })?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_of_a_mount_point() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 7:3 / /var/lib/strata rw,relatime shared:40 - ext4 /dev/loop3 rw
99 22 0:55 / /tmp/with\\040space rw - tmpfs tmpfs rw
100 98 7:4 / /var/lib/strata rw - xfs /dev/loop4 rw
";
        /// (case, directory, the device and filesystem type wanted)
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
        let cases: [Case; 4] = [
            ("the root filesystem", "/", Some(("/dev/sda1", "ext4"))),
            (
                "stacked: the last mount wins",
                "/var/lib/strata",
                Some(("/dev/loop4", "xfs")),
            ),
            (
                "escaped spaces",
                "/tmp/with space",
                Some(("tmpfs", "tmpfs")),
            ),
            ("not a mount point", "/var/lib", None),
        ];
        for (case, dir, want) in cases {
            let got = device_of(mountinfo, Path::new(dir));
            let want = want.map(|(d, t)| (PathBuf::from(d), t.to_string()));
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn an_image_is_zero_after_its_wipe() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let chunk = 1 << 20;
        let mut bytes = vec![7u8; 3 * chunk + 123];
        bytes[chunk + 5..chunk + 11].copy_from_slice(b"canary");
        std::fs::write(&image, &bytes).unwrap();
        assert_eq!(wipe_device(&image).unwrap(), bytes.len() as u64);
        let after = std::fs::read(&image).unwrap();
        assert_eq!(after.len(), bytes.len());
        assert!(after.iter().all(|b| *b == 0));
    }

    #[test]
    fn a_directory_on_a_shared_filesystem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = wipe_device_under(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("not a filesystem of its own"),
            "{error}"
        );
    }
}
