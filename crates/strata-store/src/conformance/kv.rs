//! Checks of keys, revisions and transactions: reads, puts, compare-and-swap, atomic
//! multi-op transactions and conflicts.

use std::sync::Arc;

use super::helpers::*;
use crate::{KeyValue, Store, StoreError, Txn, TxnOutcome};

/// A missing key reads as `None`, and reading does not bump the revision.
pub async fn get_missing_key(store: Arc<dyn Store>) {
    let before = revision(&*store).await;
    assert_eq!(store.get("/missing").await.expect("get"), None);
    assert_eq!(store.get("/missing/child").await.expect("get"), None);
    assert_eq!(
        revision(&*store).await,
        before,
        "a read bumped the revision"
    );
}

/// Put then get returns the value with its revisions; each put counts a version.
pub async fn put_get_roundtrip(store: Arc<dyn Store>) {
    let store = &*store;
    let r0 = revision(store).await;
    let r1 = put(store, "/k", b"one").await;
    assert!(r1 > r0, "put returned {r1}, not after {r0}");
    assert_eq!(
        must_get(store, "/k").await,
        KeyValue {
            key: "/k".into(),
            value: b"one".to_vec(),
            create_revision: r1,
            mod_revision: r1,
            version: 1,
            lease: None,
        }
    );
    let r2 = put(store, "/k", b"two").await;
    assert!(r2 > r1);
    let kv = must_get(store, "/k").await;
    assert_eq!(
        (
            kv.value.as_slice(),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
        (b"two".as_slice(), r1, r2, 2)
    );
    let r3 = put(store, "/k", b"two").await;
    assert_eq!(
        must_get(store, "/k").await.version,
        3,
        "same value still counts"
    );
    assert!(r3 > r2);

    // Values are opaque bytes; keys any UTF-8.
    let binary = vec![0u8, 255, 0xc3, 0x28, b'\n', 0];
    put(store, "/bin", &binary).await;
    assert_eq!(must_get(store, "/bin").await.value, binary);
    put(store, "/empty", b"").await;
    assert_eq!(must_get(store, "/empty").await.value, b"");
    put(store, "/ключ/☃", b"snow").await;
    assert_eq!(must_get(store, "/ключ/☃").await.value, b"snow");
}

/// Each committed write bumps the revision by exactly one; a multi-op txn is one revision.
pub async fn revision_is_monotonic(store: Arc<dyn Store>) {
    let store = &*store;
    let mut last = revision(store).await;
    for i in 0..20 {
        let rev = put(store, &format!("/m/{}", i % 5), &[i]).await;
        assert_eq!(rev, last + 1, "write {i}");
        assert_eq!(revision(store).await, rev);
        last = rev;
    }
    let outcome = store
        .txn(
            Txn::new()
                .put("/m/a", vec![1])
                .put("/m/b", vec![2])
                .delete("/m/0"),
        )
        .await
        .expect("txn");
    assert_eq!(outcome, TxnOutcome::Committed(last + 1));
    assert!(store.delete("/m/1").await.expect("delete"));
    assert_eq!(revision(store).await, last + 2);
}

/// Compare-and-swap: 0 means absent; a wrong or stale revision conflicts.
pub async fn txn_compare_and_swap(store: Arc<dyn Store>) {
    let store = &*store;
    let r1 = committed(store.cas("/c", 0, b"a".to_vec()).await.expect("cas"));
    let conflict = TxnOutcome::Conflict { key: "/c".into() };
    assert_eq!(
        store.cas("/c", 0, b"b".to_vec()).await.expect("cas"),
        conflict
    );
    assert_eq!(
        store.cas("/c", r1 + 100, b"b".to_vec()).await.expect("cas"),
        conflict
    );
    assert_eq!(must_get(store, "/c").await.value, b"a");
    let r2 = committed(store.cas("/c", r1, b"c".to_vec()).await.expect("cas"));
    assert!(r2 > r1);
    assert_eq!(
        store.cas("/c", r1, b"d".to_vec()).await.expect("cas"),
        conflict
    );
    let kv = must_get(store, "/c").await;
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (b"c".as_slice(), r2)
    );
    assert_eq!(
        store.cas("/absent", 1, b"x".to_vec()).await.expect("cas"),
        TxnOutcome::Conflict {
            key: "/absent".into()
        }
    );
}

/// All ops of a txn apply together, at one revision.
pub async fn txn_multi_op_is_atomic(store: Arc<dyn Store>) {
    let store = &*store;
    let r0 = put(store, "/t/old", b"old").await;
    let rev = committed(
        store
            .txn(
                Txn::new()
                    .when("/t/a", 0)
                    .when("/t/old", r0)
                    .put("/t/a", b"a".to_vec())
                    .put("/t/b", b"b".to_vec())
                    .delete("/t/old"),
            )
            .await
            .expect("txn"),
    );
    assert_eq!(rev, r0 + 1);
    assert_eq!(must_get(store, "/t/a").await.mod_revision, rev);
    assert_eq!(must_get(store, "/t/b").await.mod_revision, rev);
    assert!(absent(store, "/t/old").await);
    assert_eq!(revision(store).await, rev);
}

