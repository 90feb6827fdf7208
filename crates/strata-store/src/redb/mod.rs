//! The embedded backend: [`RedbStore`], the whole state store in one [redb] file.
//!
//! This is the default store of a Strata control plane: no external service, one file in the
//! data directory, durable at every commit so that acknowledged writes survive `kill -9`.
//!
//! # Layout
//!
//! | table        | key                 | value                                                  |
//! |--------------|---------------------|--------------------------------------------------------|
//! | `kv`         | key (`&str`)        | the key's record: value, create/mod revision, version, lease |
//! | `meta`       | name (`&str`)       | `u64`: current revision, oldest kept event, next lease id, schema |
//! | `events`     | revision (`u64`)    | the events of that revision, in op order (the watch history) |
//! | `leases`     | lease id (`u64`)    | `(ttl_ms, deadline)`, the deadline in wall-clock unix ms |
//! | `lease_keys` | lease id (multimap) | the keys attached to the lease                         |
//!
//! Records are encoded with a small versioned binary codec (values are opaque bytes). A
//! record that does not decode is reported as [`StoreError::Corrupt`] (or, for a watch
//! history entry, [`StoreError::Backend`]) naming the key or revision; it never panics.
//!
//! # Revisions and transactions
//!
//! Every [`Store::txn`] is committed with
//! [`Durability::Immediate`](redb::Durability::Immediate) (redb's default): it returns only
//! once the commit is on disk. A transaction that changes something bumps the revision by
//! exactly one and all its ops share that revision; one that changes nothing (only compares,
//! deletes of absent keys) leaves the revision as it is and writes nothing. Writers are
//! serialized; transactions that arrive while a commit is under way are committed together
//! by the next one (group commit, `group.rs`), each still at its own revision with its own
//! outcome, so one disk sync serves them all. Blocking redb calls run on tokio's blocking
//! pool.
//!
//! # Watches
//!
//! Each committing revision is appended to the `events` table in the same transaction and,
//! after the commit, published on an in-memory broadcast channel, in revision order. A watch
//! subscribes to the channel *before* reading the current revision, replays the missed
//! revisions from the log, then forwards live ones, skipping any revision it already
//! delivered. A watcher that falls behind the channel, or sees a revision jump, re-reads the
//! missing range from the log; so a watch has no gap and no duplicate. The log keeps at least
//! the last [`Options::history`] revisions; asking for older ones fails with
//! [`StoreError::Compacted`].
//!
//! # Leases
//!
//! A lease's deadline is stored in wall-clock unix milliseconds, so leases survive a restart
//! (and expire while the store is closed). A background task, started by [`RedbStore::open`]
//! and stopped when the last handle to the store is dropped, expires leases whose deadline has
//! passed: their keys are deleted in one transaction (one revision, one `Delete` event each).

mod codec;
mod group;
mod reaper;
mod tables;
mod watch;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, DatabaseError, ReadTransaction};
use tokio::sync::broadcast;
use tokio::sync::Notify;

use crate::{KeyValue, LeaseId, Page, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream};
use reaper::spawn_lease_reaper;
use tables::{
    backend, current_revision, meta_get, read_kv, scan_prefix, EVENTS, KV, LEASES, LEASE_KEYS,
    META, META_SCHEMA, SCHEMA_VERSION,
};
use watch::Batch;

/// How long [`RedbStore::open`] waits for a just-dropped handle of the same file (whose
/// background work may still hold the file for a moment) to release it.
const OPEN_RETRY: Duration = Duration::from_secs(2);

/// Tuning of a [`RedbStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How many of the latest revisions the event log keeps for watches that resume from a
    /// revision (at least 1). Older history is compacted away in batches of up to 1000
    /// revisions, so somewhat more may be kept.
    pub history: usize,
    /// How many committed revisions a watcher may fall behind in memory before it catches up
    /// from the event log instead (at least 1).
    pub watch_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history: 10_000,
            watch_buffer: 1024,
        }
    }
}

/// The embedded [`Store`]: one redb file. See the [module docs](self).
///
/// Cloning is cheap and shares the store; the file is closed and the lease reaper stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.inner.path)
            .field("history", &self.inner.history)
            .finish_non_exhaustive()
    }
}

struct Inner {
    db: Database,
    path: PathBuf,
    history: u64,
    /// Held from the start of a write transaction until its events are published, so that
    /// revisions are published in order.
    writer: Mutex<()>,
    /// Transactions waiting for the next group commit.
    queue: Mutex<group::Queue>,
    events: broadcast::Sender<Arc<Batch>>,
    /// Wakes the lease reaper: on grant (a nearer deadline) and on drop (to stop it).
    reaper: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reaper.notify_one();
    }
}

impl RedbStore {
    /// Opens the store at `path` with default [`Options`], creating the file and its parent
    /// directories if needed. Must be called within a tokio runtime (it starts the lease
    /// reaper).
    pub async fn open(path: &Path) -> Result<RedbStore, StoreError> {
        Self::open_with(path, Options::default()).await
    }

    /// Opens the store at `path` with `options`; see [`RedbStore::open`].
    pub async fn open_with(path: &Path, options: Options) -> Result<RedbStore, StoreError> {
        let path = path.to_path_buf();
        let db = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || open_database(&path))
        }
        .await
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: format!("open task failed: {e}"),
        })??;
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let inner = Arc::new(Inner {
            db,
            path,
            history: u64::try_from(options.history.max(1)).unwrap_or(u64::MAX),
            writer: Mutex::new(()),
            queue: Mutex::default(),
            events,
            reaper: Arc::new(Notify::new()),
        });
        spawn_lease_reaper(&inner);
        tracing::debug!(path = %inner.path.display(), "opened redb store");
        Ok(RedbStore { inner })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking pool with the store.
    async fn blocking<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Inner) -> Result<R, StoreError> + Send + 'static,
    {
        run_blocking(Arc::clone(&self.inner), f).await
    }
}

