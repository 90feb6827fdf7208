//! Images as files that travel: export to an OCI image layout (as one tar), and import of OCI
//! image layouts (a directory or a tar) and `docker save` archives (the classic format, with
//! layers at `<id>/layer.tar`, and docker 25+'s, with the layers as OCI blobs).
//!
//! Imported layers may be plain or gzip-compressed tars; they are stored uncompressed, so a
//! layer's digest is its OCI `diff_id`. Every blob is checked against its digest (the
//! descriptor's for OCI, the file name's for docker's config), and every layer against the
//! image config's `rootfs.diff_ids`: a mismatch is refused, naming the layer. An export of an
//! imported image writes the layers uncompressed, so exporting and importing again gives the
//! same layer digests (and the same image digest).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use oci_spec::image::{
    Arch, Config, Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, Os, RootFs, ANNOTATION_REF_NAME,
};
use serde::Deserialize;

use crate::digest::{is_sha256_hex, HashingReader, LayerDigest, ManifestDigest};
use crate::error::{io_err, ImageError};
use crate::manifest::{canonical_json, Image, ImageConfigSpec, Manifest, Platform};
use crate::reference::Tag;
use crate::store::{Compression, ImageStore, ToReference};
use crate::unpack::split_relative;

/// containerd's (and docker 25+'s) annotation for an image's full name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The largest JSON file (index, manifest, config) an import reads.
const MAX_JSON: u64 = 4 << 20;
/// How much of an archive's small files an import keeps in memory while looking for its JSON.
const MAX_SMALL_TOTAL: u64 = 64 << 20;
/// How deep image indexes may nest.
const MAX_INDEX_DEPTH: usize = 4;
/// How many symbolic links are followed to find a file in an archive.
const MAX_LINK_HOPS: usize = 8;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// How [`ImageStore::import`] tags what it imports.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// When set, these tags replace the archive's own (the archive must hold one image).
    pub tags: Option<Vec<Tag>>,
}

/// One image [`ImageStore::import`] stored.
#[derive(Clone, Debug)]
pub struct ImportedImage {
    pub image: Image,
    /// Names found in the archive that could not be used as tags, and why (e.g. a bare
    /// `latest` in `org.opencontainers.image.ref.name`, which has no NAME).
    pub unusable_names: Vec<String>,
}

/// The image config Strata keeps from an OCI image config.
pub(crate) fn config_spec_from_oci(config: &ImageConfiguration) -> ImageConfigSpec {
    let Some(c) = config.config() else {
        return ImageConfigSpec::default();
    };
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    ImageConfigSpec {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: non_empty(c.working_dir()),
        user: non_empty(c.user()),
        exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
    }
    .normalized()
}

fn oci_config(manifest: &Manifest) -> ImageConfiguration {
    let spec = &manifest.config;
    let mut config = Config::default();
    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    config.set_entrypoint(some_vec(&spec.entrypoint));
    config.set_cmd(some_vec(&spec.cmd));
    config.set_env(some_vec(&spec.env));
    config.set_working_dir(spec.working_dir.clone());
    config.set_user(spec.user.clone());
    config.set_exposed_ports(some_vec(&spec.exposed_ports));
    config.set_labels((!spec.labels.is_empty()).then(|| spec.labels.clone().into_iter().collect()));
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(
        manifest
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect(),
    );
    let mut image = ImageConfiguration::default();
    image.set_architecture(Arch::from(manifest.platform.architecture.as_str()));
    image.set_os(Os::from(manifest.platform.os.as_str()));
    image.set_variant(manifest.platform.variant.clone());
    image.set_created(manifest.created.clone());
    image.set_config(Some(config));
    image.set_rootfs(rootfs);
    image
}

fn descriptor(media_type: MediaType, bytes: &[u8]) -> Result<Descriptor, ImageError> {
    Ok(Descriptor::new(
        media_type,
        bytes.len() as u64,
        oci_digest(&LayerDigest::of(bytes).to_string())?,
    ))
}