/// A failed compare writes nothing and names the first failed key.
pub async fn txn_conflict_writes_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let held = put(store, "/x/held", b"h").await;
    let before = revision(store).await;
    let outcome = store
        .txn(
            Txn::new()
                .when("/x/held", held)
                .when("/x/new", held) // absent, so this fails
                .when("/x/held", 0) // fails too, but after
                .put("/x/held", b"changed".to_vec())
                .put("/x/other", b"o".to_vec())
                .delete("/x/held"),
        )
        .await
        .expect("txn");
    assert_eq!(
        outcome,
        TxnOutcome::Conflict {
            key: "/x/new".into()
        }
    );
    let kv = must_get(store, "/x/held").await;
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision),
        (b"h".as_slice(), held)
    );
    assert!(absent(store, "/x/other").await);
    assert_eq!(
        revision(store).await,
        before,
        "a conflict bumped the revision"
    );
}

/// A txn that changes nothing commits at the current revision without bumping it.
pub async fn noop_txn_keeps_revision(store: Arc<dyn Store>) {
    let store = &*store;
    let r = put(store, "/n/k", b"v").await;
    assert_eq!(
        store.txn(Txn::new()).await.expect("txn"),
        TxnOutcome::Committed(r)
    );
    assert_eq!(
        store.txn(Txn::new().when("/n/k", r)).await.expect("txn"),
        TxnOutcome::Committed(r)
    );
    assert_eq!(
        store
            .txn(Txn::new().delete("/n/absent"))
            .await
            .expect("txn"),
        TxnOutcome::Committed(r)
    );
    assert!(!store.delete("/n/absent").await.expect("delete"));
    assert_eq!(revision(store).await, r);
}

/// Deleting a key and putting it again starts a new life: new create revision, version 1.
pub async fn delete_resets_create_revision(store: Arc<dyn Store>) {
    let store = &*store;
    let r1 = put(store, "/d/k", b"1").await;
    let r2 = put(store, "/d/k", b"2").await;
    assert!(
        store.delete("/d/k").await.expect("delete"),
        "the key existed"
    );
    let deleted_at = revision(store).await;
    assert!(deleted_at > r2);
    assert!(absent(store, "/d/k").await);
    assert!(!store.delete("/d/k").await.expect("delete"), "already gone");
    let r3 = put(store, "/d/k", b"3").await;
    assert!(r3 > deleted_at);
    let kv = must_get(store, "/d/k").await;
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r3, r3, 1),
        "first life began at {r1}"
    );
    assert!(!store
        .cas("/d/k", r2, b"x".to_vec())
        .await
        .expect("cas")
        .is_committed());
}

/// What etcd refuses every backend refuses, writing nothing: more than [`MAX_TXN_OPS`]
/// writes or compares, a key written twice (after the compares: a failed one is a
/// conflict). As many as the limit is a transaction like any other.
///
/// [`MAX_TXN_OPS`]: crate::MAX_TXN_OPS
pub async fn txn_etcd_refuses_is_refused(store: Arc<dyn Store>) {
    use crate::MAX_TXN_OPS;
    let puts = |n: usize| {
        (0..n).fold(Txn::new(), |txn, i| {
            txn.put(format!("/many/{i:03}"), vec![1])
        })
    };
    let too_many = store.txn(puts(MAX_TXN_OPS + 1)).await;
    assert!(
        matches!(too_many, Err(StoreError::InvalidTxn(_))),
        "{} writes: {too_many:?}",
        MAX_TXN_OPS + 1
    );
    let compares = (0..=MAX_TXN_OPS).fold(Txn::new(), |txn, _| txn.when("/c", 0));
    let too_many = store.txn(compares.put("/c", vec![1])).await;
    assert!(
        matches!(too_many, Err(StoreError::InvalidTxn(_))),
        "{} compares: {too_many:?}",
        MAX_TXN_OPS + 1
    );
    assert!(
        store.list("/").await.unwrap().kvs.is_empty(),
        "nothing written"
    );
    assert!(store.txn(puts(MAX_TXN_OPS)).await.unwrap().is_committed());
    let held = store.get("/many/000").await.unwrap().unwrap().mod_revision;

    let twice = Txn::new()
        .when("/many/000", held)
        .put("/x", vec![1])
        .delete("/x");
    let refused = store.txn(twice.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidTxn(_))),
        "{refused:?}"
    );
    let stale = Txn {
        compares: vec![crate::Compare {
            key: "/many/000".into(),
            mod_revision: held + 1,
        }],
        ops: twice.ops,
    };
    assert_eq!(
        store.txn(stale).await.unwrap(),
        TxnOutcome::Conflict {
            key: "/many/000".into()
        }
    );
    assert_eq!(store.get("/x").await.unwrap(), None);
}
