//! The election and its fence, on the embedded store: one leader at a time, and a deposed
//! leader's controller writes never land, even while it still believes it leads.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::config;
use strata_control::{ControlError, ControlPlane};
use strata_store::{RedbStore, Store, Txn};

async fn until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_leader_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::open(&dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    let a = ControlPlane::new(store.clone(), config(dir.path(), "a")).unwrap();
    a.start_election();
    assert!(
        until(Duration::from_secs(10), || a.term().is_some()).await,
        "a is elected"
    );
    let b = ControlPlane::new(store.clone(), config(dir.path(), "b")).unwrap();
    b.start_election();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.term().is_none(), "one leader at a time");

    // a's lease ends (as when it is paused past its TTL); b takes over.
    let term = a.term().unwrap();
    store.revoke_lease(term.lease).await.unwrap();
    assert!(
        until(Duration::from_secs(10), || b.term().is_some()).await,
        "b takes over"
    );

    // Whatever a believes, its write is fenced off; b's lands.
    let result = a
        .controller_txn(Txn::new().put("/probe/a", b"a".to_vec()))
        .await;
    assert!(matches!(result, Err(ControlError::NotLeader)), "{result:?}");
    assert!(store.get("/probe/a").await.unwrap().is_none());
    let written = b
        .controller_txn(Txn::new().put("/probe/b", b"b".to_vec()))
        .await
        .unwrap();
    assert!(written.is_committed());

    // a notices and stops believing it leads.
    assert!(
        until(Duration::from_secs(5), || a.term().is_none()).await,
        "a steps down"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_takes_its_own_leadership_back_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::open(&dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    let first = ControlPlane::new(store.clone(), config(dir.path(), "same")).unwrap();
    first.start_election();
    assert!(until(Duration::from_secs(10), || first.term().is_some()).await);
    let old = first.term().unwrap();
    // The same server again (a restart): it must not wait out its old 2 s lease.
    let again = ControlPlane::new(store.clone(), config(dir.path(), "same")).unwrap();
    let started = tokio::time::Instant::now();
    again.start_election();
    assert!(until(Duration::from_secs(10), || again.term().is_some()).await);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    assert_ne!(again.term().unwrap().revision, old.revision);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_whose_process_is_gone_is_replaced_before_its_lease_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::open(&dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    // A leader whose API address refuses connections, as a crashed server's would, but whose
    // lease is still being renewed: only the followers' probe can depose it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut gone = config(dir.path(), "gone");
    gone.api_url = format!("http://{closed}");
    let gone = ControlPlane::new(store.clone(), gone).unwrap();
    gone.start_election();
    assert!(until(Duration::from_secs(10), || gone.term().is_some()).await);
    let follower = ControlPlane::new(store.clone(), config(dir.path(), "follower")).unwrap();
    follower.start_election();
    assert!(
        until(Duration::from_secs(10), || follower.term().is_some()).await,
        "the follower deposes a leader whose address refuses connections"
    );
    assert!(
        until(Duration::from_secs(5), || gone.term().is_none()).await,
        "the old leader steps down"
    );
}
