//! The records the control plane keeps, and the pure rules over them (instance state
//! transitions, restart backoff).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::names::{EnvName, InstanceId, NodeName, ServiceName};
use crate::rollout::Rollout;
use crate::spec::ServiceSpec;

/// Milliseconds since the Unix epoch. Every timestamp in a record is one of these, passed in by
/// the caller (pure code never reads the clock).
pub type Millis = u64;

/// An environment (dev, qa, staging, prod, or any name): a namespace for services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub name: EnvName,
    pub created_at: Millis,
    /// Who may call a service of this environment that sets no `[mesh] allow_from`.
    #[serde(default)]
    pub default_policy: CallPolicy,
    /// The most its services may use (`None`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Only promotion (`strata promote`) changes its releases; a direct deploy needs an
    /// admin (`strata env protect`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

/// The most an environment's services may use together; each limit is optional. A service
/// counts for its autoscaling maximum when it autoscales.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quota {
    pub instances: Option<u32>,
    /// Thousandths of a CPU core.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

impl std::fmt::Display for Quota {
    /// `4 instances, 8192Mi memory, 2 cpu`, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.instances {
            parts.push(format!("{n} instances"));
        }
        if let Some(bytes) = self.memory_bytes {
            parts.push(format!("{}Mi memory", bytes.div_ceil(1 << 20)));
        }
        if let Some(millis) = self.cpu_millis {
            parts.push(format!("{} cpu", millis as f64 / 1000.0));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// An environment's default for calls between its services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallPolicy {
    /// Any service of the environment may call it.
    #[default]
    Allow,
    /// Only the services its `allow_from` names.
    Deny,
}

impl std::fmt::Display for CallPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallPolicy::Allow => "allow",
            CallPolicy::Deny => "deny",
        })
    }
}

impl std::str::FromStr for CallPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "allow" => Ok(CallPolicy::Allow),
            "deny" => Ok(CallPolicy::Deny),
            other => Err(format!("`{other}` is not a policy: use allow or deny")),
        }
    }
}

/// A service in one environment: which release should run and how many copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub env: EnvName,
    pub name: ServiceName,
    /// The release every instance should run; older ones are rolled away.
    pub desired_release: u64,
    /// The newest release number ever made (release numbers are never reused).
    pub latest_release: u64,
    /// The newest config version ever made.
    pub latest_config: u64,
    /// Instances wanted now: the spec's count, or the autoscaler's within `autoscale`.
    pub replicas: u32,
    /// Bounds the autoscaler keeps `replicas` within (the spec's `[scale]` min/max); `None`:
    /// `replicas` is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<crate::spec::AutoscaleSpec>,
    /// What the autoscaler defends and `strata status` reports against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::spec::SloSpec>,
    /// When `replicas` last changed (a change is given time to show before the next).
    #[serde(default)]
    pub scaled_at: Millis,
    /// The releases that were serving in full when another took their place, oldest first
    /// (the last [`Service::SERVED_KEPT`]): where a rollback goes by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub served: Vec<u64>,
    /// The progressive rollout (canary, blue-green) of a new release beside the desired one,
    /// going on or the last one's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// When `desired_release` last changed (0 for records from before it was kept: the
    /// release's creation counts then).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub desired_since: Millis,
    /// How releases stopped being the service's (or its rollout's), and why: the last
    /// [`Service::SERVED_KEPT`], oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<ReleaseEnd>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

fn is_zero(value: &Millis) -> bool {
    *value == 0
}

/// How a release stopped being a service's, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseEnd {
    pub release: u64,
    pub how: ReleaseEnding,
    /// Who or what ended it, and why (a rollback's reason, a canary's numbers).
    pub why: String,
    pub at: Millis,
}

/// How a release stopped being a service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseEnding {
    /// Another release was deployed (or promoted, or passed its canary) in its place.
    Superseded,
    /// Rolled back from, by a person.
    RolledBack,
    /// Its canary or blue-green analysis failed: taken out by the platform.
    Failed,
    /// Its canary or blue-green was stopped by a person or replaced by another release.
    Aborted,
}

