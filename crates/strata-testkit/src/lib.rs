//! A test kit for Strata clusters: starts a `strata server` and N `strata agent`s, each agent
//! in its own network namespace with its own address on a bridge, so nodes can be killed
//! (`kill -9` of every process in the namespace), frozen (SIGSTOP of the agent), cut off (the
//! link to the bridge down) and restarted.
//!
//! Everything it starts is bounded in time and removed on drop: processes, namespaces, veth
//! pairs and the bridge. It needs root and `ip` (iproute2); [`Cluster::unavailable`] says why
//! a machine cannot run it, so tests can skip with that reason.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod disk;
pub mod fixtures;
mod process;

pub use process::{
    binary_copies, join_request_loops, request_loop, terminate, wait_exit, AgentProcess,
    ServerProcess,
};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How many runs a benchmark makes: its first argument that is a number, or `default`.
pub fn bench_runs(default: usize) -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A program a benchmark measures or drives (a peer, a load generator): the path in the
/// environment variable `var`, else `name` on the PATH; panics saying `how` to install it.
pub fn bench_tool(var: &str, name: &str, how: &str) -> PathBuf {
    if let Ok(path) = std::env::var(var) {
        return PathBuf::from(path);
    }
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    found.unwrap_or_else(|| panic!("`{name}` is not installed: {how}, or set {var} to its path"))
}

/// A binary of the workspace built beside the running test or benchmark (`target/PROFILE/`);
/// panics saying `how` to build it when it is missing.
pub fn workspace_bin(name: &str, how: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(path.exists(), "{} is missing: {how}", path.display());
    path
}

/// An HTTP client of a Strata API presenting `token` (`Authorization: Bearer`), trusting the
/// CA in the PEM file `ca` (a server's `DATA_DIR/ca.pem`) for HTTPS.
pub fn api_client(token: &str, ca: Option<&Path>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(value) = format!("Bearer {token}").parse() {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder().default_headers(headers);
    if let Some(root) = ca
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|pem| reqwest::Certificate::from_pem(&pem).ok())
    {
        builder = builder.add_root_certificate(root);
    }
    builder.build().expect("http client builds")
}

/// Why this machine cannot run a cluster (not root, no `ip`, no network namespaces), if so.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (to create network namespaces, veth pairs and a bridge)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(output) if output.status.success() => {}
        _ => return Some("needs `ip` from iproute2 (Debian: apt-get install iproute2)".into()),
    }
    let probe = format!("stprobe{}", std::process::id());
    let created = Command::new("ip").args(["netns", "add", &probe]).output();
    let _ = Command::new("ip")
        .args(["netns", "delete", &probe])
        .output();
    match created {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "cannot create a network namespace: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Some(format!("cannot run ip: {error}")),
    }
}

/// Whether this machine can run containers (root, iproute2, nftables). When it cannot,
/// prints why `what` skips and returns false, unless STRATA_REQUIRE_ROOT=1 (CI), where it
/// panics: there the container tests must run.
pub fn containers_available(what: &str) -> bool {
    let missing: Vec<&str> = [("ip", "-V"), ("nft", "--version")]
        .into_iter()
        .filter(|(tool, arg)| {
            !Command::new(tool)
                .arg(arg)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(tool, _)| tool)
        .collect();
    let root = nix::unistd::geteuid().is_root();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root {
        format!(
            "{} not installed (scripts/deps.sh test installs them)",
            missing.join(", ")
        )
    } else {
        "not running as root (containers need namespaces, cgroups and mounts)".to_string()
    };
    if std::env::var("STRATA_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
        panic!("{what} cannot run: {why}");
    }
    eprintln!("SKIPPED: {what}: {why}");
    false
}

/// Runs `ip ARGS`, panicking with its stderr if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Reads `prefix...` lines from a child's stdout until all `prefixes` are seen or `limit`.
pub(crate) fn read_announcements(
    child: &mut Child,
    prefixes: &[&str],
    limit: Duration,
    log: &Path,
) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut found = vec![String::new(); prefixes.len()];
    while found.iter().any(String::is_empty) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!(
                "no announcement of {prefixes:?} within {limit:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        for (i, prefix) in prefixes.iter().enumerate() {
            if let Some(rest) = line.strip_prefix(prefix) {
                found[i] = rest.to_string();
            }
        }
    }
    found
}

