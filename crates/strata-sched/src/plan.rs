//! The service plan: given a service's desired release and scale and the instances it has,
//! what to start, stop and forget next. Called on every reconcile; the answer depends only on
//! the snapshot, so applying it twice is harmless (level-triggered).
//!
//! Rollouts are zero-downtime by construction: instances of the new release are started
//! first; an old instance is stopped only when enough new ones are healthy to keep
//! `replicas` serving. Stopping removes an instance from routing at once (its desired state
//! flips to stopped); its agent drains it before signalling it.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use strata_core::{DesiredState, InstanceId, InstanceRef, InstanceState, NodeName, NodeState};

use crate::tally::Standing;

/// Why an instance is being stopped (recorded in the event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The service was deleted.
    ServiceDeleted,
    /// More instances of the desired release than replicas.
    ScaleDown,
    /// Replaced by enough healthy instances of the new release, or, on a draining node, by
    /// healthy instances elsewhere.
    Superseded,
    /// Its node is down; a replacement was started elsewhere. The agent stops it if it ever
    /// comes back (fenced).
    NodeLost,
    /// It failed for good (could not be started).
    FailedToStart,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::ServiceDeleted => "service deleted",
            StopReason::ScaleDown => "scaled down",
            StopReason::Superseded => "superseded by the new release",
            StopReason::NodeLost => "node lost; replaced elsewhere",
            StopReason::FailedToStart => "failed to start; replaced",
        }
    }
}

/// What to do next for one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePlan {
    /// How many instances of the desired release to place.
    pub start: u32,
    /// How many instances of the release a progressive rollout brings in beside the desired
    /// one to place.
    pub start_beside: u32,
    /// Instances whose desired state becomes stopped, with why.
    pub stop: Vec<(InstanceId, StopReason)>,
    /// Stopped-and-done instances whose records can be deleted.
    pub forget: Vec<InstanceId>,
    /// When an instance now healthy becomes available (its `min_ready` passes), if that may
    /// change the plan: plan again then.
    pub recheck_at: Option<u64>,
}

/// The effective state of the nodes instances are on, by name (see `Node::effective_state`).
pub trait NodeStates {
    /// `None`: no such node (its instances count as on a down node).
    fn state_of(&self, node: &NodeName) -> Option<NodeState>;
}

impl NodeStates for BTreeMap<NodeName, NodeState> {
    fn state_of(&self, node: &NodeName) -> Option<NodeState> {
        self.get(node).copied()
    }
}

impl<S: BuildHasher> NodeStates for HashMap<NodeName, NodeState, S> {
    fn state_of(&self, node: &NodeName) -> Option<NodeState> {
        self.get(node).copied()
    }
}

/// When instances count as available to a rollout: healthy for `min_ready_ms` at `now` (the
/// control plane's clock, as `InstanceStatus::ready_since`); and whether old instances wait
/// for them at all (`recreate`: the release's `[rollout] strategy`, old ones stop at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    pub now: u64,
    pub min_ready_ms: u64,
    pub recreate: bool,
}

/// A release a progressive rollout (canary, blue-green) brings in beside the desired one,
/// and how many of its instances the rollout's step wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beside {
    pub release: u64,
    pub instances: u32,
}

