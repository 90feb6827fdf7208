//! Checks of leases: expiry, keep-alives, revocation, detaching a key, unknown leases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::helpers::*;
use crate::{LeaseId, Store, Txn};

/// When a lease expires its keys are deleted (with delete events); other keys stay.
pub async fn lease_expiry_deletes_keys(store: Arc<dyn Store>) {
    let lease = store
        .grant_lease(Duration::from_millis(300))
        .await
        .expect("grant");
    let rev = committed(
        store
            .txn(
                Txn::new()
                    .put_with_lease("/l/a", b"a".to_vec(), lease)
                    .put_with_lease("/l/b", b"b".to_vec(), lease)
                    .put("/l/keep", b"k".to_vec()),
            )
            .await
            .expect("txn"),
    );
    let mut watch = store.watch("/l/", rev + 1).await.expect("watch");
    assert_eq!(must_get(&*store, "/l/a").await.lease, Some(lease));
    assert_eq!(must_get(&*store, "/l/keep").await.lease, None);
    eventually("the leased keys are deleted after expiry", || {
        let store = Arc::clone(&store);
        async move { absent(&*store, "/l/a").await && absent(&*store, "/l/b").await }
    })
    .await;
    assert!(
        !absent(&*store, "/l/keep").await,
        "an unleased key was deleted"
    );
    let mut deletes = [
        next_event(&mut watch, "a delete on expiry").await,
        next_event(&mut watch, "a delete on expiry").await,
    ];
    deletes.sort_by(|a, b| a.key().cmp(b.key()));
    let expired_at = deletes[0].revision();
    assert_delete(&deletes[0], "/l/a", expired_at, b"a");
    assert_delete(&deletes[1], "/l/b", expired_at, b"b");
    assert_quiet(&mut watch, Duration::from_millis(100)).await;
    assert_lease_not_found(store.keep_alive(lease).await, lease);
    assert_lease_not_found(
        store
            .txn(Txn::new().put_with_lease("/l/late", vec![], lease))
            .await,
        lease,
    );
}

/// Keep-alives keep a lease (and its keys) past its TTL; without them it expires.
pub async fn keep_alive_extends_lease(store: Arc<dyn Store>) {
    let ttl = Duration::from_millis(500);
    let lease = store.grant_lease(ttl).await.expect("grant");
    committed(
        store
            .txn(Txn::new().put_with_lease("/ka/k", b"v".to_vec(), lease))
            .await
            .expect("txn"),
    );
    let start = Instant::now();
    while start.elapsed() < ttl * 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        store
            .keep_alive(lease)
            .await
            .expect("keep a live lease alive");
        assert!(
            !absent(&*store, "/ka/k").await,
            "deleted although kept alive"
        );
    }
    eventually("the key expires once no longer kept alive", || {
        let store = Arc::clone(&store);
        async move { absent(&*store, "/ka/k").await }
    })
    .await;
}

/// Revoking a lease deletes its keys at once, in one revision, with delete events.
pub async fn revoke_deletes_at_once(store: Arc<dyn Store>) {
    let store = &*store;
    let lease = store
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("grant");
    committed(
        store
            .txn(
                Txn::new()
                    .put_with_lease("/rv/a", b"a".to_vec(), lease)
                    .put_with_lease("/rv/b", b"b".to_vec(), lease)
                    .put("/rv/keep", b"k".to_vec()),
            )
            .await
            .expect("txn"),
    );
    let mut watch = store.watch("/rv/", 0).await.expect("watch");
    store.revoke_lease(lease).await.expect("revoke");
    assert!(absent(store, "/rv/a").await && absent(store, "/rv/b").await);
    assert!(!absent(store, "/rv/keep").await);
    let rev = revision(store).await;
    let mut deletes = [
        next_event(&mut watch, "a delete on revoke").await,
        next_event(&mut watch, "a delete on revoke").await,
    ];
    deletes.sort_by(|a, b| a.key().cmp(b.key()));
    assert_delete(&deletes[0], "/rv/a", rev, b"a");
    assert_delete(&deletes[1], "/rv/b", rev, b"b");
    assert_quiet(&mut watch, Duration::from_millis(100)).await;
    assert_lease_not_found(store.revoke_lease(lease).await, lease);
    assert_lease_not_found(store.keep_alive(lease).await, lease);
}

/// Putting a leased key without the lease (or with another) detaches it from the lease.
pub async fn put_without_lease_detaches(store: Arc<dyn Store>) {
    let store = &*store;
    let ttl = Duration::from_secs(60);
    let (l1, l2) = (
        store.grant_lease(ttl).await.expect("grant"),
        store.grant_lease(ttl).await.expect("grant"),
    );
    assert_ne!(l1, l2, "lease ids are unique");
    let with_lease = |key: &str, lease| Txn::new().put_with_lease(key, b"v".to_vec(), lease);
    committed(store.txn(with_lease("/dt/k", l1)).await.expect("txn"));
    put(store, "/dt/k", b"mine").await;
    assert_eq!(must_get(store, "/dt/k").await.lease, None);
    committed(store.txn(with_lease("/dt/moved", l1)).await.expect("txn"));
    committed(store.txn(with_lease("/dt/moved", l2)).await.expect("txn"));
    assert_eq!(must_get(store, "/dt/moved").await.lease, Some(l2));

    store.revoke_lease(l1).await.expect("revoke");
    assert_eq!(must_get(store, "/dt/k").await.value, b"mine");
    assert!(!absent(store, "/dt/moved").await, "moved to another lease");
    store.revoke_lease(l2).await.expect("revoke");
    assert!(absent(store, "/dt/moved").await);
}

/// Using a lease that was never granted fails with `LeaseNotFound` and writes nothing.
pub async fn unknown_lease_is_rejected(store: Arc<dyn Store>) {
    let store = &*store;
    let bogus: LeaseId = 0x3fff_ffff_ffff_0001;
    let before = revision(store).await;
    assert_lease_not_found(
        store
            .txn(Txn::new().put("/ul/ok", b"ok".to_vec()).put_with_lease(
                "/ul/k",
                b"v".to_vec(),
                bogus,
            ))
            .await,
        bogus,
    );
    assert!(
        absent(store, "/ul/ok").await,
        "the txn was only half applied"
    );
    assert!(absent(store, "/ul/k").await);
    assert_eq!(revision(store).await, before);
    assert_lease_not_found(store.keep_alive(bogus).await, bogus);
    assert_lease_not_found(store.revoke_lease(bogus).await, bogus);
}
