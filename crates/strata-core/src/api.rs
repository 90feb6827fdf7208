//! The wire types of the control plane's HTTP API, shared by the server, the agent, the
//! ingress and the CLI so they cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::names::{EnvName, InstanceId, NodeName, ServiceName};

use crate::model::{
    ConfigVersion, Event, Instance, InstanceStatus, InstanceView, Node, Release, Resources, Service,
};
use crate::spec::{DriverKind, ServiceSpec};

/// An error as every endpoint returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code: `not_found`, `bad_request`, `conflict`, ...
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// How to fix it, when there is something to do.
    pub hint: Option<String>,
}

/// One service of a deploy: its spec and what the CLI resolved locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployService {
    pub spec: ServiceSpec,
    /// `sha256:<hex>` of the artifact, already uploaded to `/v1/blobs`.
    pub artifact_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployRequest {
    pub services: Vec<DeployService>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployedService {
    pub name: ServiceName,
    /// The release the service now wants.
    pub release: u64,
    /// Whether this deploy made a new release (false: spec, artifact and config unchanged).
    pub created: bool,
    pub replicas: u32,
    /// The release a progressive rollout (canary, blue-green) brings in beside `release`,
    /// while it does (`strata rollout status` follows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<u64>,
}

/// What a deploy would change, service by service (`strata deploy --dry-run`, `strata diff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployPreview {
    pub env: EnvName,
    pub services: Vec<ServicePreview>,
}

/// One service of a [`DeployPreview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServicePreview {
    pub name: ServiceName,
    /// The release the deploy would make; `None`: the one running stays.
    pub new_release: Option<u64>,
    /// What changes, a line each (configuration values never shown).
    pub changes: Vec<String>,
}

/// Promote a service's release from another environment into this one: its exact artifact
/// and spec, with this environment's configuration and secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromoteRequest {
    /// The environment promoted from.
    pub from: EnvName,
    /// The release there (default: the one it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// How long the release must have served there, in full and within its SLO, in seconds
    /// (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_s: Option<u64>,
    /// Promote even when the release does not serve in full, soaked too little or missed its
    /// SLO.
    #[serde(default)]
    pub force: bool,
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Promoted {
    pub env: EnvName,
    pub name: ServiceName,
    /// The release it runs now (new, or the same one when nothing changed).
    pub release: u64,
    pub created: bool,
    pub replicas: u32,
    pub from: crate::Origin,
}

/// Protect an environment (only promotion changes it) or open it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProtectionRequest {
    pub protected: bool,
}

/// Roll a service back to one of its releases, as it was (artifact, configuration, secrets'
/// versions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RollbackRequest {
    /// The release to go back to; unset: the newest one that served in full before the
    /// one running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    /// Why, for the event and the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a rollback did: the service now wants release `to` (it wanted `from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolledBack {
    pub env: EnvName,
    pub name: ServiceName,
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeployResponse {
    pub env: EnvName,
    pub services: Vec<DeployedService>,
}

/// A service with its releases and instances, as `strata status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceStatus {
    pub service: Service,
    /// The desired release.
    pub release: Option<Release>,
    pub instances: Vec<InstanceView>,
    /// `http://SERVICE.ENV.localhost:PORT/` style URLs the ingress serves it at.
    pub hosts: Vec<String>,
    /// Instances of the desired release available: healthy without a break for the
    /// release's `min_ready` (what a rollout and `deploy` wait for).
    #[serde(default)]
    pub available: u32,
}

/// Sent by an agent when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegisterNode {
    pub name: NodeName,
    pub agent_url: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    pub drivers: Vec<DriverKind>,
    /// The epoch this agent last ran under (from its data dir), so a restart of a node that
    /// was never declared down keeps its epoch and re-adopts its instances.
    pub last_epoch: Option<u64>,
    /// `host:port` where its proxy takes calls from other nodes (mutual TLS); `None`: it
    /// takes none (a single-node `strata dev`).
    #[serde(default)]
    pub mesh_addr: Option<String>,
    /// The agent's version ([`crate::version::VERSION`]), checked against the servers' by
    /// the version skew rule; `None`: an agent from before versions were sent.
    #[serde(default)]
    pub agent_version: Option<String>,
}

