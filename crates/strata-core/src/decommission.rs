//! Decommissioning a node: the phases a node goes through as it leaves service for good
//! (drained, archived, wiped), what is kept once it is gone (the decommission record), and
//! the revocation of its identity; and the quarantine of one instance (frozen, archived,
//! stopped).
//!
//! The phases live in the node's record ([`crate::Node::decommission`]) while it runs, so the
//! agent learns them with its assignments; the record ([`DecommissionRecord`]) and the
//! revocation ([`RevokedNode`]) outlive the node's record.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Millis;

/// A decommission under way, in the node's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decommissioning {
    pub phase: DecommissionPhase,
    /// Who asked (`token:NAME`), and when.
    pub requested_by: String,
    pub requested_at: Millis,
    /// Asked with `--force`: instances no other node can take stop with the node.
    #[serde(default)]
    pub force: bool,
    /// The archive kept of the node (from [`DecommissionPhase::Wiping`] on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// Why it failed ([`DecommissionPhase::Failed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the node wipes once its archive is kept.
    #[serde(default)]
    pub wipe: WipeScope,
    /// When the phase began.
    pub since: Millis,
}

/// What a decommissioned node wipes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WipeScope {
    /// Every file of its data directory (overwritten, synced, read back, removed).
    #[default]
    Files,
    /// The files, then the whole device the data directory has to itself (unmounted,
    /// overwritten, read back): its journal, free blocks and file names too.
    Device,
}

impl WipeScope {
    pub fn as_str(self) -> &'static str {
        match self {
            WipeScope::Files => "files",
            WipeScope::Device => "device",
        }
    }
}

impl std::str::FromStr for WipeScope {
    type Err = String;

    /// `files` or `device`, as `--wipe` takes them.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "files" => Ok(WipeScope::Files),
            "device" => Ok(WipeScope::Device),
            other => Err(format!("`{other}`: say `files` or `device`")),
        }
    }
}

/// Where a decommission is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecommissionPhase {
    /// Its instances move to other nodes (replacements first); it takes no new work.
    Draining,
    /// Drained: its agent archives what it held and sends the archive.
    Archiving,
    /// The archive was verified, countersigned and kept: the agent wipes the node's data.
    Wiping,
    /// The archive or the wipe failed: the node stays decommissioning, with the reason.
    Failed,
    /// Revoked unreachable (`--unreachable`): nothing archived or wiped; its record goes
    /// once its instances are replaced elsewhere.
    Revoked,
}

impl DecommissionPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            DecommissionPhase::Draining => "draining",
            DecommissionPhase::Archiving => "archiving",
            DecommissionPhase::Wiping => "wiping",
            DecommissionPhase::Failed => "failed",
            DecommissionPhase::Revoked => "revoked",
        }
    }
}

/// What a wipe did (as `strata_forensics::WipeReport` counts it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WipeSummary {
    /// Regular files overwritten with zeros, read back and removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Directories, links and other entries removed.
    pub other: u64,
    /// With `--wipe device`: the device overwritten, and its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default)]
    pub device_bytes: u64,
}

/// How a decommission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecommissionOutcome {
    /// Archived, then wiped: the archive and the wipe's report are in the record.
    Wiped,
    /// The node could not be reached (`--unreachable`): nothing archived or wiped; its
    /// identity revoked.
    Unreachable,
}

/// What is kept of a decommissioned node (`/decommissions/{node}`): never replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecommissionRecord {
    pub node: String,
    pub outcome: DecommissionOutcome,
    pub requested_by: String,
    pub requested_at: Millis,
    pub finished_at: Millis,
    /// The archive of what it held (`strata archive get ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe: Option<WipeSummary>,
    /// Asked with `--force`.
    #[serde(default)]
    pub force: bool,
    /// What an operator should know ("unreachable: its data was neither archived nor wiped").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A node whose identity is revoked (`/revoked/nodes/{name}`): its credential, its
/// certificates and its name are refused by the API and by every node's mesh, for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevokedNode {
    pub name: String,
    pub revoked_at: Millis,
    pub by: String,
    pub why: String,
}

/// An instance taken out of service for investigation (`strata instance quarantine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quarantine {
    /// Who asked (`token:NAME`), and when.
    pub requested_by: String,
    pub requested_at: Millis,
    /// The archive of it, once kept (`strata archive get ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

/// `POST /v1/nodes/{name}/decommission`: what an operator asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecommissionRequest {
    /// Go on even though some instances have no other node to run on (they stop).
    #[serde(default)]
    pub force: bool,
    /// The node cannot be reached: revoke it now, with no archive and no wipe.
    #[serde(default)]
    pub unreachable: bool,
    /// What the node wipes once its archive is kept.
    #[serde(default)]
    pub wipe: WipeScope,
}

/// How a decommission stands: the node's record while it runs, the record once it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecommissionStatus {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Decommissioning>,
    /// Instances still on the node (while draining).
    #[serde(default)]
    pub instances: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DecommissionRecord>,
}

/// What a decommissioning node's agent reports (`POST /v1/nodes/{name}/decommission/progress`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum DecommissionProgress {
    /// It holds no instance any more and is making its archive.
    Archiving,
    /// Its data is wiped (after its archive was kept).
    Wiped { wipe: WipeSummary },
    /// Archiving or wiping failed: the node stays decommissioning with the reason.
    Failed { reason: String },
}

/// What a node's slice of the cluster's history is, for its archive: the events about it and
/// the audit records of its own calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeHistory {
    pub events: Vec<crate::Event>,
    #[serde(default)]
    pub audit: Vec<crate::auth::AuditRecord>,
}
