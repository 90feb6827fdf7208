//! The last lines of instances' logs that nodes ship: kept per instance, only from the
//! instance's own node, cut to the last 16 KiB, shown once the instance is gone, and pruned
//! past the retention only once the instance is gone.

mod common;

use std::sync::Arc;

use common::config;
use strata_control::ControlPlane;
use strata_core::api::{LogChunk, ShippedLogs};
use strata_core::{keys, DesiredState, LogTail};
use strata_store::{RedbStore, Store};

fn shipped(instance: &str, data: &str) -> ShippedLogs {
    ShippedLogs {
        chunks: vec![LogChunk {
            instance: instance.into(),
            data: data.into(),
        }],
    }
}

async fn kept(store: &Arc<dyn Store>, id: &str) -> Option<LogTail> {
    store
        .get(&keys::log_tail(id))
        .await
        .unwrap()
        .map(|kv| serde_json::from_slice(&kv.value).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_lines_are_kept_from_the_right_node_and_pruned_once_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::open(&dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    let plane = ControlPlane::new(store.clone(), config(dir.path(), "s1")).unwrap();
    let instance =
        strata_testkit::fixtures::instance("web-1-abc", "web", "n1", DesiredState::Running);
    store
        .put(
            &keys::instance(&instance.id),
            serde_json::to_vec(&instance).unwrap(),
        )
        .await
        .unwrap();

    strata_control::logs::keep(
        &plane,
        &strata_core::NodeName::from_static("n1"),
        shipped("web-1-abc", "one\ntwo\n"),
    )
    .await
    .unwrap();
    // Another node cannot write into it; an unknown instance is dropped.
    strata_control::logs::keep(
        &plane,
        &strata_core::NodeName::from_static("n2"),
        shipped("web-1-abc", "forged\n"),
    )
    .await
    .unwrap();
    strata_control::logs::keep(
        &plane,
        &strata_core::NodeName::from_static("n1"),
        shipped("nobody-1-abc", "x\n"),
    )
    .await
    .unwrap();
    let tail = kept(&store, "web-1-abc").await.expect("kept");
    assert_eq!(tail.text, "one\ntwo\n");
    assert_eq!((tail.node.as_str(), tail.release), ("n1", 1));
    assert!(kept(&store, "nobody-1-abc").await.is_none());

    // Cut to the last 16 KiB of whole lines.
    let line = format!("{}\n", "z".repeat(1023));
    for _ in 0..40 {
        strata_control::logs::keep(
            &plane,
            &strata_core::NodeName::from_static("n1"),
            shipped("web-1-abc", &line),
        )
        .await
        .unwrap();
    }
    let tail = kept(&store, "web-1-abc").await.unwrap();
    assert!(tail.text.len() <= LogTail::MAX_BYTES && tail.text.starts_with('z'));

    // Kept while the instance exists, however old; pruned once gone and past the retention.
    let later = tail.updated_at + 1;
    assert_eq!(strata_control::logs::prune(&plane, later).await.unwrap(), 0);
    store.delete(&keys::instance("web-1-abc")).await.unwrap();
    assert_eq!(
        strata_control::logs::prune(&plane, tail.updated_at)
            .await
            .unwrap(),
        0,
        "within the retention"
    );
    assert_eq!(strata_control::logs::prune(&plane, later).await.unwrap(), 1);
    assert!(kept(&store, "web-1-abc").await.is_none());
}
