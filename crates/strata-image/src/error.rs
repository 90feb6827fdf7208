//! Everything that can go wrong with images, each message saying what went wrong, where (the
//! archive entry, the file, the layer) and how to fix it.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::LayerDigest;

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `create the directory`.
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error(
        "{what} is not a tar archive: {detail}. A layer must be a tar archive, plain or \
         gzip-compressed (e.g. `tar -C ROOT -cf layer.tar .`)"
    )]
    NotATar { what: String, detail: String },

    #[error(
        "{what} is {detail}: Strata reads plain and gzip-compressed layers only. Convert it \
         first, e.g. `skopeo copy --dest-compress-format gzip` for an image, or decompress the \
         file (`zstd -d`, `xz -d`, `bzip2 -d`)"
    )]
    UnsupportedCompression { what: String, detail: String },

    #[error(
        "{layer}: refused the entry `{entry}`: {reason}. Nothing of the layer was unpacked; \
         rebuild the layer without that entry"
    )]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },

    #[error(
        "{layer}: at the entry `{entry}` the archive crosses the limit of {limit}. The layer was \
         refused and nothing was unpacked; if the layer is legitimate, raise the limit \
         (UnpackLimits)"
    )]
    LimitExceeded {
        layer: String,
        entry: String,
        /// The limit, e.g. `1000000 entries (max_entries)`.
        limit: String,
    },

    #[error(
        "{layer}: the entry `{entry}` is an overlayfs whiteout ({what}), and making one needs \
         root, which this process is not. Nothing was unpacked; unpack the layer as root (the \
         node agent runs as root)"
    )]
    NeedsRoot {
        layer: String,
        entry: String,
        /// `a deleted file: a 0:0 character device` or `an opaque directory: the
        /// trusted.overlay.opaque xattr`.
        what: &'static str,
    },

    #[error(
        "{what} is damaged {position}: {detail}. Nothing was unpacked; re-create or re-download it"
    )]
    CorruptArchive {
        what: String,
        /// `at the entry `x``, `after the entry `x``, `before its first entry`.
        position: String,
        detail: String,
    },

    #[error(
        "{what}: the content's sha256 is {actual}, but {expected} was expected: the data is \
         corrupt or was tampered with. Remove it and import it again"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error(
        "layer {digest} is not in the image store {root}: add it first (add_layer, a build or \
         an import)"
    )]
    LayerNotFound { digest: LayerDigest, root: PathBuf },

    #[error("no image `{reference}` in the image store {root}{hint}")]
    ImageNotFound {
        reference: String,
        root: PathBuf,
        /// Starts with `: ` when there is something to suggest.
        hint: String,
    },

    #[error(
        "`{reference}` is ambiguous: it is the start of {candidates}. Give more hex digits of \
         the digest"
    )]
    AmbiguousReference {
        reference: String,
        candidates: String,
    },

    #[error(
        "`{input}` is not a valid image tag: {reason}. A tag is NAME:VERSION, where NAME is \
         lowercase letters and digits in components separated by `/` (inside a component \
         `.`, `_`, `__` or dashes may separate them), e.g. `shop/api`, and VERSION is up to \
         128 letters, digits, `_`, `.` and `-` that does not start with `.` or `-`, e.g. `1.4.2`"
    )]
    InvalidTag { input: String, reason: String },

    #[error(
        "`{input}` is not a valid digest: {reason}. A digest is `sha256:` followed by 64 \
         lowercase hex digits"
    )]
    InvalidDigest { input: String, reason: String },

    #[error(
        "`{input}` is not an image reference: {reason}. Use NAME:VERSION (e.g. `shop/api:1.4`), \
         `sha256:<digest>` or a unique prefix of the digest's hex digits"
    )]
    InvalidReference { input: String, reason: String },

    #[error(
        "the manifest {path} is damaged: {detail}. Remove it and import or build the image again"
    )]
    CorruptManifest { path: PathBuf, detail: String },

    #[error("cannot import {archive}: {detail}")]
    Import { archive: PathBuf, detail: String },

    #[error(
        "cannot import {archive}: the layer {layer} has the uncompressed digest {actual}, but the \
         image config says rootfs.diff_ids[{index}] = {expected}: the archive is corrupt or was \
         tampered with. Export it again"
    )]
    DiffIdMismatch {
        archive: PathBuf,
        /// The layer's path in the archive.
        layer: String,
        index: usize,
        expected: String,
        actual: String,
    },

    #[error("cannot use {path} as an ELF program or library: {detail}")]
    Elf { path: PathBuf, detail: String },

    #[error(
        "the shared library `{library}`, needed by {needed_by}, was not found on this machine; \
         searched {searched}. Install the package that provides it, or pass the file in the \
         includes"
    )]
    MissingLibrary {
        library: String,
        /// The chain from the program to the object that needs the library.
        needed_by: String,
        searched: String,
    },

    #[error("cannot put {path} into a layer: {reason}")]
    Build { path: PathBuf, reason: String },

    #[error("{what} `{path}` is not usable: {reason}")]
    InvalidPath {
        what: &'static str,
        path: String,
        reason: String,
    },

    #[error(
        "the archive has {count} images, but one set of tags was given: import them without \
         overriding the tags, or tag them afterwards by digest"
    )]
    TagOverrideAmbiguous { count: usize },
}

impl ImageError {
    /// An [`ImageError::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        ImageError::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// `.map_err(io_err("read", &path))`
pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::io(action, path, source)
}

/// A short guess at what a file that should have been a tar archive is, for messages.
pub(crate) fn sniff(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "it is empty".into();
    }
    if bytes.starts_with(b"\x7fELF") {
        return "it is an ELF executable or library".into();
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return "it is a zip archive".into();
    }
    if bytes.starts_with(b"\0asm") {
        return "it is a WebAssembly module".into();
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return "it looks like JSON".into();
    }
    if bytes
        .iter()
        .take(512)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        let first: String = trimmed.chars().take(40).collect();
        return format!("it looks like text, starting `{}`", first.trim_end());
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("it starts with the bytes {}", head.join(" "))
}
