//! The control-plane harness: a real `ControlPlane` on a real (embedded) store, a manual
//! clock, and fake agents the test drives, so deploys, rollouts, node loss, fencing and
//! leader hand-over run in-process, step by step, in milliseconds, with no process,
//! network or sleep.
//!
//! A step is what a second of a real cluster does: every live agent heartbeats and applies
//! its assignments (reporting what it "runs"), liveness is judged, and the reconciler makes
//! one pass; then agents apply what that pass asked. Time moves only when the test says.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use strata_control::clock::ManualClock;
use strata_control::reconcile::{judge_liveness, reconcile_once, Memory};
use strata_control::{ControlError, ControlPlane};
use strata_core::api::{DeployRequest, DeployResponse, DeployService, RegisterNode};
use strata_core::{
    DesiredState, EnvName, InstanceId, InstanceState, InstanceStatus, InstanceView, Node, NodeName,
    NodeState, Resources, ServiceName,
};
use strata_store::{RedbStore, Store};

/// A node as its agent would be: it runs what it is assigned under its own epoch, and
/// refuses (fences) anything placed under another.
pub struct FakeAgent {
    pub name: NodeName,
    pub epoch: u64,
    /// Heartbeats and syncs only while alive.
    pub alive: bool,
    /// Instances it runs.
    pub running: BTreeSet<InstanceId>,
}

impl FakeAgent {
    async fn register(plane: &ControlPlane, name: &NodeName, last_epoch: Option<u64>) -> Node {
        plane
            .register_node(RegisterNode {
                name: name.clone(),
                agent_url: format!("http://{name}.invalid:7701"),
                labels: [("zone".to_string(), format!("zone-{name}"))].into(),
                capacity: Resources {
                    cpu_millis: 4_000,
                    memory_bytes: 8 << 30,
                },
                drivers: vec![strata_core::spec::DriverKind::Exec],
                last_epoch,
                mesh_addr: None,
                agent_version: None,
            })
            .await
            .unwrap()
    }

    fn status(&self, id: &InstanceId, state: InstanceState, message: &str) -> InstanceStatus {
        InstanceStatus {
            address: (state == InstanceState::Running).then(|| format!("{}:8080", self.name)),
            ..InstanceStatus::new(id.clone(), self.name.clone(), state, message)
        }
    }

    /// Applies its assignments: starts (reports healthy) what it should run, stops what it
    /// should not, and drops what is no longer assigned to it at all.
    async fn sync(&mut self, plane: &ControlPlane) {
        if !self.alive {
            return;
        }
        let assignments = plane.assignments(&self.name).await.unwrap().assignments;
        let mut assigned = BTreeSet::new();
        for assignment in assignments {
            let instance = assignment.instance;
            if instance.node_epoch != self.epoch {
                continue; // fenced: placed under another epoch of this node
            }
            assigned.insert(instance.id.clone());
            let runs = self.running.contains(&instance.id);
            let report = match (instance.desired, runs) {
                (DesiredState::Running, false) => {
                    self.running.insert(instance.id.clone());
                    Some(self.status(&instance.id, InstanceState::Running, "healthy"))
                }
                // Quarantined: frozen and kept until its archive is (as an agent does).
                (DesiredState::Stopped, true)
                    if instance
                        .quarantine
                        .as_ref()
                        .is_some_and(|q| q.archive.is_none()) =>
                {
                    None
                }
                (DesiredState::Stopped, true) => {
                    self.running.remove(&instance.id);
                    Some(self.status(&instance.id, InstanceState::Stopped, "stopped"))
                }
                _ => None,
            };
            if let Some(status) = report {
                match plane.report_status(status).await {
                    Ok(()) | Err(ControlError::NotFound { .. }) => {}
                    Err(error) => panic!("{}: report failed: {error}", self.name),
                }
            }
        }
        self.running.retain(|id| assigned.contains(id));
    }
}

pub struct Harness {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub plane: Arc<ControlPlane>,
    pub agents: BTreeMap<String, FakeAgent>,
    memory: tokio::sync::Mutex<Memory>,
    dir: tempfile::TempDir,
}

impl Harness {
    /// A leading control plane with `nodes` registered and heartbeating.
    pub async fn start(nodes: &[&str]) -> Harness {
        Self::start_with(nodes, |store| store).await
    }

    /// [`Harness::start`] on the store `wrap` makes of the embedded one (a test's wrapper).
    pub async fn start_with(
        nodes: &[&str],
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = wrap(Arc::new(
            RedbStore::open(&dir.path().join("store.redb"))
                .await
                .unwrap(),
        ));
        let clock = Arc::new(ManualClock::starting_at(1_700_000_000_000));
        let plane = Self::server(&store, &clock, dir.path(), "s1").await;
        let mut harness = Harness {
            store,
            clock,
            plane,
            agents: BTreeMap::new(),
            memory: Default::default(),
            dir,
        };
        for name in nodes {
            let name = NodeName::new(*name).expect("a node name");
            let node = FakeAgent::register(&harness.plane, &name, None).await;
            harness.agents.insert(
                name.to_string(),
                FakeAgent {
                    name,
                    epoch: node.epoch,
                    alive: true,
                    running: BTreeSet::new(),
                },
            );
        }
        harness
    }

