//! Placement: choose nodes for new instances of one service.
//!
//! A chain in the manner of Nomad's scheduler: filter the feasible nodes (ready, driver,
//! resources, static port, label constraints), then rank them: spread first (fewest instances
//! of this service on the node, then in its zone), bin-packing second (the node with the least
//! free memory that still fits), node name last so the result is deterministic.

use std::collections::BTreeMap;
use std::fmt;

use strata_core::spec::DriverKind;
use strata_core::{NodeName, NodeState, Resources};

/// What placement knows of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: NodeName,
    pub state: NodeState,
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    /// The sum of the demands of the live instances already on the node.
    pub allocated: Resources,
    pub drivers: Vec<DriverKind>,
    /// Static ports taken on the node, each with who holds it ("instance web-1-ab12 (dev/web
    /// release 1)"), so a refusal can name it.
    pub static_ports: BTreeMap<u16, String>,
    /// Instances of the service being placed already on the node.
    pub instances_of_service: u32,
}

impl NodeView {
    fn zone(&self) -> Option<&str> {
        self.labels.get("zone").map(String::as_str)
    }
    fn free(&self) -> Resources {
        self.capacity.saturating_sub(self.allocated)
    }
}

/// What one instance of the service needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub resources: Resources,
    pub driver: DriverKind,
    pub static_port: Option<u16>,
    /// Labels a node must carry, with these values.
    pub constraints: BTreeMap<String, String>,
}

/// Why some instances could not be placed. Names every node and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementError {
    pub placed: usize,
    pub wanted: usize,
    /// `(node, reason)` for every node that was refused for the first unplaced instance.
    pub refusals: Vec<(NodeName, String)>,
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "placed {} of {} instances; ", self.placed, self.wanted)?;
        if self.refusals.is_empty() {
            return write!(
                f,
                "no nodes are registered (start `strata agent` or `strata dev`)"
            );
        }
        let reasons: Vec<String> = self
            .refusals
            .iter()
            .map(|(node, why)| format!("node {node}: {why}"))
            .collect();
        write!(f, "{}", reasons.join("; "))
    }
}

impl std::error::Error for PlacementError {}

fn refusal(node: &NodeView, demand: &Demand) -> Option<String> {
    match node.state {
        NodeState::Ready => {}
        other => return Some(format!("state is {other:?}, not ready").to_lowercase()),
    }
    if !node.drivers.contains(&demand.driver) {
        return Some(format!("has no `{}` driver", demand.driver.as_str()));
    }
    for (key, value) in &demand.constraints {
        if node.labels.get(key) != Some(value) {
            return Some(format!("label {key}={value} not present"));
        }
    }
    let free = node.free();
    if demand.resources.cpu_millis > free.cpu_millis {
        return Some(format!(
            "cpu {}m free < {}m requested",
            free.cpu_millis, demand.resources.cpu_millis
        ));
    }
    if demand.resources.memory_bytes > free.memory_bytes {
        return Some(format!(
            "memory {} free < {} requested",
            mebibytes(free.memory_bytes),
            mebibytes(demand.resources.memory_bytes)
        ));
    }
    if let Some(port) = demand.static_port {
        if let Some(holder) = node.static_ports.get(&port) {
            return Some(format!("port {port} is held by {holder}"));
        }
    }
    None
}

fn mebibytes(bytes: u64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// Chooses a node for each of `count` new instances, updating the views as it goes (so two
/// instances spread, and resources are counted). Returns node names in placement order, or the
/// nodes placed so far with the reasons the rest could not be.
///
/// The ranking is the scan's (fewest instances of the service on the node, then in its zone,
/// then least free memory, then name) without scanning every node for every instance: the
/// feasible nodes are filtered once and kept ranked per zone (a zone's load is the same for all
/// its nodes), so each instance costs a look at each zone's best node and one re-ranking of
/// the node chosen: O(nodes + count x (zones + log nodes)), as Nomad's limit-and-rank
/// iterators avoid ranking every node.
pub fn place(
    nodes: &mut [NodeView],
    demand: &Demand,
    count: usize,
) -> Result<Vec<NodeName>, (Vec<NodeName>, PlacementError)> {
    let mut ranking = Ranking::new(nodes, demand);
    let mut chosen = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(index) = ranking.take_best() else {
            let refusals = nodes
                .iter()
                .filter_map(|node| refusal(node, demand).map(|why| (node.name.clone(), why)))
                .collect();
            let error = PlacementError {
                placed: chosen.len(),
                wanted: count,
                refusals,
            };
            return Err((chosen, error));
        };
        let node = &mut nodes[index];
        node.allocated = node.allocated + demand.resources;
        node.instances_of_service += 1;
        if let Some(port) = demand.static_port {
            node.static_ports
                .insert(port, "another instance placed now".to_string());
        }
        chosen.push(node.name.clone());
        ranking.placed(nodes, index, demand);
    }
    Ok(chosen)
}