impl ReleaseEnding {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseEnding::Superseded => "superseded",
            ReleaseEnding::RolledBack => "rolled back",
            ReleaseEnding::Failed => "failed",
            ReleaseEnding::Aborted => "aborted",
        }
    }
}

impl Service {
    /// How many served releases a service remembers.
    pub const SERVED_KEPT: usize = 20;

    /// A service with no release yet, `replicas` wanted, nothing else said (no autoscaling,
    /// SLO, rollout or history), made at `now`.
    pub fn new(env: EnvName, name: ServiceName, replicas: u32, now: Millis) -> Service {
        Service {
            env,
            name,
            desired_release: 0,
            latest_release: 0,
            latest_config: 0,
            replicas,
            autoscale: None,
            slo: None,
            scaled_at: now,
            served: Vec::new(),
            rollout: None,
            desired_since: 0,
            ended: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Notes how `release` ended and why (the newest of a release's endings is kept).
    pub fn note_ended(&mut self, release: u64, how: ReleaseEnding, why: String, at: Millis) {
        self.ended.retain(|end| end.release != release);
        self.ended.push(ReleaseEnd {
            release,
            how,
            why,
            at,
        });
        let extra = self.ended.len().saturating_sub(Self::SERVED_KEPT);
        self.ended.drain(..extra);
    }

    /// How `release` ended, if it did.
    pub fn ending_of(&self, release: u64) -> Option<&ReleaseEnd> {
        self.ended.iter().rev().find(|end| end.release == release)
    }

    /// Makes `release` the desired one at `at`; the one it replaces ended as `how`, for `why`.
    pub fn make_desired(&mut self, release: u64, at: Millis, how: ReleaseEnding, why: String) {
        let previous = self.desired_release;
        if previous != 0 && previous != release {
            self.note_ended(previous, how, why, at);
        }
        self.ended.retain(|end| end.release != release);
        self.desired_release = release;
        self.desired_since = at;
    }

    /// Notes that `release` was serving in full when it was replaced.
    pub fn note_served(&mut self, release: u64) {
        self.served.retain(|r| *r != release);
        self.served.push(release);
        let extra = self.served.len().saturating_sub(Self::SERVED_KEPT);
        self.served.drain(..extra);
    }
}

impl Service {
    /// The release a progressive rollout brings in beside the desired one, while it does.
    pub fn rollout_release(&self) -> Option<u64> {
        self.rollout
            .as_ref()
            .filter(|rollout| rollout.is_active())
            .map(|rollout| rollout.release)
    }
}

/// An immutable, numbered release: what runs, with which configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub env: EnvName,
    pub service: ServiceName,
    pub number: u64,
    /// `sha256:<hex>` of the artifact, when the service has one.
    pub artifact_digest: Option<String>,
    pub config_version: u64,
    /// The version of each secret the spec names that this release runs with (a secret set
    /// anew makes a new release, as changed configuration does).
    ///
    /// Omitted from the JSON when empty, so releases stored before it existed still read the
    /// same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, u64>,
    /// `sha256:<hex>` over the spec (without config) and the artifact digest.
    pub spec_hash: String,
    pub spec: ServiceSpec,
    pub created_at: Millis,
    /// Who made it: the deploy's caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The release it was promoted from (`strata promote`): same artifact and spec, this
    /// environment's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<Origin>,
}

/// Where a promoted release came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Origin {
    pub env: EnvName,
    pub release: u64,
}

/// A version of a service's configuration in one environment, kept apart from the artifact and
/// injected at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConfigVersion {
    pub env: EnvName,
    pub service: ServiceName,
    pub version: u64,
    pub values: BTreeMap<String, String>,
    /// `sha256:<hex>` of the values, to tell whether a deploy changed them.
    pub hash: String,
    pub created_at: Millis,
}

/// What the control plane wants of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Stopped,
}

