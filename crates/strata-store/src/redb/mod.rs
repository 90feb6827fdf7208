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
//! Every [`Store::txn`] is one redb write transaction committed with
//! [`Durability::Immediate`](redb::Durability::Immediate) (redb's default): it returns only
//! once the commit is on disk. A transaction that changes something bumps the revision by
//! exactly one and all its ops share that revision; one that changes nothing (only compares,
//! deletes of absent keys) leaves the revision as it is and writes nothing. Writers are
//! serialized; blocking redb calls run on tokio's blocking pool.
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

use std::collections::VecDeque;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, MultimapTable, MultimapTableDefinition, ReadTransaction,
    ReadableTable, Table, TableDefinition,
};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::Notify;

use crate::{
    KeyValue, LeaseId, Op, Page, Revision, Store, StoreError, Txn, TxnOutcome, WatchEvent,
    WatchStream,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const LEASES: TableDefinition<u64, (u64, u64)> = TableDefinition::new("leases");
const LEASE_KEYS: MultimapTableDefinition<u64, &str> = MultimapTableDefinition::new("lease_keys");

/// `meta` keys.
const META_SCHEMA: &str = "schema";
const META_REVISION: &str = "revision";
const META_OLDEST: &str = "oldest_event";
const META_NEXT_LEASE: &str = "next_lease";

/// The version of the table layout and record encoding this code reads and writes.
const SCHEMA_VERSION: u64 = 1;

/// How many revisions a catching-up watcher reads from the log per read transaction.
const REPLAY_CHUNK: u64 = 256;

/// How long [`RedbStore::open`] waits for a just-dropped handle of the same file (whose
/// background work may still hold the file for a moment) to release it.
const OPEN_RETRY: Duration = Duration::from_secs(2);

/// Bounds on how long the lease reaper sleeps between checks.
const MIN_REAP_INTERVAL: Duration = Duration::from_millis(10);
const MAX_REAP_INTERVAL: Duration = Duration::from_secs(1);

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

/// The revisions' events, as published to live watchers.
#[derive(Debug)]
struct Batch {
    revision: Revision,
    events: Vec<WatchEvent>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    history: u64,
    /// Held from the start of a write transaction until its events are published, so that
    /// revisions are published in order.
    writer: Mutex<()>,
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

    /// The rest of [`Store::watch`], given a receiver subscribed *before* this call: replays
    /// revisions `from..=current` from the log, then follows `rx`, skipping revisions
    /// already delivered.
    async fn start_watch(
        &self,
        rx: broadcast::Receiver<Arc<Batch>>,
        prefix: &str,
        from: Revision,
    ) -> Result<WatchStream, StoreError> {
        let (current, oldest) = self
            .blocking(|inner| {
                inner.read(|txn| {
                    let meta = txn.open_table(META).map_err(backend)?;
                    Ok((current_revision(&meta)?, oldest_event(&meta)?))
                })
            })
            .await?;
        if from != 0 && from < oldest {
            return Err(StoreError::Compacted {
                requested: from,
                oldest,
            });
        }
        let watch = Watch {
            store: Arc::downgrade(&self.inner),
            rx,
            prefix: prefix.to_owned(),
            next: if from == 0 { current + 1 } else { from },
            head: current,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watch,
            |mut watch| async move { watch.next_event().await.map(|event| (event, watch)) },
        )))
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

/// Maps any redb error to [`StoreError::Backend`].
fn backend(e: impl fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Wall-clock now, in unix milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn meta_get(
    meta: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(meta.get(name).map_err(backend)?.map(|v| v.value()))
}

fn current_revision(meta: &impl ReadableTable<&'static str, u64>) -> Result<Revision, StoreError> {
    Ok(meta_get(meta, META_REVISION)?.unwrap_or(0))
}

/// The oldest revision still in the event log (1 until the log is first compacted).
fn oldest_event(meta: &impl ReadableTable<&'static str, u64>) -> Result<Revision, StoreError> {
    Ok(meta_get(meta, META_OLDEST)?.unwrap_or(1))
}

fn read_kv(
    kv: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<KeyValue>, StoreError> {
    match kv.get(key).map_err(backend)? {
        Some(bytes) => codec::decode_kv(key, bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// Keys under `prefix` after `start_after`, at most `limit` (0: all), and whether more follow.
fn scan_prefix(
    kv: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<(Vec<KeyValue>, bool), StoreError> {
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut kvs = Vec::new();
    for entry in kv
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(backend)?
    {
        let (key, value) = entry.map_err(backend)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if limit > 0 && kvs.len() == limit {
            return Ok((kvs, true));
        }
        kvs.push(codec::decode_kv(key, value.value())?);
    }
    Ok((kvs, false))
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

    /// Runs `f` in a write transaction. If `f` recorded events, they are logged at the next
    /// revision, the transaction is committed and the events are published; if it only
    /// changed lease bookkeeping, it is committed without a new revision; otherwise (or if
    /// `f` fails) nothing is written. Returns `f`'s result and the revision the store is at
    /// after the transaction.
    fn write<R>(
        &self,
        f: impl FnOnce(&mut Writer<'_>) -> Result<R, StoreError>,
    ) -> Result<(R, Revision), StoreError> {
        let _serialized = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.db.begin_write().map_err(backend)?;
        let (out, batch, dirty, revision) = {
            let mut w = Writer::open(&txn)?;
            let out = f(&mut w)?;
            if w.events.is_empty() {
                (out, None, w.dirty, w.revision - 1)
            } else {
                let revision = w.revision;
                w.meta.insert(META_REVISION, revision).map_err(backend)?;
                let mut log = txn.open_table(EVENTS).map_err(backend)?;
                log.insert(revision, codec::encode_events(&w.events).as_slice())
                    .map_err(backend)?;
                self.compact(&mut log, &mut w.meta, revision)?;
                let events = std::mem::take(&mut w.events);
                (out, Some(Batch { revision, events }), true, revision)
            }
        };
        if dirty {
            txn.commit().map_err(backend)?;
        } else {
            txn.abort().map_err(backend)?;
        }
        if let Some(batch) = batch {
            // No receiver (no watch open) is not an error.
            let _ = self.events.send(Arc::new(batch));
        }
        Ok((out, revision))
    }

    /// Drops the oldest log entries once the log holds `history` plus some slack (a tenth
    /// of `history`, at most 1000) revisions, keeping the last `history`.
    fn compact(
        &self,
        log: &mut Table<'_, u64, &'static [u8]>,
        meta: &mut Table<'_, &'static str, u64>,
        revision: Revision,
    ) -> Result<(), StoreError> {
        let oldest = oldest_event(meta)?;
        let slack = (self.history / 10).clamp(1, 1000);
        let kept = (revision + 1).saturating_sub(oldest);
        if kept <= self.history + slack {
            return Ok(());
        }
        let new_oldest = revision + 1 - self.history;
        log.retain_in(oldest..new_oldest, |_, _| false)
            .map_err(backend)?;
        meta.insert(META_OLDEST, new_oldest).map_err(backend)?;
        tracing::debug!(oldest = new_oldest, "compacted the event log");
        Ok(())
    }

    /// Reads the logged events under `prefix` from `next` up to `head` (at most
    /// [`REPLAY_CHUNK`] revisions). Returns them, the last revision read (`next - 1` if
    /// none) and the current revision.
    fn read_log(
        &self,
        prefix: &str,
        next: Revision,
        head: Revision,
    ) -> Result<(Vec<WatchEvent>, Revision, Revision), StoreError> {
        self.read(|txn| {
            let meta = txn.open_table(META).map_err(backend)?;
            let current = current_revision(&meta)?;
            let oldest = oldest_event(&meta)?;
            if next < oldest {
                return Err(StoreError::Compacted {
                    requested: next,
                    oldest,
                });
            }
            let end = head.min(current).min(next.saturating_add(REPLAY_CHUNK - 1));
            if end < next {
                return Ok((Vec::new(), next - 1, current));
            }
            let log = txn.open_table(EVENTS).map_err(backend)?;
            let mut events = Vec::new();
            let mut expected = next;
            for entry in log.range(next..=end).map_err(backend)? {
                let (revision, bytes) = entry.map_err(backend)?;
                let revision = revision.value();
                if revision != expected {
                    return Err(StoreError::Backend(format!(
                        "event log is missing revision {expected}"
                    )));
                }
                expected += 1;
                events.extend(
                    codec::decode_events(revision, bytes.value())?
                        .into_iter()
                        .filter(|e| e.key().starts_with(prefix)),
                );
            }
            if expected != end + 1 {
                return Err(StoreError::Backend(format!(
                    "event log is missing revision {expected}"
                )));
            }
            Ok((events, end, current))
        })
    }

    /// Expires the leases whose deadline has passed, and returns the nearest deadline of the
    /// others.
    fn expire_due(&self) -> Result<Option<u64>, StoreError> {
        let now = now_ms();
        let (due, next) = self.read(|txn| {
            let leases = txn.open_table(LEASES).map_err(backend)?;
            let mut due = Vec::new();
            let mut next: Option<u64> = None;
            for entry in leases.iter().map_err(backend)? {
                let (id, record) = entry.map_err(backend)?;
                let (_ttl, deadline) = record.value();
                if deadline <= now {
                    due.push(id.value());
                } else {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                }
            }
            Ok((due, next))
        })?;
        if !due.is_empty() {
            let ((), revision) = self.write(|w| {
                for id in due {
                    // Re-check: a keep-alive may have come in since the read.
                    if w.live_lease(id)?.is_none() {
                        w.revoke(id)?;
                    }
                }
                Ok(())
            })?;
            tracing::debug!(revision, "expired leases");
        }
        Ok(next)
    }
}

/// Starts the task that expires leases. It holds the store weakly and stops once the store
/// is dropped.
fn spawn_lease_reaper(inner: &Arc<Inner>) {
    let store = Arc::downgrade(inner);
    let wake = Arc::clone(&inner.reaper);
    tokio::spawn(reap_leases(store, wake));
}

async fn reap_leases(store: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(inner) = store.upgrade() else {
            return;
        };
        let next = match run_blocking(inner, Inner::expire_due).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "expiring leases failed; retrying");
                None
            }
        };
        let delay = next
            .map_or(MAX_REAP_INTERVAL, |deadline| {
                Duration::from_millis(deadline.saturating_sub(now_ms()).saturating_add(1))
            })
            .clamp(MIN_REAP_INTERVAL, MAX_REAP_INTERVAL);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
        }
    }
}

/// The tables of one write transaction, and the changes it has made so far.
struct Writer<'t> {
    kv: Table<'t, &'static str, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    leases: Table<'t, u64, (u64, u64)>,
    lease_keys: MultimapTable<'t, u64, &'static str>,
    /// The revision this transaction's changes get.
    revision: Revision,
    /// Wall-clock now (unix ms), fixed for the transaction.
    now: u64,
    events: Vec<WatchEvent>,
    /// Whether anything was written (events or lease bookkeeping).
    dirty: bool,
}

impl<'t> Writer<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        let meta = txn.open_table(META).map_err(backend)?;
        let revision = current_revision(&meta)? + 1;
        Ok(Self {
            kv: txn.open_table(KV).map_err(backend)?,
            meta,
            leases: txn.open_table(LEASES).map_err(backend)?,
            lease_keys: txn.open_multimap_table(LEASE_KEYS).map_err(backend)?,
            revision,
            now: now_ms(),
            events: Vec::new(),
            dirty: false,
        })
    }

    /// Applies `txn`: `None` if every compare held and the ops were applied, else the key of
    /// the first failed compare.
    fn apply(&mut self, txn: Txn) -> Result<Option<String>, StoreError> {
        for compare in txn.compares {
            let at = read_kv(&self.kv, &compare.key)?.map_or(0, |kv| kv.mod_revision);
            if at != compare.mod_revision {
                return Ok(Some(compare.key));
            }
        }
        for op in txn.ops {
            match op {
                Op::Put { key, value, lease } => self.put(key, value, lease)?,
                Op::Delete { key } => {
                    self.delete(&key)?;
                }
            }
        }
        Ok(None)
    }

    fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<(), StoreError> {
        if let Some(id) = lease {
            if self.live_lease(id)?.is_none() {
                return Err(StoreError::LeaseNotFound(id));
            }
        }
        let prev = read_kv(&self.kv, &key)?;
        let prev_lease = prev.as_ref().and_then(|p| p.lease);
        if prev_lease != lease {
            if let Some(old) = prev_lease {
                self.lease_keys.remove(old, key.as_str()).map_err(backend)?;
            }
            if let Some(new) = lease {
                self.lease_keys.insert(new, key.as_str()).map_err(backend)?;
            }
        }
        let kv = KeyValue {
            create_revision: prev.as_ref().map_or(self.revision, |p| p.create_revision),
            mod_revision: self.revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
            key,
            value,
        };
        self.kv
            .insert(kv.key.as_str(), codec::encode_kv(&kv).as_slice())
            .map_err(backend)?;
        self.events.push(WatchEvent::Put(kv));
        self.dirty = true;
        Ok(())
    }

    /// Deletes `key`; returns whether it existed.
    fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        let Some(prev) = read_kv(&self.kv, key)? else {
            return Ok(false);
        };
        self.kv.remove(key).map_err(backend)?;
        if let Some(lease) = prev.lease {
            self.lease_keys.remove(lease, key).map_err(backend)?;
        }
        self.events.push(WatchEvent::Delete {
            key: key.to_owned(),
            revision: self.revision,
            prev: Some(prev),
        });
        self.dirty = true;
        Ok(true)
    }

    /// The lease's `(ttl_ms, deadline)` if it exists and has not expired.
    fn live_lease(&self, id: LeaseId) -> Result<Option<(u64, u64)>, StoreError> {
        let record = self.leases.get(id).map_err(backend)?.map(|r| r.value());
        Ok(record.filter(|&(_, deadline)| deadline > self.now))
    }

    fn grant(&mut self, ttl_ms: u64) -> Result<LeaseId, StoreError> {
        let id = meta_get(&self.meta, META_NEXT_LEASE)?.unwrap_or(1);
        self.meta.insert(META_NEXT_LEASE, id + 1).map_err(backend)?;
        self.leases
            .insert(id, (ttl_ms, self.now.saturating_add(ttl_ms)))
            .map_err(backend)?;
        self.dirty = true;
        Ok(id)
    }

    fn keep_alive(&mut self, id: LeaseId) -> Result<(), StoreError> {
        let (ttl_ms, _) = self.live_lease(id)?.ok_or(StoreError::LeaseNotFound(id))?;
        self.leases
            .insert(id, (ttl_ms, self.now.saturating_add(ttl_ms)))
            .map_err(backend)?;
        self.dirty = true;
        Ok(())
    }

    /// Removes the lease and deletes its keys; returns whether the lease existed.
    fn revoke(&mut self, id: LeaseId) -> Result<bool, StoreError> {
        if self.leases.remove(id).map_err(backend)?.is_none() {
            return Ok(false);
        }
        let mut keys = Vec::new();
        for key in self.lease_keys.remove_all(id).map_err(backend)? {
            keys.push(key.map_err(backend)?.value().to_owned());
        }
        for key in keys {
            // Only delete keys that are still attached to this lease.
            if read_kv(&self.kv, &key)?.is_some_and(|kv| kv.lease == Some(id)) {
                self.delete(&key)?;
            }
        }
        self.dirty = true;
        Ok(true)
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
        let (conflict, revision) = self
            .blocking(move |inner| inner.write(|w| w.apply(txn)))
            .await?;
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
                let next = if more {
                    kvs.last().map(|kv| kv.key.clone())
                } else {
                    None
                };
                Ok(Page {
                    kvs,
                    revision,
                    next,
                })
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
        self.blocking(move |inner| inner.write(|w| w.keep_alive(lease)))
            .await
            .map(|((), _)| ())
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

/// The state of one watch stream.
struct Watch {
    /// Weak, so that an open watch does not keep the store (and its file) open.
    store: Weak<Inner>,
    rx: broadcast::Receiver<Arc<Batch>>,
    prefix: String,
    /// The next revision to deliver; every earlier one has been delivered (or predates the
    /// watch).
    next: Revision,
    /// Revisions up to `head` are committed and must be read from the log (catching up);
    /// after that the watch follows the channel.
    head: Revision,
    /// Events read but not yet yielded.
    pending: VecDeque<WatchEvent>,
    done: bool,
}

impl Watch {
    async fn next_event(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if self.next <= self.head {
                if let Err(e) = self.catch_up().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) if batch.revision < self.next => {} // already delivered
                Ok(batch) if batch.revision == self.next => {
                    let prefix = &self.prefix;
                    self.pending.extend(
                        batch
                            .events
                            .iter()
                            .filter(|e| e.key().starts_with(prefix.as_str()))
                            .cloned(),
                    );
                    self.next += 1;
                }
                // A revision was skipped, or the channel dropped some: read what we missed
                // from the log (everything committed so far).
                Ok(_) | Err(RecvError::Lagged(_)) => self.head = Revision::MAX,
                Err(RecvError::Closed) => {
                    self.done = true;
                    return Some(Err(StoreError::Closed));
                }
            }
        }
    }

    /// Reads the next chunk of missed revisions from the log.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let inner = self.store.upgrade().ok_or(StoreError::Closed)?;
        let (prefix, next, head) = (self.prefix.clone(), self.next, self.head);
        let (events, last, current) =
            run_blocking(inner, move |inner| inner.read_log(&prefix, next, head)).await?;
        self.pending.extend(events);
        self.next = last + 1;
        if self.next > current {
            // Caught up with everything committed; the rest comes on the channel.
            self.head = current;
        }
        Ok(())
    }
}