fn oci_digest(digest: &str) -> Result<oci_spec::image::Digest, ImageError> {
    digest
        .parse()
        .map_err(|e: oci_spec::OciSpecError| export_error(&e))
}

impl ImageStore {
    /// Writes the image as an OCI image layout in a tar to `writer`: `oci-layout`,
    /// `index.json` (with the image's tags as `io.containerd.image.name` and the version as
    /// `org.opencontainers.image.ref.name`), and `blobs/sha256/...`: the OCI manifest, the
    /// image config and the layers, uncompressed. [`ImageStore::import`] on another node gives
    /// back the same image (same layer digests, same image digest).
    pub fn export_oci_layout(
        &self,
        image: &(impl ToReference + ?Sized),
        writer: impl Write,
    ) -> Result<Image, ImageError> {
        let _lock = self.lock(false)?;
        let digest = self.resolve(&image.to_reference()?)?;
        let image = self.inspect_unlocked(&digest)?;
        let manifest = &image.manifest;

        let config_json = canonical_json(&oci_config(manifest));
        let config_descriptor = descriptor(MediaType::ImageConfig, &config_json)?;
        let mut layers: Vec<Descriptor> = Vec::new();
        for layer in &manifest.layers {
            layers.push(Descriptor::new(
                MediaType::ImageLayer,
                layer.size,
                oci_digest(&layer.digest.to_string())?,
            ));
        }
        let oci_manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_descriptor)
            .layers(layers)
            .build()
            .map_err(|e| export_error(&e))?;
        let manifest_json = canonical_json(&oci_manifest);
        let mut index_entries = Vec::new();
        if image.tags.is_empty() {
            index_entries.push(descriptor(MediaType::ImageManifest, &manifest_json)?);
        }
        for tag in &image.tags {
            let mut d = descriptor(MediaType::ImageManifest, &manifest_json)?;
            d.set_annotations(Some(
                [
                    (ANNOTATION_CONTAINERD_NAME.to_string(), tag.to_string()),
                    (ANNOTATION_REF_NAME.to_string(), tag.version().to_string()),
                ]
                .into_iter()
                .collect(),
            ));
            index_entries.push(d);
        }
        let index: ImageIndex = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(index_entries)
            .build()
            .map_err(|e| export_error(&e))?;
        let index_json = canonical_json(&index);

