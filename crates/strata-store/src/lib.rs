//! Strata's state store.
//!
//! [`Store`] is the one interface the control plane uses for state: get, put, multi-key
//! transactions guarded by revisions (compare-and-swap), prefix listing with pagination,
//! watches that resume from a revision, and leases. Its semantics are etcd v3's (one global,
//! monotonically increasing revision; every key carries the revision that created and last
//! modified it), so the embedded backend and the etcd backend are interchangeable.
//!
//! - [`redb::RedbStore`]: the embedded default, one file in the data directory, durable at
//!   every commit (survives `kill -9`).
//! - [`etcd::EtcdStore`]: the state in an etcd v3 cluster (`etcd://HOST:PORT,.../NAMESPACE`),
//!   for highly available control planes; several Strata clusters can share one etcd under
//!   different namespaces.
//! - [`conformance`] (feature `test-util`): the behaviour suite every backend must pass.
//! - [`testing`] (feature `test-util`): a real etcd (one member or a cluster) started on
//!   loopback for tests.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub mod etcd;
pub mod redb;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use crate::etcd::{EtcdOptions, EtcdStore};
pub use crate::redb::RedbStore;

/// A store-wide revision. Every write transaction gets the next one. 0 means "never written".
pub type Revision = u64;

/// A lease id. Keys put with a lease are deleted when the lease expires or is revoked.
pub type LeaseId = u64;

/// One key and its value with its revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the first put).
    pub version: u64,
    pub lease: Option<LeaseId>,
}

/// A condition of a transaction: the key's `mod_revision` must equal `mod_revision`
/// (0: the key must not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub mod_revision: Revision,
}

/// A write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
}

/// The most compares, and the most puts and deletes, one transaction may carry: etcd's
/// default `--max-txn-ops`. Every backend refuses more ([`StoreError::InvalidTxn`]), so a
/// transaction that works on one works on all; split larger writes.
pub const MAX_TXN_OPS: usize = 128;

/// Writes applied atomically if every compare holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    /// Refuses a transaction larger than [`MAX_TXN_OPS`] (as etcd does before anything
    /// else).
    pub fn check_size(&self) -> Result<(), StoreError> {
        if self.compares.len() > MAX_TXN_OPS || self.ops.len() > MAX_TXN_OPS {
            return Err(StoreError::InvalidTxn(format!(
                "{} compares and {} writes, more than the {MAX_TXN_OPS} of each a transaction \
                 may carry",
                self.compares.len(),
                self.ops.len()
            )));
        }
        Ok(())
    }

    /// A key this transaction writes (puts or deletes) more than once, which etcd refuses
    /// (after its compares: a failed compare is still a conflict).
    pub fn key_written_twice(&self) -> Option<&str> {
        let mut written = std::collections::HashSet::with_capacity(self.ops.len());
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put { key, .. } | Op::Delete { key } => key.as_str(),
            })
            .find(|key| !written.insert(*key))
    }

    pub fn new() -> Self {
        Self::default()
    }
    /// Require `key` to be at `mod_revision` (0: absent).
    pub fn when(mut self, key: impl Into<String>, mod_revision: Revision) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            mod_revision,
        });
        self
    }
    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value,
            lease: None,
        });
        self
    }
    pub fn put_with_lease(
        mut self,
        key: impl Into<String>,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value,
            lease: Some(lease),
        });
        self
    }
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
}

/// The result of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every compare held; the ops were applied at this revision (the current revision, if
    /// there were no ops or they changed nothing).
    Committed(Revision),
    /// A compare failed; nothing was written. Names the first failed compare's key.
    Conflict { key: String },
}

impl TxnOutcome {
    pub fn is_committed(&self) -> bool {
        matches!(self, TxnOutcome::Committed(_))
    }
}

/// One page of a prefix listing, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub kvs: Vec<KeyValue>,
    /// The store revision the page was read at.
    pub revision: Revision,
    /// Pass as `start_after` to read the next page; `None` when this was the last.
    pub next: Option<String>,
}

