//! [`WasmDriver`]: serves a `wasi:http/proxy` component over HTTP/1.1, a fresh instance per
//! request.
//!
//! `start` loads the component through the node's [`WasmHost`] (compiled once per digest, then
//! from the cache), pre-instantiates it, binds `HOST:PORT` and serves. Each request gets a new
//! `Store` and instance from the pooling allocator, runs under the service's limits, and is
//! thrown away afterwards: no state survives between requests and nothing runs while idle.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use strata_core::spec::DriverKind;
use strata_runtime::{
    Driver, DriverError, DriverSettings, Exit, InstanceHandle, StartSpec, WasmSettings,
};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::host::WasmHost;
use crate::log::InstanceLog;
use crate::outbound::{OutboundHooks, OutboundRouter};
use crate::state::{GuestState, MemoryLimiter};

/// The artifact's sha256 (hex, optionally `sha256:`-prefixed): the compile cache's key. Without
/// it the driver hashes the file.
pub const ENV_ARTIFACT_DIGEST: &str = "STRATA_ARTIFACT_DIGEST";

/// Environment entries that are the driver's plumbing, not the guest's configuration.
fn is_plumbing(key: &str) -> bool {
    matches!(key, "HOST" | "PORT" | ENV_ARTIFACT_DIGEST)
}

/// The limits one wasm service runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimits {
    /// Linear memory one instance may have (each of its memories).
    pub memory_bytes: u64,
    /// How long one request may run; past it the instance is discarded and the answer is 504.
    pub deadline: Duration,
    /// Instances that may run at once; requests over it wait (at most one deadline, then 503).
    pub max_concurrency: usize,
}

impl Default for ServiceLimits {
    /// 128 MiB, 30 s, 100 at once.
    fn default() -> Self {
        ServiceLimits {
            memory_bytes: 128 << 20,
            deadline: Duration::from_secs(30),
            max_concurrency: 100,
        }
    }
}

impl ServiceLimits {
    /// The limits of the spec's settings; absent ones keep their defaults. `host_memory` is
    /// the most the node allows per instance.
    pub fn from_settings(settings: &WasmSettings, host_memory: u64) -> Result<Self, String> {
        let mut limits = ServiceLimits::default();
        match settings.memory_bytes {
            Some(bytes) if bytes < 64 << 10 => {
                return Err(format!(
                    "resources.memory ({bytes} bytes) is below one WebAssembly page (64Ki)"
                ))
            }
            Some(bytes) if bytes > host_memory => {
                return Err(format!(
                    "resources.memory ({bytes} bytes) is more than this node allows per instance ({host_memory} bytes)"
                ))
            }
            Some(bytes) => limits.memory_bytes = bytes,
            None => limits.memory_bytes = limits.memory_bytes.min(host_memory),
        }
        if let Some(ms) = settings.request_timeout_ms {
            if !(1..=86_400_000).contains(&ms) {
                return Err(format!(
                    "[wasm] request_timeout ({ms} ms) is not between 1 ms and 24 h"
                ));
            }
            limits.deadline = Duration::from_millis(ms);
        }
        if let Some(n) = settings.max_concurrency {
            if n == 0 {
                return Err("[wasm] max_concurrency must be at least 1".into());
            }
            limits.max_concurrency = (n as usize).min(Semaphore::MAX_PERMITS);
        }
        Ok(limits)
    }
}

/// Gives each instance the router for its outbound calls (the agent knows the instance's
/// service and environment from `spec.env`: `STRATA_SERVICE`, `STRATA_ENV`).
pub trait OutboundRouters: Send + Sync + 'static {
    fn router_for(&self, spec: &StartSpec) -> Arc<dyn OutboundRouter>;
}

impl<F> OutboundRouters for F
where
    F: Fn(&StartSpec) -> Arc<dyn OutboundRouter> + Send + Sync + 'static,
{
    fn router_for(&self, spec: &StartSpec) -> Arc<dyn OutboundRouter> {
        self(spec)
    }
}

/// Runs wasm services: `wasi:http/proxy` components, one HTTP server per instance inside the
/// agent's process.
#[derive(Clone)]
pub struct WasmDriver {
    host: WasmHost,
    routers: Arc<dyn OutboundRouters>,
}

