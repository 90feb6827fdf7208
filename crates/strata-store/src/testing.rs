//! Test support (feature `test-util`): a real etcd started on loopback.
//!
//! [`EtcdServer`] runs the etcd binary (Debian's `etcd-server`) as child processes: one
//! member ([`EtcdServer::start`]) or a cluster ([`EtcdServer::cluster`]), each member on its
//! own free loopback ports with its own data directory under one temporary directory. Tests
//! can kill (`kill -9`) and restart members to exercise failover. Dropping the server kills
//! every member and removes the directory.
//!
//! [`etcd_unavailable`] says why no etcd can be started here (no binary), so that tests can
//! print `SKIPPED: <why>` instead of failing on a machine without etcd:
//!
//! ```ignore
//! if let Some(why) = strata_store::testing::etcd_unavailable() {
//!     println!("SKIPPED: {why}");
//!     return;
//! }
//! let etcd = strata_store::testing::EtcdServer::start();
//! let store = strata_store::EtcdStore::connect_url(&etcd.url("/test")).await?;
//! ```
//!
//! [`EtcdServer::start_tls`] (and [`EtcdServer::cluster_tls`]) start etcd serving its clients
//! over TLS only, with the certificates of a [`TlsMaterial`] (made by the test, e.g. with
//! `rcgen`), and optionally requiring client certificates signed by its CA (mutual TLS). The
//! members then talk to each other in plain text on loopback, and answer health checks on a
//! separate plain-HTTP metrics port.
//!
//! The binary is `$STRATA_ETCD_BIN` if set, else `etcd` on the `PATH`, else `/usr/bin/etcd`.
//! Each member's output goes to `member-N.log` in the temporary directory; a member that
//! does not start (within [`START_TIMEOUT`]) panics with its log. Every wait is bounded.
//! The calls block (they start processes and poll them), so from async code call them
//! before the runtime is busy or within `tokio::task::block_in_place`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// The environment variable that names the etcd binary to use.
pub const ETCD_BIN_ENV: &str = "STRATA_ETCD_BIN";

/// How long a member may take to start answering.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How many times a start is tried with fresh ports (another process may take a port
/// between picking it and etcd binding it).
const START_ATTEMPTS: usize = 3;

/// The etcd binary, if there is one.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(ETCD_BIN_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let default = PathBuf::from("/usr/bin/etcd");
        default.is_file().then_some(default)
    })
}

/// Why etcd cannot be started here, or `None` if it can.
pub fn etcd_unavailable() -> Option<String> {
    let Some(binary) = etcd_binary() else {
        return Some(format!(
            "no etcd binary (looked at ${ETCD_BIN_ENV}, the PATH and /usr/bin/etcd): \
             install Debian's etcd-server (apt-get install etcd-server)"
        ));
    };
    let child = Command::new(&binary)
        .arg("--version")
        .env_remove("ETCD_UNSUPPORTED_ARCH")
        .envs(unsupported_arch())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Err(e) => Some(format!("{} cannot be run: {e}", binary.display())),
        Ok(mut child) => match wait_bounded(&mut child, Duration::from_secs(10)) {
            Some(status) if status.success() => None,
            Some(status) => Some(format!(
                "{} --version failed ({status}): install Debian's etcd-server",
                binary.display()
            )),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Some(format!("{} --version did not finish", binary.display()))
            }
        },
    }
}

