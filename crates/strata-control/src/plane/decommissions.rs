//! Decommissioning a node (`strata node decommission`): the operator's request (refused, as
//! `strata_sched::decommission` decides, when the node cannot archive itself or would take
//! work no other node can run), then the node's own steps as its agent reports them:
//! draining, archiving (its archive arrives through [`ControlPlane::store_node_archive`]),
//! wiping, and the end, where its identity is revoked (`/revoked/nodes/NAME`: the API and
//! every node's mesh refuse its credential, certificates and name) and a decommission record
//! is kept. A node that cannot be reached is revoked at once (`--unreachable`), with nothing
//! archived or wiped, as its record says.

use std::collections::BTreeMap;

use strata_core::archive::ArchiveRecord;
use strata_core::decommission::{
    DecommissionOutcome, DecommissionPhase, DecommissionProgress, DecommissionRecord,
    DecommissionRequest, DecommissionStatus, Decommissioning, NodeHistory, RevokedNode,
};
use strata_core::{keys, Actor, DesiredState, EventKind, Node, NodeName};
use strata_sched::decommission::{refusal, what_would_stop, Asked, Held, Stranded};
use strata_sched::Demand;
use strata_store::Txn;

use super::{encode, ControlPlane};
use crate::cas::{Change, Writer};
use crate::reflector::ClusterState;
use crate::ControlError;

/// How many times a write that races another is tried again.
const ATTEMPTS: usize = 8;
/// The longest reason a node's report keeps.
const REASON_MAX: usize = 2000;
/// The most events (and audit records) of a node its archive holds.
const HISTORY_MAX: usize = 100_000;

impl ControlPlane {
    /// Starts decommissioning node `name` as `request` asks (or, `--unreachable`, revokes it
    /// at once). Asking again while one runs answers how it stands; a failed one starts over.
    pub async fn decommission_node(
        &self,
        name: &NodeName,
        request: &DecommissionRequest,
        actor: &Actor,
    ) -> Result<DecommissionStatus, ControlError> {
        self.reflector_caught_up().await?;
        if let Some(record) = self.decommission_record(name).await? {
            return Ok(finished(name, record));
        }
        let (node, stranded) = {
            let state = self.reflector.read();
            let Some(node) = state.node(name) else {
                return Err(ControlError::not_found(
                    format!("node `{name}`"),
                    Some("`strata node ls` lists the nodes".to_string()),
                ));
            };
            (node.value.clone(), stranded_by(&state, name))
        };
        match node.decommission.as_ref() {
            Some(running) if running.phase == DecommissionPhase::Revoked => {
                return self.decommission_status(name).await
            }
            Some(running) if running.phase != DecommissionPhase::Failed && !request.unreachable => {
                if (running.force, running.wipe) != (request.force, request.wipe) {
                    return Err(ControlError::Conflict {
                        message: format!(
                            "node {name} is being decommissioned already, with --wipe {} {}",
                            running.wipe.as_str(),
                            if running.force { "and --force" } else { "without --force" }
                        ),
                        hint: Some(format!(
                            "`strata node decommission {name}` with the same options follows it; other options apply if it fails and is asked again"
                        )),
                    });
                }
                return self.decommission_status(name).await;
            }
            _ => {}
        }
        let asked = Asked {
            force: request.force,
            unreachable: request.unreachable,
        };
        // Heartbeats are counted on the leader; any server reads the leader's judgement in
        // the record (a ready node is heard from).
        let heard = self.heartbeats.heard_from_recently(name)
            || node.state == strata_core::NodeState::Ready;
        if let Some((message, hint)) = refusal(name, node.state, heard, asked, &stranded) {
            return Err(ControlError::Conflict {
                message,
                hint: Some(hint),
            });
        }
        if request.unreachable {
            self.revoke_unreachable(name, request.force, actor).await?;
        } else {
            self.begin_decommission(name, request, &stranded, actor)
                .await?;
            self.stop_stranded(name, &stranded).await?;
        }
        self.kick.notify_one();
        self.decommission_status(name).await
    }

