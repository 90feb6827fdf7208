//! A node's end: its record removed by an operator (`strata node rm`), or forgotten by the
//! leader once it has been down for the forget period. Only a down, silent node with no
//! instance record left goes (`strata_sched::liveness::removal_refusal` decides); its agent,
//! if it ever comes back, registers as a new node.

use strata_core::{keys, Actor, EventKind, Node, NodeName, NodeState};
use strata_sched::liveness::{forget_now, removal_refusal, NodeRemains};
use strata_store::Txn;

use super::ControlPlane;
use crate::reflector::ClusterState;
use crate::ControlError;

/// Who removes a node, and so how the removal is written.
#[derive(Debug, Clone)]
pub enum Remover {
    /// An operator, through the API.
    Operator(Actor),
    /// The leader, the node down past the forget period (`forget_after`).
    Leader,
}

impl ControlPlane {
    /// Removes node `name`'s record (with an event), refused while it is alive or holds
    /// instance records.
    pub async fn remove_node(&self, name: &NodeName, by: Remover) -> Result<(), ControlError> {
        self.reflector_caught_up().await?;
        let (remains, revision) = self.remains_of(name)?;
        if let Some((message, hint)) = removal_refusal(name, remains) {
            return Err(ControlError::Conflict {
                message,
                hint: Some(hint),
            });
        }
        let key = keys::node(name);
        let revoked = self.revocation(name).is_some();
        let why = match &by {
            Remover::Operator(_) => "removed by hand".to_string(),
            Remover::Leader if revoked => {
                "revoked (decommissioned unreachable) and its instances replaced; forgotten"
                    .to_string()
            }
            Remover::Leader => format!(
                "down for more than {}; forgotten",
                whole_units(self.config.forget_down_after_ms)
            ),
        };
        let mut event =
            crate::event_log::event(EventKind::NodeRemoved, format!("node {name}: {why}"));
        event.node = Some(name.clone());
        if let Remover::Operator(actor) = &by {
            event.actor = actor.clone();
        }
        let txn = Txn::new().when(&key, revision).delete(&key);
        let txn = self.event_log().stage(txn, event);
        let outcome = match by {
            Remover::Operator(_) => self.store.txn(txn).await?,
            Remover::Leader => self.controller_txn(txn).await?,
        };
        if !outcome.is_committed() {
            return Err(ControlError::Conflict {
                message: format!("node {name} changed while it was being removed"),
                hint: Some("see `strata node ls`, and try again".to_string()),
            });
        }
        tracing::info!(node = %name, "{why}");
        Ok(())
    }

    /// The down nodes to forget now (down, silent and empty past the forget period, or at
    /// once when revoked unreachable), by the plane's wall clock.
    pub fn nodes_to_forget(&self) -> Vec<NodeName> {
        let forget_after = self.config.forget_down_after_ms;
        let now = self.now();
        let state = self.reflector.read();
        // Only down nodes can go: the rest (nearly all) cost no count of what they hold.
        state
            .nodes()
            .filter(|n| n.value.state == NodeState::Down)
            .filter(|n| {
                let remains = self.remains(&state, &n.value);
                // A node revoked unreachable goes as soon as nothing of it is left.
                let revoked = n.value.decommission.as_ref().is_some_and(|d| {
                    d.phase == strata_core::decommission::DecommissionPhase::Revoked
                });
                match revoked {
                    true => removal_refusal(&n.value.name, remains).is_none(),
                    false => forget_now(remains, n.value.last_heartbeat, now, forget_after),
                }
            })
            .map(|n| n.value.name.clone())
            .collect()
    }

    /// What is left of `node`: its state, whether this server heard from it lately, the
    /// instance records on it.
    fn remains(&self, state: &ClusterState, node: &Node) -> NodeRemains {
        NodeRemains {
            state: node.state,
            heard_recently: self.heartbeats.heard_from_recently(&node.name),
            instances: state.instance_revisions_on(&node.name).count(),
        }
    }

    /// What is left of node `name` as the reflector holds it, with its record's revision.
    fn remains_of(&self, name: &NodeName) -> Result<(NodeRemains, u64), ControlError> {
        let state = self.reflector.read();
        let Some(node) = state.node(name) else {
            return Err(ControlError::not_found(
                format!("no node `{name}`"),
                Some("see `strata node ls`".to_string()),
            ));
        };
        Ok((self.remains(&state, &node.value), node.revision))
    }
}

/// `ms` in the largest whole unit ("24h", "90s", "1500ms").
fn whole_units(ms: u64) -> String {
    match ms {
        ms if ms > 0 && ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms > 0 && ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}
