//! Test kit for end-to-end tests: starts the real `strata` binary (`strata dev`) on ports it
//! picks (port 0, read back from its output) in a temporary data directory, runs CLI
//! commands against it, and cleans up every process it started, instances included.

#![allow(dead_code)]

pub mod cluster;
pub mod forensics;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use strata_core::api::ServiceStatus;
use strata_core::DesiredState;

pub fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

/// A binary built next to `strata`; `build` is how to build it when it is missing.
fn sibling_bin(name: &str, build: &str) -> PathBuf {
    let path = strata_bin().with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `{build}` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The example service's binary, built next to `strata` by `cargo build --workspace --bins`.
pub fn hello_bin() -> PathBuf {
    sibling_bin("hello", "cargo build -p hello")
}

/// The test kit's misbehaving service (see crates/strata-testkit/src/bin/misbehave.rs).
pub fn misbehave_bin() -> PathBuf {
    sibling_bin("misbehave", "cargo build --workspace --bins")
}

/// A spec's table for the service `name` running `artifact` with the config `GREETING`
/// (what the example service, and its container and wasm builds, say), health-checked on
/// `/healthz` every 200 ms. `more` goes just after its `artifact`: keys of the service
/// (`driver = "wasm"`), then any of its tables.
pub fn service_toml(name: &str, artifact: &Path, greeting: &str, more: &str) -> String {
    format!(
        r#"
[service.{name}]
artifact = "{artifact}"
{more}
[service.{name}.config]
GREETING = "{greeting}"
[service.{name}.health]
path = "/healthz"
interval = "200ms"
timeout = "200ms"
"#,
        artifact = artifact.display()
    )
}

/// Writes `contents` into `dir` as the file `name` (a spec, an artifact); its path.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Tests that each start several processes (servers, agents, etcd members) run one at a
/// time within their test binary, so that on a small machine their timing reflects the
/// platform and not each other: each holds this while it runs.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `strata agent` flags that put its API, ingress and inter-node port on free loopback ports.
pub const AGENT_ON_LOOPBACK: [&str; 6] = [
    "--api-addr",
    "127.0.0.1:0",
    "--ingress-addr",
    "127.0.0.1:0",
    "--mesh-addr",
    "127.0.0.1:0",
];

/// A spec for the example service with the given settings, written into `dir`.
pub fn hello_spec(dir: &Path, replicas: u32, greeting: &str) -> PathBuf {
    let spec = service_toml(
        "hello",
        &hello_bin(),
        greeting,
        &format!("[service.hello.scale]\nreplicas = {replicas}"),
    );
    write_file(
        dir,
        &format!("hello-{replicas}-{}.toml", greeting.len()),
        spec,
    )
}

/// The start of an agent upgrade in `root`: a server on the embedded store, two copies of
/// the binary (`v1` running, `v2` to replace it), and an agent of `v1` serving hello twice
/// (`greeting`), its data in `root/agent`.
pub fn serving_hello_to_upgrade(
    root: &Path,
    greeting: &str,
) -> (
    strata_testkit::ServerProcess,
    Vec<PathBuf>,
    strata_testkit::AgentProcess,
) {
    let server = strata_testkit::ServerProcess::start(&strata_bin(), &root.join("server"), None);
    let binaries = strata_testkit::binary_copies(&strata_bin(), root, &["v1", "v2"]);
    let agent = strata_testkit::AgentProcess::start(
        &binaries[0],
        &root.join("agent"),
        &server.api,
        &server.token(),
    );
    let spec = hello_spec(root, 2, greeting);
    let deployed = Command::new(strata_bin())
        .args(["deploy", spec.to_str().unwrap(), "--timeout", "60s"])
        .env("STRATA_ADDR", &server.api)
        .output()
        .unwrap();
    assert!(deployed.status.success(), "{}", stderr(&deployed));
    (server, binaries, agent)
}

/// A `strata dev` in `dir` with the example service deployed from [`hello_spec`].
pub fn dev_serving_hello(dir: &Path, replicas: u32, greeting: &str) -> Dev {
    let dev = Dev::start(dir);
    dev.deploy(&hello_spec(dir, replicas, greeting), &[]);
    dev
}

/// `strata image ...` against the test's own image store.
pub fn image(images: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(strata_bin())
        .arg("image")
        .args(args)
        .env("STRATA_IMAGES", images)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "strata image {args:?}: {}",
        stderr(&output)
    );
    output
}

