//! The reconciler: a level-triggered controller over the reflector's state. A pass plans
//! the services that changes concerned since the last one (the reflector's [`Dirty`] set, a
//! work queue), those whose rollout asked to be looked at again, and every service at least
//! every [`FULL_PASS`]; the pure planners of strata-sched say what should change
//! ([`pass::plan_pass`]) and the pass applies it, placements and stops in batches of one
//! transaction each. It never relies on having seen an event: a pass over the same state
//! asks for nothing more, and the periodic full pass catches anything a change did not say.
//!
//! [`Dirty`]: crate::reflector::Dirty

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strata_core::{keys, DesiredState, EventKind, Instance, InstanceId, ServiceName};
use strata_store::Txn;
use tokio::sync::Mutex;

use crate::plane::{encode, ControlPlane};
use crate::reflector::ServiceKey;
use crate::ControlError;

mod liveness;
pub mod pass;

pub use liveness::{judge_liveness, run_liveness};
use pass::{every_service, PassPlan, PassPlanner, Placement};

/// The longest the reconciler sleeps without a change.
const RESYNC: Duration = Duration::from_secs(1);

/// Every service is planned at least this often, changed or not.
pub const FULL_PASS: Duration = Duration::from_secs(10);

/// About how many instances a pass plans before it lets go of the state for a moment.
const PLAN_PART_INSTANCES: usize = 20_000;

/// How many instances one transaction creates or stops (with an event each: within etcd's
/// default limit of 128 operations per transaction).
const PLACEMENT_BATCH: usize = 60;

/// How many stopped instances' records a pass deletes at most (the rest wait for the next).
const FORGETS_PER_PASS: usize = 2 * PLACEMENT_BATCH;

/// How many of a pass's transactions are in flight at once: concurrent transactions share a
/// disk sync (the embedded store's group commit; etcd batches its raft proposals likewise),
/// where one after another each waits for its own.
const BATCHES_AT_ONCE: usize = 16;

