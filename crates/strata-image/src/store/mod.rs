//! The image store of a node (or of the CLI's machine): content-addressed layer blobs, their
//! unpacked trees, image manifests and tags, all under one directory (see the crate docs for
//! the layout), plus garbage collection.
//!
//! Every write is atomic: a blob, a manifest or a tag is written to a temporary file in its own
//! directory and renamed; a layer is unpacked into `layers/.tmp-<hex>-<random>` and renamed.
//! Processes sharing a store coordinate with `flock` on `<root>/lock`: every operation holds it
//! shared, `gc` holds it exclusively, so a collection never removes what an import, a build or
//! an unpack in another process is making.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nix::fcntl::{Flock, FlockArg};

use crate::digest::{is_sha256_hex, HashingReader, HashingWriter, LayerDigest, ManifestDigest};
use crate::error::{io_err, sniff, ImageError};
use crate::manifest::{
    now_rfc3339, Image, ImageConfigSpec, LayerRef, Manifest, Platform, MANIFEST_SCHEMA_VERSION,
};
use crate::reference::{Reference, Tag};
use crate::unpack::{display_path, unpack_tar, LimitCounter, UnpackLimits};

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

/// What [`ImageStore::gc`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Manifests no tag names and no instance uses.
    pub manifests_removed: Vec<ManifestDigest>,
    /// Layer blobs (tars) no kept image has.
    pub blobs_removed: Vec<LayerDigest>,
    /// Unpacked layer trees no kept image has.
    pub layers_removed: Vec<LayerDigest>,
    /// Leftovers of interrupted writes (`.tmp-*`).
    pub temporaries_removed: usize,
    /// The bytes all that took (hard-linked files counted once per tree).
    pub bytes_freed: u64,
    /// Digests passed as in use that are not in the store (nothing of theirs could be kept).
    pub in_use_missing: Vec<ManifestDigest>,
}

impl GcReport {
    /// How many things were removed in all.
    pub fn removed(&self) -> usize {
        self.manifests_removed.len()
            + self.blobs_removed.len()
            + self.layers_removed.len()
            + self.temporaries_removed
    }
}

