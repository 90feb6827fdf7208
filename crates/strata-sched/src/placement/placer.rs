//! The fleet ranked for placement once, kept across the services of a pass.
//!
//! Every ready node that holds no instance of the service being placed ranks by its free
//! memory alone (then name): that order does not depend on the service, so it is kept in one
//! index per zone for the whole pass and only re-ranked where an allocation changes. A service
//! then costs what its own instances cost: the nodes already holding some are taken out of the
//! index and ranked by themselves (spread first), and each new instance looks at each zone's
//! first feasible node from the index (the smallest that fits, bin-packing) and at the best of
//! those holding the service, as Nomad's limit-and-rank iterators avoid ranking every node.
//! The decisions are exactly those of a scan of every node for every instance (fewest of the
//! service on the node, then in its zone, then least free memory, then name): a randomized
//! test holds it to that scan, over services planned one after another.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use strata_core::{NodeName, NodeState, Resources};

use super::{refusal, Demand, NodeView, PlacementError};

/// Up to how many instances of a service already placed somewhere [`Placer::place`] places
/// without ranking the nodes it holds.
const FEW: usize = 4;

/// A node without instances of the service in the free-memory index: free memory, name rank,
/// index.
type IdleKey = (u64, usize, usize);

/// A node holding instances of the service: how many, free memory, name rank, index.
type BusyKey = (u32, u64, usize, usize);

/// Nodes kept ranked for placing one service after another.
pub struct Placer {
    nodes: Vec<NodeView>,
    /// Looked up for every node each service of a pass is on: a fast hash, seeded per
    /// process (the names are those of nodes that joined with the cluster's token).
    by_name: HashMap<NodeName, usize, foldhash::fast::RandomState>,
    /// Each node's position in name order (the last tie-breaker).
    name_rank: Vec<usize>,
    /// Each node's zone (an index into `zones`; zone 0 holds the nodes without a zone).
    zone_of: Vec<usize>,
    zones: Vec<Zone>,
}

struct Zone {
    /// Whether instances in the zone count for spread (not for the nodes without a zone).
    counted: bool,
    /// The ready nodes holding no instance of the service being placed, by free memory.
    idle: BTreeSet<IdleKey>,
}

/// One service's placement: its nodes and its zones' loads.
struct Service<'d> {
    demand: &'d Demand,
    /// Feasible nodes holding instances of the service, per zone.
    busy: Vec<BTreeSet<BusyKey>>,
    /// Instances of the service per zone (0 where not counted).
    load: Vec<u32>,
    /// Per zone, where the search of the idle index resumes: every node before it was
    /// refused (placing only takes resources, so a refused node stays refused).
    resume: Vec<IdleKey>,
    /// The nodes taken out of the idle index for this service.
    taken: Vec<usize>,
}

