//! Writes: a redb write transaction applies one [`Txn`] (or a lease operation), or a group of
//! them queued meanwhile (`group.rs`), each at its own revision; it logs their events, compacts
//! the log, commits once and publishes the events to live watchers.

use std::sync::{Arc, PoisonError};

use redb::{MultimapTable, ReadableTable, Table};

use super::codec;
use super::tables::{
    backend, current_revision, meta_get, now_ms, oldest_event, read_kv, EVENTS, KV, LEASES,
    LEASE_KEYS, META, META_NEXT_LEASE, META_OLDEST, META_REVISION,
};
use super::watch::Batch;
use super::Inner;
use crate::{KeyValue, LeaseId, Op, Revision, StoreError, Txn, WatchEvent};

impl Inner {
    /// Runs `f` in a write transaction. If `f` recorded events, they are logged at the next
    /// revision, the transaction is committed and the events are published; if it only
    /// changed lease bookkeeping, it is committed without a new revision; otherwise (or if
    /// `f` fails) nothing is written. Returns `f`'s result and the revision the store is at
    /// after the transaction.
    pub(super) fn write<R>(
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

    /// Applies `txns` in order, each at its own revision as if committed alone, in one redb
    /// write transaction with one commit (group commit: one disk sync for all). Returns, for
    /// each, its failed compare (if any) and the revision the store was at after it, or the
    /// error that refused it (a dead lease: nothing of it was applied). Any other error fails
    /// the whole group and writes nothing (the caller then commits each alone, so only the
    /// transaction at fault fails).
    pub(super) fn write_group(
        &self,
        txns: &[Txn],
    ) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let _serialized = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.db.begin_write().map_err(backend)?;
        let mut results = Vec::with_capacity(txns.len());
        let mut batches = Vec::new();
        {
            let mut w = Writer::open(&txn)?;
            let mut log = txn.open_table(EVENTS).map_err(backend)?;
            for one in txns {
                match w.apply(one.clone()) {
                    Ok(conflict) => {
                        let revision = if w.events.is_empty() {
                            w.revision - 1
                        } else {
                            let revision = w.revision;
                            log.insert(revision, codec::encode_events(&w.events).as_slice())
                                .map_err(backend)?;
                            let events = std::mem::take(&mut w.events);
                            batches.push(Batch { revision, events });
                            w.revision += 1;
                            revision
                        };
                        results.push(Ok((conflict, revision)));
                    }
                    Err(refused @ StoreError::LeaseNotFound(_)) => results.push(Err(refused)),
                    Err(error) => return Err(error),
                }
            }
            if let Some(last) = batches.last() {
                w.meta
                    .insert(META_REVISION, last.revision)
                    .map_err(backend)?;
                self.compact(&mut log, &mut w.meta, last.revision)?;
            }
        }
        if batches.is_empty() {
            txn.abort().map_err(backend)?;
        } else {
            txn.commit().map_err(backend)?;
        }
        for batch in batches {
            // No receiver (no watch open) is not an error.
            let _ = self.events.send(Arc::new(batch));
        }
        Ok(results)
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
}
/// What applying one [`Txn`] came to: its failed compare (if any) and the revision the store
/// was at after it.
pub(super) type Applied = (Option<String>, Revision);

/// The tables of one write transaction, and the changes it has made so far.
pub(super) struct Writer<'t> {
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
    /// A put with a dead lease refuses the whole transaction before anything of it is
    /// applied, so only the backend's own errors can leave it half done (and they fail the
    /// redb transaction).
    pub(super) fn apply(&mut self, txn: Txn) -> Result<Option<String>, StoreError> {
        for compare in txn.compares {
            let at = read_kv(&self.kv, &compare.key)?.map_or(0, |kv| kv.mod_revision);
            if at != compare.mod_revision {
                return Ok(Some(compare.key));
            }
        }
        for op in &txn.ops {
            if let Op::Put {
                lease: Some(id), ..
            } = op
            {
                if self.live_lease(*id)?.is_none() {
                    return Err(StoreError::LeaseNotFound(*id));
                }
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
    pub(super) fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
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
    pub(super) fn live_lease(&self, id: LeaseId) -> Result<Option<(u64, u64)>, StoreError> {
        let record = self.leases.get(id).map_err(backend)?.map(|r| r.value());
        Ok(record.filter(|&(_, deadline)| deadline > self.now))
    }

    pub(super) fn grant(&mut self, ttl_ms: u64) -> Result<LeaseId, StoreError> {
        let id = meta_get(&self.meta, META_NEXT_LEASE)?.unwrap_or(1);
        self.meta.insert(META_NEXT_LEASE, id + 1).map_err(backend)?;
        self.leases
            .insert(id, (ttl_ms, self.now.saturating_add(ttl_ms)))
            .map_err(backend)?;
        self.dirty = true;
        Ok(id)
    }

    pub(super) fn keep_alive(&mut self, id: LeaseId) -> Result<(), StoreError> {
        let (ttl_ms, _) = self.live_lease(id)?.ok_or(StoreError::LeaseNotFound(id))?;
        self.leases
            .insert(id, (ttl_ms, self.now.saturating_add(ttl_ms)))
            .map_err(backend)?;
        self.dirty = true;
        Ok(())
    }

    /// Removes the lease and deletes its keys; returns whether the lease existed.
    pub(super) fn revoke(&mut self, id: LeaseId) -> Result<bool, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    use super::super::{Options, RedbStore};
    use crate::Store;

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