    /// Another server on the same store and clock; `elect` waits until it leads.
    pub async fn server(
        store: &Arc<dyn Store>,
        clock: &Arc<ManualClock>,
        dir: &std::path::Path,
        id: &str,
    ) -> Arc<ControlPlane> {
        let plane =
            ControlPlane::with_clock(store.clone(), super::config(dir, id), clock.clone()).unwrap();
        plane.start_election();
        plane
    }

    /// Waits (bounded) until `plane` leads.
    pub async fn elected(plane: &ControlPlane) {
        for _ in 0..500 {
            if plane.term().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} was never elected", plane.server_id());
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Deploys a spec (TOML) to `dev`.
    pub async fn deploy(&self, spec: &str) -> DeployResponse {
        Self::elected(&self.plane).await;
        let parsed = strata_core::spec::parse("strata.toml", spec).unwrap();
        let services = parsed
            .services
            .into_iter()
            .map(|spec| DeployService {
                spec,
                artifact_digest: None,
            })
            .collect();
        self.plane
            .deploy(
                &dev(),
                DeployRequest { services },
                &strata_core::Actor::User("test".into()),
            )
            .await
            .unwrap()
    }

    /// One round: live agents heartbeat and sync, liveness is judged, the reconciler makes a
    /// pass, and agents apply what it asked.
    pub async fn step(&mut self) {
        self.beat_and_judge().await;
        reconcile_once(&self.plane, &self.memory).await.unwrap();
        for agent in self.agents.values_mut() {
            agent.sync(&self.plane).await;
        }
    }

    /// The first half of a step: the live agents beat and sync, and liveness judges the
    /// nodes; no reconcile pass.
    pub async fn beat_and_judge(&mut self) {
        Self::elected(&self.plane).await;
        for agent in self.agents.values_mut().filter(|a| a.alive) {
            let reregister = self
                .plane
                .heartbeat(&agent.name, agent.epoch)
                .await
                .unwrap();
            assert!(!reregister, "{} must re-register", agent.name);
            agent.sync(&self.plane).await;
        }
        judge_liveness(&self.plane, self.plane.monotonic_ms())
            .await
            .unwrap();
    }

    /// Moves time on by `ms` (wall and monotonic clocks alike).
    pub fn advance(&self, ms: u64) {
        self.clock.advance(ms);
    }

    /// Advances `ms` in steps of 100 ms, stepping after each.
    pub async fn run_for(&mut self, ms: u64) {
        for _ in 0..ms.div_ceil(100) {
            self.advance(100);
            self.step().await;
        }
    }

    /// The node goes silent (no heartbeat, no sync), as if its machine died.
    pub fn kill(&mut self, node: &str) {
        self.agents.get_mut(node).unwrap().alive = false;
    }

    /// The node's agent comes back and registers with the epoch it ran under.
    pub async fn revive(&mut self, node: &str) {
        let (last, name) = (self.agents[node].epoch, self.agents[node].name.clone());
        let registered = FakeAgent::register(&self.plane, &name, Some(last)).await;
        let agent = self.agents.get_mut(node).unwrap();
        agent.epoch = registered.epoch;
        agent.alive = true;
    }

    /// Instances of `service`, as the API shows them.
    pub async fn instances(&self, service: &str) -> Vec<InstanceView> {
        let mut views = self.plane.instance_views().await.unwrap();
        views.retain(|v| v.instance.service == service);
        views.sort_by_key(|v| (v.instance.release, v.instance.node.clone()));
        views
    }

    /// Wanted instances of `service`: (release, node) each.
    pub async fn wanted(&self, service: &str) -> Vec<(u64, String)> {
        self.instances(service)
            .await
            .into_iter()
            .filter(|v| v.instance.desired == DesiredState::Running)
            .map(|v| (v.instance.release, v.instance.node.to_string()))
            .collect()
    }

    pub async fn node_state(&self, node: &str) -> NodeState {
        let nodes = self.plane.nodes().await.unwrap();
        nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.state)
            .unwrap()
    }

    pub async fn available(&self, service: &str) -> u32 {
        self.plane
            .service_status(&dev(), &ServiceName::new(service).expect("a service name"))
            .await
            .unwrap()
            .available
    }
}

/// The environment the harness deploys to.
pub fn dev() -> EnvName {
    EnvName::from_static("dev")
}
