use super::*;

use crate::reflector::fixtures::*;
use strata_core::spec::DriverKind;
use strata_core::NodeState;

fn web() -> ServiceKey {
    (EnvName::from_static("dev"), ServiceName::from_static("web"))
}

fn state_of(events: &[WatchEvent]) -> ClusterState {
    let mut state = ClusterState::default();
    for event in events {
        state.apply(event);
    }
    state
}

#[test]
fn a_node_holds_what_its_wanted_instances_hold_and_gets_it_back() {
    let running = |id| instance(id, "web", "n1", DesiredState::Running);
    let stopped = |id| instance(id, "web", "n1", DesiredState::Stopped);
    let spec = "[service.web.resources]\ncpu = \"100m\"\nmemory = \"64Mi\"\n";
    let fixed = "port = 8080\n[service.web.resources]\ncpu = \"100m\"\nmemory = \"64Mi\"\n";
    // (events after the release, memory held on n1, fixed ports held on n1)
    let table: Vec<(&str, Vec<WatchEvent>, u64, Vec<u16>)> = vec![
        (
            "one wanted",
            vec![placed(&running("a"), 10)],
            64 * MI,
            vec![],
        ),
        (
            "two wanted",
            vec![placed(&running("a"), 10), placed(&running("b"), 11)],
            128 * MI,
            vec![],
        ),
        (
            "stop requested",
            vec![placed(&running("a"), 10), placed(&stopped("a"), 11)],
            0,
            vec![],
        ),
        (
            "deleted",
            vec![placed(&running("a"), 10), delete(keys::instance("a"), 11)],
            0,
            vec![],
        ),
        (
            "an older write comes late",
            vec![placed(&stopped("a"), 11), placed(&running("a"), 10)],
            0,
            vec![],
        ),
        (
            "a delete older than the record",
            vec![placed(&running("a"), 11), delete(keys::instance("a"), 10)],
            64 * MI,
            vec![],
        ),
    ];
    for (what, events, memory, ports) in table {
        let mut all = vec![release("web", 1, spec)];
        all.extend(events);
        let state = state_of(&all);
        let load = state.node_load("n1");
        assert_eq!(load.allocated.memory_bytes, memory, "{what}");
        assert_eq!(
            load.static_ports.keys().copied().collect::<Vec<_>>(),
            ports,
            "{what}"
        );
    }
    // A fixed port is held while wanted and given back after.
    let state = state_of(&[release("web", 1, fixed), placed(&running("a"), 10)]);
    assert_eq!(
        state
            .node_load("n1")
            .static_ports
            .get(&8080)
            .map(|id| id.as_str()),
        Some("a")
    );
    let state = state_of(&[
        release("web", 1, fixed),
        placed(&running("a"), 10),
        placed(&stopped("a"), 12),
    ]);
    assert!(state.node_load("n1").static_ports.is_empty());
}

