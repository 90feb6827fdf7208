//! A store that passes everything to the embedded one, but for what a test intercepts: a
//! transaction refused or a revision slow to come, to show what the control plane does when
//! its store fails.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use strata_store::{KeyValue, LeaseId, Page, Revision, Store, StoreError, Txn, TxnOutcome};

/// What a test does to a transaction before the store sees it: `Some(error)` refuses it.
pub type TxnFault = Box<dyn Fn(&Txn) -> Option<StoreError> + Send + Sync>;
/// How long a test makes `revision` wait (zero: it answers at once).
pub type RevisionDelay = Box<dyn Fn() -> Duration + Send + Sync>;

pub struct FaultyStore {
    pub inner: Arc<dyn Store>,
    pub txn_fault: TxnFault,
    pub revision_delay: RevisionDelay,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> FaultyStore {
        FaultyStore {
            inner,
            txn_fault: Box::new(|_| None),
            revision_delay: Box::new(|| Duration::ZERO),
        }
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        if let Some(error) = (self.txn_fault)(&txn) {
            return Err(error);
        }
        self.inner.txn(txn).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.inner.list_page(prefix, start_after, limit).await
    }
    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<strata_store::WatchStream, StoreError> {
        self.inner.watch(prefix, from).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        let delay = (self.revision_delay)();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.inner.revision().await
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        self.inner.grant_lease(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.keep_alive(lease).await
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke_lease(lease).await
    }
}
