//! Making layers from files on this machine: a deterministic tar writer (the same files give
//! the same bytes, so the same digest), and `build_from_dir`, which makes an image of a
//! directory stacked on base images.
//!
//! Determinism: entries are written sorted by path (component by component), with GNU headers
//! holding only the type, the mode (permission, setuid, setgid and sticky bits), the numeric
//! uid/gid, the size and the mtime; no user or group names, no access or change times. Files
//! with several hard links inside the tree are written once, the later paths (in sorted order)
//! as hard links to the first.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::digest::LayerDigest;
use crate::error::{io_err, ImageError};
use crate::manifest::{now_rfc3339, Image, ImageConfigSpec, Platform};
use crate::reference::Tag;
use crate::store::{ImageStore, ToReference};

/// Who owns the entries of a layer made from files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Owner {
    /// The files' own numeric uid and gid.
    #[default]
    FromFiles,
    /// The same uid and gid for every entry (e.g. 0:0, root, whoever built it).
    Fixed { uid: u32, gid: u32 },
}

/// How a layer is made from files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerOptions {
    pub owner: Owner,
    /// When set, every entry gets this mtime (seconds since the epoch; 0 for reproducible
    /// builds from checkouts, whose mtimes differ). Otherwise the files' own mtimes are kept.
    pub fixed_mtime: Option<u64>,
}

/// What [`ImageStore::build_from_dir`] makes.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Images to stack the new layer on, bottom first (their layers in order, then the new
    /// one on top).
    pub base: Vec<String>,
    /// The run configuration, over the bases' (see [`ImageConfigSpec::over`]).
    pub config: ImageConfigSpec,
    pub tag: Option<Tag>,
    pub layer: LayerOptions,
    /// The image's creation time (RFC 3339); now when unset. Set it for reproducible image
    /// digests (the layer's digest does not depend on it).
    pub created: Option<String>,
}

/// What a build made.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub image: Image,
    /// The new layer (the top one).
    pub layer: LayerDigest,
    /// The size of the new layer's tar.
    pub layer_size: u64,
    /// The number of entries in the new layer.
    pub entries: u64,
}

/// What an entry of a layer made from files is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Dir,
    File {
        source: PathBuf,
        size: u64,
        /// (device, inode) when the file may be linked several times.
        inode: Option<(u64, u64)>,
    },
    Symlink {
        target: OsString,
    },
    HardLink {
        to: PathBuf,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) node: Node,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: u64,
}

/// The entries of a layer to be, by relative path.
#[derive(Clone, Debug, Default)]
pub(crate) struct LayerTree {
    pub(crate) items: BTreeMap<PathBuf, Item>,
    options: LayerOptions,
}

impl LayerTree {
    pub(crate) fn new(options: LayerOptions) -> LayerTree {
        LayerTree {
            items: BTreeMap::new(),
            options,
        }
    }

    /// An item from a file's metadata, with the tree's owner and mtime rules.
    pub(crate) fn item(&self, node: Node, meta: &fs::Metadata) -> Item {
        let (uid, gid) = match self.options.owner {
            Owner::FromFiles => (meta.uid(), meta.gid()),
            Owner::Fixed { uid, gid } => (uid, gid),
        };
        Item {
            node,
            mode: meta.mode() & 0o7777,
            uid,
            gid,
            mtime: self
                .options
                .fixed_mtime
                .unwrap_or_else(|| u64::try_from(meta.mtime()).unwrap_or(0)),
        }
    }

    /// Adds an item, with any missing parent directories (0755, owned by the fixed owner or
    /// root).
    pub(crate) fn insert(&mut self, relative: PathBuf, item: Item) {
        let (uid, gid) = match self.options.owner {
            Owner::FromFiles => (0, 0),
            Owner::Fixed { uid, gid } => (uid, gid),
        };
        let mut parent = relative.parent();
        while let Some(dir) = parent {
            if dir.as_os_str().is_empty() {
                break;
            }
            self.items.entry(dir.to_path_buf()).or_insert(Item {
                node: Node::Dir,
                mode: 0o755,
                uid,
                gid,
                mtime: self.options.fixed_mtime.unwrap_or(0),
            });
            parent = dir.parent();
        }
        self.items.insert(relative, item);
    }

