use std::collections::BTreeMap;

use super::*;
use crate::reflector::fixtures::*;
use strata_core::DesiredState::Running;
use strata_store::WatchEvent;

fn state_of(events: &[WatchEvent]) -> ClusterState {
    let mut state = ClusterState::default();
    for event in events {
        state.apply(event);
    }
    state
}

fn key(name: &str) -> ServiceKey {
    (
        strata_core::EnvName::from_static("dev"),
        strata_core::ServiceName::new(name).unwrap(),
    )
}

/// Placements per node name.
fn spread(pass: &PassPlan) -> BTreeMap<String, usize> {
    let mut on = BTreeMap::new();
    for p in &pass.placements {
        *on.entry(p.node.to_string()).or_default() += 1;
    }
    on
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

const SMALL: &str = "[service.web.resources]\ncpu = \"100m\"\nmemory = \"100Mi\"\n";

#[test]
fn a_pass_places_what_is_missing_spread_over_zones_and_counts_what_nodes_hold() {
    let nodes = || {
        vec![
            node("a1", "a", 1000, 1),
            node("a2", "a", 1000, 2),
            node("b1", "b", 1000, 3),
        ]
    };
    let web = |id, on| instance(id, "web", on, Running);
    // (what, events after the nodes, placements per node, some could not be placed)
    type Row = (&'static str, Vec<WatchEvent>, BTreeMap<String, usize>, bool);
    let table: Vec<Row> = vec![
        (
            "four new instances: two per zone",
            vec![release("web", 1, SMALL), service("web", 1, 4, 5)],
            counts(&[("a1", 1), ("a2", 1), ("b1", 2)]),
            false,
        ),
        (
            "two exist on a1 and b1: the missing two go where the service is thinnest",
            vec![
                release("web", 1, SMALL),
                service("web", 1, 4, 5),
                placed(&web("x", "a1"), 6),
                placed(&web("y", "b1"), 7),
            ],
            counts(&[("a2", 1), ("b1", 1)]),
            false,
        ),
        (
            "what nodes hold counts: 25 of 100Mi fit in 3000Mi less the 500Mi a1 holds",
            vec![
                release("web", 1, SMALL),
                service("web", 1, 30, 5),
                release("big", 1, "[service.big.resources]\nmemory = \"500Mi\"\n"),
                service("big", 1, 1, 6),
                placed(&instance("z", "big", "a1", Running), 7),
            ],
            counts(&[("a1", 5), ("a2", 10), ("b1", 10)]),
            true,
        ),
        (
            "all there: nothing to do",
            vec![
                release("web", 1, SMALL),
                service("web", 1, 1, 5),
                placed(&web("x", "a1"), 6),
            ],
            BTreeMap::new(),
            false,
        ),
    ];
    for (what, events, want, error) in table {
        let mut all = nodes();
        all.extend(events);
        let state = state_of(&all);
        let pass = plan_pass(&state, [key("web")], 1_000);
        assert_eq!(spread(&pass), want, "{what}");
        assert_eq!(
            pass.outcomes.iter().any(|o| o.error.is_some()),
            error,
            "{what}: {:?}",
            pass.outcomes
        );
        assert!(pass.placements.iter().all(|p| p.node_epoch == 1), "{what}");
    }
}

#[test]
fn a_pass_plans_only_the_services_it_is_given_and_every_service_lists_all() {
    let state = state_of(&[
        node("a1", "a", 1000, 1),
        release("web", 1, SMALL),
        service("web", 1, 2, 3),
        release("api", 1, "[service.api.resources]\nmemory = \"10Mi\"\n"),
        service("api", 1, 3, 4),
        placed(&instance("old", "gone", "a1", Running), 5),
    ]);
    let pass = plan_pass(&state, [key("api")], 1_000);
    assert_eq!(pass.placements.len(), 3);
    assert!(pass.placements.iter().all(|p| p.service.name == "api"));
    assert!(pass.stops.is_empty());
    assert_eq!(every_service(&state), [key("api"), key("gone"), key("web")]);
    // Planning everything also stops the instance of a service with no record.
    let pass = plan_pass(&state, every_service(&state), 1_000);
    assert_eq!(pass.placements.len(), 5);
    assert_eq!(
        pass.stops,
        [(
            strata_core::InstanceId::new("old").unwrap(),
            "service deleted"
        )]
    );
}

#[test]
fn a_pass_planned_a_part_at_a_time_decides_what_one_planned_at_once_does() {
    // One small node: what the first service places must count for the second, across parts.
    let state = state_of(&[
        node("a1", "a", 100, 1),
        release("web", 1, "[service.web.resources]\nmemory = \"30Mi\"\n"),
        service("web", 1, 2, 3),
        release("api", 1, "[service.api.resources]\nmemory = \"30Mi\"\n"),
        service("api", 1, 2, 4),
        placed(&instance("old", "gone", "a1", Running), 5),
    ]);
    let at_once = plan_pass(&state, every_service(&state), 1_000);
    let mut planner = PassPlanner::default();
    for id in every_service(&state) {
        planner.plan(&state, [id], 1_000);
    }
    assert_eq!(planner.planned_instances, 1);
    let in_parts = planner.finish();
    assert_eq!(in_parts, at_once);
    // The node holds three of 30Mi: the second service gets what the first left.
    assert_eq!(in_parts.placements.len(), 3, "{:?}", in_parts.outcomes);
    assert!(in_parts.outcomes.iter().any(|o| o.error.is_some()));
}

#[test]
fn each_service_is_spread_by_its_own_instances_not_the_last_planned_ones() {
    // web holds two on a1 and places its third on a2 (spread); api, planned next, counts
    // none of its own anywhere, so bin-packing decides: the fuller a1.
    let state = state_of(&[
        node("a1", "a", 1000, 1),
        node("a2", "a", 1000, 2),
        release("web", 1, SMALL),
        service("web", 1, 3, 3),
        placed(&instance("web-a", "web", "a1", Running), 4),
        placed(&instance("web-b", "web", "a1", Running), 5),
        release("api", 1, "[service.api.resources]\nmemory = \"10Mi\"\n"),
        service("api", 1, 1, 6),
    ]);
    let pass = plan_pass(&state, [key("web"), key("api")], 1_000);
    let placed: Vec<(&str, &str)> = pass
        .placements
        .iter()
        .map(|p| (p.service.name.as_str(), p.node.as_str()))
        .collect();
    assert_eq!(placed, [("web", "a2"), ("api", "a1")]);
}

#[test]
fn a_fixed_port_freed_by_a_stop_is_placed_again_in_the_same_pass() {
    let fixed = "port = 8080\n";
    let state = state_of(&[
        node("a1", "a", 1000, 1),
        release("web", 1, fixed),
        release("web", 2, fixed),
        service("web", 2, 1, 4),
        placed(&instance("v1", "web", "a1", Running), 5),
    ]);
    // v1 (release 1) holds 8080 on the only node and release 2 needs it. v1 is not healthy,
    // so the rollout replaces it at once, and its port is free for the replacement.
    let pass = plan_pass(&state, [key("web")], 1_000);
    assert_eq!(pass.stops.len(), 1, "{pass:?}");
    assert_eq!(spread(&pass), counts(&[("a1", 1)]), "{pass:?}");
}

#[test]
fn an_instance_lost_with_its_node_is_stopped_after_its_replacement_and_frees_nothing() {
    let mut down = match node("b1", "b", 1000, 2) {
        WatchEvent::Put(kv) => kv,
        other => panic!("{other:?}"),
    };
    let mut record: strata_core::Node = serde_json::from_slice(&down.value).unwrap();
    record.state = strata_core::NodeState::Down;
    down.value = serde_json::to_vec(&record).unwrap();
    let state = state_of(&[
        node("a1", "a", 1000, 1),
        WatchEvent::Put(down),
        release("web", 1, SMALL),
        service("web", 1, 2, 3),
        placed(&instance("x", "web", "a1", Running), 4),
        placed(&instance("y", "web", "b1", Running), 5),
    ]);
    let pass = plan_pass(&state, [key("web")], 1_000);
    assert_eq!(
        pass.lost,
        [(
            strata_core::InstanceId::new("y").unwrap(),
            "node lost; replaced elsewhere"
        )]
    );
    assert!(pass.stops.is_empty(), "{:?}", pass.stops);
    assert!(pass.stopped_on.is_empty(), "{:?}", pass.stopped_on);
    assert_eq!(spread(&pass), counts(&[("a1", 1)]));
}
