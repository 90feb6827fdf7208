//! Strata's drivers: how a node runs an instance.
//!
//! A [`Driver`] starts an instance from a [`StartSpec`] and returns an [`InstanceHandle`] to
//! wait on and stop it. A handle can be persisted ([`InstanceHandle::record`]) and re-adopted
//! by a later agent process ([`Driver::adopt`]), so an agent restart neither loses nor orphans
//! running instances. The agent supervises handles (health, restarts); drivers only run things.
//!
//! Drivers here: [`exec::ExecDriver`] (host processes). `wasm` and `container` plug into the
//! same trait.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_core::spec::DriverKind;

pub mod code;
pub mod exec;
pub mod sockets;

/// Everything a driver needs to start one instance. Its `Debug` names the environment's
/// variables, never their values (some are secrets).
#[derive(Clone)]
pub struct StartSpec {
    pub instance_id: String,
    /// What the instance's process is called where the driver can name it (`ps`, `top`): its
    /// service's name.
    pub name: String,
    /// The program: an artifact in the node's cache, or a host command's program.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Environment of the instance: its configuration and secrets delivered as variables,
    /// plus `PORT` and `STRATA_*`. Never read for a platform setting: those come in
    /// `settings`.
    pub env: BTreeMap<String, String>,
    /// Secrets delivered as files: each on a tmpfs only the instance sees, at its path.
    /// Only a driver with its own filesystem for the instance (container) can; the others
    /// refuse to start an instance with one.
    pub secret_files: Vec<SecretFile>,
    /// What the platform sets for the instance, from its validated spec.
    pub settings: DriverSettings,
    /// Where the instance's stdout and stderr go (appended).
    pub log_path: PathBuf,
    /// The instance's own scratch directory (its working directory).
    pub work_dir: PathBuf,
}

impl std::fmt::Debug for StartSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartSpec")
            .field("instance_id", &self.instance_id)
            .field("name", &self.name)
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secret_files", &self.secret_files)
            .field("settings", &self.settings)
            .field("log_path", &self.log_path)
            .field("work_dir", &self.work_dir)
            .finish()
    }
}

/// A secret the instance reads from a file; `Debug` shows the path only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Where the instance finds it (absolute, in the instance's own filesystem).
    pub path: String,
    pub value: String,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretFile({}, <redacted>)", self.path)
    }
}

impl StartSpec {
    /// Refuses an instance with secret files, for drivers that cannot show a file to one
    /// instance only.
    pub fn refuse_secret_files(&self, driver: &str) -> Result<(), String> {
        match self.secret_files.first() {
            None => Ok(()),
            Some(file) => Err(format!(
                "the {driver} driver cannot deliver a secret as a file ({}); deliver it as an environment variable",
                file.path
            )),
        }
    }
}

/// The platform's settings of one instance, built from its validated spec. They never travel
/// through the instance's environment, so nothing the application configures can change
/// them (a `[config]` entry named like a setting is just an environment variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverSettings {
    Exec(ExecSettings),
    Wasm(WasmSettings),
    Container(ContainerSettings),
}

impl Default for DriverSettings {
    fn default() -> Self {
        DriverSettings::Exec(ExecSettings::default())
    }
}

/// An exec instance's limits, applied where the node sandboxes exec instances (their own
/// cgroup); `None`: no limit (an unsandboxed process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecSettings {
    /// The cgroup's memory limit (`resources.memory`).
    pub memory_bytes: Option<u64>,
    /// The cgroup's CPU quota, in thousandths of a CPU (`resources.cpu`).
    pub cpu_millis: Option<u64>,
}

/// A wasm instance's limits; `None` keeps the driver's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasmSettings {
    /// Linear memory of one instance (`resources.memory`).
    pub memory_bytes: Option<u64>,
    /// How long one request may run (`[wasm] request_timeout`).
    pub request_timeout_ms: Option<u64>,
    /// Instances that may run at once (`[wasm] max_concurrency`).
    pub max_concurrency: Option<u32>,
}

/// A container's limits and privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSettings {
    /// The cgroup's memory limit (`resources.memory`).
    pub memory_bytes: u64,
    /// The cgroup's CPU quota, in thousandths of a CPU (`resources.cpu`).
    pub cpu_millis: u64,
    /// The most processes and threads (`[container] pids`); `None`: the driver's default.
    pub pids: Option<u64>,
    /// Linux capabilities beyond none (`[container] capabilities`), as the spec names them.
    pub capabilities: Vec<String>,
    /// No user namespace: root in the container is the host's root (`[container] userns =
    /// false`), which the node must allow.
    pub host_root: bool,
    /// Keep the writable layer when the container ends, until
    /// [`InstanceHandle::discard_writable_layer`] (or the instance's next start): the
    /// service archives its failures (`[forensics] archive_on = "failure"`).
    pub keep_writable_layer: bool,
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Why, when the driver knows better than the exit status (e.g. "killed: memory limit
    /// 64Mi reached" for an OOM kill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How [`Exit::reason`] begins for an instance killed for reaching its memory limit.
pub const OOM_KILLED: &str = "killed: memory limit";

impl Exit {
    /// Whether it was killed for reaching its memory limit (as its driver tells).
    pub fn oom_killed(&self) -> bool {
        self.reason
            .as_deref()
            .is_some_and(|reason| reason.starts_with(OOM_KILLED))
    }

    pub fn describe(&self) -> String {
        if let Some(reason) = &self.reason {
            return reason.clone();
        }
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "exited (status unknown: adopted after an agent restart)".into(),
        }
    }
}

