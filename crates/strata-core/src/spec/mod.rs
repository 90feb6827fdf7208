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

mod error;
mod parse;

pub use error::{SpecError, SpecErrors};
pub use parse::{check_received, is_capability, locate, parse, parse_size, ReceivedSpecError};

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

/// What a service speaks, so how the mesh carries calls to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP: callers use `http://NAME/` through the node's proxy (`HTTP_PROXY`); requests are
    /// balanced, retried and bounded one by one.
    #[default]
    Http,
    /// Any protocol over TCP (Redis, PostgreSQL, NATS, ...): callers dial `NAME:PORT`; each
    /// connection is balanced and carried whole.
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        }
    }

    pub fn is_http(&self) -> bool {
        *self == Protocol::Http
    }
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
    pub name: crate::ServiceName,
    pub driver: DriverKind,
    /// A file uploaded into the content store at deploy (path as written in the spec, relative
    /// to the spec file's directory). For `exec`, it is the program that runs.
    pub artifact: Option<String>,
    /// For `exec` without an artifact: a host command, program first.
    pub command: Vec<String>,
    /// Arguments appended to the artifact or command.
    pub args: Vec<String>,
    pub port: PortSpec,
    /// What the service speaks (`protocol`). Omitted from the JSON when `http`, so releases
    /// stored before it existed still read and hash the same.
    #[serde(default, skip_serializing_if = "Protocol::is_http")]
    pub protocol: Protocol,
    pub scale: ScaleSpec,
    pub route: RouteSpec,
    /// Configuration for every environment (injected as environment variables at start).
    pub config: BTreeMap<String, String>,
    /// Per-environment overrides of `config`, by environment name.
    pub env_config: BTreeMap<String, BTreeMap<String, String>>,
    pub health: Option<HealthSpec>,
    /// `[liveness]`: a check whose repeated failure restarts the instance (absent: none; a
    /// failing `[health]` check only takes an instance out of routing).
    ///
    /// Omitted from the JSON when absent, so releases stored before it existed still read and
    /// hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<LivenessSpec>,
    /// How long an instance must stay healthy before a rollout counts it as available (and
    /// stops an old instance for it), and before `deploy` calls a release serving.
    ///
    /// Omitted from the JSON at its default, so releases stored before it existed still read
    /// and hash the same.
    #[serde(
        default = "default_min_ready_ms",
        skip_serializing_if = "is_default_min_ready"
    )]
    pub min_ready_ms: u64,
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
    /// `[rollout]`: how a new release replaces the old one (absent: rolling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
    /// `[mesh]`: who may call the service through the mesh, and how the proxy calls it
    /// (absent: the defaults, see [`ServiceSpec::mesh_settings`]).
    ///
    /// Omitted from the JSON when absent, so releases stored before it existed still read and
    /// hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshSettings>,
    /// `[secrets]`: the secrets an instance gets, by name, and where (an environment
    /// variable or a file). Only names: values are set apart (`strata secret set`), sealed,
    /// and reach only the node running an instance.
    ///
    /// Omitted from the JSON when empty, so releases stored before it existed still read and
    /// hash the same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::secret::SecretTarget>,
    /// `[slo]`: the service level objective the autoscaler defends and `strata status` reports
    /// attainment and error budget against (absent: none).
    ///
    /// Not part of the spec hash (changing an SLO does not roll instances), and omitted from the
    /// JSON when absent, so releases stored before it existed still read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloSpec>,
    /// `[forensics]`: what the platform keeps of an instance that fails (absent: nothing).
    ///
    /// Omitted from the JSON when absent, so releases stored before it existed still read and
    /// hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forensics: Option<ForensicsSpec>,
}

/// `[forensics]`: an instance that crashes, is killed for its memory or restarted by its
/// liveness check is archived by its node before it starts again (its log, working directory,
/// a container's writable layer, and why it ended), signed and kept by the control plane for
/// `keep`, then removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForensicsSpec {
    pub archive_on: ArchiveOn,
    /// How long the control plane keeps each such archive, in milliseconds.
    pub keep_ms: u64,
}

impl ForensicsSpec {
    /// `keep` when the table does not say: seven days.
    pub const DEFAULT_KEEP_MS: u64 = 7 * 24 * 3_600_000;

