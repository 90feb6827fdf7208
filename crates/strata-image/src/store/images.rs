//! Images in the store: manifests (each stored once under its digest, checked when read),
//! tags, and the references that name an image (`NAME:VERSION`, a digest, a prefix).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use super::files::{read_dir, write_atomic};
use super::{ImageStore, RemoveReport, ToReference, TMP_PREFIX};
use crate::digest::{is_sha256_hex, LayerDigest, ManifestDigest};
use crate::error::{io_err, ImageError};
use crate::ids::IdShift;
use crate::manifest::{
    now_rfc3339, Image, ImageConfigSpec, LayerRef, Manifest, Platform, MANIFEST_SCHEMA_VERSION,
};
use crate::reference::{Reference, Tag};

impl ImageStore {
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

    pub(super) fn manifest_digests(&self) -> Result<Vec<ManifestDigest>, ImageError> {
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

    pub(crate) fn image(&self, digest: &ManifestDigest) -> Result<Image, ImageError> {
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
        self.lower_dirs_shifted(image, None)
    }

    /// [`Self::lower_dirs`] with the files' owners shifted into a user namespace's host range
    /// (`shift`), each layer unpacked so once and shared by every container of that range.
    /// An owner past the range is refused, naming the entry.
    pub fn lower_dirs_shifted(
        &self,
        image: &(impl ToReference + ?Sized),
        shift: Option<IdShift>,
    ) -> Result<Vec<PathBuf>, ImageError> {
        let _lock = self.lock(false)?;
        let digest = self.resolve(&image.to_reference()?)?;
        let manifest = self.read_manifest(&digest)?;
        let mut dirs = Vec::with_capacity(manifest.layers.len());
        for layer in manifest.layers.iter().rev() {
            dirs.push(self.unpack_unlocked(&layer.digest, shift)?);
        }
        Ok(dirs)
    }
}