/// A driver's error: says what failed and for which instance.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("instance {instance}: cannot start {program}: {}", spawn_reason(.source))]
    Spawn {
        instance: String,
        program: String,
        source: std::io::Error,
    },
    #[error("instance {instance}: cannot open log file {path}: {source}")]
    Log {
        instance: String,
        path: String,
        source: std::io::Error,
    },
    #[error("instance {instance}: cannot signal process {pid}: {reason}")]
    Signal {
        instance: String,
        pid: u32,
        reason: String,
    },
    #[error("instance {instance}: saved record cannot be read: {reason}")]
    Record { instance: String, reason: String },
}

/// Why a program could not be started, in words that say what to fix.
fn spawn_reason(error: &std::io::Error) -> String {
    const ENOEXEC: i32 = 8;
    match (error.kind(), error.raw_os_error()) {
        (std::io::ErrorKind::NotFound, _) => format!(
            "{error}: no such program on the node (install it, or ship it in the artifact's code)"
        ),
        (std::io::ErrorKind::PermissionDenied, _) => {
            format!("{error}: it is not executable (chmod +x it)")
        }
        (_, Some(ENOEXEC)) => format!(
            "{error}: not a program for this machine (built for another architecture, or a script without a #! line)"
        ),
        _ => error.to_string(),
    }
}

/// A running instance.
#[async_trait]
pub trait InstanceHandle: Send + Sync {
    fn pid(&self) -> Option<u32>;
    /// Waits until the instance ends. Cancel-safe.
    async fn wait(&self) -> Exit;
    /// Asks the instance to stop (SIGTERM), then forces it after `grace` (SIGKILL). Returns
    /// once it is gone.
    async fn stop(&self, grace: Duration) -> Exit;
    /// What a later agent needs to re-adopt this instance.
    fn record(&self) -> serde_json::Value;
    /// Where the program itself takes connections when that is not the node's `HOST:PORT`
    /// (a container's own address, behind the node's port forwarder). Health checks go
    /// here, so that they reach the program and never a forwarder that accepts for it.
    fn program_address(&self) -> Option<SocketAddr> {
        None
    }
    /// The instance's processes now (for what they listen on; see [`sockets`]).
    fn processes(&self) -> Vec<u32> {
        self.pid().map(sockets::process_tree).unwrap_or_default()
    }
    /// Freezes (`frozen`) or thaws every process of the instance, for a quarantine to archive
    /// it as it was: says how. By default each process is stopped (SIGSTOP) or continued
    /// (SIGCONT); drivers with a cgroup per instance use the cgroup freezer. An instance that
    /// lives in the agent's own process (wasm) cannot be frozen.
    fn freeze(&self, frozen: bool) -> Result<&'static str, String> {
        let processes = self.processes();
        if processes.is_empty() {
            return Err("the instance has no process of its own to freeze".to_string());
        }
        let signal = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        for pid in processes {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
        Ok(if frozen { "SIGSTOP" } else { "SIGCONT" })
    }

    /// Removes what the instance wrote that its driver kept after it ended
    /// ([`ContainerSettings::keep_writable_layer`]), once it is archived. Idempotent; a node
    /// being decommissioned keeps it all the same (its archive holds it).
    fn discard_writable_layer(&self) {}
}

/// A way to run instances.
#[async_trait]
pub trait Driver: Send + Sync {
    fn kind(&self) -> DriverKind;
    async fn start(&self, spec: &StartSpec) -> Result<Box<dyn InstanceHandle>, DriverError>;
    /// Re-adopts an instance from its saved record, if it still runs. `Ok(None)`: it is gone.
    async fn adopt(
        &self,
        instance_id: &str,
        record: &serde_json::Value,
    ) -> Result<Option<Box<dyn InstanceHandle>>, DriverError>;
    /// Releases what the driver holds for the node (not its instances: those are stopped, or
    /// left running for the next agent, by the agent). Called once when the agent stops.
    async fn shutdown(&self) {}
    /// From now on an instance that stops keeps what it wrote (a container's writable
    /// layer): the node is being decommissioned, and its archive holds it. Drivers that
    /// delete nothing an instance wrote (exec and wasm keep its working directory) need not
    /// do anything.
    fn keep_writable_layers(&self) {}
}
