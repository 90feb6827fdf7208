//! A service's instances counted by what its plan looks at, so that a service whose plan
//! the counts decide is planned without looking at each instance.
//!
//! [`plan_service`](crate::plan_service) sorts every instance into a [`Standing`] (stopping,
//! on a lost node, failed, on a draining node, or placed with its release) and decides from
//! them. A [`ServiceTally`] keeps those standings counted, change by change (the control
//! plane's reflector adds and removes an instance's standing whenever its record, its report
//! or its node's state changes), and [`plan_by_tally`] decides from the counts alone what
//! the full plan would decide in the cases that matter at fleet size: a settled service
//! (every wanted instance placed, of the desired release, no more than its replicas, none
//! failed or draining) plans nothing, or only the replacement of instances lost with a node
//! or failed, and the forgetting of stopped ones. A thousand services of a thousand
//! instances each, all with one instance on a node that died, are then a thousand small
//! plans, not a million instance views. Anything else (a rollout, a drain, a scale-down, a
//! deleted service) is left to the full plan. A randomized test holds the two to the same
//! answers.
//!
//! A tally counts instances by node under whatever key its keeper names nodes by: the
//! control plane gives each node name a small number once (hashing a million names on a
//! node's death cost its failover pass more than its plan), tests use the names.

use std::collections::{BTreeMap, BTreeSet};

use strata_core::{DesiredState, InstanceId, InstanceRef, InstanceState, NodeName, NodeState};

use crate::plan::{NodeStates, ServicePlan, StopReason};

/// Where an instance stands for its service's plan, given its node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Asked to stop; `done` once its agent says it ended or its node is lost (its record
    /// can then be forgotten).
    Stopping { done: bool },
    /// Wanted, on a node that is down or gone: to be stopped and replaced.
    Lost,
    /// Wanted, and failed for good: to be stopped and replaced.
    Failed,
    /// Wanted, on a draining node: to be moved like an instance of an old release.
    Draining,
    /// Wanted, on a node that takes work (ready or suspect), of `release`.
    Placed { release: u64 },
}

impl Standing {
    /// The standing of `instance` on a node in `node` state (`None`: no such node).
    pub fn of(instance: &InstanceRef<'_>, node: Option<NodeState>) -> Standing {
        let lost = matches!(node, None | Some(NodeState::Down));
        if instance.instance.desired == DesiredState::Stopped {
            return Standing::Stopping {
                done: lost || instance.state().is_terminal(),
            };
        }
        if lost {
            Standing::Lost
        } else if instance.state() == InstanceState::Failed {
            Standing::Failed
        } else if node == Some(NodeState::Draining) {
            Standing::Draining
        } else {
            Standing::Placed {
                release: instance.instance.release,
            }
        }
    }
}

/// One service's instances counted by standing, and by node, each node named by an `N` (see
/// the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTally<N = NodeName> {
    /// Instances asked to stop and not yet forgotten.
    stopping: u32,
    /// Of those, the ones that can be forgotten, by id.
    done: BTreeSet<InstanceId>,
    /// Wanted instances on lost nodes, by id.
    lost: BTreeSet<InstanceId>,
    /// Wanted instances that failed, by id.
    failed: BTreeSet<InstanceId>,
    /// Wanted instances on draining nodes.
    draining: u32,
    /// Wanted instances on nodes that take work, by release.
    placed: BTreeMap<u64, u32>,
    /// Wanted instances (whatever their standing) by node: what spread counts.
    nodes: BTreeMap<N, u32>,
}

impl<N> Default for ServiceTally<N> {
    fn default() -> Self {
        ServiceTally {
            stopping: 0,
            done: BTreeSet::new(),
            lost: BTreeSet::new(),
            failed: BTreeSet::new(),
            draining: 0,
            placed: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }
}

impl ServiceTally<NodeName> {
    /// The tally of `instances`, their nodes' states read from `node_states`.
    pub fn of(instances: &[InstanceRef<'_>], node_states: &impl NodeStates) -> ServiceTally {
        let mut tally = ServiceTally::default();
        for view in instances {
            let standing = Standing::of(view, node_states.state_of(&view.instance.node));
            tally.add(&view.instance.id, &view.instance.node, standing);
        }
        tally
    }
}

impl<N: Ord + Clone> ServiceTally<N> {
    /// Counts instance `id` on `node` as standing so.
    pub fn add(&mut self, id: &InstanceId, node: &N, standing: Standing) {
        match standing {
            Standing::Stopping { done } => {
                self.stopping += 1;
                if done {
                    self.done.insert(id.clone());
                }
                return;
            }
            Standing::Lost => {
                self.lost.insert(id.clone());
            }
            Standing::Failed => {
                self.failed.insert(id.clone());
            }
            Standing::Draining => self.draining += 1,
            Standing::Placed { release } => *self.placed.entry(release).or_default() += 1,
        }
        match self.nodes.get_mut(node) {
            Some(count) => *count += 1,
            None => {
                self.nodes.insert(node.clone(), 1);
            }
        }
    }

