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

/// A random fleet of up to 40 nodes: zones and none, busy, full, down, other drivers, held
/// ports, an `ssd` label on some.
fn random_fleet(rng: &mut impl rand::Rng) -> Vec<NodeView> {
    let count_nodes = rng.gen_range(0..40);
    (0..count_nodes)
        .map(|i| {
            let zone = ["z1", "z2", "z3", ""][rng.gen_range(0..4)];
            let name: &'static str = Box::leak(format!("n{:02}", (i * 7) % 40).into_boxed_str());
            let mut n = node(name, zone, rng.gen_range(0..4000), rng.gen_range(0..4096));
            if zone.is_empty() {
                n.labels.clear();
            }
            if rng.gen_bool(0.3) {
                n.labels.insert("disk".into(), "ssd".into());
            }
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
        .collect()
}

/// A random demand: resources, sometimes a fixed port, sometimes the `ssd` label.
fn random_demand(rng: &mut impl rand::Rng) -> Demand {
    let mut want = demand(rng.gen_range(0..500), rng.gen_range(0..600));
    if rng.gen_bool(0.2) {
        want.static_port = Some(8080);
    }
    if rng.gen_bool(0.2) {
        want.constraints.insert("disk".into(), "ssd".into());
    }
    want
}

/// Random fleets and demands, with instances of the service already on some nodes: the
/// indexed ranking places exactly where the scan would, in the same order.
#[test]
fn the_indexed_ranking_decides_as_the_scan_of_every_node() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    for case in 0..300 {
        let mut nodes = random_fleet(&mut rng);
        for node in &mut nodes {
            node.instances_of_service = rng.gen_range(0..3);
        }
        let want = random_demand(&mut rng);
        // Often a few (a replacement: placed without ranking the service's nodes).
        let count = match rng.gen_bool(0.4) {
            true => rng.gen_range(0..=4),
            false => rng.gen_range(0..60),
        };
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

/// A pass: one `Placer` places service after service (each with its own instances already
/// on some nodes), with stops freeing resources and ports between them, and decides each
/// as the scan of every node would over the nodes as they are then.
#[test]
fn a_placer_kept_across_services_decides_as_the_scan_of_every_node() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(2022);
    for case in 0..200 {
        let nodes = random_fleet(&mut rng);
        let mut placer = Placer::new(nodes.clone());
        let mut by_scan = nodes;
        for step in 0..12 {
            if by_scan.is_empty() {
                break;
            }
            if rng.gen_bool(0.3) {
                let index = rng.gen_range(0..by_scan.len());
                let freed = Resources {
                    cpu_millis: rng.gen_range(0..300),
                    memory_bytes: rng.gen_range(0..300) * MI,
                };
                let port = rng.gen_bool(0.5).then_some(8080);
                placer.release(index, freed, port);
                let node = &mut by_scan[index];
                node.allocated = node.allocated.saturating_sub(freed);
                if let Some(port) = port {
                    node.static_ports.remove(&port);
                }
            } else {
                let want = random_demand(&mut rng);
                let count = match rng.gen_bool(0.4) {
                    true => rng.gen_range(0..=4),
                    false => rng.gen_range(0..20),
                };
                let mut holding: Vec<(usize, u32)> = Vec::new();
                for index in 0..by_scan.len() {
                    if rng.gen_bool(0.2) {
                        holding.push((index, rng.gen_range(1..3)));
                    }
                }
                let placed = match placer.place(&want, count, &holding) {
                    Ok(placed) | Err((placed, _)) => placed,
                };
                let placed: Vec<NodeName> =
                    placed.iter().map(|i| by_scan[*i].name.clone()).collect();
                for (index, count) in &holding {
                    by_scan[*index].instances_of_service = *count;
                }
                let scanned = place_by_scan(&mut by_scan, &want, count);
                for node in &mut by_scan {
                    node.instances_of_service = 0;
                }
                assert_eq!(placed, scanned, "case {case} step {step}");
            }
            assert_eq!(placer.nodes(), &by_scan[..], "case {case} step {step}");
        }
    }
}
