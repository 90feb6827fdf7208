//! Where an import reads from ([`Source`]): a directory, or a tar (maybe gzip-compressed)
//! indexed in a first pass; finding files in it (following links that stay inside), reading
//! its JSON files checked against their digests, and storing its layers.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use super::WantedLayer;
use crate::digest::{HashingReader, LayerDigest};
use crate::error::{io_err, ImageError};
use crate::store::{Compression, ImageStore};
use crate::unpack::split_relative;

/// The largest JSON file (index, manifest, config) an import reads.
const MAX_JSON: u64 = 4 << 20;
/// How much of an archive's small files an import keeps in memory while looking for its JSON.
const MAX_SMALL_TOTAL: u64 = 64 << 20;
/// How many symbolic links are followed to find a file in an archive.
const MAX_LINK_HOPS: usize = 8;

/// Where an import reads from: a directory, or a tar (maybe gzip-compressed) read in passes.
pub(super) enum Source {
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
pub(super) enum TarEntry {
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
    pub(super) fn open(path: &Path, store: &ImageStore) -> Result<Source, ImageError> {
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

    pub(super) fn path(&self) -> &Path {
        match self {
            Source::Dir { root } => root,
            Source::Tar { path, .. } => path,
        }
    }

    pub(super) fn error(&self, detail: String) -> ImageError {
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
    pub(super) fn resolve(&self, name: &str) -> Option<String> {
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

    pub(super) fn exists(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    /// A few of the archive's top-level names, for messages.
    pub(super) fn describe_contents(&self) -> String {
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
    pub(super) fn read_json(
        &self,
        name: &str,
        digest: Option<&str>,
    ) -> Result<Vec<u8>, ImageError> {
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
    pub(super) fn add_layers(
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

pub(super) fn parse_json<'a, T: Deserialize<'a>>(
    source: &Source,
    name: &str,
    bytes: &'a [u8],
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| source.error(format!("`{name}` is not valid: {e}")))
}
