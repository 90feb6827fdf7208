//! [`ContainerDriver`]: prepares an instance (root, cgroup, network, bundle), runs it in the
//! container shim ([`crate::shim`]) under the `exec` driver's supervision, forwards its port, and cleans up after it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_core::spec::DriverKind;
use strata_runtime::exec::ExecDriver;
use strata_runtime::{Driver, DriverError, Exit, InstanceHandle, StartSpec};
use tokio::task::JoinHandle;

use crate::cgroup::{Hierarchy, InstanceCgroup, Limits};
use crate::net::{InstanceNetwork, NodeNetwork};
use crate::prepare::Root;
use crate::{ContainerError, IdShift, ImageSource};

/// The most processes and threads of an instance unless its spec says (`[container] pids`).
pub(crate) const DEFAULT_PIDS: u64 = 1024;

/// How the node runs containers.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// The agent's directory for container state (the runtime's state, address leases).
    pub state_dir: PathBuf,
    /// The command that runs [`crate::shim`]: a program and its first arguments, to which
    /// the driver adds `--root DIR --bundle DIR ID`. A node runs `strata container-shim`.
    pub shim: Vec<String>,
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    /// The capabilities past the ordinary set this node allows (`strata agent
    /// --allow-capability`; see `strata_core::capability`): any other is refused at start.
    pub allowed_capabilities: BTreeSet<String>,
    /// The host ids a container's user namespace maps its ids to (container root is host id
    /// `base`); `None`: containers share the host's ids (no user namespace at all).
    pub userns: Option<IdShift>,
    /// Whether a service may run without a user namespace, its root the host's (`[container]
    /// userns = false`; `strata agent --allow-host-root`). Refused at start otherwise.
    pub allow_host_root: bool,
}

/// The host ids containers' user namespaces map to by default: 65,536 ids from 1,700,000,000
/// (past any login user, apart from the exec sandbox's range at 1,600,000,000).
pub const DEFAULT_USERNS: IdShift = IdShift {
    base: 1_700_000_000,
    size: 65_536,
};

impl ContainerConfig {
    /// `shim` is the program (and first arguments) that runs [`crate::shim`].
    pub fn new(state_dir: impl Into<PathBuf>, shim: Vec<String>) -> Self {
        Self {
            state_dir: state_dir.into(),
            shim,
            bridge: crate::net::DEFAULT_BRIDGE.into(),
            gateway: crate::net::DEFAULT_GATEWAY,
            prefix_len: crate::net::DEFAULT_PREFIX_LEN,
            allowed_capabilities: BTreeSet::new(),
            userns: Some(DEFAULT_USERNS),
            allow_host_root: false,
        }
    }
}

/// Runs instances as containers.
pub struct ContainerDriver {
    pub(crate) config: ContainerConfig,
    pub(crate) network: NodeNetwork,
    pub(crate) cgroups: Hierarchy,
    pub(crate) images: Arc<dyn ImageSource>,
    pub(crate) exec: ExecDriver,
    usage: Arc<ImageUsage>,
    /// Set once the node is decommissioned: a stopping container's writable layer stays
    /// for the node's archive (the wipe removes it after).
    keep_writable: Arc<std::sync::atomic::AtomicBool>,
}

/// Which image each running instance uses, and when each image was last used: what image
/// garbage collection must keep.
#[derive(Default)]
struct ImageUsage {
    running: std::sync::Mutex<BTreeMap<String, String>>,
    last_used: std::sync::Mutex<BTreeMap<String, std::time::Instant>>,
}

impl ImageUsage {
    fn start(&self, instance: &str, image: &str) {
        self.running
            .lock()
            .expect("not poisoned")
            .insert(instance.to_string(), image.to_string());
        self.touch(image);
    }

    fn end(&self, instance: &str) {
        let image = self.running.lock().expect("not poisoned").remove(instance);
        if let Some(image) = image {
            self.touch(&image);
        }
    }

