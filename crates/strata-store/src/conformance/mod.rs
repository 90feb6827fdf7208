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

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::{
    KeyValue, LeaseId, Revision, Store, StoreError, Txn, TxnOutcome, WatchEvent, WatchStream,
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
        delete_resets_create_revision,
        list_page_order_and_prefix,
        list_pagination,
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

// ---------------------------------------------------------------------------------------
// Helpers.

fn committed(outcome: TxnOutcome) -> Revision {
    match outcome {
        TxnOutcome::Committed(rev) => rev,
        TxnOutcome::Conflict { key } => panic!("expected a commit, got a conflict on {key}"),
    }
}

async fn must_get(store: &dyn Store, key: &str) -> KeyValue {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .unwrap_or_else(|| panic!("{key} should exist"))
}

async fn absent(store: &dyn Store, key: &str) -> bool {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .is_none()
}

async fn put(store: &dyn Store, key: &str, value: &[u8]) -> Revision {
    store
        .put(key, value.to_vec())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

async fn revision(store: &dyn Store) -> Revision {
    store.revision().await.expect("revision")
}

/// The next event of `watch`, within [`WAIT`].
async fn next_event(watch: &mut WatchStream, what: &str) -> WatchEvent {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed while waiting for {what}: {e}"),
        Ok(None) => panic!("watch ended while waiting for {what}"),
        Err(_) => panic!("no watch event within {WAIT:?} while waiting for {what}"),
    }
}

/// Asserts that `watch` yields nothing for `quiet`.
async fn assert_quiet(watch: &mut WatchStream, quiet: Duration) {
    if let Ok(item) = tokio::time::timeout(quiet, watch.next()).await {
        panic!("expected no more watch events, got {item:?}");
    }
}

/// Polls `condition` every 25ms until it holds, failing after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
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

fn assert_put(event: &WatchEvent, key: &str, value: &[u8], rev: Revision) {
    let matches = matches!(event, WatchEvent::Put(kv)
        if kv.key == key && kv.value == value && kv.mod_revision == rev);
    assert!(
        matches,
        "expected a put of {key} = {:?} at revision {rev}, got {event:?}",
        String::from_utf8_lossy(value)
    );
}

fn assert_delete(event: &WatchEvent, key: &str, rev: Revision, prev_value: &[u8]) {
    let matches = matches!(event, WatchEvent::Delete { key: k, revision, prev: Some(prev) }
        if k == key && *revision == rev && prev.value == prev_value);
    assert!(
        matches,
        "expected a delete of {key} at revision {rev} with prev value {:?}, got {event:?}",
        String::from_utf8_lossy(prev_value)
    );
}

fn assert_lease_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, lease: LeaseId) {
    match result {
        Err(StoreError::LeaseNotFound(id)) => assert_eq!(id, lease),
        other => panic!("expected LeaseNotFound({lease}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Keys, revisions, transactions.

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

// ---------------------------------------------------------------------------------------
// Listing.

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// Listing is in byte order and a prefix is a byte prefix (`/a/` does not match `/ab`).
pub async fn list_page_order_and_prefix(store: Arc<dyn Store>) {
    let store = &*store;
    let all = [
        "/b/1", "/a/2", "/ab", "/a/10", "/a", "/a/1", "/a/b/c", "/a0", "/ab/1", "/a/",
    ];
    for key in all {
        put(store, key, key.as_bytes()).await;
    }
    let current = revision(store).await;

    let page = store.list_page("/a/", None, 0).await.expect("list");
    assert_eq!(keys(&page.kvs), ["/a/", "/a/1", "/a/10", "/a/2", "/a/b/c"]);
    assert_eq!((page.revision, page.next), (current, None));
    for kv in &page.kvs {
        assert_eq!(kv.value, kv.key.as_bytes());
    }
    let page = store.list_page("/ab", None, 0).await.expect("list");
    assert_eq!(keys(&page.kvs), ["/ab", "/ab/1"]);
    let page = store.list_page("/a", None, 0).await.expect("list");
    assert_eq!(
        keys(&page.kvs),
        ["/a", "/a/", "/a/1", "/a/10", "/a/2", "/a/b/c", "/a0", "/ab", "/ab/1"]
    );
    let page = store.list_page("/zzz", None, 0).await.expect("list");
    assert!(page.kvs.is_empty() && page.next.is_none());
    let everything = store.list("").await.expect("list");
    let mut sorted = all.to_vec();
    sorted.sort_unstable();
    assert_eq!(keys(&everything.kvs), sorted);

    // start_after is exclusive and need not be a key.
    let page = store
        .list_page("/a/", Some("/a/10"), 0)
        .await
        .expect("list");
    assert_eq!(keys(&page.kvs), ["/a/2", "/a/b/c"]);
    let page = store.list_page("/a/", Some("/a/0"), 2).await.expect("list");
    assert_eq!(keys(&page.kvs), ["/a/1", "/a/10"]);
    assert_eq!(page.next.as_deref(), Some("/a/10"));
    let page = store.list_page("/a/", Some("/"), 0).await.expect("list");
    assert_eq!(page.kvs.len(), 5, "start_after before the prefix");
    let page = store
        .list_page("/a/", Some("/a/zzz"), 0)
        .await
        .expect("list");
    assert!(page.kvs.is_empty() && page.next.is_none());
    assert_eq!(store.list("/a/").await.expect("list").kvs.len(), 5);
}

/// Paging through a few hundred keys sees each exactly once, in order.
pub async fn list_pagination(store: Arc<dyn Store>) {
    let store = &*store;
    const N: usize = 300;
    let expected: Vec<String> = (0..N).map(|i| format!("/p/{i:04}")).collect();
    // Written out of order, 50 to a txn, with neighbours that must not show up.
    for chunk in (0..N).map(|i| (i * 113) % N).collect::<Vec<_>>().chunks(50) {
        let txn = chunk.iter().fold(Txn::new(), |txn, &i| {
            txn.put(expected[i].clone(), i.to_le_bytes().to_vec())
        });
        committed(store.txn(txn).await.expect("txn"));
    }
    for key in ["/p", "/p0", "/o/1", "/q/1", "/p.x"] {
        put(store, key, b"noise").await;
    }
    let current = revision(store).await;

    for limit in [1, 7, 100, 299, 300, 301, 0] {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut start_after: Option<String> = None;
        loop {
            let page = store
                .list_page("/p/", start_after.as_deref(), limit)
                .await
                .expect("list_page");
            pages += 1;
            assert!(pages <= N + 1, "paging does not end (limit {limit})");
            if limit > 0 {
                assert!(page.kvs.len() <= limit, "page over the limit {limit}");
            }
            assert_eq!(page.revision, current);
            seen.extend(page.kvs.into_iter().map(|kv| kv.key));
            match page.next {
                Some(next) => {
                    assert_eq!(Some(&next), seen.last(), "next is the page's last key");
                    start_after = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(
            seen, expected,
            "limit {limit}: missed, duplicated or misordered keys"
        );
        let want_pages = if limit == 0 { 1 } else { N.div_ceil(limit) };
        assert_eq!(pages, want_pages, "pages at limit {limit}");
    }
    let all = store.list("/p/").await.expect("list");
    assert_eq!(all.kvs.len(), N);
    assert_eq!(all.revision, current);
}

// ---------------------------------------------------------------------------------------
// Watches.

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

// ---------------------------------------------------------------------------------------
// Leases.

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
