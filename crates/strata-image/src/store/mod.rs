//! The image store of a node (or of the CLI's machine): content-addressed layer blobs, their
//! unpacked trees, image manifests and tags, all under one directory (see the crate docs for
//! the layout), plus garbage collection.
//!
//! Every write is atomic: a blob, a manifest or a tag is written to a temporary file in its own
//! directory and renamed; a layer is unpacked into `layers/.tmp-<hex>-<random>` and renamed.
//! Processes sharing a store coordinate with `flock` on `<root>/lock`: every operation holds it
//! shared, `gc` holds it exclusively, so a collection never removes what an import, a build or
//! an unpack in another process is making.

mod files;
mod gc;
mod images;
mod layers;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::digest::{LayerDigest, ManifestDigest};
use crate::error::{io_err, ImageError};
use crate::limits::UnpackLimits;
use crate::reference::{Reference, Tag};

pub use gc::GcReport;
pub(crate) use layers::Compression;

/// Names of temporary files and directories start with this; `gc` removes stale ones.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// A node's image store. Cheap to clone; every method may be called from several threads and
/// processes at once.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
    limits: UnpackLimits,
    is_root: bool,
}

/// What can name an image: `&str` (parsed with [`Reference::parse`]), [`Reference`], [`Tag`]
/// or [`ManifestDigest`].
pub trait ToReference {
    fn to_reference(&self) -> Result<Reference, ImageError>;
}

impl ToReference for str {
    fn to_reference(&self) -> Result<Reference, ImageError> {
        Reference::parse(self)
    }
}

impl ToReference for String {
    fn to_reference(&self) -> Result<Reference, ImageError> {
        Reference::parse(self)
    }
}

impl ToReference for Reference {
    fn to_reference(&self) -> Result<Reference, ImageError> {
        Ok(self.clone())
    }
}

impl ToReference for Tag {
    fn to_reference(&self) -> Result<Reference, ImageError> {
        Ok(Reference::Tag(self.clone()))
    }
}

impl ToReference for ManifestDigest {
    fn to_reference(&self) -> Result<Reference, ImageError> {
        Ok(Reference::Digest(self.clone()))
    }
}

/// What [`ImageStore::remove`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveReport {
    /// The image the reference named.
    pub digest: ManifestDigest,
    /// The tags removed.
    pub untagged: Vec<Tag>,
    /// The tags that still name the image (when a tag was removed and others remain).
    pub remaining_tags: Vec<Tag>,
}

impl ImageStore {
    /// Opens the store at `root`, creating its directories when missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "manifests", "tags"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_err("create the directory", &path))?;
        }
        // Unpacked layers keep their files' owners and modes (a setuid-root binary stays
        // one): only the store's owner may enter them.
        let layers = root.join("layers");
        fs::set_permissions(&layers, fs::Permissions::from_mode(0o700))
            .map_err(io_err("restrict the directory", &layers))?;
        Ok(ImageStore {
            root,
            limits: UnpackLimits::default(),
            is_root: nix::unistd::geteuid().is_root(),
        })
    }

    /// The same store with other limits for adding and unpacking layers.
    pub fn with_limits(mut self, limits: UnpackLimits) -> ImageStore {
        self.limits = limits;
        self
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The limits layers are checked against.
    pub fn limits(&self) -> &UnpackLimits {
        &self.limits
    }

    /// The same store acting as root (`true`: unpacked entries are chowned to the archive's
    /// uid/gid, and whiteouts are made) or not (`false`: ownership is left alone, and layers
    /// with whiteouts are refused). Defaults to whether this process's effective uid is 0;
    /// `true` without root privileges makes unpacking fail on the first chown.
    pub fn with_privileged(mut self, privileged: bool) -> ImageStore {
        self.is_root = privileged;
        self
    }

    /// `true` when the store acts as root: entries are then chowned to the archive's uid/gid,
    /// and whiteouts can be made.
    pub fn is_root(&self) -> bool {
        self.is_root
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// `blobs/sha256/<hex>`: the layer's uncompressed tar.
    pub fn blob_path(&self, layer: &LayerDigest) -> PathBuf {
        self.blobs_dir().join(layer.hex())
    }

    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// `layers/<hex>/`: where the layer is (or will be) unpacked.
    pub fn layer_dir(&self, layer: &LayerDigest) -> PathBuf {
        self.layers_dir().join(layer.hex())
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    fn manifest_path(&self, digest: &ManifestDigest) -> PathBuf {
        self.manifests_dir().join(format!("{}.json", digest.hex()))
    }

    fn tags_dir(&self) -> PathBuf {
        self.root.join("tags")
    }

    /// `tags/<name, with / as +>/<version>`: `+` is never part of a name, so two names never
    /// share a file.
    fn tag_path(&self, tag: &Tag) -> PathBuf {
        self.tags_dir()
            .join(tag.name().replace('/', "+"))
            .join(tag.version())
    }

    /// Holds `<root>/lock` shared (`exclusive` false) or exclusively until dropped.
    pub(crate) fn lock(&self, exclusive: bool) -> Result<Flock<File>, ImageError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open the lock file", &path))?;
        let how = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        Flock::lock(file, how).map_err(|(_, errno)| ImageError::io("lock", &path, errno.into()))
    }
}