/// A feasible node's rank within its zone: instances of the service on it, free memory after
/// one more instance, its name's rank, its index.
type Rank = (u32, u64, usize, usize);

/// The feasible nodes, ranked within each zone.
struct Ranking {
    zones: Vec<Zone>,
    /// Each node's zone (an index into `zones`).
    zone_of: Vec<usize>,
    /// Each node's position in name order (the last tie-breaker).
    name_rank: Vec<usize>,
}

struct Zone {
    /// Instances of the service on all the zone's nodes, feasible or not (0, and never
    /// counted, for the nodes with no zone).
    load: u32,
    counted: bool,
    ranked: std::collections::BTreeSet<Rank>,
}

impl Ranking {
    fn new(nodes: &[NodeView], demand: &Demand) -> Ranking {
        let mut by_name: Vec<usize> = (0..nodes.len()).collect();
        by_name.sort_by(|a, b| nodes[*a].name.cmp(&nodes[*b].name));
        let mut name_rank = vec![0; nodes.len()];
        for (rank, index) in by_name.into_iter().enumerate() {
            name_rank[index] = rank;
        }
        // Zone 0 holds the nodes without a zone.
        let mut zones = vec![Zone {
            load: 0,
            counted: false,
            ranked: Default::default(),
        }];
        let mut zone_ids: BTreeMap<&str, usize> = BTreeMap::new();
        let mut zone_of = Vec::with_capacity(nodes.len());
        for node in nodes {
            let zone = match node.zone() {
                None => 0,
                Some(name) => *zone_ids.entry(name).or_insert_with(|| {
                    zones.push(Zone {
                        load: 0,
                        counted: true,
                        ranked: Default::default(),
                    });
                    zones.len() - 1
                }),
            };
            if zones[zone].counted {
                zones[zone].load += node.instances_of_service;
            }
            zone_of.push(zone);
        }
        let mut ranking = Ranking {
            zones,
            zone_of,
            name_rank,
        };
        for (index, node) in nodes.iter().enumerate() {
            ranking.rank(node, index, demand);
        }
        ranking
    }

    /// Ranks `node` in its zone if it can take one more instance.
    fn rank(&mut self, node: &NodeView, index: usize, demand: &Demand) {
        if refusal(node, demand).is_some() {
            return;
        }
        let free_after = node.free().memory_bytes - demand.resources.memory_bytes;
        let rank = (
            node.instances_of_service,
            free_after,
            self.name_rank[index],
            index,
        );
        self.zones[self.zone_of[index]].ranked.insert(rank);
    }

    /// Takes the best feasible node out of the ranking: its index.
    fn take_best(&mut self) -> Option<usize> {
        let (zone, rank) = self
            .zones
            .iter()
            .enumerate()
            .filter_map(|(z, zone)| zone.ranked.first().map(|rank| (z, zone.load, *rank)))
            .min_by_key(|(_, load, (ios, free_after, name, _))| (*ios, *load, *free_after, *name))
            .map(|(z, _, rank)| (z, rank))?;
        self.zones[zone].ranked.remove(&rank);
        Some(rank.3)
    }