/// `strata image build --jeos program extra... --tag tag` into `images`; its stdout.
pub fn build_jeos(images: &Path, program: &Path, extra: &[&str], tag: &str) -> String {
    let program = program.to_str().unwrap();
    let args = [&["build", "--jeos", program], extra, &["--tag", tag]].concat();
    stdout(&image(images, &args))
}

/// `strata image save tag -o tar`: the image as an OCI layout tar.
pub fn save_image(images: &Path, tag: &str, tar: &Path) {
    image(images, &["save", tag, "-o", tar.to_str().unwrap()]);
}

/// The test kit's `misbehave`, packaged with `--jeos` and saved as an OCI layout tar.
pub fn misbehave_image(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    build_jeos(&images, &misbehave_bin(), &[], "misbehave:1");
    let tar = dir.join("misbehave.tar");
    save_image(&images, "misbehave:1", &tar);
    tar
}

/// Debian's redis-server (at `server`) packaged with `--jeos` into `dir`, and a spec of it as
/// a `tcp` container service listening on a free port with `more` (TOML) after it: the spec
/// and the port.
pub fn redis_service(dir: &Path, server: &Path, more: &str) -> (PathBuf, u16) {
    let images = dir.join("images");
    let built = build_jeos(&images, server, &[], "redis:1");
    assert!(built.contains("redis:1 sha256:"), "{built}");
    let tar = dir.join("redis.tar");
    save_image(&images, "redis:1", &tar);
    let port = free_port();
    let spec = write_file(
        dir,
        "redis.toml",
        format!(
            r#"
[service.redis]
driver = "container"
artifact = "{tar}"
args = ["--port", "{port}", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
port = {port}
protocol = "tcp"
{more}"#,
            tar = tar.display()
        ),
    );
    (spec, port)
}

/// A temporary directory holding [`misbehave_image`]'s tar, and the tar; `None` (the test
/// skips, saying why) where this host cannot run containers.
pub fn misbehave_image_dir(test: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    if !strata_testkit::containers_available(test) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = misbehave_image(dir.path());
    Some((dir, tar))
}

/// A spec of one container service running `tar` with `args`, written into `dir`.
pub fn container_spec(dir: &Path, name: &str, tar: &Path, args: &[&str], extra: &str) -> PathBuf {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let path = dir.join(format!("{name}-{}.toml", args.join("-").replace('"', "")));
    std::fs::write(
        &path,
        format!(
            "[service.{name}]\ndriver = \"container\"\nartifact = \"{}\"\nargs = [{}]\n{extra}",
            tar.display(),
            args.join(", ")
        ),
    )
    .unwrap();
    path
}

/// A running `strata dev`.
pub struct Dev {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub api: String,
    pub ingress: SocketAddr,
    /// The ingress's HTTPS port (certificates of `DATA_DIR/ingress-ca.crt`).
    pub https: SocketAddr,
}

impl Dev {
    pub fn start(data_dir: &Path) -> Dev {
        Self::start_with(data_dir, &[])
    }

    /// `strata dev` with extra flags (`data_dir` is created if missing).
    pub fn start_with(data_dir: &Path, flags: &[&str]) -> Dev {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("dev.log"))
            .unwrap();
        let mut child = Command::new(strata_bin())
            .args(["dev", "--data-dir"])
            .arg(data_dir)
            .args(["--api-addr", "127.0.0.1:0", "--ingress-addr", "127.0.0.1:0"])
            .args(["--https-addr", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("strata dev starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut api = None;
        let mut ingress = None;
        let mut https = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.is_none() || ingress.is_none() || https.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "strata dev did not announce its addresses; its log:\n{}",
                    std::fs::read_to_string(data_dir.join("dev.log")).unwrap_or_default()
                )
            });
            if let Some(url) = line.strip_prefix("api: ") {
                api = Some(url.to_string());
            }
            if let Some(url) = line.strip_prefix("ingress: http://") {
                ingress = Some(url.parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("ingress (https): https://") {
                https = rest.split(' ').next().and_then(|a| a.parse().ok());
            }
        }
        Dev {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            api: api.unwrap(),
            ingress: ingress.unwrap(),
            https: https.unwrap(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("dev.log")).unwrap_or_default()
    }

    /// The admin token `strata dev` keeps in its data directory.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("strata dev keeps an admin token")
            .trim()
            .to_string()
    }

    /// The credential of `strata dev`'s node (its agent's API requires it).
    pub fn node_credential(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("agent/node-credential"))
            .expect("the node keeps its credential")
            .trim()
            .to_string()
    }

    /// The key of `strata dev`'s node's own API (logs, metrics).
    pub fn node_api_key(&self) -> String {
        strata_core::auth::node_api_key(&self.node_credential())
    }

    /// An HTTP client of the API presenting `token`.
    pub fn api_client_with(&self, token: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// An HTTP client of the API presenting the admin token.
    pub fn api_client(&self) -> reqwest::Client {
        self.api_client_with(&self.admin_token())
    }

    /// `GET path` on the API as the admin.
    pub async fn api_get(&self, path: &str) -> reqwest::Response {
        self.api_client()
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .unwrap()
    }

    /// The cluster's nodes, once `strata dev`'s node has registered (it joins
    /// just after the API announces itself). Waits at most 15 s.
    pub async fn nodes(&self) -> Vec<strata_core::Node> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let nodes: Vec<strata_core::Node> =
                self.api_get("/v1/nodes").await.json().await.unwrap();
            if !nodes.is_empty() {
                return nodes;
            }
            assert!(
                Instant::now() < deadline,
                "strata dev's node never registered; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a CLI command against this control plane.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .args(args)
            .env("STRATA_ADDR", &self.api)
            .output()
            .expect("strata runs")
    }

    /// `strata deploy spec flags...`, which must succeed; its output.
    #[track_caller]
    pub fn deploy(&self, spec: &Path, flags: &[&str]) -> Output {
        let output = self.cli(&[&["deploy", spec.to_str().unwrap()], flags].concat());
        assert!(
            output.status.success(),
            "deploy failed: {}\n{}",
            stderr(&output),
            self.log()
        );
        output
    }

    /// `strata deploy spec flags...`, which must fail with exit code `code`; its stderr.
    #[track_caller]
    pub fn deploy_fails(&self, spec: &Path, flags: &[&str], code: i32) -> String {
        let output = self.cli(&[&["deploy", spec.to_str().unwrap()], flags].concat());
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{err}\n{}", self.log());
        err
    }

    /// Whether the ingress serves `host`'s `/` (200) within 10 s.
    pub async fn serves(&self, host: &str) -> bool {
        serves(&self.client(&[host]), &self.url(host, "/")).await
    }

    /// `strata delete service`, which must succeed.
    #[track_caller]
    pub fn delete(&self, service: &str) {
        let output = self.cli(&["delete", service]);
        assert!(output.status.success(), "{}", stderr(&output));
    }

    /// `strata events args...` until it prints `needle` or `limit` passes; what it printed
    /// last.
    pub async fn events_until(&self, args: &[&str], needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let events = stdout(&self.cli(&[&["events"], args].concat()));
            if events.contains(needle) || Instant::now() >= deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn status(&self, service: &str) -> ServiceStatus {
        let output = self.cli(&["status", service, "--json"]);
        assert!(
            output.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut list: Vec<ServiceStatus> = serde_json::from_slice(&output.stdout).unwrap();
        list.remove(0)
    }

    /// An HTTP client that sends `*.localhost` to this ingress.
    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0);
        for host in hosts {
            builder = builder.resolve(host, self.ingress);
        }
        builder.build().unwrap()
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.ingress.port())
    }

    /// kill -9 of the `strata dev` process alone (its instances survive).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Waits until `check` holds, polling; panics with `what` and the dev log after `limit`.
    pub async fn eventually<F: FnMut() -> bool>(&self, limit: Duration, what: &str, mut check: F) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "timed out after {limit:?} waiting for: {what}\n--- strata dev log ---\n{}",
            self.log()
        );
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Orderly stop: strata dev stops its instances on SIGTERM.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_instances(&self.data_dir);
    }
}