/// A copy of a release placed on a node: the control plane's desired record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    pub id: InstanceId,
    pub env: EnvName,
    pub service: ServiceName,
    pub release: u64,
    pub node: NodeName,
    /// The node's epoch when the instance was placed; an agent whose epoch moved on must not
    /// run it (fencing).
    pub node_epoch: u64,
    pub desired: DesiredState,
    pub created_at: Millis,
    /// When `desired` became `Stopped`.
    pub stop_requested_at: Option<Millis>,
    /// Set by `strata instance quarantine`: out of routing at once; its agent freezes it,
    /// archives it, then stops it (the service gets a replacement meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<crate::decommission::Quarantine>,
}

/// The lifecycle of an instance as its agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Placed; the agent has not started it yet.
    Pending,
    /// The process runs; its health check has not passed yet.
    Starting,
    /// Running and healthy: it receives traffic.
    Running,
    /// Running but failing its health check: no traffic.
    Unhealthy,
    /// Exited unexpectedly; waiting out its restart backoff.
    Backoff,
    /// Being stopped (draining, then signalled).
    Stopping,
    /// Stopped on request. Terminal.
    Stopped,
    /// Could not be started at all (bad artifact, driver error). Terminal.
    Failed,
}

impl InstanceState {
    /// Whether the agent may move an instance from `self` to `next`.
    pub fn can_become(self, next: InstanceState) -> bool {
        use InstanceState::*;
        match (self, next) {
            (a, b) if a == b => true,
            (Stopped | Failed, _) => false,
            (_, Stopping | Stopped | Failed) => true,
            // Could not even start (no such program, a failed download): it backs off and
            // says why, rather than staying silently pending.
            (Pending, Starting | Backoff) => true,
            (Starting | Running | Unhealthy, Running | Unhealthy | Backoff) => true,
            (Backoff, Starting) => true,
            (Stopping, _) => false,
            _ => false,
        }
    }

    /// Whether the instance is done and its record may be removed.
    pub fn is_terminal(self) -> bool {
        matches!(self, InstanceState::Stopped | InstanceState::Failed)
    }

    /// Whether a process of this instance may be alive.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            InstanceState::Starting
                | InstanceState::Running
                | InstanceState::Unhealthy
                | InstanceState::Stopping
        )
    }
}

/// What an agent observed of an instance, reported to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceStatus {
    pub id: InstanceId,
    pub node: NodeName,
    pub state: InstanceState,
    /// `host:port` where the instance serves, once it runs.
    pub address: Option<String>,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    /// A sentence a person can act on ("health check /healthz: connection refused").
    pub message: String,
    pub updated_at: Millis,
    /// Since when the instance has been healthy without a break, by the control plane's clock
    /// (it stamps this when it stores a report; agents leave it out). `None` unless running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<Millis>,
}

impl InstanceStatus {
    /// A report of `state` with nothing else known yet: no address, process, restarts or
    /// exit, stamped 0 (the control plane stamps what it stores). Set the rest with struct
    /// update syntax.
    pub fn new(
        id: InstanceId,
        node: NodeName,
        state: InstanceState,
        message: impl Into<String>,
    ) -> Self {
        InstanceStatus {
            id,
            node,
            state,
            address: None,
            pid: None,
            restarts: 0,
            last_exit: None,
            message: message.into(),
            updated_at: 0,
            ready_since: None,
        }
    }
}

/// How an instance's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at: Millis,
    pub description: String,
}

/// How long to wait before restarting an instance that crashed `restarts` times in a row:
/// 250 ms doubling to a cap of 30 s (Kubernetes' CrashLoopBackOff, faster at first).
pub fn restart_backoff_ms(restarts: u32) -> u64 {
    const BASE: u64 = 250;
    const CAP: u64 = 30_000;
    BASE.saturating_mul(1u64 << restarts.min(16)).min(CAP)
}

/// The last lines of an instance's log, as its node shipped them to the control plane: what
/// `strata logs` shows when the node cannot be reached, and after the instance is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogTail {
    pub instance: InstanceId,
    pub env: EnvName,
    pub service: ServiceName,
    pub release: u64,
    pub node: NodeName,
    /// Whole lines, at most [`LogTail::MAX_BYTES`] (the oldest are dropped first).
    pub text: String,
    /// When the node last shipped lines (the control plane's clock).
    pub updated_at: Millis,
}