/// Runs reconcile passes until the task is dropped.
pub async fn run(plane: Arc<ControlPlane>) {
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
        let sleep = match memory.lock().await.next_recheck() {
            Some(at) => RESYNC.min(Duration::from_millis(at.saturating_sub(plane.now()))),
            None => RESYNC,
        };
        tokio::select! {
            _ = plane.kick.notified() => {}
            _ = plane.reflector().dirtied() => {}
            _ = fence.changed() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
        // Let a burst of changes land before the next pass.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the reconciler remembers between passes: when it last planned everything, which
/// services asked to be planned again when, and the placement errors it already told of.
#[derive(Default)]
pub struct Memory {
    placement_errors: BTreeMap<String, String>,
    /// When each service asked to be planned again (see `ServicePlan::recheck_at`).
    rechecks: BTreeMap<ServiceKey, u64>,
    /// When (monotonic ms) the last full pass ran; `None`: never, or one failed since.
    last_full: Option<u64>,
}

impl Memory {
    fn next_recheck(&self) -> Option<u64> {
        self.rechecks.values().min().copied()
    }
}

/// One pass. Public so tests can drive the controller step by step.
pub async fn reconcile_once(
    plane: &ControlPlane,
    memory: &Mutex<Memory>,
) -> Result<(), ControlError> {
    let mut memory = memory.lock().await;
    let reflector = plane.reflector();
    // The pass must see every write so far, its own last placements first of all: planning
    // on an older state would place them again.
    if let Err(error) = plane.reflector_caught_up().await {
        memory.last_full = None;
        return Err(error);
    }
    let now = plane.now();
    let monotonic = plane.monotonic_ms();
    let dirty = reflector.take_dirty();
    let full = dirty.all
        || memory
            .last_full
            .is_none_or(|at| monotonic.saturating_sub(at) >= FULL_PASS.as_millis() as u64);
    let due: Vec<ServiceKey> = memory
        .rechecks
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(id, _)| id.clone())
        .collect();
    let (services, mut planner) = {
        let state = reflector.read();
        let services = if full {
            every_service(&state)
        } else {
            let mut some: Vec<ServiceKey> = dirty.services.into_iter().chain(due).collect();
            if dirty.nodes {
                // A node came or changed: what could not be placed may fit now.
                some.extend(memory.placement_errors.keys().filter_map(|key| {
                    let mut parts = key.split('/');
                    let env = strata_core::EnvName::new(parts.next()?).ok()?;
                    let name = strata_core::ServiceName::new(parts.next()?).ok()?;
                    Some((env, name))
                }));
            }
            some.sort();
            some.dedup();
            some
        };
        for id in &services {
            memory.rechecks.remove(id);
        }
        (services, PassPlanner::default())
    };
    // Planned a part at a time, letting go of the state between parts: a pass over a million
    // instances would otherwise hold it (and stall the reflector, the heartbeat receiver
    // and every request waiting on it) for a second.
    let planning = std::time::Instant::now();
    let service_count = services.len();
    let mut services = services.into_iter().peekable();
    while services.peek().is_some() {
        let budget = planner.planned_instances + PLAN_PART_INSTANCES;
        {
            let state = reflector.read();
            while planner.planned_instances < budget {
                let Some(id) = services.next() else { break };
                planner.plan(&state, [id], now);
            }
        }
        if services.peek().is_some() {
            tokio::task::yield_now().await;
        }
    }
    let planned_instances = planner.planned_instances;
    let plan = planner.finish();
    let planned_ms = planning.elapsed().as_millis() as u64;
    let (stops, placements) = (plan.stops.len() + plan.lost.len(), plan.placements.len());
    if full {
        memory.last_full = Some(monotonic);
    }
    for (id, at) in &plan.rechecks {
        memory.rechecks.insert(id.clone(), *at);
    }
    let applied = apply(plane, &mut memory, plan, now).await;
    tracing::debug!(
        full,
        services = service_count,
        instances = planned_instances,
        stops,
        placements,
        planned_ms,
        applied_ms = planning.elapsed().as_millis() as u64 - planned_ms,
        "reconcile pass"
    );
    if applied.is_err() {
        // What this pass took from the work queue was not all done: plan everything next.
        memory.last_full = None;
    }
    applied
}

/// Writes what a pass decided.
async fn apply(
    plane: &ControlPlane,
    memory: &mut Memory,
    plan: PassPlan,
    now: u64,
) -> Result<(), ControlError> {
    // What serves sooner goes first. Placements on nodes where nothing stops go with the
    // stops (one round of writes, not two); those on a node where something stops wait for
    // the stops (what they free is theirs to take). The instances lost with their nodes are
    // marked stopped after that: their nodes take no work and serve no traffic, and on a
    // node's death they are half the writes. The records of instances done go last.
    let (after_stops, with_stops): (Vec<Placement>, Vec<Placement>) = plan
        .placements
        .into_iter()
        .partition(|p| plan.stopped_on.contains(&p.node));
    let mut first: Vec<Write<'_, bool>> = Vec::new();
    for batch in plan.stops.chunks(PLACEMENT_BATCH) {
        first.push(Box::pin(async move {
            stop_instances(plane, batch, now).await.map(|()| true)
        }));
    }
    for batch in with_stops.chunks(PLACEMENT_BATCH) {
        first.push(Box::pin(create_instances(plane, batch, now)));
    }
    let mut committed = concurrently(first).await?;
    let mut then: Vec<Write<'_, bool>> = Vec::new();
    for batch in after_stops.chunks(PLACEMENT_BATCH) {
        then.push(Box::pin(create_instances(plane, batch, now)));
    }
    for batch in plan.lost.chunks(PLACEMENT_BATCH) {
        then.push(Box::pin(async move {
            stop_instances(plane, batch, now).await.map(|()| true)
        }));
    }
    committed.extend(concurrently(then).await?);
    // Forgetting is not urgent, and a node's death leaves a record to forget for each of its
    // instances: a pass forgets a few batches and plans the rest's services again at once,
    // so the writes that matter (reports of replacements running) are not queued behind a
    // thousand deletes.
    let mut forget = plan.forgets;
    let later = forget.split_off(forget.len().min(FORGETS_PER_PASS));
    if !later.is_empty() {
        let state = plane.reflector().read();
        for id in &later {
            if let Some(i) = state.instance(id) {
                let service = (i.value.env.clone(), i.value.service.clone());
                memory.rechecks.insert(service, now);
            }
        }
    }
    let mut forgets: Vec<Write<'_, ()>> = Vec::new();
    for batch in forget.chunks(PLACEMENT_BATCH) {
        let txn = batch.iter().fold(Txn::new(), |txn, id| {
            txn.delete(keys::instance(id)).delete(keys::status(id))
        });
        forgets.push(Box::pin(async move {
            plane.controller_txn(txn).await.map(|_| ())
        }));
    }
    concurrently(forgets).await?;
    if committed.contains(&false) {
        // Nothing in the work queue says these are still missing: plan everything next.
        memory.last_full = None;
    }
    for (env, name) in &plan.settled {
        let prefix = format!("{env}/{name}/");
        memory
            .placement_errors
            .retain(|key, _| !key.starts_with(&prefix));
    }
    for outcome in plan.outcomes {
        let (env, name) = &outcome.service;
        // Per release: a redeploy that cannot be placed for the same reason says so again.
        let key = format!("{env}/{name}/{}", outcome.release);
        let Some(message) = outcome.error else {
            memory.placement_errors.remove(&key);
            continue;
        };
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
    Ok(())
}

/// One of a pass's transactions, to run with others.
type Write<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ControlError>> + Send + 'a>>;

/// Runs `writes`, [`BATCHES_AT_ONCE`] at a time, to the end; their results, or the first
/// error (after every write ended: none is left half-way when the pass returns).
async fn concurrently<T>(writes: Vec<Write<'_, T>>) -> Result<Vec<T>, ControlError> {
    use futures::StreamExt;
    let results: Vec<Result<T, ControlError>> = futures::stream::iter(writes)
        .buffer_unordered(BATCHES_AT_ONCE)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Marks the instances of `batch` no longer wanted (with an event each) in one fenced
/// transaction guarded by the revisions the reflector holds; if any changed meanwhile, each
/// is stopped on its own (`ControlPlane::request_stop`, which reads it again).
async fn stop_instances(
    plane: &ControlPlane,
    batch: &[(InstanceId, &'static str)],
    now: u64,
) -> Result<(), ControlError> {
    let mut txn = Txn::new();
    {
        let state = plane.reflector().read();
        for (id, why) in batch {
            let Some(held) = state.instance(id) else {
                continue;
            };
            if held.value.desired == DesiredState::Stopped {
                continue;
            }
            let mut instance = held.value.clone();
            instance.desired = DesiredState::Stopped;
            instance.stop_requested_at = Some(now);
            let key = keys::instance(id);
            txn = txn.when(&key, held.revision).put(&key, encode(&instance));
            txn = plane
                .event_log()
                .stage(txn, crate::plane::stop_event(&instance, why));
        }
    }
    if txn.ops.is_empty() || plane.controller_txn(txn).await?.is_committed() {
        return Ok(());
    }
    for (id, why) in batch {
        plane
            .request_stop(id, why, crate::cas::Writer::Controller)
            .await?;
    }
    Ok(())
}

/// Creates the instances of `batch` in one fenced transaction, with their events (one per
/// service when it places several); whether it committed.
async fn create_instances(
    plane: &ControlPlane,
    batch: &[Placement],
    now: u64,
) -> Result<bool, ControlError> {
    let mut txn = Txn::new();
    let mut events = Vec::with_capacity(batch.len());
    // An id's suffix is 24 bits. A service's instances placed in one batch take consecutive
    // suffixes from a random start, so their records sit side by side in the store (the
    // embedded store then rewrites a few B-tree pages for the batch, not one page per
    // instance: 8 µs a write rather than 48 at two million records, by the `group_commit`
    // bench). One already held, or taken in this batch, is passed over.
    let mut ids = HashSet::with_capacity(batch.len());
    let mut next_suffix: HashMap<(&ServiceName, u64), u32> = HashMap::new();
    {
        let state = plane.reflector().read();
        for placement in batch {
            let service = &placement.service;
            let suffix = next_suffix
                .entry((&service.name, placement.release))
                .or_insert_with(rand::random);
            let id = loop {
                let id = InstanceId::for_release(&service.name, placement.release, *suffix);
                *suffix = suffix.wrapping_add(1);
                if !ids.contains(&id) && state.instance(&id).is_none() {
                    ids.insert(id.clone());
                    break id;
                }
            };
            let instance = Instance {
                id: id.clone(),
                env: service.env.clone(),
                service: service.name.clone(),
                release: placement.release,
                node: placement.node.clone(),
                node_epoch: placement.node_epoch,
                desired: DesiredState::Running,
                created_at: now,
                stop_requested_at: None,
                quarantine: None,
            };
            let key = keys::instance(&id);
            txn = txn.when(&key, 0).put(&key, encode(&instance));
            let mut event = crate::event_log::event(
                EventKind::InstancePlaced,
                format!(
                    "{id}: release {} placed on node {}",
                    placement.release, placement.node
                ),
            );
            event.env = Some(service.env.clone());
            event.service = Some(service.name.clone());
            event.instance = Some(id);
            event.node = Some(placement.node.clone());
            events.push(event);
        }
    }
    for event in crate::event_log::fold_routine_progress(events) {
        txn = plane.event_log().stage(txn, event);
    }
    let outcome = plane.controller_txn(txn).await?;
    if outcome.is_committed() {
        tracing::info!(count = batch.len(), "instances placed");
    } else {
        // Another id or event sequence was taken meanwhile (unlikely).
        tracing::debug!(
            ?outcome,
            "a placement batch conflicted; the next pass retries"
        );
    }
    Ok(outcome.is_committed())
}