    /// Takes back what [`ServiceTally::add`] counted for the same arguments.
    pub fn remove(&mut self, id: &InstanceId, node: &N, standing: Standing) {
        match standing {
            Standing::Stopping { done } => {
                self.stopping = self.stopping.saturating_sub(1);
                if done {
                    self.done.remove(id);
                }
                return;
            }
            Standing::Lost => {
                self.lost.remove(id);
            }
            Standing::Failed => {
                self.failed.remove(id);
            }
            Standing::Draining => self.draining = self.draining.saturating_sub(1),
            Standing::Placed { release } => {
                if let Some(count) = self.placed.get_mut(&release) {
                    *count -= 1;
                    if *count == 0 {
                        self.placed.remove(&release);
                    }
                }
            }
        }
        if let Some(count) = self.nodes.get_mut(node) {
            *count -= 1;
            if *count == 0 {
                self.nodes.remove(node);
            }
        }
    }

    /// Whether nothing is counted (no instance at all).
    pub fn is_empty(&self) -> bool {
        self.stopping == 0 && self.nodes.is_empty()
    }

    /// The nodes holding wanted instances, with how many each holds, in key order.
    pub fn holding(&self) -> impl Iterator<Item = (&N, u32)> + '_ {
        self.nodes.iter().map(|(node, count)| (node, *count))
    }

    /// The same counts with each node named by `rename` (two nodes must not get one name).
    pub fn map_nodes<M: Ord>(&self, mut rename: impl FnMut(&N) -> M) -> ServiceTally<M> {
        ServiceTally {
            stopping: self.stopping,
            done: self.done.clone(),
            lost: self.lost.clone(),
            failed: self.failed.clone(),
            draining: self.draining,
            placed: self.placed.clone(),
            nodes: self.nodes.iter().map(|(n, c)| (rename(n), *c)).collect(),
        }
    }

    /// How many instances are counted (wanted or stopping).
    pub fn instances(&self) -> usize {
        self.stopping as usize + self.nodes.values().map(|n| *n as usize).sum::<usize>()
    }
}

/// What [`plan_service`](crate::plan_service) would decide for a service with `tally`, when
/// the tally decides it: the service wants `replicas` of `desired_release` and every wanted
/// instance not lost or failed is placed, of that release, on a node that takes work, no
/// more of them than `replicas`. Then the plan forgets the stopped instances that are done,
/// stops the lost and failed ones, and starts what is missing; nothing waits on a rollout.
/// `None`: plan the service in full.
pub fn plan_by_tally<N>(
    tally: &ServiceTally<N>,
    desired_release: Option<u64>,
    replicas: u32,
) -> Option<ServicePlan> {
    let release = desired_release?;
    if tally.draining > 0 || tally.placed.keys().any(|r| *r != release) {
        return None;
    }
    let placed = tally.placed.get(&release).copied().unwrap_or(0);
    if placed > replicas {
        return None;
    }
    // In id order, as the full plan stops them.
    let mut stop = Vec::with_capacity(tally.lost.len() + tally.failed.len());
    let mut lost = tally.lost.iter().peekable();
    let mut failed = tally.failed.iter().peekable();
    loop {
        let next = match (lost.peek(), failed.peek()) {
            (Some(l), Some(f)) if l <= f => lost.next().map(|id| (id, StopReason::NodeLost)),
            (Some(_), Some(_)) | (None, Some(_)) => {
                failed.next().map(|id| (id, StopReason::FailedToStart))
            }
            (Some(_), None) => lost.next().map(|id| (id, StopReason::NodeLost)),
            (None, None) => break,
        };
        if let Some((id, why)) = next {
            stop.push((id.clone(), why));
        }
    }
    Some(ServicePlan {
        start: replicas - placed,
        start_beside: 0,
        stop,
        forget: tally.done.iter().cloned().collect(),
        recheck_at: None,
    })
}

#[cfg(test)]
mod tests;
