//! Checks of watches: from now, replayed from a revision then live, filtered by prefix,
//! deletes, transactions, and compacted history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::helpers::*;
use super::WAIT;
use crate::{Revision, Store, StoreError, Txn, WatchEvent};

/// A watch from 0 sees only writes committed after it started.
pub async fn watch_from_zero_sees_only_new(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/w/old1", b"1").await;
    put(store, "/w/old2", b"2").await;
    let mut watch = store.watch("/w/", 0).await.expect("watch");
    assert_quiet(&mut watch, Duration::from_millis(200)).await;
    let r1 = put(store, "/w/new", b"n").await;
    assert_put(
        &next_event(&mut watch, "the new put").await,
        "/w/new",
        b"n",
        r1,
    );
    let r2 = put(store, "/w/old1", b"1b").await;
    let event = next_event(&mut watch, "the update").await;
    assert_put(&event, "/w/old1", b"1b", r2);
    if let WatchEvent::Put(kv) = event {
        assert_eq!(kv.version, 2);
    }
    assert_quiet(&mut watch, Duration::from_millis(100)).await;
}

/// A watch from an old revision replays exactly the missed events in order, then continues
/// live, with no gap and no duplicate, even while several tasks write concurrently.
pub async fn watch_replays_then_continues_live(store: Arc<dyn Store>) {
    const WRITERS: usize = 4;
    const WRITES: usize = 25;
    const WATCHES: usize = 12;
    let mut history = Vec::new();
    for i in 0..10 {
        let key = format!("/r/k{i}");
        history.push((put(&*store, &key, key.as_bytes()).await, key));
    }

    // Writers start first; the watches open while they are writing.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..WRITES {
                    let key = format!("/r/w{w}/{i:02}");
                    let rev = store
                        .put(&key, key.as_bytes().to_vec())
                        .await
                        .unwrap_or_else(|e| panic!("put {key}: {e}"));
                    written.push((rev, key));
                    tokio::task::yield_now().await;
                }
                written
            })
        })
        .collect();
    // Watches from old revisions, opened one after another while the writers write, so that
    // some open while a write is committing.
    let mut watches = Vec::new();
    for i in 0..WATCHES {
        let from = history[i % history.len()].0;
        watches.push((from, store.watch("/r/", from).await.expect("watch")));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut live = store.watch("/r/", 0).await.expect("watch");
    for writer in writers {
        let written = tokio::time::timeout(WAIT, writer)
            .await
            .expect("writers finish")
            .expect("writer task");
        history.extend(written);
    }
    let end = put(&*store, "/r/end", b"/r/end").await;
    history.push((end, "/r/end".to_owned()));
    history.sort();
    for pair in history.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "every write is its own revision");
    }

    for (from, watch) in &mut watches {
        let expected: Vec<_> = history.iter().filter(|(rev, _)| rev >= from).collect();
        for (rev, key) in expected {
            let event = next_event(watch, &format!("{key} at {rev} (watch from {from})")).await;
            assert_put(&event, key, key.as_bytes(), *rev);
        }
        assert_quiet(watch, Duration::from_millis(100)).await;
    }

    // The watch from 0 started at some point during the writes: it must see an unbroken
    // run of revisions up to the end.
    let by_rev: BTreeMap<Revision, &str> = history
        .iter()
        .map(|(rev, key)| (*rev, key.as_str()))
        .collect();
    let mut last: Option<Revision> = None;
    while last != Some(end) {
        let event = next_event(&mut live, "the live watch to reach /r/end").await;
        let rev = event.revision();
        if let Some(last) = last {
            assert_eq!(
                rev,
                last + 1,
                "the live watch skipped or repeated a revision"
            );
        }
        let key = by_rev.get(&rev).copied().unwrap_or("<none>");
        assert_put(&event, key, key.as_bytes(), rev);
        last = Some(rev);
    }
    assert_quiet(&mut live, Duration::from_millis(100)).await;
}

