//! Unpacking a layer's tar into a directory, safely: this is a security boundary, since a layer
//! may come from anywhere, and its unpacked tree becomes a read-only lower directory of every
//! instance's overlayfs root.
//!
//! The entries are read one by one with the `tar` crate (never `Archive::unpack`), and an entry
//! is refused, naming it, when:
//!
//! - its path is absolute, has a `..` component or a NUL byte;
//! - it would be written through a symbolic link: every parent directory is checked on disk
//!   (`symlink_metadata`, which does not follow links) to be a real directory under the root,
//!   and missing parents are created one at a time, never following anything;
//! - it is a symbolic link whose *relative* target climbs above the layer's root when resolved
//!   from the link's own directory (`a/b -> ../../x`). Absolute targets (`/usr/lib/x`) are
//!   allowed: at run time they resolve inside the container's root, and nothing here ever
//!   follows a link;
//! - it is a hard link whose target is absolute, has `..`, or is not a regular file unpacked
//!   earlier from this same layer;
//! - it is a character or block device, a FIFO, a GNU sparse file or an unknown type;
//! - it replaces a directory of this layer with something else;
//! - the archive crosses a limit of [`UnpackLimits`] (checked from the headers, before the
//!   entry's data is written): the total of the entry sizes, the number of entries, the length
//!   of a path.
//!
//! Modes (setuid and setgid included) and modification times are kept. Ownership: as root, every
//! entry is chowned to the numeric uid/gid of the archive (before the mode is set, since chown
//! clears setuid); as another user, ownership is left as is. For a user namespace's layers
//! ([`crate::IdShift`]) every owner is moved into its host range, and the directories the
//! archive does not describe belong to the range's root; an owner past the range is refused.
//!
//! OCI whiteouts: `dir/.wh.NAME` becomes an overlayfs whiteout for `dir/NAME` (a 0:0 character
//! device), and `dir/.wh..wh..opq` makes `dir` opaque (the `trusted.overlay.opaque` xattr set to
//! `y`). Both need root; unpacking such a layer as another user is refused with a message that
//! says so. A whiteout for a name that this same layer also provides is ignored (the layer's own
//! file wins, as the OCI spec says); other `.wh..wh.*` entries (AUFS metadata) are skipped.
//!
//! The caller unpacks into a fresh temporary directory and removes it on any error, so a refused
//! layer leaves nothing behind (see `ImageStore::unpack`).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use tar::EntryType;

use crate::error::{io_err, ImageError};
use crate::ids::IdShift;
use crate::limits::{display_path, LimitCounter, UnpackLimits};

/// The prefix of an OCI whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of the OCI opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// The xattr that makes an overlayfs directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What an unpack did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
}

/// Splits an archive path into its components, refusing absolute paths, `..` and NUL bytes.
/// Empty and `.` components are dropped (`./a//b/` is `a/b`).
pub(crate) fn split_relative(raw: &[u8]) -> Result<Vec<&OsStr>, String> {
    if raw.contains(&0) {
        return Err("the path has a NUL byte".into());
    }
    if raw.starts_with(b"/") {
        return Err(
            "the path is absolute; paths in a layer are relative to the image's root".into(),
        );
    }
    let mut components = Vec::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                return Err(
                    "the path has a `..` component, which could climb out of the layer".into(),
                )
            }
            name => components.push(OsStr::from_bytes(name)),
        }
    }
    Ok(components)
}

