//! What a node's agent and the control plane say to each other at fleet scale, against a real
//! plane on a real (embedded) store: the blocking assignments query answers when the node's
//! own instances change (and not for another node's) with the change in full and the rest by
//! id; statuses reported many at once are
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
    strata_testkit::fixtures::instance(id, "web", node, desired)
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

fn ids(assignments: &[strata_core::api::Assignment]) -> Vec<&str> {
    assignments.iter().map(|a| a.instance.id.as_str()).collect()
}

/// Release 1 of dev/web and its config version 1.
async fn store_release(plane: &ControlPlane) {
    let spec = strata_core::spec::parse("t.toml", "[service.web]\ncommand = [\"x\"]\n")
        .unwrap()
        .services
        .remove(0);
    let release = strata_testkit::fixtures::release("dev", "web", 1, spec);
    let config = strata_core::ConfigVersion {
        env: EnvName::from_static("dev"),
        service: ServiceName::from_static("web"),
        version: 1,
        values: Default::default(),
        hash: String::new(),
        created_at: 0,
    };
    let store = plane.store();
    let release_key = keys::release("dev", "web", 1);
    store
        .put(&release_key, serde_json::to_vec(&release).unwrap())
        .await
        .unwrap();
    store
        .put(
            &keys::config("dev", "web", 1),
            serde_json::to_vec(&config).unwrap(),
        )
        .await
        .unwrap();
}

/// The status the store holds for instance `id`.
async fn stored_status(plane: &ControlPlane, id: &str) -> InstanceStatus {
    let kv = plane.store().get(&keys::status(id)).await.unwrap().unwrap();
    serde_json::from_slice(&kv.value).unwrap()
}

fn status(id: &str, node: &str, state: InstanceState) -> InstanceStatus {
    InstanceStatus::new(
        InstanceId::new(id).unwrap(),
        NodeName::new(node).unwrap(),
        state,
        format!("{state:?}"),
    )
}