/// One node: an agent in its own network namespace.
pub struct Node {
    pub name: String,
    pub netns: String,
    /// The host side of the node's veth pair (down = link cut).
    pub veth: String,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    pub labels: String,
    /// Its agent runs in the host's mount namespace (entering only the node's network
    /// namespace), so that what it mounts and unmounts is the host's: a data directory of its
    /// own, wiped down to its device.
    pub host_mounts: bool,
    agent: Option<Child>,
}

impl Node {
    /// Where its agent's log goes: beside its data directory, not in it (a decommission
    /// wipes that, its device too).
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }

    /// The node's ingress.
    pub fn ingress(&self) -> String {
        format!("{}:8080", self.ip)
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    /// Every process in the node's namespace (the agent and the instances it started).
    pub fn pids(&self) -> Vec<u32> {
        let output = Command::new("ip")
            .args(["netns", "pids", &self.netns])
            .output()
            .expect("ip runs");
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect()
    }
}

/// A server and its nodes.
pub struct Cluster {
    pub strata: PathBuf,
    pub root: tempfile::TempDir,
    pub bridge: String,
    pub server_ip: Ipv4Addr,
    pub api: String,
    pub token: String,
    pub nodes: Vec<Node>,
    server: Option<Child>,
}

/// How to start a cluster.
pub struct Options {
    /// The `strata` binary.
    pub strata: PathBuf,
    /// One entry per node: its labels (`zone=a`), possibly empty.
    pub node_labels: Vec<String>,
    /// Extra `strata server` flags.
    pub server_args: Vec<String>,
}

impl Cluster {
    /// Starts a server on the host side of a new bridge and one agent per node, each in its
    /// own namespace; returns once every node has registered.
    pub fn start(options: Options) -> Cluster {
        Self::start_preparing(options, |_| {})
    }