    fn touch(&self, image: &str) {
        self.last_used
            .lock()
            .expect("not poisoned")
            .insert(image.to_string(), std::time::Instant::now());
    }

    /// Images a running instance uses or that were used within `grace`.
    fn keep(&self, grace: Duration) -> Vec<String> {
        let mut keep: Vec<String> = self
            .running
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        let mut last_used = self.last_used.lock().expect("not poisoned");
        last_used.retain(|_, at| at.elapsed() < grace);
        keep.extend(last_used.keys().cloned());
        keep.sort();
        keep.dedup();
        keep
    }
}

impl Drop for ContainerDriver {
    fn drop(&mut self) {
        // Namespaces made ahead belong to no instance: remove them with the driver.
        self.network.close();
    }
}

/// What a later agent needs to re-adopt (or clean up after) a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub(crate) exec: serde_json::Value,
    pub(crate) network: InstanceNetwork,
    pub(crate) memory_bytes: u64,
    pub(crate) cpu_millis: u64,
    pub(crate) pids: u64,
    /// The instance's directory of mounts: its root and its bundle (below `reap::SANDBOXES`;
    /// in its work directory before user namespaces, with its upper directory).
    pub(crate) dir: PathBuf,
    /// A container's writable layer (`upper`, `overlay-work`), on the node's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upper: Option<PathBuf>,
    /// Where the node forwards from, and the container's port.
    pub(crate) listen: SocketAddr,
    pub(crate) port: u16,
    /// The image's id in the image source (kept from garbage collection while it runs);
    /// empty for a sandboxed exec instance.
    #[serde(default)]
    pub(crate) image: String,
    /// The host user a sandboxed exec instance runs as (`None`: a container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uid: Option<u32>,
    /// Its writable layer stays when it ends, for its failure's archive
    /// ([`strata_runtime::ContainerSettings::keep_writable_layer`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) keep_writable_layer: bool,
}

/// Everything made for one instance; [`Prepared::cleanup`] undoes it all.
pub(crate) struct Prepared {
    pub(crate) id: String,
    pub(crate) runtime_root: PathBuf,
    pub(crate) network: NodeNetwork,
    pub(crate) instance_net: InstanceNetwork,
    pub(crate) cgroup: InstanceCgroup,
    pub(crate) dir: PathBuf,
    pub(crate) upper: Option<PathBuf>,
    /// Keep the writable layer (its `upper/`) at cleanup: see [`ContainerDriver`].
    pub(crate) keep_writable: Arc<std::sync::atomic::AtomicBool>,
    /// Keep this instance's writable layer at cleanup, until
    /// [`Prepared::discard_writable_layer`]: its failures are archived.
    pub(crate) keep_own_writable: bool,
}

