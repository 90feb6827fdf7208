//! Forensic archives: what a node (or an instance) held when it left service, kept so that it
//! can be investigated later and shown not to have changed since.
//!
//! An archive is one file, an uncompressed tar of five parts:
//!
//! - `manifest.json` ([`Manifest`]): who made it (the node, its kernel, the Strata version,
//!   the releases it ran, when), and every file archived with its path, kind, size, mode,
//!   owner, modification time and SHA-256, and the SHA-256 of the payload;
//! - `node-certificate.pem`: the node's certificate, issued by the cluster CA;
//! - `node-signature`: the node's signature (its certificate's key, ECDSA P-256) over the
//!   manifest's bytes;
//! - `payload.tar.zst`: the files themselves, a tar compressed with zstd;
//! - `countersignature`, appended by the control plane once it verified the rest: the
//!   cluster CA's signature over the manifest's bytes and the node's signature together.
//!
//! [`verify`] needs nothing but the file and the CA's certificate: it checks that the node's
//! certificate was issued by the CA for the node the manifest names, both signatures, the
//! payload's digest, and every file against the manifest (its bytes, size, mode, owner and
//! time), and says exactly which part or file fails. Building ([`ArchiveBuilder`]) streams:
//! each file is read once, hashed as it is compressed, never held in memory whole.
//!
//! Once an archive is kept, [`wipe`] overwrites and removes what was archived, and
//! [`wipe_device_under`] the whole device a data directory has to itself.

mod build;
mod device;
mod error;
mod manifest;
mod sign;
mod verify;
mod wipe;

pub use build::{ArchiveBuilder, Built};
pub use device::{check_own_device, own_device, wipe_device, wipe_device_under, DeviceWipe};
pub use error::ForensicsError;
pub use manifest::{FileEntry, FileKind, Manifest, Origin};
pub use sign::{countersign, Signer};
pub use verify::{verify, Verified};
pub use wipe::{wipe, wipe_file, WipeReport};

/// The parts of an archive, by their names in its outer tar.
pub mod parts {
    pub const MANIFEST: &str = "manifest.json";
    pub const NODE_CERTIFICATE: &str = "node-certificate.pem";
    pub const NODE_SIGNATURE: &str = "node-signature";
    pub const PAYLOAD: &str = "payload.tar.zst";
    pub const COUNTERSIGNATURE: &str = "countersignature";
}