    /// Whether an instance that failed is archived.
    pub fn archives_failures(spec: Option<&ForensicsSpec>) -> bool {
        spec.is_some_and(|f| f.archive_on == ArchiveOn::Failure)
    }
}

/// When an instance is archived without an operator asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveOn {
    /// Each time it ends on its own (crash, OOM kill) or is restarted by its liveness check.
    Failure,
    /// Never (as without the table).
    Never,
}

impl ArchiveOn {
    pub const NAMES: [&'static str; 2] = ["failure", "never"];

    pub fn parse(name: &str) -> Option<ArchiveOn> {
        match name {
            "failure" => Some(ArchiveOn::Failure),
            "never" => Some(ArchiveOn::Never),
            _ => None,
        }
    }
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

/// How a new release replaces the old one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStrategy {
    /// New instances first; old ones stop once their replacements are available (and, when
    /// no node can take a replacement beside an old instance, that one stops first).
    #[default]
    Rolling,
    /// Every old instance stops at once, then the new ones start: a moment with none.
    Recreate,
    /// The new release takes a growing share of the traffic, step by step, while its
    /// requests are compared with the stable release's; a failed analysis rolls it back.
    Canary,
    /// The new release starts in full beside the stable one, with no traffic; then all the
    /// traffic switches to it, and back if its analysis fails.
    #[serde(rename = "blue-green")]
    BlueGreen,
}

impl RolloutStrategy {
    /// Whether the new release is brought in by the rollout controller, analysed against
    /// the stable one (canary, blue-green), rather than by the reconciler alone.
    pub fn is_progressive(self) -> bool {
        matches!(self, RolloutStrategy::Canary | RolloutStrategy::BlueGreen)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStrategy::Rolling => "rolling",
            RolloutStrategy::Recreate => "recreate",
            RolloutStrategy::Canary => "canary",
            RolloutStrategy::BlueGreen => "blue-green",
        }
    }
}

/// `[service.NAME.rollout]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutSpec {
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Canary: the new release's share of the traffic at each step, in percent, increasing,
    /// the last 100 (default 5, 25, 50, 100). Blue-green: 100, one switch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<u8>,
    /// How long each step's traffic is analysed before the next step (canary, blue-green).
    #[serde(
        default = "RolloutSpec::default_step_interval_ms",
        skip_serializing_if = "RolloutSpec::is_default_step_interval"
    )]
    pub step_interval_ms: u64,
    /// What the new release's requests must meet (canary, blue-green).
    #[serde(default, skip_serializing_if = "CanaryCriteria::is_default")]
    pub analysis: CanaryCriteria,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            strategy: RolloutStrategy::Rolling,
            steps: Vec::new(),
            step_interval_ms: Self::DEFAULT_STEP_INTERVAL_MS,
            analysis: CanaryCriteria::default(),
        }
    }
}

impl RolloutSpec {
    pub const DEFAULT_STEP_INTERVAL_MS: u64 = 30_000;
    /// A canary's steps when the spec names none.
    pub const DEFAULT_CANARY_STEPS: [u8; 4] = [5, 25, 50, 100];

    fn default_step_interval_ms() -> u64 {
        Self::DEFAULT_STEP_INTERVAL_MS
    }

    fn is_default_step_interval(ms: &u64) -> bool {
        *ms == Self::DEFAULT_STEP_INTERVAL_MS
    }

    /// The traffic shares a progressive rollout goes through, in percent: the spec's steps,
    /// the canary's default ones, or one switch for blue-green.
    pub fn traffic_steps(&self) -> Vec<u8> {
        match self.strategy {
            RolloutStrategy::BlueGreen => vec![100],
            _ if !self.steps.is_empty() => self.steps.clone(),
            _ => Self::DEFAULT_CANARY_STEPS.to_vec(),
        }
    }
}

/// What a canary's (or a blue-green's new release's) requests must meet, compared with the
/// stable release's over the same seconds; unset limits come from the service's `[slo]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CanaryCriteria {
    /// The most the new release's error rate may exceed the stable's by (default: the
    /// `[slo]`'s `error_rate`, else 1%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<Ratio>,
    /// The p99 latency (ms) the new release must stay under unless the stable is as slow
    /// (default: the `[slo]`'s `p99_ms`, else latency is not judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u64>,
    /// Requests the new release must have answered in a step before it is judged (fewer:
    /// the step waits, and says so).
    #[serde(default = "CanaryCriteria::default_min_requests")]
    pub min_requests: u32,
}

