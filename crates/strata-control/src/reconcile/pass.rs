//! One reconcile pass's decisions, made over the reflector's [`ClusterState`] with no IO: for
//! each service to plan, the pure planners of strata-sched say what to stop, forget and start,
//! and the starts are placed on nodes (what earlier services of the same pass placed counts).
//! The caller applies the result to the store.

use std::collections::{BTreeSet, HashMap, HashSet};

use strata_core::spec::PortSpec;
use strata_core::{DesiredState, InstanceId, NodeName, NodeState, Service};
use strata_sched::{
    plan_by_tally, plan_service, Demand, NodeView, Placer, Readiness, ServiceTally,
};

use crate::reflector::{ClusterState, ServiceKey};

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
    /// Instances to stop, with why (each once).
    pub stops: Vec<(InstanceId, &'static str)>,
    /// The nodes those instances are on: a placement there waits for the stops (what they
    /// free, a fixed port, is its to take); one elsewhere need not.
    pub stopped_on: BTreeSet<NodeName>,
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
    let mut planner = PassPlanner::new(state);
    planner.plan(state, services, now);
    planner.finish()
}

/// A pass planned a part at a time: the nodes are read once, and what earlier parts placed
/// or stopped counts for later ones, so a pass over many services can let go of the state
/// between parts (a million instances take about a second to plan) and plan each service
/// over the state as it is then.
pub struct PassPlanner {
    node_states: HashMap<NodeName, NodeState, foldhash::fast::RandomState>,
    /// The nodes ranked for placement, kept across the pass's services.
    placer: Placer,
    /// The instances this pass stops: each once, whatever the reasons (a transaction writes
    /// a key once, and what one held is freed once).
    stopping: HashSet<InstanceId>,
    pass: PassPlan,
    /// Instances looked at so far (for a service planned by its counts: the ones it stops
    /// and the nodes it is on).
    pub planned_instances: usize,
}

impl PassPlanner {
    /// A planner over the nodes of `state`.
    pub fn new(state: &ClusterState) -> Self {
        Self {
            node_states: state
                .nodes()
                .map(|n| (n.value.name.clone(), n.value.effective_state()))
                .collect(),
            placer: Placer::new(node_views(state)),
            stopping: HashSet::new(),
            pass: PassPlan::default(),
            planned_instances: 0,
        }
    }

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
        // A settled service's plan is decided by its counts, without a look at each of its
        // instances (a node's death among a thousand services of a thousand instances is then
        // a thousand small plans, not a million instance views).
        let (plan, holding) = match plan_by_tally(tally, desired_release, replicas) {
            Some(plan) => {
                // Where it runs matters only to place more (spread).
                let holding: Vec<(usize, u32)> = match plan.start {
                    0 => Vec::new(),
                    _ => tally
                        .holding()
                        .filter_map(|(node, count)| Some((self.placer.position(node)?, count)))
                        .collect(),
                };
                self.planned_instances += plan.stop.len() + holding.len();
                (plan, holding)
            }
            None => {
                let instances = state.instances_of(&id);
                self.planned_instances += instances.len();
                let min_ready_ms = release
                    .as_ref()
                    .map_or(strata_core::spec::DEFAULT_MIN_READY_MS, |r| {
                        r.spec.min_ready_ms
                    });
                let readiness = Readiness { now, min_ready_ms };
                let plan = plan_service(
                    desired_release,
                    replicas,
                    &instances,
                    &self.node_states,
                    readiness,
                );
                let mut holding: HashMap<usize, u32> = HashMap::new();
                for view in &instances {
                    if view.instance.desired == DesiredState::Running {
                        if let Some(node) = self.placer.position(&view.instance.node) {
                            *holding.entry(node).or_default() += 1;
                        }
                    }
                }
                (plan, holding.into_iter().collect())
            }
        };
        let Self {
            placer,
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
            let node = placer.position(&i.node);
            if let (Some(release), Some(node), DesiredState::Running) = (held, node, i.desired) {
                let port = match release.spec.port {
                    PortSpec::Fixed(port) => Some(port),
                    PortSpec::Auto => None,
                };
                placer.release(node, release.spec.resources, port);
            }
        }
        pass.forgets.extend(plan.forget);
        if plan.start == 0 {
            pass.settled.push(id);
            return;
        }
        let (Some(service), Some(release)) = (service, release) else {
            return;
        };
        let demand = Demand {
            resources: release.spec.resources,
            driver: release.spec.driver,
            static_port: match release.spec.port {
                PortSpec::Fixed(port) => Some(port),
                PortSpec::Auto => None,
            },
            constraints: release.spec.constraints.clone(),
        };
        let (placed, error) = match placer.place(&demand, plan.start as usize, &holding) {
            Ok(placed) => (placed, None),
            Err((placed, error)) => (placed, Some(error.to_string())),
        };
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
            service: id,
            release: release.number,
            error,
        });
    }
}

/// Every node with what it has given to wanted instances.
fn node_views(state: &ClusterState) -> Vec<NodeView> {
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