async fn run_blocking<R, F>(inner: Arc<Inner>, f: F) -> Result<R, StoreError>
where
    R: Send + 'static,
    F: FnOnce(&Inner) -> Result<R, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

/// Opens (or creates) the database file and its tables, and checks the schema version.
fn open_database(path: &Path) -> Result<Database, StoreError> {
    let fail = |reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    let retry_until = Instant::now() + OPEN_RETRY;
    let db = loop {
        match Database::create(path) {
            Ok(db) => break db,
            Err(DatabaseError::DatabaseAlreadyOpen) if Instant::now() < retry_until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let init = || -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(KV).map_err(backend)?;
            txn.open_table(EVENTS).map_err(backend)?;
            txn.open_table(LEASES).map_err(backend)?;
            txn.open_multimap_table(LEASE_KEYS).map_err(backend)?;
            let mut meta = txn.open_table(META).map_err(backend)?;
            match meta_get(&meta, META_SCHEMA)? {
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION).map_err(backend)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Backend(format!(
                        "unsupported schema version {other} (this build reads {SCHEMA_VERSION})"
                    )))
                }
            }
        }
        txn.commit().map_err(backend)
    };
    init().map_err(|e| fail(e.to_string()))?;
    Ok(db)
}

impl Inner {
    /// Runs `f` in a read transaction.
    fn read<R>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        f(&txn)
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |inner| {
            inner.read(|txn| read_kv(&txn.open_table(KV).map_err(backend)?, &key))
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        // What etcd refuses, refused here too.
        txn.check_size()?;
        if let Some(key) = txn.key_written_twice() {
            let error = StoreError::InvalidTxn(format!(
                "a transaction writes {key} more than once, and etcd allows one put or delete \
                 of a key per transaction"
            ));
            // A failed compare is still a conflict, as etcd evaluates compares first.
            let compares_only = Txn {
                compares: txn.compares,
                ops: Vec::new(),
            };
            return match group::commit(&self.inner, compares_only).await? {
                (Some(key), _) => Ok(TxnOutcome::Conflict { key }),
                (None, _) => Err(error),
            };
        }
        let (conflict, revision) = group::commit(&self.inner, txn).await?;
        Ok(match conflict {
            Some(key) => TxnOutcome::Conflict { key },
            None => TxnOutcome::Committed(revision),
        })
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.blocking(move |inner| {
            inner.read(|txn| {
                let revision = current_revision(&txn.open_table(META).map_err(backend)?)?;
                let kv = txn.open_table(KV).map_err(backend)?;
                let (kvs, more) = scan_prefix(&kv, &prefix, start_after.as_deref(), limit)?;
                Ok(Page::of(kvs, revision, more))
            })
        })
        .await
    }

    /// One read transaction that jumps over the skipped prefixes.
    async fn snapshot_without(&self, skipped: &[&str]) -> Result<Page, StoreError> {
        let skipped: Vec<String> = skipped.iter().map(|s| s.to_string()).collect();
        self.blocking(move |inner| {
            inner.read(|txn| {
                let revision = current_revision(&txn.open_table(META).map_err(backend)?)?;
                let kv = txn.open_table(KV).map_err(backend)?;
                let skipped: Vec<&str> = skipped.iter().map(String::as_str).collect();
                let kvs = tables::scan_skipping(&kv, &skipped)?;
                Ok(Page::of(kvs, revision, false))
            })
        })
        .await
    }

    /// Unlike the provided method, reads every key in one snapshot.
    async fn list(&self, prefix: &str) -> Result<Page, StoreError> {
        self.list_page(prefix, None, 0).await
    }

    /// Unlike the provided method, checks and deletes in one transaction.
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let (existed, _) = self
            .blocking(move |inner| inner.write(|w| w.delete(&key)))
            .await?;
        Ok(existed)
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe before reading the current revision: every revision committed after the
        // read is then on the channel (or, if we lag, in the log).
        let rx = self.inner.events.subscribe();
        self.start_watch(rx, prefix, from).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.blocking(|inner| {
            inner.read(|txn| current_revision(&txn.open_table(META).map_err(backend)?))
        })
        .await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let (id, _) = self
            .blocking(move |inner| inner.write(|w| w.grant(ttl_ms)))
            .await?;
        // The new lease may expire before the reaper's next planned check.
        self.inner.reaper.notify_one();
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        group::renew(&self.inner, lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let (existed, _) = self
            .blocking(move |inner| inner.write(|w| w.revoke(lease)))
            .await?;
        if existed {
            Ok(())
        } else {
            Err(StoreError::LeaseNotFound(lease))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn corrupt_record_is_a_backend_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("s.redb")).await.unwrap();
        store.put("/ok", b"fine".to_vec()).await.unwrap();
        {
            let txn = store.inner.db.begin_write().unwrap();
            txn.open_table(KV)
                .unwrap()
                .insert("/broken", [9u8, 9, 9].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        for err in [
            store.get("/broken").await.unwrap_err(),
            store.list("/").await.unwrap_err(),
            store.put("/broken", b"x".to_vec()).await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, StoreError::Corrupt { key, .. } if key == "/broken"),
                "{err}"
            );
        }
        assert_eq!(store.get("/ok").await.unwrap().unwrap().value, b"fine");
    }
}