impl Prepared {
    /// Removes the runtime's state, the root mount, the network and the cgroup. Idempotent.
    pub(crate) fn cleanup(&self) {
        // The shim deletes its container when the container ends; state left behind means
        // the shim itself was killed, and the container may still run: kill and delete it.
        let state = self.runtime_root.join(&self.id);
        if state.join("state.json").exists() {
            if let Ok(mut container) = libcontainer::container::Container::load(state.clone()) {
                let _ = container.kill(nix::sys::signal::Signal::SIGKILL, true);
                let _ = container.delete(true);
            }
        }
        let _ = std::fs::remove_dir_all(&state);
        self.cgroup.remove();
        for mounted in ["rootfs", "bundle"] {
            let _ = nix::mount::umount2(&self.dir.join(mounted), nix::mount::MntFlags::MNT_DETACH);
        }
        self.network.detach(&self.instance_net);
        // Never through a mount still there: a sandboxed exec instance's root is the host's.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let still = crate::reap::mounted_below(&mountinfo, &self.dir);
        if still.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
            if let Some(upper) = &self.upper {
                if self.node_keeps_writable() || self.keep_own_writable {
                    // The layer stays for an archive; overlayfs's scratch space goes.
                    let _ = std::fs::remove_dir_all(upper.join("overlay-work"));
                } else {
                    let _ = std::fs::remove_dir_all(upper);
                }
            }
        } else {
            tracing::error!(instance = %self.id, mounts = ?still, "cannot unmount the instance's mounts; its directory stays");
        }
    }

    fn node_keeps_writable(&self) -> bool {
        self.keep_writable.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Removes a writable layer kept at cleanup (unless the node keeps every layer for its
    /// decommission's archive), never through a mount.
    pub(crate) fn discard_writable_layer(&self) {
        let Some(upper) = &self.upper else {
            return;
        };
        if self.node_keeps_writable() {
            return;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if crate::reap::mounted_below(&mountinfo, &self.dir).is_empty()
            && crate::reap::mounted_below(&mountinfo, upper).is_empty()
        {
            let _ = std::fs::remove_dir_all(upper);
        }
    }
}

impl ContainerDriver {
    /// Sets up the node's container network and checks the cgroup layout and the runtime.
    pub fn new(
        config: ContainerConfig,
        images: Arc<dyn ImageSource>,
    ) -> Result<Self, ContainerError> {
        let cgroups = Hierarchy::detect()?;
        match crate::cgroup::favor_dynamic_changes() {
            Ok(Some(done)) => tracing::info!("{done}"),
            Ok(None) => {}
            // Slower starts, nothing worse.
            Err(error) => tracing::warn!(%error, "container starts will wait for cgroup moves"),
        }
        match config.shim.first() {
            Some(program) if Path::new(program).is_file() => {}
            _ => {
                return Err(ContainerError::Config(format!(
                    "the container shim {:?} is not a program; a node runs `strata container-shim`",
                    config.shim
                )))
            }
        }
        let network = NodeNetwork::ensure(
            &config.bridge,
            config.gateway,
            config.prefix_len,
            &config.state_dir,
        )?;
        // Mounts and cgroups of containers whose agent was killed before it removed them,
        // and that nothing re-adopts.
        let (mounts, cgroups_removed) = crate::reap::reap(&cgroups);
        if mounts + cgroups_removed > 0 {
            tracing::info!(
                mounts,
                cgroups = cgroups_removed,
                "removed what killed agents left"
            );
        }
        Ok(Self {
            config,
            network,
            cgroups,
            images,
            exec: ExecDriver,
            usage: Arc::default(),
            keep_writable: Arc::default(),
        })
    }

    /// Opens the way from instances to the node's mesh proxy listening at
    /// [`ContainerDriver::gateway`]`:port`; instances' `HTTP_PROXY` on loopback is pointed there.
    pub fn allow_mesh_proxy(&self, port: u16) -> Result<(), ContainerError> {
        self.network.allow_mesh_port(port)
    }

    /// From now on this node's instances reach its resolver and TCP proxy for them, on the
    /// gateway at `ports` (TCP services by name).
    pub fn serve_by_name(&self, ports: crate::net::ByName) -> Result<(), ContainerError> {
        self.network.serve_by_name(ports)
    }

    /// The environment and service of the instance at `address` on the node's bridge.
    pub fn caller_at(&self, address: std::net::IpAddr) -> Option<(String, String)> {
        match address {
            std::net::IpAddr::V4(address) => self.network.caller_at(address),
            std::net::IpAddr::V6(_) => None,
        }
    }

    /// The node's address on the container bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.network.gateway()
    }

    /// Removes the images no instance runs and none used within `grace` (and the layers only
    /// they had). Returns what was freed.
    pub fn collect_garbage(&self, grace: Duration) -> Result<String, ContainerError> {
        self.images.collect(&self.usage.keep(grace))
    }

    /// Collects unused images every `every`, keeping those used within `grace`.
    pub fn spawn_garbage_collection(
        self: &Arc<Self>,
        every: Duration,
        grace: Duration,
    ) -> JoinHandle<()> {
        let driver = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(driver) = driver.upgrade() else {
                    return;
                };
                match tokio::task::spawn_blocking(move || driver.collect_garbage(grace)).await {
                    Ok(Ok(summary)) => tracing::info!("image garbage collection: {summary}"),
                    Ok(Err(error)) => tracing::warn!(%error, "image garbage collection failed"),
                    Err(_) => {}
                }
            }
        })
    }

    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.config.state_dir.join("runtime")
    }

    pub(crate) fn prepared(&self, id: &str, record: &ContainerRecord) -> Prepared {
        Prepared {
            id: id.to_string(),
            runtime_root: self.runtime_root(),
            network: self.network.clone(),
            instance_net: record.network.clone(),
            cgroup: InstanceCgroup::open(
                &self.cgroups,
                id,
                Limits {
                    memory_bytes: record.memory_bytes,
                    cpu_millis: record.cpu_millis,
                    pids: record.pids,
                },
            ),
            dir: record.dir.clone(),
            upper: record.upper.clone(),
            keep_writable: self.keep_writable.clone(),
            keep_own_writable: record.keep_writable_layer,
        }
    }

    /// Where instance `id`'s root and bundle are mounted while it runs (`ID/rootfs`,
    /// `ID/bundle`).
    pub fn mounts_of(&self, id: &str) -> PathBuf {
        self.mounts_dir().join(id)
    }

    /// This agent's directory of instance mounts below [`crate::reap::SANDBOXES`] (named by
    /// a hash of its state directory: several agents may share a host).
    pub(crate) fn mounts_dir(&self) -> PathBuf {
        use sha2::Digest;
        let agent = sha2::Sha256::digest(self.config.state_dir.as_os_str().as_encoded_bytes());
        PathBuf::from(crate::reap::SANDBOXES).join(hex::encode(&agent[..4]))
    }

    pub(crate) fn handle(
        &self,
        inner: Box<dyn InstanceHandle>,
        prepared: Prepared,
        mut record: ContainerRecord,
    ) -> Result<Box<dyn InstanceHandle>, DriverError> {
        record.exec = inner.record();
        // The node's port is forwarded by the shim (`shim::forward`), which outlives an
        // agent replaced in place: nothing here holds it.
        self.usage.start(&prepared.id, &record.image);
        Ok(Box::new(ContainerHandle {
            inner,
            prepared: Arc::new(prepared),
            record,
            finished: tokio::sync::Mutex::new(None),
            usage: self.usage.clone(),
        }))
    }
}

