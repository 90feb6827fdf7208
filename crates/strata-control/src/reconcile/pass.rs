//! One reconcile pass's decisions, made over the reflector's [`ClusterState`] with no IO: for
//! each service to plan, the pure planners of strata-sched say what to stop, forget and start,
//! and the starts are placed on nodes (what earlier services of the same pass placed counts).
//! The caller applies the result to the store.

use std::collections::{BTreeSet, HashMap, HashSet};

use strata_core::spec::PortSpec;
use strata_core::{
    DesiredState, InstanceId, InstanceRef, NodeName, NodeState, Release, Resources, Service,
};
use strata_sched::placement::fits_once_freed;
use strata_sched::{
    plan_by_tally, plan_service_beside, Beside, Demand, NodeView, Placer, Readiness, ServiceTally,
    StopReason,
};

use crate::reflector::{ClusterState, NodeSlot, ServiceKey};

/// An instance to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub service: Service,
    pub release: u64,
    pub node: NodeName,
    pub node_epoch: u64,
}

/// How placing a service's wanted instances went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementOutcome {
    pub service: ServiceKey,
    pub release: u64,
    /// Why some could not be placed (`None`: all were).
    pub error: Option<String>,
}

/// What one pass decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassPlan {
    /// Instances to stop on nodes that take work, with why (each once).
    pub stops: Vec<(InstanceId, &'static str)>,
    /// The nodes those instances are on: a placement there waits for the stops (what they
    /// free, a fixed port, is its to take); one elsewhere need not.
    pub stopped_on: BTreeSet<NodeName>,
    /// Instances lost with their node, to mark stopped (each once, with why): nothing waits
    /// for these (their node takes no work and serves no traffic), so they are written
    /// after the placements that replace them.
    pub lost: Vec<(InstanceId, &'static str)>,
    /// Stopped-and-done instances whose records go.
    pub forgets: Vec<InstanceId>,
    pub placements: Vec<Placement>,
    /// For each service that wanted instances placed.
    pub outcomes: Vec<PlacementOutcome>,
    /// Services that wanted nothing placed (their earlier placement errors are over).
    pub settled: Vec<ServiceKey>,
    /// When a service asked to be planned again (an instance's `min_ready` passes).
    pub rechecks: Vec<(ServiceKey, u64)>,
}

/// The services every pass of `state` would plan: those with a record and those with
/// instances (a deleted service's may still be stopping).
pub fn every_service(state: &ClusterState) -> Vec<ServiceKey> {
    let mut all: Vec<ServiceKey> = state
        .services()
        .map(|s| (s.value.env.clone(), s.value.name.clone()))
        .chain(state.services_with_instances().cloned())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Plans `services` over `state` at `now` (the plane's wall clock, ms).
pub fn plan_pass(
    state: &ClusterState,
    services: impl IntoIterator<Item = ServiceKey>,
    now: u64,
) -> PassPlan {
    let mut planner = PassPlanner::default();
    planner.plan(state, services, now);
    planner.finish()
}

/// A pass planned a part at a time: the nodes are read once (when a service first needs
/// them), and what earlier parts placed or stopped counts for later ones, so a pass over many services can let go of the state
/// between parts (a million instances take about a second to plan) and plan each service
/// over the state as it is then.
#[derive(Default)]
pub struct PassPlanner {
    /// Each node's state, for the services planned in full (read when the first is).
    node_states: Option<HashMap<NodeName, NodeState, foldhash::fast::RandomState>>,
    /// The nodes ranked for placement, kept across the pass's services: built when a
    /// service first needs a node (ranking 10,000 nodes costs 12 ms, and most passes place
    /// nothing).
    ranked: Option<Ranked>,
    /// What the pass's stops freed before the placer was built, given back when it is.
    freed: Vec<(NodeName, Resources, Option<u16>)>,
    /// The instances this pass stops: each once, whatever the reasons (a transaction writes
    /// a key once, and what one held is freed once).
    stopping: HashSet<InstanceId>,
    pass: PassPlan,
    /// Instances looked at so far (for a service planned by its counts: the ones it stops
    /// and the nodes it is on).
    pub planned_instances: usize,
}

impl PassPlanner {
    /// What the parts planned so far decided.
    pub fn finish(self) -> PassPlan {
        self.pass
    }

    /// Plans `services` over `state` at `now` (the plane's wall clock, ms).
    pub fn plan(
        &mut self,
        state: &ClusterState,
        services: impl IntoIterator<Item = ServiceKey>,
        now: u64,
    ) {
        for id in services {
            self.plan_service(state, id, now);
        }
    }

    fn plan_service(&mut self, state: &ClusterState, id: ServiceKey, now: u64) {
        let service = state.service(&id).map(|s| &s.value);
        let desired_release = service.map(|s| s.desired_release);
        let replicas = service.map_or(0, |s| s.replicas);
        let release =
            desired_release.and_then(|number| state.release(&id.0, &id.1, number).cloned());
        let no_instances = ServiceTally::default();
        let tally = state.tally(&id).unwrap_or(&no_instances);
        // A progressive rollout's new release, at its step's count beside the desired one.
        let beside = service
            .and_then(|s| s.rollout.as_ref())
            .filter(|rollout| rollout.is_active())
            .map(|rollout| Beside {
                release: rollout.release,
                instances: rollout.wanted_instances(replicas),
            });
        // A settled service's plan is decided by its counts, without a look at each of its
        // instances (a node's death among a thousand services of a thousand instances is then
        // a thousand small plans, not a million instance views).
        let mut instances = None;
        let by_tally = match beside {
            Some(_) => None,
            None => plan_by_tally(tally, desired_release, replicas),
        };
        let plan = match by_tally {
            Some(plan) => {
                self.planned_instances += plan.stop.len();
                plan
            }
            None => {
                let all = state.instances_of(&id);
                self.planned_instances += all.len();
                let min_ready_ms = release
                    .as_ref()
                    .map_or(strata_core::spec::DEFAULT_MIN_READY_MS, |r| {
                        r.spec.min_ready_ms
                    });
                let recreate = release.as_ref().is_some_and(|r| {
                    r.spec.rollout.as_ref().is_some_and(|rollout| {
                        rollout.strategy == strata_core::spec::RolloutStrategy::Recreate
                    })
                });
                let readiness = Readiness {
                    now,
                    min_ready_ms,
                    recreate,
                };
                let node_states = self.node_states.get_or_insert_with(|| {
                    state
                        .nodes()
                        .map(|n| (n.value.name.clone(), n.value.effective_state()))
                        .collect()
                });
                let plan = plan_service_beside(
                    desired_release,
                    replicas,
                    beside,
                    &all,
                    node_states,
                    readiness,
                );
                instances = Some(all);
                plan
            }
        };
        let Self {
            ranked,
            freed,
            stopping,
            pass,
            ..
        } = self;
        if let Some(at) = plan.recheck_at {
            pass.rechecks.push((id.clone(), at));
        }
        for (stopped, why) in &plan.stop {
            if !stopping.insert(stopped.clone()) {
                continue;
            }
            if *why == StopReason::NodeLost {
                pass.lost.push((stopped.clone(), why.describe()));
                continue;
            }
            pass.stops.push((stopped.clone(), why.describe()));
            // What it held is free for this pass's placements: a crash-looping instance of a
            // superseded release must not keep its replacement's fixed port.
            let Some(i) = state.instance(stopped).map(|i| &i.value) else {
                continue;
            };
            if !pass.stopped_on.contains(&i.node) {
                pass.stopped_on.insert(i.node.clone());
            }
            let held = state.release(&i.env, &i.service, i.release);
            if let (Some(release), DesiredState::Running) = (held, i.desired) {
                let port = match release.spec.port {
                    PortSpec::Fixed(port) => Some(port),
                    PortSpec::Auto => None,
                };
                let resources = release.spec.resources;
                match ranked {
                    Some(ranked) => {
                        if let Some(node) = ranked.placer.position(&i.node) {
                            ranked.placer.release(node, resources, port);
                        }
                    }
                    None => freed.push((i.node.clone(), resources, port)),
                }
            }
        }
        pass.forgets.extend(plan.forget);
        if plan.start == 0 && plan.start_beside == 0 {
            pass.settled.push(id);
            return;
        }
        let Some(service) = service else {
            return;
        };
        if let Some(release) = release.filter(|_| plan.start > 0) {
            self.place(
                state, &id, service, &release, plan.start, &instances, tally, now,
            );
        }
        let rollout_release = beside
            .filter(|_| plan.start_beside > 0)
            .and_then(|beside| state.release(&id.0, &id.1, beside.release).cloned());
        if let Some(release) = rollout_release {
            self.place(
                state,
                &id,
                service,
                &release,
                plan.start_beside,
                &None,
                tally,
                now,
            );
        }
    }

    /// Places `count` instances of `release` of `service`. `instances`: the service's, when
    /// its plan looked at each (then, if no node takes the release beside an old instance,
    /// that one may stop first); else where it runs comes from its `tally`.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        state: &ClusterState,
        id: &ServiceKey,
        service: &Service,
        release: &Release,
        count: u32,
        instances: &Option<Vec<InstanceRef<'_>>>,
        tally: &ServiceTally<NodeSlot>,
        now: u64,
    ) {
        let Self {
            ranked,
            freed,
            stopping,
            pass,
            planned_instances,
            ..
        } = self;
        let ranked = ranked.get_or_insert_with(|| Ranked::new(state, freed));
        // Where the service runs already (spread).
        let holding: Vec<(usize, u32)> = match instances {
            Some(instances) => {
                let mut holding: HashMap<usize, u32> = HashMap::new();
                for view in instances {
                    if view.instance.desired == DesiredState::Running {
                        if let Some(node) = ranked.placer.position(&view.instance.node) {
                            *holding.entry(node).or_default() += 1;
                        }
                    }
                }
                holding.into_iter().collect()
            }
            None => {
                let holding: Vec<(usize, u32)> = tally
                    .holding()
                    .filter_map(|(slot, count)| Some((ranked.position(state, *slot)?, count)))
                    .collect();
                *planned_instances += holding.len();
                holding
            }
        };
        let demand = Demand::of(&release.spec);
        let placer = &mut ranked.placer;
        let (placed, mut error) = match placer.place(&demand, count as usize, &holding) {
            Ok(placed) => (placed, None),
            Err((placed, error)) => (placed, Some(error.to_string())),
        };
        // No node takes the new release beside the old one (a fixed port, or capacity, only
        // the old instances hold): an old instance stops first, as a recreate does, one at a
        // time (the next once the last replacement is available). Not a placement failure.
        if let (Some(_), Some(all)) = (&error, instances) {
            let made_room = room_to_make(all, release.number, release.spec.min_ready_ms, now)
                .filter(|old| !stopping.contains(&old.instance.id))
                .find(|old| {
                    // Only where its leaving lets the replacement in (not for a constraint
                    // no node meets, where stopping it would only take it away).
                    let Some(held) = state.release(
                        &old.instance.env,
                        &old.instance.service,
                        old.instance.release,
                    ) else {
                        return false;
                    };
                    let port = match held.spec.port {
                        PortSpec::Fixed(port) => Some(port),
                        PortSpec::Auto => None,
                    };
                    placer.position(&old.instance.node).is_some_and(|at| {
                        fits_once_freed(&placer.nodes()[at], &demand, held.spec.resources, port)
                    })
                });
            if let Some(old) = made_room {
                stopping.insert(old.instance.id.clone());
                pass.stops.push((old.instance.id.clone(), RECREATE));
                pass.stopped_on.insert(old.instance.node.clone());
                error = None;
            }
        }
        for index in placed {
            let node = placer.nodes()[index].name.clone();
            let Some(record) = state.node(&node) else {
                continue;
            };
            pass.placements.push(Placement {
                service: service.clone(),
                release: release.number,
                node_epoch: record.value.epoch,
                node,
            });
        }
        pass.outcomes.push(PlacementOutcome {
            service: id.clone(),
            release: release.number,
            error,
        });
    }
}

/// Why an old instance stops before its replacement is placed.
const RECREATE: &str =
    "recreate: no node can take its replacement beside it (a fixed port, or capacity, it holds); stopped first";

/// The old instances that may stop so that release `release`'s replacement can be placed,
/// best first (not serving, then oldest): none while a replacement is not yet available (one
/// at a time, as a rolling recreate).
pub(crate) fn room_to_make<'a, 'b>(
    instances: &'a [InstanceRef<'b>],
    release: u64,
    min_ready_ms: u64,
    now: u64,
) -> impl Iterator<Item = &'a InstanceRef<'b>> {
    let running = |v: &&InstanceRef<'_>| v.instance.desired == DesiredState::Running;
    let waiting = instances
        .iter()
        .filter(running)
        .filter(|v| v.instance.release == release)
        .any(|v| !v.is_available(now, min_ready_ms));
    let mut old: Vec<&InstanceRef<'b>> = instances
        .iter()
        .filter(running)
        .filter(|v| v.instance.release != release)
        .filter(|_| !waiting)
        .collect();
    old.sort_by_key(|v| (v.is_routable(), v.instance.created_at));
    old.into_iter()
}

/// The nodes ranked for placement, and where each numbered node is among them.
struct Ranked {
    placer: Placer,
    /// Each node number's place in `placer` (a thousand services of a thousand instances
    /// name a million nodes by number on a node's death: looked up, not hashed).
    by_slot: Vec<Option<usize>>,
}

impl Ranked {
    /// The nodes of `state` ranked for placement, with what this pass's stops so far `freed`
    /// given back.
    fn new(state: &ClusterState, freed: &mut Vec<(NodeName, Resources, Option<u16>)>) -> Ranked {
        let mut placer = Placer::new(node_views(state));
        for (node, resources, port) in freed.drain(..) {
            if let Some(index) = placer.position(&node) {
                placer.release(index, resources, port);
            }
        }
        let mut by_slot = vec![None; state.slot_count()];
        for (index, node) in placer.nodes().iter().enumerate() {
            if let Some(slot) = state.node_slot(&node.name) {
                by_slot[slot.index()] = Some(index);
            }
        }
        Ranked { placer, by_slot }
    }

    /// Where node number `slot` is in the placer (`None`: not a node it places on).
    fn position(&self, state: &ClusterState, slot: NodeSlot) -> Option<usize> {
        match self.by_slot.get(slot.index()) {
            Some(index) => *index,
            // Numbered after the placer was built (the state is let go between a pass's
            // parts): by name.
            None => self.placer.position(state.slot_name(slot)),
        }
    }
}

/// Every node with what it has given to wanted instances.
pub(crate) fn node_views(state: &ClusterState) -> Vec<NodeView> {
    state
        .nodes()
        .map(|versioned| {
            let node = &versioned.value;
            let load = state.node_load(&node.name);
            let static_ports = load
                .static_ports
                .iter()
                .map(|(port, id)| (*port, holder(state, id)))
                .collect();
            NodeView {
                name: node.name.clone(),
                state: node.effective_state(),
                labels: node.labels.clone(),
                capacity: node.capacity,
                allocated: load.allocated,
                drivers: node.drivers.clone(),
                static_ports,
                instances_of_service: 0,
            }
        })
        .collect()
}

/// "instance web-1-ab12 (dev/web release 1)", for a refusal that names who holds a port.
fn holder(state: &ClusterState, id: &InstanceId) -> String {
    match state.instance(id) {
        Some(i) => {
            let i = &i.value;
            format!(
                "instance {} ({}/{} release {})",
                i.id, i.env, i.service, i.release
            )
        }
        None => format!("instance {id}"),
    }
}

#[cfg(test)]
mod tests;
