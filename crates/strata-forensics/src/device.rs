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
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// `major:minor` of the filesystem's device.
    device_number: String,
    /// What part of the filesystem is mounted (`/`: all of it).
    root: String,
    point: String,
    source: String,
}

fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, rest) = line.split_once(" - ")?;
            let mut fields = mount.split_whitespace();
            let device_number = fields.nth(2)?.to_string();
            let root = unescape(fields.next()?);
            let point = unescape(fields.next()?);
            let source = unescape(rest.split_whitespace().nth(1)?);
            Some(Mount {
                device_number,
                root,
                point,
                source,
            })
        })
        .collect()
}

/// The block device `dir` has to itself, from `/proc/self/mountinfo`'s text: `dir` must be
/// the mount point of a whole filesystem (not a bind mount of part of one, nor a
/// subvolume), mounted nowhere else, from a device under `/dev`. Why not, otherwise.
pub fn own_device(mountinfo: &str, dir: &Path) -> Result<PathBuf, String> {
    let all = mounts(mountinfo);
    let dir = dir.to_string_lossy();
    // Mounts stack: the last one at `dir` is what it shows.
    let Some(mount) = all.iter().rev().find(|m| m.point == dir) else {
        return Err("not a filesystem of its own: a device wipe would erase more than the node's data (mount the data directory on its own disk, partition or image)".into());
    };
    if mount.root != "/" {
        return Err(format!(
            "{} of the filesystem on {} is mounted here, not all of it: a device wipe would erase the rest",
            mount.root, mount.source
        ));
    }
    if let Some(other) = all
        .iter()
        .find(|m| m.device_number == mount.device_number && m.point != mount.point)
    {
        return Err(format!(
            "the filesystem on {} is mounted at {} too: a device wipe would erase it there",
            mount.source, other.point
        ));
    }
    if !mount.source.starts_with("/dev/") {
        return Err(format!("mounted from {}, not a block device", mount.source));
    }
    Ok(PathBuf::from(&mount.source))
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

/// Whether `dir` is a filesystem of its own that [`wipe_device_under`] would take; why not.
pub fn check_own_device(dir: &Path) -> Result<PathBuf, ForensicsError> {
    let refuse = |why: String| ForensicsError::io(dir.display(), std::io::Error::other(why));
    let dir = dir
        .canonicalize()
        .map_err(|e| ForensicsError::io(dir.display(), e))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ForensicsError::io("/proc/self/mountinfo", e))?;
    own_device(&mountinfo, &dir).map_err(refuse)
}

/// Unmounts the filesystem at `dir` (its own: [`own_device`]) and overwrites its device:
/// see the module. Refused while anything still holds a file of it open (it is never
/// detached and wiped under a live filesystem).
pub fn wipe_device_under(dir: &Path) -> Result<DeviceWipe, ForensicsError> {
    let device = check_own_device(dir)?;
    let dir = dir
        .canonicalize()
        .map_err(|e| ForensicsError::io(dir.display(), e))?;
    let refuse = |why: String| ForensicsError::io(dir.display(), std::io::Error::other(why));
    // Opened before it is unmounted: a loop device mounted with `-o loop` is let go when
    // its last user is (autoclear), and this keeps it until the wipe is done.
    let mut file = open_device(&device, false)?;
    nix::unistd::sync();
    let mut tries = 0;
    loop {
        match nix::mount::umount(&dir) {
            Ok(()) => break,
            // What held it may be closing: a few seconds, then refused.
            Err(nix::errno::Errno::EBUSY) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(nix::errno::Errno::EBUSY) => {
                let held = holders(&dir);
                return Err(refuse(format!(
                    "still in use after 5 s, so not unmounted ({}): stop what holds files under it, then decommission the node again",
                    match held.is_empty() {
                        true => format!("`fuser -vm {}` says by whom", dir.display()),
                        false => format!("held by {}", held.join("; ")),
                    }
                )));
            }
            Err(e) => return Err(ForensicsError::io(dir.display(), e.into())),
        }
    }
    // No filesystem may hold the device any more (the kernel refuses an exclusive open
    // while one does).
    open_device(&device, true).map_err(|_| {
        refuse(format!(
            "{} is still held by a filesystem after the unmount; not wiped",
            device.display()
        ))
    })?;
    let bytes = zero_device(&mut file, &device)?;
    Ok(DeviceWipe { device, bytes })
}

