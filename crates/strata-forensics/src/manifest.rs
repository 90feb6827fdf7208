//! The manifest: who made an archive, and every file in it with its metadata and hash.

use serde::{Deserialize, Serialize};

/// What an archive holds and where it comes from. Its JSON bytes are what the node signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format's version (1).
    pub format: u32,
    pub origin: Origin,
    /// Every file, directory and link archived, in the payload's order.
    pub files: Vec<FileEntry>,
    /// `sha256:<hex>` of `payload.tar.zst`.
    pub payload_sha256: String,
    /// The bytes of the files archived (before compression).
    pub bytes: u64,
}

/// Where an archive was made, and of what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Origin {
    /// The node (its certificate must name it).
    pub node: String,
    /// What was archived: `node` (a decommission) or `instance:ID` (a quarantine).
    pub subject: String,
    /// `uname -r` of the node's kernel.
    pub kernel: String,
    /// The Strata version of the agent that made it.
    pub strata_version: String,
    /// The releases the node ran (`env/service#N`).
    pub releases: Vec<String>,
    /// When it was made, milliseconds since the epoch.
    pub created_at: u64,
}

/// One archived file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its path in the payload (relative, `/`-separated).
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits and type bits as `st_mode` holds them, in octal text.
    pub mode: String,
    pub uid: u64,
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// `sha256:<hex>` of a regular file's bytes; a link's target for a symbolic link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
}

impl Manifest {
    pub const FORMAT: u32 = 1;

    /// The bytes signed: the manifest's JSON as stored in the archive.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest serializes")
    }
}
