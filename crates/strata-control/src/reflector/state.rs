//! The cluster's state as the store's watch last showed it: nodes, services, releases,
//! configs, instances and their statuses, with the indexes the hot paths need (a node's
//! instances, a service's instances, what each node holds) kept current change by change.
//! Pure: [`ClusterState::apply`] takes the store's events; nothing here does IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use strata_core::decommission::RevokedNode;
use strata_core::spec::PortSpec;
use strata_core::{
    keys, secret::SecretRecord, ConfigVersion, DesiredState, EnvName, Instance, InstanceId,
    InstanceStatus, Node, NodeName, NodeState, Release, Resources, Service, ServiceName,
};
use strata_sched::ServiceTally;
use strata_store::{KeyValue, Revision, WatchEvent};

mod reads;
mod slots;
mod tallies;

pub use slots::NodeSlot;

/// A record and the revision it was last written at (what a compare-and-swap needs).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: Revision,
}

/// An environment's service, as a key of the indexes.
pub type ServiceKey = (EnvName, ServiceName);

/// A live instance and what it holds on its node while it is wanted.
#[derive(Debug, Clone)]
struct Held {
    instance: Versioned<Instance>,
    /// Its release's resources and fixed port, counted on its node while `desired` is
    /// running (remembered so the same amount is given back when that ends).
    holds: Option<(Resources, Option<u16>)>,
}

/// What each node has given to wanted instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLoad {
    pub allocated: Resources,
    /// Fixed ports taken, each with the instance that holds it.
    pub static_ports: BTreeMap<u16, InstanceId>,
}

/// Which services a change concerns, for the reconciler's work queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Plan every service (the state was listed anew).
    pub all: bool,
    /// A node came, went or changed: besides its instances' services (in `services`), the
    /// services some of whose instances could not be placed may fit now.
    pub nodes: bool,
    pub services: BTreeSet<ServiceKey>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        !self.all && !self.nodes && self.services.is_empty()
    }
}

/// The state's tables: a fast hash seeded per process (a million instances are looked up by
/// id on every pass, report and query; the keys are names the cluster gave or accepted).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// See the module docs.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// Every change up to this revision is applied.
    revision: Revision,
    nodes: FastMap<NodeName, Versioned<Node>>,
    /// Nodes whose state is not ready (suspect, down, draining): what a liveness pass looks
    /// at besides the nodes gone silent.
    unready: BTreeSet<NodeName>,
    /// Changes (to a value never used before in this process) when a node is added or
    /// removed.
    node_set_version: u64,
    /// Changes (likewise) when any node's record changes.
    node_records_version: u64,
    services: BTreeMap<ServiceKey, Versioned<Service>>,
    /// Releases and config versions by key: written once (releases' specs rewritten only to
    /// drop config), so shared.
    releases: FastMap<String, Arc<Release>>,
    configs: FastMap<String, Arc<ConfigVersion>>,
    /// Secrets by key, their values sealed (opened only for a node's assignments).
    secrets: FastMap<String, Arc<SecretRecord>>,
    /// Boxed, as `statuses`: the tables then hold a key and a pointer each, so growing one
    /// (a rehash of a million entries, under the state's write lock) moves little memory
    /// and stalls readers briefly rather than for a second.
    instances: FastMap<InstanceId, Box<Held>>,
    statuses: FastMap<InstanceId, Box<Versioned<InstanceStatus>>>,
    /// Each node's instances, with the revision each was last written at (so a node's
    /// changes since a revision are found without looking up each instance).
    by_node: FastMap<NodeName, BTreeMap<InstanceId, Revision>>,
    /// The same, ordered by revision: what changed on a node since a revision, found
    /// without walking all it holds.
    by_node_revision: FastMap<NodeName, BTreeMap<Revision, Vec<InstanceId>>>,
    by_service: FastMap<ServiceKey, BTreeSet<InstanceId>>,
    /// Each service's instances counted by standing (see `tallies.rs`), nodes by number.
    tallies: FastMap<ServiceKey, ServiceTally<NodeSlot>>,
    slots: slots::NodeSlots,
    load: FastMap<NodeName, NodeLoad>,
    /// The revision of the last change to each node's instances (what its agent must run).
    node_changed: FastMap<NodeName, Revision>,
    /// Each node's recent removals, so a blocking query can answer with what left the node
    /// rather than with every id that stayed.
    removals: FastMap<NodeName, NodeRemovals>,
    /// The revision this state was first complete to (its listing's): what left a node
    /// before it is not known here.
    history_from: Option<Revision>,
    /// Nodes whose instances changed since the last [`ClusterState::take_touched_nodes`].
    touched_nodes: BTreeSet<NodeName>,
    dirty: Dirty,
    /// Records that did not decode, by key (reported once each by the reflector).
    corrupt: Vec<(String, String)>,
    /// Nodes whose identity is revoked (decommissioned): refused by the API and the mesh.
    revoked: BTreeMap<NodeName, RevokedNode>,
}

