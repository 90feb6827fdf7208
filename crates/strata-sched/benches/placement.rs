//! Placement decisions alone (issue 22's "> 100,000/s"): a `strata_sched::Placer` choosing nodes
//! for services of 1,000 instances each across fleets of 100 to 10,000 nodes in four zones,
//! until 1,000,000 instances are placed (or the fleet is full). No IO: what the reconciler's
//! pass costs per instance (one `Placer` kept across the services, as the pass keeps it).
//!
//!   cargo bench -p strata-sched --bench placement
//!
//! Prints a table; Nomad's published C1M figure (3,750 placements/s, end to end) is the
//! peer's.

use std::collections::BTreeMap;
use std::time::Instant;

use strata_core::spec::DriverKind;
use strata_core::{NodeName, NodeState, Resources};
use strata_sched::{Demand, NodeView, Placer};

const MI: u64 = 1 << 20;

fn fleet(nodes: usize) -> Vec<NodeView> {
    (0..nodes)
        .map(|i| NodeView {
            name: NodeName::new(format!("node-{i:05}")).unwrap(),
            state: NodeState::Ready,
            labels: [("zone".to_string(), format!("zone-{}", i % 4))].into(),
            capacity: Resources {
                cpu_millis: 64_000,
                memory_bytes: 256 * 1024 * MI,
            },
            allocated: Resources::default(),
            drivers: vec![DriverKind::Exec, DriverKind::Wasm],
            static_ports: BTreeMap::new(),
            instances_of_service: 0,
        })
        .collect()
}

fn main() {
    let demand = Demand {
        resources: Resources {
            cpu_millis: 10,
            memory_bytes: 64 * MI,
        },
        driver: DriverKind::Wasm,
        static_port: None,
        constraints: BTreeMap::new(),
    };
    println!("| nodes | instances | services | time | decisions/s |");
    println!("|---:|---:|---:|---:|---:|");
    for nodes in [100, 1_000, 10_000] {
        let mut placer = Placer::new(fleet(nodes));
        let total = 1_000_000;
        let started = Instant::now();
        let mut placed = 0;
        let mut services = 0;
        while placed < total {
            // Each service starts from nothing on every node.
            match placer.place(&demand, 1_000, &[]) {
                Ok(chosen) => placed += chosen.len(),
                Err((chosen, _)) => {
                    placed += chosen.len();
                    break;
                }
            }
            services += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "| {nodes} | {placed} | {services} | {elapsed:.2} s | {:.0} |",
            placed as f64 / elapsed
        );
    }
    // A dead node's replacements: many services, one instance each, so what a service costs
    // before its first instance (filtering and ranking the fleet) is what counts.
    println!();
    println!("| nodes | services of one instance | time | per service |");
    println!("|---:|---:|---:|---:|");
    for nodes in [1_000, 10_000] {
        let mut placer = Placer::new(fleet(nodes));
        let services = 1_000;
        let started = Instant::now();
        for _ in 0..services {
            placer.place(&demand, 1, &[]).expect("room for one");
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "| {nodes} | {services} | {:.2} ms | {:.2} µs |",
            elapsed * 1e3,
            elapsed * 1e6 / services as f64
        );
    }
}