/// `ETCD_UNSUPPORTED_ARCH`, for the architectures etcd 3.4 only runs on with it.
fn unsupported_arch() -> Option<(&'static str, &'static str)> {
    let goarch = match std::env::consts::ARCH {
        // Supported by every etcd release Debian ships.
        "x86_64" => return None,
        "powerpc64" if cfg!(target_endian = "little") => return None,
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64" => "mips64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Some(("ETCD_UNSUPPORTED_ARCH", goarch))
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// A unique-enough token for cluster names in this process.
fn unique_token() -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "strata-test-{}-{}-{nanos:x}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What an [`EtcdServer`] started with [`EtcdServer::start_tls`] serves its clients with. The
/// PEM texts are written to files in the server's temporary directory
/// ([`EtcdServer::tls_file`]).
#[derive(Clone)]
pub struct TlsMaterial {
    /// The CA certificate etcd trusts for client certificates (and clients trust for etcd's).
    pub ca_pem: String,
    /// etcd's server certificate: it must be valid for `127.0.0.1` (an IP address subject
    /// alternative name). etcd also presents it as a client certificate on its own internal
    /// connections, so give it both the server and the client extended key usage.
    pub server_cert_pem: String,
    /// The private key of `server_cert_pem`.
    pub server_key_pem: String,
    /// Require and verify client certificates signed by `ca_pem` (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("client_cert_auth", &self.client_cert_auth)
            .finish_non_exhaustive()
    }
}

/// The files a TLS [`EtcdServer`] reads its [`TlsMaterial`] from.
#[derive(Debug, Clone)]
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert_auth: bool,
}

/// One member of an [`EtcdServer`].
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// The plain-HTTP port of `/health` and `/metrics` (used for health checks with TLS).
    metrics_port: u16,
    /// Whether clients talk TLS to it.
    tls: bool,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    /// Where `/health` answers in plain HTTP.
    fn health_port(&self) -> u16 {
        if self.tls {
            self.metrics_port
        } else {
            self.client_port
        }
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            if wait_bounded(&mut child, Duration::from_secs(10)).is_none() {
                eprintln!("etcd member {} did not exit after SIGKILL", self.name);
            }
        }
    }
}

/// A real etcd (one member or several) on loopback, for tests. See the [module docs](self).
pub struct EtcdServer {
    binary: PathBuf,
    dir: TempDir,
    token: String,
    initial_cluster: String,
    members: Vec<Member>,
    tls: Option<TlsFiles>,
}

impl std::fmt::Debug for EtcdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdServer")
            .field("dir", &self.dir.path())
            .field("endpoints", &self.endpoints())
            .finish_non_exhaustive()
    }
}

impl EtcdServer {
    /// Starts a one-member etcd and waits until it answers. Panics (with the member's log)
    /// if etcd is missing or does not start within [`START_TIMEOUT`].
    pub fn start() -> EtcdServer {
        Self::cluster(1)
    }

    /// Starts an `n`-member cluster (every member its own ports and data directory, one
    /// `--initial-cluster`) and waits until every member answers. Panics (with the members'
    /// logs) if etcd is missing or the cluster does not come up within [`START_TIMEOUT`].
    pub fn cluster(n: usize) -> EtcdServer {
        Self::cluster_with(n, None)
    }

    /// Starts a one-member etcd that serves its clients over TLS only (`https://`, URLs
    /// `etcds://`), with `tls`'s certificates, and waits until it answers. Panics like
    /// [`EtcdServer::start`].
    pub fn start_tls(tls: &TlsMaterial) -> EtcdServer {
        Self::cluster_with(1, Some(tls))
    }

    /// [`EtcdServer::cluster`] serving its clients over TLS only, like
    /// [`EtcdServer::start_tls`] (every member with the same certificate).
    pub fn cluster_tls(n: usize, tls: &TlsMaterial) -> EtcdServer {
        Self::cluster_with(n, Some(tls))
    }

