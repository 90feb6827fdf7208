//! Placement: choose nodes for new instances of one service.
//!
//! A chain in the manner of Nomad's scheduler: filter the feasible nodes (ready, driver,
//! resources, static port, label constraints), then rank them: spread first (fewest instances
//! of this service on the node, then in its zone), bin-packing second (the node with the least
//! free memory that still fits), node name last so the result is deterministic.

mod placer;

use std::collections::BTreeMap;
use std::fmt;

use strata_core::spec::DriverKind;
use strata_core::{NodeName, NodeState, Resources};

pub use placer::Placer;

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

impl Demand {
    /// What one instance of a release with `spec` needs.
    pub fn of(spec: &strata_core::ServiceSpec) -> Demand {
        Demand {
            resources: spec.resources,
            driver: spec.driver,
            static_port: match spec.port {
                strata_core::spec::PortSpec::Fixed(port) => Some(port),
                strata_core::spec::PortSpec::Auto => None,
            },
            constraints: spec.constraints.clone(),
        }
    }
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

/// Whether an instance of `demand` would fit on `node` once an instance holding `freed` (and
/// the fixed port `freed_port`) left it: what a recreate may stop an old instance for.
pub fn fits_once_freed(
    node: &NodeView,
    demand: &Demand,
    freed: Resources,
    freed_port: Option<u16>,
) -> bool {
    let mut after = node.clone();
    after.allocated = after.allocated.saturating_sub(freed);
    if let Some(port) = freed_port {
        after.static_ports.remove(&port);
    }
    refusal(&after, demand).is_none()
}

fn mebibytes(bytes: u64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// Chooses a node for each of `count` new instances, updating the views as it goes (so two
/// instances spread, and resources are counted). Returns node names in placement order, or the
/// nodes placed so far with the reasons the rest could not be.
///
/// For one service over nodes built for it; a pass over many services keeps one [`Placer`]
/// instead, so what a service costs follows its own instances, not the fleet.
pub fn place(
    nodes: &mut [NodeView],
    demand: &Demand,
    count: usize,
) -> Result<Vec<NodeName>, (Vec<NodeName>, PlacementError)> {
    let holding: Vec<(usize, u32)> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.instances_of_service > 0)
        .map(|(index, node)| (index, node.instances_of_service))
        .collect();
    let mut placer = Placer::new(nodes.to_vec());
    let result = placer.place(demand, count, &holding);
    let mut placed = placer.into_nodes();
    for (index, count) in &holding {
        placed[*index].instances_of_service = *count;
    }
    let chosen = match &result {
        Ok(chosen) | Err((chosen, _)) => chosen,
    };
    for index in chosen {
        placed[*index].instances_of_service += 1;
    }
    nodes.clone_from_slice(&placed);
    let names = |chosen: &[usize]| -> Vec<NodeName> {
        chosen.iter().map(|i| nodes[*i].name.clone()).collect()
    };
    match result {
        Ok(chosen) => Ok(names(&chosen)),
        Err((chosen, error)) => Err((names(&chosen), error)),
    }
}

#[cfg(test)]
mod tests;
