//! What an event is about: one enum, so every kind recorded is one the code knows, and its
//! dotted name (`release.created`, as the API and `strata events` show it) is written once.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! event_kinds {
    ($($variant:ident = $name:literal: $doc:literal,)*) => {
        /// The kind of an [`crate::Event`]; serialized as its dotted name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        pub enum EventKind {
            $(#[doc = $doc] #[serde(rename = $name)] $variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The dotted name: `release.created`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }
        }
    };
}

event_kinds! {
    ReleaseCreated = "release.created": "A deploy made a new release.",
    ServiceScaled = "service.scaled": "A service's instance count or bounds changed by a deploy or by hand.",
    ServiceAutoscaled = "service.autoscaled": "The autoscaler changed a service's instance count.",
    ServiceDeleted = "service.deleted": "A service was deleted.",
    ServiceRolledBack = "service.rolled_back": "A service was rolled back to an earlier release, and why.",
    RolloutStarted = "rollout.started": "A progressive rollout (canary, blue-green) of a new release began.",
    RolloutStep = "rollout.step": "A progressive rollout gave its new release a share of the traffic, with the analysis that let it.",
    RolloutWaiting = "rollout.waiting": "A progressive rollout's step waits: too little traffic to judge, or instances not yet available.",
    RolloutPaused = "rollout.paused": "A progressive rollout was paused or resumed by hand.",
    RolloutSucceeded = "rollout.succeeded": "A progressive rollout's new release took all the traffic and passed: it is the desired release.",
    RolloutRolledBack = "rollout.rolled_back": "A progressive rollout's analysis failed: its new release was taken out, with the numbers.",
    RolloutAborted = "rollout.aborted": "A progressive rollout was stopped by hand, or by a rollback or another deploy.",
    EnvPolicy = "env.policy": "An environment's default call policy changed.",
    EnvQuota = "env.quota": "An environment's quota changed.",
    EnvProtection = "env.protection": "An environment was protected (only promotion changes it) or opened again.",
    SecretSet = "secret.set": "A service's secret got a new version (never its value); a new release rolls out if the service uses it.",
    SecretRemoved = "secret.removed": "A service's secret was removed.",
    SecretsKeyRotated = "secrets.key_rotated": "The secrets' data key was sealed under a new key-encryption key.",
    PlacementFailed = "placement.failed": "Instances could not be placed, and why.",
    InstancePlaced = "instance.placed": "An instance was placed on a node.",
    InstanceStop = "instance.stop": "The control plane asked an instance to stop, and why.",
    InstancePending = "instance.pending": "An instance waits for its node to start it.",
    InstanceStarted = "instance.started": "An instance's process started.",
    InstanceHealthy = "instance.healthy": "An instance passed its health check.",
    InstanceUnhealthy = "instance.unhealthy": "An instance failed its health check.",
    InstanceCrashed = "instance.crashed": "An instance exited (or could not start) and backs off.",
    InstanceFailed = "instance.failed": "An instance failed for good.",
    InstanceStopping = "instance.stopping": "An instance drains before it stops.",
    InstanceStopped = "instance.stopped": "An instance stopped.",
    InstanceQuarantined = "instance.quarantined": "An instance was quarantined: out of routing, frozen and archived by its node, then stopped.",
    NodeRegistered = "node.registered": "A node registered (or re-registered).",
    NodeReady = "node.ready": "A node is heard from again.",
    NodeSuspect = "node.suspect": "A node went silent: no new work goes there.",
    NodeDown = "node.down": "A node is down: its instances are replaced.",
    NodeDraining = "node.draining": "A node's instances move elsewhere.",
    NodeUndrained = "node.undrained": "A node takes new work again.",
    NodeLeaving = "node.leaving": "A node's agent is stopping: its instances move elsewhere first.",
    NodeArchived = "node.archived": "A node's forensic archive was verified, countersigned and stored.",
    ArchiveExpired = "archive.expired": "A forensic archive past its keep was removed: its record, and its bytes on every server.",
    NodeDecommissioning = "node.decommissioning": "A node's decommission moved on: drained, archiving, wiping, or failed (with the reason).",
    NodeDecommissioned = "node.decommissioned": "A node was decommissioned: archived and wiped (or revoked unreachable); its identity is revoked.",
    NodeRemoved = "node.removed": "A down node's record was removed (by hand, or down past the forget period).",
    LeaderElected = "leader.elected": "A server became the leader.",
    LivenessPaused = "liveness.paused": "The leader judged no node for a gap that was its own (it stalled, or lost beats it cannot attribute).",
    OutboundRefused = "outbound.refused": "A node refused an instance's call out (reported by the node).",
    PolicyDenied = "policy.denied": "A node's mesh refused a call by policy (reported by the node).",
}

impl EventKind {
    /// Whether a node may report this kind: nodes report what they observe, never what the
    /// controller decides.
    pub fn reported_by_nodes(self) -> bool {
        matches!(self, EventKind::OutboundRefused | EventKind::PolicyDenied)
    }

    /// Whether this kind is an instance's routine progress (placed, started, healthy,
    /// stopped, ...): when many instances of a service make the same step together, one
    /// event tells of them all. Problems (crashed, unhealthy, failed) and the controller's
    /// stops, each with its own reason, are always told one by one.
    pub fn is_routine_progress(self) -> bool {
        matches!(
            self,
            EventKind::InstancePlaced
                | EventKind::InstancePending
                | EventKind::InstanceStarted
                | EventKind::InstanceHealthy
                | EventKind::InstanceStopping
                | EventKind::InstanceStopped
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("`{text}` is not an event kind"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), *kind);
        }
        assert!("release.deleted".parse::<EventKind>().is_err());
        let reported: Vec<&str> = EventKind::ALL
            .iter()
            .filter(|k| k.reported_by_nodes())
            .map(|k| k.as_str())
            .collect();
        assert_eq!(reported, ["outbound.refused", "policy.denied"]);
        for kind in EventKind::ALL {
            if kind.is_routine_progress() {
                assert!(kind.as_str().starts_with("instance."), "{kind}");
            }
        }
        assert!(!EventKind::InstanceCrashed.is_routine_progress());
        assert!(!EventKind::InstanceStop.is_routine_progress());
    }
}