/// The pids of `status`'s instances that report one.
pub fn instance_pids(status: &ServiceStatus) -> Vec<u32> {
    status
        .instances
        .iter()
        .filter_map(|v| v.status.as_ref()?.pid)
        .collect()
}

/// Whether every instance of `status` is of `release`, or asked to stop (a rollout's end).
pub fn rolled_out_to(status: &ServiceStatus, release: u64) -> bool {
    status
        .instances
        .iter()
        .all(|v| v.instance.release == release || v.instance.desired == DesiredState::Stopped)
}

/// Kills every instance process recorded in a data dir (the safety net of every test).
pub fn kill_instances(data_dir: &Path) {
    for pid in recorded_pids(data_dir) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // A container's or sandboxed exec instance's processes live on in their own session
    // when their shim is killed: every process of the instance's cgroup goes too.
    let Ok(entries) = std::fs::read_dir(data_dir.join("agent/instances")) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let id = entry.file_name();
        for controller in ["pids", "memory", "cpu", "unified"] {
            let mut dirs = vec![Path::new("/sys/fs/cgroup")
                .join(controller)
                .join("strata")
                .join(&id)];
            while let Some(dir) = dirs.pop() {
                let Ok(children) = std::fs::read_dir(&dir) else {
                    continue;
                };
                dirs.extend(
                    children
                        .filter_map(Result::ok)
                        .filter(|c| c.path().is_dir())
                        .map(|c| c.path()),
                );
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// Pids of the instances an agent recorded as running.
pub fn recorded_pids(data_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("agent/instances")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("record.json")).ok())
        .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .filter_map(|v| {
            // An exec instance's own pid; a container's (or sandboxed one's) shim's.
            v["process"]["pid"]
                .as_u64()
                .or_else(|| v["process"]["exec"]["pid"].as_u64())
        })
        .map(|pid| pid as u32)
        .collect()
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    strata_testkit::free_port()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            !after.starts_with('Z')
        })
        .unwrap_or(false)
}

