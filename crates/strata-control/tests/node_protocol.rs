//! What a node's agent and the control plane say to each other at fleet scale, against a real
//! plane on a real (embedded) store: the blocking assignments query answers when the node's
//! own instances change and not for another node's; statuses reported many at once are
//! stored in order, with one event per change, and the ones not wanted on the node are named.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_control::ControlPlane;
use strata_core::{
    keys, DesiredState, EnvName, EventKind, Instance, InstanceId, InstanceState, InstanceStatus,
    NodeName, ServiceName,
};
use strata_store::{RedbStore, Store};

mod common;

async fn plane(dir: &std::path::Path) -> Arc<ControlPlane> {
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.join("s.redb")).await.unwrap());
    ControlPlane::new(store, common::config(dir, "s1")).unwrap()
}

fn instance(id: &str, node: &str, desired: DesiredState) -> Instance {
    Instance {
        id: InstanceId::new(id).unwrap(),
        env: EnvName::from_static("dev"),
        service: ServiceName::from_static("web"),
        release: 1,
        node: NodeName::new(node).unwrap(),
        node_epoch: 1,
        desired,
        created_at: 0,
        stop_requested_at: None,
    }
}

async fn put(plane: &ControlPlane, instance: &Instance) -> u64 {
    plane
        .store()
        .put(
            &keys::instance(&instance.id),
            serde_json::to_vec(instance).unwrap(),
        )
        .await
        .unwrap()
}

fn status(id: &str, node: &str, state: InstanceState) -> InstanceStatus {
    InstanceStatus {
        id: InstanceId::new(id).unwrap(),
        node: NodeName::new(node).unwrap(),
        state,
        address: None,
        pid: None,
        restarts: 0,
        last_exit: None,
        message: format!("{state:?}"),
        updated_at: 0,
        ready_since: None,
    }
}

#[tokio::test]
async fn a_blocking_assignments_query_answers_for_its_own_node_only() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path()).await;
    let n1 = NodeName::from_static("n1");
    // No release or config is stored: the answer's assignments are empty, its revision is
    // what matters here.
    let first = plane.assignments(&n1).await.unwrap();
    let waiting = {
        let plane = plane.clone();
        let n1 = n1.clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            let answer = plane
                .assignments_after(&n1, first.revision, Duration::from_secs(10))
                .await;
            (asked.elapsed(), answer.revision)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another node's instance does not answer n1's query.
    put(&plane, &instance("b-1", "n2", DesiredState::Running)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "n2's change answered n1's query");
    let written = put(&plane, &instance("a-1", "n1", DesiredState::Running)).await;
    let (waited, revision) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("n1's change answers at once")
        .unwrap();
    assert!(revision >= written, "{revision} < {written}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // Nothing changes: the query ends after its wait, with the same revision.
    let asked = Instant::now();
    let idle = plane
        .assignments_after(&n1, revision, Duration::from_millis(200))
        .await;
    assert!(asked.elapsed() >= Duration::from_millis(200));
    assert_eq!(idle.revision, revision);
}

#[tokio::test]
async fn statuses_reported_together_are_stored_in_order_with_an_event_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path()).await;
    put(&plane, &instance("a-1", "n1", DesiredState::Running)).await;
    put(&plane, &instance("a-2", "n1", DesiredState::Running)).await;
    put(&plane, &instance("b-1", "n2", DesiredState::Running)).await;
    let n1 = NodeName::from_static("n1");
    let report = vec![
        status("a-1", "n1", InstanceState::Starting),
        status("a-1", "n1", InstanceState::Running),
        status("a-1", "n1", InstanceState::Running),
        status("a-2", "n1", InstanceState::Running),
        // Placed on n2, and one that was never placed: neither is stored.
        status("b-1", "n1", InstanceState::Running),
        status("gone-1", "n1", InstanceState::Running),
    ];
    let stored = plane.report_statuses(&n1, report).await.unwrap();
    let not_wanted: Vec<&str> = stored.not_wanted.iter().map(|id| id.as_str()).collect();
    assert_eq!(not_wanted, ["b-1", "gone-1"]);
    for (id, state) in [
        ("a-1", InstanceState::Running),
        ("a-2", InstanceState::Running),
    ] {
        let kv = plane.store().get(&keys::status(id)).await.unwrap().unwrap();
        let kept: InstanceStatus = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(kept.state, state, "{id}");
        assert!(kept.ready_since.is_some(), "{id}: running since when");
    }
    for id in ["b-1", "gone-1"] {
        assert!(plane
            .store()
            .get(&keys::status(id))
            .await
            .unwrap()
            .is_none());
    }
    // a-1: started, healthy (once, though reported running twice); a-2: healthy.
    let events = plane.events(None, 100).await.unwrap();
    let told: Vec<(String, EventKind)> = events
        .iter()
        .filter_map(|e| Some((e.instance.clone()?.to_string(), e.kind)))
        .collect();
    assert_eq!(
        told,
        [
            ("a-1".to_string(), EventKind::InstanceStarted),
            ("a-1".to_string(), EventKind::InstanceHealthy),
            ("a-2".to_string(), EventKind::InstanceHealthy),
        ]
    );
    // Running again later keeps when it became healthy.
    let before: InstanceStatus = serde_json::from_slice(
        &plane
            .store()
            .get(&keys::status("a-1"))
            .await
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap();
    plane
        .report_statuses(&n1, vec![status("a-1", "n1", InstanceState::Running)])
        .await
        .unwrap();
    let after: InstanceStatus = serde_json::from_slice(
        &plane
            .store()
            .get(&keys::status("a-1"))
            .await
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap();
    assert_eq!(after.ready_since, before.ready_since);
}