    /// Adds the tree under `dir` (not following symbolic links) at `prefix`; devices, FIFOs
    /// and sockets are refused. At most `max_entries` entries in all.
    pub(crate) fn add_dir(
        &mut self,
        dir: &Path,
        prefix: &Path,
        max_entries: u64,
    ) -> Result<(), ImageError> {
        let mut stack = vec![(dir.to_path_buf(), prefix.to_path_buf())];
        while let Some((host, relative)) = stack.pop() {
            let mut entries: Vec<fs::DirEntry> = fs::read_dir(&host)
                .map_err(io_err("read the directory", &host))?
                .collect::<io::Result<_>>()
                .map_err(io_err("read the directory", &host))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let rel = relative.join(entry.file_name());
                let meta = fs::symlink_metadata(&path).map_err(io_err("inspect", &path))?;
                let kind = meta.file_type();
                let node = if kind.is_dir() {
                    stack.push((path.clone(), rel.clone()));
                    Node::Dir
                } else if kind.is_file() {
                    Node::File {
                        source: path.clone(),
                        size: meta.len(),
                        inode: (meta.nlink() > 1).then(|| (meta.dev(), meta.ino())),
                    }
                } else if kind.is_symlink() {
                    Node::Symlink {
                        target: fs::read_link(&path)
                            .map_err(io_err("read the symbolic link", &path))?
                            .into_os_string(),
                    }
                } else {
                    return Err(ImageError::Build {
                        path,
                        reason: "it is a device, a FIFO or a socket; a layer holds files, \
                                 directories and links only (the runtime provides /dev)"
                            .into(),
                    });
                };
                let item = self.item(node, &meta);
                self.insert(rel, item);
                if self.items.len() as u64 > max_entries {
                    return Err(ImageError::Build {
                        path: dir.to_path_buf(),
                        reason: format!(
                            "it has more than {max_entries} entries (the store's max_entries)"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Turns the second and later paths (in sorted order) of a multiply-linked file into hard
    /// links to the first.
    pub(crate) fn link_duplicates(&mut self) {
        let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for (path, item) in self.items.iter_mut() {
            if let Node::File {
                inode: Some(inode), ..
            } = &item.node
            {
                match first.get(inode) {
                    Some(to) => item.node = Node::HardLink { to: to.clone() },
                    None => {
                        first.insert(*inode, path.clone());
                    }
                }
            }
        }
    }

    /// Writes the tree as a tar.
    pub(crate) fn write_tar<W: Write>(&self, writer: W) -> Result<(W, u64), ImageError> {
        let mut tar = tar::Builder::new(writer);
        let mut entries = 0u64;
        for (path, item) in &self.items {
            let mut header = tar::Header::new_gnu();
            header.set_mode(item.mode);
            header.set_uid(u64::from(item.uid));
            header.set_gid(u64::from(item.gid));
            header.set_mtime(item.mtime);
            header.set_size(0);
            let fail = |e: io::Error| ImageError::Build {
                path: path.clone(),
                reason: format!("writing it into the layer failed: {e}"),
            };
            match &item.node {
                Node::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    let mut name = path.clone().into_os_string();
                    name.push("/");
                    tar.append_data(&mut header, name, io::empty())
                        .map_err(fail)?;
                }
                Node::File { source, size, .. } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(*size);
                    let file = File::open(source).map_err(io_err("open", source))?;
                    let reader = ExactReader {
                        inner: BufReader::new(file).take(*size),
                        remaining: *size,
                        path: source,
                    };
                    tar.append_data(&mut header, path, reader).map_err(fail)?;
                }
                Node::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    tar.append_link(&mut header, path, Path::new(target))
                        .map_err(fail)?;
                }
                Node::HardLink { to } => {
                    header.set_entry_type(tar::EntryType::Link);
                    tar.append_link(&mut header, path, to).map_err(fail)?;
                }
            }
            entries += 1;
        }
        let writer = tar.into_inner().map_err(|e| ImageError::Build {
            path: PathBuf::from("(layer)"),
            reason: format!("finishing the tar failed: {e}"),
        })?;
        Ok((writer, entries))
    }
}

/// Reads exactly `remaining` bytes, or fails: a file that shrinks while it is archived would
/// otherwise make a corrupt tar (the header already says its size).
struct ExactReader<'a, R> {
    inner: R,
    remaining: u64,
    path: &'a Path,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} shrank while it was being archived; build again",
                    self.path.display()
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// `path` made relative to the image's root: `/usr/lib/x` -> `usr/lib/x`; `..` is resolved
/// lexically (never above the root).
pub(crate) fn image_relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl ImageStore {
    /// Stores a layer tree as a blob and returns its digest, size and number of entries.
    pub(crate) fn store_tree(
        &self,
        tree: &LayerTree,
    ) -> Result<(LayerDigest, u64, u64), ImageError> {
        let (temp, writer) = self.new_blob()?;
        let (writer, entries) = tree.write_tar(writer)?;
        let (digest, size) = self.keep_blob(temp, writer)?;
        Ok((digest, size, entries))
    }

    /// Makes an image of a directory: its tree becomes one layer (deterministic, so the same
    /// directory gives the same layer digest), stacked on the layers of `options.base` in
    /// order, with `options.config` over the bases' config. Symbolic links are kept as links;
    /// devices, FIFOs and sockets are refused.
    pub fn build_from_dir(
        &self,
        dir: &Path,
        options: &BuildOptions,
    ) -> Result<BuiltImage, ImageError> {
        let _lock = self.lock(false)?;
        let meta = fs::metadata(dir).map_err(io_err("open", dir))?;
        if !meta.is_dir() {
            return Err(ImageError::Build {
                path: dir.to_path_buf(),
                reason: "it is not a directory".into(),
            });
        }
        let (mut layers, base_config, platform) = self.bases(&options.base)?;
        let mut tree = LayerTree::new(options.layer.clone());
        tree.add_dir(dir, Path::new(""), self.limits().max_entries)?;
        tree.link_duplicates();
        let (layer, layer_size, entries) = self.store_tree(&tree)?;
        layers.push(layer.clone());
        let config = options.config.over(&base_config);
        let manifest = self.manifest_for(
            &layers,
            &config,
            platform,
            Some(options.created.clone().unwrap_or_else(now_rfc3339)),
        )?;
        let tags: Vec<Tag> = options.tag.iter().cloned().collect();
        let image = self.put_manifest_unlocked(&manifest, &tags)?;
        Ok(BuiltImage {
            image,
            layer,
            layer_size,
            entries,
        })
    }

    /// The layers (bottom first), the merged config and the platform of base images.
    pub(crate) fn bases(
        &self,
        bases: &[String],
    ) -> Result<(Vec<LayerDigest>, ImageConfigSpec, Platform), ImageError> {
        let mut layers = Vec::new();
        let mut config = ImageConfigSpec::default();
        let mut platform = None;
        for base in bases {
            let digest = self.resolve(&base.to_reference()?)?;
            let manifest = self.read_manifest(&digest)?;
            layers.extend(manifest.layer_digests());
            config = manifest.config.over(&config);
            platform.get_or_insert(manifest.platform);
        }
        Ok((layers, config, platform.unwrap_or_else(Platform::host)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_relative_paths() {
        assert_eq!(
            image_relative(Path::new("/usr/lib/x")),
            PathBuf::from("usr/lib/x")
        );
        assert_eq!(
            image_relative(Path::new("/bin/../lib/x")),
            PathBuf::from("lib/x")
        );
        assert_eq!(image_relative(Path::new("/../../x")), PathBuf::from("x"));
    }

    #[test]
    fn insert_adds_parents() {
        let mut tree = LayerTree::new(LayerOptions::default());
        tree.insert(
            PathBuf::from("a/b/c"),
            Item {
                node: Node::Symlink { target: "x".into() },
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
        );
        let paths: Vec<_> = tree.items.keys().cloned().collect();
        assert_eq!(
            paths,
            vec![
                PathBuf::from("a"),
                PathBuf::from("a/b"),
                PathBuf::from("a/b/c")
            ]
        );
    }
}