#[tokio::test]
async fn a_blocking_assignments_query_answers_for_its_own_node_only() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path()).await;
    let n1 = NodeName::from_static("n1");
    store_release(&plane).await;
    put(&plane, &instance("a-0", "n1", DesiredState::Running)).await;
    let first = plane.assignments(&n1).await.unwrap();
    assert_eq!(ids(&first.assignments), ["a-0"]);
    assert!(
        first.unchanged.is_empty(),
        "a full read names no instance by id"
    );
    let waiting = {
        let plane = plane.clone();
        let n1 = n1.clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            let answer = plane
                .assignments_after(&n1, first.revision, Duration::from_secs(10), false)
                .await;
            (asked.elapsed(), answer)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another node's instance does not answer n1's query.
    put(&plane, &instance("b-1", "n2", DesiredState::Running)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "n2's change answered n1's query");
    let written = put(&plane, &instance("a-1", "n1", DesiredState::Running)).await;
    let (waited, answer) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("n1's change answers at once")
        .unwrap();
    let revision = answer.revision;
    assert!(revision >= written, "{revision} < {written}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // Only the change comes in full; the rest by id, and merged it is the whole set.
    assert_eq!(ids(&answer.assignments), ["a-1"]);
    assert_eq!(answer.unchanged, [InstanceId::from_static("a-0")]);
    let held = first
        .assignments
        .iter()
        .map(|a| (a.instance.id.clone(), a.clone()))
        .collect();
    let whole = answer.clone().merged_with(&held).unwrap();
    assert_eq!(ids(&whole), ["a-1", "a-0"]);
    assert!(answer.merged_with(&Default::default()).is_none());
    // Nothing changes: the query ends after its wait, with the same revision.
    let asked = Instant::now();
    let idle = plane
        .assignments_after(&n1, revision, Duration::from_millis(200), false)
        .await;
    assert!(asked.elapsed() >= Duration::from_millis(200));
    assert_eq!(idle.revision, revision);
}

/// Asked for removals, a blocking query answers with what changed and what left the node:
/// not every id that stayed, however many instances the node holds.
#[tokio::test]
async fn a_blocking_assignments_query_can_answer_by_removals() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path()).await;
    let n1 = NodeName::from_static("n1");
    store_release(&plane).await;
    for id in ["a-0", "a-1", "a-2"] {
        put(&plane, &instance(id, "n1", DesiredState::Running)).await;
    }
    let first = plane.assignments(&n1).await.unwrap();
    assert_eq!(first.since, None, "a full read is the whole set");
    let held = first
        .assignments
        .iter()
        .map(|a| (a.instance.id.clone(), a.clone()))
        .collect();
    // a-0 leaves, a-1 is asked to stop, a-2 stays as it was.
    plane.store().delete(&keys::instance("a-0")).await.unwrap();
    let written = put(&plane, &instance("a-1", "n1", DesiredState::Stopped)).await;
    // The query may answer at the first change; ask until the answer holds both.
    let answer = answer_by_removals_holding(&plane, &n1, first.revision, written).await;
    let answered_at = answer.revision;
    assert_eq!(answer.since, Some(first.revision));
    assert_eq!(ids(&answer.assignments), ["a-1"]);
    assert_eq!(answer.removed, [InstanceId::from_static("a-0")]);
    assert!(answer.unchanged.is_empty(), "{:?}", answer.unchanged);
    let mut whole = answer.clone().merged_with(&held).unwrap();
    whole.sort_by(|a, b| a.instance.id.cmp(&b.instance.id));
    assert_eq!(ids(&whole), ["a-1", "a-2"]);
    assert_eq!(whole[0].instance.desired, DesiredState::Stopped);
    // Not asked for removals (an older agent): the whole set, by id for the unchanged.
    let whole_set = plane
        .assignments_after(&n1, first.revision, Duration::from_secs(5), false)
        .await;
    assert_eq!(whole_set.since, None);
    assert_eq!(ids(&whole_set.assignments), ["a-1"]);
    assert_eq!(whole_set.unchanged, [InstanceId::from_static("a-2")]);
    // The service deleted with its release: a changed instance that can no longer run is
    // named as removed, so the node stops it rather than keep what it held.
    let held: std::collections::HashMap<_, _> = whole
        .iter()
        .map(|a| (a.instance.id.clone(), a.clone()))
        .collect();
    plane
        .store()
        .delete(&keys::release("dev", "web", 1))
        .await
        .unwrap();
    let written = put(&plane, &instance("a-2", "n1", DesiredState::Stopped)).await;
    let answer = answer_by_removals_holding(&plane, &n1, answered_at, written).await;
    assert!(answer.assignments.is_empty());
    assert_eq!(answer.removed, [InstanceId::from_static("a-2")]);
    let left = answer.merged_with(&held).unwrap();
    assert_eq!(ids(&left), ["a-1"]);
}

/// `node`'s blocking query after `index`, asked for removals until its answer holds the
/// write at revision `written` (a query may answer at an earlier change).
async fn answer_by_removals_holding(
    plane: &ControlPlane,
    node: &NodeName,
    index: u64,
    written: u64,
) -> strata_core::api::Assignments {
    for _ in 0..50 {
        let found = plane
            .assignments_after(node, index, Duration::from_secs(5), true)
            .await;
        if found.revision >= written {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the reflector never reached revision {written}");
}

#[tokio::test]
async fn statuses_reported_together_are_stored_in_order_with_an_event_per_change_folded() {
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
        let kept = stored_status(&plane, id).await;
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
    // a-1: started, healthy (once, though reported running twice); a-2: healthy. The two
    // that became healthy together are told in one event.
    let events = plane.events(None, 100).await.unwrap();
    let told: Vec<(EventKind, Option<&str>, &str)> = events
        .iter()
        .filter(|e| e.kind.as_str().starts_with("instance."))
        .map(|e| (e.kind, e.instance.as_deref(), e.message.as_str()))
        .collect();
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[0].0, EventKind::InstanceStarted);
    assert_eq!(told[0].1, Some("a-1"));
    assert_eq!(
        told[1],
        (
            EventKind::InstanceHealthy,
            None,
            "web: 2 instances healthy on node n1 (a-1, a-2)"
        )
    );
    // Running again later keeps when it became healthy.
    let before = stored_status(&plane, "a-1").await;
    plane
        .report_statuses(&n1, vec![status("a-1", "n1", InstanceState::Running)])
        .await
        .unwrap();
    let after = stored_status(&plane, "a-1").await;
    assert_eq!(after.ready_since, before.ready_since);
}

#[tokio::test]
async fn a_report_of_many_is_stored_whole_and_an_instance_reported_twice_keeps_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let plane = plane(dir.path()).await;
    let ids: Vec<String> = (0..100).map(|i| format!("a-{i:03}")).collect();
    for id in &ids {
        put(&plane, &instance(id, "n1", DesiredState::Running)).await;
    }
    let n1 = NodeName::from_static("n1");
    // A hundred instances, each once: several transactions, in flight together.
    let report = ids[..60]
        .iter()
        .map(|id| status(id, "n1", InstanceState::Running))
        .collect();
    plane.report_statuses(&n1, report).await.unwrap();
    for id in &ids[..60] {
        assert_eq!(
            stored_status(&plane, id).await.state,
            InstanceState::Running,
            "{id}"
        );
    }
    // Forty instances starting, then running, then failing, in one report: each instance's
    // statuses fall in different transactions and the last one it reported is what stays.
    let report = [
        InstanceState::Starting,
        InstanceState::Running,
        InstanceState::Failed,
    ]
    .into_iter()
    .flat_map(|state| ids[60..].iter().map(move |id| status(id, "n1", state)))
    .collect();
    plane.report_statuses(&n1, report).await.unwrap();
    for id in &ids[60..] {
        assert_eq!(
            stored_status(&plane, id).await.state,
            InstanceState::Failed,
            "{id}"
        );
    }
}

