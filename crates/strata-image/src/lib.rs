//! Container images for Strata's `container` driver.
//!
//! An image is an ordered stack of content-addressed layers (typically a just-enough-OS base,
//! platform bundles, then the application) plus a run configuration (entrypoint, cmd, env,
//! working directory, user, exposed ports); the service's own configuration is kept apart, as
//! for every driver. Each node, and the CLI's machine, has an [`ImageStore`]. A layer is
//! stored once, unpacked once, and shared read-only by every instance: the driver mounts the
//! unpacked layer directories as overlayfs lower directories ([`ImageStore::lower_dirs`]), with
//! a per-instance upper directory.
//!
//! # The store's layout
//!
//! ```text
//! <root>/
//!   lock                      flock: shared by every operation, exclusive for gc
//!   blobs/sha256/<hex>        layer tars, UNCOMPRESSED; <hex> = sha256 of the tar (the OCI diff_id)
//!   layers/<hex>/             the unpacked tree of a layer
//!   manifests/<hex>.json      an image (Manifest); <hex> = sha256 of this canonical JSON
//!   tags/<name>/<version>     NAME:VERSION -> `sha256:<manifest hex>`; `/` in NAME is stored as `+`
//! ```
//!
//! Every write is atomic: blobs, manifests and tags are written to `.tmp-*` files in their own
//! directory and renamed; a layer is unpacked into `layers/.tmp-<hex>-<random>/` and renamed
//! into place, so a `layers/<hex>/` is always complete. [`ImageStore::gc`] removes leftovers
//! of interrupted writes, untagged images that no instance uses, and the layers no kept image
//! has. [`ImageStore::remove`] only untags: the image goes at the next `gc` unless another
//! tag names it or an instance uses it, so a running instance never loses its layers.
//!
//! References: `NAME:VERSION` (NAME like a lowercase repository name, VERSION like an OCI
//! tag), `sha256:<hex>`, or a unique prefix of the hex digits ([`Reference`]).
//!
//! # Unpacking is a security boundary
//!
//! Layers come from anywhere, so [`ImageStore::unpack`] reads the tar entry by entry and
//! refuses, naming the entry, and leaving nothing behind:
//!
//! - absolute paths, `..` components, NUL bytes;
//! - anything that would be written through a symbolic link: each parent directory is checked
//!   on disk (without following links) to be a real directory inside the layer's root, and
//!   missing ones are created one at a time;
//! - symbolic links whose *relative* target climbs above the layer's root from the link's own
//!   directory. Absolute targets (`/usr/lib/x`) are allowed: at run time they resolve inside
//!   the container's root, and the store never follows links;
//! - hard links whose target is absolute, has `..`, or is not a regular file unpacked earlier
//!   from the same layer;
//! - character and block devices, FIFOs, sparse files and unknown entry types;
//! - an entry replacing a directory of the same layer with something else;
//! - archives over the [`UnpackLimits`] (total size, number of entries, path length), refused
//!   at the entry that crosses the limit, before its data is written (the same limits are
//!   checked when a layer is added).
//!
//! Modes (setuid/setgid included) and mtimes are kept; as root, entries are chowned to the
//! archive's numeric uid/gid (as another user, ownership is left alone). OCI whiteouts become
//! overlayfs ones: `dir/.wh.NAME` a 0:0 character device `dir/NAME`, `dir/.wh..wh..opq` the
//! `trusted.overlay.opaque=y` xattr on `dir`; both need root, and unpacking such a layer as
//! another user fails with a message saying so. The blob is re-hashed while it is unpacked,
//! so a corrupted blob is refused too.
//!
//! The unpacked trees hold symbolic links that only mean something inside a container (an
//! absolute target resolves in the container's root): code on the host must never follow
//! links inside `layers/` (the store never does).
//!
//! # Building images
//!
//! - [`ImageStore::build_from_dir`]: a directory becomes one deterministic layer (sorted
//!   entries, numeric owners, no atime/ctime, optional fixed mtime) on top of base images.
//! - [`ImageStore::build_jeos`]: the smallest root that runs one program: the program (at
//!   `/bin/<name>` unless told otherwise), its ELF interpreter (`PT_INTERP`), and the closure of
//!   its shared libraries read from the dynamic section (`DT_NEEDED`, `DT_RUNPATH`, `DT_RPATH`
//!   with `$ORIGIN`), searched like the loader does: RPATH (when there is no RUNPATH), RUNPATH,
//!   the ld.so.conf directories, then the default directories (`/lib/<triplet>`,
//!   `/usr/lib/<triplet>`, `/lib64`, `/usr/lib64`, `/lib`, `/usr/lib`), recursively. Each file's
//!   content is copied to the path the loader looks it up at, so the root runs under `chroot`.
//!   See [`jeos`] for the details.
//!
//! # Moving images
//!
//! [`ImageStore::export_oci_layout`] writes an image as an OCI image layout in one tar;
//! [`ImageStore::import`] reads OCI image layouts (directory or tar) and `docker save` archives
//! (classic and docker 25+), gzip or plain layers, checking every digest and the config's
//! `rootfs.diff_ids`. zstd layers are refused with a message naming the media type.
//!
//! # Limits
//!
//! - Extended attributes in layers (PAX `SCHILY.xattr.*`, e.g. file capabilities in
//!   `security.capability`) are not restored; neither are ACLs.
//! - zstd, xz and bzip2 layers are refused; there is no registry client (images travel as
//!   files: export, copy, import).
//! - [`ImageStore::gc`] protects only what is tagged or passed as in use: a caller that adds
//!   layers with [`ImageStore::add_layer`] and makes the image later with
//!   [`ImageStore::put_image`] must not run `gc` in between (builds and imports hold the
//!   store's lock for their whole run, so they are safe).
//! - JEOS follows glibc's loader (musl's `libc.so` is not special-cased), does not read
//!   `LD_LIBRARY_PATH` or hwcap subdirectories, and finds nothing that a program opens itself
//!   with `dlopen` (add such files with the includes). The program's `$ORIGIN` needs `/proc`
//!   in the container.

mod build;
mod digest;
pub mod elf;
mod error;
mod ids;
pub mod jeos;
mod limits;
mod manifest;
mod oci;
mod reference;
mod store;
mod unpack;

pub use build::{BuildOptions, BuiltImage, LayerOptions, Owner};
pub use digest::{LayerDigest, ManifestDigest};
pub use error::ImageError;
pub use ids::IdShift;
pub use jeos::{JeosFile, JeosFileKind, JeosOptions, JeosReport, LibrarySearch};
pub use limits::UnpackLimits;
pub use manifest::{Image, ImageConfigSpec, LayerRef, Manifest, Platform, MANIFEST_SCHEMA_VERSION};
pub use oci::{ImportOptions, ImportedImage, ANNOTATION_CONTAINERD_NAME};
pub use reference::{Reference, Tag};
pub use store::{GcReport, ImageStore, RemoveReport, ToReference};
pub use unpack::{OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
