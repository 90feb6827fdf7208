//! Each service's [`ServiceTally`] kept current as its instances, their reports and their
//! nodes change, so the reconciler can plan a settled service from the counts (see
//! `strata_sched::tally`). The rule that keeps it right: an instance's standing is taken out
//! of its tally before anything it depends on changes (the instance, its report, its node's
//! state) and counted again after.

use strata_core::{InstanceId, InstanceRef, NodeName, NodeState};
use strata_sched::{ServiceTally, Standing};

use super::{as_instances_see_it, ClusterState, NodeSlot, ServiceKey};

/// Whether instance standings change when a node goes from `before` to `after` (`None`: no
/// such node).
pub(super) fn node_change_moves_standings(
    before: Option<NodeState>,
    after: Option<NodeState>,
) -> bool {
    before.map(as_instances_see_it) != after.map(as_instances_see_it)
}

impl ClusterState {
    /// Service `id`'s tally (`None`: it has no instances), nodes by number
    /// ([`ClusterState::node_slot`]).
    pub fn tally(&self, id: &ServiceKey) -> Option<&ServiceTally<NodeSlot>> {
        self.tallies.get(id)
    }

    /// Node `name`'s number in the tallies (`None`: no instance was ever on it).
    pub fn node_slot(&self, name: &NodeName) -> Option<NodeSlot> {
        self.slots.get(name)
    }

    /// The node numbered `slot`.
    pub fn slot_name(&self, slot: NodeSlot) -> &NodeName {
        self.slots.name(slot)
    }

    /// How many node numbers were given: a vector this long holds one entry per slot.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Counts instance `id`'s standing in its service's tally as the state is now.
    pub(super) fn count_standing(&mut self, id: &str) {
        self.tally_standing(id, true);
    }

    /// Takes back what [`ClusterState::count_standing`] counted, before what it depends on
    /// changes.
    pub(super) fn uncount_standing(&mut self, id: &str) {
        self.tally_standing(id, false);
    }

    /// Whether node `name` is down or gone: what was placed there is lost (serves no one,
    /// to be replaced), whatever it last reported.
    pub fn node_lost(&self, name: &NodeName) -> bool {
        self.nodes
            .get(name)
            .is_none_or(|n| n.value.effective_state() == NodeState::Down)
    }

    /// Instance `id`'s standing as the state is now (`None`: no such instance).
    pub(super) fn standing_of(&self, id: &str) -> Option<Standing> {
        let instance = &self.instances.get(id)?.instance.value;
        let status = self.statuses.get(id).map(|s| &s.value);
        let node = self
            .nodes
            .get(&instance.node)
            .map(|n| n.value.effective_state());
        Some(Standing::of(&InstanceRef { instance, status }, node))
    }

    /// After a change to instance `id`'s report or node, which stood `before` it: counts it
    /// again if its standing moved (most reports change none: starting, then running).
    pub(super) fn restand(&mut self, id: &str, before: Option<Standing>) {
        let (Some(before), Some(now)) = (before, self.standing_of(id)) else {
            return;
        };
        if before != now {
            self.tally_as(id, before, false);
            self.tally_as(id, now, true);
        }
    }

    fn tally_standing(&mut self, id: &str, add: bool) {
        if let Some(standing) = self.standing_of(id) {
            self.tally_as(id, standing, add);
        }
    }

    fn tally_as(&mut self, id: &str, standing: Standing, add: bool) {
        let Some(held) = self.instances.get(id) else {
            return;
        };
        let instance = &held.instance.value;
        let key = (instance.env.clone(), instance.service.clone());
        let slot = self.slots.intern(&instance.node);
        if add {
            self.tallies
                .entry(key)
                .or_default()
                .add(&instance.id, &slot, standing);
        } else if let Some(tally) = self.tallies.get_mut(&key) {
            tally.remove(&instance.id, &slot, standing);
            if tally.is_empty() {
                self.tallies.remove(&key);
            }
        }
    }

    /// The instances on `node` with their standings, to count again after a change of its
    /// state (see [`ClusterState::restand`]).
    pub(super) fn standings_on(&self, node: &str) -> Vec<(InstanceId, Option<Standing>)> {
        self.by_node
            .get(node)
            .map(|ids| {
                ids.keys()
                    .map(|id| (id.clone(), self.standing_of(id)))
                    .collect()
            })
            .unwrap_or_default()
    }
}