    /// [`Cluster::start`], with `prepare` called on each node before its agent starts (e.g.
    /// to mount a filesystem of its own on its data directory).
    pub fn start_preparing(options: Options, mut prepare: impl FnMut(&mut Node)) -> Cluster {
        let id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let a = 100 + rand::random::<u8>() % 100;
        let b = rand::random::<u8>();
        let bridge = format!("stb{id}");
        let server_ip = Ipv4Addr::new(10, a, b, 1);
        let root = tempfile::tempdir().expect("temp dir");
        let mut cluster = Cluster {
            strata: options.strata,
            root,
            bridge: bridge.clone(),
            server_ip,
            api: String::new(),
            token: String::new(),
            nodes: Vec::new(),
            server: None,
        };
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{server_ip}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for (i, labels) in options.node_labels.iter().enumerate() {
            let node_ip = Ipv4Addr::new(10, a, b, 2 + i as u8);
            let netns = format!("st{id}n{i}");
            let veth = format!("stv{id}{i}");
            let peer = format!("stp{id}{i}");
            ip(&["netns", "add", &netns]);
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &peer, "netns", &netns]);
            ip(&["link", "set", &veth, "master", &bridge]);
            ip(&["link", "set", &veth, "up"]);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{node_ip}/24"),
                "dev",
                &peer,
            ]);
            ip(&["-n", &netns, "link", "set", &peer, "up"]);
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
            let data_dir = cluster.root.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&data_dir).expect("node dir");
            cluster.nodes.push(Node {
                name: format!("node-{i}"),
                netns,
                veth,
                ip: node_ip,
                data_dir,
                labels: labels.clone(),
                host_mounts: false,
                agent: None,
            });
        }
        // The server.
        let server_dir = cluster.root.path().join("server");
        std::fs::create_dir_all(&server_dir).expect("server dir");
        let log = server_dir.join("server.log");
        let mut server = Command::new(&cluster.strata)
            .args(["server", "--data-dir"])
            .arg(&server_dir)
            .args(["--api-addr", &format!("{server_ip}:0")])
            .args(&options.server_args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("strata server starts");
        let found = read_announcements(
            &mut server,
            &["api: ", "join token: "],
            Duration::from_secs(30),
            &log,
        );
        cluster.api = found[0].clone();
        cluster.token = found[1].clone();
        cluster.server = Some(server);
        for i in 0..cluster.nodes.len() {
            prepare(&mut cluster.nodes[i]);
            cluster.start_agent(i);
        }
        cluster.wait_ready(cluster.nodes.len(), Duration::from_secs(30));
        cluster
    }

    /// Waits (at most `limit`) for node `i`'s agent to exit by itself: its exit status.
    pub fn wait_agent_exit(
        &mut self,
        i: usize,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let status = crate::process::wait_exit(self.nodes[i].agent.as_mut()?, limit);
        if status.is_some() {
            self.nodes[i].agent = None;
        }
        status
    }

    /// Starts (or restarts) node `i`'s agent, on its existing data directory.
    pub fn start_agent(&mut self, i: usize) {
        let node = &self.nodes[i];
        let log = node.log_path();
        // `ip netns exec` gives the agent a mount namespace of its own (with the network
        // namespace's /sys); `nsenter --net` keeps the host's.
        let mut command = match node.host_mounts {
            true => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net=/run/netns/{}", node.netns))
                    .arg("--");
                command
            }
            false => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &node.netns]);
                command
            }
        };
        command
            .arg(&self.strata)
            .args(["agent", "--join", &self.api, "--name", &node.name])
            // The join token through the environment, as an operator keeps it off argv.
            .env("STRATA_JOIN_TOKEN", &self.token)
            .args(["--advertise-addr", &node.ip.to_string(), "--data-dir"])
            .arg(&node.data_dir);
        if !node.labels.is_empty() {
            command.args(["--labels", &node.labels]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("log file"),
            )
            .spawn()
            .expect("strata agent starts");
        read_announcements(
            &mut child,
            &["agent: ", "ingress: "],
            Duration::from_secs(30),
            &log,
        );
        self.nodes[i].agent = Some(child);
    }

    /// Sends node `i`'s agent SIGTERM and waits (at most `limit`) for it to exit: its exit
    /// status, or `None` if it was still running (it is then killed).
    pub fn terminate_agent(
        &mut self,
        i: usize,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        crate::process::terminate(self.nodes[i].agent.take()?, limit)
    }

    /// Waits until `count` nodes are ready.
    pub fn wait_ready(&self, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let output = self.cli(&["node", "ls", "--json"]);
            if output.status.success() {
                let nodes: Vec<serde_json::Value> =
                    serde_json::from_slice(&output.stdout).unwrap_or_default();
                let ready = nodes.iter().filter(|n| n["state"] == "ready").count();
                if ready >= count {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nodes not ready within {limit:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client of the server's API as its admin.
    pub fn api_client(&self) -> reqwest::Client {
        api_client(
            &self.admin_token(),
            Some(&self.root.path().join("server/ca.pem")),
        )
    }

    /// The admin token the server keeps in its data directory.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.root.path().join("server/admin-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    /// Runs a CLI command against the server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.strata)
            .args(args)
            .env("STRATA_ADDR", &self.api)
            .output()
            .expect("strata runs")
    }

    /// kill -9 of every process of node `i`: its agent and every instance it started.
    pub fn kill_node(&mut self, i: usize) {
        for pid in self.nodes[i].pids() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if let Some(mut agent) = self.nodes[i].agent.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.nodes[i].pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP (true) or SIGCONT (false) of the server.
    pub fn freeze_server(&self, frozen: bool) {
        if let Some(server) = &self.server {
            let signal = if frozen {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            kill(Pid::from_raw(server.id() as i32), signal).expect("signal the server");
        }
    }

    /// SIGSTOP (true) or SIGCONT (false) of node `i`'s agent alone.
    pub fn freeze_agent(&self, i: usize, frozen: bool) {
        if let Some(pid) = self.nodes[i].agent_pid() {
            let signal = if frozen {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            kill(Pid::from_raw(pid as i32), signal).expect("signal the agent");
        }
    }

    /// Cuts (true) or restores (false) node `i`'s link to the bridge.
    pub fn cut_link(&self, i: usize, cut: bool) {
        ip(&[
            "link",
            "set",
            &self.nodes[i].veth,
            if cut { "down" } else { "up" },
        ]);
    }

    /// The server's and agents' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = format!(
            "--- server ---\n{}",
            std::fs::read_to_string(self.root.path().join("server/server.log")).unwrap_or_default()
        );
        for node in &self.nodes {
            text.push_str(&format!(
                "\n--- {} ---\n{}",
                node.name,
                std::fs::read_to_string(node.log_path()).unwrap_or_default()
            ));
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            // Thaw first, so a frozen agent can die.
            if let Some(pid) = node.agent_pid() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
            }
            for pid in node.pids() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            if let Some(mut agent) = node.agent.take() {
                let _ = agent.kill();
                let _ = agent.wait();
            }
            let _ = Command::new("ip")
                .args(["netns", "delete", &node.netns])
                .output();
            let _ = Command::new("ip")
                .args(["link", "delete", &node.veth])
                .output();
        }
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .output();
    }
}
