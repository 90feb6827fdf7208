//! Nodes and their instances: registration (with the epoch rule that fences a returning
//! node's stale instances), heartbeats (kept in memory), drains, assignments, status
//! reports and stop requests.

use super::*;

impl ControlPlane {
    /// Registers (or re-registers) a node. A node that comes back with the epoch it had and
    /// was never declared down keeps it, and re-adopts its instances; otherwise its epoch
    /// moves on and instances placed under the old one are fenced.
    pub async fn register_node(&self, request: RegisterNode) -> Result<Node, ControlError> {
        if let Some(refusal) = request.agent_version.as_deref().and_then(|agent| {
            strata_core::version::skew_refusal(agent, strata_core::version::VERSION)
        }) {
            return Err(ControlError::bad_request(
                format!("node `{}` cannot register: {refusal}", request.name),
                Some("docs/operations.md, \"Upgrades\", gives the order".to_string()),
            ));
        }
        if let Some(revoked) = self.revocation(&request.name) {
            return Err(ControlError::Forbidden {
                message: format!(
                    "node {} was {} at {}: its name is revoked",
                    revoked.name,
                    revoked.why,
                    strata_core::utc_time(revoked.revoked_at)
                ),
                hint: "a machine joins again under a new name (`strata agent --name NEW`)".into(),
            });
        }
        let key = keys::node(&request.name);
        let what = format!("node `{}`", request.name);
        let alive = self.heartbeats.heard_from_recently(&request.name);
        let node = self
            .update_cas(&key, &what, Writer::Api, |existing: Option<Node>| {
                if let Some(holder) = existing.as_ref() {
                    if let Some(refusal) = name_taken(holder, &request, alive) {
                        return Err(refusal);
                    }
                }
                let node = registered(existing.as_ref(), &request, self.now());
                Ok(Change::Write(node.clone(), node))
            })
            .await?;
        self.heartbeats.note(&node.name);
        let mut event = crate::event_log::event(
            EventKind::NodeRegistered,
            format!(
                "node {} registered at {} (epoch {})",
                node.name, node.agent_url, node.epoch
            ),
        );
        event.node = Some(node.name.clone());
        event.actor = Actor::Agent(node.name.to_string());
        self.event_log().record(event).await;
        self.kick.notify_one();
        Ok(node)
    }

    /// Records a heartbeat (in memory). Returns whether the agent must register again
    /// (unknown node, or its epoch is stale because it was declared down meanwhile).
    pub async fn heartbeat(&self, name: &NodeName, epoch: u64) -> Result<bool, ControlError> {
        // The common case costs no store read: a ready node of this epoch, as the reflector
        // holds it. Anything else (a node it has not seen yet, another epoch, a state to
        // change) is decided on the store's record.
        let known_ready = self
            .reflector
            .read()
            .node(name)
            .is_some_and(|n| n.value.epoch == epoch && n.value.state == NodeState::Ready);
        if known_ready {
            self.heartbeats.note(name);
            return Ok(false);
        }
        let key = keys::node(name);
        let Some((mut node, revision)) = self.get::<Node>(&key).await? else {
            return Ok(true);
        };
        if node.epoch != epoch || node.state == NodeState::Down {
            return Ok(true);
        }
        self.heartbeats.note(name);
        if node.state == NodeState::Suspect {
            node.state = NodeState::Ready;
            node.last_heartbeat = self.now();
            let committed = self
                .controller_txn(Txn::new().when(&key, revision).put(&key, encode(&node)))
                .await?
                .is_committed();
            if committed {
                let mut event = crate::event_log::event(
                    EventKind::NodeReady,
                    format!("node {name}: suspect -> ready (heartbeats resumed)"),
                );
                event.node = Some(name.clone());
                self.event_log().record(event).await;
            }
        }
        Ok(false)
    }