impl Placer {
    /// Ranks `nodes`; their `instances_of_service` are ignored (each service says its own).
    pub fn new(mut nodes: Vec<NodeView>) -> Self {
        let mut by_name_order: Vec<usize> = (0..nodes.len()).collect();
        by_name_order.sort_by(|a, b| nodes[*a].name.cmp(&nodes[*b].name));
        let mut name_rank = vec![0; nodes.len()];
        for (rank, index) in by_name_order.into_iter().enumerate() {
            name_rank[index] = rank;
        }
        let mut zones = vec![Zone {
            counted: false,
            idle: BTreeSet::new(),
        }];
        let mut zone_ids: HashMap<String, usize> = HashMap::new();
        let mut zone_of = Vec::with_capacity(nodes.len());
        for node in &mut nodes {
            node.instances_of_service = 0;
            let zone = match node.zone() {
                None => 0,
                Some(name) => *zone_ids.entry(name.to_string()).or_insert_with(|| {
                    zones.push(Zone {
                        counted: true,
                        idle: BTreeSet::new(),
                    });
                    zones.len() - 1
                }),
            };
            zone_of.push(zone);
        }
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(index, node)| (node.name.clone(), index))
            .collect();
        let mut placer = Placer {
            nodes,
            by_name,
            name_rank,
            zone_of,
            zones,
        };
        for index in 0..placer.nodes.len() {
            placer.index(index);
        }
        placer
    }

    /// The nodes as placed so far.
    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    /// The nodes, for the caller to keep.
    pub fn into_nodes(self) -> Vec<NodeView> {
        self.nodes
    }

    /// Where the node called `name` is in [`Placer::nodes`].
    pub fn position(&self, name: &NodeName) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// An instance on node `index` stops: what it held (`resources`, a fixed `port`) is free
    /// for the services placed after.
    pub fn release(&mut self, index: usize, resources: Resources, port: Option<u16>) {
        self.unindex(index);
        let node = &mut self.nodes[index];
        node.allocated = node.allocated.saturating_sub(resources);
        if let Some(port) = port {
            node.static_ports.remove(&port);
        }
        self.index(index);
    }

    /// Places `count` instances of one service needing `demand`, which already has
    /// `holding` (node index, instances) of them. Returns the chosen nodes' indexes in
    /// placement order, or those placed with why the rest could not be.
    pub fn place(
        &mut self,
        demand: &Demand,
        count: usize,
        holding: &[(usize, u32)],
    ) -> Result<Vec<usize>, (Vec<usize>, PlacementError)> {
        if count <= FEW && !holding.is_empty() {
            return self.place_few(demand, count, holding);
        }
        let mut service = Service {
            demand,
            busy: vec![BTreeSet::new(); self.zones.len()],
            load: vec![0; self.zones.len()],
            resume: vec![(demand.resources.memory_bytes, 0, 0); self.zones.len()],
            taken: Vec::with_capacity(holding.len() + count),
        };
        for &(index, instances) in holding {
            if instances == 0 || self.nodes[index].instances_of_service > 0 {
                continue;
            }
            self.unindex(index);
            self.nodes[index].instances_of_service = instances;
            service.taken.push(index);
            let zone = self.zone_of[index];
            if self.zones[zone].counted {
                service.load[zone] += instances;
            }
            self.rank_busy(&mut service, index);
        }
        let mut chosen = Vec::with_capacity(count);
        let mut error = None;
        for _ in 0..count {
            let Some(index) = self.take_best(&mut service) else {
                error = Some(self.short(demand, chosen.len(), count));
                break;
            };
            let node = &mut self.nodes[index];
            node.allocated = node.allocated + demand.resources;
            if node.instances_of_service == 0 {
                service.taken.push(index);
            }
            node.instances_of_service += 1;
            if let Some(port) = demand.static_port {
                node.static_ports
                    .insert(port, "another instance placed now".to_string());
            }
            let zone = self.zone_of[index];
            if self.zones[zone].counted {
                service.load[zone] += 1;
            }
            self.rank_busy(&mut service, index);
            chosen.push(index);
        }
        // The next service starts with no instances anywhere: the nodes go back to the index.
        for index in service.taken {
            self.nodes[index].instances_of_service = 0;
            self.index(index);
        }
        match error {
            None => Ok(chosen),
            Some(error) => Err((chosen, error)),
        }
    }

    /// [`Placer::place`] for a few instances of a service that runs on many nodes already
    /// (a replacement after a node's death): rather than take every node the service holds
    /// out of the index and rank them (a thousand nodes for one instance), each instance looks
    /// at every zone's first idle node and at every node of the service. Same decisions.
    fn place_few(
        &mut self,
        demand: &Demand,
        count: usize,
        holding: &[(usize, u32)],
    ) -> Result<Vec<usize>, (Vec<usize>, PlacementError)> {
        let mut load = vec![0u32; self.zones.len()];
        // Per zone, the nodes of its index that hold none of the service (a zone where the
        // service is on every node is not searched).
        let mut unmarked: Vec<usize> = self.zones.iter().map(|z| z.idle.len()).collect();
        let mut marked = Vec::with_capacity(holding.len() + count);
        for &(index, instances) in holding {
            if instances == 0 || self.nodes[index].instances_of_service > 0 {
                continue;
            }
            self.nodes[index].instances_of_service = instances;
            marked.push(index);
            let zone = self.zone_of[index];
            if self.zones[zone].counted {
                load[zone] += instances;
            }
            if self.nodes[index].state == NodeState::Ready {
                unmarked[zone] -= 1;
            }
        }
        let mut chosen = Vec::with_capacity(count);
        let mut error = None;
        for _ in 0..count {
            let mut best: Option<(BusyKeyWithLoad, usize)> = None;
            for (zone, nodes) in self.zones.iter().enumerate() {
                if unmarked[zone] == 0 {
                    continue;
                }
                let first = nodes.idle.iter().find(|(_, _, index)| {
                    self.nodes[*index].instances_of_service == 0
                        && refusal(&self.nodes[*index], demand).is_none()
                });
                if let Some(&(free, name, index)) = first {
                    let key = (0, load[zone], free, name);
                    if best.as_ref().is_none_or(|b| key < b.0) {
                        best = Some((key, index));
                    }
                }
            }
            for &index in &marked {
                let node = &self.nodes[index];
                let key = (
                    node.instances_of_service,
                    load[self.zone_of[index]],
                    node.free().memory_bytes,
                    self.name_rank[index],
                );
                // Whether the node can take it is asked only of a node that would be best.
                if best.as_ref().is_none_or(|b| key < b.0) && refusal(node, demand).is_none() {
                    best = Some((key, index));
                }
            }
            let Some((_, index)) = best else {
                error = Some(self.short(demand, chosen.len(), count));
                break;
            };
            // Out of the index under its old free memory; back in under its new one below.
            self.unindex(index);
            let zone = self.zone_of[index];
            let node = &mut self.nodes[index];
            node.allocated = node.allocated + demand.resources;
            if node.instances_of_service == 0 {
                marked.push(index);
                unmarked[zone] -= 1;
            }
            node.instances_of_service += 1;
            if let Some(port) = demand.static_port {
                node.static_ports
                    .insert(port, "another instance placed now".to_string());
            }
            if self.zones[zone].counted {
                load[zone] += 1;
            }
            chosen.push(index);
        }
        for &index in &marked {
            self.nodes[index].instances_of_service = 0;
        }
        for &index in &chosen {
            self.index(index);
        }
        match error {
            None => Ok(chosen),
            Some(error) => Err((chosen, error)),
        }
    }

    /// Why only `placed` of `wanted` instances needing `demand` found a node: every node's
    /// refusal.
    fn short(&self, demand: &Demand, placed: usize, wanted: usize) -> PlacementError {
        PlacementError {
            placed,
            wanted,
            refusals: self
                .nodes
                .iter()
                .filter_map(|node| refusal(node, demand).map(|why| (node.name.clone(), why)))
                .collect(),
        }
    }

    /// The best node for one more instance, taken out of the service's ranking: in each zone
    /// the first feasible idle node (no instance of the service beats any number) or else the
    /// best busy one; across zones by (instances on the node, in the zone, free memory, name).
    fn take_best(&mut self, service: &mut Service) -> Option<usize> {
        let mut best: Option<(BusyKeyWithLoad, usize, bool)> = None;
        for zone in 0..self.zones.len() {
            let candidate = match self.first_feasible_idle(service, zone) {
                Some((free, name, index)) => {
                    Some(((0, service.load[zone], free, name), index, true))
                }
                None => service.busy[zone].first().map(|&(on, free, name, index)| {
                    ((on, service.load[zone], free, name), index, false)
                }),
            };
            if let Some(candidate) = candidate {
                if best.as_ref().is_none_or(|b| candidate.0 < b.0) {
                    best = Some(candidate);
                }
            }
        }
        let (_, index, idle) = best?;
        if idle {
            self.unindex(index);
        } else {
            service.busy[self.zone_of[index]].remove(&self.busy_key(index));
        }
        Some(index)
    }

    /// The zone's first idle node that can take an instance, skipping (for the rest of the
    /// service) those that cannot.
    fn first_feasible_idle(&self, service: &mut Service, zone: usize) -> Option<IdleKey> {
        let from = service.resume[zone];
        for key in self.zones[zone]
            .idle
            .range((Bound::Included(from), Bound::Unbounded))
        {
            if refusal(&self.nodes[key.2], service.demand).is_none() {
                service.resume[zone] = *key;
                return Some(*key);
            }
        }
        service.resume[zone] = (u64::MAX, usize::MAX, usize::MAX);
        None
    }

    /// Ranks node `index`, which holds instances of the service, if it can take another.
    fn rank_busy(&self, service: &mut Service, index: usize) {
        if refusal(&self.nodes[index], service.demand).is_none() {
            service.busy[self.zone_of[index]].insert(self.busy_key(index));
        }
    }

    fn busy_key(&self, index: usize) -> BusyKey {
        let node = &self.nodes[index];
        (
            node.instances_of_service,
            node.free().memory_bytes,
            self.name_rank[index],
            index,
        )
    }

    fn idle_key(&self, index: usize) -> IdleKey {
        (
            self.nodes[index].free().memory_bytes,
            self.name_rank[index],
            index,
        )
    }

    /// Puts node `index` in its zone's idle index if it is ready.
    fn index(&mut self, index: usize) {
        if self.nodes[index].state == NodeState::Ready {
            let key = self.idle_key(index);
            self.zones[self.zone_of[index]].idle.insert(key);
        }
    }

    fn unindex(&mut self, index: usize) {
        let key = self.idle_key(index);
        self.zones[self.zone_of[index]].idle.remove(&key);
    }
}

/// A candidate's rank across zones: instances of the service on the node, in its zone, free
/// memory, name rank.
type BusyKeyWithLoad = (u32, u32, u64, usize);