/// The processes holding something under `dir` (a working directory, a root, an open file,
/// a mapped file), as `/proc` shows them: "pid 42 (strata): fd 7 -> /data/agent.log".
fn holders(dir: &Path) -> Vec<String> {
    let under = |path: &Path| path.starts_with(dir);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<String> = mounts(&mountinfo)
        .into_iter()
        .filter(|m| Path::new(&m.point) != dir && under(Path::new(&m.point)))
        .map(|m| format!("a mount at {} (from {})", m.point, m.source))
        .collect();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return found;
    };
    for process in processes.flatten() {
        let name = process.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let proc = process.path();
        let comm = std::fs::read_to_string(proc.join("comm")).unwrap_or_default();
        let mut held: Vec<String> = Vec::new();
        for link in ["cwd", "root", "exe"] {
            if std::fs::read_link(proc.join(link)).is_ok_and(|p| under(&p)) {
                held.push(link.to_string());
            }
        }
        for fd in std::fs::read_dir(proc.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if under(&target) {
                    held.push(format!(
                        "fd {} -> {}",
                        fd.file_name().to_string_lossy(),
                        target.display()
                    ));
                }
            }
        }
        let maps = std::fs::read_to_string(proc.join("maps")).unwrap_or_default();
        if let Some(mapped) = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| under(Path::new(path)))
        {
            held.push(format!("maps {mapped}"));
        }
        if !held.is_empty() {
            found.push(format!("pid {name} ({}): {}", comm.trim(), held.join(", ")));
        }
    }
    found
}

/// Overwrites `device` (a block device, or an image file) with zeros to its end, synced,
/// dropped from the page cache and read back: its size.
pub fn wipe_device(device: &Path) -> Result<u64, ForensicsError> {
    zero_device(&mut open_device(device, false)?, device)
}

fn open_device(device: &Path, exclusive: bool) -> Result<std::fs::File, ForensicsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if exclusive {
        options.custom_flags(nix::fcntl::OFlag::O_EXCL.bits());
    }
    options
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
    fn only_a_filesystem_of_its_own_is_a_device_to_wipe() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 7:3 / /var/lib/strata rw,relatime shared:40 - ext4 /dev/loop3 rw
99 22 0:55 / /tmp/with\\040space rw - tmpfs tmpfs rw
100 22 8:1 /srv/strata /srv/bound rw - ext4 /dev/sda1 rw
101 22 8:2 / /data/a rw - xfs /dev/sdb rw
102 22 8:2 / /data/b rw - xfs /dev/sdb rw
103 22 7:5 / /stacked rw - ext4 /dev/loop5 rw
104 103 7:6 / /stacked rw - ext4 /dev/loop6 rw
";
        // (case, directory, the device, or what the refusal says)
        let cases = [
            ("its own", "/var/lib/strata", Ok("/dev/loop3")),
            ("stacked: the last mount wins", "/stacked", Ok("/dev/loop6")),
            (
                "not a mount point",
                "/var/lib",
                Err("not a filesystem of its own"),
            ),
            (
                "the root filesystem, mounted part of elsewhere",
                "/",
                Err("mounted at /srv/bound too"),
            ),
            (
                "a bind mount of part of a filesystem",
                "/srv/bound",
                Err("/srv/strata of the filesystem on /dev/sda1"),
            ),
            ("mounted twice", "/data/a", Err("mounted at /data/b too")),
            (
                "not a block device",
                "/tmp/with space",
                Err("mounted from tmpfs"),
            ),
        ];
        for (case, dir, want) in cases {
            let got = own_device(mountinfo, Path::new(dir));
            match (want, got) {
                (Ok(want), Ok(got)) => assert_eq!(got, PathBuf::from(want), "{case}"),
                (Err(want), Err(got)) => assert!(got.contains(want), "{case}: {got}"),
                (want, got) => panic!("{case}: wanted {want:?}, got {got:?}"),
            }
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