#[test]
fn the_indexes_follow_instances_between_nodes_and_services() {
    let a = instance("a", "web", "n1", DesiredState::Running);
    let b = instance("b", "api", "n1", DesiredState::Running);
    let c = instance("c", "web", "n2", DesiredState::Running);
    let mut state = state_of(&[placed(&a, 5), placed(&b, 6), placed(&c, 7)]);
    let on = |state: &ClusterState, node| {
        state
            .instance_revisions_on(node)
            .map(|(id, revision)| (id.to_string(), revision))
            .collect::<Vec<_>>()
    };
    let at = |id: &str, revision| (id.to_string(), revision);
    assert_eq!(on(&state, "n1"), [at("a", 5), at("b", 6)]);
    assert_eq!(on(&state, "n2"), [at("c", 7)]);
    assert_eq!(state.instances_of(&web()).len(), 2);
    assert_eq!((state.node_changed("n1"), state.node_changed("n2")), (6, 7));
    state.apply(&delete(keys::instance("a"), 8));
    assert_eq!(on(&state, "n1"), [at("b", 6)]);
    assert_eq!(state.instances_of(&web()).len(), 1);
    assert_eq!((state.node_changed("n1"), state.node_changed("n2")), (8, 7));
    assert_eq!(state.revision(), 8);
    // A change elsewhere moves the revision but not a node's.
    state.apply(&put(keys::event(1), &"x", 9));
    assert_eq!((state.revision(), state.node_changed("n1")), (9, 8));
    // An instance written again is indexed at its new revision.
    let mut stopping = b.clone();
    stopping.desired = DesiredState::Stopped;
    state.apply(&placed(&stopping, 10));
    assert_eq!(on(&state, "n1"), [at("b", 10)]);
    assert_eq!(state.node_changed("n1"), 10);
    let changed_after = |state: &ClusterState, node, index| {
        state
            .instances_on_changed_after(node, index)
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(changed_after(&state, "n1", 9), ["b"]);
    assert!(changed_after(&state, "n1", 10).is_empty());
    assert_eq!(changed_after(&state, "n2", 0), ["c"]);
    assert!(changed_after(&state, "n2", 7).is_empty());
}

#[test]
fn a_status_joins_its_instance_and_dirties_its_service() {
    let a = instance("a", "web", "n1", DesiredState::Running);
    let mut state = state_of(&[placed(&a, 5)]);
    assert_eq!(
        state.take_dirty().services.into_iter().collect::<Vec<_>>(),
        [web()]
    );
    assert!(state.take_dirty().is_empty());
    let status = InstanceStatus {
        ready_since: Some(1),
        ..InstanceStatus::new(
            a.id.clone(),
            a.node.clone(),
            strata_core::InstanceState::Running,
            "",
        )
    };
    state.apply(&put(keys::status("a"), &status, 6));
    assert_eq!(state.take_dirty().services.len(), 1);
    assert!(state.instances_of(&web())[0].status.is_some());
    state.apply(&delete(keys::status("a"), 7));
    assert!(state.instances_of(&web())[0].status.is_none());
}

#[test]
fn a_node_change_dirties_its_instances_services_and_a_relisting_touches_every_node() {
    let node = Node::ready(
        NodeName::from_static("n1"),
        Resources::default(),
        vec![DriverKind::Exec],
    );
    let mut state = state_of(&[put(keys::node("n1"), &node, 3)]);
    let dirty = state.take_dirty();
    assert!(
        dirty.nodes && !dirty.all && dirty.services.is_empty(),
        "{dirty:?}"
    );
    // With an instance on it, a change of the node concerns that instance's service.
    state.apply(&placed(
        &instance("a", "web", "n1", DesiredState::Running),
        4,
    ));
    state.take_dirty();
    // (state, draining, whether web is planned again): a suspect node's instances are
    // planned as a ready node's; going down, draining or coming back from either is a change.
    let table = [
        (NodeState::Suspect, false, false),
        (NodeState::Ready, false, false),
        (NodeState::Suspect, false, false),
        (NodeState::Down, false, true),
        (NodeState::Down, false, false),
        (NodeState::Ready, false, true),
        (NodeState::Ready, true, true),
        (NodeState::Suspect, true, false),
        (NodeState::Ready, false, true),
    ];
    let mut revision = 4;
    for (step, (next, draining, planned_again)) in table.into_iter().enumerate() {
        revision += 1;
        let mut changed = node.clone();
        changed.state = next;
        changed.draining = draining;
        state.apply(&put(keys::node("n1"), &changed, revision));
        let dirty = state.take_dirty();
        assert!(dirty.nodes, "step {step}: {dirty:?}");
        let services: Vec<_> = dirty.services.into_iter().collect();
        let expected = if planned_again { vec![web()] } else { vec![] };
        assert_eq!(
            services, expected,
            "step {step}: {next:?}, draining {draining}"
        );
    }
    assert_eq!(state.node("n1").map(|n| n.revision), Some(revision));
    state.touch_everything(40);
    assert_eq!(state.node_changed("n1"), 40);
    assert_eq!(
        state.take_touched_nodes().into_iter().collect::<Vec<_>>(),
        [NodeName::from_static("n1")]
    );
    assert!(state.take_dirty().all);
    state.apply(&delete(keys::node("n1"), 41));
    assert!(state.node("n1").is_none());
}

/// What a liveness pass relies on: the nodes not ready, and versions that change with the
/// set of nodes (a roster made again) and with any node's record (cached states read again).
#[test]
fn unready_nodes_and_node_versions_follow_the_records() {
    let with_state = |name: &str, state: NodeState, revision| {
        let WatchEvent::Put(kv) = node(name, "a", 64, revision) else {
            unreachable!()
        };
        let mut record: Node = serde_json::from_slice(&kv.value).unwrap();
        record.state = state;
        put(keys::node(name), &record, revision)
    };
    let unready = |state: &ClusterState| -> Vec<String> {
        state.unready_nodes().map(|n| n.to_string()).collect()
    };
    let mut state = ClusterState::default();
    let versions = |state: &ClusterState| (state.node_set_version(), state.node_records_version());
    // (change, nodes not ready after it, set changed, records changed)
    let table: Vec<(&str, WatchEvent, Vec<&str>, bool, bool)> = vec![
        (
            "n1 joins",
            with_state("n1", NodeState::Ready, 2),
            vec![],
            true,
            true,
        ),
        (
            "n2 joins",
            with_state("n2", NodeState::Ready, 3),
            vec![],
            true,
            true,
        ),
        (
            "n1 suspect",
            with_state("n1", NodeState::Suspect, 4),
            vec!["n1"],
            false,
            true,
        ),
        (
            "n2 down",
            with_state("n2", NodeState::Down, 5),
            vec!["n1", "n2"],
            false,
            true,
        ),
        (
            "n1 ready again",
            with_state("n1", NodeState::Ready, 6),
            vec!["n2"],
            false,
            true,
        ),
        (
            "an older n1 comes late",
            with_state("n1", NodeState::Down, 5),
            vec!["n2"],
            false,
            false,
        ),
        (
            "n2 removed",
            delete(keys::node("n2"), 7),
            vec![],
            true,
            true,
        ),
        (
            "n2 removed again",
            delete(keys::node("n2"), 8),
            vec![],
            false,
            false,
        ),
    ];
    for (what, event, want, set_changed, records_changed) in table {
        let before = versions(&state);
        state.apply(&event);
        let after = versions(&state);
        assert_eq!(unready(&state), want, "{what}");
        assert_eq!(before.0 != after.0, set_changed, "{what}: set version");
        assert_eq!(
            before.1 != after.1,
            records_changed,
            "{what}: records version"
        );
    }
    // A state made again from a listing never repeats a version of its predecessor.
    let mut rebuilt = ClusterState::default();
    rebuilt.apply(&with_state("n1", NodeState::Ready, 6));
    assert_ne!(rebuilt.node_set_version(), state.node_set_version());
}

#[test]
fn a_record_that_does_not_decode_is_reported_and_skipped() {
    let mut state = ClusterState::default();
    state.apply(&WatchEvent::Put(kv(keys::instance("a"), b"{".to_vec(), 4)));
    assert_eq!(state.instance_count(), 0);
    assert_eq!(state.revision(), 4);
    let corrupt = state.take_corrupt();
    assert_eq!(corrupt.len(), 1);
    assert_eq!(corrupt[0].0, keys::instance("a"));
}

#[test]
fn removals_from_a_node_are_known_from_the_listing_on_and_up_to_a_bound() {
    let a = instance("a", "web", "n1", DesiredState::Running);
    let b = instance("b", "web", "n1", DesiredState::Running);
    let mut state = ClusterState::default();
    state.load_listed(&kv(keys::instance("a"), serde_json::to_vec(&a).unwrap(), 5));
    state.load_listed(&kv(keys::instance("b"), serde_json::to_vec(&b).unwrap(), 6));
    state.advance_to(6);
    let removed = |state: &ClusterState, index| {
        state
            .removed_from_node_since("n1", index)
            .map(|ids| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>())
    };
    assert_eq!(removed(&state, 6), Some(vec![]));
    // Before the listing: not known.
    assert_eq!(removed(&state, 5), None);
    state.apply(&delete(keys::instance("a"), 7));
    assert_eq!(removed(&state, 6), Some(vec!["a".to_string()]));
    assert_eq!(removed(&state, 7), Some(vec![]));
    assert_eq!(state.removed_from_node_since("n2", 6), Some(vec![]));
    // Past the history kept, the oldest removals are forgotten: an index before them is
    // answered with the whole set.
    for i in 0..REMOVALS_KEPT as u64 {
        let id = format!("x{i}");
        state.apply(&placed(
            &instance(&id, "web", "n1", DesiredState::Running),
            10 + 2 * i,
        ));
        state.apply(&delete(keys::instance(&id), 11 + 2 * i));
    }
    assert_eq!(removed(&state, 6), None);
    let newest = 10 + 2 * REMOVALS_KEPT as u64;
    assert_eq!(removed(&state, newest).map(|ids| ids.len()), Some(0));
    assert_eq!(removed(&state, newest - 3).map(|ids| ids.len()), Some(1));
}

/// Every service's tally, kept change by change, is what counting its instances now gives.
fn assert_tallies_are_recounts(state: &ClusterState, step: &str) {
    let node_states: HashMap<NodeName, NodeState> = state
        .nodes()
        .map(|n| (n.value.name.clone(), n.value.effective_state()))
        .collect();
    let services: BTreeSet<ServiceKey> = state
        .services_with_instances()
        .chain(state.tallies.keys())
        .cloned()
        .collect();
    for service in services {
        let recount = ServiceTally::of(&state.instances_of(&service), &node_states);
        let kept = state
            .tally(&service)
            .map(|tally| tally.map_nodes(|slot| state.slot_name(*slot).clone()))
            .unwrap_or_default();
        assert_eq!(kept, recount, "{service:?} after {step}");
    }
}

#[test]
fn tallies_follow_instances_reports_and_node_states_in_any_order() {
    use rand::{Rng, SeedableRng};
    use strata_core::{InstanceState, InstanceStatus};
    let mut rng = rand::rngs::StdRng::seed_from_u64(24);
    let node_names = ["n1", "n2", "n3"];
    let ids = ["a", "b", "c", "d", "e", "f"];
    for round in 0..300 {
        let mut state = ClusterState::default();
        let mut revision: Revision = 0;
        for step in 0..60 {
            revision += 1;
            // Now and then an event comes late (a listing overlapping the watch): older
            // than what the state holds for its key, it must change nothing.
            let at = match rng.gen_bool(0.1) {
                true => revision.saturating_sub(rng.gen_range(1..6)),
                false => revision,
            };
            let id = ids[rng.gen_range(0..ids.len())];
            let node = node_names[rng.gen_range(0..node_names.len())];
            let event = match rng.gen_range(0..7) {
                0 | 1 => {
                    let desired = match rng.gen_bool(0.7) {
                        true => DesiredState::Running,
                        false => DesiredState::Stopped,
                    };
                    let service = ["web", "api"][rng.gen_range(0..2)];
                    let mut i = instance(id, service, node, desired);
                    i.release = rng.gen_range(1..3);
                    placed(&i, at)
                }
                2 => delete(keys::instance(id), at),
                3 => {
                    let states = [
                        InstanceState::Running,
                        InstanceState::Failed,
                        InstanceState::Stopped,
                        InstanceState::Starting,
                    ];
                    let status = InstanceStatus::new(
                        InstanceId::new(id).unwrap(),
                        NodeName::new(node).unwrap(),
                        states[rng.gen_range(0..states.len())],
                        "",
                    );
                    put(keys::status(id), &status, at)
                }
                4 => delete(keys::status(id), at),
                5 => {
                    let WatchEvent::Put(mut kv) =
                        crate::reflector::fixtures::node(node, "z", 64, at)
                    else {
                        unreachable!()
                    };
                    let mut record: strata_core::Node = serde_json::from_slice(&kv.value).unwrap();
                    record.state = [NodeState::Ready, NodeState::Suspect, NodeState::Down]
                        [rng.gen_range(0..3)];
                    record.draining = rng.gen_bool(0.2);
                    kv.value = serde_json::to_vec(&record).unwrap();
                    WatchEvent::Put(kv)
                }
                _ => delete(keys::node(node), at),
            };
            state.apply(&event);
            assert_tallies_are_recounts(&state, &format!("round {round} step {step}: {event:?}"));
        }
    }
}