/// The binary encoding of records (little-endian, length-prefixed, versioned).
///
/// - kv record: `FORMAT`, then a *record*.
/// - record: create_revision u64, mod_revision u64, version u64, lease flag u8 (+ u64),
///   value length u64 + bytes.
/// - event log entry: `FORMAT`, event count u64, then per event a tag u8 and a key (length
///   u64, UTF-8 bytes); tag 0 (put) is followed by a record, tag 1 (delete) by a flag u8
///   and, if set, the previous record.
mod codec {
    use crate::{KeyValue, Revision, StoreError, WatchEvent};

    const FORMAT: u8 = 1;
    const TAG_PUT: u8 = 0;
    const TAG_DELETE: u8 = 1;

    pub(super) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
        let mut out = Vec::with_capacity(42 + kv.value.len());
        out.push(FORMAT);
        put_record(&mut out, kv);
        out
    }

    pub(super) fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
        let decode = || {
            let mut r = Reader(bytes);
            r.format()?;
            let kv = r.record(key.to_owned())?;
            r.finish()?;
            Ok::<_, String>(kv)
        };
        decode().map_err(|reason| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        })
    }

    pub(super) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
        let mut out = vec![FORMAT];
        put_u64(&mut out, events.len() as u64);
        for event in events {
            match event {
                WatchEvent::Put(kv) => {
                    out.push(TAG_PUT);
                    put_bytes(&mut out, kv.key.as_bytes());
                    put_record(&mut out, kv);
                }
                WatchEvent::Delete { key, prev, .. } => {
                    out.push(TAG_DELETE);
                    put_bytes(&mut out, key.as_bytes());
                    match prev {
                        Some(prev) => {
                            out.push(1);
                            put_record(&mut out, prev);
                        }
                        None => out.push(0),
                    }
                }
            }
        }
        out
    }

    pub(super) fn decode_events(
        revision: Revision,
        bytes: &[u8],
    ) -> Result<Vec<WatchEvent>, StoreError> {
        let decode = || {
            let mut r = Reader(bytes);
            r.format()?;
            let count = r.u64()?;
            let mut events = Vec::with_capacity(usize::try_from(count.min(1024)).unwrap_or(0));
            for _ in 0..count {
                let tag = r.u8()?;
                let key = r.string()?;
                events.push(match tag {
                    TAG_PUT => WatchEvent::Put(r.record(key)?),
                    TAG_DELETE => {
                        let prev = match r.u8()? {
                            0 => None,
                            1 => Some(r.record(key.clone())?),
                            other => return Err(format!("bad prev flag {other}")),
                        };
                        WatchEvent::Delete {
                            key,
                            revision,
                            prev,
                        }
                    }
                    other => return Err(format!("unknown event tag {other}")),
                });
            }
            r.finish()?;
            Ok(events)
        };
        decode().map_err(|e: String| {
            StoreError::Backend(format!(
                "corrupt event log entry at revision {revision}: {e}"
            ))
        })
    }

    fn put_u64(out: &mut Vec<u8>, n: u64) {
        out.extend_from_slice(&n.to_le_bytes());
    }

    fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        put_u64(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn put_record(out: &mut Vec<u8>, kv: &KeyValue) {
        put_u64(out, kv.create_revision);
        put_u64(out, kv.mod_revision);
        put_u64(out, kv.version);
        match kv.lease {
            Some(lease) => {
                out.push(1);
                put_u64(out, lease);
            }
            None => out.push(0),
        }
        put_bytes(out, &kv.value);
    }

    /// A cursor over an encoded record; every read checks the length.
    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err(format!(
                    "truncated: needs {n} more bytes, {} left",
                    self.0.len()
                ));
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Ok(head)
        }

        fn u8(&mut self) -> Result<u8, String> {
            Ok(self.take(1)?[0])
        }

        fn u64(&mut self) -> Result<u64, String> {
            let bytes: [u8; 8] = self
                .take(8)?
                .try_into()
                .map_err(|_| "short integer".to_owned())?;
            Ok(u64::from_le_bytes(bytes))
        }

        fn bytes(&mut self) -> Result<&'a [u8], String> {
            let len = self.u64()?;
            let len = usize::try_from(len).map_err(|_| format!("length {len} too large"))?;
            self.take(len)
        }

        fn string(&mut self) -> Result<String, String> {
            let bytes = self.bytes()?;
            String::from_utf8(bytes.to_vec()).map_err(|e| format!("key is not UTF-8: {e}"))
        }

        fn format(&mut self) -> Result<(), String> {
            match self.u8()? {
                FORMAT => Ok(()),
                other => Err(format!("unknown record format {other}")),
            }
        }

        fn record(&mut self, key: String) -> Result<KeyValue, String> {
            let create_revision = self.u64()?;
            let mod_revision = self.u64()?;
            let version = self.u64()?;
            let lease = match self.u8()? {
                0 => None,
                1 => Some(self.u64()?),
                other => return Err(format!("bad lease flag {other}")),
            };
            let value = self.bytes()?.to_vec();
            Ok(KeyValue {
                key,
                value,
                create_revision,
                mod_revision,
                version,
                lease,
            })
        }

        fn finish(&self) -> Result<(), String> {
            if self.0.is_empty() {
                Ok(())
            } else {
                Err(format!("{} trailing bytes", self.0.len()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    fn kv(key: &str, value: &[u8], lease: Option<LeaseId>) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version: 2,
            lease,
        }
    }

    #[test]
    fn codec_round_trips() {
        let record = kv("/a", &[0, 255, 1], Some(9));
        let bytes = codec::encode_kv(&record);
        assert_eq!(codec::decode_kv("/a", &bytes).unwrap(), record);

        let events = vec![
            WatchEvent::Put(kv("/a", b"x", None)),
            WatchEvent::Delete {
                key: "/b".into(),
                revision: 7,
                prev: Some(kv("/b", b"", Some(1))),
            },
            WatchEvent::Delete {
                key: "/c".into(),
                revision: 7,
                prev: None,
            },
        ];
        let bytes = codec::encode_events(&events);
        assert_eq!(codec::decode_events(7, &bytes).unwrap(), events);
    }

    #[test]
    fn codec_rejects_garbage_without_panicking() {
        let good = codec::encode_kv(&kv("/a", b"value", Some(1)));
        for len in 0..good.len() {
            assert!(
                codec::decode_kv("/a", &good[..len]).is_err(),
                "prefix of {len}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(codec::decode_kv("/a", &trailing).is_err());
        let mut huge = vec![1];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(codec::decode_events(1, &huge).is_err());
        let err = codec::decode_kv("/named", &[2, 0]).unwrap_err();
        assert!(err.to_string().contains("/named"), "{err}");
    }

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

    /// Revisions committed between a watch's subscription and its read of the current
    /// revision are both on the channel and in the log: delivered once, from the log.
    #[tokio::test]
    async fn watch_delivers_revisions_in_both_log_and_channel_once() {
        use futures::StreamExt;

        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("s.redb")).await.unwrap();
        let first = store.put("/w/before", b"0".to_vec()).await.unwrap();
        let (rx_old, rx_new) = (
            store.inner.events.subscribe(),
            store.inner.events.subscribe(),
        );
        let mut expected = vec![first];
        for i in 1..=3u8 {
            expected.push(store.put(&format!("/w/{i}"), vec![i]).await.unwrap());
        }
        for (rx, from, want) in [(rx_old, first, &expected[..]), (rx_new, 0, &[][..])] {
            let mut watch = store.start_watch(rx, "/w/", from).await.unwrap();
            let live = store.put("/w/live", vec![]).await.unwrap();
            for &rev in want.iter().chain([&live]) {
                let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
                    .await
                    .expect("an event")
                    .expect("not the end")
                    .expect("not an error");
                assert_eq!(event.revision(), rev);
            }
            let more = tokio::time::timeout(Duration::from_millis(100), watch.next()).await;
            assert!(more.is_err(), "duplicate: {more:?}");
        }
    }

    #[tokio::test]
    async fn compaction_keeps_the_last_history_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            history: 20,
            ..Options::default()
        };
        let store = RedbStore::open_with(&dir.path().join("s.redb"), options)
            .await
            .unwrap();
        for i in 0..100 {
            store.put(&format!("/k/{i}"), vec![]).await.unwrap();
        }
        let (oldest, logged) = store
            .inner
            .read(|txn| {
                let meta = txn.open_table(META).map_err(backend)?;
                let log = txn.open_table(EVENTS).map_err(backend)?;
                Ok((oldest_event(&meta)?, log.len().map_err(backend)?))
            })
            .unwrap();
        // At least `history` kept, at most `history` + slack (2).
        assert!((20..=22).contains(&logged), "{logged} logged");
        assert_eq!(oldest, 101 - logged);
        assert!(matches!(
            store.watch("/k/", oldest - 1).await,
            Err(StoreError::Compacted { requested, oldest: o }) if requested == oldest - 1 && o == oldest
        ));
        assert!(store.watch("/k/", oldest).await.is_ok());
    }
}
