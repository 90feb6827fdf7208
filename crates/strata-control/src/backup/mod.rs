//! Backups of a control plane's state: the file format ([`format`]), the seal on its secrets
//! ([`seal`]), reading and verifying a file ([`read`]), and a server taking a consistent
//! snapshot of a live cluster ([`ControlPlane::backup`]): every key read at one store
//! revision, every artifact those keys name fetched (from this server's disk, or from a peer
//! that holds it), streamed out as it is written.

pub mod format;
pub mod read;
pub mod seal;

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{ControlError, ControlPlane};
pub use format::{Header, Line, Writer};
pub use read::{BackupError, Entry, Reader, Summary};
pub use seal::{SealError, SealParams, Sealer};

/// `POST /v1/backup`: what to take.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupRequest {
    /// Seal the secrets with this key (derived by the CLI from the operator's passphrase);
    /// without it the secrets are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealKey>,
}

/// The key secrets are sealed with, and the parameters it was derived with.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct SealKey {
    /// The 32-byte key (base64).
    pub key: String,
    pub params: SealParams,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey(<redacted>, {:?})", self.params)
    }
}

/// Chunks of a backup as it is written, sent as they fill.
struct Chunks {
    buffer: Vec<u8>,
    out: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

const CHUNK: usize = 256 * 1024;

impl std::io::Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        // The writer runs on a blocking thread; the receiver is the HTTP response.
        self.out
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the client went away"))
    }
}

impl ControlPlane {
    /// A backup of the whole state as a stream of bytes: the keys as of one revision, then
    /// the artifacts they name. A failure part-way ends the stream with a line saying why
    /// (and no end line, so the file does not verify).
    pub async fn backup(
        self: &Arc<Self>,
        request: BackupRequest,
    ) -> Result<mpsc::Receiver<Result<Bytes, std::io::Error>>, ControlError> {
        let sealer = match request.seal {
            None => None,
            Some(seal) => {
                let key =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &seal.key)
                        .map_err(|_| ControlError::bad_request("seal.key is not base64", None))?;
                Some(Sealer::from_key(&key, &seal.params).map_err(|error| {
                    ControlError::bad_request(
                        format!("seal: {error}"),
                        Some("the key and the params must come from one derivation".to_string()),
                    )
                })?)
            }
        };
        // One read at one revision: the snapshot is consistent however busy the cluster is.
        // Runtime facts are not even read (a fleet's instance records would be most of it).
        let page = self
            .store
            .snapshot_without(&format::RUNTIME_PREFIXES)
            .await?;
        let digests: Vec<String> = page
            .kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(strata_core::keys::BLOBS))
            .map(str::to_string)
            .collect();
        // Artifacts this server lacks are fetched before the first byte goes out.
        for digest in &digests {
            if !self.blobs.exists(digest).await? {
                self.fetch_blob_from_peers(digest).await?;
            }
        }
        let (sender, receiver) = mpsc::channel(4);
        let plane = self.clone();
        let server = self.config.server_id.clone();
        tokio::task::spawn_blocking(move || {
            let chunks = Chunks {
                buffer: Vec::with_capacity(CHUNK),
                out: sender.clone(),
            };
            let written = (|| -> Result<(), String> {
                let mut writer = Writer::start(chunks, page.revision, &server, sealer)
                    .map_err(|e| e.to_string())?;
                for kv in &page.kvs {
                    writer.key(&kv.key, &kv.value).map_err(|e| e.to_string())?;
                }
                for digest in &digests {
                    let path = plane.blobs.path(digest).map_err(|e| e.to_string())?;
                    let bytes =
                        std::fs::read(&path).map_err(|e| format!("artifact {digest}: {e}"))?;
                    if format::artifact_digest(&bytes) != *digest {
                        return Err(format!(
                            "artifact {digest} on this server's disk is corrupt"
                        ));
                    }
                    writer.artifact(digest, &bytes).map_err(|e| e.to_string())?;
                }
                let (keys, artifacts) = writer.counts();
                let left_out = writer.secrets_left_out;
                writer.finish().map_err(|e| e.to_string())?;
                tracing::info!(
                    revision = page.revision,
                    keys,
                    artifacts,
                    secrets_left_out = left_out,
                    "backup taken"
                );
                Ok(())
            })();
            if let Err(error) = written {
                tracing::warn!(%error, "backup failed part-way");
                let mut line = serde_json::to_vec(&Line::Failed { error }).unwrap_or_default();
                line.push(b'\n');
                let _ = sender.blocking_send(Ok(Bytes::from(line)));
            }
        });
        Ok(receiver)
    }
}

#[cfg(test)]
mod tests;
