use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use strata_core::{
    EnvName, Instance, InstanceState, InstanceStatus, InstanceView, NodeName, ServiceName,
};

use super::*;
use crate::plan::{plan_service, Readiness};

const NODES: [(&str, Option<NodeState>); 6] = [
    ("ready", Some(NodeState::Ready)),
    ("suspect", Some(NodeState::Suspect)),
    ("down", Some(NodeState::Down)),
    ("draining", Some(NodeState::Draining)),
    ("gone", None),
    ("ready-too", Some(NodeState::Ready)),
];

fn node_states() -> BTreeMap<NodeName, NodeState> {
    NODES
        .iter()
        .filter_map(|(name, state)| Some((NodeName::new(*name).unwrap(), (*state)?)))
        .collect()
}

/// Instance `id` of release `release` on `node`, wanted or not, reporting `state` (`None`:
/// no report yet).
fn view(
    id: &str,
    release: u64,
    node: &str,
    wanted: bool,
    state: Option<InstanceState>,
) -> InstanceView {
    let id = InstanceId::new(id).unwrap();
    let node = NodeName::new(node).unwrap();
    InstanceView {
        instance: Instance {
            id: id.clone(),
            env: EnvName::from_static("dev"),
            service: ServiceName::from_static("web"),
            release,
            node: node.clone(),
            node_epoch: 1,
            desired: if wanted {
                DesiredState::Running
            } else {
                DesiredState::Stopped
            },
            created_at: 0,
            stop_requested_at: None,
            quarantine: None,
        },
        status: state.map(|state| InstanceStatus {
            address: Some("127.0.0.1:1".into()),
            ready_since: Some(0),
            ..InstanceStatus::new(id, node, state, "")
        }),
    }
}

fn tally_plan(views: &[InstanceView], release: Option<u64>, replicas: u32) -> Option<ServicePlan> {
    let borrowed: Vec<InstanceRef<'_>> = views.iter().map(InstanceView::borrowed).collect();
    plan_by_tally(
        &ServiceTally::of(&borrowed, &node_states()),
        release,
        replicas,
    )
}

fn full_plan(views: &[InstanceView], release: Option<u64>, replicas: u32) -> ServicePlan {
    let borrowed: Vec<InstanceRef<'_>> = views.iter().map(InstanceView::borrowed).collect();
    let readiness = Readiness {
        now: 1_000_000,
        min_ready_ms: 1_000,
        recreate: false,
    };
    plan_service(release, replicas, &borrowed, &node_states(), readiness)
}

/// (case, instances, desired release, replicas, whether the tally decides)
type Case = (&'static str, Vec<InstanceView>, Option<u64>, u32, bool);

#[test]
fn the_tally_decides_settled_services_and_leaves_the_rest_to_the_full_plan() {
    use InstanceState::*;
    let up = |id, node| view(id, 1, node, true, Some(Running));
    let cases: Vec<Case> = vec![
        ("nothing yet: place them all", vec![], Some(1), 3, true),
        (
            "settled",
            vec![up("a", "ready"), up("b", "suspect")],
            Some(1),
            2,
            true,
        ),
        (
            "settled, some still starting",
            vec![up("a", "ready"), view("b", 1, "ready", true, None)],
            Some(1),
            2,
            true,
        ),
        (
            "a node died: stop and replace what it held",
            vec![up("a", "ready"), up("b", "down"), up("c", "gone")],
            Some(1),
            3,
            true,
        ),
        (
            "failed and lost interleave in id order",
            vec![
                view("a", 1, "ready", true, Some(Failed)),
                up("b", "down"),
                view("c", 1, "ready-too", true, Some(Failed)),
                up("d", "ready"),
            ],
            Some(1),
            4,
            true,
        ),
        (
            "stopped ones are forgotten when done or lost",
            vec![
                view("a", 1, "ready", false, Some(Stopped)),
                view("b", 1, "ready", false, Some(Running)),
                view("c", 1, "down", false, Some(Running)),
                up("d", "ready"),
            ],
            Some(1),
            1,
            true,
        ),
        (
            "more than wanted: which to stop is the full plan's",
            vec![up("a", "ready"), up("b", "ready")],
            Some(1),
            1,
            false,
        ),
        ("a rollout", vec![up("a", "ready")], Some(2), 1, false),
        ("a drain", vec![up("a", "draining")], Some(1), 1, false),
        ("a deleted service", vec![up("a", "ready")], None, 0, false),
    ];
    for (name, views, release, replicas, decides) in cases {
        let by_tally = tally_plan(&views, release, replicas);
        assert_eq!(by_tally.is_some(), decides, "{name}");
        if let Some(plan) = by_tally {
            assert_eq!(plan, full_plan(&views, release, replicas), "{name}");
        }
    }
}

#[test]
fn whenever_the_tally_decides_it_decides_as_the_full_plan() {
    use InstanceState::*;
    let states = [
        None,
        Some(Pending),
        Some(Starting),
        Some(Running),
        Some(Unhealthy),
        Some(Backoff),
        Some(Failed),
        Some(Stopped),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let mut decided = 0;
    for round in 0..20_000 {
        let count = rng.gen_range(0..12);
        let views: Vec<InstanceView> = (0..count)
            .map(|i| {
                view(
                    &format!("i{i:02}"),
                    // Mostly the desired release, so that many cases are settled.
                    if rng.gen_bool(0.9) { 1 } else { 2 },
                    NODES[rng.gen_range(0..NODES.len())].0,
                    rng.gen_bool(0.85),
                    states[rng.gen_range(0..states.len())],
                )
            })
            .collect();
        let release = [Some(1), Some(1), Some(1), Some(2), None][rng.gen_range(0..5)];
        let replicas = rng.gen_range(0..12);
        if let Some(plan) = tally_plan(&views, release, replicas) {
            decided += 1;
            assert_eq!(
                plan,
                full_plan(&views, release, replicas),
                "round {round}: {views:#?} release {release:?} replicas {replicas}"
            );
        }
    }
    // The comparison means something only if the tally decided a good share.
    assert!(
        decided > 2_000,
        "the tally decided only {decided} of 20,000"
    );
}

#[test]
fn adding_and_removing_a_standing_gives_back_the_tally_before() {
    let a = InstanceId::new("a").unwrap();
    let (n1, n2) = (NodeName::new("n1").unwrap(), NodeName::new("n2").unwrap());
    let mut tally = ServiceTally::default();
    tally.add(&a, &n1, Standing::Placed { release: 1 });
    let before = tally.clone();
    for standing in [
        Standing::Stopping { done: false },
        Standing::Stopping { done: true },
        Standing::Lost,
        Standing::Failed,
        Standing::Draining,
        Standing::Placed { release: 2 },
    ] {
        tally.add(&a, &n2, standing);
        assert_ne!(tally, before, "{standing:?} counts");
        tally.remove(&a, &n2, standing);
        assert_eq!(tally, before, "{standing:?} is taken back");
    }
    tally.remove(&a, &n1, Standing::Placed { release: 1 });
    assert!(tally.is_empty());
    assert_eq!(tally, ServiceTally::default());
}