/// A watch sees only keys under its prefix (a byte prefix).
pub async fn watch_prefix_filtering(store: Arc<dyn Store>) {
    let store = &*store;
    let mut watch = store.watch("/a/", 0).await.expect("watch");
    put(store, "/ab/x", b"no").await;
    let r1 = put(store, "/a/x", b"x").await;
    put(store, "/b", b"no").await;
    put(store, "/a", b"no").await;
    let r2 = put(store, "/a/y", b"y").await;
    store.delete("/ab/x").await.expect("delete");
    store.delete("/a/x").await.expect("delete");
    let r3 = revision(store).await;
    assert_put(&next_event(&mut watch, "/a/x").await, "/a/x", b"x", r1);
    assert_put(&next_event(&mut watch, "/a/y").await, "/a/y", b"y", r2);
    assert_delete(
        &next_event(&mut watch, "the delete").await,
        "/a/x",
        r3,
        b"x",
    );
    assert_quiet(&mut watch, Duration::from_millis(100)).await;
}

/// Deletes are watched, live and replayed, with the value before.
pub async fn watch_deletes(store: Arc<dyn Store>) {
    let store = &*store;
    let r1 = put(store, "/del/k", b"v").await;
    let mut watch = store.watch("/del/", 0).await.expect("watch");
    assert!(store.delete("/del/k").await.expect("delete"));
    let r2 = revision(store).await;
    let event = next_event(&mut watch, "the delete").await;
    assert_delete(&event, "/del/k", r2, b"v");
    if let WatchEvent::Delete {
        prev: Some(prev), ..
    } = &event
    {
        assert_eq!(prev.mod_revision, r1);
    }
    let mut replay = store.watch("/del/", r1).await.expect("watch");
    assert_put(
        &next_event(&mut replay, "the put").await,
        "/del/k",
        b"v",
        r1,
    );
    assert_delete(
        &next_event(&mut replay, "the delete").await,
        "/del/k",
        r2,
        b"v",
    );
    assert_quiet(&mut watch, Duration::from_millis(100)).await;
    assert_quiet(&mut replay, Duration::from_millis(50)).await;
}

/// A multi-op txn yields one event per op, in op order, all at the txn's revision.
pub async fn watch_txn_events_share_revision(store: Arc<dyn Store>) {
    let store = &*store;
    put(store, "/tx/c", b"c").await;
    let mut watch = store.watch("/tx/", 0).await.expect("watch");
    let rev = committed(
        store
            .txn(
                Txn::new()
                    .put("/tx/b", b"b".to_vec())
                    .put("/tx/a", b"a".to_vec())
                    .delete("/tx/c"),
            )
            .await
            .expect("txn"),
    );
    assert_put(&next_event(&mut watch, "/tx/b").await, "/tx/b", b"b", rev);
    assert_put(&next_event(&mut watch, "/tx/a").await, "/tx/a", b"a", rev);
    assert_delete(&next_event(&mut watch, "/tx/c").await, "/tx/c", rev, b"c");
    assert_quiet(&mut watch, Duration::from_millis(100)).await;
}

/// With a history of `history` revisions, older ones are reported compacted and the last
/// `history` still replay. Run with a store from [`Harness::fresh_with_history`].
pub async fn watch_compacted(store: Arc<dyn Store>, history: usize) {
    let store = &*store;
    let history = Revision::try_from(history).expect("history fits a revision");
    let first = put(store, "/h/0", b"0").await;
    for i in 1..history * 3 + 20 {
        put(store, &format!("/h/{i}"), b"x").await;
    }
    let current = revision(store).await;
    match store.watch("/h/", first).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!(requested, first);
            assert!(
                oldest > first && oldest <= current + 1 - history,
                "oldest kept {oldest}, current {current}, history {history}"
            );
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("watching from {first} should fail after {current} revisions"),
    }
    let keep_from = current + 1 - history;
    let mut watch = store
        .watch("/h/", keep_from)
        .await
        .expect("the last `history` revisions are kept");
    for rev in keep_from..=current {
        let event = next_event(&mut watch, &format!("revision {rev}")).await;
        assert_eq!(event.revision(), rev);
    }
    assert_quiet(&mut watch, Duration::from_millis(100)).await;
}