impl Default for CanaryCriteria {
    fn default() -> Self {
        CanaryCriteria {
            max_error_rate: None,
            max_p99_ms: None,
            min_requests: Self::DEFAULT_MIN_REQUESTS,
        }
    }
}

impl CanaryCriteria {
    pub const DEFAULT_MIN_REQUESTS: u32 = 20;
    /// The error-rate margin when neither the analysis nor the `[slo]` sets one: 1%.
    pub const DEFAULT_MAX_ERROR_RATE: Ratio = Ratio::from_ppm(10_000);

    fn default_min_requests() -> u32 {
        Self::DEFAULT_MIN_REQUESTS
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The limits in force for a service with `slo`: the analysis's own, else the SLO's.
    pub fn with_slo(self, slo: Option<&SloSpec>) -> CanaryCriteria {
        CanaryCriteria {
            max_error_rate: self
                .max_error_rate
                .or(slo.and_then(|slo| slo.error_rate))
                .or(Some(Self::DEFAULT_MAX_ERROR_RATE)),
            max_p99_ms: self.max_p99_ms.or(slo.and_then(|slo| slo.p99_ms)),
            min_requests: self.min_requests,
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
    /// `Some(false)`: the container's root is the host's root (no user namespace), only on
    /// nodes that allow it; unset or `true`: root in the container is an unprivileged host user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<bool>,
}

impl ContainerSettings {
    /// Whether the container runs as the host's root (`userns = false`).
    pub fn host_root(&self) -> bool {
        self.userns == Some(false)
    }
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

/// How many instances run: a fixed count, or a range the autoscaler moves in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScaleSpec {
    /// Without `autoscale`: how many instances run. With it: the count to start with, within
    /// `[min, max]` (the spec's `replicas`, or `min` when not written).
    pub replicas: u32,
    /// `min` and `max` in `[scale]`: the control plane sets the instance count between them
    /// from the requests in flight (absent: a fixed count of `replicas`).
    ///
    /// Not part of the spec hash, and omitted from the JSON when absent, so releases stored
    /// before it existed still read the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoscaleSpec>,
}

impl ScaleSpec {
    /// A fixed count of instances, without autoscaling.
    pub const fn fixed(replicas: u32) -> ScaleSpec {
        ScaleSpec {
            replicas,
            autoscale: None,
        }
    }
}

/// Autoscaling bounds: the control plane keeps the instance count between `min` and `max`,
/// aiming at `target_concurrency` requests in flight per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AutoscaleSpec {
    /// The fewest instances, `0..=max`. `0`: the last instance stops after
    /// `scale_to_zero_after` without requests.
    pub min: u32,
    /// The most instances, `1..=1000`.
    pub max: u32,
    /// Requests in flight per instance the autoscaler aims at, `1..=10000` (default 10).
    pub target_concurrency: u32,
    /// With `min = 0`: how long without requests before the last instance stops, 1 s to 24 h
    /// (default 60 s). Kept at the default, and unused, when `min > 0`.
    pub scale_to_zero_after_ms: u64,
}

impl AutoscaleSpec {
    pub const DEFAULT_TARGET_CONCURRENCY: u32 = 10;
    pub const DEFAULT_SCALE_TO_ZERO_AFTER_MS: u64 = 60_000;
}

/// A service level objective: what the autoscaler defends, and what `strata status` reports
/// attainment and error budget against. At least one objective is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SloSpec {
    /// The 99th-percentile latency to stay under, in milliseconds, `1..=600000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<u64>,
    /// The largest fraction of requests that may fail, strictly between 0 and 1 (`0.01`: 1%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<Ratio>,
    /// The smallest fraction of time the service must be available, strictly between 0 and 1
    /// (`0.999`: 99.9%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Ratio>,
}

/// A fraction from 0 to 1, held exactly in parts per million so that it has `Eq`, `Ord` and
/// `Hash`. In JSON it is a number (`0.999`). `Display` shows a percentage: `99.9%`, `0.05%`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ratio {
    ppm: u32,
}

impl Ratio {
    /// Parts per million in one whole.
    pub const ONE_PPM: u32 = 1_000_000;
    pub const ZERO: Ratio = Ratio { ppm: 0 };
    pub const ONE: Ratio = Ratio { ppm: Self::ONE_PPM };

