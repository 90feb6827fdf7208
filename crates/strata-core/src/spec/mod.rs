//! The service spec: the TOML file a user writes (`strata.toml`), parsed into validated,
//! normalized types.
//!
//! [`parse`] turns the text into a [`SpecFile`]; every problem it finds is a [`SpecError`]
//! naming the file, line and column, the key, and a hint. The normalized [`ServiceSpec`] is
//! what travels to the control plane (as JSON) and is stored in each release.
//! docs/spec.md is the user's reference for every key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

mod parse;

pub use parse::{locate, parse, SpecError, SpecErrors};

use crate::model::Resources;

/// Which driver runs a service's instances.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    /// A host process (the artifact file, or a host command), with `PORT` set.
    Exec,
    /// A WebAssembly component (wasi:http).
    Wasm,
    /// An isolated container from layered images.
    Container,
}

impl DriverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Exec => "exec",
            DriverKind::Wasm => "wasm",
            DriverKind::Container => "container",
        }
    }
}

/// Where an instance listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PortSpec {
    /// The node picks a free port and passes it in `PORT`.
    Auto,
    /// The instance listens on this port (one such instance per node for `exec`).
    Fixed(u16),
}

/// A parsed spec file: one or more services, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpecFile {
    pub services: Vec<ServiceSpec>,
}

/// One service, validated and with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceSpec {
    /// A DNS label: lowercase letters, digits and `-`, at most 63 characters.
    pub name: String,
    pub driver: DriverKind,
    /// A file uploaded into the content store at deploy (path as written in the spec, relative
    /// to the spec file's directory). For `exec`, it is the program that runs.
    pub artifact: Option<String>,
    /// For `exec` without an artifact: a host command, program first.
    pub command: Vec<String>,
    /// Arguments appended to the artifact or command.
    pub args: Vec<String>,
    pub port: PortSpec,
    pub scale: ScaleSpec,
    pub route: RouteSpec,
    /// Configuration for every environment (injected as environment variables at start).
    pub config: BTreeMap<String, String>,
    /// Per-environment overrides of `config`, by environment name.
    pub env_config: BTreeMap<String, BTreeMap<String, String>>,
    pub health: Option<HealthSpec>,
    pub resources: Resources,
    /// Node labels an instance's node must carry (from `[placement] labels`).
    ///
    /// Omitted from the JSON when empty, so releases stored before it existed still read and
    /// hash the same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constraints: BTreeMap<String, String>,
    /// How long a stopping instance gets between SIGTERM and SIGKILL.
    pub stop_timeout_ms: u64,
    /// `[wasm]`: limits of a wasm service beyond `resources` (absent: the driver's defaults).
    ///
    /// Omitted from the JSON when absent, so releases stored before it existed still read and
    /// hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<WasmLimits>,
    /// `[container]`: what a container service may do beyond the default isolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSettings>,
    /// `[mesh]`: who may call the service through the mesh, and how the proxy calls it
    /// (absent: the defaults, see [`ServiceSpec::mesh_settings`]).
    ///
    /// Omitted from the JSON when absent, so releases stored before it existed still read and
    /// hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshSettings>,
}

/// How the mesh treats calls to a service: who may make them, and the deadline, retries and
/// circuit breaker every node's proxy applies to them. Any driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MeshSettings {
    /// The services of the same environment allowed to call this one: service names, or `*`
    /// (any service); empty, none. `None`: the environment's default policy applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_from: Option<Vec<String>>,
    /// The deadline of a call through the mesh, all attempts included (default 30 s).
    pub request_timeout_ms: u64,
    /// Extra attempts on another instance when the proxy deems it safe, `0..=5` (default 1).
    pub retries: u32,
    /// The most retries, in thousandths of the requests over the last 10 s, `0..=1000`
    /// (default 200, i.e. 0.2), so that retries never multiply an outage.
    pub retry_budget_permille: u32,
    /// Circuit breaker: requests in flight to this service from one node's proxy beyond which
    /// the proxy answers 503 at once, at least 1 (default 1024).
    pub max_concurrent: u32,
}

impl MeshSettings {
    pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_RETRIES: u32 = 1;
    pub const DEFAULT_RETRY_BUDGET_PERMILLE: u32 = 200;
    pub const DEFAULT_MAX_CONCURRENT: u32 = 1024;
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            allow_from: None,
            request_timeout_ms: Self::DEFAULT_REQUEST_TIMEOUT_MS,
            retries: Self::DEFAULT_RETRIES,
            retry_budget_permille: Self::DEFAULT_RETRY_BUDGET_PERMILLE,
            max_concurrent: Self::DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// Settings of a `container` service beyond `resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerSettings {
    /// Linux capabilities granted (names without `CAP_`, upper case); none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// The most processes and threads of one instance (driver default: 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

/// Limits of a `wasm` service: each request runs in a fresh instance, so these bound one
/// request and how many run at once on one node's instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WasmLimits {
    /// A request still running after this long is interrupted and answered 504
    /// (driver default: 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// Requests one instance serves at once; more get 503 (driver default: 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScaleSpec {
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteSpec {
    /// Served by the ingress at `SERVICE.ENV.localhost` (and `hosts`). `false`: mesh only.
    pub public: bool,
    /// Extra Host names the ingress routes to this service.
    pub hosts: Vec<String>,
}

/// An HTTP health check the agent runs against each instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthSpec {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive passes before an instance is healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures before an instance is unhealthy.
    pub unhealthy_threshold: u32,
}

impl ServiceSpec {
    /// The configuration synthesized for one environment: `config` overlaid with that
    /// environment's overrides.
    pub fn config_for(&self, env: &str) -> BTreeMap<String, String> {
        let mut values = self.config.clone();
        if let Some(overrides) = self.env_config.get(env) {
            values.extend(overrides.clone());
        }
        values
    }

    /// The service's `[mesh]` settings, or the defaults when it has no such table.
    pub fn mesh_settings(&self) -> MeshSettings {
        self.mesh.clone().unwrap_or_default()
    }

    /// `sha256:<hex>` of everything that defines what runs, except configuration (versioned
    /// apart) and scale (changing replicas is not a new release).
    pub fn spec_hash(&self, artifact_digest: Option<&str>) -> String {
        let mut shape = self.clone();
        shape.config.clear();
        shape.env_config.clear();
        shape.scale = ScaleSpec { replicas: 0 };
        let json = serde_json::to_vec(&(shape, artifact_digest)).expect("spec serializes");
        sha256_digest(&json)
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<hex>` of configuration values (order-independent: the map is sorted).
pub fn config_hash(values: &BTreeMap<String, String>) -> String {
    sha256_digest(&serde_json::to_vec(values).expect("config serializes"))
}
