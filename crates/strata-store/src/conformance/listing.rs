//! Checks of prefix listings: byte order, byte prefixes and pagination.

use std::sync::Arc;

use super::helpers::*;
use crate::{KeyValue, Store, Txn};

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

/// A snapshot without some prefixes holds every other key (in byte order, a prefix being a
/// byte prefix: skipping `/b/` keeps `/b` and `/bb`), all read at the current revision.
pub async fn snapshot_without_skips_prefixes(store: Arc<dyn Store>) {
    let store = &*store;
    let all = [
        "/a/1", "/b", "/b/", "/b/1", "/b/2/x", "/bb", "/c/1", "/d/1", "/d/2", "/e",
    ];
    for key in all {
        put(store, key, key.as_bytes()).await;
    }
    // More keys under a skipped prefix than one page of a backend's listing holds.
    for chunk in (0..1500).collect::<Vec<_>>().chunks(100) {
        let txn = chunk.iter().fold(Txn::new(), |txn, i| {
            txn.put(format!("/d/many/{i:05}"), b"skipped".to_vec())
        });
        store.txn(txn).await.expect("txn");
    }
    let current = revision(store).await;
    let page = store
        .snapshot_without(&["/b/", "/d/"])
        .await
        .expect("snapshot");
    assert_eq!(keys(&page.kvs), ["/a/1", "/b", "/bb", "/c/1", "/e"]);
    assert_eq!(page.revision, current);
    for kv in &page.kvs {
        assert_eq!(kv.value, kv.key.as_bytes());
    }
    let page = store.snapshot_without(&[]).await.expect("snapshot");
    assert_eq!(page.kvs.len(), all.len() + 1500);
}
