//! Single `strata` processes for tests and benchmarks: a server (on any store) and an agent on
//! loopback, each announcing its addresses on stdout, killed on drop; and a bounded request
//! loop through an ingress.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::read_announcements;

fn spawn(command: &mut Command, log: &Path) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("log file"),
        )
        .spawn()
        .expect("strata starts")
}

/// Waits (at most `limit`) for `child` to exit: its status, or `None` if it still runs.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// SIGTERM to `child`, then waits (at most `limit`, then SIGKILL) for it to exit.
pub fn terminate(mut child: Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let status = wait_exit(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Copies of the `strata` binary, one per name in `versions` (`ROOT/VERSION/strata`): the
/// binary running and the ones replacing it, in an upgrade.
pub fn binary_copies(strata: &Path, root: &Path, versions: &[&str]) -> Vec<PathBuf> {
    versions
        .iter()
        .map(|version| {
            let dir = root.join(version);
            std::fs::create_dir_all(&dir).expect("a directory for the copy");
            let copy = dir.join("strata");
            std::fs::copy(strata, &copy).expect("the binary copies");
            copy
        })
        .collect()
}

/// A `strata server`.
pub struct ServerProcess {
    child: Option<Child>,
    pub api: String,
    pub dir: PathBuf,
}

impl ServerProcess {
    /// Starts a server with its data in `dir`, on `store` (`None`: the embedded store).
    pub fn start(strata: &Path, dir: &Path, store: Option<&str>) -> ServerProcess {
        Self::start_with(strata, dir, store, &[])
    }

    /// [`ServerProcess::start`] with more `strata server` flags.
    pub fn start_with(
        strata: &Path,
        dir: &Path,
        store: Option<&str>,
        flags: &[&str],
    ) -> ServerProcess {
        std::fs::create_dir_all(dir).expect("server dir");
        let mut command = Command::new(strata);
        command.args(["server", "--data-dir"]).arg(dir);
        if !flags.contains(&"--api-addr") {
            command.args(["--api-addr", "127.0.0.1:0"]);
        }
        command.args(flags);
        if let Some(store) = store {
            command.args(["--store", store]);
        }
        let log = dir.join("server.log");
        let mut child = spawn(&mut command, &log);
        let api =
            read_announcements(&mut child, &["api: "], Duration::from_secs(30), &log).remove(0);
        ServerProcess {
            child: Some(child),
            api,
            dir: dir.to_path_buf(),
        }
    }

    /// The server's stable identity.
    pub fn id(&self) -> String {
        std::fs::read_to_string(self.dir.join("server-id"))
            .map(|id| id.trim().to_string())
            .unwrap_or_default()
    }

    /// A client of this server's API as its admin (trusting its CA).
    pub fn api_client(&self) -> reqwest::Client {
        crate::api_client(&self.admin_token(), Some(&self.dir.join("ca.pem")))
    }

    /// The admin token this server keeps (valid on every server of the same store).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("join-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGSTOP (true) or SIGCONT (false).
    pub fn freeze(&self, frozen: bool) {
        if let Some(pid) = self.pid() {
            let signal = if frozen {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            kill(Pid::from_raw(pid), signal).expect("signal the server");
        }
    }

    /// SIGTERM, then waits (at most `limit`, then SIGKILL) for the server to exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        terminate(self.child.take()?, limit)
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.freeze(false);
        self.kill9();
    }
}

/// A `strata agent` on loopback.
pub struct AgentProcess {
    child: Child,
    /// `host:port` of its ingress.
    pub ingress: String,
    pub dir: PathBuf,
}

impl AgentProcess {
    pub fn start(strata: &Path, dir: &Path, join: &str, token: &str) -> AgentProcess {
        Self::start_with(strata, dir, join, token, &[])
    }

    /// [`AgentProcess::start`] with more `strata agent` flags.
    pub fn start_with(
        strata: &Path,
        dir: &Path,
        join: &str,
        token: &str,
        flags: &[&str],
    ) -> AgentProcess {
        Self::start_with_env(strata, dir, join, token, flags, &[])
    }

    /// [`AgentProcess::start_with`] with more environment variables.
    pub fn start_with_env(
        strata: &Path,
        dir: &Path,
        join: &str,
        token: &str,
        flags: &[&str],
        env: &[(&str, &Path)],
    ) -> AgentProcess {
        std::fs::create_dir_all(dir).expect("agent dir");
        let mut command = Command::new(strata);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        command.args(["agent", "--join", join, "--token", token, "--name", "local"]);
        if !flags.contains(&"--api-addr") {
            command.args(["--api-addr", "127.0.0.1:0"]);
        }
        command
            .args([
                "--ingress-addr",
                "127.0.0.1:0",
                "--mesh-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir)
            .args(flags);
        let log = dir.join("agent.log");
        let mut child = spawn(&mut command, &log);
        let ingress = read_announcements(
            &mut child,
            &["ingress: http://"],
            Duration::from_secs(30),
            &log,
        )
        .remove(0);
        AgentProcess {
            child,
            ingress,
            dir: dir.to_path_buf(),
        }
    }
}

impl AgentProcess {
    /// Waits (at most `limit`) for the agent to exit by itself: its exit status, or `None`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_exit(&mut self.child, limit)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for every request loop: all their failures, and how many requests succeeded.
pub fn join_request_loops(
    loops: Vec<std::thread::JoinHandle<(Vec<String>, usize)>>,
) -> (Vec<String>, usize) {
    let (mut failures, mut ok) = (Vec::new(), 0);
    for handle in loops {
        let (failed, succeeded) = handle.join().expect("a request loop");
        failures.extend(failed);
        ok += succeeded;
    }
    (failures, ok)
}

/// GETs `http://HOST:PORT/` through `ingress` every 5-10 ms until `stop` (at most 60 s);
/// returns the failures (status and body, or the error) and the number of successes.
pub fn request_loop(
    host: &'static str,
    ingress: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<String>, usize)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let addr: std::net::SocketAddr = ingress.parse().expect("ingress address");
            let client = reqwest::Client::builder()
                .resolve(host, addr)
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let url = format!("http://{host}:{}/", addr.port());
            let (mut failures, mut ok) = (Vec::new(), 0);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => ok += 1,
                    Ok(response) => failures.push(format!(
                        "{}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    )),
                    Err(error) => failures.push(format!("{error:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (failures, ok)
        })
    })
}
