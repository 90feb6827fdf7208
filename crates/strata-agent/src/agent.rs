//! The agent's main loops: registration, heartbeats, and the sync loop that keeps the
//! supervisors in line with the node's assignments.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use strata_core::api::{Assignment, RegisterNode};
use strata_core::spec::DriverKind;
use strata_core::{
    DesiredState, InstanceId, InstanceState, InstanceStatus, Node, NodeName, Resources,
};
use strata_runtime::exec::ExecDriver;
use strata_runtime::Driver;

use crate::client::{ClientError, ControlClient};
use crate::status::Reported;

/// The longest an assignments query is held open by the control plane when nothing changes.
pub const ASSIGNMENTS_WAIT: Duration = Duration::from_secs(10);
/// Where the log shipper's task is among [`Agent`]'s loops (after heartbeats and sync).
pub(crate) const SHIPPER_LOOP: usize = 2;
use crate::logs::InstanceLiveness;
use crate::quarantine;
use crate::supervisor::{read_records, Adopted, AgentDirs, Supervisor, SupervisorContext};

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: NodeName,
    /// The control plane's base URL.
    pub control_url: String,
    pub data_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// `None`: detected from the machine.
    pub capacity: Option<Resources>,
    /// Where the agent's own API (logs) listens.
    pub listen_addr: SocketAddr,
    /// Host instances are reached at by other nodes.
    pub advertise_host: String,
    /// Address instances bind.
    pub bind_host: String,
    pub heartbeat_interval: Duration,
    pub drain_delay: Duration,
    /// The node's credential (`sn.NAME.MAC`), presented to the control plane and required of
    /// callers of the agent's log API.
    pub token: Option<String>,
    /// The cluster CA (PEM) an HTTPS control plane's certificate must chain to.
    pub control_ca: Option<String>,
    /// The agent's own API is served over TLS (its URL is `https://`).
    pub api_https: bool,
    /// The node's certificate and key as they are now (renewed): what signs its forensic
    /// archive when it is decommissioned. `None`: a node without a certificate.
    pub node_key: Option<crate::decommission::NodeKey>,
    /// A client to use instead of one made from `control_url`, `token` and `control_ca`: one
    /// shared with the node's other parts, so that once it presents the node's certificate
    /// they all do.
    pub client: Option<ControlClient>,
    /// How instances reach the node's mesh proxy (`HTTP_PROXY`); `None`: they are not told.
    pub mesh: Option<MeshAccess>,
    /// `host:port` where the node's proxy takes calls from other nodes (mutual TLS).
    pub mesh_addr: Option<String>,
    /// The API's listening socket, handed over by the agent process before this one; when
    /// empty the agent binds `listen_addr`.
    pub listener: InheritedListener,
}

/// A listening socket handed over by a previous agent process (an in-place upgrade).
#[derive(Clone, Default)]
pub struct InheritedListener(Arc<StdMutex<Option<std::net::TcpListener>>>);

impl InheritedListener {
    pub fn new(listener: std::net::TcpListener) -> Self {
        Self(Arc::new(StdMutex::new(Some(listener))))
    }

    fn take(&self) -> Option<std::net::TcpListener> {
        self.0.lock().expect("listener lock").take()
    }
}

impl std::fmt::Debug for InheritedListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.0.lock().map(|l| l.is_some()).unwrap_or(false);
        write!(
            f,
            "InheritedListener({})",
            if held { "held" } else { "none" }
        )
    }
}

/// What an instance is told about the node's mesh proxy: the `HTTP_PROXY` URL, with the
/// credentials of its service, for each (environment, service).
#[derive(Clone)]
pub struct MeshAccess {
    proxy_url: Arc<ProxyUrlFn>,
}

/// `(env, service) -> HTTP_PROXY URL`.
type ProxyUrlFn = dyn Fn(&str, &str) -> String + Send + Sync;

impl MeshAccess {
    /// `proxy_url(env, service)` gives the `HTTP_PROXY` value of that service's instances.
    pub fn new(proxy_url: impl Fn(&str, &str) -> String + Send + Sync + 'static) -> Self {
        Self {
            proxy_url: Arc::new(proxy_url),
        }
    }

