//! File-system helpers of the store: atomic writes, removing trees (never following links)
//! and counting what they took, and listing directories that may not exist.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::TMP_PREFIX;
use crate::error::{io_err, ImageError};

/// Removes a directory tree (or file) when dropped, unless disarmed.
pub(crate) struct RemoveOnDrop {
    pub(crate) path: Option<PathBuf>,
    pub(crate) fix_permissions: bool,
}

impl RemoveOnDrop {
    pub(crate) fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = remove_tree(&path, self.fix_permissions);
        }
    }
}

/// Removes a file or a directory tree, never following symbolic links, and returns the bytes
/// its files took (a file with several hard links in the tree counted once). With
/// `fix_permissions` (when not root), directories are first made writable so that read-only
/// ones can be emptied.
pub(crate) fn remove_tree(path: &Path, fix_permissions: bool) -> Result<u64, ImageError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ImageError::io("inspect", path, e)),
    };
    if !meta.is_dir() {
        fs::remove_file(path).map_err(io_err("remove", path))?;
        return Ok(if meta.is_file() { meta.len() } else { 0 });
    }
    let mut bytes = 0u64;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if fix_permissions {
            if let Ok(meta) = fs::symlink_metadata(&dir) {
                let mode = meta.permissions().mode();
                if mode & 0o700 != 0o700 {
                    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700));
                }
            }
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino())))
            {
                bytes += meta.len();
            }
        }
    }
    fs::remove_dir_all(path).map_err(io_err("remove", path))?;
    Ok(bytes)
}

/// The entries of a directory (none when it does not exist).
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, ImageError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<io::Result<Vec<_>>>()
            .map_err(io_err("read the directory", dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ImageError::io("read the directory", dir, e)),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in `dir` (the same filesystem),
/// synced, then renamed over `path`.
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut temp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    temp.write_all(bytes)
        .map_err(io_err("write", temp.path()))?;
    temp.as_file()
        .sync_all()
        .map_err(io_err("sync", temp.path()))?;
    let _ = temp
        .as_file()
        .set_permissions(fs::Permissions::from_mode(0o644));
    temp.persist(path)
        .map_err(|e| ImageError::io("write", path, e.error))?;
    Ok(())
}