        let mut tar = tar::Builder::new(writer);
        let fail = |e: io::Error| {
            ImageError::io(
                "write the export of",
                PathBuf::from(image.digest.to_string()),
                e,
            )
        };
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(fail)?;
        append_dir(&mut tar, "blobs/").map_err(fail)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(fail)?;
        let mut written = std::collections::HashSet::new();
        for layer in &manifest.layers {
            if !written.insert(layer.digest.clone()) {
                continue;
            }
            let file = self.open_blob(&layer.digest)?;
            let size = file
                .metadata()
                .map_err(io_err("inspect", &self.blob_path(&layer.digest)))?
                .len();
            let mut header = file_header(size);
            tar.append_data(
                &mut header,
                format!("blobs/sha256/{}", layer.digest.hex()),
                BufReader::new(file),
            )
            .map_err(fail)?;
        }
        for json in [&config_json, &manifest_json] {
            let name = format!("blobs/sha256/{}", LayerDigest::of(json).hex());
            append_bytes(&mut tar, &name, json).map_err(fail)?;
        }
        append_bytes(&mut tar, "index.json", &index_json).map_err(fail)?;
        tar.into_inner().and_then(|mut w| w.flush()).map_err(fail)?;
        Ok(image)
    }

    pub(crate) fn inspect_unlocked(&self, digest: &ManifestDigest) -> Result<Image, ImageError> {
        let manifest = self.read_manifest(digest)?;
        let tags = self
            .tags()?
            .into_iter()
            .filter(|(_, d)| d == digest)
            .map(|(t, _)| t)
            .collect();
        Ok(Image {
            digest: digest.clone(),
            manifest,
            tags,
        })
    }

    /// Imports the images of `path`: an OCI image layout (a directory, or a tar of one), or a
    /// `docker save` archive (a tar, or a directory it was extracted to); a tar may be
    /// gzip-compressed. Tags come from the archive (`io.containerd.image.name`,
    /// `org.opencontainers.image.ref.name` when it is a whole `NAME:VERSION`, docker's
    /// `RepoTags`), or from `options.tags`. From an index with several platforms, the one of
    /// this machine is imported.
    pub fn import(
        &self,
        path: &Path,
        options: &ImportOptions,
    ) -> Result<Vec<ImportedImage>, ImageError> {
        let _lock = self.lock(false)?;
        let mut source = Source::open(path, self)?;
        let found = if source.exists("manifest.json") {
            docker_images(&mut source)?
        } else if source.exists("oci-layout") && source.exists("index.json") {
            oci_images(&mut source)?
        } else {
            return Err(source.error(format!(
                "it is neither a `docker save` archive (no manifest.json) nor an OCI image \
                 layout (no oci-layout and index.json){}",
                source.describe_contents()
            )));
        };
        if found.is_empty() {
            return Err(source.error("it holds no image".into()));
        }
        if options.tags.is_some() && found.len() != 1 {
            return Err(ImageError::TagOverrideAmbiguous { count: found.len() });
        }

        // Store every layer once.
        let mut wanted: Vec<WantedLayer> = Vec::new();
        for image in &found {
            for layer in &image.layers {
                if !wanted.iter().any(|w| w.name == layer.name) {
                    wanted.push(layer.clone());
                }
            }
        }
        let stored = source.add_layers(self, &wanted)?;

        let mut imported: Vec<ImportedImage> = Vec::new();
        for image in found {
            let diff_ids = image.config.rootfs().diff_ids();
            if !diff_ids.is_empty() && diff_ids.len() != image.layers.len() {
                return Err(source.error(format!(
                    "the image config {} lists {} layers (rootfs.diff_ids), the manifest {}",
                    image.config_name,
                    diff_ids.len(),
                    image.layers.len()
                )));
            }
            let mut layers = Vec::new();
            for (index, layer) in image.layers.iter().enumerate() {
                let Some(digest) = stored.get(&layer.name) else {
                    return Err(source.error(format!("the layer {} was not found", layer.name)));
                };
                if let Some(expected) = diff_ids.get(index) {
                    if expected != &digest.to_string() {
                        return Err(ImageError::DiffIdMismatch {
                            archive: source.path().to_path_buf(),
                            layer: layer.name.clone(),
                            index,
                            expected: expected.clone(),
                            actual: digest.to_string(),
                        });
                    }
                }
                layers.push(digest.clone());
            }
            let platform = Platform {
                os: image.config.os().to_string(),
                architecture: image.config.architecture().to_string(),
                variant: image.config.variant().clone(),
            };
            let manifest = self.manifest_for(
                &layers,
                &config_spec_from_oci(&image.config),
                platform,
                image.config.created().clone(),
            )?;
            let tags = options.tags.clone().unwrap_or(image.tags);
            let stored_image = self.put_manifest_unlocked(&manifest, &tags)?;
            // The same image under several names in one archive: one entry.
            if let Some(existing) = imported
                .iter_mut()
                .find(|i| i.image.digest == stored_image.digest)
            {
                existing.image = stored_image;
                existing.unusable_names.extend(image.unusable_names);
                continue;
            }
            imported.push(ImportedImage {
                image: stored_image,
                unusable_names: image.unusable_names,
            });
        }
        Ok(imported)
    }
}

