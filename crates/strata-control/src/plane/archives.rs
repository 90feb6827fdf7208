//! Forensic archives nodes send (`strata_forensics`): each verified in full against the
//! cluster CA (the node's certificate, its signature, every file), refused unless made by
//! the node that sends it, countersigned by the CA, kept in the blob store (copied to another
//! server as artifacts are) and recorded; listed and fetched by operators.

use futures::Stream;
use strata_core::archive::{ArchiveRecord, FAILURE_SUBJECT};
use strata_core::spec::ForensicsSpec;
use strata_core::{keys, EventKind, NodeName, Release};
use strata_forensics::{countersign, ForensicsError, Signer};

use super::{encode, ControlPlane};
use crate::replicate::BlobKind;
use crate::ControlError;

impl ControlPlane {
    /// Takes node `node`'s archive from `body`: verified, countersigned, kept and recorded.
    /// Nothing is kept of an archive that does not verify, or that another node made.
    pub async fn store_node_archive<S, E>(
        &self,
        node: &NodeName,
        body: S,
    ) -> Result<ArchiveRecord, ControlError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let received = self
            .blobs()
            .receive(body, self.config().max_artifact_size)
            .await?;
        let result = self.countersigned(node, &received).await;
        // A node's own archive only once it runs nothing (an instance's, any time).
        let result = result.and_then(|verified| match verified.manifest.origin.subject.as_str() {
            "node" => self.check_archive_may_come(node).map(|()| verified),
            _ => Ok(verified),
        });
        let verified = match result {
            Ok(verified) => verified,
            Err(error) => {
                let _ = tokio::fs::remove_file(&received).await;
                return Err(error);
            }
        };
        // Sent before (its answer lost), or other contents under the same name: decided
        // before anything is kept (and again at the record's write, for a race).
        let id = ArchiveRecord::id_of(node, verified.manifest.origin.created_at);
        if let Some((kept, _)) = self.get::<ArchiveRecord>(&keys::archive(&id)).await? {
            let _ = tokio::fs::remove_file(&received).await;
            let kept = already_sent(node, kept, &verified.manifest.payload_sha256)?;
            self.archive_kept(node, &kept).await?;
            return Ok(kept);
        }
        let origin = &verified.manifest.origin;
        // Decided before anything is kept (a failure here leaves no blob behind).
        let stored_at = self.now();
        let expires_at = match origin.subject.strip_prefix(FAILURE_SUBJECT) {
            Some(instance) => {
                let keep = self
                    .failure_archive_keep(instance, &origin.releases)
                    .await?;
                Some(stored_at.saturating_add(keep))
            }
            None => None,
        };
        let (digest, size) = self.blobs().keep(&received).await?;
        self.note_blob_held(&digest, size, BlobKind::Archive)
            .await?;
        // Acknowledged once a second server holds it too (if there is one): the node may
        // wipe what it archived once this answers.
        self.await_blob_copy(&digest).await?;
        let record = ArchiveRecord {
            id: ArchiveRecord::id_of(node, origin.created_at),
            node: node.to_string(),
            subject: origin.subject.clone(),
            digest,
            size,
            payload_digest: verified.manifest.payload_sha256.clone(),
            files: verified.manifest.files.len() as u64,
            bytes: verified.manifest.bytes,
            kernel: origin.kernel.clone(),
            strata_version: origin.strata_version.clone(),
            releases: origin.releases.clone(),
            made_at: origin.created_at,
            stored_at,
            expires_at,
        };
        // Evidence is never replaced: an archive of the same node and time is the same
        // archive (sent again), or refused.
        let key = keys::archive(&record.id);
        let txn = strata_store::Txn::new()
            .when(&key, 0)
            .put(&key, encode(&record));
        if let strata_store::TxnOutcome::Conflict { .. } = self.store.txn(txn).await? {
            let Some((kept, _)) = self.get::<ArchiveRecord>(&key).await? else {
                return Err(ControlError::Conflict {
                    message: format!("archive {} changed while it was stored", record.id),
                    hint: Some("send it again".to_string()),
                });
            };
            let kept = already_sent(node, kept, &record.payload_digest)?;
            self.archive_kept(node, &kept).await?;
            return Ok(kept);
        }
        let kept_until = match record.expires_at {
            Some(at) => format!(", kept until {}", strata_core::utc_time(at)),
            None => String::new(),
        };
        let mut event = crate::event_log::event(
            EventKind::NodeArchived,
            format!(
                "node {node}: archive {} of {} stored ({} files, {} bytes, {}), countersigned{kept_until}",
                record.id, record.subject, record.files, record.bytes, record.digest
            ),
        );
        event.node = Some(node.clone());
        self.event_log().record(event).await;
        self.archive_kept(node, &record).await?;
        Ok(record)
    }

    /// What a kept archive moves on: a decommission, or a quarantine.
    async fn archive_kept(
        &self,
        node: &NodeName,
        record: &ArchiveRecord,
    ) -> Result<(), ControlError> {
        self.archive_kept_for_decommission(node, record).await?;
        self.archive_kept_for_quarantine(node, record).await
    }

    /// How long the archive of failed instance `instance` is kept: the `[forensics] keep` of
    /// the release it ran. The node names the release (`env/service#N`); only one of the
    /// service and release number the instance's id carries (`SERVICE-N-SUFFIX`) counts, so
    /// that a node cannot give its archive another service's keep. The default where it
    /// names none such that is kept (or one without the table).
    async fn failure_archive_keep(
        &self,
        instance: &str,
        releases: &[String],
    ) -> Result<u64, ControlError> {
        let named = releases.first().and_then(|release| {
            let (service, number) = release.split_once('#')?;
            let (env, service) = service.split_once('/')?;
            let number: u64 = number.parse().ok()?;
            let mut id = instance.rsplitn(3, '-');
            let (_suffix, of_id, service_of_id) = (id.next()?, id.next()?, id.next()?);
            (service_of_id == service && of_id.parse() == Ok(number))
                .then(|| keys::release(env, service, number))
        });
        let spec = match named {
            Some(key) => self.get::<Release>(&key).await?.map(|(r, _)| r.spec),
            None => None,
        };
        Ok(spec
            .and_then(|spec| spec.forensics)
            .map_or(ForensicsSpec::DEFAULT_KEEP_MS, |f| f.keep_ms))
    }

    /// Removes every archive whose keep ended by `now` (milliseconds): its record and its
    /// blob's record in one write each, and this server's copy of its bytes (wiped; the other
    /// servers wipe theirs as they see the blob's record go). The leader's, fenced.
    pub async fn prune_expired_archives(&self, now: u64) -> Result<usize, ControlError> {
        let expired: Vec<ArchiveRecord> = self
            .archives()
            .await?
            .into_iter()
            .filter(|record| record.expires_at.is_some_and(|at| at <= now))
            .collect();
        for record in &expired {
            let txn = strata_store::Txn::new()
                .delete(keys::archive(&record.id))
                .delete(format!("{}{}", keys::BLOBS, record.digest))
                .put(
                    format!("{}{}", keys::EXPIRED_BLOBS, record.digest),
                    encode(&now),
                );
            self.controller_txn(txn).await?;
            self.forget_blob_copy(&record.digest).await;
            let mut event = crate::event_log::event(
                EventKind::ArchiveExpired,
                format!(
                    "archive {} of {} removed: its keep ended {}",
                    record.id,
                    record.subject,
                    strata_core::utc_time(record.expires_at.unwrap_or(now))
                ),
            );
            event.node = NodeName::new(record.node.clone()).ok();
            self.event_log().record(event).await;
        }
        // Tombstones past their keep: a server away longer than that keeps its copy.
        let tombstones = self.store.list(keys::EXPIRED_BLOBS).await?.kvs;
        let old: Vec<&str> = tombstones
            .iter()
            .filter(|kv| {
                let at: u64 = serde_json::from_slice(&kv.value).unwrap_or(0);
                at.saturating_add(crate::replicate::TOMBSTONE_KEEP_MS) <= now
            })
            .map(|kv| kv.key.as_str())
            .collect();
        for page in old.chunks(strata_store::MAX_TXN_OPS) {
            let txn = page
                .iter()
                .fold(strata_store::Txn::new(), |txn, key| txn.delete(*key));
            self.controller_txn(txn).await?;
        }
        Ok(expired.len())
    }

    /// Verifies the archive at `path` was made by `node` and countersigns it.
    async fn countersigned(
        &self,
        node: &NodeName,
        path: &std::path::Path,
    ) -> Result<strata_forensics::Verified, ControlError> {
        let ca = self.identity().cluster_ca().await?.to_json();
        let (cert, key) = (
            ca["cert"].as_str().unwrap_or_default().to_string(),
            ca["key"].as_str().unwrap_or_default().to_string(),
        );
        let path = path.to_path_buf();
        let verified = tokio::task::spawn_blocking(move || {
            let signer = Signer::from_pem("the cluster CA's key", &cert, &key)?;
            countersign(&path, &signer)
        })
        .await
        .map_err(|e| ControlError::Internal(format!("verifying an archive: {e}")))?
        .map_err(|error| match error {
            ForensicsError::Io { .. } | ForensicsError::BadKey { .. } => {
                ControlError::Internal(format!("countersigning an archive: {error}"))
            }
            refused => ControlError::bad_request(
                format!("node {node}'s archive does not verify: {refused}"),
                Some("make the archive again; nothing of this one was kept".to_string()),
            ),
        })?;
        if verified.manifest.origin.node != node.as_str() {
            return Err(ControlError::Forbidden {
                message: format!(
                    "node {node} sent an archive made by node {}",
                    verified.manifest.origin.node
                ),
                hint: "a node sends only its own archives".into(),
            });
        }
        Ok(verified)
    }

    /// Every archive kept, oldest first.
    pub async fn archives(&self) -> Result<Vec<ArchiveRecord>, ControlError> {
        let mut records: Vec<ArchiveRecord> = self
            .list::<ArchiveRecord>(keys::ARCHIVES)
            .await?
            .into_iter()
            .map(|(record, _)| record)
            .collect();
        records.sort_by_key(|r| (r.stored_at, r.id.clone()));
        Ok(records)
    }

    /// Archive `id`'s record and the path of its bytes on this server (fetched from another
    /// server first if only that one holds them).
    pub async fn archive_file(
        &self,
        id: &str,
    ) -> Result<(ArchiveRecord, std::path::PathBuf), ControlError> {
        let Some((record, _)) = self.get::<ArchiveRecord>(&keys::archive(id)).await? else {
            return Err(ControlError::not_found(
                format!("archive {id}"),
                Some("`strata archive ls` lists them".to_string()),
            ));
        };
        if !self.blobs().exists(&record.digest).await? {
            self.fetch_blob_from_peers(&record.digest).await?;
        }
        let path = self.blobs().path(&record.digest)?;
        Ok((record, path))
    }
}

/// The answer to an archive whose name is taken: the kept one if it holds the same payload
/// (sent again), a refusal otherwise (evidence is never replaced).
fn already_sent(
    node: &NodeName,
    kept: ArchiveRecord,
    payload_digest: &str,
) -> Result<ArchiveRecord, ControlError> {
    if kept.payload_digest == payload_digest {
        return Ok(kept);
    }
    Err(ControlError::Conflict {
        message: format!(
            "node {node} already sent archive {} with other contents; it is kept as it was",
            kept.id
        ),
        hint: Some("an archive is never replaced; make a new one".to_string()),
    })
}

/// On the leader, every minute: removes the archives whose keep has ended.
pub async fn run_retention(plane: std::sync::Arc<ControlPlane>) {
    crate::leader::prune_on_leader(
        plane,
        "forensic archives",
        |_| std::time::Duration::ZERO,
        |plane, now| async move { plane.prune_expired_archives(now).await },
    )
    .await
}