    /// Sets one of a node's flags (`flag` picks it) to `value`: the node and whether it
    /// changed, or `None` when there is no such node.
    async fn set_node_flag(
        &self,
        name: &NodeName,
        flag: impl Fn(&mut Node) -> &mut bool + Send + Sync,
        value: bool,
    ) -> Result<Option<(Node, bool)>, ControlError> {
        self.update_cas(
            &keys::node(name),
            &format!("node `{name}`"),
            Writer::Api,
            |found: Option<Node>| {
                Ok(match found {
                    None => Change::Keep(None),
                    Some(mut node) => {
                        if *flag(&mut node) == value {
                            Change::Keep(Some((node, false)))
                        } else {
                            *flag(&mut node) = value;
                            Change::Write(node.clone(), Some((node, true)))
                        }
                    }
                })
            },
        )
        .await
    }

    /// Starts or ends a drain of a node. A drain moves the node's instances elsewhere with no
    /// downtime (replacements first) and keeps new work off it.
    pub async fn set_draining(
        &self,
        name: &NodeName,
        draining: bool,
        actor: &Actor,
    ) -> Result<Node, ControlError> {
        let changed = self
            .set_node_flag(name, |node| &mut node.draining, draining)
            .await?;
        let Some((node, changed)) = changed else {
            let names: Vec<String> = self
                .nodes()
                .await?
                .into_iter()
                .map(|n| n.name.to_string())
                .collect();
            return Err(ControlError::not_found(
                format!("node `{name}`"),
                Some(format!("nodes: {}", names.join(", "))),
            ));
        };
        if changed {
            let (kind, what) = if draining {
                (
                    EventKind::NodeDraining,
                    "draining: its instances move to other nodes",
                )
            } else {
                (EventKind::NodeUndrained, "undrained: takes new work again")
            };
            let mut event = crate::event_log::event(kind, format!("node {name}: {what}"));
            event.node = Some(name.clone());
            event.actor = actor.clone();
            self.event_log().record(event).await;
            self.kick.notify_one();
        }
        Ok(node)
    }

    /// The node's agent is stopping: its instances move elsewhere (replacements first, as in
    /// a drain) before it stops them. Its next registration takes new work again.
    pub async fn set_leaving(&self, name: &NodeName) -> Result<Node, ControlError> {
        let changed = self
            .set_node_flag(name, |node| &mut node.leaving, true)
            .await?;
        let Some((node, changed)) = changed else {
            return Err(ControlError::not_found(format!("node `{name}`"), None));
        };
        if changed {
            let mut event = crate::event_log::event(
                EventKind::NodeLeaving,
                format!(
                    "node {name}: its agent is stopping; its instances move to other nodes first"
                ),
            );
            event.node = Some(name.clone());
            event.actor = Actor::Node(name.to_string());
            self.event_log().record(event).await;
            self.kick.notify_one();
        }
        Ok(node)
    }

    /// What a node must run: its instances with their releases and configs, as of every
    /// write the store had committed when asked (read from the reflector's index of the
    /// node, not a listing).
    pub async fn assignments(&self, node: &NodeName) -> Result<Assignments, ControlError> {
        self.reflector_caught_up().await?;
        self.secrets_ready().await;
        Ok(self.assignments_now(node))
    }

    /// A blocking query (as Nomad's clients make for their allocations): waits at most
    /// `wait` until what `node` must run changed after `index` (the `revision` of the
    /// assignments the node holds), then answers with what changed since `index` in full and
    /// the rest by id. An agent holds one open instead of watching every instance of the
    /// cluster, and a change costs an answer the size of the change.
    ///
    /// With `removals`, the caller takes an answer by removals when the server can give one
    /// ([`Assignments::since`]): the changed instances and the ids of those that left, not
    /// every id that stayed.
    pub async fn assignments_after(
        &self,
        node: &NodeName,
        index: u64,
        wait: std::time::Duration,
        removals: bool,
    ) -> Assignments {
        // Dropped unanswered (its caller's connection closed), the query tells liveness the
        // node's agent is gone.
        let held = self.heartbeats().query_held(node.as_str());
        self.reflector.node_changed_after(node, index, wait).await;
        self.secrets_ready().await;
        let answer = self.assignments_since(node, index, removals);
        held.answered();
        answer
    }

    /// What `node` must run, as the reflector holds it now.
    fn assignments_now(&self, node: &NodeName) -> Assignments {
        self.assignments_since(node, 0, false)
    }