impl WasmDriver {
    /// A driver whose instances get their outbound routers from `routers`.
    pub fn new(host: WasmHost, routers: impl OutboundRouters) -> Self {
        WasmDriver {
            host,
            routers: Arc::new(routers),
        }
    }

    /// A driver whose instances all share one outbound router.
    pub fn with_router(host: WasmHost, router: Arc<dyn OutboundRouter>) -> Self {
        WasmDriver::new(host, move |_: &StartSpec| router.clone())
    }

    /// The node's wasm host (engine and compile cache).
    pub fn host(&self) -> &WasmHost {
        &self.host
    }
}

#[async_trait]
impl Driver for WasmDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Wasm
    }

    async fn start(&self, spec: &StartSpec) -> Result<Box<dyn InstanceHandle>, DriverError> {
        let fail = |kind: std::io::ErrorKind, message: String| DriverError::Spawn {
            instance: spec.instance_id.clone(),
            program: spec.program.display().to_string(),
            source: std::io::Error::new(kind, message),
        };
        let invalid = |message: String| fail(std::io::ErrorKind::InvalidInput, message);
        spec.refuse_secret_files("wasm").map_err(invalid)?;

        let settings = match &spec.settings {
            DriverSettings::Wasm(settings) => settings.clone(),
            _ => WasmSettings::default(),
        };
        let limits = ServiceLimits::from_settings(&settings, self.host.config().max_memory_bytes)
            .map_err(invalid)?;
        let limits = ServiceLimits {
            max_concurrency: limits
                .max_concurrency
                .min(self.host.config().max_instances as usize),
            ..limits
        };
        let port: u16 = spec
            .env
            .get("PORT")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| invalid("PORT is missing or not a port number".into()))?;
        let bind_host = spec
            .env
            .get("HOST")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());

        let log = InstanceLog::open(&spec.log_path).map_err(|source| DriverError::Log {
            instance: spec.instance_id.clone(),
            path: spec.log_path.display().to_string(),
            source,
        })?;

        let digest = match spec.env.get(ENV_ARTIFACT_DIGEST) {
            Some(digest) if !digest.trim().is_empty() => digest.trim().to_string(),
            _ => sha256_file(&spec.program)
                .await
                .map_err(|e| fail(e.kind(), format!("cannot read the component: {e}")))?,
        };
        let started = Instant::now();
        let bad_artifact = |error: crate::WasmArtifactError| {
            // Also in the instance log, where `strata logs` shows it.
            log.line(&format!("cannot start: {error}"));
            fail(std::io::ErrorKind::InvalidData, error.to_string())
        };
        let (component, source) = self
            .host
            .load_with_source(&digest, &spec.program)
            .await
            .map_err(bad_artifact)?;
        let pre = self.host.proxy_pre(&component).map_err(bad_artifact)?;
        let load_time = started.elapsed();

        let listener = TcpListener::bind((bind_host.as_str(), port))
            .await
            .map_err(|e| {
                fail(
                    e.kind(),
                    format!("cannot listen on {bind_host}:{port}: {e}"),
                )
            })?;
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| format!("{bind_host}:{port}"));

        let program_name = spec
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "component.wasm".into());
        let mut args = vec![program_name];
        args.extend(spec.args.iter().cloned());
        let env: Vec<(String, String)> = spec
            .env
            .iter()
            .filter(|(key, _)| !is_plumbing(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        log.line(&format!(
            "serving {} (component {}, {} in {:.1} ms) on http://{address}: memory {} bytes per instance, deadline {} ms, at most {} at once",
            spec.program.display(),
            short(&digest),
            match source {
                crate::LoadSource::Compiled => "compiled",
                crate::LoadSource::Cache => "precompiled, from the cache",
            },
            load_time.as_secs_f64() * 1000.0,
            limits.memory_bytes,
            limits.deadline.as_millis(),
            limits.max_concurrency,
        ));

        let service = Arc::new(Service {
            host: self.host.clone(),
            pre,
            limits,
            env,
            args,
            log,
            router: self.routers.router_for(spec),
            slots: Arc::new(Semaphore::new(limits.max_concurrency)),
            tasks: TaskTracker::new(),
            graceful: CancellationToken::new(),
            hard: CancellationToken::new(),
        });
        let (exit_tx, exit_rx) = watch::channel(None);
        service.tasks.spawn(accept_loop(listener, service.clone()));
        Ok(Box::new(WasmHandle {
            service,
            exit_tx: Arc::new(exit_tx),
            exit_rx,
            stopping: tokio::sync::Mutex::new(()),
        }))
    }

    async fn adopt(
        &self,
        _instance_id: &str,
        _record: &serde_json::Value,
    ) -> Result<Option<Box<dyn InstanceHandle>>, DriverError> {
        // A wasm server lives inside the agent's process: it ended with the previous agent.
        // Restarting it costs a cache load (no compilation).
        Ok(None)
    }
}