    /// The environment variables an instance of `service` in `env` gets: `HTTP_PROXY` and
    /// `http_proxy` (clients read one or the other), and `NO_PROXY` for its own loopback.
    pub fn instance_env(&self, env: &str, service: &str) -> Vec<(String, String)> {
        let url = (self.proxy_url)(env, service);
        vec![
            ("HTTP_PROXY".into(), url.clone()),
            ("http_proxy".into(), url),
            ("NO_PROXY".into(), "localhost,127.0.0.1,::1".into()),
            ("no_proxy".into(), "localhost,127.0.0.1,::1".into()),
        ]
    }
}

impl std::fmt::Debug for MeshAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshAccess(..)")
    }
}

impl AgentConfig {
    pub fn local(name: NodeName, control_url: &str, data_dir: PathBuf) -> Self {
        Self {
            name,
            control_url: control_url.to_string(),
            data_dir,
            labels: BTreeMap::new(),
            capacity: None,
            listen_addr: "127.0.0.1:0".parse().expect("valid address"),
            advertise_host: "127.0.0.1".into(),
            bind_host: "127.0.0.1".into(),
            heartbeat_interval: Duration::from_millis(100),
            drain_delay: Duration::from_millis(500),
            token: None,
            control_ca: None,
            client: None,
            api_https: false,
            node_key: None,
            mesh: None,
            mesh_addr: None,
            listener: InheritedListener::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent API cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("agent data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Control(#[from] ClientError),
}

/// A running agent.
pub struct Agent {
    pub(crate) config: AgentConfig,
    pub(crate) client: ControlClient,
    ctx: Arc<SupervisorContext>,
    pub(crate) drivers: BTreeMap<DriverKind, Arc<dyn Driver>>,
    supervisors: Arc<StdMutex<HashMap<InstanceId, Supervisor>>>,
    epoch: AtomicU64,
    agent_url: String,
    /// Set by [`Agent::stop_all`]: no new instance starts after it.
    shutting_down: AtomicBool,
    /// The loops [`Agent::run_serving`] started (heartbeats, assignments, log shipping).
    pub(crate) loops: StdMutex<Vec<tokio::task::JoinHandle<()>>>,
    /// How far the node's decommission went, if one was asked for.
    pub(crate) decommission: crate::decommission::DecommissionState,
}

struct Liveness(Arc<StdMutex<HashMap<InstanceId, Supervisor>>>);

impl InstanceLiveness for Liveness {
    fn is_running_here(&self, id: &str) -> bool {
        self.0
            .lock()
            .expect("supervisors lock")
            .get(id)
            .is_some_and(|s| !s.is_finished())
    }
}

fn detect_capacity() -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(1 << 30);
    Resources {
        cpu_millis: cpus * 1000,
        memory_bytes: memory,
    }
}

impl Agent {
    /// Binds the agent's API and prepares its data directory, with the `exec` driver only.
    /// Call [`Agent::run`] next.
    pub async fn start(
        config: AgentConfig,
    ) -> Result<(Arc<Agent>, tokio::net::TcpListener), AgentError> {
        Self::start_with_drivers(config, Vec::new()).await
    }

    /// Like [`Agent::start`], with more drivers beside `exec` (e.g. `wasm`); the node reports
    /// every driver it has, so placement sends it only what it can run.
    pub async fn start_with_drivers(
        config: AgentConfig,
        extra_drivers: Vec<Arc<dyn Driver>>,
    ) -> Result<(Arc<Agent>, tokio::net::TcpListener), AgentError> {
        let root = config.data_dir.clone();
        std::fs::create_dir_all(root.join("instances")).map_err(|source| AgentError::DataDir {
            path: root.display().to_string(),
            source,
        })?;
        let listener = match config.listener.take() {
            // Handed over by the agent process before this one.
            Some(inherited) => inherited
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(inherited))
                .map_err(|source| AgentError::Listen {
                    addr: config.listen_addr,
                    source,
                })?,
            None => tokio::net::TcpListener::bind(config.listen_addr)
                .await
                .map_err(|source| AgentError::Listen {
                    addr: config.listen_addr,
                    source,
                })?,
        };
        let local = listener.local_addr().map_err(|source| AgentError::Listen {
            addr: config.listen_addr,
            source,
        })?;
        let host = if local.ip().is_unspecified() {
            config.advertise_host.clone()
        } else {
            local.ip().to_string()
        };
        let scheme = if config.api_https { "https" } else { "http" };
        let agent_url = format!("{scheme}://{host}:{}", local.port());
        let client = config.client.clone().unwrap_or_else(|| {
            ControlClient::trusting(
                &config.control_url,
                config.token.as_deref(),
                config.control_ca.as_deref(),
            )
        });
        let ctx = Arc::new(SupervisorContext {
            node: config.name.clone(),
            client: client.clone(),
            health_client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client builds"),
            dirs: AgentDirs { root },
            bind_host: config.bind_host.clone(),
            advertise_host: config.advertise_host.clone(),
            drain_delay: config.drain_delay,
            mesh: config.mesh.clone(),
            statuses: crate::status::StatusReporter::start(client.clone(), config.name.clone()),
            node_key: config.node_key.clone(),
        });
        let mut drivers: BTreeMap<DriverKind, Arc<dyn Driver>> = BTreeMap::new();
        drivers.insert(DriverKind::Exec, Arc::new(ExecDriver));
        for driver in extra_drivers {
            drivers.insert(driver.kind(), driver);
        }
        let agent = Arc::new(Agent {
            config,
            client,
            ctx,
            drivers,
            supervisors: Arc::new(StdMutex::new(HashMap::new())),
            epoch: AtomicU64::new(0),
            agent_url,
            shutting_down: AtomicBool::new(false),
            loops: StdMutex::new(Vec::new()),
            decommission: Default::default(),
        });
        Ok((agent, listener))
    }

    pub fn agent_url(&self) -> &str {
        &self.agent_url
    }

    /// Runs the agent: serves its API, registers, re-adopts, heartbeats and syncs. Returns
    /// only if the API server fails.
    pub async fn run(self: Arc<Self>, listener: tokio::net::TcpListener) -> Result<(), AgentError> {
        self.run_with(listener, axum::Router::new()).await
    }

    /// [`Agent::run`], with more routes on the agent's API (e.g. `/metrics`).
    pub async fn run_with(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        extra: axum::Router,
    ) -> Result<(), AgentError> {
        self.run_serving(extra, None, move |router| {
            tokio::spawn(async move { axum::serve(listener, router).await })
        })
        .await
    }

    /// [`Agent::run_with`], with the agent's API served by `serve` (e.g. over TLS). With
    /// `control_plane`, a request that passes it (a client certificate of a control-plane
    /// server) may read logs; without it, the node's API key does.
    pub async fn run_serving(
        self: Arc<Self>,
        extra: axum::Router,
        control_plane: Option<crate::logs::FromControlPlane>,
        serve: impl FnOnce(axum::Router) -> tokio::task::JoinHandle<std::io::Result<()>>,
    ) -> Result<(), AgentError> {
        let router = crate::logs::router(
            self.ctx.dirs.clone(),
            Arc::new(Liveness(self.supervisors.clone())),
        )
        .merge(extra);
        let router = match self.config.token.clone() {
            Some(credential) => crate::logs::guarded(
                router,
                strata_core::auth::node_api_key(&credential),
                control_plane,
            ),
            None => router,
        };
        let server = serve(router);
        self.register_until_accepted().await?;
        // Before any instance can fail again: what its outbox held when it last stopped.
        crate::failure::send_outbox(&self.client, &self.config.name, &self.ctx.dirs);
        self.adopt_existing().await;
        let loops = [
            tokio::spawn(self.clone().heartbeat_loop()),
            tokio::spawn(self.clone().sync_loop()),
            tokio::spawn(crate::shipper::run(
                self.client.clone(),
                self.config.name.to_string(),
                self.ctx.dirs.clone(),
            )),
        ];
        self.loops.lock().expect("loops lock").extend(loops);
        match server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(AgentError::Listen {
                addr: self.config.listen_addr,
                source,
            }),
            Err(join) => Err(AgentError::Listen {
                addr: self.config.listen_addr,
                source: std::io::Error::other(join.to_string()),
            }),
        }
    }

