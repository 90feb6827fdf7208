//! Artifacts (and forensic archives) across servers. Each server keeps blob bytes on its own
//! disk; the store records which servers hold each one (`/blobs/{digest}`) and where each
//! server is (`/servers/{id}`). Every server copies every blob it lacks from a holder as soon
//! as it learns of it (a watch), so any server can serve any artifact to an agent, and a blob
//! survives the loss of the server it was uploaded to. A blob whose record is deleted (an
//! archive past its keep) is wiped by every server as it sees the delete, and a server that
//! was away wipes, when it lists the blobs again, every copy no record names (past
//! [`UNRECORDED_GRACE`], so that an upload between its bytes and its record is left alone).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use strata_store::{Txn, WatchEvent};

use crate::plane::{decode, encode};
use crate::{ControlError, ControlPlane};

pub use strata_core::keys::{BLOBS, SERVERS};

/// How long an upload waits for a second server to copy the artifact.
pub const COPY_WAIT: Duration = Duration::from_secs(15);
/// How old a copy no record names must be before it is wiped.
pub const UNRECORDED_GRACE: Duration = Duration::from_secs(3600);

/// Which servers hold an artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    pub holders: BTreeSet<String>,
}

/// Where a server is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub server_id: String,
    pub api_url: String,
}

impl ControlPlane {
    /// Publishes this server's address, for peers fetching artifacts from it.
    pub async fn announce_server(&self) -> Result<(), ControlError> {
        let record = ServerRecord {
            server_id: self.config.server_id.clone(),
            api_url: self.config.api_url.clone(),
        };
        self.store
            .put(&format!("{SERVERS}{}", record.server_id), encode(&record))
            .await?;
        Ok(())
    }

    /// Records that this server holds `digest`.
    pub async fn note_blob_held(&self, digest: &str, size: u64) -> Result<(), ControlError> {
        let key = format!("{BLOBS}{digest}");
        for _ in 0..16 {
            let current = self.store.get(&key).await?;
            let revision = current.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
            let mut record: BlobRecord = match &current {
                Some(kv) => decode(kv)?,
                None => BlobRecord::default(),
            };
            if !record.holders.insert(self.config.server_id.clone()) {
                return Ok(());
            }
            record.size = size;
            if self
                .store
                .txn(Txn::new().when(&key, revision).put(&key, encode(&record)))
                .await?
                .is_committed()
            {
                return Ok(());
            }
        }
        Err(ControlError::Internal(format!(
            "could not record blob {digest}"
        )))
    }

    /// Waits (at most [`COPY_WAIT`]) until a second server holds `digest`, when another
    /// server has announced itself; a copy that does not come in time is logged, and the
    /// upload stands (the artifact is on this server's disk, and a client that finds no
    /// server holding it uploads it again).
    pub async fn await_blob_copy(&self, digest: &str) -> Result<(), ControlError> {
        let peers = self
            .store
            .list(SERVERS)
            .await?
            .kvs
            .iter()
            .filter(|kv| !kv.key.ends_with(&self.config.server_id))
            .count();
        if peers == 0 {
            return Ok(());
        }
        let key = format!("{BLOBS}{digest}");
        let deadline = tokio::time::Instant::now() + COPY_WAIT;
        loop {
            if let Some(kv) = self.store.get(&key).await? {
                let record: BlobRecord = decode(&kv)?;
                if record.holders.len() >= 2 {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    digest,
                    "no other server copied the artifact within {COPY_WAIT:?}: it is on this server alone for now"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wipes this server's copy of `digest`, if it has one (its record is gone).
    pub async fn forget_blob_copy(&self, digest: &str) {
        let Ok(path) = self.blobs.path(digest) else {
            return;
        };
        let wiped = tokio::task::spawn_blocking(move || match path.exists() {
            true => strata_forensics::wipe_file(&path).map(|_| ()),
            false => Ok(()),
        })
        .await;
        if let Ok(Err(error)) = wiped {
            tracing::warn!(%error, digest, "cannot wipe a blob no longer recorded");
        }
    }

    /// Copies `digest` from a server that holds it into this server's blob store.
    pub async fn fetch_blob_from_peers(&self, digest: &str) -> Result<(), ControlError> {
        let key = format!("{BLOBS}{digest}");
        let Some(kv) = self.store.get(&key).await? else {
            return Err(ControlError::not_found(format!("blob {digest}"), None));
        };
        let record: BlobRecord = decode(&kv)?;
        let mut last_error = format!("no server holds blob {digest}");
        for holder in record
            .holders
            .iter()
            .filter(|h| **h != self.config.server_id)
        {
            let Some(server) = self.store.get(&format!("{SERVERS}{holder}")).await? else {
                continue;
            };
            let server: ServerRecord = decode(&server)?;
            let url = format!("{}/v1/blobs/{digest}", server.api_url.trim_end_matches('/'));
            let credential = self.credentials().server_credential(&self.config.server_id);
            match self.identity().get(&url, &credential).await {
                Ok(response) if response.status().is_success() => {
                    let size = self
                        .blobs
                        .put(
                            digest,
                            response.bytes_stream(),
                            self.config.max_artifact_size,
                        )
                        .await?;
                    self.note_blob_held(digest, size).await?;
                    return Ok(());
                }
                Ok(response) => last_error = format!("{url}: HTTP {}", response.status()),
                Err(error) => last_error = format!("{url}: {error}"),
            }
        }
        Err(ControlError::Internal(format!(
            "cannot fetch blob {digest}: {last_error}"
        )))
    }
}

/// Keeps this server's blob store complete: copies every artifact recorded in the store that
/// it lacks. Runs until the task is dropped.
pub async fn run(plane: Arc<ControlPlane>) {
    if let Err(error) = plane.announce_server().await {
        tracing::warn!(%error, "cannot announce this server");
    }
    loop {
        let listing = match plane.store.list(BLOBS).await {
            Ok(listing) => listing,
            Err(error) => {
                tracing::warn!(%error, "cannot list blobs");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for kv in &listing.kvs {
            copy_if_missing(&plane, &kv.key).await;
        }
        let recorded: BTreeSet<&str> = listing
            .kvs
            .iter()
            .map(|kv| kv.key.trim_start_matches(BLOBS))
            .collect();
        for digest in plane.blobs.unrecorded(&recorded, UNRECORDED_GRACE).await {
            tracing::info!(%digest, "wiping a blob no record names");
            plane.forget_blob_copy(&digest).await;
        }
        let Ok(mut changes) = plane.store.watch(BLOBS, listing.revision + 1).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(change) = changes.next().await {
            match change {
                Ok(WatchEvent::Put(kv)) => copy_if_missing(&plane, &kv.key).await,
                Ok(WatchEvent::Delete { key, .. }) => {
                    plane.forget_blob_copy(key.trim_start_matches(BLOBS)).await
                }
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn copy_if_missing(plane: &ControlPlane, key: &str) {
    let digest = key.trim_start_matches(BLOBS);
    if plane.blobs.exists(digest).await.unwrap_or(true) {
        return;
    }
    if let Err(error) = plane.fetch_blob_from_peers(digest).await {
        tracing::warn!(%error, "artifact not replicated yet");
    }
}