    /// What `node` must run: in full, the instances written after `index` (all, for 0); by
    /// id, the others, or (`removals`, when the reflector knows every removal since `index`)
    /// only those that left.
    fn assignments_since(&self, node: &NodeName, index: u64, removals: bool) -> Assignments {
        let state = self.reflector.read();
        let removed = (removals && index > 0)
            .then(|| state.removed_from_node_since(node, index))
            .flatten();
        let mut unchanged = Vec::new();
        let changed: Vec<&InstanceId> = if removed.is_some() {
            // By removals: only what changed is looked at, not all the node holds.
            state.instances_on_changed_after(node, index).collect()
        } else {
            let mut changed = Vec::new();
            for (id, revision) in state.instance_revisions_on(node) {
                if revision <= index {
                    unchanged.push(id.clone());
                } else {
                    changed.push(id);
                }
            }
            changed
        };
        let mut assignments = Vec::with_capacity(changed.len());
        // A changed instance whose release or config is gone (its service deleted) cannot
        // be run: it is left out of the set, so an answer by removals names it as removed.
        let mut unrunnable = Vec::new();
        for id in changed {
            let assignable = state
                .instance(id)
                .map(|held| &held.value)
                .and_then(|instance| {
                    let release =
                        state.release(&instance.env, &instance.service, instance.release)?;
                    let config =
                        state.config(&instance.env, &instance.service, release.config_version)?;
                    Some((instance, release, config))
                });
            let Some((instance, release, config)) = assignable else {
                unrunnable.push(id.clone());
                continue;
            };
            // Values only for an instance the node must run (a stopping one started with
            // them already).
            let secrets = match instance.desired {
                DesiredState::Running => {
                    match self.deliver_secrets(release, |key| state.secret(key)) {
                        Ok(secrets) => secrets,
                        Err(why) => {
                            tracing::error!(instance = %id, "cannot give the instance its secrets: {why}");
                            unrunnable.push(id.clone());
                            continue;
                        }
                    }
                }
                DesiredState::Stopped => Vec::new(),
            };
            assignments.push(Assignment {
                instance: instance.clone(),
                release: release.as_ref().clone(),
                config: config.as_ref().clone(),
                secrets,
            });
        }
        Assignments {
            revision: state.revision(),
            assignments,
            unchanged,
            since: removed.is_some().then_some(index),
            removed: match removed {
                Some(removed) => removed.into_iter().cloned().chain(unrunnable).collect(),
                None => Vec::new(),
            },
            decommission: state.node(node).and_then(|n| n.value.decommission.clone()),
        }
    }

    /// Stores an agent's report on an instance; records an event when its state changes.
    /// Fails with not-found if the instance is no longer wanted (the agent then stops it).
    pub async fn report_status(&self, status: InstanceStatus) -> Result<(), ControlError> {
        let (id, node) = (status.id.clone(), status.node.clone());
        let stored = self.report_statuses(&node, vec![status]).await?;
        if stored.not_wanted.is_empty() {
            return Ok(());
        }
        match self.get::<Instance>(&keys::instance(&id)).await? {
            Some((instance, _)) => Err(ControlError::Conflict {
                message: format!(
                    "instance `{id}` belongs to node {}, not {node}",
                    instance.node
                ),
                hint: Some("stop it".to_string()),
            }),
            None => Err(ControlError::not_found(
                format!("instance `{id}`"),
                Some("it is no longer wanted; stop it".to_string()),
            )),
        }
    }

    /// Stores what `node` reports of its instances, in order (for each instance), a
    /// transaction for each [`STATUSES_PER_TXN`], with an event for each change of state (routine steps of one
    /// service folded into one). Statuses of instances no longer wanted, or placed on
    /// another node, are not stored: the answer names them (the agent stops them).
    pub async fn report_statuses(
        &self,
        node: &NodeName,
        statuses: Vec<InstanceStatus>,
    ) -> Result<StatusReportsStored, ControlError> {
        use futures::{StreamExt, TryStreamExt};
        type ReportWrite<'a> = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<StatusReportsStored, ControlError>>
                    + Send
                    + 'a,
            >,
        >;
        let mut stored = StatusReportsStored::default();
        // Transactions in flight together share the store's disk syncs (a node reporting a
        // thousand new instances at once waits for one or two, not twenty-five); an instance
        // reported twice keeps its order, its statuses then going one transaction after
        // another.
        let mut seen = std::collections::HashSet::with_capacity(statuses.len());
        let at_once = match statuses.iter().all(|s| seen.insert(&s.id)) {
            true => REPORT_TXNS_AT_ONCE,
            false => 1,
        };
        let mut writes: Vec<ReportWrite<'_>> = Vec::new();
        for chunk in statuses.chunks(STATUSES_PER_TXN) {
            writes.push(Box::pin(self.report_some_statuses(node, chunk)));
        }
        let parts: Vec<StatusReportsStored> = futures::stream::iter(writes)
            .buffered(at_once)
            .try_collect()
            .await?;
        for part in parts {
            for id in part.not_wanted {
                if !stored.not_wanted.contains(&id) {
                    stored.not_wanted.push(id);
                }
            }
        }
        Ok(stored)
    }