impl Page {
    /// A page of `kvs` read at `revision`; `more`: keys follow the last one, so `next` names
    /// it.
    pub(crate) fn of(kvs: Vec<KeyValue>, revision: Revision, more: bool) -> Page {
        let next = if more {
            kvs.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        Page {
            kvs,
            revision,
            next,
        }
    }
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was put; `kv.mod_revision` is the event's revision.
    Put(KeyValue),
    /// The key was deleted at `revision` (`prev` is its value before).
    Delete {
        key: String,
        revision: Revision,
        prev: Option<KeyValue>,
    },
}

impl WatchEvent {
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// A stream of changes under a prefix, in revision order, with no gap and no duplicate.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("revision {requested} has been compacted (oldest kept: {oldest}); list again and watch from the listing's revision")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("lease {0} not found or expired")]
    LeaseNotFound(LeaseId),
    /// The store cannot serve now (etcd unreachable, or without a leader): worth retrying,
    /// on this server or another.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A stored record does not decode: the data is damaged, retrying will not help.
    #[error("corrupt record for key {key:?}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A key the store cannot hold (empty, or outside its namespace).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A transaction no backend may run: too large, or a key written twice. A bug of the
    /// caller, never worth retrying as it is.
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    #[error("store backend failed: {0}")]
    Backend(String),
    #[error("store at {path} cannot be opened: {reason}")]
    Open { path: String, reason: String },
    #[error("the store has been closed")]
    Closed,
}

/// Strata's state store (semantics of etcd v3). See the crate docs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's current value, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Applies `txn` atomically if all its compares hold.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// Keys starting with `prefix` and sorting after `start_after` (exclusive), at most
    /// `limit` of them (0: no limit), in key order, all read at one revision.
    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// Every change under `prefix` with revision >= `from` (0: from now on), then each new one
    /// as it commits. Fails with [`StoreError::Compacted`] if `from` is older than the kept
    /// history.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError>;

    /// The store's current revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// A new lease that expires `ttl` after its grant or its last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renews a lease. Fails with [`StoreError::LeaseNotFound`] if it already expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Ends a lease now, deleting its keys.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;

    // Provided conveniences.

    /// Unconditional put; returns the write's revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        match self.txn(Txn::new().put(key, value)).await? {
            TxnOutcome::Committed(rev) => Ok(rev),
            TxnOutcome::Conflict { key } => Err(StoreError::Backend(format!(
                "unconditional put of {key} reported a conflict"
            ))),
        }
    }

    /// Put only if the key is at `expected` (0: absent).
    async fn cas(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
    ) -> Result<TxnOutcome, StoreError> {
        self.txn(Txn::new().when(key, expected).put(key, value))
            .await
    }

    /// Unconditional delete; returns whether the key existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let existed = self.get(key).await?.is_some();
        self.txn(Txn::new().delete(key)).await?;
        Ok(existed)
    }

    /// Every key but those under the `skipped` prefixes, all read at one revision: a
    /// consistent snapshot of the store without the parts the caller does not want (a backup
    /// leaves out a fleet's million instance records). Backends read around the skipped
    /// prefixes; this default reads everything at once and drops them.
    async fn snapshot_without(&self, skipped: &[&str]) -> Result<Page, StoreError> {
        let mut page = self.list_page("/", None, 0).await?;
        page.kvs
            .retain(|kv| !skipped.iter().any(|prefix| kv.key.starts_with(prefix)));
        Ok(page)
    }

    /// Every key under `prefix`, read page by page.
    async fn list(&self, prefix: &str) -> Result<Page, StoreError> {
        let mut all = Vec::new();
        let mut start_after: Option<String> = None;
        let mut revision;
        loop {
            let page = self.list_page(prefix, start_after.as_deref(), 1000).await?;
            revision = page.revision;
            all.extend(page.kvs);
            match page.next {
                Some(next) => start_after = Some(next),
                None => break,
            }
        }
        Ok(Page {
            kvs: all,
            revision,
            next: None,
        })
    }
}