    /// A ratio of `ppm` parts per million; more than a million is clamped to 1.
    pub const fn from_ppm(ppm: u32) -> Ratio {
        Ratio {
            ppm: if ppm > Self::ONE_PPM {
                Self::ONE_PPM
            } else {
                ppm
            },
        }
    }

    /// The ratio nearest to `value` in parts per million, or `None` when `value` is not a
    /// number from 0 to 1.
    pub fn from_f64(value: f64) -> Option<Ratio> {
        if !(0.0..=1.0).contains(&value) {
            return None;
        }
        Some(Ratio::from_ppm(
            (value * f64::from(Self::ONE_PPM)).round() as u32
        ))
    }

    /// Parts per million, `0..=1_000_000`.
    pub const fn ppm(self) -> u32 {
        self.ppm
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.ppm) / f64::from(Self::ONE_PPM)
    }
}

impl std::fmt::Display for Ratio {
    /// A percentage, exact: `99.9%`, `1%`, `0.0001%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 1% is 10_000 ppm.
        let (whole, rest) = (self.ppm / 10_000, self.ppm % 10_000);
        if rest == 0 {
            return write!(f, "{whole}%");
        }
        let decimals = format!("{rest:04}");
        write!(f, "{whole}.{}%", decimals.trim_end_matches('0'))
    }
}

impl Serialize for Ratio {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Ratio::from_f64(value).ok_or_else(|| {
            serde::de::Error::custom(format_args!("a ratio must be from 0 to 1, found {value}"))
        })
    }
}

impl utoipa::PartialSchema for Ratio {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
            .minimum(Some(0.0))
            .maximum(Some(1.0))
            .description(Some(
                "A fraction from 0 to 1, in steps of one millionth (0.999 is 99.9%).",
            ))
            .into()
    }
}

impl ToSchema for Ratio {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteSpec {
    /// Served by the ingress at `SERVICE.ENV.localhost` (and `hosts`). `false`: mesh only.
    pub public: bool,
    /// Extra Host names the ingress routes to this service.
    pub hosts: Vec<String>,
}

/// How long an instance stays healthy before it counts as available, unless the spec says.
pub const DEFAULT_MIN_READY_MS: u64 = 1_000;

fn default_min_ready_ms() -> u64 {
    DEFAULT_MIN_READY_MS
}

fn is_default_min_ready(ms: &u64) -> bool {
    *ms == DEFAULT_MIN_READY_MS
}

/// A liveness check: after `unhealthy_threshold` consecutive failures the agent restarts the
/// instance. Checks start once the instance has first been healthy, so a slow start is not
/// mistaken for a hang.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LivenessSpec {
    /// The URL path to GET (2xx or 3xx passes); absent: a TCP connect to the program's port.
    pub path: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures before the instance is restarted.
    pub unhealthy_threshold: u32,
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

    /// This spec without its configuration (`config` and every environment's overrides):
    /// what a release keeps. Configuration is versioned apart ([`crate::ConfigVersion`],
    /// readable only by roles that may read config) and reaches instances from there, so no
    /// read of a release or a service can show a value.
    pub fn without_config(&self) -> ServiceSpec {
        let mut spec = self.clone();
        spec.config.clear();
        spec.env_config.clear();
        spec
    }

    /// The service's `[mesh]` settings, or the defaults when it has no such table.
    pub fn mesh_settings(&self) -> MeshSettings {
        self.mesh.clone().unwrap_or_default()
    }

    /// `sha256:<hex>` of everything that defines what runs, except configuration (versioned
    /// apart), scale (changing replicas or the autoscaling bounds is not a new release) and the
    /// SLO (changing an objective does not roll instances).
    pub fn spec_hash(&self, artifact_digest: Option<&str>) -> String {
        let json =
            serde_json::to_vec(&(self.release_shape(), artifact_digest)).expect("spec serializes");
        sha256_digest(&json)
    }

    /// What of the spec makes a release: all but configuration (versioned apart), scale and
    /// SLO (a deploy changes those without a new release).
    pub fn release_shape(&self) -> ServiceSpec {
        let mut shape = self.without_config();
        shape.scale = ScaleSpec::fixed(0);
        shape.slo = None;
        shape
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
