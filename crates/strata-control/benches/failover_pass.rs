//! What the reconciler's passes cost when a node holding many instances dies (issue 22's
//! "a dead node among 10,000 ... serving elsewhere in < 1 s"): a reflector state of N nodes
//! and S services of R instances each (instance i of every service on node i mod N, as the
//! fleet simulator's packing leaves them), every instance running and healthy; then node 0
//! goes down and the passes a failover takes are planned and their writes applied, as the
//! leader does: the pass that replaces the lost instances, the one its own writes wake (which
//! forgets the lost ones), and the one the replacements' running reports wake. No IO: the
//! planning (the median of five plans of the same state) and the reflector's bookkeeping
//! alone, per pass.
//!
//!   cargo bench -p strata-control --bench failover_pass [-- --nodes 1000 --services 1000 --replicas 1000]

use std::time::Instant;

use strata_control::reconcile::pass::{plan_pass, PassPlan};
use strata_control::reflector::{ClusterState, ServiceKey};
use strata_core::{
    keys, DesiredState, EnvName, Instance, InstanceId, InstanceState, InstanceStatus, Node,
    NodeName, NodeState, Resources, Service, ServiceName,
};
use strata_store::{KeyValue, Revision, WatchEvent};

const MI: u64 = 1 << 20;
const NOW: u64 = 10_000_000;

struct Args {
    nodes: usize,
    services: usize,
    replicas: usize,
}