impl LogTail {
    /// How much of an instance's log the control plane keeps.
    pub const MAX_BYTES: usize = 16 * 1024;

    /// Adds shipped output, keeping the last [`LogTail::MAX_BYTES`] cut at a line start.
    pub fn append(&mut self, data: &str) {
        self.text.push_str(data);
        if self.text.len() > Self::MAX_BYTES {
            let mut cut = self.text.len() - Self::MAX_BYTES;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            let start = self.text[cut..].find('\n').map_or(cut, |i| cut + i + 1);
            self.text.drain(..start);
        }
    }
}

/// An instance as the API shows it: the desired record joined with the observed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance,
    pub status: Option<InstanceStatus>,
}

impl InstanceView {
    /// The same, borrowed.
    pub fn borrowed(&self) -> InstanceRef<'_> {
        InstanceRef {
            instance: &self.instance,
            status: self.status.as_ref(),
        }
    }

    pub fn state(&self) -> InstanceState {
        self.borrowed().state()
    }

    /// See [`InstanceRef::is_available`].
    pub fn is_available(&self, now: Millis, min_ready_ms: u64) -> bool {
        self.borrowed().is_available(now, min_ready_ms)
    }

    /// See [`InstanceRef::is_routable`].
    pub fn is_routable(&self) -> bool {
        self.borrowed().is_routable()
    }
}

/// An instance and its last report as the control plane holds them, borrowed: what the
/// planners read, without copying a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceRef<'a> {
    pub instance: &'a Instance,
    pub status: Option<&'a InstanceStatus>,
}

impl InstanceRef<'_> {
    pub fn state(&self) -> InstanceState {
        self.status
            .map(|s| s.state)
            .unwrap_or(InstanceState::Pending)
    }

    /// Available to a rollout: routable, and healthy without a break for `min_ready_ms` at
    /// `now` (the control plane's clock). A running status stored before `ready_since`
    /// existed counts as available.
    pub fn is_available(&self, now: Millis, min_ready_ms: u64) -> bool {
        self.is_routable()
            && self
                .status
                .and_then(|s| s.ready_since)
                .is_none_or(|since| now.saturating_sub(since) >= min_ready_ms)
    }

    /// When a routable instance that is not yet available becomes so, if it stays healthy.
    pub fn available_at(&self, min_ready_ms: u64) -> Option<Millis> {
        if !self.is_routable() {
            return None;
        }
        let since = self.status?.ready_since?;
        Some(since + min_ready_ms)
    }

    /// Serving traffic: wanted, healthy and reachable.
    pub fn is_routable(&self) -> bool {
        self.instance.desired == DesiredState::Running
            && self.state() == InstanceState::Running
            && self.status.and_then(|s| s.address.as_ref()).is_some()
    }
}

/// A node's state as the control plane judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Heartbeating: takes new work.
    Ready,
    /// Missed heartbeats: takes no new work; its instances still count.
    Suspect,
    /// Silent past the down threshold: its instances are replaced elsewhere; when it comes
    /// back it must register again under a new epoch, and its old instances are fenced.
    Down,
    /// Ready, but an operator is draining it: takes no new work; its instances move away.
    /// Derived from [`Node::draining`] (see [`Node::effective_state`]), never stored.
    Draining,
}

/// Capacity or a demand on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    /// Thousandths of a CPU core.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Resources {
    pub fn saturating_sub(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }
    pub fn fits_in(self, free: Resources) -> bool {
        self.cpu_millis <= free.cpu_millis && self.memory_bytes <= free.memory_bytes
    }
}

impl std::ops::Add for Resources {
    type Output = Resources;
    fn add(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }
}