    /// Stores `statuses` (at most [`STATUSES_PER_TXN`]) in one transaction: first judged on
    /// what the reflector holds (no store read), each record guarded by the revision it was
    /// read at; if one changed meanwhile, again on the store's records.
    async fn report_some_statuses(
        &self,
        node: &NodeName,
        statuses: &[InstanceStatus],
    ) -> Result<StatusReportsStored, ControlError> {
        let mut conflict = None;
        for from_store in [false, true, true] {
            let records = self.report_records(node, statuses, from_store).await?;
            match self.store_reports(node, statuses, &records).await? {
                Ok(stored) => return Ok(stored),
                Err(key) => conflict = Some(key),
            }
        }
        Err(ControlError::Conflict {
            message: format!(
                "{} kept changing while node {node}'s statuses were stored",
                conflict.unwrap_or_default()
            ),
            hint: Some("report again".into()),
        })
    }

    /// The instance and status records (with their revisions) of the instances `statuses`
    /// name: from the reflector unless `from_store` (or it does not hold the instance yet).
    async fn report_records(
        &self,
        node: &NodeName,
        statuses: &[InstanceStatus],
        from_store: bool,
    ) -> Result<ReportRecords, ControlError> {
        let mut records = ReportRecords::new();
        if !from_store {
            let state = self.reflector.read();
            for status in statuses {
                if let Some(held) = state.instance(&status.id) {
                    let current = state
                        .status(&status.id)
                        .map(|s| (s.value.clone(), s.revision));
                    records.insert(
                        status.id.clone(),
                        (Some((held.value.clone(), held.revision)), current),
                    );
                }
            }
        }
        for status in statuses {
            if records.contains_key(&status.id) {
                continue;
            }
            let instance = self.get::<Instance>(&keys::instance(&status.id)).await?;
            // Only a wanted instance's status is read (or stored).
            let current = match &instance {
                Some((instance, _)) if instance.node == *node => {
                    self.get::<InstanceStatus>(&keys::status(&status.id))
                        .await?
                }
                _ => None,
            };
            records.insert(status.id.clone(), (instance, current));
        }
        Ok(records)
    }