    fn cluster_with(n: usize, tls: Option<&TlsMaterial>) -> EtcdServer {
        assert!(n > 0, "an etcd cluster needs at least one member");
        let binary = etcd_binary().unwrap_or_else(|| {
            panic!(
                "{}",
                etcd_unavailable().unwrap_or_else(|| "no etcd binary".to_owned())
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("strata-etcd-")
            .tempdir()
            .expect("create a temporary directory for etcd");
        let tls = tls.map(|material| {
            let write = |name: &str, pem: &str| {
                let path = dir.path().join(name);
                std::fs::write(&path, pem)
                    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
                path
            };
            TlsFiles {
                ca: write("tls-ca.pem", &material.ca_pem),
                cert: write("tls-server.pem", &material.server_cert_pem),
                key: write("tls-server-key.pem", &material.server_key_pem),
                client_cert_auth: material.client_cert_auth,
            }
        });
        let mut server = EtcdServer {
            binary,
            dir,
            token: String::new(),
            initial_cluster: String::new(),
            members: Vec::new(),
            tls,
        };
        let mut failures = Vec::new();
        for attempt in 0..START_ATTEMPTS {
            server.assign_ports(n, attempt);
            match server.start_all() {
                Ok(()) => return server,
                Err(failure) => {
                    server.kill_all();
                    let retry = failure.contains("address already in use");
                    failures.push(failure);
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!(
            "etcd ({n} member(s), {}) did not start:\n{}",
            server.binary.display(),
            failures.join("\n---- next attempt, on other ports ----\n")
        );
    }

    /// Gives the `n` members fresh ports, data directories and a new cluster token.
    fn assign_ports(&mut self, n: usize, attempt: usize) {
        // Hold every listener until all ports are picked, so that no port is picked twice.
        let listeners: Vec<TcpListener> = (0..3 * n)
            .map(|_| {
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free loopback port")
            })
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("local address").port())
            .collect();
        drop(listeners);
        let dir = self.dir.path();
        self.token = unique_token();
        self.members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[3 * i],
                peer_port: ports[3 * i + 1],
                metrics_port: ports[3 * i + 2],
                tls: self.tls.is_some(),
                data_dir: dir.join(format!("attempt-{attempt}/member-{i}")),
                log: dir.join(format!("member-{i}.log")),
                child: None,
            })
            .collect();
        self.initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
    }

    fn start_all(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() {
            self.spawn(i)?;
        }
        // A member of a cluster answers only once a quorum is up, so all start first.
        let deadline = Instant::now() + START_TIMEOUT;
        for i in 0..self.members.len() {
            self.wait_healthy(i, deadline)?;
        }
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let member = &self.members[i];
        std::fs::create_dir_all(&member.data_dir)
            .map_err(|e| format!("create {}: {e}", member.data_dir.display()))?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .map_err(|e| format!("open {}: {e}", member.log.display()))?;
        let _ = writeln!(log, "==== starting etcd member {} ====", member.name);
        let stderr = log
            .try_clone()
            .map_err(|e| format!("open {}: {e}", member.log.display()))?;
        let mut command = Command::new(&self.binary);
        // Settings meant for some other etcd (ETCD_* variables) must not leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(name);
            }
        }
        command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&member.data_dir)
            .arg("--listen-client-urls")
            .arg(member.client_url())
            .arg("--advertise-client-urls")
            .arg(member.client_url())
            .arg("--listen-peer-urls")
            .arg(member.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(member.peer_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr");
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg(format!("--client-cert-auth={}", tls.client_cert_auth))
                // Health checks, in plain HTTP.
                .arg("--listen-metrics-urls")
                .arg(member.metrics_url());
        }
        command
            .envs(unsupported_arch())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = command
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until member `i` reports itself healthy (it has a leader and serves), or fails
    /// with why and the logs.
    fn wait_healthy(&mut self, i: usize, deadline: Instant) -> Result<(), String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.members[i].health_port()));
        loop {
            if let Some(child) = self.members[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.members[i].child = None;
                    return Err(format!(
                        "etcd member {i} exited ({status}) while starting; {}",
                        self.logs()
                    ));
                }
            }
            if healthy(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "etcd member {i} did not answer on {addr} within {START_TIMEOUT:?}; {}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The logs of every member, for messages.
    fn logs(&self) -> String {
        self.members
            .iter()
            .enumerate()
            .map(|(i, _)| format!("log of member {i}:\n{}", self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last 16 KiB of member `member`'s log.
    pub fn log(&self, member: usize) -> String {
        const TAIL: usize = 16 * 1024;
        let Some(m) = self.members.get(member) else {
            return format!("(no member {member})");
        };
        let mut text = String::new();
        match File::open(&m.log).and_then(|mut f| f.read_to_string(&mut text)) {
            Ok(_) => {
                let mut cut = text.len().saturating_sub(TAIL);
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                text[cut..].to_owned()
            }
            Err(e) => format!("(cannot read {}: {e})", m.log.display()),
        }
    }

    fn kill_all(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }

    /// The members' client URLs (`http://127.0.0.1:PORT`, `https://` with TLS).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Whether the members serve their clients over TLS ([`EtcdServer::start_tls`]).
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The file holding a PEM of the [`TlsMaterial`]: `"ca"`, `"cert"` (the server's
    /// certificate) or `"key"` (its key); `None` without TLS. Panics on another name.
    pub fn tls_file(&self, which: &str) -> Option<&Path> {
        let tls = self.tls.as_ref()?;
        Some(match which {
            "ca" => &tls.ca,
            "cert" => &tls.cert,
            "key" => &tls.key,
            other => panic!("no TLS file {other:?} (ca, cert or key)"),
        })
    }

    /// The store URL of the whole cluster: `etcd://127.0.0.1:P1,.../NAMESPACE` (`etcds://`
    /// with TLS; no namespace part if `namespace` is empty).
    pub fn url(&self, namespace: &str) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        let scheme = if self.tls() { "etcds" } else { "etcd" };
        let namespace = namespace.trim_matches('/');
        if namespace.is_empty() {
            format!("{scheme}://{}", hosts.join(","))
        } else {
            format!("{scheme}://{}/{namespace}", hosts.join(","))
        }
    }

    /// How many members the cluster has.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The temporary directory holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The member that is the raft leader now (by its `etcd_server_is_leader` metric), if a
    /// running member says it is.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && plain_get(
                    SocketAddr::from((Ipv4Addr::LOCALHOST, self.members[i].health_port())),
                    "/metrics",
                )
                .is_some_and(|metrics| {
                    metrics
                        .lines()
                        .any(|line| line.trim() == "etcd_server_is_leader 1")
                })
        })
    }

