//! One instance's lifecycle on a node: fetch its artifact, start it through the driver, check
//! its health, restart it with backoff when it crashes, and, when asked, drain and stop it.
//! Every change of state is reported to the control plane.
//!
//! The supervisor persists a record of the running process (driver record and port) next to
//! the instance's log, so a later agent can re-adopt it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_core::api::Assignment;
use strata_core::decommission::Quarantine;
use strata_core::spec::{DriverKind, ForensicsSpec, PortSpec};
use strata_core::{
    now_millis, restart_backoff_ms, ExitInfo, InstanceState, InstanceStatus, NodeName,
};
use strata_runtime::{Driver, Exit, InstanceHandle, StartSpec};
use tokio::sync::{watch, Mutex};

use crate::client::ControlClient;
use crate::health::{check, HealthTracker, Probe};
use crate::status::Reported;

/// Where an agent keeps things, under its data directory.
#[derive(Debug, Clone)]
pub struct AgentDirs {
    pub root: PathBuf,
}

impl AgentDirs {
    pub fn instances(&self) -> PathBuf {
        self.root.join("instances")
    }
    pub fn instance(&self, id: &str) -> PathBuf {
        self.instances().join(id)
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.instance(id).join("output.log")
    }
    pub fn record(&self, id: &str) -> PathBuf {
        self.instance(id).join("record.json")
    }
    pub fn artifact(&self, digest: &str) -> PathBuf {
        self.root.join("artifacts").join(digest.replace(':', "/"))
    }
}

/// What is persisted of a running instance, for re-adoption.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance_id: String,
    pub port: u16,
    pub driver: strata_core::spec::DriverKind,
    pub process: serde_json::Value,
}

/// What the supervisors of one agent share.
pub struct SupervisorContext {
    pub node: NodeName,
    pub client: ControlClient,
    pub health_client: reqwest::Client,
    pub dirs: AgentDirs,
    /// Address instances bind (`HOST`).
    pub bind_host: String,
    /// Host other nodes reach instances at.
    pub advertise_host: String,
    /// Time between leaving the routing table and SIGTERM, so in-flight routing catches up.
    pub drain_delay: Duration,
    /// How instances reach the node's mesh proxy.
    pub mesh: Option<crate::agent::MeshAccess>,
    /// Sends statuses to the control plane, batched with the node's other instances'.
    pub statuses: crate::status::StatusReporter,
    /// What signs the archive of a quarantined instance (`None`: a node without one).
    pub node_key: Option<crate::decommission::NodeKey>,
}

/// A running instance re-adopted after an agent restart.
pub struct Adopted {
    pub handle: Box<dyn InstanceHandle>,
    pub port: u16,
}