/// The most removals kept per node: a node that asks after more than this many left since
/// its index is answered with its whole set.
const REMOVALS_KEPT: usize = 4096;

/// What left one node lately, oldest first.
#[derive(Debug, Default)]
struct NodeRemovals {
    recent: std::collections::VecDeque<(Revision, InstanceId)>,
    /// The revision of the newest removal no longer kept (0: none dropped).
    forgotten_through: Revision,
}

/// A version number never handed out before in this process (so a state rebuilt from a
/// listing never repeats one its predecessor had).
fn next_version() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A node's state as the plan of the instances on it sees it: a suspect node's instances are
/// planned as a ready node's (only a down node's are replaced, only a draining node's moved),
/// so a node turning suspect, or ready again, does not make its services planned again (at
/// a thousand services on a node, a second of a pass on the way to a failover).
fn as_instances_see_it(state: NodeState) -> NodeState {
    match state {
        NodeState::Suspect => NodeState::Ready,
        other => other,
    }
}

/// The prefixes the state follows.
pub const FOLLOWED: [&str; 8] = [
    keys::NODES,
    keys::SERVICES,
    keys::RELEASES,
    keys::CONFIGS,
    keys::SECRETS,
    keys::INSTANCES,
    keys::STATUS,
    keys::REVOKED_NODES,
];

impl ClusterState {
    /// Every change up to this revision is applied.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Marks every change up to `revision` as applied (a listing read at it, or a watch
    /// event's revision).
    pub fn advance_to(&mut self, revision: Revision) {
        self.revision = self.revision.max(revision);
        self.history_from.get_or_insert(revision);
    }

    /// Applies one change seen by the store's watch (or one listed record, as a put). A change
    /// older than what is held for its key is ignored, so a listing and a watch that overlap
    /// apply cleanly. Keys outside [`FOLLOWED`] are ignored.
    pub fn apply(&mut self, event: &WatchEvent) {
        let revision = event.revision();
        match event {
            WatchEvent::Put(kv) => self.put(kv),
            WatchEvent::Delete { key, .. } => self.delete(key, revision),
        }
        self.advance_to(revision);
    }

    /// Takes in one record of a listing (no revision is marked applied: a listing of several
    /// prefixes is not one revision's state; the caller says which revision it is complete
    /// to with [`ClusterState::advance_to`]).
    pub fn load_listed(&mut self, kv: &KeyValue) {
        self.put(kv)
    }

