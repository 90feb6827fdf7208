//! Helpers shared by the integration tests: tar archives made entry by entry (including ones
//! the `tar` crate's checked API refuses to write), gzip, and store inspection.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use strata_image::ImageStore;
use tar::{EntryType, Header};

/// Builds a tar archive in memory.
pub struct TarBuilder {
    inner: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            inner: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut header = Self::header(EntryType::Directory, mode, 0);
        self.inner
            .append_data(&mut header, path, std::io::empty())
            .unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.file_owned(path, data, mode, 0, 0, 1_700_000_000)
    }

    pub fn file_owned(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> Self {
        let mut header = Self::header(EntryType::Regular, mode, data.len() as u64);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(mtime);
        self.inner.append_data(&mut header, path, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut header = Self::header(EntryType::Symlink, 0o777, 0);
        self.inner.append_link(&mut header, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut header = Self::header(EntryType::Link, 0o644, 0);
        self.inner.append_link(&mut header, path, target).unwrap();
        self
    }

    /// An entry whose name and link name bytes go into the header as they are (at most 100
    /// bytes each), bypassing the checks of `append_data` (which refuses `..`, for one).
    /// `size` is what the header says; `data` is what follows it.
    pub fn raw(
        mut self,
        path: &[u8],
        kind: EntryType,
        link: Option<&[u8]>,
        data: &[u8],
        size: u64,
    ) -> Self {
        let mut header = Self::header(kind, 0o644, size);
        {
            let old = header.as_old_mut();
            old.name = [0; 100];
            old.name[..path.len()].copy_from_slice(path);
            if let Some(link) = link {
                old.linkname = [0; 100];
                old.linkname[..link.len()].copy_from_slice(link);
            }
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
        }
        header.set_cksum();
        self.inner.append(&header, data).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.inner.into_inner().unwrap()
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Everything in the store's `layers/` directory (it must be empty after a refused unpack).
pub fn layers_dir_entries(store: &ImageStore) -> Vec<String> {
    fs::read_dir(store.root().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every path under `dir`, relative, sorted (directories with a trailing `/`).
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    let mut guard = 0;
    while let Some(relative) = stack.pop() {
        guard += 1;
        assert!(guard < 100_000, "tree too large");
        for entry in fs::read_dir(dir.join(&relative)).unwrap() {
            let entry = entry.unwrap();
            let rel = relative.join(entry.file_name());
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                out.push(format!("{}/", rel.display()));
                stack.push(rel);
            } else {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Merges layer directories (TOP first, as `lower_dirs` gives them) into `target` the way
/// overlayfs shows them: upper entries win, a 0:0 character device hides the name below, an
/// opaque directory hides everything below it. Copies files, links and modes.
pub fn merge_layers(lower_dirs: &[PathBuf], target: &Path) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fs::create_dir_all(target).unwrap();
    // Bottom first; each layer is applied over what is there.
    for layer in lower_dirs.iter().rev() {
        let mut stack = vec![PathBuf::new()];
        let mut guard = 0;
        while let Some(relative) = stack.pop() {
            guard += 1;
            assert!(guard < 100_000, "layer too large");
            let dir = layer.join(&relative);
            let opaque = xattr::get(&dir, "trusted.overlay.opaque")
                .ok()
                .flatten()
                .is_some_and(|v| v == b"y");
            if opaque && !relative.as_os_str().is_empty() {
                let _ = fs::remove_dir_all(target.join(&relative));
                fs::create_dir_all(target.join(&relative)).unwrap();
            }
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let rel = relative.join(entry.file_name());
                let to = target.join(&rel);
                let meta = fs::symlink_metadata(entry.path()).unwrap();
                let kind = meta.file_type();
                let existing = fs::symlink_metadata(&to).ok();
                if kind.is_char_device() && meta.rdev() == 0 {
                    match existing {
                        Some(m) if m.is_dir() => fs::remove_dir_all(&to).unwrap(),
                        Some(_) => fs::remove_file(&to).unwrap(),
                        None => {}
                    }
                    continue;
                }
                if kind.is_dir() {
                    if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                        fs::remove_file(&to).unwrap();
                    }
                    fs::create_dir_all(&to).unwrap();
                    fs::set_permissions(&to, meta.permissions()).unwrap();
                    stack.push(rel);
                    continue;
                }
                match existing {
                    Some(m) if m.is_dir() => fs::remove_dir_all(&to).unwrap(),
                    Some(_) => fs::remove_file(&to).unwrap(),
                    None => {}
                }
                if kind.is_symlink() {
                    std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &to).unwrap();
                } else {
                    fs::copy(entry.path(), &to).unwrap();
                    fs::set_permissions(&to, meta.permissions()).unwrap();
                }
            }
        }
    }
}