fn short(digest: &str) -> &str {
    let bare = digest.strip_prefix("sha256:").unwrap_or(digest);
    bare.get(..12).unwrap_or(bare)
}

async fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// One running wasm service instance: its pre-instantiated component and its limits.
struct Service {
    host: WasmHost,
    pre: ProxyPre<GuestState>,
    limits: ServiceLimits,
    /// The guest's whole environment: the config entries of the spec, nothing of the agent's.
    env: Vec<(String, String)>,
    args: Vec<String>,
    log: InstanceLog,
    router: Arc<dyn OutboundRouter>,
    /// One permit per running instance.
    slots: Arc<Semaphore>,
    /// The accept loop, connections and guest runs: `stop` waits for them.
    tasks: TaskTracker,
    /// Stop accepting; let in-flight requests finish.
    graceful: CancellationToken,
    /// Abort whatever still runs.
    hard: CancellationToken,
}

impl Service {
    /// A fresh store for one request: the granted capabilities and the limits.
    fn new_store(&self, deadline: Instant) -> Store<GuestState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .args(&self.args)
            .stdout(self.log.output())
            .stderr(self.log.output())
            // No sockets, no name lookups (wasi:sockets stays linked but every use fails);
            // no preopened directories; stdin is empty.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = GuestState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                router: self.router.clone(),
                client: self.host.inner().client.clone(),
                log: self.log.clone(),
            },
            limits: MemoryLimiter {
                memory_bytes: usize::try_from(self.limits.memory_bytes).unwrap_or(usize::MAX),
                denied: None,
            },
            deadline,
            deadline_hit: false,
        };
        let mut store = Store::new(&self.host.inner().engine, state);
        store.limiter(|state| &mut state.limits);
        // On every epoch tick: past the deadline, interrupt (a trap); otherwise let other
        // tasks run for a moment, so a busy guest never hogs a runtime thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            if Instant::now() >= state.deadline {
                state.deadline_hit = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

async fn accept_loop(listener: TcpListener, service: Arc<Service>) {
    loop {
        let accepted = tokio::select! {
            _ = service.graceful.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let service_for_conn = service.clone();
                service
                    .tasks
                    .spawn(serve_connection(stream, service_for_conn));
            }
            Err(error) => {
                // Out of file descriptors and the like: wait a little and go on.
                tracing::warn!(%error, "wasm service: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, service: Arc<Service>) {
    let graceful = service.graceful.clone();
    let hard = service.hard.clone();
    let handler = service.clone();
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        .serve_connection(
            TokioIo::new(stream),
            service_fn(move |request| handle_request(handler.clone(), request)),
        );
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = graceful.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = hard.cancelled() => {}
            }
        }
    }
}

/// How a guest's run for one request ended.
enum Outcome {
    /// The handler returned (whether or not it had sent a response).
    Returned,
    /// The request's deadline passed.
    Deadline,
    /// A memory grew past the service's limit and the guest then failed.
    Memory { limit: u64, asked: usize },
    /// No instance could be made (e.g. the node's pool is full).
    Instantiate(String),
    /// The guest trapped.
    Trap(String),
    /// The service was stopped while the request ran.
    Aborted,
}

