//! A backup file: JSON lines. A header (format, the store revision the state was read at, who
//! took it, how secrets are sealed), one line per key, one per artifact, and an end line with
//! the counts and the SHA-256 of every byte before it, so a truncated or altered file is
//! caught before anything is restored from it.
//!
//! What a backup holds is the cluster's intent and history: environments, services,
//! releases, configuration, artifacts, tokens, the CA, events and the audit log. What a running
//! cluster derives again is left out: instances and their status (the restored cluster places
//! every service afresh on the nodes that join it), nodes, servers, the leader's lease and log
//! tails. Restoring runtime facts would point instances at nodes that are not there.

use std::io::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_core::keys;

use super::seal::{SealParams, Sealer};

/// The format this code writes and reads.
pub const FORMAT: u32 = 1;

/// Keys a backup leaves out: facts of the running cluster, made again by it.
pub const RUNTIME_PREFIXES: [&str; 6] = [
    keys::INSTANCES,
    keys::STATUS,
    keys::NODES,
    keys::SERVERS,
    keys::LEADER,
    keys::LOGS,
];

/// Whether a backup holds `key` at all.
pub fn backed_up(key: &str) -> bool {
    !RUNTIME_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Whether `key` holds a secret: every key no one may read through the API (the join token
/// and credential key, the CA with its private key, API tokens' hashes, and any key under a
/// prefix this code does not know), except the audit log and services' secrets. In a backup
/// a secret is only sealed, and only when asked. Services' secrets and their data key are
/// already ciphertext under the servers' key file, outside the store: they are always kept
/// as they are (a restore opens them with that file).
pub fn secret(key: &str) -> bool {
    keys::readers(key) == keys::Readers::Nobody
        && !key.starts_with(keys::AUDIT)
        && !key.starts_with(keys::SECRETS)
        && key != keys::SECRETS_KEY
}

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The format ([`FORMAT`]).
    pub strata_backup: u32,
    /// The store revision every key was read at.
    pub revision: u64,
    /// When (milliseconds since the epoch).
    pub taken_at_ms: u64,
    /// Which server (or `store` for a backup read from the store directly).
    pub taken_by: String,
    /// How the secret keys are sealed; `None`: they were left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealParams>,
}

/// The last line's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub keys: usize,
    pub artifacts: usize,
    /// Hex SHA-256 of every byte of the file before the end line.
    pub sha256: String,
}

/// One line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Line {
    Header(Header),
    Key {
        key: String,
        /// The value, when it is JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<serde_json::Value>,
        /// The value, when it is not JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_base64: Option<String>,
        /// A secret value, sealed (see [`Sealer`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed: Option<String>,
    },
    Artifact {
        blob: String,
        base64: String,
    },
    End {
        end: End,
    },
    /// The server could not finish (written instead of the end line).
    Failed {
        error: String,
    },
}

/// Writes a backup, keeping the running digest and the counts for the end line.
pub struct Writer<W: Write> {
    out: W,
    digest: Sha256,
    keys: usize,
    artifacts: usize,
    /// Secret keys left out (no seal asked for).
    pub secrets_left_out: usize,
    sealer: Option<Sealer>,
}

impl<W: Write> Writer<W> {
    /// Starts a backup with its header; secrets are sealed with `sealer`, or left out.
    pub fn start(
        out: W,
        revision: u64,
        taken_by: &str,
        sealer: Option<Sealer>,
    ) -> std::io::Result<Self> {
        let mut writer = Self {
            out,
            digest: Sha256::new(),
            keys: 0,
            artifacts: 0,
            secrets_left_out: 0,
            sealer,
        };
        let header = Header {
            strata_backup: FORMAT,
            revision,
            taken_at_ms: strata_core::now_millis(),
            taken_by: taken_by.to_string(),
            seal: writer.sealer.as_ref().map(Sealer::params),
        };
        writer.line(&Line::Header(header))?;
        Ok(writer)
    }

    /// Writes `key` (or leaves it out: a runtime fact, or a secret with no seal).
    pub fn key(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        if !backed_up(key) {
            return Ok(());
        }
        let line = if secret(key) {
            let Some(sealer) = &self.sealer else {
                self.secrets_left_out += 1;
                return Ok(());
            };
            Line::Key {
                key: key.to_string(),
                value: None,
                value_base64: None,
                sealed: Some(sealer.seal(key, value)),
            }
        } else {
            match serde_json::from_slice::<serde_json::Value>(value) {
                // JSON `null` would read back as no value: kept as bytes.
                Ok(json) if !json.is_null() => Line::Key {
                    key: key.to_string(),
                    value: Some(json),
                    value_base64: None,
                    sealed: None,
                },
                _ => Line::Key {
                    key: key.to_string(),
                    value: None,
                    value_base64: Some(BASE64.encode(value)),
                    sealed: None,
                },
            }
        };
        self.line(&line)?;
        self.keys += 1;
        Ok(())
    }

    /// Writes an artifact's bytes.
    pub fn artifact(&mut self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.line(&Line::Artifact {
            blob: digest.to_string(),
            base64: BASE64.encode(bytes),
        })?;
        self.artifacts += 1;
        Ok(())
    }

    /// Writes the end line; the output, flushed.
    pub fn finish(mut self) -> std::io::Result<W> {
        let end = End {
            keys: self.keys,
            artifacts: self.artifacts,
            sha256: hex::encode(self.digest.clone().finalize()),
        };
        self.line(&Line::End { end })?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// The output so far (a server streams it out chunk by chunk).
    pub fn output(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn counts(&self) -> (usize, usize) {
        (self.keys, self.artifacts)
    }

    fn line(&mut self, line: &Line) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        self.digest.update(&bytes);
        self.out.write_all(&bytes)
    }
}

/// The SHA-256 digest (`sha256:<hex>`) of `bytes`, as artifacts are named.
pub fn artifact_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