    fn epoch_file(&self) -> PathBuf {
        self.ctx.dirs.root.join("epoch")
    }

    async fn register_once(&self) -> Result<Node, ClientError> {
        let last_epoch = std::fs::read_to_string(self.epoch_file())
            .ok()
            .and_then(|text| text.trim().parse().ok());
        let request = RegisterNode {
            name: self.config.name.clone(),
            agent_url: self.agent_url.clone(),
            labels: self.config.labels.clone(),
            capacity: self.config.capacity.unwrap_or_else(detect_capacity),
            drivers: self.drivers.keys().copied().collect(),
            last_epoch,
            mesh_addr: self.config.mesh_addr.clone(),
            agent_version: Some(strata_core::version::VERSION.to_string()),
        };
        let node = self.client.register(&request).await?;
        self.epoch.store(node.epoch, Ordering::SeqCst);
        if let Err(error) = std::fs::write(self.epoch_file(), node.epoch.to_string()) {
            tracing::warn!(%error, "cannot persist the node epoch");
        }
        Ok(node)
    }

    async fn register_until_accepted(&self) -> Result<(), AgentError> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.register_once().await {
                Ok(node) => {
                    tracing::info!(node = %node.name, epoch = node.epoch, "registered");
                    return Ok(());
                }
                // A refusal, or the name held by a live node elsewhere (a cloned machine):
                // asking again cannot help, and must not fight the node that holds it.
                Err(error) if error.is_permanent() || error.status() == Some(409) => {
                    return Err(AgentError::Control(error))
                }
                Err(error) => {
                    tracing::warn!(%error, "registration failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Re-adopts instances a previous agent process started. Those no longer assigned are
    /// stopped by the first sync.
    async fn adopt_existing(&self) {
        let assignments = match self.client.assignments(&self.config.name).await {
            Ok(found) => found.assignments,
            Err(error) => {
                tracing::warn!(%error, "cannot read assignments to re-adopt instances");
                Vec::new()
            }
        };
        for record in read_records(&self.ctx.dirs) {
            let Some(driver) = self.drivers.get(&record.driver).cloned() else {
                continue;
            };
            let handle = match driver.adopt(&record.instance_id, &record.process).await {
                Ok(Some(handle)) => handle,
                Ok(None) => {
                    let _ = std::fs::remove_file(self.ctx.dirs.record(&record.instance_id));
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot re-adopt");
                    continue;
                }
            };
            // Wanted running, or quarantined and not archived yet (it is then archived as
            // if this agent had never stopped).
            let assignment = assignments
                .iter()
                .find(|a| {
                    a.instance.id == record.instance_id
                        && (a.instance.desired == DesiredState::Running
                            || quarantine::pending(a).is_some())
                })
                .cloned();
            match assignment {
                Some(assignment) => {
                    tracing::info!(instance = %record.instance_id, pid = ?handle.pid(), "re-adopted");
                    let id = assignment.instance.id.clone();
                    let quarantine = quarantine::pending(&assignment);
                    let supervisor = Supervisor::spawn(
                        self.ctx.clone(),
                        driver,
                        assignment,
                        Some(Adopted {
                            handle,
                            port: record.port,
                        }),
                    );
                    if let Some(order) = quarantine {
                        supervisor.quarantine(order);
                    }
                    self.supervisors
                        .lock()
                        .expect("supervisors lock")
                        .insert(id, supervisor);
                }
                None => {
                    tracing::info!(instance = %record.instance_id, "found an instance no longer assigned; stopping it");
                    handle.stop(Duration::from_secs(5)).await;
                    handle.discard_writable_layer();
                    let _ = std::fs::remove_file(self.ctx.dirs.record(&record.instance_id));
                }
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeater = crate::beats::Heartbeater::new(self.config.token.as_deref());
        loop {
            ticker.tick().await;
            let epoch = self.epoch.load(Ordering::SeqCst);
            match heartbeater
                .beat(&self.client, &self.config.name, epoch)
                .await
            {
                Ok(Some(ack)) if ack.reregister => {
                    tracing::warn!("control plane asks this node to register again");
                    if let Err(error) = self.register_once().await {
                        tracing::warn!(%error, "re-registration failed");
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "heartbeat failed"),
            }
        }
    }

    /// Keeps supervisors in line with assignments, read with a blocking query: the control
    /// plane answers as soon as what this node must run changes (and every
    /// [`ASSIGNMENTS_WAIT`] regardless, which also restarts what finished meanwhile).
    async fn sync_loop(self: Arc<Self>) {
        let mut index: Option<u64> = None;
        // What the node must run, as last read (a blocking query answers with changes only).
        let mut held: HashMap<strata_core::InstanceId, Assignment> = HashMap::new();
        loop {
            let asked = tokio::time::Instant::now();
            let answer = match index {
                None => self.client.assignments(&self.config.name).await,
                Some(index) => {
                    self.client
                        .assignments_after(&self.config.name, index, ASSIGNMENTS_WAIT)
                        .await
                }
            };
            match answer {
                Ok(found) => {
                    // A server that does not block (an older one) answers at once with
                    // nothing new: ask it only every second.
                    let unchanged = index == Some(found.revision);
                    let revision = found.revision;
                    let decommission = found.decommission.clone();
                    let Some(assignments) = found.merged_with(&held) else {
                        // It names an instance this node never got: read everything.
                        index = None;
                        continue;
                    };
                    index = Some(revision);
                    held = assignments
                        .iter()
                        .map(|a| (a.instance.id.clone(), a.clone()))
                        .collect();
                    self.follow_decommission(decommission.as_ref(), &assignments);
                    self.sync(assignments).await;
                    if unchanged && asked.elapsed() < Duration::from_millis(50) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "cannot read assignments");
                    index = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn sync(&self, assignments: Vec<Assignment>) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut to_report = Vec::new();
        {
            let mut supervisors = self.supervisors.lock().expect("supervisors lock");
            supervisors.retain(|_, s| !s.is_finished());
            let wanted: HashMap<&str, &Assignment> = assignments
                .iter()
                .map(|a| (a.instance.id.as_str(), a))
                .collect();
            // Stop what is no longer wanted here.
            for (id, supervisor) in supervisors.iter() {
                let keep = wanted.get(id.as_str()).is_some_and(|a| {
                    a.instance.desired == DesiredState::Running && a.instance.node_epoch >= epoch
                });
                if !keep {
                    // Quarantined: frozen and archived before it stops (until its archive is
                    // kept; then a plain stop).
                    match wanted.get(id.as_str()).and_then(|a| quarantine::pending(a)) {
                        Some(order) => supervisor.quarantine(order),
                        None => supervisor.stop(),
                    }
                }
            }
            for assignment in &assignments {
                let id = &assignment.instance.id;
                if supervisors.contains_key(id) {
                    continue;
                }
                if assignment.instance.desired == DesiredState::Stopped {
                    // Nothing runs here for it: tell the control plane it is done.
                    to_report.push((id.clone(), InstanceState::Stopped, "stopped".to_string()));
                    continue;
                }
                if assignment.instance.node_epoch < epoch {
                    to_report.push((
                        id.clone(),
                        InstanceState::Failed,
                        format!(
                            "fenced: placed under node epoch {}, node is now at epoch {epoch}",
                            assignment.instance.node_epoch
                        ),
                    ));
                    continue;
                }
                let Some(driver) = self.drivers.get(&assignment.release.spec.driver).cloned()
                else {
                    to_report.push((
                        id.clone(),
                        InstanceState::Failed,
                        format!(
                            "this node has no `{}` driver",
                            assignment.release.spec.driver.as_str()
                        ),
                    ));
                    continue;
                };
                let supervisor =
                    Supervisor::spawn(self.ctx.clone(), driver, assignment.clone(), None);
                supervisors.insert(id.clone(), supervisor);
            }
        }
        for (id, state, message) in to_report {
            let status = InstanceStatus::new(id, self.config.name.clone(), state, message);
            if let Reported::Failed(error) = self.ctx.statuses.report(status).await {
                tracing::debug!(%error, "status report failed");
            }
        }
    }

    /// Hands the node to a new agent process (an in-place upgrade): stops heartbeating,
    /// following assignments and shipping logs, and lets go of every instance without
    /// stopping it; the new process re-adopts them from their records. Instances that live
    /// inside this process (wasm) end with it, and the new one starts them again.
    pub fn hand_over(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for task in self.loops.lock().expect("loops lock").drain(..) {
            task.abort();
        }
        for supervisor in self.take_supervisors() {
            // Aborted, not stopped: the process goes on, only its watcher here ends.
            supervisor.task.abort();
        }
    }

    /// Every supervisor, no longer this agent's.
    fn take_supervisors(&self) -> Vec<Supervisor> {
        self.supervisors
            .lock()
            .expect("supervisors lock")
            .drain()
            .map(|(_, s)| s)
            .collect()
    }

    /// How many instances this agent runs (supervisors not finished).
    pub fn instance_count(&self) -> usize {
        self.supervisors
            .lock()
            .expect("supervisors lock")
            .values()
            .filter(|s| !s.is_finished())
            .count()
    }

    /// Stops every instance (used by tests and an orderly shutdown; a crash leaves them
    /// running for the next agent to adopt).
    pub async fn stop_all(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let supervisors = self.take_supervisors();
        for supervisor in &supervisors {
            supervisor.stop();
        }
        for supervisor in supervisors {
            let _ = tokio::time::timeout(Duration::from_secs(30), supervisor.task).await;
        }
        for driver in self.drivers.values() {
            driver.shutdown().await;
        }
    }
}