/// Sends `request` (panics if it cannot be sent).
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap()
}

/// Sends `request` and reads the answer's body as text.
pub async fn text_of(request: reqwest::RequestBuilder) -> String {
    send(request).await.text().await.unwrap()
}

/// Sends `request` and reads the answer's body as JSON.
pub async fn json_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    send(request).await.json().await.unwrap()
}

/// Whether `url` answers 200 within 10 s (not answering counts as not yet).
async fn serves(client: &reqwest::Client, url: &str) -> bool {
    for _ in 0..100 {
        if let Ok(response) = client.get(url).send().await {
            if response.status() == 200 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What a request loop saw: the requests that failed (status and body, or the error), how
/// many were answered 200, and how many of those bodies held its marker.
pub struct LoadSeen {
    pub failures: Vec<String>,
    pub ok: u64,
    pub marked: u64,
}

/// GETs `url` every 5 ms (at most 20,000 times) until `stop` is set; what it saw.
pub fn request_loop(
    client: reqwest::Client,
    url: String,
    marker: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<LoadSeen> {
    tokio::spawn(async move {
        let mut seen = LoadSeen {
            failures: Vec::new(),
            ok: 0,
            marked: 0,
        };
        for _ in 0..20_000 {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            match client.get(&url).send().await {
                Ok(response) if response.status() == 200 => {
                    let body = response.text().await.unwrap_or_default();
                    seen.ok += 1;
                    seen.marked += u64::from(body.contains(marker));
                }
                Ok(response) => seen.failures.push(format!(
                    "{} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                )),
                Err(error) => seen.failures.push(error.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    })
}