fn args() -> Args {
    let given: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str, default: usize| {
        given
            .iter()
            .position(|a| a == name)
            .and_then(|i| given.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Args {
        nodes: value("--nodes", 1000),
        services: value("--services", 1000),
        replicas: value("--replicas", 1000),
    }
}

/// Writes to the state one revision after another, as the store's watch delivers them.
struct Writer {
    revision: Revision,
}

impl Writer {
    fn put<T: serde::Serialize>(&mut self, state: &mut ClusterState, key: String, value: &T) {
        self.revision += 1;
        state.apply(&WatchEvent::Put(KeyValue {
            key,
            value: serde_json::to_vec(value).unwrap(),
            create_revision: self.revision,
            mod_revision: self.revision,
            version: 1,
            lease: None,
        }));
        state.advance_to(self.revision);
    }

    fn delete(&mut self, state: &mut ClusterState, key: String) {
        self.revision += 1;
        state.apply(&WatchEvent::Delete {
            key,
            revision: self.revision,
            prev: None,
        });
        state.advance_to(self.revision);
    }
}

fn node(i: usize, state: NodeState) -> Node {
    Node {
        labels: [("zone".to_string(), format!("zone-{}", i % 4))].into(),
        state,
        ..Node::ready(
            node_name(i),
            Resources {
                cpu_millis: 1_000_000,
                memory_bytes: 1024 * 1024 * MI,
            },
            vec![strata_core::spec::DriverKind::Exec],
        )
    }
}

fn node_name(i: usize) -> NodeName {
    NodeName::new(format!("node-{i:05}")).unwrap()
}

fn running(id: &InstanceId, node: &NodeName) -> InstanceStatus {
    InstanceStatus {
        address: Some("127.0.0.1:9".to_string()),
        ready_since: Some(1),
        ..InstanceStatus::new(id.clone(), node.clone(), InstanceState::Running, "")
    }
}

/// The fleet, every instance running.
fn fleet(args: &Args, writer: &mut Writer) -> ClusterState {
    let mut state = ClusterState::default();
    for i in 0..args.nodes {
        writer.put(
            &mut state,
            keys::node(node_name(i).as_str()),
            &node(i, NodeState::Ready),
        );
    }
    for s in 0..args.services {
        let name = ServiceName::new(format!("svc-{s:04}")).unwrap();
        let text = format!(
            "[service.{name}]\ncommand = [\"sim\"]\n[service.{name}.resources]\ncpu = \"1m\"\nmemory = \"1Mi\"\n"
        );
        let spec = strata_core::spec::parse("fleet.toml", &text)
            .unwrap()
            .services
            .remove(0);
        let release = strata_testkit::fixtures::release("fleet", name.as_str(), 1, spec);
        writer.put(
            &mut state,
            keys::release("fleet", name.as_str(), 1),
            &release,
        );
        let service = Service {
            desired_release: 1,
            latest_release: 1,
            latest_config: 1,
            ..Service::new(
                EnvName::from_static("fleet"),
                name.clone(),
                args.replicas as u32,
                0,
            )
        };
        writer.put(&mut state, keys::service("fleet", name.as_str()), &service);
        for i in 0..args.replicas {
            let id = InstanceId::for_release(&name, 1, i as u32);
            let node = node_name(i % args.nodes);
            let instance = Instance {
                id: id.clone(),
                env: EnvName::from_static("fleet"),
                service: name.clone(),
                release: 1,
                node: node.clone(),
                node_epoch: 1,
                desired: DesiredState::Running,
                created_at: 0,
                stop_requested_at: None,
                quarantine: None,
            };
            writer.put(&mut state, keys::instance(&id), &instance);
            writer.put(&mut state, keys::status(&id), &running(&id, &node));
        }
    }
    state
}

/// How many times each pass is planned (over the same state; the median is reported):
/// `FAILOVER_PASS_ROUNDS`, to profile the plans rather than the state's building, or 5.
fn rounds() -> usize {
    std::env::var("FAILOVER_PASS_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5)
        .max(1)
}

/// Plans what the reflector marked dirty, as a pass that is not a full one does.
fn pass(state: &mut ClusterState) -> (PassPlan, usize, f64) {
    let dirty = state.take_dirty();
    let services: Vec<ServiceKey> = dirty.services.into_iter().collect();
    let count = services.len();
    let rounds = rounds();
    let mut times = Vec::with_capacity(rounds);
    let mut plan = PassPlan::default();
    for _ in 0..rounds {
        let started = Instant::now();
        plan = plan_pass(state, services.iter().cloned(), NOW);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (plan, count, times[rounds / 2])
}

/// Writes what a pass decided; the ids it placed.
fn apply(state: &mut ClusterState, writer: &mut Writer, plan: &PassPlan) -> Vec<Instance> {
    for (id, _) in plan.stops.iter().chain(&plan.lost) {
        let mut instance = state.instance(id).unwrap().value.clone();
        instance.desired = DesiredState::Stopped;
        instance.stop_requested_at = Some(NOW);
        writer.put(state, keys::instance(id), &instance);
    }
    for id in &plan.forgets {
        writer.delete(state, keys::instance(id));
        writer.delete(state, keys::status(id));
    }
    let mut placed = Vec::new();
    for (n, placement) in plan.placements.iter().enumerate() {
        let id = InstanceId::for_release(&placement.service.name, 1, 1 << 23 | n as u32);
        let instance = Instance {
            id: id.clone(),
            env: placement.service.env.clone(),
            service: placement.service.name.clone(),
            release: placement.release,
            node: placement.node.clone(),
            node_epoch: placement.node_epoch,
            desired: DesiredState::Running,
            created_at: NOW,
            stop_requested_at: None,
            quarantine: None,
        };
        writer.put(state, keys::instance(&id), &instance);
        placed.push(instance);
    }
    placed
}

/// One line of the table.
fn row(pass: &str, planned: usize, plan: &PassPlan, plan_ms: f64, apply_ms: Option<f64>) {
    println!(
        "| {pass} | {planned} | {} | {} | {} | {plan_ms:.1} | {} |",
        plan.stops.len() + plan.lost.len(),
        plan.forgets.len(),
        plan.placements.len(),
        apply_ms.map_or("-".to_string(), |ms| format!("{ms:.1}"))
    );
}

fn main() {
    let args = args();
    let mut writer = Writer { revision: 0 };
    let building = Instant::now();
    let mut state = fleet(&args, &mut writer);
    println!(
        "failover passes: {} nodes, {} services of {} ({} instances; built in {:.1} s)",
        args.nodes,
        args.services,
        args.replicas,
        state.instance_count(),
        building.elapsed().as_secs_f64()
    );
    let _ = state.take_dirty();

    let mut dead = node(0, NodeState::Down);
    dead.epoch = 1;
    let applying = Instant::now();
    writer.put(&mut state, keys::node(dead.name.as_str()), &dead);
    let node_ms = applying.elapsed().as_secs_f64() * 1000.0;

    println!("| pass | services planned | stops | forgets | placements | plan ms | apply ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (plan, planned, plan_ms) = pass(&mut state);
    let applying = Instant::now();
    let placed = apply(&mut state, &mut writer, &plan);
    let apply_ms = applying.elapsed().as_secs_f64() * 1000.0;
    let name = format!("node down (its record: {node_ms:.1} ms)");
    row(&name, planned, &plan, plan_ms, Some(apply_ms));

    let (plan, planned, plan_ms) = pass(&mut state);
    let applying = Instant::now();
    apply(&mut state, &mut writer, &plan);
    let apply_ms = applying.elapsed().as_secs_f64() * 1000.0;
    row(
        "woken by its own writes",
        planned,
        &plan,
        plan_ms,
        Some(apply_ms),
    );

    let applying = Instant::now();
    for instance in &placed {
        let status = running(&instance.id, &instance.node);
        writer.put(&mut state, keys::status(&instance.id), &status);
    }
    let reports_ms = applying.elapsed().as_secs_f64() * 1000.0;
    let (plan, planned, plan_ms) = pass(&mut state);
    let name = format!("woken by the replacements' reports (applied in {reports_ms:.1} ms)");
    row(&name, planned, &plan, plan_ms, None);
}
