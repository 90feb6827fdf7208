//! Artifacts (and forensic archives) across servers. Each server keeps blob bytes on its own
//! disk; the store records which servers hold each one (`/blobs/{digest}`) and where each
//! server is (`/servers/{id}`). Every server copies every blob it lacks from a holder as soon
//! as it learns of it (a watch), so any server can serve any artifact to an agent, and a blob
//! survives the loss of the server it was uploaded to.
//!
//! A blob removed past its keep (a forensic archive's) has its record deleted and a tombstone
//! written (`/expired-blobs/{digest}`) in one write: every server wipes its copy as it sees
//! the delete, and a server that was away wipes the copies the tombstones name when it lists
//! the blobs again. A copy fetched while its record was deleted is not recorded again (its
//! holder is added only to a record that is still there) and is wiped. A blob nothing records
//! is never wiped on that ground alone (a store restored from an older backup, or a server
//! started on the wrong store, must not cost the disk its evidence).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use strata_store::{Txn, WatchEvent};

use crate::plane::{decode, encode};
use crate::{ControlError, ControlPlane};

pub use strata_core::keys::{BLOBS, EXPIRED_BLOBS, SERVERS};

/// How long an upload waits for a second server to copy the artifact.
pub const COPY_WAIT: Duration = Duration::from_secs(15);
/// How long a tombstone of an expired blob is kept (a server away longer keeps its copy).
pub const TOMBSTONE_KEEP_MS: u64 = 30 * 86_400_000;

/// Which servers hold a blob, and what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    pub holders: BTreeSet<String>,
    /// A forensic archive's bytes: served only to other servers (operators fetch it with
    /// `strata archive get`), never to nodes or deployers as artifacts are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archive: bool,
}

/// What a blob is, as its uploader says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Artifact,
    Archive,
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

    /// Records that this server holds `digest`, uploaded to it as `kind`.
    pub async fn note_blob_held(
        &self,
        digest: &str,
        size: u64,
        kind: BlobKind,
    ) -> Result<(), ControlError> {
        self.add_blob_holder(digest, size, Some(kind)).await
    }

    /// Records that this server copied `digest` from another: only while the blob's record
    /// is there ([`ControlError::NotFound`] once it was removed, past its keep).
    pub async fn note_blob_copied(&self, digest: &str, size: u64) -> Result<(), ControlError> {
        self.add_blob_holder(digest, size, None).await
    }

    /// Adds this server to the holders of `digest` (of `size`): a record made when `kind`
    /// says what it is (an upload), only one that is still there otherwise (a copy: a record
    /// deleted meanwhile, its blob expired, is not made again: [`ControlError::NotFound`]).
    async fn add_blob_holder(
        &self,
        digest: &str,
        size: u64,
        kind: Option<BlobKind>,
    ) -> Result<(), ControlError> {
        let key = format!("{BLOBS}{digest}");
        for _ in 0..16 {
            let current = self.store.get(&key).await?;
            let revision = current.as_ref().map(|kv| kv.mod_revision).unwrap_or(0);
            let mut record: BlobRecord = match (&current, kind) {
                (Some(kv), _) => decode(kv)?,
                (None, Some(kind)) => BlobRecord {
                    archive: kind == BlobKind::Archive,
                    ..BlobRecord::default()
                },
                (None, None) => {
                    return Err(ControlError::not_found(
                        format!("blob {digest} (removed while it was copied)"),
                        None,
                    ))
                }
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

    /// Whether `caller` may have blob `digest`: one the store records (a copy on disk that no
    /// record names is not served: an upload whose record failed is sent again), and a
    /// forensic archive's only to another server.
    pub async fn may_serve_blob(
        &self,
        digest: &str,
        caller: &strata_core::auth::Principal,
    ) -> Result<(), ControlError> {
        let Some(kv) = self.store.get(&format!("{BLOBS}{digest}")).await? else {
            return Err(ControlError::not_found(
                format!("blob {digest}"),
                Some("upload it again (a deploy does)".to_string()),
            ));
        };
        let record: BlobRecord = decode(&kv)?;
        let server = matches!(caller, strata_core::auth::Principal::Server { .. });
        if record.archive && !server {
            return Err(ControlError::Forbidden {
                message: format!("blob {digest} is a forensic archive"),
                hint: "operators fetch archives with `strata archive get ID`".into(),
            });
        }
        Ok(())
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
                    if let Err(error) = self.note_blob_copied(digest, size).await {
                        // Removed while it was copied: the copy goes too.
                        self.forget_blob_copy(digest).await;
                        return Err(error);
                    }
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

/// Keeps this server's blob store as the store records it: copies every blob recorded that
/// it lacks, and wipes every copy of a blob removed (as it sees the record deleted, and at
/// each listing those the tombstones name). Runs until the task is dropped.
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
        // Removed past their keep while this server was away (or its watch broke).
        match plane.store.list(EXPIRED_BLOBS).await {
            Ok(expired) => {
                for kv in &expired.kvs {
                    plane
                        .forget_blob_copy(kv.key.trim_start_matches(EXPIRED_BLOBS))
                        .await;
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list expired blobs"),
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
