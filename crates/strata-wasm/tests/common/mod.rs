//! Test helpers: the hello-wasm guest (built on demand), free ports, an HTTP client, and a
//! router that records what it refused.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use strata_runtime::{DriverSettings, StartSpec, WasmSettings};
use strata_wasm::{OutboundRouter, WasmHost, WasmHostConfig};

/// How long building the guest may take (a first build also installs the target).
const BUILD_LIMIT: Duration = Duration::from_secs(600);

pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-wasm")
}

/// The newest modification time of the guest's sources.
fn sources_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.join("src"), dir.join("Cargo.toml")];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(modified) = meta.modified() {
            newest = newest.max(modified);
        }
    }
    newest
}

/// Builds examples/hello-wasm with its build.sh when its outputs are missing or older than its
/// sources; once per test process. Panics with the reason when it cannot.
fn build_guests() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = example_dir();
        let build = dir.join("build");
        let outputs = [build.join("hello.wasm"), build.join("hello-cli.wasm")];
        let sources = sources_mtime(&dir);
        let fresh = outputs.iter().all(|output| {
            std::fs::metadata(output)
                .and_then(|m| m.modified())
                .is_ok_and(|built| built >= sources)
        });
        if !fresh {
            let log =
                std::env::temp_dir().join(format!("hello-wasm-build-{}.log", std::process::id()));
            let log_file = std::fs::File::create(&log).expect("create the build log");
            let mut child = Command::new("bash")
                .arg(dir.join("build.sh"))
                .env("CARGO_BUILD_QUIET", "1")
                // The guest has its own workspace and target dir; do not inherit ours.
                .env_remove("CARGO_TARGET_DIR")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log"))
                .stderr(log_file)
                .spawn()
                .expect("run examples/hello-wasm/build.sh");
            let started = Instant::now();
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait for build.sh") {
                    break status;
                }
                if started.elapsed() > BUILD_LIMIT {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "building examples/hello-wasm took more than {BUILD_LIMIT:?}; see {}",
                        log.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                status.success(),
                "examples/hello-wasm/build.sh failed ({status}). It needs the wasm32-wasip2 \
                 target (`rustup target add wasm32-wasip2`) and the `wasip2` crate from \
                 crates.io. Its output:\n{output}"
            );
        }
        build
    })
}

/// The hello-wasm proxy component.
pub fn hello_wasm() -> PathBuf {
    build_guests().join("hello.wasm")
}

/// A `wasi:cli/command` component (another world).
pub fn hello_cli_wasm() -> PathBuf {
    build_guests().join("hello-cli.wasm")
}

/// A compile cache shared by the tests of this process, so the guest compiles about once.
pub fn shared_cache_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

/// A small host (tests create several at once; each reserves address space for its pool).
pub fn host_at(cache_dir: &Path) -> WasmHost {
    let mut config = WasmHostConfig::new(cache_dir);
    config.max_instances = 32;
    config.max_memory_bytes = 256 << 20;
    WasmHost::new(config).expect("wasm host")
}

pub fn host() -> WasmHost {
    host_at(shared_cache_dir())
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn spec(
    dir: &Path,
    name: &str,
    program: &Path,
    port: u16,
    config: &[(&str, &str)],
) -> StartSpec {
    // Limits are written beside the config for brevity (`LIMIT_*` keys); they go into the
    // start's typed settings, as the agent puts the spec's there, never into the environment.
    let mut settings = WasmSettings::default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in config {
        let number = || value.parse::<u64>().expect("a limit is a number");
        match *key {
            LIMIT_MEMORY_BYTES => settings.memory_bytes = Some(number()),
            LIMIT_DEADLINE_MS => settings.request_timeout_ms = Some(number()),
            LIMIT_MAX_CONCURRENCY => settings.max_concurrency = Some(number() as u32),
            _ => {
                env.insert(key.to_string(), value.to_string());
            }
        }
    }
    env.insert("PORT".into(), port.to_string());
    env.insert("HOST".into(), "127.0.0.1".into());
    env.insert("STRATA_SERVICE".into(), name.into());
    StartSpec {
        instance_id: format!("{name}-1"),
        secret_files: Vec::new(),
        name: name.to_string(),
        program: program.to_path_buf(),
        args: Vec::new(),
        env,
        log_path: dir.join(format!("{name}.log")),
        work_dir: dir.join(format!("{name}-work")),
        settings: DriverSettings::Wasm(settings),
    }
}

/// A limit given to [`spec`] beside the config: linear memory, in bytes.
pub const LIMIT_MEMORY_BYTES: &str = "LIMIT_MEMORY_BYTES";
/// A limit given to [`spec`] beside the config: a request's deadline, in milliseconds.
pub const LIMIT_DEADLINE_MS: &str = "LIMIT_DEADLINE_MS";
/// A limit given to [`spec`] beside the config: instances at once.
pub const LIMIT_MAX_CONCURRENCY: &str = "LIMIT_MAX_CONCURRENCY";

pub struct Reply {
    pub status: u16,
    pub body: String,
}

pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `GET http://127.0.0.1:PORT{path}`, bounded.
pub async fn get(port: u16, path: &str) -> Reply {
    get_with(&client(), port, path).await
}

pub async fn get_with(
    client: &Client<HttpConnector, Empty<Bytes>>,
    port: u16,
    path: &str,
) -> Reply {
    let uri: http::Uri = format!("http://127.0.0.1:{port}{path}").parse().unwrap();
    let exchange = async {
        let response = client.get(uri).await.expect("request");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} took more than 60 s"))
}

/// Waits until the instance's log contains `needle` (lines are written as things happen).
pub async fn log_contains(path: &Path, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the log {} never said {needle:?}; it has:\n{log}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A router with a fixed table that records what it refused.
#[derive(Default)]
pub struct TestRouter {
    pub services: Mutex<BTreeMap<String, SocketAddr>>,
    pub refused: Mutex<Vec<String>>,
}

impl TestRouter {
    pub fn new(services: &[(&str, SocketAddr)]) -> Arc<TestRouter> {
        Arc::new(TestRouter {
            services: Mutex::new(
                services
                    .iter()
                    .map(|(name, addr)| (name.to_string(), *addr))
                    .collect(),
            ),
            refused: Mutex::new(Vec::new()),
        })
    }
}

impl OutboundRouter for TestRouter {
    fn resolve(&self, service: &str) -> Option<SocketAddr> {
        self.services.lock().unwrap().get(service).copied()
    }
    fn refused(&self, destination: &str) {
        self.refused.lock().unwrap().push(destination.to_string());
    }
}
