//! Wiping what a node held, once its archive is kept: every regular file overwritten with
//! zeros to its full length and synced to the device, read back to check, then removed, and
//! every directory after its contents; a report of what was wiped.
//!
//! One pass of zeros is what NIST SP 800-88 calls "clear" for magnetic media and for files on
//! a filesystem that overwrites in place (ext4, xfs: file data is not journaled by default).
//! It cannot reach what a copy-on-write filesystem or an SSD's flash translation layer keeps
//! elsewhere: for those, the data directory belongs on its own encrypted volume whose key is
//! destroyed (crypto-erase), which is beyond this function.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::ForensicsError;

/// What a wipe did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WipeReport {
    /// Regular files overwritten, checked and removed.
    pub files: u64,
    /// Their bytes overwritten.
    pub bytes: u64,
    /// Directories, links and other entries removed.
    pub other: u64,
}

const CHUNK: usize = 1 << 20;

/// Wipes everything under `root` (not `root` itself, which is left empty). Links are removed,
/// never followed. Stops at the first file it cannot overwrite, check or remove, naming it.
pub fn wipe(root: &Path) -> Result<WipeReport, ForensicsError> {
    let mut report = WipeReport::default();
    let io = |e| ForensicsError::io(root.display(), e);
    for entry in std::fs::read_dir(root).map_err(io)? {
        let path = entry.map_err(io)?.path();
        wipe_entry(&path, &mut report)?;
    }
    Ok(report)
}

/// Wipes one regular file (overwritten with zeros, synced, read back, removed): its length.
pub fn wipe_file(path: &Path) -> Result<u64, ForensicsError> {
    let bytes = overwrite(path)?;
    std::fs::remove_file(path).map_err(|e| ForensicsError::io(path.display(), e))?;
    Ok(bytes)
}

fn wipe_entry(path: &Path, report: &mut WipeReport) -> Result<(), ForensicsError> {
    let io = |e| ForensicsError::io(path.display(), e);
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            wipe_entry(&entry.map_err(io)?.path(), report)?;
        }
        std::fs::remove_dir(path).map_err(io)?;
        report.other += 1;
    } else if meta.is_file() {
        report.bytes += overwrite(path)?;
        std::fs::remove_file(path).map_err(io)?;
        report.files += 1;
    } else {
        std::fs::remove_file(path).map_err(io)?;
        report.other += 1;
    }
    Ok(())
}

/// Overwrites the file at `path` with zeros to its length, syncs, and reads them back. The
/// file is opened without following a link (one put in its place meanwhile is refused, never
/// followed) and measured once open.
fn overwrite(path: &Path) -> Result<u64, ForensicsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| ForensicsError::io(path.display(), e);
    let mut file = OpenOptions::new()
        .write(true)
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    zero_fill(&mut file, len).map_err(io)?;
    check_zeroed(&mut file, len).map_err(|e| match e {
        Some(at) => ForensicsError::FileChanged {
            path: path.display().to_string(),
            field: "wiped bytes",
            expected: "zeros".into(),
            found: format!("a non-zero byte at offset {at}"),
        },
        None => ForensicsError::io(path.display(), std::io::Error::other("reading back")),
    })?;
    Ok(len)
}

/// Writes `len` zeros from the start of `file` and syncs them to its device.
pub(crate) fn zero_fill(file: &mut File, len: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let zeros = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// `Err(Some(offset))` of the first byte that is not zero; `Err(None)` if it cannot read.
pub(crate) fn check_zeroed(file: &mut File, len: u64) -> Result<(), Option<u64>> {
    file.seek(SeekFrom::Start(0)).map_err(|_| None)?;
    let mut buffer = vec![0u8; CHUNK];
    let zeros = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < len {
        let n = file.read(&mut buffer).map_err(|_| None)?;
        if n == 0 {
            break;
        }
        // Compared as a whole (memcmp); searched byte by byte only when it differs.
        if buffer[..n] != zeros[..n] {
            let at = buffer[..n].iter().position(|b| *b != 0).unwrap_or(0);
            return Err(Some(offset + at as u64));
        }
        offset += n as u64;
    }
    Ok(())
}
