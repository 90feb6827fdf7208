//! The lease reaper: a background task that expires the leases whose deadline has passed,
//! deleting their keys in one transaction, and sleeps until the next deadline.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redb::ReadableTable;
use tokio::sync::Notify;

use super::tables::{backend, now_ms, LEASES};
use super::{run_blocking, Inner};
use crate::StoreError;

/// Bounds on how long the lease reaper sleeps between checks.
const MIN_REAP_INTERVAL: Duration = Duration::from_millis(10);
const MAX_REAP_INTERVAL: Duration = Duration::from_secs(1);

impl Inner {
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
pub(super) fn spawn_lease_reaper(inner: &Arc<Inner>) {
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