impl ImageStore {
    /// Opens the store at `root`, creating its directories when missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "manifests", "tags"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_err("create the directory", &path))?;
        }
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

    // ---------------------------------------------------------------------------------------
    // Layers

    /// Streams a layer into the blob store and returns its digest (the sha256 of the
    /// uncompressed tar). The input may be a plain tar or a gzip-compressed one; zstd, xz and
    /// bzip2 are refused, and so is anything that is not a tar archive, with a message that
    /// says what it looks like. The archive's limits (entries, total size, path length) are
    /// checked while it streams. Adding a layer that is already there changes nothing.
    pub fn add_layer(&self, reader: impl Read) -> Result<LayerDigest, ImageError> {
        let _lock = self.lock(false)?;
        self.add_layer_unlocked(reader, "the layer")
            .map(|(digest, _)| digest)
    }

    /// [`ImageStore::add_layer`] without taking the lock; `what` names the input in messages.
    /// Returns the digest and the size of the uncompressed tar.
    pub(crate) fn add_layer_unlocked(
        &self,
        reader: impl Read,
        what: &str,
    ) -> Result<(LayerDigest, u64), ImageError> {
        let mut reader = reader;
        let mut head = Vec::with_capacity(512);
        (&mut reader)
            .take(512)
            .read_to_end(&mut head)
            .map_err(|e| ImageError::NotATar {
                what: what.to_string(),
                detail: format!("it cannot be read: {e}"),
            })?;
        if head.is_empty() {
            return Err(ImageError::NotATar {
                what: what.to_string(),
                detail: "it is empty".into(),
            });
        }
        let compression = Compression::sniff(&head);
        let chained = io::Cursor::new(head.clone()).chain(reader);
        let decoded: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(chained),
            Compression::Gzip => Box::new(MultiGzDecoder::new(chained)),
            other => {
                return Err(ImageError::UnsupportedCompression {
                    what: what.to_string(),
                    detail: format!("{}-compressed", other.name()),
                })
            }
        };
        let temp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(self.blobs_dir())
            .map_err(io_err("create a temporary file in", &self.blobs_dir()))?;
        let writer = HashingWriter::new(BufWriter::new(
            temp.as_file()
                .try_clone()
                .map_err(io_err("open", temp.path()))?,
        ));
        let mut tee = Tee {
            inner: decoded,
            out: writer,
            write_error: None,
        };
        // What the tar crate says about a bad first header is raw bytes of the input: say
        // what the input looks like instead.
        let not_a_tar = |_: String| {
            let detail = if compression == Compression::Gzip {
                "after gzip decompression, its first block is not a tar header".to_string()
            } else if head.len() < 512 {
                format!(
                    "it has {} bytes, fewer than one tar header (512); {}",
                    head.len(),
                    sniff(&head)
                )
            } else {
                format!("its first block is not a tar header; {}", sniff(&head))
            };
            ImageError::NotATar {
                what: what.to_string(),
                detail,
            }
        };
        {
            let mut counter = LimitCounter::new(&self.limits, what);
            let mut archive = tar::Archive::new(&mut tee);
            let entries = archive.entries().map_err(|e| not_a_tar(e.to_string()))?;
            let mut last: Option<String> = None;
            for entry in entries {
                let mut entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if last.is_none() => return Err(not_a_tar(e.to_string())),
                    Err(e) => {
                        return Err(ImageError::CorruptArchive {
                            what: what.to_string(),
                            position: format!("after the entry `{}`", last.unwrap_or_default()),
                            detail: e.to_string(),
                        })
                    }
                };
                let name = display_path(&entry.path_bytes());
                counter.count(&entry)?;
                io::copy(&mut entry, &mut io::sink()).map_err(|e| ImageError::CorruptArchive {
                    what: what.to_string(),
                    position: format!("at the entry `{name}`"),
                    detail: e.to_string(),
                })?;
                last = Some(name);
            }
        }
        // The end-of-archive blocks and any padding after them are part of the layer.
        io::copy(&mut tee, &mut io::sink()).map_err(|e| ImageError::CorruptArchive {
            what: what.to_string(),
            position: "at its end".into(),
            detail: e.to_string(),
        })?;
        if let Some(e) = tee.write_error.take() {
            return Err(ImageError::io("write", temp.path(), e));
        }
        let (buffered, hex, size) = tee.out.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| ImageError::io("write", temp.path(), e.into_error()))?;
        file.sync_all().map_err(io_err("sync", temp.path()))?;
        let digest = LayerDigest::from_hex_unchecked(hex);
        let path = self.blob_path(&digest);
        if !path.is_file() {
            temp.persist(&path)
                .map_err(|e| ImageError::io("store the blob", &path, e.error))?;
        }
        Ok((digest, size))
    }

    /// `true` when the layer's blob is in the store.
    pub fn has_layer(&self, layer: &LayerDigest) -> bool {
        self.blob_path(layer).is_file()
    }

    /// The size of the layer's uncompressed tar.
    pub fn layer_size(&self, layer: &LayerDigest) -> Result<u64, ImageError> {
        let path = self.blob_path(layer);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::LayerNotFound {
                digest: layer.clone(),
                root: self.root.clone(),
            }),
            Err(e) => Err(ImageError::io("inspect", &path, e)),
        }
    }

    pub(crate) fn open_blob(&self, layer: &LayerDigest) -> Result<File, ImageError> {
        let path = self.blob_path(layer);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::LayerNotFound {
                    digest: layer.clone(),
                    root: self.root.clone(),
                }
            } else {
                ImageError::io("open", &path, e)
            }
        })
    }

    /// Unpacks the layer into `layers/<hex>/` (once: later calls return the same directory) and
    /// returns that directory. The unpacking is safe (see the crate docs): a layer that is
    /// refused, or whose blob does not match its digest, leaves nothing behind.
    pub fn unpack(&self, layer: &LayerDigest) -> Result<PathBuf, ImageError> {
        let _lock = self.lock(false)?;
        self.unpack_unlocked(layer)
    }

    pub(crate) fn unpack_unlocked(&self, layer: &LayerDigest) -> Result<PathBuf, ImageError> {
        let target = self.layer_dir(layer);
        if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Ok(target);
        }
        let blob = self.open_blob(layer)?;
        let temp = tempfile::Builder::new()
            .prefix(&format!("{TMP_PREFIX}{}-", layer.hex()))
            .tempdir_in(self.layers_dir())
            .map_err(io_err(
                "create a temporary directory in",
                &self.layers_dir(),
            ))?
            .keep();
        let guard = RemoveOnDrop {
            path: Some(temp.clone()),
            fix_permissions: !self.is_root,
        };
        let what = format!("layer {layer}");
        let mut reader = HashingReader::new(BufReader::with_capacity(1 << 16, blob));
        unpack_tar(&mut reader, &temp, &what, &self.limits, self.is_root)?;
        let (hex, _) = reader
            .finish()
            .map_err(io_err("read", &self.blob_path(layer)))?;
        if hex != layer.hex() {
            return Err(ImageError::DigestMismatch {
                what: format!("the blob {}", self.blob_path(layer).display()),
                expected: layer.to_string(),
                actual: format!("sha256:{hex}"),
            });
        }
        match fs::rename(&temp, &target) {
            Ok(()) => {
                guard.disarm();
                Ok(target)
            }
            // Another process unpacked it at the same time: keep theirs, drop ours.
            Err(_) if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) => Ok(target),
            Err(e) => Err(ImageError::io("move the unpacked layer to", &target, e)),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Images

    /// Makes an image of `layers` (bottom first, all already in the store) and `config`, for
    /// this machine's platform, created now; tags it when `tag` is given (moving the tag if it
    /// named another image).
    pub fn put_image(
        &self,
        layers: &[LayerDigest],
        config: &ImageConfigSpec,
        tag: Option<&Tag>,
    ) -> Result<Image, ImageError> {
        let _lock = self.lock(false)?;
        let manifest = self.manifest_for(layers, config, Platform::host(), Some(now_rfc3339()))?;
        self.put_manifest_unlocked(
            &manifest,
            tag.into_iter().cloned().collect::<Vec<_>>().as_slice(),
        )
    }

    pub(crate) fn manifest_for(
        &self,
        layers: &[LayerDigest],
        config: &ImageConfigSpec,
        platform: Platform,
        created: Option<String>,
    ) -> Result<Manifest, ImageError> {
        let mut refs = Vec::with_capacity(layers.len());
        for layer in layers {
            refs.push(LayerRef {
                digest: layer.clone(),
                size: self.layer_size(layer)?,
            });
        }
        Ok(Manifest {
            schema_version: MANIFEST_SCHEMA_VERSION,
            size: refs.iter().map(|l| l.size).sum(),
            layers: refs,
            config: config.clone().normalized(),
            platform,
            created,
        })
    }

    /// Stores a manifest (its layers must be in the store) and points `tags` at it.
    pub fn put_manifest(&self, manifest: &Manifest, tags: &[Tag]) -> Result<Image, ImageError> {
        let _lock = self.lock(false)?;
        self.put_manifest_unlocked(manifest, tags)
    }

    pub(crate) fn put_manifest_unlocked(
        &self,
        manifest: &Manifest,
        tags: &[Tag],
    ) -> Result<Image, ImageError> {
        if manifest.schema_version != MANIFEST_SCHEMA_VERSION {
            return Err(ImageError::CorruptManifest {
                path: PathBuf::from("(new manifest)"),
                detail: format!(
                    "its schema_version is {}, this Strata writes {MANIFEST_SCHEMA_VERSION}",
                    manifest.schema_version
                ),
            });
        }
        for layer in &manifest.layers {
            let size = self.layer_size(&layer.digest)?;
            if size != layer.size {
                return Err(ImageError::CorruptManifest {
                    path: PathBuf::from("(new manifest)"),
                    detail: format!(
                        "it says layer {} has {} bytes, the blob has {size}",
                        layer.digest, layer.size
                    ),
                });
            }
        }
        let json = manifest.canonical_json();
        let digest = ManifestDigest::of(&json);
        let path = self.manifest_path(&digest);
        if !path.is_file() {
            write_atomic(&self.manifests_dir(), &path, &json)?;
        }
        for tag in tags {
            self.write_tag(tag, &digest)?;
        }
        Ok(Image {
            digest: digest.clone(),
            manifest: manifest.clone(),
            tags: self.tags_of(&digest)?,
        })
    }

    /// Points `tag` at the image `reference` names.
    pub fn tag(
        &self,
        reference: &(impl ToReference + ?Sized),
        tag: &Tag,
    ) -> Result<Image, ImageError> {
        let _lock = self.lock(false)?;
        let digest = self.resolve(&reference.to_reference()?)?;
        self.write_tag(tag, &digest)?;
        self.image(&digest)
    }

    fn write_tag(&self, tag: &Tag, digest: &ManifestDigest) -> Result<(), ImageError> {
        let path = self.tag_path(tag);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create the directory", &dir))?;
        write_atomic(&dir, &path, format!("{digest}\n").as_bytes())
    }

    /// Every tag and the image it names.
    pub fn tags(&self) -> Result<BTreeMap<Tag, ManifestDigest>, ImageError> {
        let mut tags = BTreeMap::new();
        let dir = self.tags_dir();
        for name_entry in read_dir(&dir)? {
            let name_dir = name_entry.path();
            let Some(name) = name_entry.file_name().to_str().map(|n| n.replace('+', "/")) else {
                continue;
            };
            if name.starts_with(TMP_PREFIX) || !name_dir.is_dir() {
                continue;
            }
            for version_entry in read_dir(&name_dir)? {
                let Some(version) = version_entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let Ok(tag) = Tag::new(&name, &version) else {
                    continue;
                };
                let path = version_entry.path();
                let text = fs::read_to_string(&path).map_err(io_err("read the tag", &path))?;
                let digest = ManifestDigest::parse(text.trim()).map_err(|e| {
                    ImageError::CorruptManifest {
                        path: path.clone(),
                        detail: format!("the tag file does not hold a digest: {e}"),
                    }
                })?;
                tags.insert(tag, digest);
            }
        }
        Ok(tags)
    }

    fn tags_of(&self, digest: &ManifestDigest) -> Result<Vec<Tag>, ImageError> {
        Ok(self
            .tags()?
            .into_iter()
            .filter(|(_, d)| d == digest)
            .map(|(t, _)| t)
            .collect())
    }

    fn manifest_digests(&self) -> Result<Vec<ManifestDigest>, ImageError> {
        let mut digests = Vec::new();
        for entry in read_dir(&self.manifests_dir())? {
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if is_sha256_hex(hex) {
                digests.push(ManifestDigest::from_hex_unchecked(hex.to_string()));
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// Reads a manifest and checks that it is the one its name says.
    pub(crate) fn read_manifest(&self, digest: &ManifestDigest) -> Result<Manifest, ImageError> {
        let path = self.manifest_path(digest);
        let bytes = fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::ImageNotFound {
                    reference: digest.to_string(),
                    root: self.root.clone(),
                    hint: String::new(),
                }
            } else {
                ImageError::io("read", &path, e)
            }
        })?;
        let actual = ManifestDigest::of(&bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("the manifest {}", path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Manifest::from_json(&bytes, &path)
    }

    fn image(&self, digest: &ManifestDigest) -> Result<Image, ImageError> {
        Ok(Image {
            digest: digest.clone(),
            manifest: self.read_manifest(digest)?,
            tags: self.tags_of(digest)?,
        })
    }

    /// The digest of the image a reference names.
    pub(crate) fn resolve(&self, reference: &Reference) -> Result<ManifestDigest, ImageError> {
        let not_found = |hint: String| ImageError::ImageNotFound {
            reference: reference.to_string(),
            root: self.root.clone(),
            hint,
        };
        match reference {
            Reference::Tag(tag) => {
                let path = self.tag_path(tag);
                match fs::read_to_string(&path) {
                    Ok(text) => ManifestDigest::parse(text.trim()).map_err(|e| {
                        ImageError::CorruptManifest {
                            path,
                            detail: format!("the tag file does not hold a digest: {e}"),
                        }
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let versions: Vec<String> = self
                            .tags()?
                            .keys()
                            .filter(|t| t.name() == tag.name())
                            .map(|t| t.version().to_string())
                            .collect();
                        Err(not_found(if versions.is_empty() {
                            ": no image has that name (list them with `strata image ls`)".into()
                        } else {
                            format!(
                                ": `{}` has the versions {}",
                                tag.name(),
                                versions.join(", ")
                            )
                        }))
                    }
                    Err(e) => Err(ImageError::io("read the tag", &path, e)),
                }
            }
            Reference::Digest(digest) => {
                if self.manifest_path(digest).is_file() {
                    Ok(digest.clone())
                } else {
                    Err(not_found(String::new()))
                }
            }
            Reference::Prefix(prefix) => {
                let matches: Vec<ManifestDigest> = self
                    .manifest_digests()?
                    .into_iter()
                    .filter(|d| d.hex().starts_with(prefix.as_str()))
                    .collect();
                match matches.as_slice() {
                    [] => Err(not_found(
                        ": no image digest starts with those hex digits; a NAME needs :VERSION"
                            .into(),
                    )),
                    [only] => Ok(only.clone()),
                    several => Err(ImageError::AmbiguousReference {
                        reference: reference.to_string(),
                        candidates: several
                            .iter()
                            .take(5)
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            }
        }
    }

    /// Every image in the store (tagged or not), sorted by their first tag, untagged ones last.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let _lock = self.lock(false)?;
        let tags = self.tags()?;
        let mut by_digest: BTreeMap<ManifestDigest, Vec<Tag>> = BTreeMap::new();
        for (tag, digest) in tags {
            by_digest.entry(digest).or_default().push(tag);
        }
        let mut images = Vec::new();
        for digest in self.manifest_digests()? {
            images.push(Image {
                manifest: self.read_manifest(&digest)?,
                tags: by_digest.remove(&digest).unwrap_or_default(),
                digest,
            });
        }
        images.sort_by(|a, b| match (a.tags.first(), b.tags.first()) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.digest.cmp(&b.digest),
        });
        Ok(images)
    }

    /// The image a reference names: `NAME:VERSION`, `sha256:<hex>`, or a unique prefix of the
    /// hex digits.
    pub fn inspect(&self, reference: &(impl ToReference + ?Sized)) -> Result<Image, ImageError> {
        let _lock = self.lock(false)?;
        let digest = self.resolve(&reference.to_reference()?)?;
        self.image(&digest)
    }

    /// Removes a tag (`NAME:VERSION`), or every tag of an image (a digest or a prefix). The
    /// manifest, layers and unpacked trees stay until the next [`ImageStore::gc`], which
    /// removes them unless another tag names the image or an instance uses it: removing the tag
    /// of a running image never pulls its layers from under it.
    pub fn remove(
        &self,
        reference: &(impl ToReference + ?Sized),
    ) -> Result<RemoveReport, ImageError> {
        let _lock = self.lock(false)?;
        let reference = reference.to_reference()?;
        let digest = self.resolve(&reference)?;
        let untag: Vec<Tag> = match &reference {
            Reference::Tag(tag) => vec![tag.clone()],
            _ => self.tags_of(&digest)?,
        };
        for tag in &untag {
            let path = self.tag_path(tag);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove the tag", &path, e)),
            }
            if let Some(dir) = path.parent() {
                // Only succeeds when empty.
                let _ = fs::remove_dir(dir);
            }
        }
        Ok(RemoveReport {
            remaining_tags: self.tags_of(&digest)?,
            digest,
            untagged: untag,
        })
    }

    /// The unpacked layer directories of an image, TOP layer first, as overlayfs' `lowerdir=`
    /// wants them. Unpacks layers that are not yet.
    pub fn lower_dirs(
        &self,
        image: &(impl ToReference + ?Sized),
    ) -> Result<Vec<PathBuf>, ImageError> {
        let _lock = self.lock(false)?;
        let digest = self.resolve(&image.to_reference()?)?;
        let manifest = self.read_manifest(&digest)?;
        let mut dirs = Vec::with_capacity(manifest.layers.len());
        for layer in manifest.layers.iter().rev() {
            dirs.push(self.unpack_unlocked(&layer.digest)?);
        }
        Ok(dirs)
    }

    // ---------------------------------------------------------------------------------------
    // Garbage collection

    /// Removes everything no image needs: manifests that no tag names and that are not in
    /// `in_use` (the digests of the images running instances use), the blobs and unpacked
    /// trees of layers that no kept image has, and leftovers of interrupted writes. Holds the
    /// store's lock exclusively, so it waits for imports, builds and unpacks in progress.
    pub fn gc(&self, in_use: &[ManifestDigest]) -> Result<GcReport, ImageError> {
        let _lock = self.lock(true)?;
        let mut report = GcReport::default();
        let tagged: BTreeSet<ManifestDigest> = self.tags()?.into_values().collect();
        let present: BTreeSet<ManifestDigest> = self.manifest_digests()?.into_iter().collect();
        let mut keep: BTreeSet<ManifestDigest> = BTreeSet::new();
        for digest in tagged.iter().chain(in_use) {
            if present.contains(digest) {
                keep.insert(digest.clone());
            } else if in_use.contains(digest) && !report.in_use_missing.contains(digest) {
                report.in_use_missing.push(digest.clone());
            }
        }
        let mut layers: HashSet<String> = HashSet::new();
        for digest in &keep {
            // A kept manifest that cannot be read would leave its layers unprotected: stop.
            let manifest = self.read_manifest(digest)?;
            layers.extend(manifest.layers.iter().map(|l| l.digest.hex().to_string()));
        }

        // Manifests.
        for entry in read_dir(&self.manifests_dir())? {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                report.bytes_freed += remove_tree(&path, !self.is_root)?;
                report.temporaries_removed += 1;
                continue;
            }
            let Some(hex) = name.strip_suffix(".json").filter(|h| is_sha256_hex(h)) else {
                continue;
            };
            let digest = ManifestDigest::from_hex_unchecked(hex.to_string());
            if !keep.contains(&digest) {
                report.bytes_freed += remove_tree(&path, !self.is_root)?;
                report.manifests_removed.push(digest);
            }
        }
        // Blobs and unpacked trees.
        for (dir, blobs) in [(self.blobs_dir(), true), (self.layers_dir(), false)] {
            for entry in read_dir(&dir)? {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TMP_PREFIX) {
                    report.bytes_freed += remove_tree(&path, !self.is_root)?;
                    report.temporaries_removed += 1;
                    continue;
                }
                if !is_sha256_hex(&name) || layers.contains(&name) {
                    continue;
                }
                report.bytes_freed += remove_tree(&path, !self.is_root)?;
                let digest = LayerDigest::from_hex_unchecked(name);
                if blobs {
                    report.blobs_removed.push(digest);
                } else {
                    report.layers_removed.push(digest);
                }
            }
        }
        // Interrupted tag writes and empty tag directories.
        for name_entry in read_dir(&self.tags_dir())? {
            let name_dir = name_entry.path();
            if !name_dir.is_dir() {
                continue;
            }
            for entry in read_dir(&name_dir)? {
                if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    report.bytes_freed += remove_tree(&entry.path(), !self.is_root)?;
                    report.temporaries_removed += 1;
                }
            }
            let _ = fs::remove_dir(&name_dir);
        }
        report.manifests_removed.sort();
        report.blobs_removed.sort();
        report.layers_removed.sort();
        Ok(report)
    }
}

/// The compression of a layer stream, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

impl Compression {
    pub(crate) fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "not",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// A reader that copies everything it reads into a writer. A write error is kept and
/// reported after the read side is done (so that it is not mistaken for a damaged archive).
struct Tee<R, W> {
    inner: R,
    out: W,
    write_error: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.write_error.is_none() {
            if let Err(e) = self.out.write_all(&buf[..n]) {
                self.write_error = Some(e);
            }
        }
        if self.write_error.is_some() {
            return Err(io::Error::other("cannot write the blob store"));
        }
        Ok(n)
    }
}

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
