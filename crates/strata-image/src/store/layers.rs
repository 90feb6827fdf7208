//! Layers in the store: adding a layer tar (plain or gzip) as a blob under its digest,
//! checked against the limits as it streams, and unpacking a blob safely into
//! `layers/<hex>/`, once.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;
use tempfile::NamedTempFile;

use super::files::RemoveOnDrop;
use super::{ImageStore, TMP_PREFIX};
use crate::digest::{HashingReader, HashingWriter, LayerDigest};
use crate::error::{io_err, sniff, ImageError};
use crate::ids::IdShift;
use crate::limits::{display_path, LimitCounter};
use crate::unpack::unpack_tar;

/// A blob being written: hashed as it goes to a temporary file of `blobs/sha256/`.
pub(crate) type BlobWriter = HashingWriter<BufWriter<File>>;

impl ImageStore {
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
        let (temp, writer) = self.new_blob()?;
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
        self.keep_blob(temp, tee.out)
    }

    /// A new blob: a temporary file in `blobs/sha256/`, and the writer that hashes what goes
    /// into it. [`ImageStore::keep_blob`] then stores it under its digest.
    pub(crate) fn new_blob(&self) -> Result<(NamedTempFile, BlobWriter), ImageError> {
        let dir = self.blobs_dir();
        let temp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(&dir)
            .map_err(io_err("create a temporary file in", &dir))?;
        let file = temp
            .as_file()
            .try_clone()
            .map_err(io_err("open", temp.path()))?;
        Ok((temp, HashingWriter::new(BufWriter::new(file))))
    }

    /// Syncs a blob written through [`ImageStore::new_blob`] and moves it to
    /// `blobs/sha256/<hex>` (unless the store has it already); returns its digest and size.
    pub(crate) fn keep_blob(
        &self,
        temp: NamedTempFile,
        writer: BlobWriter,
    ) -> Result<(LayerDigest, u64), ImageError> {
        let (buffered, hex, size) = writer.finish();
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
        self.unpack_unlocked(layer, None)
    }

    /// Unpacks the layer with its owners shifted (`shift`: for containers in a user
    /// namespace) into a directory of its own, once per shift; `None` is [`Self::unpack`].
    pub(crate) fn unpack_unlocked(
        &self,
        layer: &LayerDigest,
        shift: Option<IdShift>,
    ) -> Result<PathBuf, ImageError> {
        let target = match shift {
            None => self.layer_dir(layer),
            Some(shift) => self
                .layers_dir()
                .join(format!("{}{}", layer.hex(), shift.dir_suffix())),
        };
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
        unpack_tar(&mut reader, &temp, &what, &self.limits, self.is_root, shift)?;
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