#[async_trait]
impl Driver for ContainerDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Container
    }

    async fn start(&self, spec: &StartSpec) -> Result<Box<dyn InstanceHandle>, DriverError> {
        let failed = |error: ContainerError| DriverError::Spawn {
            instance: spec.instance_id.clone(),
            program: spec.program.display().to_string(),
            source: std::io::Error::other(error.to_string()),
        };
        let (prepared, record, run) = {
            let this = self;
            let spec = spec.clone();
            // Mounts, namespaces and cgroups are blocking calls.
            tokio::task::block_in_place(|| this.prepare(&spec, &Root::Image)).map_err(failed)?
        };
        let inner = match self.exec.start(&run).await {
            Ok(inner) => inner,
            Err(error) => {
                prepared.cleanup();
                return Err(error);
            }
        };
        self.handle(inner, prepared, record)
    }

    async fn adopt(
        &self,
        instance_id: &str,
        record: &serde_json::Value,
    ) -> Result<Option<Box<dyn InstanceHandle>>, DriverError> {
        let record: ContainerRecord =
            serde_json::from_value(record.clone()).map_err(|error| DriverError::Record {
                instance: instance_id.to_string(),
                reason: error.to_string(),
            })?;
        let mut prepared = self.prepared(instance_id, &record);
        match self.exec.adopt(instance_id, &record.exec).await? {
            Some(inner) => self.handle(inner, prepared, record).map(Some),
            None => {
                // It ended while no agent watched: nothing archives it, nothing is kept.
                prepared.keep_own_writable = false;
                prepared.cleanup();
                Ok(None)
            }
        }
    }

    async fn shutdown(&self) {
        let network = self.network.clone();
        let _ = tokio::task::spawn_blocking(move || network.close()).await;
    }

    fn keep_writable_layers(&self) {
        self.keep_writable
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

struct ContainerHandle {
    inner: Box<dyn InstanceHandle>,
    prepared: Arc<Prepared>,
    record: ContainerRecord,
    /// The exit, named once (before anything is removed), and a receiver that turns `true`
    /// once everything the instance had is removed (by one task, whoever waits for it).
    finished: tokio::sync::Mutex<Option<(Exit, tokio::sync::watch::Receiver<bool>)>>,
    usage: Arc<ImageUsage>,
}

impl ContainerHandle {
    /// Once the runtime has exited: says why (an OOM kill by name) and removes everything.
    /// Safe to cancel (a supervisor's `select!` drops its wait when another branch wins): why
    /// is read and kept before anything it is read from (the shim's mark, the cgroup) is
    /// removed, and the removal runs once, in a task of its own, which every call awaits.
    async fn finish(&self, exit: Exit) -> Exit {
        let (exit, mut removed) = {
            let mut finished = self.finished.lock().await;
            match finished.as_ref() {
                Some((exit, removed)) => (exit.clone(), removed.clone()),
                None => {
                    let exit = self.named(exit);
                    let (done, removed) = tokio::sync::watch::channel(false);
                    let (prepared, usage) = (self.prepared.clone(), self.usage.clone());
                    tokio::spawn(async move {
                        let id = prepared.id.clone();
                        let _ = tokio::task::spawn_blocking(move || prepared.cleanup()).await;
                        usage.end(&id);
                        let _ = done.send(true);
                    });
                    *finished = Some((exit.clone(), removed.clone()));
                    (exit, removed)
                }
            }
        };
        let _ = removed.wait_for(|removed| *removed).await;
        exit
    }

    /// `exit` with its reason when the kernel killed the container at its memory limit.
    fn named(&self, mut exit: Exit) -> Exit {
        let killed = exit.signal == Some(9) || exit.code == Some(128 + 9);
        let marked = self
            .prepared
            .dir
            .join("bundle")
            .join(crate::shim::OOM_KILLED_MARK)
            .exists();
        if killed && (marked || self.prepared.cgroup.oom_killed()) {
            exit.reason = Some(format!(
                "{} {} reached",
                strata_runtime::OOM_KILLED,
                bytes(self.prepared.cgroup.limits().memory_bytes)
            ));
        }
        exit
    }
}

#[async_trait]
impl InstanceHandle for ContainerHandle {
    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    async fn wait(&self) -> Exit {
        let exit = self.inner.wait().await;
        self.finish(exit).await
    }

    async fn stop(&self, grace: Duration) -> Exit {
        let exit = self.inner.stop(grace).await;
        self.finish(exit).await
    }

    fn record(&self) -> serde_json::Value {
        serde_json::to_value(&self.record).expect("record serializes")
    }

    fn program_address(&self) -> Option<SocketAddr> {
        Some(SocketAddr::from((
            self.record.network.address,
            self.record.port,
        )))
    }

    fn processes(&self) -> Vec<u32> {
        self.prepared.cgroup.processes()
    }

    fn freeze(&self, frozen: bool) -> Result<&'static str, String> {
        self.prepared
            .cgroup
            .freeze(frozen)
            .map_err(|e| e.to_string())
    }

    fn discard_writable_layer(&self) {
        self.prepared.discard_writable_layer();
    }
}

/// `64Mi`-style, as the spec writes memory.
fn bytes(n: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_written_as_the_spec_writes_it() {
        let table = [
            (64 << 20, "64Mi"),
            (1 << 30, "1Gi"),
            (1536, "1536"),
            (2048, "2Ki"),
        ];
        for (n, text) in table {
            assert_eq!(bytes(n), text);
        }
    }
}