    /// Stores `statuses` over `records` in one transaction, with an event for each change of
    /// state (routine steps of one service folded into one), guarded by the records'
    /// revisions; `Err(key)` if one of them changed.
    async fn store_reports(
        &self,
        node: &NodeName,
        statuses: &[InstanceStatus],
        records: &ReportRecords,
    ) -> Result<Result<StatusReportsStored, String>, ControlError> {
        let mut stored = StatusReportsStored::default();
        // The latest status of each instance so far: the store's, then this report's own.
        let mut latest: BTreeMap<&InstanceId, Option<InstanceStatus>> = BTreeMap::new();
        let mut txn = Txn::new();
        let mut events = Vec::new();
        for status in statuses {
            let (instance, current) = &records[&status.id];
            let instance = match instance {
                Some((instance, _)) if instance.node == *node && status.node == *node => instance,
                _ => {
                    if !stored.not_wanted.contains(&status.id) {
                        stored.not_wanted.push(status.id.clone());
                    }
                    continue;
                }
            };
            let previous = latest
                .entry(&status.id)
                .or_insert_with(|| current.as_ref().map(|(s, _)| s.clone()));
            let mut status = status.clone();
            // Healthy since when, by this plane's clock: kept across reports while it stays
            // running, so `min_ready` measures an unbroken stretch.
            status.ready_since = match (status.state, previous.as_ref()) {
                (InstanceState::Running, Some(p)) if p.state == InstanceState::Running => {
                    p.ready_since.or(Some(self.now()))
                }
                (InstanceState::Running, _) => Some(self.now()),
                _ => None,
            };
            if previous.as_ref().map(|p| p.state) != Some(status.state) {
                events.push(status_event(instance, &status));
            }
            *previous = Some(status);
        }
        if latest.is_empty() {
            return Ok(Ok(stored));
        }
        // Each instance's last status, once (a key is written once per transaction), guarded:
        // every record this report was judged on is as read.
        for (id, status) in &latest {
            let (instance, current) = &records[*id];
            let instance_revision = instance.as_ref().map_or(0, |(_, revision)| *revision);
            let status_revision = current.as_ref().map_or(0, |(_, revision)| *revision);
            let status = status.as_ref().expect("a report's own status");
            txn = txn
                .when(keys::instance(id), instance_revision)
                .when(keys::status(id), status_revision)
                .put(keys::status(id), encode(status));
        }
        let changed = !events.is_empty();
        let events = crate::event_log::fold_routine_progress(events);
        let logged = crate::event_log::log_lines(&events);
        for event in events {
            txn = self.events.stage(txn, event);
        }
        match self.store.txn(txn).await? {
            TxnOutcome::Committed(_) => {}
            TxnOutcome::Conflict { key } => return Ok(Err(key)),
        }
        for (kind, message) in logged {
            tracing::info!(%kind, node = %node, "{message}");
        }
        if changed {
            self.kick.notify_one();
        }
        Ok(Ok(stored))
    }

    /// Marks an instance as no longer wanted (idempotent), written as `writer` (a controller,
    /// fenced; or an API call), with an event saying `why`. Fails, rather than giving up
    /// silently, if the record keeps changing.
    pub(crate) async fn request_stop(
        &self,
        id: &InstanceId,
        why: &str,
        writer: Writer,
    ) -> Result<(), ControlError> {
        let key = keys::instance(id);
        let stopped = self
            .update_cas(
                &key,
                &format!("instance `{id}`"),
                writer,
                |found: Option<Instance>| {
                    Ok(match found {
                        Some(mut instance) if instance.desired != DesiredState::Stopped => {
                            instance.desired = DesiredState::Stopped;
                            instance.stop_requested_at = Some(self.now());
                            Change::Write(instance.clone(), Some(instance))
                        }
                        _ => Change::Keep(None),
                    })
                },
            )
            .await?;
        if let Some(instance) = stopped {
            self.event_log().record(stop_event(&instance, why)).await;
        }
        Ok(())
    }
}

/// The event telling that `instance` is being stopped, and why.
pub(crate) fn stop_event(instance: &Instance, why: &str) -> Event {
    let id = &instance.id;
    let mut event =
        crate::event_log::event(EventKind::InstanceStop, format!("{id}: stopping ({why})"));
    event.env = Some(instance.env.clone());
    event.service = Some(instance.service.clone());
    event.instance = Some(id.clone());
    event.node = Some(instance.node.clone());
    event
}

/// The event telling that `instance` is now as `status` says.
/// How many statuses one transaction stores: each takes a put and two compares, and an event
/// another put and compare, within etcd's default limit of 128 of each per transaction.
const STATUSES_PER_TXN: usize = 40;

/// How many of one report's transactions are in flight at once.
const REPORT_TXNS_AT_ONCE: usize = 8;

/// What a status report is judged on, by instance: its record and its last stored status,
/// each with the revision it was read at (`None`: there is none).
type ReportRecords = BTreeMap<
    InstanceId,
    (
        Option<(Instance, strata_store::Revision)>,
        Option<(InstanceStatus, strata_store::Revision)>,
    ),
>;