/// Registers node `n1` and waits for the plane's reflector to hold it.
/// A control plane that leads, with node n1 registered.
async fn leading_with_n1(dir: &std::path::Path) -> (Arc<ControlPlane>, strata_core::Node) {
    let plane = plane(dir).await;
    plane.start_election();
    assert!(eventually(|| plane.term().is_some()).await, "never led");
    let node = register_n1(&plane).await;
    (plane, node)
}

async fn register_n1(plane: &ControlPlane) -> strata_core::Node {
    let node = plane
        .register_node(strata_core::api::RegisterNode::bare(
            NodeName::from_static("n1"),
            "http://127.0.0.1:9",
        ))
        .await
        .unwrap();
    assert!(eventually(|| plane.reflector().read().node("n1").is_some()).await);
    node
}

/// Polls `check` every 20 ms for at most 5 s.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_heartbeat_datagram_counts_only_signed_by_its_node_and_never_twice() {
    use strata_core::beat::{beat_key, encode, parse, BeatKey, Kind};
    let dir = tempfile::tempdir().unwrap();
    let (plane, node) = leading_with_n1(dir.path()).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = socket.local_addr().unwrap();
    tokio::spawn(strata_control::beats::serve(plane.clone(), socket));
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let key = beat_key(&plane.credentials().node_credential("n1"));
    let forged = beat_key("sn.n1.not-the-credential");
    let stranger = beat_key(&plane.credentials().node_credential("n9"));
    let datagrams = [
        encode("n1", node.epoch, 100, &key),
        // Signed with another key, a replay of number 100, an older number, a node the
        // cluster does not know, another epoch, and not a beat at all.
        encode("n1", node.epoch, 101, &forged),
        encode("n1", node.epoch, 100, &key),
        encode("n1", node.epoch, 99, &key),
        encode("n9", 1, 102, &stranger),
        encode("n1", node.epoch + 1, 103, &key),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        // The second that counts.
        encode("n1", node.epoch, 104, &key),
    ];
    for datagram in &datagrams {
        sender.send_to(datagram, to).await.unwrap();
    }
    let mut counted = 0;
    assert!(
        eventually(|| {
            counted += plane.heartbeats().take_datagrams("n1");
            counted >= 2
        })
        .await,
        "counted {counted}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    counted += plane.heartbeats().take_datagrams("n1");
    assert_eq!(counted, 2);
    assert_eq!(plane.heartbeats().take_datagrams("n9"), 0);
    assert!(plane.heartbeats().last("n9").is_none());
    // Only the verified beat of another epoch was answered: "register again", signed with
    // n1's key, sent back to its sender (and nothing to the forged, replayed or unknown).
    let mut buffer = [0u8; 256];
    let len = tokio::time::timeout(Duration::from_secs(5), sender.recv(&mut buffer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = parse(&buffer[..len]).unwrap();
    assert_eq!(
        (answer.kind, answer.node, answer.epoch, answer.seq),
        (Kind::RegisterAgain, "n1", node.epoch + 1, 103)
    );
    assert!(answer.verified_by(&BeatKey::new(&key)));
    assert!(sender.try_recv(&mut buffer).is_err(), "one answer only");
}

/// Beats lost before the server read them (its socket's buffer full) are counted from the
/// kernel's own figure, and liveness learns that it cannot blame nodes for that gap.
#[tokio::test]
async fn heartbeat_datagrams_the_kernel_dropped_are_counted() {
    use strata_control::heartbeats::DatagramOutcome;
    use strata_core::beat::{beat_key, encode};
    let dir = tempfile::tempdir().unwrap();
    let (plane, node) = leading_with_n1(dir.path()).await;
    // A socket nobody reads yet, with the smallest buffer, counting its drops.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &1).unwrap();
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RxqOvfl, &1).unwrap();
    let to = socket.local_addr().unwrap();
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let key = beat_key(&plane.credentials().node_credential("n1"));
    for seq in 1..=500 {
        sender
            .send_to(&encode("n1", node.epoch, seq, &key), to)
            .await
            .unwrap();
    }
    tokio::spawn(strata_control::beats::serve(plane.clone(), socket));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next beat carries the kernel's count of what it dropped before.
    sender
        .send_to(&encode("n1", node.epoch, 1_000, &key), to)
        .await
        .unwrap();
    let dropped = || {
        plane
            .heartbeats()
            .datagram_outcomes()
            .into_iter()
            .find(|(outcome, _)| *outcome == DatagramOutcome::Dropped)
            .map_or(0, |(_, count)| count)
    };
    assert!(eventually(|| dropped() > 0).await, "no drop counted");
    let taken = plane
        .heartbeats()
        .datagram_outcomes()
        .into_iter()
        .find(|(outcome, _)| *outcome == DatagramOutcome::Taken)
        .map_or(0, |(_, count)| count);
    assert_eq!(taken + dropped(), 501, "every beat taken or counted lost");
    assert!(plane.heartbeats().take_dropped().is_some());
    assert!(plane.heartbeats().take_dropped().is_none(), "taken once");
}

/// A node beating to a follower with a stale epoch is told to register again: the follower
/// passes the beat to the leader and relays the leader's answer back to the node.
#[tokio::test]
async fn a_follower_relays_the_leaders_register_again_answer() {
    use strata_core::beat::{beat_key, encode, parse, BeatKey, Kind};
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&dir.path().join("s.redb")).await.unwrap());
    let socket_a = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let socket_b = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to_b = socket_b.local_addr().unwrap();
    let mut config_a = common::config(dir.path(), "s1");
    config_a.api_url = format!("https://{}", socket_a.local_addr().unwrap());
    let leader = ControlPlane::new(store.clone(), config_a).unwrap();
    let follower = ControlPlane::new(store, common::config(dir.path(), "s2")).unwrap();
    leader.start_election();
    assert!(eventually(|| leader.term().is_some()).await, "never led");
    let node = register_n1(&leader).await;
    assert!(eventually(|| follower.reflector().read().node("n1").is_some()).await);
    assert!(follower.term().is_none(), "the second server follows");
    tokio::spawn(strata_control::beats::serve(leader.clone(), socket_a));
    tokio::spawn(strata_control::beats::serve(follower.clone(), socket_b));
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let key = beat_key(&leader.credentials().node_credential("n1"));
    sender
        .send_to(&encode("n1", node.epoch + 1, 7, &key), to_b)
        .await
        .unwrap();
    let mut buffer = [0u8; 256];
    let len = tokio::time::timeout(Duration::from_secs(5), sender.recv(&mut buffer))
        .await
        .expect("the leader's answer, relayed")
        .unwrap();
    let answer = parse(&buffer[..len]).unwrap();
    assert_eq!(
        (answer.kind, answer.node, answer.epoch),
        (Kind::RegisterAgain, "n1", node.epoch + 1)
    );
    assert!(answer.verified_by(&BeatKey::new(&key)));
}