    /// Marks node `name` decommissioning (draining; or wiping again, when a failed one had
    /// its archive kept).
    async fn begin_decommission(
        &self,
        name: &NodeName,
        request: &DecommissionRequest,
        stranded: &[Stranded],
        actor: &Actor,
    ) -> Result<(), ControlError> {
        let force = request.force;
        let now = self.now();
        let by = actor.to_string();
        let node = self
            .update_cas(
                &keys::node(name),
                &format!("node `{name}`"),
                Writer::Api,
                |found: Option<Node>| {
                    let Some(mut node) = found else {
                        return Err(ControlError::not_found(format!("node `{name}`"), None));
                    };
                    let archive = node.decommission.as_ref().and_then(|d| d.archive.clone());
                    node.decommission = Some(Decommissioning {
                        phase: match archive {
                            Some(_) => DecommissionPhase::Wiping,
                            None => DecommissionPhase::Draining,
                        },
                        requested_by: by.clone(),
                        requested_at: now,
                        force,
                        archive,
                        reason: None,
                        wipe: request.wipe,
                        since: now,
                    });
                    Ok(Change::Write(node.clone(), node))
                },
            )
            .await?;
        let what = match stranded {
            [] => "its instances move to other nodes first, then it archives what it held and wipes it".to_string(),
            some => format!(
                "forced: {} stop with it; the rest move to other nodes first",
                some.iter()
                    .map(|s| s.service.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let phase = node.decommission.as_ref().map(|d| d.phase);
        let what = match phase {
            Some(DecommissionPhase::Wiping) => {
                "asked again: its archive is kept; it wipes its data".to_string()
            }
            _ => what,
        };
        self.note_decommission(name, actor.clone(), format!("decommissioning: {what}"))
            .await;
        Ok(())
    }

    /// Stops, of each service in `stranded`, the instances on node `name` no other node can
    /// take (a forced decommission): the rest move as in a drain.
    async fn stop_stranded(
        &self,
        name: &NodeName,
        stranded: &[Stranded],
    ) -> Result<(), ControlError> {
        let mut to_stop: Vec<strata_core::InstanceId> = Vec::new();
        {
            let state = self.reflector.read();
            for service in stranded {
                let ids: Vec<_> = state
                    .instance_revisions_on(name)
                    .filter_map(|(id, _)| state.instance(id))
                    .map(|i| &i.value)
                    .filter(|i| {
                        i.desired == DesiredState::Running
                            && i.release == service.release
                            && format!("{}/{}", i.env, i.service) == service.service
                            && !to_stop.contains(&i.id)
                    })
                    .take(service.stranded)
                    .map(|i| i.id.clone())
                    .collect();
                to_stop.extend(ids);
            }
        }
        let why = format!("node {name} is decommissioned (--force) and no other node can take it");
        for id in to_stop {
            self.request_stop(&id, &why, Writer::Api).await?;
        }
        Ok(())
    }

    /// Revokes node `name` now, with nothing (more) archived or wiped (it cannot be reached,
    /// or an operator forced it): its record says so, naming an archive kept before, and the
    /// node's record goes once its instances are replaced and gone.
    async fn revoke_unreachable(
        &self,
        name: &NodeName,
        force: bool,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        let now = self.now();
        for _ in 0..ATTEMPTS {
            let Some((mut node, revision)) = self.get::<Node>(&keys::node(name)).await? else {
                return Err(ControlError::not_found(format!("node `{name}`"), None));
            };
            // A decommission that got as far as a kept archive says so, and keeps it named.
            let running = node.decommission.as_ref();
            let archive = running.and_then(|d| d.archive.clone());
            let note = match (&archive, running.map(|d| d.phase)) {
                (Some(archive), Some(phase)) => format!(
                    "unreachable while {}: archive {archive} was kept; its wipe was not reported; its identity is revoked",
                    phase.as_str()
                ),
                _ => "unreachable: nothing of it was archived or wiped; its identity is revoked"
                    .to_string(),
            };
            let record = DecommissionRecord {
                node: name.to_string(),
                outcome: DecommissionOutcome::Unreachable,
                requested_by: actor.to_string(),
                requested_at: now,
                finished_at: now,
                archive: archive.clone(),
                wipe: None,
                force,
                note: note.clone(),
            };
            node.decommission = Some(Decommissioning {
                phase: DecommissionPhase::Revoked,
                requested_by: actor.to_string(),
                requested_at: now,
                force,
                archive,
                reason: Some(note.clone()),
                wipe: Default::default(),
                since: now,
            });
            let txn = Txn::new()
                .when(keys::node(name), revision)
                .put(keys::node(name), encode(&node));
            let txn = revoke_in(txn, name, &record, "decommissioned as unreachable");
            let mut event = crate::event_log::event(
                EventKind::NodeDecommissioned,
                format!("node {name}: {note}"),
            );
            event.node = Some(name.clone());
            event.actor = actor.clone();
            let txn = self.event_log().stage(txn, event);
            if self.store.txn(txn).await?.is_committed() {
                tracing::warn!(node = %name, "{note}");
                return Ok(());
            }
        }
        Err(gave_up(name))
    }

    /// How node `name`'s decommission stands: running (with the instances it still holds),
    /// or finished (its record).
    pub async fn decommission_status(
        &self,
        name: &NodeName,
    ) -> Result<DecommissionStatus, ControlError> {
        self.reflector_caught_up().await?;
        let running = {
            let state = self.reflector.read();
            state.node(name).map(|node| DecommissionStatus {
                node: name.to_string(),
                running: node.value.decommission.clone(),
                instances: state.instance_revisions_on(name).count() as u64,
                finished: None,
            })
        };
        let record = self.decommission_record(name).await?;
        match (running, record) {
            (_, Some(record)) => Ok(finished(name, record)),
            (Some(status), None) => Ok(status),
            (None, None) => Err(ControlError::not_found(
                format!("node `{name}`"),
                Some("`strata node ls` lists the nodes, `strata node decommissions` the decommissioned".to_string()),
            )),
        }
    }

    /// Every decommissioned node's record, oldest first.
    pub async fn decommissions(&self) -> Result<Vec<DecommissionRecord>, ControlError> {
        let mut records: Vec<DecommissionRecord> = self
            .list::<DecommissionRecord>(keys::DECOMMISSIONS)
            .await?
            .into_iter()
            .map(|(record, _)| record)
            .collect();
        records.sort_by_key(|r| (r.finished_at, r.node.clone()));
        Ok(records)
    }

    async fn decommission_record(
        &self,
        name: &NodeName,
    ) -> Result<Option<DecommissionRecord>, ControlError> {
        Ok(self
            .get::<DecommissionRecord>(&keys::decommission(name))
            .await?
            .map(|(record, _)| record))
    }

    /// Node `name`'s revocation, if its identity is revoked (as this server's view holds it).
    pub fn revocation(&self, name: &str) -> Option<RevokedNode> {
        self.reflector.read().revoked(name).cloned()
    }

    /// A decommissioning node's agent reports a step: it holds nothing and is archiving, its
    /// data is wiped (the end: it is revoked and forgotten), or a step failed.
    pub async fn decommission_progress(
        &self,
        name: &NodeName,
        progress: &DecommissionProgress,
    ) -> Result<DecommissionStatus, ControlError> {
        self.reflector_caught_up().await?;
        if let Some(record) = self.decommission_record(name).await? {
            // Its last report sent again (the answer lost).
            return Ok(finished(name, record));
        }
        match progress {
            DecommissionProgress::Archiving => {
                let holding = running_on(&self.reflector.read(), name);
                if holding > 0 {
                    return Err(ControlError::Conflict {
                        message: format!("node {name} still runs {holding} instance(s)"),
                        hint: Some("it archives once its instances moved to other nodes".into()),
                    });
                }
                self.move_phase(name, DecommissionPhase::Archiving, None, |phase| {
                    matches!(
                        phase,
                        DecommissionPhase::Draining
                            | DecommissionPhase::Archiving
                            | DecommissionPhase::Failed
                    )
                })
                .await?;
            }
            DecommissionProgress::Failed { reason } => {
                let reason: String = reason.chars().take(REASON_MAX).collect();
                self.move_phase(name, DecommissionPhase::Failed, Some(reason), |phase| {
                    phase != DecommissionPhase::Revoked
                })
                .await?;
            }
            DecommissionProgress::Wiped { wipe } => self.finish_wiped(name, wipe).await?,
        }
        self.decommission_status(name).await
    }

    /// Moves node `name`'s decommission to `phase` (from a phase `from` accepts), with an
    /// event when it changed.
    async fn move_phase(
        &self,
        name: &NodeName,
        phase: DecommissionPhase,
        reason: Option<String>,
        from: impl Fn(DecommissionPhase) -> bool + Send + Sync,
    ) -> Result<(), ControlError> {
        let now = self.now();
        let moved = self
            .change_decommission(name, |running| {
                if running.phase == phase && running.reason == reason {
                    return Ok(false);
                }
                if !from(running.phase) {
                    return Err(ControlError::Conflict {
                        message: format!(
                            "node {name}'s decommission is {}, not a step before {}",
                            running.phase.as_str(),
                            phase.as_str()
                        ),
                        hint: Some(format!(
                            "`strata node decommission {name}` says how it stands"
                        )),
                    });
                }
                running.phase = phase;
                running.reason = reason.clone();
                running.since = now;
                Ok(true)
            })
            .await?
            .ok_or_else(|| not_decommissioning(name))?;
        if moved {
            let what = match (&phase, &reason) {
                (DecommissionPhase::Failed, Some(reason)) => {
                    format!("decommission failed: {reason}")
                }
                (DecommissionPhase::Archiving, _) => "drained: archiving what it held".to_string(),
                (phase, _) => format!("decommission: {}", phase.as_str()),
            };
            self.note_decommission(name, Actor::Node(name.to_string()), what)
                .await;
        }
        Ok(())
    }

    /// Before a decommissioning node's archive is taken in: only once it reported it holds
    /// nothing (its archive must hold all it ran).
    pub(super) fn check_archive_may_come(&self, name: &NodeName) -> Result<(), ControlError> {
        let state = self.reflector.read();
        let phase = state
            .node(name)
            .and_then(|n| n.value.decommission.as_ref().map(|d| d.phase));
        match phase {
            Some(DecommissionPhase::Draining) => Err(ControlError::Conflict {
                message: format!(
                    "node {name} is still draining ({} instance(s) running)",
                    running_on(&state, name)
                ),
                hint: Some("its agent archives once it holds nothing".into()),
            }),
            _ => Ok(()),
        }
    }

    /// A decommissioning node's archive is kept: the node may wipe its data now.
    pub(super) async fn archive_kept_for_decommission(
        &self,
        name: &NodeName,
        record: &ArchiveRecord,
    ) -> Result<(), ControlError> {
        if record.subject != "node" {
            return Ok(());
        }
        let now = self.now();
        let moved = self
            .change_decommission(name, |running| {
                if running.archive.as_deref() == Some(record.id.as_str())
                    || running.phase == DecommissionPhase::Revoked
                {
                    return Ok(false);
                }
                running.phase = DecommissionPhase::Wiping;
                running.archive = Some(record.id.clone());
                running.reason = None;
                running.since = now;
                Ok(true)
            })
            .await?
            .unwrap_or(false);
        if moved {
            self.note_decommission(
                name,
                Actor::Node(name.to_string()),
                format!("archive {} kept: wiping its data", record.id),
            )
            .await;
        }
        Ok(())
    }

    /// The end of a decommission: the node's data is wiped after its archive was kept. Its
    /// record and its instances' go; its identity is revoked; the decommission record stays.
    async fn finish_wiped(
        &self,
        name: &NodeName,
        wipe: &strata_core::decommission::WipeSummary,
    ) -> Result<(), ControlError> {
        for _ in 0..ATTEMPTS {
            let Some((node, revision)) = self.get::<Node>(&keys::node(name)).await? else {
                return Err(ControlError::not_found(format!("node `{name}`"), None));
            };
            let Some(running) = node.decommission.as_ref() else {
                return Err(not_decommissioning(name));
            };
            let (DecommissionPhase::Wiping, Some(archive)) = (running.phase, &running.archive)
            else {
                return Err(ControlError::Conflict {
                    message: format!(
                        "node {name} reports a wipe, but its decommission is {} with no archive kept",
                        running.phase.as_str()
                    ),
                    hint: Some("a node wipes only after its archive was kept".into()),
                });
            };
            let record = DecommissionRecord {
                node: name.to_string(),
                outcome: DecommissionOutcome::Wiped,
                requested_by: running.requested_by.clone(),
                requested_at: running.requested_at,
                finished_at: self.now(),
                archive: Some(archive.clone()),
                wipe: Some(wipe.clone()),
                force: running.force,
                note: String::new(),
            };
            let mut txn = Txn::new()
                .when(keys::node(name), revision)
                .delete(keys::node(name));
            let held: Vec<String> = self
                .reflector
                .read()
                .instance_revisions_on(name)
                .map(|(id, _)| id.to_string())
                .collect();
            for id in held {
                txn = txn.delete(keys::instance(&id)).delete(keys::status(&id));
            }
            let txn = revoke_in(txn, name, &record, "decommissioned");
            let mut event = crate::event_log::event(
                EventKind::NodeDecommissioned,
                format!(
                    "node {name}: decommissioned: archive {archive} kept, {} file(s) ({} bytes) wiped; its identity is revoked",
                    wipe.files, wipe.bytes
                ),
            );
            event.node = Some(name.clone());
            event.actor = Actor::Node(name.to_string());
            let txn = self.event_log().stage(txn, event);
            if self.store.txn(txn).await?.is_committed() {
                self.kick.notify_one();
                tracing::info!(node = %name, archive, "decommissioned");
                return Ok(());
            }
        }
        Err(gave_up(name))
    }

    /// What node `name`'s archive holds of the cluster's history: the events about it and
    /// the audit records of its own calls.
    pub async fn node_history(&self, name: &NodeName) -> Result<NodeHistory, ControlError> {
        let mut events = self.events(None, usize::MAX).await?;
        events.retain(|event| event.node.as_ref() == Some(name));
        let skip = events.len().saturating_sub(HISTORY_MAX);
        events.drain(..skip);
        let query = crate::audit::AuditQuery {
            who: Some(Actor::Node(name.to_string()).to_string()),
            limit: HISTORY_MAX,
            ..Default::default()
        };
        let audit = crate::audit::read(&self.store, &query).await?;
        Ok(NodeHistory { events, audit })
    }

    /// Node `name`'s decommission as `change` leaves it (written when it says it changed
    /// something): whether it did; `None` when the node has none (or is gone).
    async fn change_decommission(
        &self,
        name: &NodeName,
        mut change: impl FnMut(&mut Decommissioning) -> Result<bool, ControlError> + Send,
    ) -> Result<Option<bool>, ControlError> {
        self.update_cas(
            &keys::node(name),
            &format!("node `{name}`"),
            Writer::Api,
            |found: Option<Node>| {
                let Some(mut node) = found else {
                    return Ok(Change::Keep(None));
                };
                let Some(running) = node.decommission.as_mut() else {
                    return Ok(Change::Keep(None));
                };
                Ok(match change(running)? {
                    true => Change::Write(node, Some(true)),
                    false => Change::Keep(Some(false)),
                })
            },
        )
        .await
    }

    async fn note_decommission(&self, name: &NodeName, actor: Actor, what: String) {
        let mut event = crate::event_log::event(
            EventKind::NodeDecommissioning,
            format!("node {name}: {what}"),
        );
        event.node = Some(name.clone());
        event.actor = actor;
        self.event_log().record(event).await;
    }
}

/// `txn` with node `name` revoked and its decommission record kept (neither ever replaced).
fn revoke_in(txn: Txn, name: &NodeName, record: &DecommissionRecord, why: &str) -> Txn {
    let revoked = RevokedNode {
        name: name.to_string(),
        revoked_at: record.finished_at,
        by: record.requested_by.clone(),
        why: why.to_string(),
    };
    txn.when(keys::revoked_node(name), 0)
        .put(keys::revoked_node(name), encode(&revoked))
        .when(keys::decommission(name), 0)
        .put(keys::decommission(name), encode(record))
}

fn finished(name: &NodeName, record: DecommissionRecord) -> DecommissionStatus {
    DecommissionStatus {
        node: name.to_string(),
        running: None,
        instances: 0,
        finished: Some(record),
    }
}

fn not_decommissioning(name: &NodeName) -> ControlError {
    ControlError::Conflict {
        message: format!("node {name} is not being decommissioned"),
        hint: Some(format!("`strata node decommission {name}` starts it")),
    }
}

fn gave_up(name: &NodeName) -> ControlError {
    ControlError::Conflict {
        message: format!("node {name} kept changing while its decommission was written"),
        hint: Some("try again".into()),
    }
}

/// The instances node `name` still runs (wanted running).
fn running_on(state: &ClusterState, name: &str) -> usize {
    state
        .instance_revisions_on(name)
        .filter_map(|(id, _)| state.instance(id))
        .filter(|i| i.value.desired == DesiredState::Running)
        .count()
}

/// What would stop with node `name`: its running instances, by release, placed in thought
/// on the other nodes.
fn stranded_by(state: &ClusterState, name: &NodeName) -> Vec<Stranded> {
    let mut held: BTreeMap<(String, u64), Held> = BTreeMap::new();
    for (id, _) in state.instance_revisions_on(name) {
        let Some(instance) = state.instance(id).map(|i| &i.value) else {
            continue;
        };
        if instance.desired != DesiredState::Running {
            continue;
        }
        let Some(release) = state.release(&instance.env, &instance.service, instance.release)
        else {
            continue;
        };
        let service = format!("{}/{}", instance.env, instance.service);
        held.entry((service.clone(), instance.release))
            .or_insert_with(|| Held {
                service,
                release: instance.release,
                demand: Demand::of(&release.spec),
                instances: 0,
            })
            .instances += 1;
    }
    let held: Vec<Held> = held.into_values().collect();
    let nodes = crate::reconcile::pass::node_views(state);
    what_would_stop(name, &nodes, &held)
}