    /// Kills member `member` with SIGKILL and reaps it. Panics if there is no such member.
    pub fn kill(&mut self, member: usize) {
        let count = self.members.len();
        self.members
            .get_mut(member)
            .unwrap_or_else(|| panic!("no etcd member {member} (the cluster has {count})"))
            .kill();
    }

    /// Restarts member `member` (killing it first if it runs) on its ports and data, and
    /// waits until it answers again (which, in a cluster, needs a quorum). Panics with the
    /// logs if it does not within [`START_TIMEOUT`].
    pub fn restart(&mut self, member: usize) {
        assert!(
            member < self.members.len(),
            "no etcd member {member} (the cluster has {})",
            self.members.len()
        );
        self.members[member].kill();
        let result = self
            .spawn(member)
            .and_then(|()| self.wait_healthy(member, Instant::now() + START_TIMEOUT));
        if let Err(failure) = result {
            panic!("etcd member {member} did not restart: {failure}");
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill_all();
        // `dir` (a TempDir) removes the data and logs.
    }
}

/// Whether etcd's `/health` on `addr` says it is healthy (bounded: about 2 s at most).
fn healthy(addr: SocketAddr) -> bool {
    plain_get(addr, "/health").is_some_and(|body| body.contains("\"health\":\"true\""))
}

/// The response to a plain-HTTP `GET path` on `addr`, if it answers (bounded: about 2 s).
fn plain_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let timeout = Some(Duration::from_millis(1500));
    stream.set_read_timeout(timeout).ok()?;
    stream.set_write_timeout(timeout).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    let _ = stream.take(4 * 1024 * 1024).read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    response.starts_with("HTTP/1.").then_some(response)
}