impl RegisterNode {
    /// Node `name`'s registration from an agent at `agent_url` with nothing else said: no
    /// labels, capacity, drivers, inter-node port, last epoch or version.
    pub fn bare(name: NodeName, agent_url: impl Into<String>) -> Self {
        RegisterNode {
            name,
            agent_url: agent_url.into(),
            labels: BTreeMap::new(),
            capacity: Resources::default(),
            drivers: Vec::new(),
            last_epoch: None,
            mesh_addr: None,
            agent_version: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    pub node: Node,
}

/// `POST /v1/nodes/{name}/leave`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Leaving {
    pub node: Node,
    /// Other nodes that take new work now: with none, the node's instances cannot move.
    pub nodes_taking_work: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    pub epoch: u64,
}

/// Something a node saw that belongs in the cluster's event log (e.g. a guest's outbound call
/// the platform refused). Recorded with the node's name and `agent:<node>` as the actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeEvent {
    /// A kind nodes may report ([`crate::EventKind::reported_by_nodes`]), e.g.
    /// `outbound.refused`.
    pub kind: crate::EventKind,
    pub env: Option<EnvName>,
    pub service: Option<ServiceName>,
    pub instance: Option<InstanceId>,
    pub message: String,
}

impl NodeEvent {
    /// The longest message kept; longer ones are cut.
    pub const MAX_MESSAGE: usize = 2048;
}

/// What a node's proxy saw of one service during one window (usually a second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceWindow {
    pub env: String,
    pub service: String,
    /// Requests answered in the window.
    pub requests: u64,
    /// Of those, answered 5xx.
    pub errors: u64,
    /// Requests in flight at the window's end.
    pub in_flight: i64,
    /// Latency to the response's headers, over the window's requests.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// While a progressive rollout splits the service's traffic: each release's attempts
    /// (a retried request is one attempt at each instance it went to), so a failing canary
    /// shows though its requests' retries succeed elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseWindow>,
}

/// One release's attempts in a metrics window (see [`ServiceWindow::releases`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseWindow {
    pub release: u64,
    /// Attempts sent to its instances that were answered or failed.
    pub attempts: u64,
    /// Of those, answered 5xx or not answered at all.
    pub failures: u64,
    /// Latency to the response's headers over its attempts.
    pub p99_ms: f64,
}

/// New output of a node's instances, shipped to the control plane every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippedLogs {
    pub chunks: Vec<LogChunk>,
}

/// Output an instance wrote since the last shipment (UTF-8, invalid bytes replaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogChunk {
    pub instance: String,
    pub data: String,
}

/// A node's per-service summaries for one window, sent to the control plane (the input of
/// SLO reports and autoscaling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsReport {
    pub window_ms: u64,
    pub services: Vec<ServiceWindow>,
}

/// One second of a service, over every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SecondSample {
    /// Start of the second (milliseconds since the epoch, as received).
    pub at: u64,
    pub requests: u64,
    pub errors: u64,
    pub in_flight: i64,
    /// The highest node p99 of that second (an upper bound of the service's p99).
    pub p99_ms: f64,
}

/// How a service did against its SLO over the last hour (from the nodes' traffic reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SloReport {
    pub env: String,
    pub service: String,
    /// The seconds of traffic the report covers (at most an hour; less after a leader change).
    pub covered_s: u64,
    pub requests: u64,
    /// Of those, answered 5xx.
    pub errors: u64,
    /// The fraction of requests answered without a server error (none: no request).
    pub success: Option<f64>,
    /// The fraction of requests that may fail, from the SLO's `availability` or `error_rate`
    /// (the stricter).
    pub allowed_failures: Option<f64>,
    /// What is left of the error budget: 1 untouched, 0 spent, below 0 overspent.
    pub error_budget_left: Option<f64>,
    pub p99_target_ms: Option<u64>,
    /// The fraction of seconds with requests whose p99 met the target.
    pub p99_attainment: Option<f64>,
    /// The worst second's p99.
    pub worst_p99_ms: Option<f64>,
}

/// A service's recent traffic, as the control plane has it from every node's reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceMetrics {
    pub env: String,
    pub service: String,
    /// The last seconds, oldest first (at most five minutes).
    pub seconds: Vec<SecondSample>,
}

/// The answer to a heartbeat: whether the node must register again (its epoch moved on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAck {
    pub reregister: bool,
    /// Beats the node sent by datagram that arrived since its last HTTP heartbeat (0: its
    /// datagrams do not arrive, so it should beat over HTTP).
    #[serde(default)]
    pub datagrams: u64,
}

/// `PUT /v1/nodes/{name}/status`: what a node observed of its instances since its last
/// report, many at once (at most [`StatusReports::MAX`]), in the order it observed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusReports {
    pub statuses: Vec<crate::InstanceStatus>,
}

impl StatusReports {
    /// The most statuses one report carries.
    pub const MAX: usize = 1_000;
}

