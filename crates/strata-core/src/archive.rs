//! Forensic archives as the control plane keeps them: which node made one of what, when, and
//! where its bytes are (the archive itself is `strata_forensics`' format, in the blob store).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Millis;

/// A forensic archive the control plane verified, countersigned and keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArchiveRecord {
    /// `NODE-MADE_AT` (milliseconds): what `strata archive get` takes.
    pub id: String,
    pub node: String,
    /// What was archived: `node` (a decommission), `instance:ID` (a quarantine), or
    /// `failure:ID` (an instance that failed, `[forensics] archive_on = "failure"`).
    pub subject: String,
    /// `sha256:<hex>` of the archive file, countersigned (the blob it is kept as).
    pub digest: String,
    /// The archive file's size.
    pub size: u64,
    /// `sha256:<hex>` of its payload, as its manifest says: what identifies the archive's
    /// contents (the file's digest changes with each countersignature).
    pub payload_digest: String,
    /// Files archived, and their bytes before compression.
    pub files: u64,
    pub bytes: u64,
    /// The node's kernel and Strata version, and the releases it ran.
    pub kernel: String,
    pub strata_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<String>,
    /// When the node made it, and when the control plane stored it.
    pub made_at: Millis,
    pub stored_at: Millis,
    /// When it is removed (a failure's archive, after its service's `keep`); `None`: kept
    /// until removed by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}

/// The subject of an instance's archive made because it failed.
pub const FAILURE_SUBJECT: &str = "failure:";

impl ArchiveRecord {
    /// The id of node `node`'s archive made at `made_at`.
    pub fn id_of(node: &str, made_at: Millis) -> String {
        format!("{node}-{made_at}")
    }
}
