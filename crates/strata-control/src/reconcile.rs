//! The reconciler: a level-triggered controller. Each pass reads desired state (services,
//! releases) and actual state (instances, their statuses, nodes) from the store, asks the pure
//! planners of strata-sched what should change, and applies that. It never relies on having
//! seen an event: a pass over the same state asks for nothing more, and a missed event is
//! caught by the next pass (one runs at least every second, and at once after any change).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_core::spec::PortSpec;
use strata_core::{
    keys, DesiredState, EnvName, EventKind, Instance, InstanceId, InstanceView, Node, NodeName,
    NodeState, Release, Resources, Service, ServiceName,
};
use strata_sched::liveness::node_state;
use strata_sched::{place, plan_service, Demand, NodeView, Readiness};
use strata_store::Txn;
use tokio::sync::Mutex;

use crate::plane::{encode, ControlPlane};
use crate::ControlError;

/// The longest the reconciler sleeps without a change.
const RESYNC: Duration = Duration::from_secs(1);

/// Runs reconcile passes until the task is dropped.
pub async fn run(plane: Arc<ControlPlane>) {
    let wake = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(watch_changes(plane.clone(), wake.clone()));
    let memory = Mutex::new(Memory::default());
    let mut fence = plane.fence();
    // Only the leader reconciles; wait to be elected.
    while fence.wait_to_lead().await {
        match reconcile_once(&plane, &memory).await {
            Ok(()) => {}
            Err(ControlError::NotLeader) => continue,
            Err(error) => tracing::warn!(%error, "reconcile pass failed; retrying"),
        }
        // Sooner than the resync when a rollout waits for an instance's `min_ready`.
        let sleep = match memory.lock().await.recheck_at.take() {
            Some(at) => RESYNC.min(Duration::from_millis(at.saturating_sub(plane.now()))),
            None => RESYNC,
        };
        tokio::select! {
            _ = plane.kick.notified() => {}
            _ = wake.notified() => {}
            _ = fence.changed() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
        // Let a burst of changes land before the next pass.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wakes the reconciler on every change of desired or actual state.
async fn watch_changes(plane: Arc<ControlPlane>, wake: Arc<tokio::sync::Notify>) {
    loop {
        match plane.store.watch("/", 0).await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    match change {
                        // Events and kept log lines change no desired or actual state.
                        Ok(change)
                            if !change.key().starts_with(keys::EVENTS)
                                && !change.key().starts_with(keys::LOGS) =>
                        {
                            wake.notify_one()
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "store watch failed; resubscribing");
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "store watch failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the reconciler remembers between passes, only to avoid repeating itself in events.
#[derive(Default)]
pub struct Memory {
    placement_errors: BTreeMap<String, String>,
    /// The earliest time a plan asked to be made again (see `ServicePlan::recheck_at`).
    recheck_at: Option<u64>,
}

/// One pass. Public so tests can drive the controller step by step.
pub async fn reconcile_once(
    plane: &ControlPlane,
    memory: &Mutex<Memory>,
) -> Result<(), ControlError> {
    let now = plane.now();
    let nodes: Vec<Node> = plane.nodes().await?;
    let services: Vec<(Service, u64)> = plane.list(keys::SERVICES).await?;
    let views = plane.instance_views().await?;

    // Every release a live instance or a service refers to, read once.
    let wanted_releases: BTreeSet<(EnvName, ServiceName, u64)> = views
        .iter()
        .map(|v| {
            (
                v.instance.env.clone(),
                v.instance.service.clone(),
                v.instance.release,
            )
        })
        .chain(
            services
                .iter()
                .map(|(s, _)| (s.env.clone(), s.name.clone(), s.desired_release)),
        )
        .collect();
    let mut releases: BTreeMap<(EnvName, ServiceName, u64), Option<Release>> = BTreeMap::new();
    for id in wanted_releases {
        let found = plane.get(&keys::release(&id.0, &id.1, id.2)).await?;
        releases.insert(id, found.map(|(release, _)| release));
    }

    let node_states: BTreeMap<NodeName, NodeState> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.effective_state()))
        .collect();
    let mut by_service: BTreeMap<(EnvName, ServiceName), Vec<InstanceView>> = BTreeMap::new();
    for view in &views {
        by_service
            .entry((view.instance.env.clone(), view.instance.service.clone()))
            .or_default()
            .push(view.clone());
    }
    let mut groups: BTreeSet<(EnvName, ServiceName)> = by_service.keys().cloned().collect();
    let service_map: BTreeMap<(EnvName, ServiceName), &Service> = services
        .iter()
        .map(|(s, _)| ((s.env.clone(), s.name.clone()), s))
        .collect();
    groups.extend(service_map.keys().cloned());

    // Capacity and ports already taken, from every live instance.
    let mut node_views: Vec<NodeView> = nodes
        .iter()
        .map(|node| NodeView {
            name: node.name.clone(),
            state: node.effective_state(),
            labels: node.labels.clone(),
            capacity: node.capacity,
            allocated: Resources::default(),
            drivers: node.drivers.clone(),
            static_ports: BTreeMap::new(),
            instances_of_service: 0,
        })
        .collect();
    for view in views
        .iter()
        .filter(|v| v.instance.desired == DesiredState::Running)
    {
        let i = &view.instance;
        let Some(Some(release)) = releases.get(&(i.env.clone(), i.service.clone(), i.release))
        else {
            continue;
        };
        if let Some(node) = node_views.iter_mut().find(|n| n.name == i.node) {
            node.allocated = node.allocated + release.spec.resources;
            if let PortSpec::Fixed(port) = release.spec.port {
                let holder = format!(
                    "instance {} ({}/{} release {})",
                    i.id, i.env, i.service, i.release
                );
                node.static_ports.insert(port, holder);
            }
        }
    }

    let empty = Vec::new();
    for (env, name) in groups {
        let instances = by_service
            .get(&(env.clone(), name.clone()))
            .unwrap_or(&empty);
        let service = service_map.get(&(env.clone(), name.clone()));
        let desired_release = service.map(|s| s.desired_release);
        let replicas = service.map(|s| s.replicas).unwrap_or(0);
        let min_ready_ms = desired_release
            .and_then(|number| releases.get(&(env.clone(), name.clone(), number)))
            .and_then(Option::as_ref)
            .map_or(strata_core::spec::DEFAULT_MIN_READY_MS, |r| {
                r.spec.min_ready_ms
            });
        let readiness = Readiness { now, min_ready_ms };
        let plan = plan_service(
            desired_release,
            replicas,
            instances,
            &node_states,
            readiness,
        );
        if let Some(at) = plan.recheck_at {
            let mut memory = memory.lock().await;
            memory.recheck_at = Some(memory.recheck_at.map_or(at, |earlier| earlier.min(at)));
        }

        for (id, why) in &plan.stop {
            plane.request_stop(id, why.describe()).await?;
            // What it held on its node is free for this pass's placements (later passes
            // count only wanted instances anyway): a crash-looping instance of a superseded
            // release must not keep its replacement's fixed port.
            if let Some(view) = instances.iter().find(|v| v.instance.id == *id) {
                let i = &view.instance;
                let release = releases.get(&(i.env.clone(), i.service.clone(), i.release));
                let node = node_views.iter_mut().find(|n| n.name == i.node);
                if let (Some(Some(release)), Some(node)) = (release, node) {
                    node.allocated = node.allocated.saturating_sub(release.spec.resources);
                    if let PortSpec::Fixed(port) = release.spec.port {
                        node.static_ports.remove(&port);
                    }
                }
            }
        }
        for id in &plan.forget {
            plane
                .controller_txn(
                    Txn::new()
                        .delete(keys::instance(id))
                        .delete(keys::status(id)),
                )
                .await?;
        }
        if plan.start == 0 {
            let prefix = format!("{env}/{name}/");
            memory
                .lock()
                .await
                .placement_errors
                .retain(|key, _| !key.starts_with(&prefix));
            continue;
        }
        let (Some(service), Some(release_number)) = (service, desired_release) else {
            continue;
        };
        let Some(Some(release)) = releases.get(&(env.clone(), name.clone(), release_number)) else {
            continue;
        };
        for node in node_views.iter_mut() {
            node.instances_of_service = instances
                .iter()
                .filter(|v| {
                    v.instance.node == node.name && v.instance.desired == DesiredState::Running
                })
                .count() as u32;
        }
        let demand = Demand {
            resources: release.spec.resources,
            driver: release.spec.driver,
            static_port: match release.spec.port {
                PortSpec::Fixed(port) => Some(port),
                PortSpec::Auto => None,
            },
            constraints: release.spec.constraints.clone(),
        };
        let (placed, error) = match place(&mut node_views, &demand, plan.start as usize) {
            Ok(placed) => (placed, None),
            Err((placed, error)) => (placed, Some(error)),
        };
        for node_name in placed {
            let node = nodes
                .iter()
                .find(|n| n.name == node_name)
                .expect("placed on a known node");
            create_instance(plane, service, release.number, node, now).await?;
        }
        // Per release: a redeploy that cannot be placed for the same reason says so again.
        let key = format!("{env}/{name}/{release_number}");
        let mut memory = memory.lock().await;
        match error {
            Some(error) => {
                let message = error.to_string();
                if memory.placement_errors.get(&key) != Some(&message) {
                    let mut event = crate::event_log::event(
                        EventKind::PlacementFailed,
                        format!("{name}: cannot place instances: {message}"),
                    );
                    event.env = Some(env.clone());
                    event.service = Some(name.clone());
                    plane.event_log().record(event).await;
                    memory.placement_errors.insert(key, message);
                }
            }
            None => {
                memory.placement_errors.remove(&key);
            }
        }
    }
    Ok(())
}

async fn create_instance(
    plane: &ControlPlane,
    service: &Service,
    release: u64,
    node: &Node,
    now: u64,
) -> Result<(), ControlError> {
    let id = InstanceId::for_release(&service.name, release, rand::random());
    let instance = Instance {
        id: id.clone(),
        env: service.env.clone(),
        service: service.name.clone(),
        release,
        node: node.name.clone(),
        node_epoch: node.epoch,
        desired: DesiredState::Running,
        created_at: now,
        stop_requested_at: None,
    };
    let key = keys::instance(&id);
    plane
        .controller_txn(Txn::new().when(&key, 0).put(&key, encode(&instance)))
        .await?;
    let mut event = crate::event_log::event(
        EventKind::InstancePlaced,
        format!("{id}: release {release} placed on node {}", node.name),
    );
    event.env = Some(service.env.clone());
    event.service = Some(service.name.clone());
    event.instance = Some(id.clone());
    event.node = Some(node.name.clone());
    plane.event_log().record(event).await;
    Ok(())
}

/// Judges node liveness every `liveness_tick` from the heartbeats held in memory, and writes
/// each change of state (which wakes the reconciler through the store's watch). Runs until the
/// task is dropped.
pub async fn run_liveness(plane: Arc<ControlPlane>) {
    let tick = plane.config.liveness_tick;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = plane.monotonic_ms();
    let mut led_before = false;
    loop {
        ticker.tick().await;
        let now = plane.monotonic_ms();
        let leads = plane.term().is_some();
        if leads && !led_before {
            // A new leader knows no heartbeats yet: every node gets a full grace period.
            plane.heartbeats().forgive_until(now);
            plane.heartbeats().grace_unknown_nodes(now);
        }
        led_before = leads;
        if !leads {
            last_tick = now;
            continue;
        }
        // If this process itself stalled (a long GC-like pause, a suspended VM), nodes did not
        // go silent: forgive the gap instead of declaring them down.
        if now.saturating_sub(last_tick) > plane.config.liveness.suspect_after_ms {
            tracing::warn!(
                stalled_ms = now - last_tick,
                "liveness checker stalled; not blaming nodes"
            );
            plane.heartbeats().forgive_until(now);
        }
        last_tick = now;
        match judge_liveness(&plane, now).await {
            Ok(()) | Err(ControlError::NotLeader) => {}
            Err(error) => tracing::warn!(%error, "liveness pass failed"),
        }
    }
}

/// One liveness pass at `now` (monotonic ms): every node's state from its last heartbeat,
/// each change written. Public so tests can drive it with their own clock.
pub async fn judge_liveness(plane: &ControlPlane, now: u64) -> Result<(), ControlError> {
    let nodes: Vec<(Node, u64)> = plane.list(keys::NODES).await?;
    for (mut node, revision) in nodes {
        // A node not heard from since this server began to lead gets a grace period.
        let last = plane
            .heartbeats()
            .last(&node.name)
            .unwrap_or(plane.heartbeats().led_since());
        let next = node_state(node.state, last, now, plane.config.liveness);
        if next == node.state {
            continue;
        }
        let previous = node.state;
        node.state = next;
        let key = keys::node(&node.name);
        let committed = plane
            .controller_txn(Txn::new().when(&key, revision).put(&key, encode(&node)))
            .await?
            .is_committed();
        if committed {
            let mut event = crate::event_log::event(
                match next {
                    NodeState::Ready => EventKind::NodeReady,
                    NodeState::Suspect => EventKind::NodeSuspect,
                    NodeState::Down => EventKind::NodeDown,
                    NodeState::Draining => EventKind::NodeDraining,
                },
                format!(
                    "node {}: {} -> {} (no heartbeat for {} ms)",
                    node.name,
                    format!("{previous:?}").to_lowercase(),
                    format!("{next:?}").to_lowercase(),
                    now.saturating_sub(last)
                ),
            );
            event.node = Some(node.name.clone());
            plane.event_log().record(event).await;
            plane.kick();
        }
    }
    Ok(())
}