/// The answer to [`StatusReports`]: the instances reported that are no longer wanted (or not
/// on this node), which the node stops; every other status was stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusReportsStored {
    pub not_wanted: Vec<crate::InstanceId>,
}

/// An instance an agent must run (or stop), with what it needs to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub instance: Instance,
    pub release: Release,
    pub config: ConfigVersion,
    /// The values of the secrets the release names, at the versions it pins: only in the
    /// node's own assignments, only for an instance it must run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<crate::secret::DeliveredSecret>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Assignments {
    /// The store revision the assignments were read at.
    pub revision: u64,
    /// Every instance of the node; to a blocking query (`index` given), only those changed
    /// after `index`.
    pub assignments: Vec<Assignment>,
    /// To a blocking query: the node's other instances, unchanged since `index` (the caller
    /// has them as it last got them). Empty to a full read, and to an answer by removals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchanged: Vec<crate::InstanceId>,
    /// To a blocking query that asked for removals (`removals=true`) and that the server
    /// can answer so: the `index` the answer is a change from. The node's set is then what
    /// the caller held at `index`, less [`Assignments::removed`], with `assignments` put in:
    /// an answer the size of the change, however many instances the node holds. `None`: the
    /// answer names the whole set (`assignments` and `unchanged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// With `since`: the instances no longer on the node since then, or that changed and can
    /// no longer run (their service deleted with its releases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<crate::InstanceId>,
    /// The node is being decommissioned (`strata node decommission`): once it holds no
    /// instance, its agent archives what it held, sends the archive, then wipes its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decommission: Option<crate::decommission::Decommissioning>,
}

impl Assignments {
    /// The node's whole set, given the one the caller held (by instance id): what changed
    /// with what did not. `None` if an instance said to be unchanged is not in `held` (read
    /// everything again).
    pub fn merged_with(
        self,
        held: &std::collections::HashMap<crate::InstanceId, Assignment>,
    ) -> Option<Vec<Assignment>> {
        if self.since.is_some() {
            let changed: std::collections::HashSet<&crate::InstanceId> =
                self.assignments.iter().map(|a| &a.instance.id).collect();
            let removed: std::collections::HashSet<&crate::InstanceId> =
                self.removed.iter().collect();
            let kept: Vec<Assignment> = held
                .iter()
                .filter(|(id, _)| !changed.contains(id) && !removed.contains(id))
                .map(|(_, assignment)| assignment.clone())
                .collect();
            let mut all = self.assignments;
            all.extend(kept);
            return Some(all);
        }
        let mut all = self.assignments;
        for id in self.unchanged {
            all.push(held.get(&id)?.clone());
        }
        Some(all)
    }
}

/// `PUT /v1/envs/{env}/services/{service}/scale`: a count and/or autoscaling bounds, by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScaleRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
}

/// `PUT /v1/envs/{env}/policy`: an environment's default for calls between its services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnvPolicyRequest {
    pub policy: crate::CallPolicy,
}

/// Where the ingress sends traffic for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Route {
    pub env: EnvName,
    pub service: ServiceName,
    /// Host names (without port) that route here.
    pub hosts: Vec<String>,
    /// `host:port` of every healthy instance.
    pub endpoints: Vec<String>,
    /// Instances wanted (for the 503 message when none is healthy).
    pub desired: u32,
    /// Whether the ingress serves it (`route.public`). Every service is reachable by name
    /// from the services of its environment, through the mesh.
    #[serde(default = "public_by_default")]
    pub public: bool,
    /// Which services of its environment may call it through the mesh: `None`, any; a list,
    /// those (`*`: any). From the service's `[mesh] allow_from`, else the environment's
    /// default policy.
    #[serde(default)]
    pub allow_from: Option<Vec<String>>,
    /// The rule behind `allow_from`, as 403 bodies and audit events name it.
    #[serde(default)]
    pub policy_rule: String,
    /// Deadline, retries and circuit breaker of calls to it (the service's `[mesh]`).
    #[serde(default)]
    pub limits: CallLimits,
    /// The node each endpoint runs on: a proxy reaches endpoints on other nodes through that
    /// node's proxy, over mutual TLS.
    #[serde(default)]
    pub endpoint_nodes: BTreeMap<String, String>,
    /// The service scales to zero (autoscaled with `min = 0`): with no instance, a request is
    /// held while one starts instead of answered 503 at once.
    #[serde(default)]
    pub scale_from_zero: bool,
    /// Instances being stopped on nodes that are up: they get no new request, but those they
    /// are handling finish (they drain). An instance neither here nor in `endpoints` is gone:
    /// its requests are retried elsewhere.
    #[serde(default)]
    pub draining: Vec<String>,
    /// The nodes holding its wanted instances (starting or serving): the only nodes whose
    /// proxies may call other services as this one (a node's word for its caller is believed
    /// only for services it runs).
    #[serde(default)]
    pub running_on: BTreeSet<String>,
    /// While a progressive rollout brings in a new release: the share of requests its
    /// instances get (the rest go to the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<TrafficSplit>,
    /// A `protocol = "tcp"` service: the port its callers dial (`NAME:PORT`), which its
    /// instances listen on. `None`: an HTTP service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
}

