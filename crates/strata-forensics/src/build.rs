//! Making an archive: the payload streamed through zstd into a file beside the archive, each
//! file hashed as it goes in, then the manifest, the node's signature and the outer tar.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::manifest::{FileEntry, FileKind, Manifest, Origin};
use crate::sign::Signer;
use crate::{parts, ForensicsError};

/// How hard zstd works: level 3 (its default) keeps up with a disk.
const ZSTD_LEVEL: i32 = 3;

/// An archive being made (see the crate's docs for its parts).
pub struct ArchiveBuilder {
    out: PathBuf,
    payload_path: PathBuf,
    payload: tar::Builder<zstd::Encoder<'static, HashingWriter<BufWriter<File>>>>,
    origin: Origin,
    files: Vec<FileEntry>,
    bytes: u64,
}

/// A finished archive.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// The archive file's size.
    pub size: u64,
}

impl ArchiveBuilder {
    /// Begins the archive of `origin` at `out` (its payload is written to `out.payload` until
    /// [`ArchiveBuilder::finish`]).
    pub fn create(out: &Path, origin: Origin) -> Result<ArchiveBuilder, ForensicsError> {
        let payload_path = out.with_extension("payload");
        let file = File::create(&payload_path)
            .map_err(|e| ForensicsError::io(payload_path.display(), e))?;
        let hashing = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
        };
        let mut encoder = zstd::Encoder::new(hashing, ZSTD_LEVEL)
            .map_err(|e| ForensicsError::io(payload_path.display(), e))?;
        // Compression on workers of its own, beside this thread's reading and hashing.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        encoder
            .multithread(workers)
            .map_err(|e| ForensicsError::io(payload_path.display(), e))?;
        let mut payload = tar::Builder::new(encoder);
        payload.follow_symlinks(false);
        Ok(ArchiveBuilder {
            out: out.to_path_buf(),
            payload_path,
            payload,
            origin,
            files: Vec::new(),
            bytes: 0,
        })
    }

    /// Adds `source` under `name` in the payload: a file, a symbolic link (not followed), or
    /// a directory with everything under it, in name order. Sockets, pipes and devices are
    /// left out (they hold no data).
    pub fn add_path(&mut self, source: &Path, name: &str) -> Result<(), ForensicsError> {
        let meta = std::fs::symlink_metadata(source)
            .map_err(|e| ForensicsError::io(source.display(), e))?;
        let kind = if meta.file_type().is_symlink() {
            FileKind::Symlink
        } else if meta.is_dir() {
            FileKind::Directory
        } else if meta.is_file() {
            FileKind::File
        } else {
            return Ok(());
        };
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let mut entry = FileEntry {
            path: name.to_string(),
            kind,
            size: 0,
            mode: format!("{:o}", meta.mode() & 0o7777),
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: meta.mtime().max(0) as u64,
            sha256: None,
            link: None,
        };
        let io = |e| ForensicsError::io(source.display(), e);
        match kind {
            FileKind::Directory => {
                header.set_size(0);
                self.payload
                    .append_data(&mut header, name, std::io::empty())
                    .map_err(io)?;
                self.files.push(entry);
                let mut children: Vec<_> = std::fs::read_dir(source)
                    .map_err(io)?
                    .collect::<Result<_, _>>()
                    .map_err(io)?;
                children.sort_by_key(|child| child.file_name());
                for child in children {
                    let child_name = format!(
                        "{}/{}",
                        name.trim_end_matches('/'),
                        child.file_name().to_string_lossy()
                    );
                    self.add_path(&child.path(), &child_name)?;
                }
            }
            FileKind::Symlink => {
                let target = std::fs::read_link(source).map_err(io)?;
                header.set_size(0);
                self.payload
                    .append_link(&mut header, name, &target)
                    .map_err(io)?;
                entry.link = Some(target.to_string_lossy().into_owned());
                self.files.push(entry);
            }
            FileKind::File => {
                let file = File::open(source).map_err(io)?;
                // Exactly the size the header says, even if the file grows meanwhile; one
                // that shrank is refused (its entry would break the payload).
                let mut reader = HashingReader {
                    inner: file.take(meta.len()),
                    hasher: Sha256::new(),
                    read: 0,
                };
                header.set_size(meta.len());
                self.payload
                    .append_data(&mut header, name, &mut reader)
                    .map_err(io)?;
                if reader.read != meta.len() {
                    return Err(io(std::io::Error::other(format!(
                        "it shrank from {} to {} bytes while it was archived",
                        meta.len(),
                        reader.read
                    ))));
                }
                entry.size = reader.read;
                entry.sha256 = Some(format!("sha256:{}", hex::encode(reader.hasher.finalize())));
                self.bytes += entry.size;
                self.files.push(entry);
            }
        }
        Ok(())
    }

    /// Adds `bytes` as file `name` (mode `mode`, owned by root, timed `mtime`): what the
    /// archive is made with rather than found on disk (the node's slice of the event log).
    pub fn add_bytes(
        &mut self,
        name: &str,
        bytes: &[u8],
        mode: u32,
        mtime: u64,
    ) -> Result<(), ForensicsError> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.payload
            .append_data(&mut header, name, bytes)
            .map_err(|e| ForensicsError::io(name, e))?;
        self.files.push(FileEntry {
            path: name.to_string(),
            kind: FileKind::File,
            size: bytes.len() as u64,
            mode: format!("{:o}", mode & 0o7777),
            uid: 0,
            gid: 0,
            mtime,
            sha256: Some(format!("sha256:{}", hex::encode(Sha256::digest(bytes)))),
            link: None,
        });
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Finishes the payload, writes the manifest and the node's signature, and puts the
    /// parts together at the archive's path.
    pub fn finish(self, node: &Signer) -> Result<Built, ForensicsError> {
        let ArchiveBuilder {
            out,
            payload_path,
            payload,
            origin,
            files,
            bytes,
        } = self;
        let io = |e| ForensicsError::io(payload_path.display(), e);
        let encoder = payload.into_inner().map_err(io)?;
        let mut hashing = encoder.finish().map_err(io)?;
        hashing.flush().map_err(io)?;
        let payload_sha256 = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
        drop(hashing.inner);
        let manifest = Manifest {
            format: Manifest::FORMAT,
            origin,
            files,
            payload_sha256,
            bytes,
        };
        let manifest_bytes = manifest.to_bytes();
        let signature = node.sign(&manifest_bytes)?;
        let out_io = |e| ForensicsError::io(out.display(), e);
        let file = File::create(&out).map_err(out_io)?;
        let mut archive = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        let mut small = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o444);
            header.set_mtime(manifest.origin.created_at / 1000);
            header.set_entry_type(tar::EntryType::Regular);
            archive.append_data(&mut header, name, bytes)
        };
        small(parts::MANIFEST, &manifest_bytes).map_err(out_io)?;
        small(parts::NODE_CERTIFICATE, node.certificate_pem().as_bytes()).map_err(out_io)?;
        small(parts::NODE_SIGNATURE, &signature).map_err(out_io)?;
        archive
            .append_path_with_name(&payload_path, parts::PAYLOAD)
            .map_err(out_io)?;
        let mut writer = archive.into_inner().map_err(out_io)?;
        writer.flush().map_err(out_io)?;
        writer
            .into_inner()
            .map_err(|e| out_io(e.into_error()))?
            .sync_all()
            .map_err(out_io)?;
        // Wiped, not only removed: it holds what was archived, and a filesystem keeps a
        // removed file's blocks as they were.
        crate::wipe::wipe_file(&payload_path)?;
        let size = std::fs::metadata(&out).map_err(out_io)?.len();
        Ok(Built {
            path: out,
            manifest,
            size,
        })
    }
}

/// Writes through to `inner`, hashing what passes.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads through from `inner`, hashing and counting what passes.
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}
