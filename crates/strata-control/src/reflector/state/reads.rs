//! What the state answers: its records and indexes, read-only (the reconciler's passes,
//! the API's reads and the nodes' blocking queries).

use std::sync::Arc;

use strata_core::{
    keys, ConfigVersion, Instance, InstanceId, InstanceRef, InstanceStatus, InstanceView, Node,
    NodeName, Release, Service,
};
use strata_store::Revision;

use strata_core::decommission::RevokedNode;

use super::{ClusterState, NodeLoad, ServiceKey, Versioned};

impl ClusterState {
    pub fn node(&self, name: &str) -> Option<&Versioned<Node>> {
        self.nodes.get(name)
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &Versioned<Node>> {
        self.nodes.values()
    }

    /// The nodes whose state is not ready.
    pub fn unready_nodes(&self) -> impl Iterator<Item = &NodeName> {
        self.unready.iter()
    }

    /// Changes when a node is added or removed (not when one's record changes).
    pub fn node_set_version(&self) -> u64 {
        self.node_set_version
    }

    /// Changes when any node's record changes.
    pub fn node_records_version(&self) -> u64 {
        self.node_records_version
    }

    pub fn service(&self, id: &ServiceKey) -> Option<&Versioned<Service>> {
        self.services.get(id)
    }

    pub fn services(&self) -> impl Iterator<Item = &Versioned<Service>> {
        self.services.values()
    }

    pub fn release(&self, env: &str, service: &str, number: u64) -> Option<&Arc<Release>> {
        self.releases.get(&keys::release(env, service, number))
    }

    /// Whether any service has a secret record.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// A secret's record (values sealed) by its store key.
    pub fn secret(&self, key: &str) -> Option<&strata_core::secret::SecretRecord> {
        self.secrets.get(key).map(Arc::as_ref)
    }

    pub fn config(&self, env: &str, service: &str, version: u64) -> Option<&Arc<ConfigVersion>> {
        self.configs.get(&keys::config(env, service, version))
    }

    pub fn instance(&self, id: &str) -> Option<&Versioned<Instance>> {
        self.instances.get(id).map(|held| &held.instance)
    }

    pub fn status(&self, id: &str) -> Option<&Versioned<InstanceStatus>> {
        self.statuses.get(id).map(|status| &**status)
    }

    /// How many instance records there are.
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// The ids of the instances on `node` written after `index`, oldest first.
    pub fn instances_on_changed_after<'a>(
        &'a self,
        node: &str,
        index: Revision,
    ) -> impl Iterator<Item = &'a InstanceId> + 'a {
        self.by_node_revision
            .get(node)
            .into_iter()
            .flat_map(move |changes| changes.range(index.saturating_add(1)..))
            .flat_map(|(_, ids)| ids)
    }

    /// The ids of the instances placed on `node`, in id order, each with the revision it
    /// was last written at: a node's whole set without a lookup per instance.
    pub fn instance_revisions_on<'a>(
        &'a self,
        node: &str,
    ) -> impl Iterator<Item = (&'a InstanceId, Revision)> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .map(|(id, revision)| (id, *revision))
    }

    /// The instances of `service` with their last reports, in id order.
    pub fn instances_of(&self, service: &ServiceKey) -> Vec<InstanceRef<'_>> {
        self.by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                Some(InstanceRef {
                    instance: &self.instances.get(id)?.instance.value,
                    status: self.statuses.get(id).map(|s| &s.value),
                })
            })
            .collect()
    }

    /// Every instance with its last report, in id order.
    pub fn views(&self) -> Vec<InstanceView> {
        let mut ids: Vec<&InstanceId> = self.instances.keys().collect();
        ids.sort();
        ids.into_iter().filter_map(|id| self.view(id)).collect()
    }

    /// Every service that has instances (a deleted service's may still be stopping).
    pub fn services_with_instances(&self) -> impl Iterator<Item = &ServiceKey> {
        self.by_service.keys()
    }

    fn view(&self, id: &str) -> Option<InstanceView> {
        let held = self.instances.get(id)?;
        Some(InstanceView {
            instance: held.instance.value.clone(),
            status: self.statuses.get(id).map(|s| s.value.clone()),
        })
    }

    /// What `node` has given to wanted instances.
    pub fn node_load(&self, node: &str) -> NodeLoad {
        self.load.get(node).cloned().unwrap_or_default()
    }

    /// The revision of the last change to what `node` must run (0: none seen).
    /// Node `name`'s revocation, if it was decommissioned.
    pub fn revoked(&self, name: &str) -> Option<&RevokedNode> {
        self.revoked.get(name)
    }

    /// Every revoked node, by name.
    pub fn revoked_nodes(&self) -> impl Iterator<Item = &RevokedNode> {
        self.revoked.values()
    }

    pub fn node_changed(&self, node: &str) -> Revision {
        self.node_changed.get(node).copied().unwrap_or(0)
    }
}