    /// One more instance is on node `index` (taken out by `take_best`): count it in its zone
    /// and rank the node again if it can take another.
    fn placed(&mut self, nodes: &[NodeView], index: usize, demand: &Demand) {
        let zone = &mut self.zones[self.zone_of[index]];
        if zone.counted {
            zone.load += 1;
        }
        self.rank(&nodes[index], index, demand);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1024 * 1024;

    fn node(name: &'static str, zone: &str, cpu: u64, mem_mi: u64) -> NodeView {
        NodeView {
            name: NodeName::from_static(name),
            state: NodeState::Ready,
            labels: [("zone".to_string(), zone.to_string())].into(),
            capacity: Resources {
                cpu_millis: cpu,
                memory_bytes: mem_mi * MI,
            },
            allocated: Resources::default(),
            drivers: vec![DriverKind::Exec],
            static_ports: BTreeMap::new(),
            instances_of_service: 0,
        }
    }

    fn demand(cpu: u64, mem_mi: u64) -> Demand {
        Demand {
            resources: Resources {
                cpu_millis: cpu,
                memory_bytes: mem_mi * MI,
            },
            driver: DriverKind::Exec,
            static_port: None,
            constraints: BTreeMap::new(),
        }
    }

    struct Case {
        name: &'static str,
        nodes: Vec<NodeView>,
        demand: Demand,
        count: usize,
        want: Result<Vec<&'static str>, usize>,
    }

    #[test]
    fn placement_table() {
        let mut down = node("b", "z1", 1000, 1024);
        down.state = NodeState::Down;
        let mut draining = node("b", "z1", 1000, 1024);
        draining.state = NodeState::Draining;
        let mut wasm_only = node("w", "z1", 1000, 1024);
        wasm_only.drivers = vec![DriverKind::Wasm];
        let mut busy = node("a", "z1", 1000, 1024);
        busy.instances_of_service = 2;
        let mut port_taken = node("a", "z1", 1000, 1024);
        port_taken
            .static_ports
            .insert(8080, "instance web-1-abc (dev/web release 1)".into());
        let mut with_port = demand(100, 64);
        with_port.static_port = Some(8080);
        let mut needs_ssd = demand(100, 64);
        needs_ssd.constraints.insert("disk".into(), "ssd".into());
        let mut ssd = node("s", "z1", 1000, 1024);
        ssd.labels.insert("disk".into(), "ssd".into());

        let cases = vec![
            Case {
                name: "no nodes",
                nodes: vec![],
                demand: demand(100, 64),
                count: 1,
                want: Err(0),
            },
            Case {
                name: "one node takes all that fit",
                nodes: vec![node("a", "z1", 1000, 1024)],
                demand: demand(100, 64),
                count: 3,
                want: Ok(vec!["a", "a", "a"]),
            },
            Case {
                name: "spread across nodes",
                nodes: vec![node("a", "z1", 1000, 1024), node("b", "z1", 1000, 1024)],
                demand: demand(100, 64),
                count: 4,
                want: Ok(vec!["a", "b", "a", "b"]),
            },
            Case {
                name: "spread across zones before nodes in one zone",
                nodes: vec![
                    node("a", "z1", 1000, 1024),
                    node("b", "z1", 1000, 1024),
                    node("c", "z2", 1000, 1024),
                ],
                demand: demand(100, 64),
                count: 3,
                want: Ok(vec!["a", "c", "b"]),
            },
            Case {
                name: "existing instances count toward spread",
                nodes: vec![busy, node("b", "z2", 1000, 1024)],
                demand: demand(100, 64),
                count: 2,
                want: Ok(vec!["b", "b"]),
            },
            Case {
                name: "down and draining nodes are skipped",
                nodes: vec![down, draining, node("c", "z1", 1000, 1024)],
                demand: demand(100, 64),
                count: 1,
                want: Ok(vec!["c"]),
            },
            Case {
                name: "driver must be available",
                nodes: vec![wasm_only],
                demand: demand(100, 64),
                count: 1,
                want: Err(0),
            },
            Case {
                name: "memory runs out after two",
                nodes: vec![node("a", "z1", 1000, 128)],
                demand: demand(100, 64),
                count: 3,
                want: Err(2),
            },
            Case {
                name: "cpu runs out",
                nodes: vec![node("a", "z1", 250, 1024)],
                demand: demand(100, 64),
                count: 3,
                want: Err(2),
            },
            Case {
                name: "static port: one per node",
                nodes: vec![node("a", "z1", 1000, 1024), node("b", "z1", 1000, 1024)],
                demand: with_port.clone(),
                count: 3,
                want: Err(2),
            },
            Case {
                name: "static port already taken",
                nodes: vec![port_taken, node("b", "z1", 1000, 1024)],
                demand: with_port,
                count: 1,
                want: Ok(vec!["b"]),
            },
            Case {
                name: "label constraint",
                nodes: vec![node("a", "z1", 1000, 1024), ssd],
                demand: needs_ssd,
                count: 2,
                want: Ok(vec!["s", "s"]),
            },
        ];
        for mut case in cases {
            let got = place(&mut case.nodes, &case.demand, case.count);
            match (&got, &case.want) {
                (Ok(nodes), Ok(want)) => assert_eq!(nodes, want, "{}", case.name),
                (Err((placed, error)), Err(placed_count)) => {
                    assert_eq!(placed.len(), *placed_count, "{}", case.name);
                    assert_eq!(error.placed, *placed_count, "{}", case.name);
                    assert!(!error.to_string().is_empty());
                }
                _ => panic!("{}: got {got:?}, want {:?}", case.name, case.want),
            }
        }
    }

    #[test]
    fn refusals_say_why() {
        let mut nodes = vec![node("a", "z1", 1000, 32)];
        let (_, error) = place(&mut nodes, &demand(100, 64), 1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "placed 0 of 1 instances; node a: memory 32Mi free < 64Mi requested"
        );
        let (_, error) = place(&mut [], &demand(100, 64), 1).unwrap_err();
        assert!(error.to_string().contains("no nodes are registered"));
        // A port conflict names who holds the port.
        let mut held = node("a", "z1", 1000, 1024);
        held.static_ports
            .insert(8080, "instance web-1-abc (dev/web release 1)".into());
        let mut with_port = demand(100, 64);
        with_port.static_port = Some(8080);
        let (_, error) = place(&mut [held], &with_port, 1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "placed 0 of 1 instances; node a: port 8080 is held by instance web-1-abc (dev/web release 1)"
        );
    }

    /// The ranking as a scan of every node for every instance: what `place` must decide.
    fn place_by_scan(nodes: &mut [NodeView], demand: &Demand, count: usize) -> Vec<NodeName> {
        let mut chosen = Vec::new();
        for _ in 0..count {
            let mut zone_load: BTreeMap<&str, u32> = BTreeMap::new();
            for node in nodes.iter() {
                if let Some(zone) = node.zone() {
                    *zone_load.entry(zone).or_default() += node.instances_of_service;
                }
            }
            let best = nodes
                .iter()
                .enumerate()
                .filter(|(_, node)| refusal(node, demand).is_none())
                .min_by_key(|(_, node)| {
                    let zone = node.zone().and_then(|z| zone_load.get(z)).copied();
                    let free_after = node.free().memory_bytes - demand.resources.memory_bytes;
                    (
                        node.instances_of_service,
                        zone.unwrap_or(0),
                        free_after,
                        node.name.clone(),
                    )
                })
                .map(|(index, _)| index);
            let Some(index) = best else { break };
            let node = &mut nodes[index];
            node.allocated = node.allocated + demand.resources;
            node.instances_of_service += 1;
            if let Some(port) = demand.static_port {
                node.static_ports
                    .insert(port, "another instance placed now".to_string());
            }
            chosen.push(node.name.clone());
        }
        chosen
    }

    /// Random fleets (zones, no zone, busy, full, down, other drivers, held ports) and
    /// demands: the indexed ranking places exactly where the scan would, in the same order.
    #[test]
    fn the_indexed_ranking_decides_as_the_scan_of_every_node() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        for case in 0..300 {
            let count_nodes = rng.gen_range(0..40);
            let nodes: Vec<NodeView> = (0..count_nodes)
                .map(|i| {
                    let zone = ["z1", "z2", "z3", ""][rng.gen_range(0..4)];
                    let name: &'static str =
                        Box::leak(format!("n{:02}", (i * 7) % 40).into_boxed_str());
                    let mut n = node(name, zone, rng.gen_range(0..4000), rng.gen_range(0..4096));
                    if zone.is_empty() {
                        n.labels.clear();
                    }
                    n.instances_of_service = rng.gen_range(0..3);
                    n.allocated.memory_bytes = rng.gen_range(0..512) * MI;
                    if rng.gen_bool(0.1) {
                        n.state = NodeState::Down;
                    }
                    if rng.gen_bool(0.1) {
                        n.drivers = vec![DriverKind::Wasm];
                    }
                    if rng.gen_bool(0.1) {
                        n.static_ports.insert(8080, "someone".into());
                    }
                    n
                })
                .collect();
            let mut want = demand(rng.gen_range(0..500), rng.gen_range(0..600));
            if rng.gen_bool(0.2) {
                want.static_port = Some(8080);
            }
            let count = rng.gen_range(0..60);
            let mut by_index = nodes.clone();
            let mut by_scan = nodes;
            let placed = match place(&mut by_index, &want, count) {
                Ok(placed) => placed,
                Err((placed, error)) => {
                    assert_eq!(error.placed, placed.len(), "case {case}");
                    placed
                }
            };
            let scanned = place_by_scan(&mut by_scan, &want, count);
            assert_eq!(placed, scanned, "case {case}");
            assert_eq!(by_index, by_scan, "case {case}");
        }
    }
}