    /// Whether some service needs planning.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    fn put(&mut self, kv: &KeyValue) {
        let key = kv.key.as_str();
        let revision = kv.mod_revision;
        if key.starts_with(keys::INSTANCES) {
            if let Some(instance) = self.decode::<Instance>(kv) {
                self.put_instance(instance, revision);
            }
        } else if key.starts_with(keys::STATUS) {
            if let Some(status) = self.decode::<InstanceStatus>(kv) {
                let id = status.id.clone();
                if self
                    .statuses
                    .get(&id)
                    .is_some_and(|s| s.revision >= revision)
                {
                    return;
                }
                self.mark_instance_service(&id);
                let before = self.standing_of(&id);
                self.statuses.insert(
                    id.clone(),
                    Box::new(Versioned {
                        value: status,
                        revision,
                    }),
                );
                self.restand(&id, before);
            }
        } else if key.starts_with(keys::REVOKED_NODES) {
            if let Some(revoked) = self.decode::<RevokedNode>(kv) {
                if let Ok(name) = NodeName::new(revoked.name.clone()) {
                    self.revoked.insert(name, revoked);
                }
            }
        } else if key.starts_with(keys::NODES) {
            if let Some(node) = self.decode::<Node>(kv) {
                if self
                    .nodes
                    .get(&node.name)
                    .is_some_and(|n| n.revision >= revision)
                {
                    return;
                }
                let before = self
                    .nodes
                    .get(&node.name)
                    .map(|n| n.value.effective_state());
                // Its agent learns a decommission's phases with its assignments.
                let decommission_moved = self
                    .nodes
                    .get(&node.name)
                    .is_none_or(|n| n.value.decommission != node.decommission);
                if decommission_moved && node.decommission.is_some() {
                    self.node_changed.insert(node.name.clone(), revision);
                    self.touched_nodes.insert(node.name.clone());
                }
                let recount =
                    tallies::node_change_moves_standings(before, Some(node.effective_state()));
                let on_node = match recount {
                    true => self.standings_on(&node.name),
                    false => Vec::new(),
                };
                if !recount {
                    // Its instances are planned as before (a ready node turned suspect, or
                    // back): only what waits for a node may care.
                    self.dirty.nodes = true;
                } else {
                    self.node_changed_services(&node.name);
                }
                self.node_records_version = next_version();
                if node.state == NodeState::Ready {
                    self.unready.remove(&node.name);
                } else {
                    self.unready.insert(node.name.clone());
                }
                let name = node.name.clone();
                let before = self.nodes.insert(
                    name,
                    Versioned {
                        value: node,
                        revision,
                    },
                );
                if before.is_none() {
                    self.node_set_version = next_version();
                }
                for (id, before) in on_node {
                    self.restand(&id, before);
                }
            }
        } else if key.starts_with(keys::SERVICES) {
            if let Some(service) = self.decode::<Service>(kv) {
                let id = (service.env.clone(), service.name.clone());
                if self
                    .services
                    .get(&id)
                    .is_some_and(|s| s.revision >= revision)
                {
                    return;
                }
                self.dirty.services.insert(id.clone());
                self.services.insert(
                    id,
                    Versioned {
                        value: service,
                        revision,
                    },
                );
            }
        } else if key.starts_with(keys::RELEASES) {
            if let Some(release) = self.decode::<Release>(kv) {
                self.dirty
                    .services
                    .insert((release.env.clone(), release.service.clone()));
                self.releases.insert(key.to_string(), Arc::new(release));
            }
        } else if key.starts_with(keys::CONFIGS) {
            if let Some(config) = self.decode::<ConfigVersion>(kv) {
                self.configs.insert(key.to_string(), Arc::new(config));
            }
        } else if key.starts_with(keys::SECRETS) {
            if let Some(secret) = self.decode::<SecretRecord>(kv) {
                self.secrets.insert(key.to_string(), Arc::new(secret));
            }
        }
    }

    fn delete(&mut self, key: &str, revision: Revision) {
        if let Some(name) = key.strip_prefix(keys::REVOKED_NODES) {
            self.revoked.remove(name);
        } else if let Some(id) = key.strip_prefix(keys::INSTANCES) {
            let Some(held) = self.instances.get(id) else {
                return;
            };
            if held.instance.revision >= revision {
                return;
            }
            self.uncount_standing(id);
            let held = self.instances.remove(id).expect("just found");
            self.unindex(&held);
            let instance = held.instance.value;
            self.note_removal(&instance.node, &instance.id, revision);
            self.node_changed.insert(instance.node.clone(), revision);
            self.touched_nodes.insert(instance.node.clone());
            self.dirty.services.insert((instance.env, instance.service));
        } else if let Some(id) = key.strip_prefix(keys::STATUS) {
            if self.statuses.get(id).is_some_and(|s| s.revision < revision) {
                let before = self.standing_of(id);
                self.statuses.remove(id);
                self.restand(id, before);
                self.mark_instance_service(id);
            }
        } else if let Some(name) = key.strip_prefix(keys::NODES) {
            if self.nodes.get(name).is_some_and(|n| n.revision < revision) {
                let on_node = self.standings_on(name);
                self.nodes.remove(name);
                for (id, before) in on_node {
                    self.restand(&id, before);
                }
                self.unready.remove(name);
                self.node_set_version = next_version();
                self.node_records_version = next_version();
                self.node_changed_services(name);
            }
        } else if key.starts_with(keys::SERVICES) {
            let found = self
                .services
                .iter()
                .find(|(_, s)| keys::service(&s.value.env, &s.value.name) == key)
                .map(|(id, s)| (id.clone(), s.revision));
            if let Some((id, at)) = found {
                if at < revision {
                    self.services.remove(&id);
                    self.dirty.services.insert(id);
                }
            }
        } else if key.starts_with(keys::RELEASES) {
            if let Some(release) = self.releases.remove(key) {
                self.dirty
                    .services
                    .insert((release.env.clone(), release.service.clone()));
            }
        } else if key.starts_with(keys::CONFIGS) {
            self.configs.remove(key);
        } else if key.starts_with(keys::SECRETS) {
            self.secrets.remove(key);
        }
    }

    fn put_instance(&mut self, instance: Instance, revision: Revision) {
        if let Some(held) = self.instances.get(&instance.id) {
            if held.instance.revision >= revision {
                return;
            }
            self.uncount_standing(&instance.id);
            let held = self.instances.remove(&instance.id).expect("just found");
            self.unindex(&held);
            let was_on = &held.instance.value.node;
            if *was_on != instance.node {
                self.note_removal(was_on, &instance.id, revision);
                self.node_changed.insert(was_on.clone(), revision);
                self.touched_nodes.insert(was_on.clone());
            }
        }
        let holds = (instance.desired == DesiredState::Running)
            .then(|| {
                let release = self.release(&instance.env, &instance.service, instance.release)?;
                let port = match release.spec.port {
                    PortSpec::Fixed(port) => Some(port),
                    PortSpec::Auto => None,
                };
                Some((release.spec.resources, port))
            })
            .flatten();
        let held = Held {
            instance: Versioned {
                value: instance,
                revision,
            },
            holds,
        };
        let instance = &held.instance.value;
        self.node_changed.insert(instance.node.clone(), revision);
        self.touched_nodes.insert(instance.node.clone());
        let service = (instance.env.clone(), instance.service.clone());
        self.dirty.services.insert(service.clone());
        self.by_service
            .entry(service)
            .or_default()
            .insert(instance.id.clone());
        self.by_node
            .entry(instance.node.clone())
            .or_default()
            .insert(instance.id.clone(), revision);
        self.by_node_revision
            .entry(instance.node.clone())
            .or_default()
            .entry(revision)
            .or_default()
            .push(instance.id.clone());
        if let Some((resources, port)) = held.holds {
            let load = self.load.entry(instance.node.clone()).or_default();
            load.allocated = load.allocated + resources;
            if let Some(port) = port {
                load.static_ports.insert(port, instance.id.clone());
            }
        }
        let id = instance.id.clone();
        self.instances.insert(id.clone(), Box::new(held));
        self.count_standing(&id);
    }

    /// Remembers that `id` left `node` at `revision` (the oldest go past [`REMOVALS_KEPT`]).
    fn note_removal(&mut self, node: &NodeName, id: &InstanceId, revision: Revision) {
        let removals = self.removals.entry(node.clone()).or_default();
        removals.recent.push_back((revision, id.clone()));
        while removals.recent.len() > REMOVALS_KEPT {
            if let Some((dropped, _)) = removals.recent.pop_front() {
                removals.forgotten_through = dropped;
            }
        }
    }

    /// The instances that left `node` after `index`, if this state knows them all (`None`:
    /// some left before this state was listed, or too many for the history kept).
    pub fn removed_from_node_since(&self, node: &str, index: Revision) -> Option<Vec<&InstanceId>> {
        if self.history_from.is_none_or(|from| index < from) {
            return None;
        }
        let Some(removals) = self.removals.get(node) else {
            return Some(Vec::new());
        };
        if index < removals.forgotten_through {
            return None;
        }
        Some(
            removals
                .recent
                .iter()
                .filter(|(at, _)| *at > index)
                .map(|(_, id)| id)
                .collect(),
        )
    }

    /// Takes an instance out of the indexes and gives back what it held.
    fn unindex(&mut self, held: &Held) {
        let instance = &held.instance.value;
        let service = (instance.env.clone(), instance.service.clone());
        if let Some(ids) = self.by_service.get_mut(&service) {
            ids.remove(&instance.id);
            if ids.is_empty() {
                self.by_service.remove(&service);
            }
        }
        if let Some(changes) = self.by_node_revision.get_mut(&instance.node) {
            if let Some(ids) = changes.get_mut(&held.instance.revision) {
                ids.retain(|id| *id != instance.id);
                if ids.is_empty() {
                    changes.remove(&held.instance.revision);
                }
            }
            if changes.is_empty() {
                self.by_node_revision.remove(&instance.node);
            }
        }
        if let Some(ids) = self.by_node.get_mut(&instance.node) {
            ids.remove(&instance.id);
            if ids.is_empty() {
                self.by_node.remove(&instance.node);
            }
        }
        if let Some((resources, port)) = held.holds {
            if let Some(load) = self.load.get_mut(&instance.node) {
                load.allocated = load.allocated.saturating_sub(resources);
                if let Some(port) = port {
                    if load.static_ports.get(&port) == Some(&instance.id) {
                        load.static_ports.remove(&port);
                    }
                }
            }
        }
    }

    /// A node changed: its instances' services need planning, and so may any service short
    /// of instances (see [`Dirty::nodes`]).
    fn node_changed_services(&mut self, node: &str) {
        self.dirty.nodes = true;
        let services: Vec<ServiceKey> = self
            .by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|(id, _)| self.instances.get(id))
            .map(|held| {
                let i = &held.instance.value;
                (i.env.clone(), i.service.clone())
            })
            .collect();
        self.dirty.services.extend(services);
    }

    fn mark_instance_service(&mut self, id: &str) {
        if let Some(held) = self.instances.get(id) {
            let i = &held.instance.value;
            self.dirty
                .services
                .insert((i.env.clone(), i.service.clone()));
        }
    }

    fn decode<T: DeserializeOwned>(&mut self, kv: &KeyValue) -> Option<T> {
        match serde_json::from_slice(&kv.value) {
            Ok(value) => Some(value),
            Err(error) => {
                self.corrupt.push((kv.key.clone(), error.to_string()));
                None
            }
        }
    }

    /// Records that did not decode since the last call (key, reason).
    pub fn take_corrupt(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.corrupt)
    }

    /// Nodes whose instances changed since the last call.
    pub fn take_touched_nodes(&mut self) -> BTreeSet<NodeName> {
        std::mem::take(&mut self.touched_nodes)
    }

    /// Says every node's instances changed at `revision` (after a relisting, which cannot
    /// tell what was deleted meanwhile), and that every service needs planning.
    pub fn touch_everything(&mut self, revision: Revision) {
        let names: BTreeSet<NodeName> = self
            .nodes
            .keys()
            .chain(self.by_node.keys())
            .chain(self.node_changed.keys())
            .cloned()
            .collect();
        for name in names {
            self.node_changed.insert(name.clone(), revision);
            self.touched_nodes.insert(name);
        }
        self.dirty.all = true;
    }

    /// The services changes concerned since the last call.
    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }
}

#[cfg(test)]
mod tests;