fn plain(status: u16, text: impl Into<String>) -> hyper::Response<HyperOutgoingBody> {
    let body = http_body_util::Full::new(Bytes::from(text.into()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle_request(
    service: Arc<Service>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>, Infallible> {
    let what = format!("{} {}", request.method(), request.uri().path());
    // Over the concurrency cap, wait for a slot: at most one deadline.
    let permit = match tokio::time::timeout(
        service.limits.deadline,
        service.slots.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        _ => {
            return Ok(plain(
                503,
                "busy: every instance slot of this service stayed in use for a whole deadline\n",
            ));
        }
    };
    let deadline = Instant::now() + service.limits.deadline;
    let mut store = service.new_store(deadline);
    let (sender, receiver) = oneshot::channel();
    let resources = {
        let mut http = store.data_mut().http();
        http.new_incoming_request(Scheme::Http, request)
            .and_then(|req| Ok((req, http.new_response_outparam(sender)?)))
    };
    let (guest_request, outparam) = match resources {
        Ok(resources) => resources,
        Err(error) => return Ok(plain(400, format!("bad request: {error:#}\n"))),
    };

    let runner = service.clone();
    let run = service.tasks.spawn(async move {
        let _permit = permit;
        let outcome = run_guest(&runner, &mut store, guest_request, outparam, deadline).await;
        report(&runner, &what, &outcome);
        outcome
    });

    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Ok(plain(
            500,
            format!("the component answered with an error: {code:?}\n"),
        )),
        // The guest ended without sending a response: its outcome says why.
        Err(_) => Ok(match run.await {
            Ok(Outcome::Returned) => plain(500, "the component returned without a response\n"),
            Ok(Outcome::Deadline) => plain(
                504,
                format!(
                    "the request exceeded its deadline of {} ms\n",
                    service.limits.deadline.as_millis()
                ),
            ),
            Ok(Outcome::Memory { limit, asked }) => plain(
                500,
                format!(
                    "the component ran out of memory: it asked for {asked} bytes, the limit is {limit}\n"
                ),
            ),
            Ok(Outcome::Instantiate(reason)) => {
                plain(503, format!("no instance could be started: {reason}\n"))
            }
            Ok(Outcome::Trap(reason)) => plain(500, format!("the component trapped: {reason}\n")),
            Ok(Outcome::Aborted) | Err(_) => plain(503, "the service is stopping\n"),
        }),
    }
}

async fn run_guest(
    service: &Service,
    store: &mut Store<GuestState>,
    request: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
    outparam: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
    deadline: Instant,
) -> Outcome {
    enum Failure {
        Instantiate(wasmtime::Error),
        Call(wasmtime::Error),
    }
    let call = async {
        let proxy = service
            .pre
            .instantiate_async(&mut *store)
            .await
            .map_err(Failure::Instantiate)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, request, outparam)
            .await
            .map_err(Failure::Call)
    };
    // The epoch callback interrupts a guest that computes past its deadline; this timeout
    // covers one that waits (on an outbound call, say) past it.
    let result = tokio::select! {
        result = tokio::time::timeout_at(deadline.into(), call) => result.ok(),
        _ = service.hard.cancelled() => return Outcome::Aborted,
    };
    let state = store.data();
    let memory = |state: &GuestState| {
        state.limits.denied.map(|asked| Outcome::Memory {
            limit: service.limits.memory_bytes,
            asked,
        })
    };
    match result {
        None => Outcome::Deadline,
        Some(Ok(())) => Outcome::Returned,
        Some(Err(_)) if state.deadline_hit => Outcome::Deadline,
        Some(Err(Failure::Instantiate(error))) => {
            memory(state).unwrap_or_else(|| Outcome::Instantiate(format!("{error:#}")))
        }
        Some(Err(Failure::Call(error))) => memory(state).unwrap_or_else(|| {
            let reason = match error.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => trap.to_string(),
                None => format!("{error:#}"),
            };
            // The full error, with the wasm backtrace, goes to the instance log.
            service
                .log
                .line(&format!("the component trapped: {error:?}"));
            Outcome::Trap(reason)
        }),
    }
}

/// Writes what went wrong with a request to the instance log.
fn report(service: &Service, what: &str, outcome: &Outcome) {
    let line = match outcome {
        Outcome::Returned => return,
        Outcome::Deadline => format!(
            "{what}: exceeded the deadline of {} ms; the instance was discarded (504)",
            service.limits.deadline.as_millis()
        ),
        Outcome::Memory { limit, asked } => format!(
            "{what}: memory limit reached: the instance asked for {asked} bytes, the limit is {limit} (the service's resources.memory); the instance was discarded (500)"
        ),
        Outcome::Instantiate(reason) => format!("{what}: no instance could be started: {reason} (503)"),
        Outcome::Trap(reason) => format!("{what}: trap: {reason}; the instance was discarded (500)"),
        Outcome::Aborted => format!("{what}: aborted, the service is stopping"),
    };
    service.log.line(&line);
}

/// The handle of a running wasm service instance.
struct WasmHandle {
    service: Arc<Service>,
    exit_tx: Arc<watch::Sender<Option<Exit>>>,
    exit_rx: watch::Receiver<Option<Exit>>,
    stopping: tokio::sync::Mutex<()>,
}

impl Drop for WasmHandle {
    fn drop(&mut self) {
        // Nobody can stop the server any more: stop it now.
        self.service.graceful.cancel();
        self.service.hard.cancel();
    }
}

#[async_trait]
impl InstanceHandle for WasmHandle {
    fn pid(&self) -> Option<u32> {
        None
    }

    async fn wait(&self) -> Exit {
        let mut exit = self.exit_rx.clone();
        let found = match exit.wait_for(|exit| exit.is_some()).await {
            Ok(exit) => exit.clone(),
            Err(_) => None,
        };
        found.unwrap_or(Exit {
            code: None,
            signal: None,
            reason: None,
        })
    }

    async fn stop(&self, grace: Duration) -> Exit {
        let _one_at_a_time = self.stopping.lock().await;
        if let Some(exit) = self.exit_rx.borrow().clone() {
            return exit;
        }
        let service = &self.service;
        service.graceful.cancel();
        service.tasks.close();
        let exit = match tokio::time::timeout(grace, service.tasks.wait()).await {
            Ok(()) => {
                service.log.line("stopped");
                Exit {
                    code: Some(0),
                    signal: None,
                    reason: None,
                }
            }
            Err(_) => {
                service.hard.cancel();
                service.tasks.wait().await;
                service.log.line(&format!(
                    "stopped: requests still running after the {} ms grace period were aborted",
                    grace.as_millis()
                ));
                // As the exec driver reports a process it had to kill.
                Exit {
                    code: None,
                    signal: Some(9),
                    reason: None,
                }
            }
        };
        let _ = self.exit_tx.send(Some(exit.clone()));
        exit
    }

    fn record(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_the_spec_settings() {
        let settings = WasmSettings {
            memory_bytes: Some(32 << 20),
            request_timeout_ms: Some(250),
            max_concurrency: Some(3),
        };
        let limits = ServiceLimits::from_settings(&settings, 1 << 30).unwrap();
        assert_eq!(
            limits,
            ServiceLimits {
                memory_bytes: 32 << 20,
                deadline: Duration::from_millis(250),
                max_concurrency: 3
            }
        );
        let too_big = WasmSettings {
            memory_bytes: Some(2 << 30),
            ..Default::default()
        };
        let error = ServiceLimits::from_settings(&too_big, 1 << 30).unwrap_err();
        assert!(error.contains("more than this node allows"), "{error}");
        let zero = WasmSettings {
            request_timeout_ms: Some(0),
            ..Default::default()
        };
        assert!(ServiceLimits::from_settings(&zero, 1 << 30).is_err());
        assert_eq!(
            ServiceLimits::from_settings(&WasmSettings::default(), 1 << 30).unwrap(),
            ServiceLimits::default()
        );
    }

    #[test]
    fn plumbing_is_not_configuration() {
        for key in ["HOST", "PORT", ENV_ARTIFACT_DIGEST] {
            assert!(is_plumbing(key), "{key}");
        }
        // A config entry named like a limit is the guest's, and sets no limit.
        for key in [
            "GREETING",
            "STRATA_SERVICE",
            "STRATA_ENV",
            "DATABASE_URL",
            "STRATA_WASM_MEMORY_BYTES",
        ] {
            assert!(!is_plumbing(key), "{key}");
        }
    }
}