/// Where a node gives out service addresses (TCP services by name): 10.90.0.0/16, beside the
/// container network's 10.89.0.0/16. An address stands for one `protocol = "tcp"` service on
/// one node only; instances reach it through their default route (the node), where the
/// firewall sends it to the node's TCP proxy.
pub const SERVICE_ADDRESSES: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 90, 0, 0), 16);

/// How a route's traffic is split between a rollout's new release and the stable one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrafficSplit {
    /// The new release.
    pub release: u64,
    /// The release serving before it.
    pub stable: u64,
    /// The new release's share of requests, in percent.
    pub weight: u8,
    /// Its routed instances (a subset of the route's `endpoints`).
    pub endpoints: Vec<String>,
}

impl TrafficSplit {
    /// The release whose instance `endpoint` is.
    pub fn release_of(&self, endpoint: &str) -> u64 {
        if self.endpoints.iter().any(|e| e == endpoint) {
            self.release
        } else {
            self.stable
        }
    }
}

/// `GET /v1/envs/{env}/services/{service}/rollout`: a service's progressive rollout (going
/// on, or the last one's outcome), with its instances and the last analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutStatus {
    pub env: String,
    pub service: String,
    pub rollout: Option<crate::Rollout>,
    /// Instances of the new release wanted now, and of those available.
    pub wanted: u32,
    pub available: u32,
    /// The traffic of each release since the current weight took effect (its attempts).
    pub traffic: Vec<ReleaseWindow>,
}

/// `POST /v1/envs/{env}/services/{service}/rollout/{action}`: why (for the event).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutActionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn public_by_default() -> bool {
    true
}

/// How every node's proxy bounds calls to one service: from its `[mesh]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallLimits {
    /// Deadline of one call, all attempts included (504 past it).
    pub request_timeout_ms: u64,
    /// Extra attempts on other instances, when safe and within the budget.
    pub retries: u32,
    /// Retries allowed, in thousandths of the requests of the last 10 s.
    pub retry_budget_permille: u32,
    /// Requests in flight from one proxy beyond which it answers 503 at once.
    pub max_concurrent: u32,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self::from(&crate::spec::MeshSettings::default())
    }
}

impl From<&crate::spec::MeshSettings> for CallLimits {
    fn from(settings: &crate::spec::MeshSettings) -> Self {
        Self {
            request_timeout_ms: settings.request_timeout_ms,
            retries: settings.retries,
            retry_budget_permille: settings.retry_budget_permille,
            max_concurrent: settings.max_concurrent,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteTable {
    pub revision: u64,
    pub routes: Vec<Route>,
    /// Where each node's proxy takes calls from other nodes (mutual TLS), by node name.
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
    /// Nodes whose identity is revoked (decommissioned): a node's inter-node port refuses
    /// their certificates, however valid.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub revoked: std::collections::BTreeSet<String>,
}

/// A node's request for its certificate (agents only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateRequest {
    /// PKCS #10, PEM; the key stays on the node.
    pub csr: String,
    /// The address other nodes' proxies reach it at (named in the certificate).
    pub address: Option<String>,
}

/// A node's certificate and the CA that signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeCertificate {
    pub certificate: String,
    pub ca: String,
    /// When it was issued and until when it is valid, in seconds since the epoch.
    pub issued_at: u64,
    pub not_after: u64,
}

/// A change under a watched prefix, as sent on `/v1/watch` (one SSE `data:` per change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WatchChange {
    pub revision: u64,
    pub key: String,
    /// `put` or `delete`.
    pub kind: String,
    /// The new value (JSON), for puts.
    pub value: Option<serde_json::Value>,
}

/// Sent by an agent about one of its instances.
pub type StatusReport = InstanceStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub events: Vec<Event>,
}

/// The default host the ingress serves a service at.
pub fn default_host(service: &str, env: &str) -> String {
    format!("{service}.{env}.localhost")
}