/// Unpacks the tar read from `reader` into `root`, an existing empty directory. `what` names the
/// layer in messages. On error `root` may hold a partial tree: the caller removes it.
pub(crate) fn unpack_tar<R: Read>(
    reader: R,
    root: &Path,
    what: &str,
    limits: &UnpackLimits,
    is_root: bool,
    shift: Option<IdShift>,
) -> Result<UnpackStats, ImageError> {
    let mut unpacker = Unpacker {
        root,
        what,
        is_root,
        shift,
        regular_files: HashSet::new(),
        dirs: BTreeMap::new(),
        stats: UnpackStats::default(),
    };
    let mut counter = LimitCounter::new(limits, what);
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| ImageError::CorruptArchive {
        what: what.to_string(),
        position: "before its first entry".into(),
        detail: e.to_string(),
    })?;
    let mut last: Option<String> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::CorruptArchive {
            what: what.to_string(),
            position: match &last {
                Some(name) => format!("after the entry `{name}`"),
                None => "at its first entry".into(),
            },
            detail: e.to_string(),
        })?;
        let name = display_path(&entry.path_bytes());
        counter.count(&entry)?;
        unpacker.entry(&mut entry, &name)?;
        last = Some(name);
    }
    unpacker.finish()?;
    unpacker.stats.entries = counter.entries;
    unpacker.stats.bytes = counter.bytes;
    Ok(unpacker.stats)
}

/// The metadata of an entry, read from its header.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

struct Unpacker<'a> {
    root: &'a Path,
    what: &'a str,
    is_root: bool,
    /// Owners are shifted into this host range (a user namespace's layers), if any.
    shift: Option<IdShift>,
    /// Regular files unpacked so far (relative paths): the only valid hard link targets.
    regular_files: HashSet<PathBuf>,
    /// Directories and their mode and mtime, applied at the end (deepest first) so that a
    /// read-only directory can still be filled and its mtime is not changed by its children.
    dirs: BTreeMap<PathBuf, (u32, u64)>,
    stats: UnpackStats,
}

/// Where an entry goes.
struct At<'a> {
    parents: &'a [&'a OsStr],
    last: &'a OsStr,
    relative: &'a Path,
    /// The entry's path in the archive, for messages.
    name: &'a str,
}

fn file_time(mtime: u64) -> FileTime {
    FileTime::from_unix_time(i64::try_from(mtime).unwrap_or(i64::MAX), 0)
}

/// What was at an entry's path before it.
enum Existing {
    Nothing,
    Directory,
}