fn export_error(e: &oci_spec::OciSpecError) -> ImageError {
    ImageError::Build {
        path: PathBuf::from("(OCI export)"),
        reason: e.to_string(),
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = file_header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_mtime(0);
    tar.append_data(&mut header, name, io::empty())
}

/// A layer an import needs: where it is in the archive, and what its descriptor says.
#[derive(Clone, Debug)]
struct WantedLayer {
    /// The path in the archive (symbolic links resolved).
    name: String,
    /// The descriptor's digest of the blob as stored (compressed or not), when known.
    blob_digest: Option<String>,
}

/// An image found in an archive, before its layers are stored.
struct FoundImage {
    config: ImageConfiguration,
    config_name: String,
    layers: Vec<WantedLayer>,
    tags: Vec<Tag>,
    unusable_names: Vec<String>,
}

/// Where an import reads from: a directory, or a tar (maybe gzip-compressed) read in passes.
enum Source {
    Dir {
        root: PathBuf,
    },
    Tar {
        path: PathBuf,
        gzip: bool,
        /// Every entry: regular files with their size, links with their target.
        entries: BTreeMap<String, TarEntry>,
        /// The contents of the small files, up to `MAX_SMALL_TOTAL` in all.
        small: HashMap<String, Vec<u8>>,
    },
}

#[derive(Clone, Debug)]
enum TarEntry {
    File,
    Symlink { target: String },
    HardLink { target: String },
    Other,
}

/// `path` without `.` and empty components; `None` for absolute paths and `..`.
fn normalize(raw: &[u8]) -> Option<String> {
    let components = split_relative(raw).ok()?;
    let parts: Vec<&str> = components
        .iter()
        .map(|c| c.to_str())
        .collect::<Option<_>>()?;
    Some(parts.join("/"))
}

/// Resolves `target` (a symlink's) relative to the directory of `from`, inside the archive.
fn resolve_link(from: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return normalize(target.as_bytes());
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

impl Source {
    fn open(path: &Path, store: &ImageStore) -> Result<Source, ImageError> {
        let meta = fs::metadata(path).map_err(io_err("open", path))?;
        if meta.is_dir() {
            return Ok(Source::Dir {
                root: path.to_path_buf(),
            });
        }
        let mut head = Vec::new();
        File::open(path)
            .and_then(|f| f.take(8).read_to_end(&mut head))
            .map_err(io_err("read", path))?;
        let gzip = match Compression::sniff(&head) {
            Compression::None => false,
            Compression::Gzip => true,
            other => {
                return Err(ImageError::UnsupportedCompression {
                    what: path.display().to_string(),
                    detail: format!("{other:?}-compressed").to_lowercase(),
                })
            }
        };
        let mut source = Source::Tar {
            path: path.to_path_buf(),
            gzip,
            entries: BTreeMap::new(),
            small: HashMap::new(),
        };
        source.index(store)?;
        Ok(source)
    }

    fn path(&self) -> &Path {
        match self {
            Source::Dir { root } => root,
            Source::Tar { path, .. } => path,
        }
    }

    fn error(&self, detail: String) -> ImageError {
        ImageError::Import {
            archive: self.path().to_path_buf(),
            detail,
        }
    }

    fn open_tar(&self) -> Result<tar::Archive<Box<dyn Read>>, ImageError> {
        let Source::Tar { path, gzip, .. } = self else {
            return Err(self.error("not a tar archive".into()));
        };
        let file = BufReader::new(File::open(path).map_err(io_err("open", path))?);
        let reader: Box<dyn Read> = if *gzip {
            Box::new(MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        Ok(tar::Archive::new(reader))
    }

    fn tar_error(&self, e: io::Error) -> ImageError {
        self.error(format!("it is not a readable tar archive: {e}"))
    }

    /// The first pass over a tar: what it holds, and the contents of its small files.
    fn index(&mut self, store: &ImageStore) -> Result<(), ImageError> {
        let mut archive = self.open_tar()?;
        let mut entries = BTreeMap::new();
        let mut small = HashMap::new();
        let mut kept = 0u64;
        let mut count = 0u64;
        for entry in archive.entries().map_err(|e| self.tar_error(e))? {
            let mut entry = entry.map_err(|e| self.tar_error(e))?;
            count += 1;
            if count > store.limits().max_entries {
                return Err(self.error(format!(
                    "it has more than {} entries (max_entries)",
                    store.limits().max_entries
                )));
            }
            let Some(name) = normalize(&entry.path_bytes()) else {
                continue;
            };
            let link = entry
                .link_name_bytes()
                .and_then(|l| String::from_utf8(l.into_owned()).ok());
            let kind = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    if size <= MAX_JSON && kept + size <= MAX_SMALL_TOTAL {
                        let mut bytes = Vec::with_capacity(size as usize);
                        entry
                            .read_to_end(&mut bytes)
                            .map_err(|e| self.tar_error(e))?;
                        kept += size;
                        small.insert(name.clone(), bytes);
                    }
                    TarEntry::File
                }
                tar::EntryType::Symlink => match link {
                    Some(target) => TarEntry::Symlink { target },
                    None => TarEntry::Other,
                },
                tar::EntryType::Link => match link.and_then(|l| normalize(l.as_bytes())) {
                    Some(target) => TarEntry::HardLink { target },
                    None => TarEntry::Other,
                },
                _ => TarEntry::Other,
            };
            entries.insert(name, kind);
        }
        if let Source::Tar {
            entries: e,
            small: s,
            ..
        } = self
        {
            *e = entries;
            *s = small;
        }
        Ok(())
    }

    /// The regular file `name` ends at, following links inside the archive.
    fn resolve(&self, name: &str) -> Option<String> {
        match self {
            Source::Dir { root } => {
                let relative = normalize(name.as_bytes())?;
                let path = root.join(&relative);
                // Links inside the directory are fine; leaving it is not.
                let real = fs::canonicalize(&path).ok()?;
                let real_root = fs::canonicalize(root).ok()?;
                (real.starts_with(&real_root) && real.is_file()).then_some(relative)
            }
            Source::Tar { entries, .. } => {
                let mut current = normalize(name.as_bytes())?;
                for _ in 0..=MAX_LINK_HOPS {
                    match entries.get(&current)? {
                        TarEntry::File => return Some(current),
                        TarEntry::Symlink { target } => current = resolve_link(&current, target)?,
                        TarEntry::HardLink { target } => current = target.clone(),
                        TarEntry::Other => return None,
                    }
                }
                None
            }
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    /// A few of the archive's top-level names, for messages.
    fn describe_contents(&self) -> String {
        let names: Vec<String> = match self {
            Source::Dir { root } => fs::read_dir(root)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            Source::Tar { entries, .. } => entries
                .keys()
                .filter(|k| !k.contains('/'))
                .cloned()
                .collect(),
        };
        if names.is_empty() {
            return "; it is empty".into();
        }
        let mut names = names;
        names.sort();
        let shown: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
        let more = if names.len() > 8 { ", ..." } else { "" };
        format!(
            "; at its top it has {}{more}. To add a single layer tar, use add_layer or build \
             an image from a directory",
            shown.join(", ")
        )
    }

    /// The contents of a small file (JSON), checked against `digest` when given.
    fn read_json(&self, name: &str, digest: Option<&str>) -> Result<Vec<u8>, ImageError> {
        let Some(resolved) = self.resolve(name) else {
            return Err(self.error(format!("`{name}` is missing from it")));
        };
        let bytes = match self {
            Source::Dir { root } => {
                let path = root.join(&resolved);
                let size = fs::metadata(&path).map_err(io_err("inspect", &path))?.len();
                if size > MAX_JSON {
                    return Err(self.error(format!(
                        "`{name}` has {size} bytes; Strata reads JSON files of at most {MAX_JSON}"
                    )));
                }
                fs::read(&path).map_err(io_err("read", &path))?
            }
            Source::Tar { small, .. } => match small.get(&resolved) {
                Some(bytes) => bytes.clone(),
                None => {
                    return Err(self.error(format!(
                        "`{name}` is too large to be JSON (more than {MAX_JSON} bytes), or the \
                         archive has too many small files"
                    )))
                }
            },
        };
        if let Some(expected) = digest {
            let actual = LayerDigest::of(&bytes).to_string();
            if actual != expected {
                return Err(ImageError::DigestMismatch {
                    what: format!("`{name}` in {}", self.path().display()),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        Ok(bytes)
    }

    /// Stores the layers (each once) and returns their digests by archive name.
    fn add_layers(
        &self,
        store: &ImageStore,
        wanted: &[WantedLayer],
    ) -> Result<HashMap<String, LayerDigest>, ImageError> {
        let mut stored = HashMap::new();
        let add = |reader: &mut dyn Read, layer: &WantedLayer| -> Result<LayerDigest, ImageError> {
            let what = format!("the layer {} of {}", layer.name, self.path().display());
            let mut hashing = HashingReader::new(reader);
            let (digest, _) = store.add_layer_unlocked(&mut hashing, &what)?;
            let (blob_hex, _) = hashing.finish().map_err(|e| ImageError::CorruptArchive {
                what: what.clone(),
                position: "at its end".into(),
                detail: e.to_string(),
            })?;
            if let Some(expected) = &layer.blob_digest {
                if expected != &format!("sha256:{blob_hex}") {
                    return Err(ImageError::DigestMismatch {
                        what,
                        expected: expected.clone(),
                        actual: format!("sha256:{blob_hex}"),
                    });
                }
            }
            Ok(digest)
        };
        match self {
            Source::Dir { root } => {
                for layer in wanted {
                    let path = root.join(&layer.name);
                    let mut file =
                        BufReader::new(File::open(&path).map_err(io_err("open", &path))?);
                    stored.insert(layer.name.clone(), add(&mut file, layer)?);
                }
            }
            Source::Tar { small, .. } => {
                let mut rest: Vec<&WantedLayer> = Vec::new();
                for layer in wanted {
                    match small.get(&layer.name) {
                        Some(bytes) => {
                            stored.insert(layer.name.clone(), add(&mut &bytes[..], layer)?);
                        }
                        None => rest.push(layer),
                    }
                }
                if !rest.is_empty() {
                    let mut archive = self.open_tar()?;
                    for entry in archive.entries().map_err(|e| self.tar_error(e))? {
                        let mut entry = entry.map_err(|e| self.tar_error(e))?;
                        let Some(name) = normalize(&entry.path_bytes()) else {
                            continue;
                        };
                        if let Some(layer) = rest.iter().find(|l| l.name == name) {
                            if let std::collections::hash_map::Entry::Vacant(slot) =
                                stored.entry(name)
                            {
                                slot.insert(add(&mut entry, layer)?);
                            }
                        }
                    }
                }
            }
        }
        for layer in wanted {
            if !stored.contains_key(&layer.name) {
                return Err(self.error(format!("the layer {} is missing from it", layer.name)));
            }
        }
        Ok(stored)
    }
}

fn parse_json<'a, T: Deserialize<'a>>(
    source: &Source,
    name: &str,
    bytes: &'a [u8],
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| source.error(format!("`{name}` is not valid: {e}")))
}

/// The tags named by an index descriptor's annotations.
fn names_from_annotations(
    annotations: Option<&HashMap<String, String>>,
    tags: &mut Vec<Tag>,
    unusable: &mut Vec<String>,
) {
    let Some(annotations) = annotations else {
        return;
    };
    if let Some(name) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        match Tag::parse(name) {
            Ok(tag) => {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
                return;
            }
            Err(e) => unusable.push(format!("{name}: {e}")),
        }
    }
    if let Some(name) = annotations.get(ANNOTATION_REF_NAME) {
        match Tag::parse(name) {
            Ok(tag) => {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            Err(_) => unusable.push(format!(
                "{name}: the {ANNOTATION_REF_NAME} annotation is a version without a NAME; give \
                 the tag when importing"
            )),
        }
    }
}

/// The images of an OCI image layout.
fn oci_images(source: &mut Source) -> Result<Vec<FoundImage>, ImageError> {
    let layout = source.read_json("oci-layout", None)?;
    let layout: serde_json::Value = parse_json(source, "oci-layout", &layout)?;
    let version = layout
        .get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !version.starts_with("1.") {
        return Err(source.error(format!(
            "its oci-layout says imageLayoutVersion `{version}`; Strata reads version 1.x"
        )));
    }
    let index_bytes = source.read_json("index.json", None)?;
    let index: ImageIndex = parse_json(source, "index.json", &index_bytes)?;
    let mut found: Vec<FoundImage> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let host = Platform::host();
    let mut other_platforms: Vec<String> = Vec::new();
    for descriptor in index.manifests() {
        // A layout may list the images of several platforms itself: take this machine's.
        if let Some(platform) = descriptor.platform() {
            let (os, arch) = (
                platform.os().to_string(),
                platform.architecture().to_string(),
            );
            if os != host.os || arch != host.architecture {
                other_platforms.push(format!("{os}/{arch}"));
                continue;
            }
        }
        let mut tags = Vec::new();
        let mut unusable = Vec::new();
        names_from_annotations(descriptor.annotations().as_ref(), &mut tags, &mut unusable);
        let mut manifests = Vec::new();
        collect_manifests(source, descriptor, 0, true, &mut manifests)?;
        for (digest, manifest) in manifests {
            if let Some(&at) = seen.get(&digest) {
                for tag in &tags {
                    if !found[at].tags.contains(tag) {
                        found[at].tags.push(tag.clone());
                    }
                }
                found[at].unusable_names.extend(unusable.iter().cloned());
                continue;
            }
            let image = found_from_oci_manifest(source, &manifest, tags.clone(), unusable.clone())?;
            seen.insert(digest, found.len());
            found.push(image);
        }
    }
    if found.is_empty() && !other_platforms.is_empty() {
        return Err(source.error(format!(
            "it has no image for this machine ({}/{}); it has {}",
            host.os,
            host.architecture,
            other_platforms.join(", ")
        )));
    }
    Ok(found)
}

fn blob_name(source: &Source, digest: &oci_spec::image::Digest) -> Result<String, ImageError> {
    let text = digest.to_string();
    match text.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(format!("blobs/sha256/{hex}")),
        _ => Err(source.error(format!(
            "the digest `{text}` is not sha256; Strata reads sha256 blobs only"
        ))),
    }
}

/// The image manifests a descriptor leads to (through indexes, picking this machine's
/// platform), with the digests they are known by.
fn collect_manifests(
    source: &Source,
    descriptor: &Descriptor,
    depth: usize,
    top: bool,
    out: &mut Vec<(String, ImageManifest)>,
) -> Result<(), ImageError> {
    if depth > MAX_INDEX_DEPTH {
        return Err(source.error(format!(
            "its image indexes nest more than {MAX_INDEX_DEPTH} deep"
        )));
    }
    let name = blob_name(source, descriptor.digest())?;
    let digest = descriptor.digest().to_string();
    let media = descriptor.media_type().to_string();
    let is_index =
        matches!(descriptor.media_type(), MediaType::ImageIndex) || media == DOCKER_MANIFEST_LIST;
    let is_manifest =
        matches!(descriptor.media_type(), MediaType::ImageManifest) || media == DOCKER_MANIFEST;
    if is_manifest {
        let bytes = source.read_json(&name, Some(&digest))?;
        let manifest: ImageManifest = parse_json(source, &name, &bytes)?;
        out.push((digest, manifest));
        return Ok(());
    }
    if !is_index {
        if top {
            return Err(source.error(format!(
                "index.json points at `{media}`, which is neither an image manifest nor an index"
            )));
        }
        return Ok(());
    }
    let bytes = source.read_json(&name, Some(&digest))?;
    let index: ImageIndex = parse_json(source, &name, &bytes)?;
    let host = Platform::host();
    let mut platforms = Vec::new();
    let mut matched = false;
    for child in index.manifests() {
        match child.platform() {
            Some(platform) => {
                let os = platform.os().to_string();
                let arch = platform.architecture().to_string();
                platforms.push(format!("{os}/{arch}"));
                if os == host.os && arch == host.architecture && !matched {
                    matched = true;
                    collect_manifests(source, child, depth + 1, false, out)?;
                }
            }
            None => {
                matched = true;
                collect_manifests(source, child, depth + 1, false, out)?;
            }
        }
    }
    if !matched {
        return Err(source.error(format!(
            "the index {name} has no image for this machine ({}/{}); it has {}",
            host.os,
            host.architecture,
            platforms.join(", ")
        )));
    }
    Ok(())
}

fn found_from_oci_manifest(
    source: &Source,
    manifest: &ImageManifest,
    tags: Vec<Tag>,
    unusable_names: Vec<String>,
) -> Result<FoundImage, ImageError> {
    let config_name = blob_name(source, manifest.config().digest())?;
    let config_bytes = source.read_json(&config_name, Some(manifest.config().digest().as_ref()))?;
    let config: ImageConfiguration = parse_json(source, &config_name, &config_bytes)?;
    let mut layers = Vec::new();
    for layer in manifest.layers() {
        let media = layer.media_type().to_string();
        match layer.media_type() {
            MediaType::ImageLayer
            | MediaType::ImageLayerGzip
            | MediaType::ImageLayerNonDistributable
            | MediaType::ImageLayerNonDistributableGzip => {}
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                return Err(ImageError::UnsupportedCompression {
                    what: format!(
                        "the layer {} of {}",
                        layer.digest(),
                        source.path().display()
                    ),
                    detail: format!("zstd-compressed (media type {media})"),
                })
            }
            _ if media == DOCKER_LAYER_GZIP || media == DOCKER_LAYER => {}
            _ => {
                return Err(source.error(format!(
                    "the layer {} has the media type `{media}`, which is not a layer Strata \
                     reads (a tar, plain or gzip)",
                    layer.digest()
                )))
            }
        }
        let name = blob_name(source, layer.digest())?;
        let resolved = source
            .resolve(&name)
            .ok_or_else(|| source.error(format!("the layer {name} is missing from it")))?;
        layers.push(WantedLayer {
            name: resolved,
            blob_digest: Some(layer.digest().to_string()),
        });
    }
    Ok(FoundImage {
        config,
        config_name,
        layers,
        tags,
        unusable_names,
    })
}

/// One image of docker's manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The images of a `docker save` archive.
fn docker_images(source: &mut Source) -> Result<Vec<FoundImage>, ImageError> {
    let bytes = source.read_json("manifest.json", None)?;
    let manifests: Vec<DockerManifest> = parse_json(source, "manifest.json", &bytes)?;
    let mut found = Vec::new();
    for entry in manifests {
        // `<hex>.json` (classic) or `blobs/sha256/<hex>` (docker 25+): the name is the digest.
        let file = entry.config.rsplit('/').next().unwrap_or_default();
        let hex = file.strip_suffix(".json").unwrap_or(file);
        let expected = is_sha256_hex(hex).then(|| format!("sha256:{hex}"));
        let config_bytes = source.read_json(&entry.config, expected.as_deref())?;
        let config: ImageConfiguration = parse_json(source, &entry.config, &config_bytes)?;
        let mut layers = Vec::new();
        for name in &entry.layers {
            let resolved = source
                .resolve(name)
                .ok_or_else(|| source.error(format!("the layer `{name}` is missing from it")))?;
            // docker 25+ names layers by the digest of the blob as stored.
            let blob_digest = resolved
                .strip_prefix("blobs/sha256/")
                .filter(|h| is_sha256_hex(h))
                .map(|h| format!("sha256:{h}"));
            layers.push(WantedLayer {
                name: resolved,
                blob_digest,
            });
        }
        let mut tags = Vec::new();
        let mut unusable = Vec::new();
        for name in entry.repo_tags.unwrap_or_default() {
            match Tag::parse(&name) {
                Ok(tag) if !tags.contains(&tag) => tags.push(tag),
                Ok(_) => {}
                Err(e) => unusable.push(format!("{name}: {e}")),
            }
        }
        found.push(FoundImage {
            config,
            config_name: entry.config.clone(),
            layers,
            tags,
            unusable_names: unusable,
        });
    }
    Ok(found)
}