fn status_event(instance: &Instance, status: &InstanceStatus) -> Event {
    let kind = match status.state {
        InstanceState::Running => EventKind::InstanceHealthy,
        InstanceState::Backoff => EventKind::InstanceCrashed,
        InstanceState::Unhealthy => EventKind::InstanceUnhealthy,
        InstanceState::Failed => EventKind::InstanceFailed,
        InstanceState::Stopped => EventKind::InstanceStopped,
        InstanceState::Starting => EventKind::InstanceStarted,
        InstanceState::Stopping => EventKind::InstanceStopping,
        InstanceState::Pending => EventKind::InstancePending,
    };
    let mut event = crate::event_log::event(kind, format!("{}: {}", status.id, status.message));
    event.env = Some(instance.env.clone());
    event.service = Some(instance.service.clone());
    event.instance = Some(status.id.clone());
    event.node = Some(status.node.clone());
    event.actor = Actor::Agent(status.node.to_string());
    event
}

/// The node record a registration makes of what was stored (`None`: a new node). A node
/// that comes back with the epoch it had and was never declared down keeps it (and re-adopts
/// its instances); otherwise its epoch moves on and instances placed under the old one are
/// fenced.
/// One identity per node: an agent at another address cannot take the name of a node that
/// is alive (heard from within the down threshold, and not down), as a cloned machine with
/// the same host name would; the agent at the node's own address (a restart) can.
fn name_taken(holder: &Node, request: &RegisterNode, alive: bool) -> Option<ControlError> {
    let taken = alive && holder.state != NodeState::Down && holder.agent_url != request.agent_url;
    taken.then(|| ControlError::Conflict {
        message: format!(
            "node `{}` is alive at {}; the agent at {} cannot take its name",
            holder.name, holder.agent_url, request.agent_url
        ),
        hint: Some(
            "give this agent its own --name (the default is the host name, which cloned machines share); if the node is gone, its name is free once it is down"
                .to_string(),
        ),
    })
}

fn registered(existing: Option<&Node>, request: &RegisterNode, now: u64) -> Node {
    let epoch = match existing {
        Some(node) if node.state != NodeState::Down && request.last_epoch == Some(node.epoch) => {
            node.epoch
        }
        Some(node) => node.epoch + 1,
        None => 1,
    };
    Node {
        name: request.name.clone(),
        agent_url: request.agent_url.clone(),
        labels: request.labels.clone(),
        capacity: request.capacity,
        drivers: request.drivers.clone(),
        epoch,
        state: NodeState::Ready,
        draining: existing.is_some_and(|n| n.draining),
        leaving: false,
        // An agent that restarts while its node is decommissioned goes on with it.
        decommission: existing.and_then(|n| n.decommission.clone()),
        mesh_addr: request.mesh_addr.clone(),
        last_heartbeat: now,
        registered_at: existing.map_or(now, |n| n.registered_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_keeps_the_epoch_only_of_a_node_that_never_went_down() {
        let request = |last_epoch| RegisterNode {
            name: strata_core::NodeName::from_static("n1"),
            agent_url: "http://10.0.0.1:7701".into(),
            labels: BTreeMap::new(),
            capacity: Default::default(),
            drivers: vec![],
            last_epoch,
            mesh_addr: None,
            agent_version: None,
        };
        let stored = |epoch, state, draining| Node {
            epoch,
            state,
            draining,
            registered_at: 5,
            ..registered(None, &request(None), 5)
        };
        // (stored, last epoch the agent ran under, epoch, draining kept, registered_at)
        let table = [
            (None, None, 1, false, 100),
            (
                Some(stored(3, NodeState::Ready, false)),
                Some(3),
                3,
                false,
                5,
            ),
            (
                Some(stored(3, NodeState::Suspect, true)),
                Some(3),
                3,
                true,
                5,
            ),
            (
                Some(stored(3, NodeState::Down, false)),
                Some(3),
                4,
                false,
                5,
            ),
            (
                Some(stored(3, NodeState::Ready, false)),
                Some(2),
                4,
                false,
                5,
            ),
            (Some(stored(3, NodeState::Ready, false)), None, 4, false, 5),
        ];
        for (existing, last, epoch, draining, since) in table {
            let node = registered(existing.as_ref(), &request(last), 100);
            assert_eq!(
                (node.epoch, node.draining, node.registered_at, node.state),
                (epoch, draining, since, NodeState::Ready),
                "{existing:?} {last:?}"
            );
        }
    }
}
