//! Shared by the checks: assertions that say what was expected, and waits bounded by
//! [`WAIT`].

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::WAIT;
use crate::{KeyValue, LeaseId, Revision, Store, StoreError, TxnOutcome, WatchEvent, WatchStream};

pub(super) fn committed(outcome: TxnOutcome) -> Revision {
    match outcome {
        TxnOutcome::Committed(rev) => rev,
        TxnOutcome::Conflict { key } => panic!("expected a commit, got a conflict on {key}"),
    }
}

pub(super) async fn must_get(store: &dyn Store, key: &str) -> KeyValue {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .unwrap_or_else(|| panic!("{key} should exist"))
}

pub(super) async fn absent(store: &dyn Store, key: &str) -> bool {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .is_none()
}

pub(super) async fn put(store: &dyn Store, key: &str, value: &[u8]) -> Revision {
    store
        .put(key, value.to_vec())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

pub(super) async fn revision(store: &dyn Store) -> Revision {
    store.revision().await.expect("revision")
}

/// The next event of `watch`, within [`WAIT`].
pub(super) async fn next_event(watch: &mut WatchStream, what: &str) -> WatchEvent {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed while waiting for {what}: {e}"),
        Ok(None) => panic!("watch ended while waiting for {what}"),
        Err(_) => panic!("no watch event within {WAIT:?} while waiting for {what}"),
    }
}

/// Asserts that `watch` yields nothing for `quiet`.
pub(super) async fn assert_quiet(watch: &mut WatchStream, quiet: Duration) {
    if let Ok(item) = tokio::time::timeout(quiet, watch.next()).await {
        panic!("expected no more watch events, got {item:?}");
    }
}

/// Polls `condition` every 25ms until it holds, failing after [`WAIT`].
pub(super) async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(super) fn assert_put(event: &WatchEvent, key: &str, value: &[u8], rev: Revision) {
    let matches = matches!(event, WatchEvent::Put(kv)
        if kv.key == key && kv.value == value && kv.mod_revision == rev);
    assert!(
        matches,
        "expected a put of {key} = {:?} at revision {rev}, got {event:?}",
        String::from_utf8_lossy(value)
    );
}

pub(super) fn assert_delete(event: &WatchEvent, key: &str, rev: Revision, prev_value: &[u8]) {
    let matches = matches!(event, WatchEvent::Delete { key: k, revision, prev: Some(prev) }
        if k == key && *revision == rev && prev.value == prev_value);
    assert!(
        matches,
        "expected a delete of {key} at revision {rev} with prev value {:?}, got {event:?}",
        String::from_utf8_lossy(prev_value)
    );
}

pub(super) fn assert_lease_not_found<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    lease: LeaseId,
) {
    match result {
        Err(StoreError::LeaseNotFound(id)) => assert_eq!(id, lease),
        other => panic!("expected LeaseNotFound({lease}), got {other:?}"),
    }
}
