//! The behaviour suite every [`Store`] backend must pass (feature `test-util`).
//!
//! Each check is a `pub async fn` taking a fresh, empty store and panicking (with a message
//! saying what was expected) when the backend misbehaves. [`run_all`] runs every check, each
//! with its own store from a [`Harness`], and reports the failed ones by name:
//!
//! ```ignore
//! let report = strata_store::conformance::run_all(&MyHarness::new()).await;
//! assert!(report.skipped.is_empty());
//! ```
//!
//! The checks assume only what the [`Store`] docs promise (etcd v3 semantics), so the embedded
//! and the etcd backend can both pass them: revisions are compared relative to what the store
//! reported, never as absolute numbers. The compaction check needs a store with a small,
//! configured history; a harness that cannot make one (etcd compacts on its own schedule)
//! returns `None` from [`Harness::fresh_with_history`] and the check is skipped.
//!
//! Every wait is bounded: a watch event must arrive within [`WAIT`], a lease must expire
//! within [`WAIT`], and a whole check must finish within [`CHECK_TIMEOUT`].

mod helpers;
mod kv;
mod lease;
mod listing;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::{Store, StoreError};

pub use kv::{
    delete_resets_create_revision, get_missing_key, noop_txn_keeps_revision, put_get_roundtrip,
    revision_is_monotonic, txn_compare_and_swap, txn_conflict_writes_nothing,
    txn_etcd_refuses_is_refused, txn_multi_op_is_atomic,
};
pub use lease::{
    keep_alive_extends_lease, lease_expiry_deletes_keys, put_without_lease_detaches,
    revoke_deletes_at_once, unknown_lease_is_rejected,
};
pub use listing::{list_page_order_and_prefix, list_pagination, snapshot_without_skips_prefixes};
pub use watch::{
    watch_compacted, watch_deletes, watch_from_zero_sees_only_new, watch_prefix_filtering,
    watch_replays_then_continues_live, watch_txn_events_share_revision,
};

/// The longest the suite waits for any one thing (an event, an expiry, a writer).
pub const WAIT: Duration = Duration::from_secs(10);

/// The longest one check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The history the compaction check asks for.
pub const SMALL_HISTORY: usize = 10;

/// A check: runs against a fresh, empty store and panics if the store misbehaves.
pub type Check = fn(Arc<dyn Store>) -> BoxFuture<'static, ()>;

/// Makes fresh, empty stores of the backend under test.
pub trait Harness: Send + Sync {
    /// A fresh, empty store.
    fn fresh(&self) -> BoxFuture<'_, Result<Arc<dyn Store>, StoreError>>;

    /// A fresh, empty store that keeps only about `history` revisions of watch history
    /// (at least `history`, and compacts older ones once a few more have been written), or
    /// `None` if the backend's compaction cannot be configured so (the compaction check is
    /// then skipped).
    fn fresh_with_history(
        &self,
        history: usize,
    ) -> Option<BoxFuture<'_, Result<Arc<dyn Store>, StoreError>>> {
        let _ = history;
        None
    }
}

/// What [`run_all`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub passed: Vec<&'static str>,
    /// Checks the harness could not run (no configurable compaction).
    pub skipped: Vec<&'static str>,
    /// Failed checks, with why.
    pub failed: Vec<(&'static str, String)>,
}

/// Every check that needs only a fresh store, by name.
pub fn checks() -> Vec<(&'static str, Check)> {
    macro_rules! checks {
        ($($name:ident),* $(,)?) => {
            vec![$((
                stringify!($name),
                (|store: Arc<dyn Store>| -> BoxFuture<'static, ()> { $name(store).boxed() })
                    as Check,
            )),*]
        };
    }
    checks![
        get_missing_key,
        put_get_roundtrip,
        revision_is_monotonic,
        txn_compare_and_swap,
        txn_multi_op_is_atomic,
        txn_conflict_writes_nothing,
        noop_txn_keeps_revision,
        txn_etcd_refuses_is_refused,
        delete_resets_create_revision,
        list_page_order_and_prefix,
        list_pagination,
        snapshot_without_skips_prefixes,
        watch_from_zero_sees_only_new,
        watch_replays_then_continues_live,
        watch_prefix_filtering,
        watch_deletes,
        watch_txn_events_share_revision,
        lease_expiry_deletes_keys,
        keep_alive_extends_lease,
        revoke_deletes_at_once,
        put_without_lease_detaches,
        unknown_lease_is_rejected,
    ]
}

/// Runs every check, each with a fresh store from `harness`, one after the other; then
/// panics naming every failed check, or returns the report.
pub async fn run_all(harness: &dyn Harness) -> Report {
    let mut report = Report::default();
    for (name, check) in checks() {
        let result = match harness.fresh().await {
            Ok(store) => run_check(check(store)).await,
            Err(e) => Err(format!("could not create a store: {e}")),
        };
        record(&mut report, name, result);
    }
    const COMPACTION: &str = "watch_compacted";
    match harness.fresh_with_history(SMALL_HISTORY) {
        None => report.skipped.push(COMPACTION),
        Some(fresh) => {
            let result = match fresh.await {
                Ok(store) => run_check(watch_compacted(store, SMALL_HISTORY).boxed()).await,
                Err(e) => Err(format!("could not create a store: {e}")),
            };
            record(&mut report, COMPACTION, result);
        }
    }
    if !report.failed.is_empty() {
        let failures: Vec<String> = report
            .failed
            .iter()
            .map(|(name, why)| format!("  {name}: {why}"))
            .collect();
        panic!(
            "{} of {} store conformance checks failed:\n{}",
            report.failed.len(),
            report.failed.len() + report.passed.len(),
            failures.join("\n")
        );
    }
    report
}

fn record(report: &mut Report, name: &'static str, result: Result<(), String>) {
    match result {
        Ok(()) => report.passed.push(name),
        Err(why) => report.failed.push((name, why)),
    }
}

/// Runs one check on its own task, bounded by [`CHECK_TIMEOUT`]; a panic becomes `Err`.
async fn run_check(check: BoxFuture<'static, ()>) -> Result<(), String> {
    let task = tokio::spawn(check);
    let abort = task.abort_handle();
    match tokio::time::timeout(CHECK_TIMEOUT, task).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if e.is_panic() => {
            let panic = e.into_panic();
            Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".to_owned()))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            abort.abort();
            Err(format!("did not finish within {CHECK_TIMEOUT:?}"))
        }
    }
}