/// A machine that runs instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub name: NodeName,
    /// Base URL of the node agent's API (logs), e.g. `http://10.0.0.2:7701`.
    pub agent_url: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    pub drivers: Vec<crate::spec::DriverKind>,
    /// Bumped at every registration; instances carry the epoch they were placed under.
    pub epoch: u64,
    /// Liveness: ready, suspect or down.
    pub state: NodeState,
    /// Set by `strata node drain`, cleared by `strata node undrain`.
    #[serde(default)]
    pub draining: bool,
    /// Set when the node's agent is stopping (SIGTERM): its instances move elsewhere first,
    /// as in a drain. Cleared when an agent registers the node again.
    #[serde(default)]
    pub leaving: bool,
    /// Where its proxy takes calls from other nodes (mutual TLS).
    #[serde(default)]
    pub mesh_addr: Option<String>,
    /// Set by `strata node decommission`: the node drains, archives what it held, wipes it
    /// and leaves for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decommission: Option<crate::decommission::Decommissioning>,
    pub last_heartbeat: Millis,
    pub registered_at: Millis,
}

impl Node {
    /// A ready node of epoch 1 with `capacity` and `drivers`, nothing else said (no labels,
    /// no agent URL, never heard from).
    pub fn ready(
        name: NodeName,
        capacity: Resources,
        drivers: Vec<crate::spec::DriverKind>,
    ) -> Node {
        Node {
            name,
            agent_url: String::new(),
            labels: BTreeMap::new(),
            capacity,
            drivers,
            epoch: 1,
            state: NodeState::Ready,
            draining: false,
            leaving: false,
            decommission: None,
            mesh_addr: None,
            last_heartbeat: 0,
            registered_at: 0,
        }
    }

    /// The state placement and planning act on: liveness, with a drain on a live node.
    pub fn effective_state(&self) -> NodeState {
        match self.state {
            NodeState::Ready | NodeState::Suspect
                if self.draining || self.leaving || self.decommission.is_some() =>
            {
                NodeState::Draining
            }
            state => state,
        }
    }
}

/// An append-only record of something that happened: who did what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub seq: u64,
    pub at: Millis,
    /// What it is about (serialized dotted: `release.created`, `instance.crashed`, ...).
    pub kind: crate::EventKind,
    pub env: Option<EnvName>,
    pub service: Option<ServiceName>,
    pub instance: Option<InstanceId>,
    pub node: Option<NodeName>,
    pub message: String,
    /// Who caused it: a token's name, `agent:NODE`, `controller@SERVER`, `autoscaler`, ...
    #[schema(value_type = String, example = "alice")]
    pub actor: crate::Actor,
}

#[cfg(test)]
mod tests {
    use super::InstanceState::*;
    use super::*;

    #[test]
    fn a_log_tail_keeps_the_last_whole_lines() {
        let mut tail = LogTail {
            instance: InstanceId::from_static("web-1-abc"),
            env: EnvName::from_static("dev"),
            service: ServiceName::from_static("web"),
            release: 1,
            node: NodeName::from_static("n1"),
            text: String::new(),
            updated_at: 0,
        };
        tail.append("first\nsecond\n");
        assert_eq!(tail.text, "first\nsecond\n");
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..1000 {
            tail.append(&line);
        }
        tail.append("last é\n");
        assert!(tail.text.len() <= LogTail::MAX_BYTES, "{}", tail.text.len());
        assert!(tail.text.starts_with('x') && tail.text.ends_with("last é\n"));
        assert!(tail.text.lines().all(|l| l.len() == 99 || l == "last é"));
    }

    #[test]
    fn instance_state_transitions() {
        let table = [
            (Pending, Starting, true),
            (Pending, Running, false),
            (Pending, Backoff, true),
            (Starting, Running, true),
            (Running, Unhealthy, true),
            (Unhealthy, Running, true),
            (Running, Backoff, true),
            (Backoff, Starting, true),
            (Backoff, Running, false),
            (Running, Stopping, true),
            (Stopping, Stopped, true),
            (Stopping, Running, false),
            (Stopped, Starting, false),
            (Failed, Running, false),
            (Pending, Failed, true),
            (Stopped, Stopped, true),
        ];
        for (from, to, ok) in table {
            assert_eq!(from.can_become(to), ok, "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let table = [
            (0, 250),
            (1, 500),
            (2, 1000),
            (6, 16_000),
            (7, 30_000),
            (40, 30_000),
        ];
        for (restarts, ms) in table {
            assert_eq!(restart_backoff_ms(restarts), ms, "restarts={restarts}");
        }
    }
}