/// Plans one service. `desired_release` is `None` when the service was deleted.
/// `node_states` gives the effective state of every node an instance is on (missing: down;
/// see `Node::effective_state`).
pub fn plan_service(
    desired_release: Option<u64>,
    replicas: u32,
    instances: &[InstanceRef<'_>],
    node_states: &impl NodeStates,
    readiness: Readiness,
) -> ServicePlan {
    plan_service_beside(
        desired_release,
        replicas,
        None,
        instances,
        node_states,
        readiness,
    )
}

/// [`plan_service`] while a progressive rollout brings `beside`'s release in: its
/// instances are kept at the step's count (started, or the extra stopped), apart from the
/// desired release's `replicas`; without `beside`, they are old instances as any other.
pub fn plan_service_beside(
    desired_release: Option<u64>,
    replicas: u32,
    beside: Option<Beside>,
    instances: &[InstanceRef<'_>],
    node_states: &impl NodeStates,
    readiness: Readiness,
) -> ServicePlan {
    let mut plan = ServicePlan::default();
    let standing =
        |view: &InstanceRef<'_>| Standing::of(view, node_states.state_of(&view.instance.node));

    // Instances already asked to stop: forget them once their agent says they are done, or
    // once their node is gone (the agent fences them if it comes back).
    let (stopping, wanted): (Vec<&InstanceRef<'_>>, Vec<&InstanceRef<'_>>) = instances
        .iter()
        .partition(|view| view.instance.desired == DesiredState::Stopped);
    for view in stopping {
        if standing(view) == (Standing::Stopping { done: true }) {
            plan.forget.push(view.instance.id.clone());
        }
    }

    let Some(release) = desired_release else {
        for view in wanted {
            plan.stop
                .push((view.instance.id.clone(), StopReason::ServiceDeleted));
        }
        return plan;
    };

    // Lost or failed instances are stopped and replaced. Instances on a draining node are
    // moved like old ones: replaced first, stopped once their replacements serve.
    let mut current = Vec::new();
    let mut incoming = Vec::new();
    let mut old = Vec::new();
    let beside = beside.filter(|beside| beside.release != release);
    for view in wanted {
        match standing(view) {
            Standing::Lost => plan
                .stop
                .push((view.instance.id.clone(), StopReason::NodeLost)),
            Standing::Failed => plan
                .stop
                .push((view.instance.id.clone(), StopReason::FailedToStart)),
            Standing::Placed { release: r } if r == release => current.push(view),
            Standing::Placed { release: r } if beside.is_some_and(|b| b.release == r) => {
                incoming.push(view)
            }
            _ => old.push(view),
        }
    }

    // Serving instances last, so the ones stopped first are those not serving anyway.
    let serving_last = |a: &&InstanceRef<'_>, b: &&InstanceRef<'_>| {
        let key = |view: &InstanceRef<'_>| {
            (
                view.state() == InstanceState::Running,
                std::cmp::Reverse(view.instance.created_at),
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.instance.id.cmp(&b.instance.id))
    };
    if let Some(beside) = beside {
        let wanted = beside.instances as usize;
        if incoming.len() < wanted {
            plan.start_beside = (wanted - incoming.len()) as u32;
        } else if incoming.len() > wanted {
            let extra = incoming.len() - wanted;
            incoming.sort_by(serving_last);
            for view in incoming.iter().take(extra) {
                plan.stop
                    .push((view.instance.id.clone(), StopReason::ScaleDown));
            }
        }
    }
    let wanted_count = replicas as usize;
    if current.len() < wanted_count {
        plan.start = (wanted_count - current.len()) as u32;
    } else if current.len() > wanted_count {
        let extra = current.len() - wanted_count;
        current.sort_by(serving_last);
        for view in current.iter().take(extra) {
            plan.stop
                .push((view.instance.id.clone(), StopReason::ScaleDown));
        }
        current.drain(..extra);
    }

    // Keep just enough old instances to cover what the new release does not serve yet:
    // new instances count once available (healthy for `min_ready`), and old ones that serve
    // nothing (crash-looping, starting, unhealthy) are never kept, so they hold no port or
    // capacity the new release needs.
    let Readiness {
        now,
        min_ready_ms,
        recreate,
    } = readiness;
    let available_current = current
        .iter()
        .filter(|view| view.is_available(now, min_ready_ms))
        .count();
    let serving_old = old.iter().filter(|view| view.is_routable()).count();
    let keep_old = match recreate {
        true => 0,
        false => wanted_count
            .saturating_sub(available_current)
            .min(serving_old),
    };
    let stop_old = old.len() - keep_old;
    if stop_old > 0 {
        old.sort_by(serving_last);
    }
    for view in old.iter().take(stop_old) {
        plan.stop
            .push((view.instance.id.clone(), StopReason::Superseded));
    }
    if keep_old > 0 {
        plan.recheck_at = current
            .iter()
            .filter(|view| !view.is_available(now, min_ready_ms))
            .filter_map(|view| view.available_at(min_ready_ms))
            .min();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::{Instance, InstanceStatus, InstanceView};

    /// Every running instance in the tables has been ready long enough.
    const LONG_READY: Readiness = Readiness {
        now: 1_000_000,
        min_ready_ms: 1_000,
        recreate: false,
    };

    /// `(id, release, state, desired running?, node)`
    type Row = (&'static str, u64, InstanceState, bool, &'static str);

    fn views(rows: &[Row]) -> Vec<InstanceView> {
        rows.iter()
            .enumerate()
            .map(|(i, (id, release, state, running, node))| InstanceView {
                instance: Instance {
                    id: strata_core::InstanceId::from_static(id),
                    env: strata_core::EnvName::from_static("dev"),
                    service: strata_core::ServiceName::from_static("web"),
                    release: *release,
                    node: strata_core::NodeName::from_static(node),
                    node_epoch: 1,
                    desired: if *running {
                        DesiredState::Running
                    } else {
                        DesiredState::Stopped
                    },
                    created_at: i as u64,
                    stop_requested_at: None,
                    quarantine: None,
                },
                status: Some(InstanceStatus {
                    address: Some("127.0.0.1:1".into()),
                    ..InstanceStatus::new(
                        strata_core::InstanceId::from_static(id),
                        strata_core::NodeName::from_static(node),
                        *state,
                        "",
                    )
                }),
            })
            .collect()
    }

    fn borrowed(views: &[InstanceView]) -> Vec<InstanceRef<'_>> {
        views.iter().map(InstanceView::borrowed).collect()
    }

    struct Case {
        name: &'static str,
        release: Option<u64>,
        replicas: u32,
        rows: Vec<Row>,
        start: u32,
        stop: Vec<(&'static str, StopReason)>,
        forget: Vec<&'static str>,
    }

    /// A case that expects nothing unless `starts`, `stops` or `forgets` says otherwise.
    fn case(name: &'static str) -> Case {
        Case {
            name,
            release: Some(1),
            replicas: 1,
            rows: vec![],
            start: 0,
            stop: vec![],
            forget: vec![],
        }
    }

    impl Case {
        /// The service's current release (`None`: deleted) and its replica count.
        fn wants(self, release: Option<u64>, replicas: u32) -> Self {
            Case {
                release,
                replicas,
                ..self
            }
        }
        fn rows(self, rows: &[Row]) -> Self {
            Case {
                rows: rows.to_vec(),
                ..self
            }
        }
        fn starts(self, start: u32) -> Self {
            Case { start, ..self }
        }
        fn stops(self, stop: &[(&'static str, StopReason)]) -> Self {
            Case {
                stop: stop.to_vec(),
                ..self
            }
        }
        fn forgets(self, forget: &[&'static str]) -> Self {
            Case {
                forget: forget.to_vec(),
                ..self
            }
        }
    }

    #[test]
    fn service_plan_table() {
        use InstanceState::*;
        use StopReason::*;
        let nodes: BTreeMap<NodeName, NodeState> = [
            (NodeName::from_static("n1"), NodeState::Ready),
            (NodeName::from_static("n2"), NodeState::Down),
            (NodeName::from_static("n3"), NodeState::Draining),
        ]
        .into();
        let a_up = ("a", 1, Running, true, "n1");
        let b_up = ("b", 1, Running, true, "n1");
        let c2_up = ("c", 2, Running, true, "n1");
        let cases =
            vec![
            case("first deploy places every replica").wants(Some(1), 3).starts(3),
            case("steady state does nothing").wants(Some(1), 2).rows(&[a_up, b_up]),
            case("a crashed instance in backoff is restarted by its agent, not replaced")
                .rows(&[("a", 1, Backoff, true, "n1")]),
            case("rollout starts the new release and keeps the old serving")
                .wants(Some(2), 2)
                .rows(&[a_up, b_up])
                .starts(2),
            case("rollout: new ones starting, old ones stay").wants(Some(2), 2).rows(&[
                a_up,
                b_up,
                ("c", 2, Starting, true, "n1"),
                ("d", 2, Pending, true, "n1"),
            ]),
            case("rollout: one new healthy stops one old")
                .wants(Some(2), 2)
                .rows(&[a_up, b_up, c2_up, ("d", 2, Starting, true, "n1")])
                .stops(&[("b", Superseded)]),
            case("rollout: unhealthy old ones go first")
                .wants(Some(2), 2)
                .rows(&[a_up, ("b", 1, Backoff, true, "n1"), c2_up, ("d", 2, Starting, true, "n1")])
                .stops(&[("b", Superseded)]),
            case("rollout done: all old stopped, stopped ones forgotten")
                .wants(Some(2), 2)
                .rows(&[a_up, ("b", 1, Stopped, false, "n1"), c2_up, ("d", 2, Running, true, "n1")])
                .stops(&[("a", Superseded)])
                .forgets(&["b"]),
            case("a stopping instance is not forgotten before it stopped")
                .wants(Some(1), 0)
                .rows(&[("a", 1, Stopping, false, "n1")]),
            case("crash-looping new release keeps the old one serving")
                .wants(Some(2), 1)
                .rows(&[a_up, ("b", 2, Backoff, true, "n1")]),
            case("scale up").wants(Some(1), 3).rows(&[a_up]).starts(2),
            case("scale down stops the not-serving and newest first")
                .rows(&[a_up, b_up, ("c", 1, Starting, true, "n1")])
                .stops(&[("c", ScaleDown), ("b", ScaleDown)]),
            case("scale to zero").wants(Some(1), 0).rows(&[a_up]).stops(&[("a", ScaleDown)]),
            case("deleted service stops everything")
                .wants(None, 2)
                .rows(&[a_up, ("b", 2, Starting, true, "n1")])
                .stops(&[("a", ServiceDeleted), ("b", ServiceDeleted)]),
            case("instance on a down node is replaced")
                .wants(Some(1), 2)
                .rows(&[a_up, ("b", 1, Running, true, "n2")])
                .starts(1)
                .stops(&[("b", NodeLost)]),
            case("instance on an unknown node is replaced, stopped ones there forgotten")
                .rows(&[("a", 1, Running, true, "gone"), ("b", 1, Stopping, false, "gone")])
                .starts(1)
                .stops(&[("a", NodeLost)])
                .forgets(&["b"]),
            case("drain: instances on a draining node are replaced first")
                .wants(Some(1), 2)
                .rows(&[a_up, ("b", 1, Running, true, "n3")])
                .starts(1),
            case("drain: the replacement is starting, the drained one keeps serving")
                .wants(Some(1), 2)
                .rows(&[a_up, ("b", 1, Running, true, "n3"), ("c", 1, Starting, true, "n1")]),
            case("drain: once the replacement serves, the drained one stops")
                .wants(Some(1), 2)
                .rows(&[a_up, ("b", 1, Running, true, "n3"), ("c", 1, Running, true, "n1")])
                .stops(&[("b", Superseded)]),
            case("a crash-looping old instance is stopped before the new one serves")
                .wants(Some(2), 1)
                .rows(&[("a", 1, Backoff, true, "n1"), ("b", 2, Pending, true, "n1")])
                .stops(&[("a", Superseded)]),
            case("an old instance serving nothing is stopped even before a replacement is placed")
                .wants(Some(2), 2)
                .rows(&[a_up, ("b", 1, Unhealthy, true, "n1")])
                .starts(2)
                .stops(&[("b", Superseded)]),
            case("failed instance is replaced")
                .rows(&[("a", 1, Failed, true, "n1")])
                .starts(1)
                .stops(&[("a", FailedToStart)]),
        ];
        for case in cases {
            let instances = views(&case.rows);
            let plan = plan_service(
                case.release,
                case.replicas,
                &borrowed(&instances),
                &nodes,
                LONG_READY,
            );
            assert_eq!(plan.start, case.start, "{}: start", case.name);
            let stop: Vec<(&str, StopReason)> = plan
                .stop
                .iter()
                .map(|(id, why)| (id.as_str(), *why))
                .collect();
            assert_eq!(stop, case.stop, "{}: stop", case.name);
            assert_eq!(plan.forget, case.forget, "{}: forget", case.name);
        }
    }

    #[test]
    fn old_instances_stop_only_once_new_ones_were_ready_for_min_ready() {
        let nodes: BTreeMap<NodeName, NodeState> =
            [(NodeName::from_static("n1"), NodeState::Ready)].into();
        let mut instances = views(&[
            ("old", 1, InstanceState::Running, true, "n1"),
            ("new", 2, InstanceState::Running, true, "n1"),
        ]);
        instances[1].status.as_mut().unwrap().ready_since = Some(10_000);
        // (now, min_ready, stops the old one?, recheck at)
        let table = [
            (10_000, 1_000, false, Some(11_000)),
            (10_999, 1_000, false, Some(11_000)),
            (11_000, 1_000, true, None),
            (10_000, 0, true, None),
            (20_000, 30_000, false, Some(40_000)),
        ];
        for (now, min_ready_ms, stops, recheck_at) in table {
            let readiness = Readiness {
                now,
                min_ready_ms,
                recreate: false,
            };
            let plan = plan_service(Some(2), 1, &borrowed(&instances), &nodes, readiness);
            assert_eq!(
                !plan.stop.is_empty(),
                stops,
                "now {now}, min_ready {min_ready_ms}"
            );
            assert_eq!(
                plan.recheck_at, recheck_at,
                "now {now}, min_ready {min_ready_ms}"
            );
        }
        // A new instance that stopped being healthy is not available, however long ago it was.
        instances[1].status.as_mut().unwrap().state = InstanceState::Unhealthy;
        let readiness = Readiness {
            now: 99_000,
            min_ready_ms: 1_000,
            recreate: false,
        };
        let plan = plan_service(Some(2), 1, &borrowed(&instances), &nodes, readiness);
        assert!(plan.stop.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_recreate_stops_every_old_instance_at_once() {
        let nodes: BTreeMap<NodeName, NodeState> =
            [(NodeName::from_static("n1"), NodeState::Ready)].into();
        let rows = vec![
            ("a", 1, InstanceState::Running, true, "n1"),
            ("b", 1, InstanceState::Running, true, "n1"),
        ];
        let instances = views(&rows);
        let recreate = Readiness {
            recreate: true,
            ..LONG_READY
        };
        let plan = plan_service(Some(2), 2, &borrowed(&instances), &nodes, recreate);
        assert_eq!(plan.start, 2);
        let mut stopped: Vec<(&str, StopReason)> = plan
            .stop
            .iter()
            .map(|(id, why)| (id.as_str(), *why))
            .collect();
        stopped.sort_by_key(|(id, _)| *id);
        assert_eq!(
            stopped,
            [("a", StopReason::Superseded), ("b", StopReason::Superseded)]
        );
        // Rolling, the same state keeps both until their replacements serve.
        let rolling = plan_service(Some(2), 2, &borrowed(&instances), &nodes, LONG_READY);
        assert!(rolling.stop.is_empty(), "{rolling:?}");
    }

    #[test]
    fn a_progressive_rollout_keeps_its_new_release_at_the_steps_count_beside_the_stable() {
        use InstanceState::*;
        let nodes: BTreeMap<NodeName, NodeState> =
            [(NodeName::from_static("n1"), NodeState::Ready)].into();
        let stable = |id| (id, 1, Running, true, "n1");
        let canary = |id| (id, 2, Running, true, "n1");
        let beside = |instances| {
            Some(Beside {
                release: 2,
                instances,
            })
        };
        // (name, beside, rows, start, start_beside, stops)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            Option<Beside>,
            Vec<Row>,
            u32,
            u32,
            Vec<(&str, StopReason)>,
        )> = vec![
            (
                "the step's instance starts, the stable ones stay",
                beside(1),
                vec![stable("a"), stable("b")],
                0,
                1,
                vec![],
            ),
            (
                "at the step's count nothing moves",
                beside(1),
                vec![stable("a"), stable("b"), canary("c")],
                0,
                0,
                vec![],
            ),
            (
                "a bigger step starts more",
                beside(2),
                vec![stable("a"), stable("b"), canary("c")],
                0,
                1,
                vec![],
            ),
            (
                "a stable instance lost is replaced by the stable release",
                beside(1),
                vec![stable("a"), canary("c")],
                1,
                0,
                vec![],
            ),
            (
                "more than the step wants: the extra stop",
                beside(1),
                vec![
                    stable("a"),
                    stable("b"),
                    canary("c"),
                    ("d", 2, Starting, true, "n1"),
                ],
                0,
                0,
                vec![("d", StopReason::ScaleDown)],
            ),
            (
                "rolled back: the new release's instances are old ones",
                None,
                vec![stable("a"), stable("b"), canary("c")],
                0,
                0,
                vec![("c", StopReason::Superseded)],
            ),
        ];
        for (name, beside, rows, start, start_beside, stops) in cases {
            let instances = views(&rows);
            let plan = plan_service_beside(
                Some(1),
                2,
                beside,
                &borrowed(&instances),
                &nodes,
                LONG_READY,
            );
            let stopped: Vec<(&str, StopReason)> = plan
                .stop
                .iter()
                .map(|(id, why)| (id.as_str(), *why))
                .collect();
            assert_eq!(
                (plan.start, plan.start_beside, stopped),
                (start, start_beside, stops),
                "{name}"
            );
        }
        // Succeeded: the new release is the desired one and the old stable ones stop once
        // it is available in full.
        let instances = views(&[stable("a"), stable("b"), canary("c"), canary("d")]);
        let plan = plan_service(Some(2), 2, &borrowed(&instances), &nodes, LONG_READY);
        assert_eq!(plan.stop.len(), 2, "{plan:?}");
    }

    #[test]
    fn planning_is_idempotent_once_applied() {
        // Applying a plan and planning again over the result asks for nothing more.
        let nodes: BTreeMap<NodeName, NodeState> =
            [(NodeName::from_static("n1"), NodeState::Ready)].into();
        let rows = vec![
            ("a", 1, InstanceState::Running, true, "n1"),
            ("c", 2, InstanceState::Running, true, "n1"),
        ];
        let mut instances = views(&rows);
        let plan = plan_service(Some(2), 1, &borrowed(&instances), &nodes, LONG_READY);
        assert_eq!(plan.stop.len(), 1);
        for view in &mut instances {
            if plan.stop.iter().any(|(id, _)| *id == view.instance.id) {
                view.instance.desired = DesiredState::Stopped;
            }
        }
        let again = plan_service(Some(2), 1, &borrowed(&instances), &nodes, LONG_READY);
        assert_eq!(again, ServicePlan::default());
    }
}
