//! [`ContainerDriver`]: prepares an instance (root, cgroup, network, bundle), runs it in the
//! container shim ([`crate::shim`]) under the `exec` driver's supervision, forwards its port, and cleans up after it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_core::spec::DriverKind;
use strata_runtime::exec::ExecDriver;
use strata_runtime::{Driver, DriverError, DriverSettings, Exit, InstanceHandle, StartSpec};
use tokio::task::JoinHandle;

use crate::cgroup::{Hierarchy, InstanceCgroup, Limits};
use crate::net::{InstanceNetwork, NodeNetwork};
use crate::{bundle, ContainerError, ImageSource};

/// The most processes and threads of an instance unless its spec says (`[container] pids`).
const DEFAULT_PIDS: u64 = 1024;

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
}

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
        }
    }
}

/// Runs instances as containers.
pub struct ContainerDriver {
    config: ContainerConfig,
    network: NodeNetwork,
    cgroups: Hierarchy,
    images: Arc<dyn ImageSource>,
    exec: ExecDriver,
    usage: Arc<ImageUsage>,
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
struct ContainerRecord {
    exec: serde_json::Value,
    network: InstanceNetwork,
    memory_bytes: u64,
    cpu_millis: u64,
    pids: u64,
    /// The instance's container directory (bundle, rootfs, upper).
    dir: PathBuf,
    /// Where the node forwards from, and the container's port.
    listen: SocketAddr,
    port: u16,
    /// The image's id in the image source (kept from garbage collection while it runs).
    #[serde(default)]
    image: String,
}

/// Everything made for one instance; [`Prepared::cleanup`] undoes it all.
struct Prepared {
    id: String,
    runtime_root: PathBuf,
    network: NodeNetwork,
    instance_net: InstanceNetwork,
    cgroup: InstanceCgroup,
    dir: PathBuf,
}

impl Prepared {
    /// Removes the runtime's state, the root mount, the network and the cgroup. Idempotent.
    fn cleanup(&self) {
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
        let _ = std::fs::remove_dir_all(&self.dir);
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
        })
    }

    /// Opens the way from instances to the node's mesh proxy listening at
    /// [`ContainerDriver::gateway`]`:port`; instances' `HTTP_PROXY` on loopback is pointed there.
    pub fn allow_mesh_proxy(&self, port: u16) -> Result<(), ContainerError> {
        self.network.allow_mesh_port(port)
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

    fn runtime_root(&self) -> PathBuf {
        self.config.state_dir.join("runtime")
    }

    fn prepared(&self, id: &str, record: &ContainerRecord) -> Prepared {
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
        }
    }

    fn prepare(
        &self,
        spec: &StartSpec,
    ) -> Result<(Prepared, ContainerRecord, StartSpec), ContainerError> {
        let id = spec.instance_id.as_str();
        let image = self.images.resolve(&spec.program)?;
        if image.lower_dirs.is_empty() {
            return Err(ContainerError::Image(format!(
                "{} has no layers",
                spec.program.display()
            )));
        }
        // Limits and privileges come from the spec, typed; the environment is the
        // application's and grants nothing.
        let DriverSettings::Container(settings) = &spec.settings else {
            return Err(ContainerError::Config(format!(
                "instance {id} has no container settings (is its service's driver `container`?)"
            )));
        };
        // Before anything is made for it: a capability this node does not allow.
        let granted = capabilities(&settings.capabilities, &self.config.allowed_capabilities)?;
        let limits = Limits {
            memory_bytes: settings.memory_bytes,
            cpu_millis: settings.cpu_millis,
            pids: settings.pids.unwrap_or(DEFAULT_PIDS),
        };
        let port: u16 = spec
            .env
            .get("PORT")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ContainerError::Config("the instance has no PORT".into()))?;
        let bind_host = spec
            .env
            .get("HOST")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        let listen: SocketAddr = format!("{bind_host}:{port}")
            .parse()
            .map_err(|_| ContainerError::Config(format!("cannot listen on {bind_host}:{port}")))?;
        let dir = spec.work_dir.join("container");
        let record_base = |network: InstanceNetwork| ContainerRecord {
            exec: serde_json::Value::Null,
            network,
            memory_bytes: limits.memory_bytes,
            cpu_millis: limits.cpu_millis,
            pids: limits.pids,
            dir: dir.clone(),
            listen,
            port,
            image: image.id.clone(),
        };
        // A previous attempt of the same instance may have left things behind.
        let stale = self.prepared(
            id,
            &record_base(InstanceNetwork {
                netns: String::new(),
                host_veth: String::new(),
                address: Ipv4Addr::UNSPECIFIED,
            }),
        );
        stale.cleanup();

        let cgroup = InstanceCgroup::create(&self.cgroups, id, limits)?;
        let instance_net = match self.network.attach(id) {
            Ok(net) => net,
            Err(error) => {
                cgroup.remove();
                return Err(error);
            }
        };
        let record = record_base(instance_net.clone());
        let prepared = self.prepared(id, &record);
        let made = (|| {
            let rootfs = dir.join("rootfs");
            let upper = dir.join("upper");
            let work = dir.join("overlay-work");
            for d in [&rootfs, &upper, &work] {
                std::fs::create_dir_all(d).map_err(|e| ContainerError::io("create", d, e))?;
            }
            // Only the agent's user may enter it: a host user must not reach the image's
            // files through the mounted root (a setuid-root binary, a secret in a layer).
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| ContainerError::io("restrict", &dir, e))?;
            mount_overlay(&image.lower_dirs, &upper, &work, &rootfs)?;
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            env.insert("PATH".into(), bundle::DEFAULT_PATH.into());
            env.extend(image.env.iter().cloned());
            env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            // Inside its own namespace the instance listens on every address it has.
            env.insert("HOST".into(), "0.0.0.0".into());
            // Its loopback is its own: the node's mesh proxy is at the bridge's gateway.
            for key in ["HTTP_PROXY", "http_proxy"] {
                if let Some(url) = env.get_mut(key) {
                    *url = url.replace("@127.0.0.1:", &format!("@{}:", self.network.gateway()));
                }
            }
            let mut args: Vec<String> = if spec.args.is_empty() {
                image
                    .entrypoint
                    .iter()
                    .chain(image.cmd.iter())
                    .cloned()
                    .collect()
            } else if image.entrypoint.is_empty() {
                spec.args.clone()
            } else {
                image
                    .entrypoint
                    .iter()
                    .chain(spec.args.iter())
                    .cloned()
                    .collect()
            };
            if args.is_empty() {
                return Err(ContainerError::Image(format!(
                    "{} names no program to run (no entrypoint or cmd) and the spec gives no args",
                    spec.program.display()
                )));
            }
            args.shrink_to_fit();
            // The bundle holds the instance's environment (its secrets among it) and its
            // secret files: on a tmpfs only root enters, never on the node's disk.
            let bundle_dir = dir.join("bundle");
            std::fs::create_dir_all(&bundle_dir)
                .map_err(|e| ContainerError::io("create", &bundle_dir, e))?;
            mount_bundle_tmpfs(&bundle_dir)?;
            let secret_files =
                write_secret_files(&bundle_dir, &spec.secret_files, image.uid, image.gid)?;
            let runtime_spec = bundle::runtime_spec(&bundle::BundleSpec {
                rootfs: rootfs.clone(),
                args,
                env,
                cwd: image.working_dir.clone().unwrap_or_else(|| "/".into()),
                uid: image.uid,
                gid: image.gid,
                hostname: id.chars().take(63).collect(),
                netns: instance_net.netns_path(),
                cgroups_path: cgroup.runtime_path(),
                capabilities: granted,
                secret_files,
            })?;
            bundle::write(&bundle_dir, &runtime_spec)?;
            // A mark of an earlier run's OOM kill must not name this run's end.
            let _ = std::fs::remove_file(dir.join("bundle").join(crate::shim::OOM_KILLED_MARK));
            Ok(())
        })();
        if let Err(error) = made {
            prepared.cleanup();
            return Err(error);
        }
        let runtime_root = self.runtime_root();
        std::fs::create_dir_all(&runtime_root)
            .map_err(|e| ContainerError::io("create", &runtime_root, e))?;
        let mut args: Vec<String> = self.config.shim[1..].to_vec();
        args.extend([
            "--root".into(),
            runtime_root.display().to_string(),
            "--bundle".into(),
            dir.join("bundle").display().to_string(),
            id.to_string(),
        ]);
        let run = StartSpec {
            instance_id: id.to_string(),
            secret_files: Vec::new(),
            name: spec.name.clone(),
            program: PathBuf::from(&self.config.shim[0]),
            args,
            env: BTreeMap::new(),
            log_path: spec.log_path.clone(),
            work_dir: dir.join("bundle"),
            settings: DriverSettings::Exec,
        };
        Ok((prepared, record, run))
    }

    fn handle(
        &self,
        inner: Box<dyn InstanceHandle>,
        prepared: Prepared,
        mut record: ContainerRecord,
    ) -> Result<Box<dyn InstanceHandle>, DriverError> {
        record.exec = inner.record();
        let target = SocketAddr::from((record.network.address, record.port));
        let forwarder = match forward(record.listen, target) {
            Ok(task) => task,
            Err(error) => {
                return Err(DriverError::Spawn {
                    instance: prepared.id.clone(),
                    program: format!("port forward {} -> {target}", record.listen),
                    source: error,
                })
            }
        };
        self.usage.start(&prepared.id, &record.image);
        Ok(Box::new(ContainerHandle {
            inner,
            prepared: Arc::new(prepared),
            record,
            forwarder,
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
            tokio::task::block_in_place(|| this.prepare(&spec)).map_err(failed)?
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
        let prepared = self.prepared(instance_id, &record);
        match self.exec.adopt(instance_id, &record.exec).await? {
            Some(inner) => self.handle(inner, prepared, record).map(Some),
            None => {
                prepared.cleanup();
                Ok(None)
            }
        }
    }

    async fn shutdown(&self) {
        let network = self.network.clone();
        let _ = tokio::task::spawn_blocking(move || network.close()).await;
    }
}

struct ContainerHandle {
    inner: Box<dyn InstanceHandle>,
    prepared: Arc<Prepared>,
    record: ContainerRecord,
    forwarder: JoinHandle<()>,
    finished: tokio::sync::Mutex<Option<Exit>>,
    usage: Arc<ImageUsage>,
}

impl ContainerHandle {
    /// Once the runtime has exited: says why (an OOM kill by name) and removes everything.
    async fn finish(&self, mut exit: Exit) -> Exit {
        let mut finished = self.finished.lock().await;
        if let Some(exit) = finished.as_ref() {
            return exit.clone();
        }
        self.forwarder.abort();
        let killed = exit.signal == Some(9) || exit.code == Some(128 + 9);
        let marked = self
            .prepared
            .dir
            .join("bundle")
            .join(crate::shim::OOM_KILLED_MARK)
            .exists();
        if killed && (marked || self.prepared.cgroup.oom_killed()) {
            exit.reason = Some(format!(
                "killed: memory limit {} reached",
                bytes(self.prepared.cgroup.limits().memory_bytes)
            ));
        }
        let prepared = self.prepared.clone();
        let _ = tokio::task::spawn_blocking(move || prepared.cleanup()).await;
        self.usage.end(&self.prepared.id);
        *finished = Some(exit.clone());
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

/// The spec's capability names (`NET_BIND_SERVICE`, with or without `CAP_`) as OCI's; one
/// past the ordinary set that this node does not allow is refused.
fn capabilities(
    names: &[String],
    allowed: &BTreeSet<String>,
) -> Result<Vec<oci_spec::runtime::Capability>, ContainerError> {
    names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .map(|name| {
            let bare = name.to_ascii_uppercase();
            let bare = bare.strip_prefix("CAP_").unwrap_or(&bare).to_string();
            let capability = bare.parse().map_err(|_| {
                ContainerError::Config(format!(
                    "[container] capabilities: `{name}` is not a Linux capability"
                ))
            })?;
            if strata_core::capability::needs_allowance(&bare) && !allowed.contains(&bare) {
                return Err(ContainerError::Config(format!(
                    "[container] capabilities: {bare} is not allowed on this node; its agent grants it only when started with --allow-capability {bare}"
                )));
            }
            Ok(capability)
        })
        .collect()
}

/// Mounts a small tmpfs at `dir` (mode 0700: root only; no devices, setuid or programs).
fn mount_bundle_tmpfs(dir: &Path) -> Result<(), ContainerError> {
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4m,mode=0700"),
    )
    .map_err(|errno| ContainerError::Mount {
        path: dir.display().to_string(),
        reason: format!("tmpfs: {}", errno.desc()),
    })
}

/// Writes each secret file into the bundle's tmpfs (readable by the instance's user only)
/// and returns `(host file, path in the container)` for each.
fn write_secret_files(
    bundle_dir: &Path,
    files: &[strata_runtime::SecretFile],
    uid: u32,
    gid: u32,
) -> Result<Vec<(PathBuf, String)>, ContainerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bound = Vec::with_capacity(files.len());
    if files.is_empty() {
        return Ok(bound);
    }
    let secrets = bundle_dir.join("secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| ContainerError::io("create", &secrets, e))?;
    for (index, file) in files.iter().enumerate() {
        let host = secrets.join(index.to_string());
        let written = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o400)
            .open(&host)
            .and_then(|mut out| out.write_all(file.value.as_bytes()))
            .and_then(|()| std::os::unix::fs::chown(&host, Some(uid), Some(gid)));
        written.map_err(|e| ContainerError::io("write a secret file", &host, e))?;
        bound.push((host, file.path.clone()));
    }
    Ok(bound)
}

fn mount_overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), ContainerError> {
    let lowerdir: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    // No setuid binary of an image raises anyone's privileges through this mount, and no
    // device node in a layer opens a host device (the container's /dev is its own tmpfs).
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|errno| ContainerError::Mount {
        path: target.display().to_string(),
        reason: format!("overlayfs: {}", errno.desc()),
    })
}

/// Forwards connections to `listen` (the node's address for the instance) to `target` (the
/// container's address), until aborted.
fn forward(listen: SocketAddr, target: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    let std_listener = std::net::TcpListener::bind(listen)?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = inbound.set_nodelay(true);
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_the_environment() {
        use oci_spec::runtime::Capability;
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = BTreeSet::new();
        assert_eq!(capabilities(&[], &none).unwrap(), vec![]);
        assert_eq!(
            capabilities(&names(&["NET_BIND_SERVICE", " cap_chown"]), &none).unwrap(),
            vec![Capability::NetBindService, Capability::Chown]
        );
        assert!(capabilities(&names(&["FLY"]), &none)
            .unwrap_err()
            .to_string()
            .contains("`FLY`"));
        // Past the ordinary set: only where the node allows it.
        let refused = capabilities(&names(&["SYS_ADMIN"]), &none).unwrap_err();
        assert!(refused.to_string().contains("--allow-capability SYS_ADMIN"));
        let allowed = BTreeSet::from(["SYS_ADMIN".to_string()]);
        assert_eq!(
            capabilities(&names(&["cap_sys_admin"]), &allowed).unwrap(),
            vec![Capability::SysAdmin]
        );
    }

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