impl Unpacker<'_> {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.what.to_string(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn corrupt(&self, entry: &str, detail: impl std::fmt::Display) -> ImageError {
        ImageError::CorruptArchive {
            what: self.what.to_string(),
            position: format!("at the entry `{entry}`"),
            detail: detail.to_string(),
        }
    }

    fn meta(&self, header: &tar::Header, entry: &str) -> Result<Meta, ImageError> {
        let id = |value: io::Result<u64>, which: &str| -> Result<u32, ImageError> {
            let value = value.map_err(|e| self.corrupt(entry, e))?;
            u32::try_from(value).map_err(|_| {
                self.refuse(
                    entry,
                    format!("its {which} {value} does not fit in 32 bits"),
                )
            })
        };
        let (mut uid, mut gid) = (id(header.uid(), "uid")?, id(header.gid(), "gid")?);
        if let Some(shift) = self.shift {
            let host = |value: u32, which: &str| {
                shift.host_id(value).ok_or_else(|| {
                    self.refuse(
                        entry,
                        format!(
                            "its {which} {value} is past the {} ids a container's user namespace \
                             maps; rebuild the image with ids below {}, or run the service with \
                             `userns = false` on a node that allows it (--allow-host-root)",
                            shift.size, shift.size
                        ),
                    )
                })
            };
            uid = host(uid, "uid")?;
            gid = host(gid, "gid")?;
        }
        Ok(Meta {
            mode: header.mode().map_err(|e| self.corrupt(entry, e))? & 0o7777,
            uid,
            gid,
            mtime: header.mtime().map_err(|e| self.corrupt(entry, e))?,
        })
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), ImageError> {
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let components = split_relative(&raw).map_err(|reason| self.refuse(name, reason))?;

        // Whiteouts, and AUFS metadata (`.wh..wh.plnk/...`), which is skipped.
        let count = components.len();
        if components.iter().enumerate().any(|(i, c)| {
            c.as_bytes().starts_with(b".wh..wh.")
                && !(i + 1 == count && c.as_bytes() == WHITEOUT_OPAQUE.as_bytes())
        }) {
            return Ok(());
        }
        if let Some((last, parents)) = components.split_last() {
            let last = last.as_bytes();
            if last == WHITEOUT_OPAQUE.as_bytes() {
                return self.opaque(parents, name);
            }
            if let Some(hidden) = last.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                return self.whiteout(parents, hidden, name);
            }
        }

        let meta = self.meta(entry.header(), name)?;
        let Some((last, parents)) = components.split_last() else {
            // `./`: the layer's root itself.
            if kind != EntryType::Directory {
                return Err(self.refuse(name, "it names the layer's root but is not a directory"));
            }
            self.dirs.insert(PathBuf::new(), (meta.mode, meta.mtime));
            return Ok(());
        };
        let relative: PathBuf = components.iter().collect();
        self.regular_files.remove(&relative);
        let at = At {
            parents,
            last,
            relative: &relative,
            name,
        };
        match kind {
            EntryType::Regular | EntryType::Continuous => self.file(entry, &at, &meta),
            EntryType::Directory => self.directory(&at, &meta),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.symlink(&at, target, &meta)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.hard_link(&at, target)
            }
            EntryType::Char => Err(self.refuse(
                name,
                "it is a character device; device nodes are not allowed in a layer (the \
                 runtime provides /dev)",
            )),
            EntryType::Block => Err(self.refuse(
                name,
                "it is a block device; device nodes are not allowed in a layer (the runtime \
                 provides /dev)",
            )),
            EntryType::Fifo => Err(self.refuse(name, "it is a FIFO; FIFOs are not allowed in a layer")),
            EntryType::GNUSparse => Err(self.refuse(
                name,
                "it is a GNU sparse file, which Strata does not unpack; make the archive \
                 without --sparse",
            )),
            other => Err(self.refuse(
                name,
                format!(
                    "its type ({:?}, byte {:?}) is not a file, directory, symbolic link or hard link",
                    other,
                    other.as_byte() as char
                ),
            )),
        }
    }

    /// Makes sure every directory in `components` exists as a real directory under the root,
    /// creating missing ones; refuses symbolic links and other non-directories on the way.
    fn parents(&self, components: &[&OsStr], name: &str) -> Result<PathBuf, ImageError> {
        let mut path = self.root.to_path_buf();
        let mut shown = PathBuf::new();
        for component in components {
            path.push(component);
            shown.push(component);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_dir() => {}
                Ok(meta) => {
                    let what = if meta.file_type().is_symlink() {
                        "a symbolic link; writing through it could land outside the layer"
                    } else {
                        "not a directory"
                    };
                    return Err(
                        self.refuse(name, format!("its parent `{}` is {what}", shown.display()))
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).map_err(io_err("create the directory", &path))?;
                    self.own_by_root(&path)?;
                }
                Err(e) => return Err(ImageError::io("inspect", &path, e)),
            }
        }
        Ok(path)
    }

    /// Gives a directory the archive did not describe (the layer's root, a missing parent)
    /// to the image's root: host root, or the shifted root of a user namespace's layer.
    fn own_by_root(&self, path: &Path) -> Result<(), ImageError> {
        match self.shift {
            Some(shift) if self.is_root => {
                std::os::unix::fs::lchown(path, Some(shift.base), Some(shift.base))
                    .map_err(io_err("chown", path))
            }
            _ => Ok(()),
        }
    }

    /// Checks, without creating anything, that `components` name an existing regular file
    /// whose parents are all real directories under the root.
    fn existing_regular_file(&self, components: &[&OsStr]) -> Option<PathBuf> {
        let mut path = self.root.to_path_buf();
        let (last, parents) = components.split_last()?;
        for component in parents {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_dir() => {}
                _ => return None,
            }
        }
        path.push(last);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => Some(path),
            _ => None,
        }
    }

    /// Removes what an earlier entry left at `path` (never following a link), unless it is a
    /// directory, which is reported.
    fn clear(&self, path: &Path) -> Result<Existing, ImageError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_dir() => Ok(Existing::Directory),
            Ok(_) => {
                fs::remove_file(path).map_err(io_err("replace", path))?;
                Ok(Existing::Nothing)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Nothing),
            Err(e) => Err(ImageError::io("inspect", path, e)),
        }
    }

    fn replaces_directory(&self, name: &str) -> ImageError {
        self.refuse(
            name,
            "it would replace a directory that an earlier entry of this layer made",
        )
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        at: &At<'_>,
        meta: &Meta,
    ) -> Result<(), ImageError> {
        let path = self.parents(at.parents, at.name)?.join(at.last);
        if let Existing::Directory = self.clear(&path)? {
            return Err(self.replaces_directory(at.name));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err("create the file", &path))?;
        io::copy(entry, &mut file).map_err(|e| self.corrupt(at.name, e))?;
        if self.is_root {
            std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
                .map_err(io_err("chown", &path))?;
        }
        file.set_permissions(Permissions::from_mode(meta.mode))
            .map_err(io_err("set the mode of", &path))?;
        let time = file_time(meta.mtime);
        filetime::set_file_handle_times(&file, Some(time), Some(time))
            .map_err(io_err("set the times of", &path))?;
        self.regular_files.insert(at.relative.to_path_buf());
        Ok(())
    }

    fn directory(&mut self, at: &At<'_>, meta: &Meta) -> Result<(), ImageError> {
        let path = self.parents(at.parents, at.name)?.join(at.last);
        if let Existing::Nothing = self.clear(&path)? {
            fs::create_dir(&path).map_err(io_err("create the directory", &path))?;
        }
        if self.is_root {
            std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                .map_err(io_err("chown", &path))?;
        }
        self.dirs
            .insert(at.relative.to_path_buf(), (meta.mode, meta.mtime));
        Ok(())
    }

    fn symlink(
        &mut self,
        at: &At<'_>,
        target: Option<Vec<u8>>,
        meta: &Meta,
    ) -> Result<(), ImageError> {
        let name = at.name;
        let target = match target {
            Some(target) if !target.is_empty() => target,
            _ => return Err(self.refuse(name, "it is a symbolic link without a target")),
        };
        if target.contains(&0) {
            return Err(self.refuse(name, "its link target has a NUL byte"));
        }
        if !target.starts_with(b"/") {
            // Resolve the relative target from the link's directory, lexically.
            let mut depth = at.parents.len();
            for component in target.split(|&b| b == b'/') {
                match component {
                    b"" | b"." => {}
                    b".." => {
                        if depth == 0 {
                            return Err(self.refuse(
                                name,
                                format!(
                                    "it is a symbolic link to `{}`, which climbs above the \
                                     layer's root (absolute targets are fine: they resolve \
                                     inside the container)",
                                    display_path(&target)
                                ),
                            ));
                        }
                        depth -= 1;
                    }
                    _ => depth += 1,
                }
            }
        }
        let path = self.parents(at.parents, name)?.join(at.last);
        if let Existing::Directory = self.clear(&path)? {
            return Err(self.replaces_directory(name));
        }
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
            .map_err(io_err("create the symbolic link", &path))?;
        if self.is_root {
            std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
                .map_err(io_err("chown", &path))?;
        }
        let time = file_time(meta.mtime);
        filetime::set_symlink_file_times(&path, time, time)
            .map_err(io_err("set the times of", &path))
    }

    fn hard_link(&mut self, at: &At<'_>, target: Option<Vec<u8>>) -> Result<(), ImageError> {
        let name = at.name;
        let target = match target {
            Some(target) if !target.is_empty() => target,
            _ => return Err(self.refuse(name, "it is a hard link without a target")),
        };
        let shown = display_path(&target);
        let target_components = split_relative(&target).map_err(|reason| {
            self.refuse(
                name,
                format!("it is a hard link to `{shown}`, and in that target {reason}"),
            )
        })?;
        let target_relative: PathBuf = target_components.iter().collect();
        if target_relative == at.relative {
            return Err(self.refuse(name, "it is a hard link to itself"));
        }
        let source = if self.regular_files.contains(&target_relative) {
            self.existing_regular_file(&target_components)
        } else {
            None
        };
        let Some(source) = source else {
            return Err(self.refuse(
                name,
                format!(
                    "it is a hard link to `{shown}`, which is not a regular file unpacked \
                     earlier from this layer"
                ),
            ));
        };
        let path = self.parents(at.parents, name)?.join(at.last);
        if let Existing::Directory = self.clear(&path)? {
            return Err(self.replaces_directory(name));
        }
        fs::hard_link(&source, &path).map_err(io_err("create the hard link", &path))?;
        self.regular_files.insert(at.relative.to_path_buf());
        Ok(())
    }

    fn whiteout(
        &mut self,
        parents: &[&OsStr],
        hidden: &[u8],
        name: &str,
    ) -> Result<(), ImageError> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.refuse(name, "it is a whiteout that names no file"));
        }
        let path = self.parents(parents, name)?.join(OsStr::from_bytes(hidden));
        if !self.is_root {
            return Err(ImageError::NeedsRoot {
                layer: self.what.to_string(),
                entry: name.to_string(),
                what: "a deleted file: a 0:0 character device",
            });
        }
        match fs::symlink_metadata(&path) {
            // This layer also provides the name: its own content wins.
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("inspect", &path, e)),
        }
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            nix::sys::stat::makedev(0, 0),
        )
        .map_err(|errno| {
            ImageError::io(
                "make the whiteout (a 0:0 character device)",
                &path,
                io::Error::from(errno),
            )
        })?;
        self.stats.whiteouts += 1;
        Ok(())
    }

    fn opaque(&mut self, components: &[&OsStr], name: &str) -> Result<(), ImageError> {
        let dir = self.parents(components, name)?;
        if !self.is_root {
            return Err(ImageError::NeedsRoot {
                layer: self.what.to_string(),
                entry: name.to_string(),
                what: "an opaque directory: the trusted.overlay.opaque xattr",
            });
        }
        xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(|e| {
            ImageError::io(
                "set trusted.overlay.opaque (the filesystem of the image store must support \
                 trusted xattrs) on",
                &dir,
                e,
            )
        })?;
        self.stats.opaque_dirs += 1;
        Ok(())
    }

    /// Applies the directories' modes and times, deepest first; the root gets 0755 unless the
    /// archive said otherwise.
    fn finish(&mut self) -> Result<(), ImageError> {
        self.dirs.entry(PathBuf::new()).or_insert((0o755, 0));
        self.own_by_root(self.root)?;
        let dirs = std::mem::take(&mut self.dirs);
        for (relative, (mode, mtime)) in dirs.iter().rev() {
            let path = self.root.join(relative);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_dir() => {}
                // Cannot happen (a directory is never replaced), but never chmod through a link.
                _ => continue,
            }
            fs::set_permissions(&path, Permissions::from_mode(*mode))
                .map_err(io_err("set the mode of", &path))?;
            if !relative.as_os_str().is_empty() || *mtime != 0 {
                let time = file_time(*mtime);
                filetime::set_symlink_file_times(&path, time, time)
                    .map_err(io_err("set the times of", &path))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_relative_cases() {
        let ok = |raw: &str, want: &[&str]| {
            let got: Vec<String> = split_relative(raw.as_bytes())
                .unwrap()
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            assert_eq!(got, want, "{raw}");
        };
        ok("a/b", &["a", "b"]);
        ok("./a//b/", &["a", "b"]);
        ok("./", &[]);
        ok("a/.../b", &["a", "...", "b"]);
        for bad in ["/etc/passwd", "a/../../b", "..", "a\0b"] {
            assert!(split_relative(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_path_escapes_controls() {
        assert_eq!(display_path(b"a\nb"), "a\\nb");
        assert_eq!(display_path(b"ok/\xff"), "ok/\u{fffd}");
    }
}