/// The agent's handle on one supervisor task.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    /// Set before a stop that is a quarantine: the instance is frozen and archived first.
    quarantine: Arc<std::sync::Mutex<Option<Quarantine>>>,
    pub status: Arc<Mutex<InstanceStatus>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    pub fn spawn(
        ctx: Arc<SupervisorContext>,
        driver: Arc<dyn Driver>,
        assignment: Assignment,
        adopted: Option<Adopted>,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let status = Arc::new(Mutex::new(InstanceStatus {
            updated_at: now_millis(),
            ..InstanceStatus::new(
                assignment.instance.id.clone(),
                ctx.node.clone(),
                InstanceState::Pending,
                "assigned",
            )
        }));
        let quarantine = Arc::new(std::sync::Mutex::new(None));
        let run = Run {
            ctx,
            driver,
            assignment,
            status: status.clone(),
            stop: stop_rx,
            quarantine: quarantine.clone(),
            reported: true,
            failures: Default::default(),
        };
        let task = tokio::spawn(run.run(adopted));
        Self {
            stop,
            quarantine,
            status,
            task,
        }
    }

    /// Asks the instance to drain and stop. Idempotent.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Asks the instance to stop as a quarantine: frozen, archived (sent to the control
    /// plane), then stopped. Idempotent.
    pub fn quarantine(&self, order: Quarantine) {
        self.quarantine
            .lock()
            .expect("quarantine lock")
            .get_or_insert(order);
        self.stop();
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Consecutive crashes are forgiven after this long running.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Health polling while an instance starts, so it serves as soon as it can.
const STARTUP_POLL: Duration = Duration::from_millis(50);
/// How long an instance may start before its status says why it does not serve yet, and how
/// often that is refreshed.
const NOT_SERVING_NOTE_AFTER: Duration = Duration::from_secs(2);
const NOT_SERVING_NOTE_EVERY: Duration = Duration::from_secs(2);

struct Run {
    ctx: Arc<SupervisorContext>,
    driver: Arc<dyn Driver>,
    assignment: Assignment,
    status: Arc<Mutex<InstanceStatus>>,
    stop: watch::Receiver<bool>,
    quarantine: Arc<std::sync::Mutex<Option<Quarantine>>>,
    /// Whether the last report reached the control plane.
    reported: bool,
    /// Which of its failures are archived (`[forensics] archive_on = "failure"`).
    failures: crate::failure::FailureBudget,
}

enum Ended {
    Stopped(Exit),
    Crashed(Exit),
}

impl Run {
    fn id(&self) -> &str {
        &self.assignment.instance.id
    }

    async fn set(
        &mut self,
        state: InstanceState,
        message: String,
        change: impl FnOnce(&mut InstanceStatus),
    ) {
        let snapshot = {
            let mut status = self.status.lock().await;
            if !status.state.can_become(state) {
                tracing::debug!(instance = %status.id, from = ?status.state, to = ?state, "ignored transition");
                return;
            }
            status.state = state;
            status.message = message;
            status.updated_at = now_millis();
            change(&mut status);
            status.clone()
        };
        self.report(&snapshot).await;
    }

    async fn report(&mut self, status: &InstanceStatus) {
        match self.ctx.statuses.report(status.clone()).await {
            Reported::Stored => self.reported = true,
            // No longer wanted: the sync loop will stop us; nothing to report to.
            Reported::NotWanted => self.reported = true,
            Reported::Failed(error) => {
                self.reported = false;
                tracing::warn!(instance = %status.id, %error, "status report failed; will retry");
            }
        }
    }

    fn stop_requested(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(mut self, adopted: Option<Adopted>) {
        let mut adopted = adopted;
        let mut consecutive_crashes: u32 = 0;
        let mut restarts: u32 = 0;
        loop {
            if self.stop_requested() && adopted.is_none() {
                self.set(
                    InstanceState::Stopped,
                    "stopped before it started".into(),
                    |_| {},
                )
                .await;
                self.forget_record();
                return;
            }
            let was_adopted = adopted.is_some();
            let (handle, port) = match adopted.take() {
                Some(adopted) => (adopted.handle, adopted.port),
                None => match self.start().await {
                    Ok(started) => started,
                    Err(message) => {
                        // Could not even start: report, back off, try again (the cause may be
                        // transient, e.g. the control plane was unreachable for the download).
                        consecutive_crashes += 1;
                        restarts += 1;
                        let delay = restart_backoff_ms(consecutive_crashes);
                        let text = format!("{message}; retrying in {delay} ms");
                        self.set(InstanceState::Backoff, text, |s| s.restarts = restarts)
                            .await;
                        if self.sleep_or_stop(Duration::from_millis(delay)).await {
                            self.set(InstanceState::Stopped, "stopped".into(), |_| {})
                                .await;
                            return;
                        }
                        continue;
                    }
                },
            };
            let started_at = Instant::now();
            // The program's own address: a container's, not the node's forwarder to it.
            let addr = handle
                .program_address()
                .unwrap_or_else(|| check_address(&self.ctx.bind_host, port));
            let advertised = format!("{}:{port}", self.ctx.advertise_host);
            let pid = handle.pid();
            let process = match pid {
                Some(pid) => format!("pid {pid}"),
                None => format!(
                    "{} driver, in the agent's process",
                    self.driver.kind().as_str()
                ),
            };
            if was_adopted {
                // The control plane still has it as it was (usually running): change nothing
                // there until the first health check says otherwise, so traffic keeps flowing.
                let mut status = self.status.lock().await;
                status.state = InstanceState::Starting;
                status.pid = pid;
                status.address = Some(advertised);
                status.message = format!("re-adopted ({process})");
            } else {
                self.set(
                    InstanceState::Starting,
                    format!("started ({process})"),
                    |s| {
                        s.pid = pid;
                        s.address = Some(advertised);
                    },
                )
                .await;
            }
            match self.watch_running(handle.as_ref(), addr, port).await {
                Ended::Stopped(exit) => {
                    handle.discard_writable_layer();
                    let message = format!("stopped: {}", exit.describe());
                    self.set(InstanceState::Stopped, message, |s| {
                        s.last_exit = Some(exit_info(&exit));
                    })
                    .await;
                    self.forget_record();
                    return;
                }
                Ended::Crashed(exit) => {
                    if started_at.elapsed() >= STABLE_AFTER {
                        consecutive_crashes = 0;
                    }
                    consecutive_crashes += 1;
                    restarts += 1;
                    let delay = restart_backoff_ms(consecutive_crashes - 1);
                    let ran_for = started_at.elapsed();
                    self.forget_record();
                    let crashed = format!(
                        "crashed: {} after {:.1}s",
                        exit.describe(),
                        ran_for.as_secs_f64()
                    );
                    // Out of routing first; then, while it backs off, archived.
                    let message = format!("{crashed}; restart {restarts} in {delay} ms");
                    self.set(InstanceState::Backoff, message, |s| {
                        s.last_exit = Some(exit_info(&exit));
                        s.restarts = restarts;
                        s.pid = None;
                        s.address = None;
                    })
                    .await;
                    let backoff = Instant::now();
                    let archived = self.archive_failure(&exit, ran_for, restarts).await;
                    handle.discard_writable_layer();
                    if !archived.is_empty() {
                        let message =
                            format!("{crashed}{archived}; restart {restarts} in {delay} ms");
                        self.set(InstanceState::Backoff, message, |_| {}).await;
                    }
                    let delay = Duration::from_millis(delay).saturating_sub(backoff.elapsed());
                    if self.sleep_or_stop(delay).await {
                        self.set(
                            InstanceState::Stopped,
                            "stopped while waiting to restart".into(),
                            |_| {},
                        )
                        .await;
                        return;
                    }
                }
            }
        }
    }

    /// Archives the instance that failed with `exit` when its service asks for it (sent to
    /// the control plane in the background): what its status says of that, if anything.
    async fn archive_failure(&mut self, exit: &Exit, ran_for: Duration, restarts: u32) -> String {
        let spec = &self.assignment.release.spec;
        if !ForensicsSpec::archives_failures(spec.forensics.as_ref())
            || spec.driver == DriverKind::Wasm
        {
            return String::new();
        }
        let Some(left_out) = self.failures.admit(Instant::now()) else {
            return format!(
                "; not archived ({} archives in {} minutes already)",
                crate::failure::PER_WINDOW,
                crate::failure::WINDOW.as_secs() / 60
            );
        };
        let failure = crate::failure::Failure {
            exit,
            ran_for,
            restarts,
            left_out,
        };
        match crate::failure::archive(&self.ctx, &self.assignment, failure).await {
            Ok(path) => {
                crate::failure::send_later(self.ctx.client.clone(), self.ctx.node.clone(), path);
                "; archived to the node's outbox".to_string()
            }
            Err(why) => {
                tracing::warn!(instance = %self.id(), %why, "cannot archive the failed instance");
                format!("; not archived: {why}")
            }
        }
    }

    /// Sleeps, or returns `true` early if a stop is requested.
    async fn sleep_or_stop(&mut self, duration: Duration) -> bool {
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        loop {
            if *self.stop.borrow() {
                return true;
            }
            tokio::select! {
                _ = &mut deadline => return false,
                changed = self.stop.changed() => {
                    if changed.is_err() {
                        return true;
                    }
                }
            }
        }
    }

    /// Health-checks a running instance until it exits, is asked to stop, or fails its
    /// liveness check (then it is stopped and reported as crashed, to be restarted).
    async fn watch_running(
        &mut self,
        handle: &dyn InstanceHandle,
        addr: SocketAddr,
        port: u16,
    ) -> Ended {
        let spec = &self.assignment.release.spec;
        let readiness = Probe::readiness(spec.health.as_ref());
        let mut tracker = HealthTracker::for_spec(spec.health.as_ref());
        let liveness = spec.liveness.as_ref().map(|l| {
            (
                Probe::liveness(l),
                HealthTracker::alive(l.unhealthy_threshold),
            )
        });
        let (liveness_probe, mut liveness_tracker) = liveness.unzip();
        let started = tokio::time::Instant::now();
        let mut next_check = started;
        // Liveness checks start once the instance has first been healthy.
        let mut next_liveness: Option<tokio::time::Instant> = None;
        let mut next_note = started + NOT_SERVING_NOTE_AFTER;
        let mut ever_healthy = false;
        let mut resend = tokio::time::interval(Duration::from_secs(2));
        loop {
            let liveness_due = next_liveness.unwrap_or(started + Duration::from_secs(86_400));
            tokio::select! {
                exit = handle.wait() => {
                    if *self.stop.borrow() {
                        return Ended::Stopped(exit);
                    }
                    return Ended::Crashed(exit);
                }
                changed = self.stop.changed() => {
                    if changed.is_err() || *self.stop.borrow() {
                        return Ended::Stopped(self.drain_and_stop(handle).await);
                    }
                }
                _ = tokio::time::sleep_until(next_check) => {
                    let result = check(&self.ctx.health_client, addr, &readiness).await;
                    match tracker.record(result.is_ok()) {
                        Some(true) => {
                            ever_healthy = true;
                            if let Some(probe) = &liveness_probe {
                                next_liveness.get_or_insert(tokio::time::Instant::now() + probe.interval);
                            }
                            self.set(InstanceState::Running, "healthy".into(), |_| {}).await
                        }
                        Some(false) => {
                            let why = result.as_ref().err().cloned().unwrap_or_default();
                            self.set(InstanceState::Unhealthy, why, |_| {}).await
                        }
                        None => {}
                    }
                    let now = tokio::time::Instant::now();
                    if !ever_healthy && now >= next_note {
                        // Still not serving: say why, from what the program listens on.
                        let message = not_serving(handle, port, result.err());
                        if self.status.lock().await.message != message {
                            self.set(InstanceState::Starting, message, |_| {}).await;
                        }
                        next_note = now + NOT_SERVING_NOTE_EVERY;
                    }
                    let period = if tracker.is_healthy() {
                        readiness.interval
                    } else {
                        STARTUP_POLL.min(readiness.interval)
                    };
                    next_check = now + period;
                }
                _ = tokio::time::sleep_until(liveness_due), if next_liveness.is_some() => {
                    let (Some(probe), Some(tracker)) = (&liveness_probe, liveness_tracker.as_mut()) else {
                        next_liveness = None;
                        continue;
                    };
                    let result = check(&self.ctx.health_client, addr, probe).await;
                    if tracker.record(result.is_ok()) == Some(false) {
                        let why = format!(
                            "liveness check failed {} times in a row ({})",
                            self.assignment
                                .release
                                .spec
                                .liveness
                                .as_ref()
                                .map_or(1, |l| l.unhealthy_threshold),
                            result.err().unwrap_or_default()
                        );
                        return Ended::Crashed(self.restart(handle, why).await);
                    }
                    next_liveness = Some(tokio::time::Instant::now() + probe.interval);
                }
                _ = resend.tick() => {
                    if !self.reported {
                        let snapshot = self.status.lock().await.clone();
                        self.report(&snapshot).await;
                    }
                }
            }
        }
    }

    /// Takes a hung instance out of routing and stops it, for the restart loop to start it
    /// again. The returned exit says why.
    async fn restart(&mut self, handle: &dyn InstanceHandle, why: String) -> Exit {
        tracing::warn!(instance = %self.id(), %why, "restarting");
        self.set(InstanceState::Unhealthy, why.clone(), |_| {})
            .await;
        tokio::time::sleep(self.ctx.drain_delay).await;
        let grace = Duration::from_millis(self.assignment.release.spec.stop_timeout_ms);
        let mut exit = handle.stop(grace).await;
        exit.reason = Some(format!("restarted: {why}"));
        exit
    }

    async fn drain_and_stop(&mut self, handle: &dyn InstanceHandle) -> Exit {
        let grace = Duration::from_millis(self.assignment.release.spec.stop_timeout_ms);
        let quarantine = self.quarantine.lock().expect("quarantine lock").clone();
        if let Some(order) = quarantine {
            // Out of routing already: frozen, archived, then stopped (thawed first: a frozen
            // process cannot die under cgroup v1).
            self.set(
                InstanceState::Stopping,
                "quarantined: freezing and archiving".into(),
                |_| {},
            )
            .await;
            let archived =
                crate::quarantine::archive_instance(&self.ctx, handle, &self.assignment, &order)
                    .await;
            let _ = handle.freeze(false);
            let mut exit = handle.stop(grace).await;
            exit.reason = Some(match archived {
                Ok(archive) => format!("quarantined: archive {archive} kept"),
                Err(why) => format!("quarantined, but not archived: {why}"),
            });
            return exit;
        }
        self.set(InstanceState::Stopping, "draining".into(), |_| {})
            .await;
        tokio::time::sleep(self.ctx.drain_delay).await;
        handle.stop(grace).await
    }

    /// Fetches the artifact, picks the port, starts the process and persists its record.
    async fn start(&mut self) -> Result<(Box<dyn InstanceHandle>, u16), String> {
        let release = &self.assignment.release;
        let spec = &release.spec;
        let work_dir = self.ctx.dirs.instance(self.id()).join("work");
        let artifact = match &release.artifact_digest {
            Some(digest) => {
                let path = self.ctx.dirs.artifact(digest);
                if !path.exists() {
                    self.ctx
                        .client
                        .download(digest, &path)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Some(path)
            }
            None => None,
        };
        let (program, mut args) = match (artifact, spec.command.split_first()) {
            // Code with a command: the artifact is unpacked as the working directory, fresh
            // at every start, and the command runs in it.
            (Some(code), Some((program, rest))) => {
                let into = work_dir.clone();
                tokio::task::spawn_blocking(move || strata_runtime::code::unpack(&code, &into))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot unpack the service's code: {e}"))?;
                (PathBuf::from(program), rest.to_vec())
            }
            (Some(program), None) => (program, Vec::new()),
            (None, Some((program, rest))) => (PathBuf::from(program), rest.to_vec()),
            (None, None) => {
                return Err("the release has neither an artifact nor a command".to_string())
            }
        };
        args.extend(spec.args.iter().cloned());
        let port = match spec.port {
            PortSpec::Fixed(port) => port,
            PortSpec::Auto => {
                free_port(&self.ctx.bind_host).map_err(|e| format!("no free port: {e}"))?
            }
        };
        let (env, secret_files) = crate::launch::environment(&self.ctx, &self.assignment, port);
        let settings = crate::launch::driver_settings(spec);
        let start = StartSpec {
            instance_id: self.id().to_string(),
            secret_files,
            name: self.assignment.instance.service.to_string(),
            program,
            args,
            env,
            log_path: self.ctx.dirs.log(self.id()),
            work_dir,
            settings,
        };
        let handle = self.driver.start(&start).await.map_err(|e| e.to_string())?;
        let record = InstanceRecord {
            instance_id: self.id().to_string(),
            port,
            driver: self.driver.kind(),
            process: handle.record(),
        };
        if let Err(error) = write_record(&self.ctx.dirs.record(self.id()), &record) {
            tracing::warn!(instance = %self.id(), %error, "cannot persist instance record; it will not be re-adopted after an agent restart");
        }
        Ok((handle, port))
    }

    fn forget_record(&self) {
        let _ = std::fs::remove_file(self.ctx.dirs.record(self.id()));
    }
}

/// Why a started instance does not serve yet: nothing listens on its port (and what it
/// listens on instead), or what its health check answers.
fn not_serving(handle: &dyn InstanceHandle, port: u16, check: Option<String>) -> String {
    let processes = handle.processes();
    let listening = strata_runtime::sockets::listening(&processes);
    if !processes.is_empty() && !listening.iter().any(|a| a.port() == port) {
        return format!(
            "not serving: nothing listens on PORT={port} (listening on: {}); the program must listen on the port in $PORT",
            strata_runtime::sockets::describe(&listening)
        );
    }
    match check {
        Some(why) => format!("not serving yet: {why}"),
        None => "not serving yet".to_string(),
    }
}

fn exit_info(exit: &Exit) -> ExitInfo {
    ExitInfo {
        code: exit.code,
        signal: exit.signal,
        at: now_millis(),
        description: exit.describe(),
    }
}

/// Where the node reaches an instance for health checks: the address it binds (loopback when
/// it binds every address).
fn check_address(bind_host: &str, port: u16) -> SocketAddr {
    let ip = match bind_host.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => std::net::IpAddr::from([127, 0, 0, 1]),
    };
    SocketAddr::new(ip, port)
}

fn free_port(host: &str) -> std::io::Result<u16> {
    Ok(TcpListener::bind((host, 0))?.local_addr()?.port())
}

fn write_record(path: &Path, record: &InstanceRecord) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    std::fs::write(
        &temp,
        serde_json::to_vec(record).expect("record serializes"),
    )?;
    std::fs::rename(temp, path)
}

/// Reads every persisted instance record (for re-adoption at start).
pub fn read_records(dirs: &AgentDirs) -> Vec<InstanceRecord> {
    let Ok(entries) = std::fs::read_dir(dirs.instances()) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("record.json")).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect()
}
