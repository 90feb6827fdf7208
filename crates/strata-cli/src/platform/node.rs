//! A node as `strata dev` and `strata agent` start it: its trust in the control plane (the
//! CA checked against the join token, its own credential), the agent with its drivers, the
//! mesh proxy, the node's certificate for mutual TLS between nodes, traffic reports, and the
//! ingress.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use strata_agent::client::ControlClient;
use strata_agent::events::EventReporter;
use strata_agent::{Agent, AgentConfig, MeshAccess};
use strata_core::api::NodeEvent;
use strata_mesh::identity::NodeIdentity;
use strata_mesh::ingress::{proxy_threads, serve_on_threads};
use strata_mesh::{
    CallerKeys, Denial, Ingress, IngressConfig, MeshMetrics, MeshProxy, PeerListener, RouteSource,
    RoutingTable,
};
use strata_runtime::{Driver, StartSpec};
use strata_wasm::{OutboundRouter, WasmDriver, WasmHost, WasmHostConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::trust::{control_client, node_api_tls, node_credential, node_identity};
use super::{ControlAccess, NodePem};
use crate::Failure;

/// The node's Prometheus registry: the proxy's request metrics, served at the agent's
/// `/metrics`.
#[derive(Clone)]
pub struct NodeMetrics {
    registry: Arc<prometheus_client::registry::Registry>,
    mesh: MeshMetrics,
    tcp: strata_mesh::tcp::metrics::TcpMetrics,
}

impl NodeMetrics {
    pub fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let mesh = MeshMetrics::register(&mut registry);
        let tcp = strata_mesh::tcp::metrics::TcpMetrics::register(&mut registry);
        Self {
            registry: Arc::new(registry),
            mesh,
            tcp,
        }
    }

    /// `GET /metrics`: OpenMetrics text.
    fn router(&self) -> axum::Router {
        let registry = self.registry.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        strata_mesh::metrics::encode(&registry),
                    )
                }
            }),
        )
    }
}

/// How a node's ingress reaches instances: its own on the host they listen on, other nodes'
/// through their inter-node port with the node's certificate.
pub struct Peering<'a> {
    pub node: &'a str,
    pub identity: Arc<NodeIdentity>,
    pub instances_listen_on: &'a str,
}

/// A node agent as [`start_agent`] started it.
pub struct StartedAgent {
    pub agent: Arc<Agent>,
    pub task: JoinHandle<Result<(), strata_agent::AgentError>>,
    /// The node's certificate, when it takes calls from other nodes (`mesh_addr`).
    pub identity: Option<Arc<NodeIdentity>>,
    /// How the node's parts reach the control plane (its ingress too).
    pub access: ControlAccess,
}

/// The label of a node that runs exec instances sandboxed (`[placement] labels = {
/// "sandbox.strata/exec" = "on" }` keeps a service on such nodes).
pub const EXEC_SANDBOX_LABEL: &str = "sandbox.strata/exec";

/// Whether a node runs its exec instances sandboxed (`--exec-sandbox`): each as its own user,
/// in its own cgroup and namespaces, the host read-only (`strata_container::sandbox`). It needs
/// what containers need (root, cgroups, nftables); a node without it runs them unsandboxed
/// and says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecSandbox {
    On,
    Off,
}

/// Starts a node agent with the `exec`, `wasm` and (when the node can) `container` drivers;
/// wasm guests' outbound calls resolve service names with `table` (the node's routing table).
/// The agent's API serves `metrics` at `/metrics`. With `peer_listener` (at the config's
/// `mesh_addr`), the node gets its certificate and takes calls from other nodes' proxies there.
///
/// With `takeover`, the node's listeners come from the agent process before this one, which
/// is asked to let go of the node right before this one registers ([`super::handover`]).
pub async fn start_agent(
    mut config: AgentConfig,
    table: Arc<RoutingTable>,
    metrics: &NodeMetrics,
    peer_listener: Option<TcpListener>,
    mut takeover: Option<&mut super::handover::Takeover>,
    exec_sandbox: ExecSandbox,
) -> Result<StartedAgent, Failure> {
    // The join token only gets the node its credential; from here on the node presents that,
    // and, where it has a certificate (a cluster node), its certificate instead.
    let credential = node_credential(&config).await?;
    config.token = Some(credential.clone());
    let control = control_client(&config, config.token.as_deref());
    config.client = Some(control.clone());
    let (certificates_tx, certificates) = tokio::sync::watch::channel(None);
    // What signs the node's forensic archives: its certificate where it presents one, else
    // one of its own (below).
    let mut signing = certificates.clone();
    let events = EventReporter::start(control.clone(), config.name.to_string());
    let mesh = start_mesh_proxy(
        &config.data_dir,
        table.clone(),
        metrics,
        events.clone(),
        control.clone(),
        &mut takeover,
    )
    .await?;
    let identity = match peer_listener {
        Some(listener) => {
            let identity = node_identity(&config, control.clone(), certificates_tx, true).await?;
            mesh.forwarder
                .enable_peering(&config.name, identity.clone());
            mesh.forwarder.instances_listen_on(&config.bind_host);
            let peers = PeerListener::new(
                &config.name,
                mesh.forwarder.clone(),
                table.clone(),
                identity.clone(),
                denial_reporter(events.clone()),
            );
            serve_on_threads("mesh-peers", listener, proxy_threads(), move |l| {
                peers.clone().serve(l)
            })?;
            Some(identity)
        }
        None => {
            // No inter-node port (`strata dev`): a certificate all the same, to sign what
            // the node archives (a quarantine), presented to no one (and kept apart from
            // `certificates`, which the node's clients present).
            let (signing_tx, signing_rx) = tokio::sync::watch::channel(None);
            signing = signing_rx;
            if let Err(Failure::Failed(error) | Failure::BadInput(error)) =
                node_identity(&config, control.clone(), signing_tx, false).await
            {
                tracing::warn!(error = %format!("{error:#}"), "no node certificate: this node cannot sign forensic archives");
            }
            None
        }
    };
    let (tcp_table, tcp_events) = (table.clone(), events.clone());
    let wasm = wasm_driver(&config.data_dir, table, events, mesh.clone())?;
    let mut drivers = vec![wasm];
    let allowed = strata_core::capability::allowed_by(&config.labels);
    let host_root = strata_core::capability::allows_host_root(&config.labels);
    if let Some(container) = container_driver(&config.data_dir, allowed, host_root) {
        // Containers reach the mesh proxy at the bridge's gateway, the one way out of their
        // namespace; their HTTP_PROXY is pointed there.
        let at = std::net::SocketAddr::from((container.gateway(), mesh.address.port()));
        let bound = super::handover::listener(&mut takeover, "mesh-gateway", async {
            TcpListener::bind(at).await.map_err(Failure::from)
        })
        .await;
        match bound {
            Ok(listener) => {
                let proxy = mesh.proxy.clone();
                serve_on_threads("mesh-gateway", listener, proxy_threads(), move |l| {
                    proxy.clone().serve(l)
                })?;
                if let Err(error) = container.allow_mesh_proxy(at.port()) {
                    tracing::warn!(%error, "containers cannot reach the mesh proxy");
                }
            }
            Err(Failure::Failed(error) | Failure::BadInput(error)) => {
                tracing::warn!(%error, %at, "containers cannot reach the mesh proxy")
            }
        }
        let tcp = super::tcp_mesh::start(
            &config.data_dir,
            &container,
            mesh.forwarder.clone(),
            tcp_table,
            metrics.tcp.clone(),
            denial_reporter(tcp_events),
            &mut takeover,
        )
        .await;
        if let Err(Failure::Failed(error) | Failure::BadInput(error)) = tcp {
            tracing::warn!(error = %format!("{error:#}"), "instances cannot call TCP services by name");
        }
        if exec_sandbox == ExecSandbox::On {
            let sandbox = strata_container::SandboxConfig::new(&config.data_dir);
            tracing::info!(
                uids = ?sandbox.uids,
                "exec instances run sandboxed: each as its own user, in its own cgroup and namespaces, the host read-only"
            );
            drivers.push(Arc::new(strata_container::SandboxedExec::new(
                container.clone(),
                sandbox,
            )));
            // Said in the node's labels, so a service can ask for sandboxed nodes only.
            config
                .labels
                .insert(EXEC_SANDBOX_LABEL.to_string(), "on".to_string());
        } else {
            tracing::warn!("exec instances run unsandboxed (--exec-sandbox off): as the agent's user, seeing the node as it does");
        }
        drivers.push(container);
    } else if exec_sandbox == ExecSandbox::On {
        tracing::warn!("exec instances run unsandboxed: this node cannot run containers (see above), which the sandbox is made of");
    }
    // What signs the node's forensic archive if it is decommissioned: its certificate and
    // key as they are then (renewed in between).
    let current = signing;
    config.node_key = Some(strata_agent::decommission::NodeKey::new(move || {
        current.borrow().clone()
    }));
    config.mesh = Some(MeshAccess::new(move |env, service| {
        mesh.keys.proxy_url(mesh.address, env, service)
    }));
    let access = ControlAccess {
        url: config.control_url.clone(),
        credential,
        ca: config.control_ca.clone(),
        client: control.clone(),
        certificates,
    };
    let node = config.name.clone();
    // A cluster node serves its own API over TLS with its certificate; the control plane
    // proves itself there with its client certificate.
    let api_tls = match &identity {
        Some(_) => Some(node_api_tls(&config.data_dir, access.certificates.clone())?),
        None => None,
    };
    config.api_https = api_tls.is_some();
    if let Some(inherited) = takeover.as_deref_mut().and_then(|t| t.take("api")) {
        config.listener = strata_agent::InheritedListener::new(inherited);
    }
    let (agent, listener) = Agent::start_with_drivers(config, drivers).await?;
    super::handover::offer("api", &listener)?;
    // The agent before this one lets go of the node now: this one registers next.
    if let Some(takeover) = takeover {
        takeover.quiesce()?;
    }
    let task = match api_tls {
        Some(current) => {
            let from_control_plane: strata_agent::logs::FromControlPlane =
                Arc::new(|request: &axum::extract::Request| {
                    matches!(
                        request.extensions().get::<strata_mesh::identity::Peer>(),
                        Some(strata_mesh::identity::Peer::Server(_))
                    )
                });
            tokio::spawn(agent.clone().run_serving(
                metrics.router(),
                Some(from_control_plane),
                move |router| {
                    tokio::spawn(strata_mesh::serve::serve_tls_current(
                        listener, current, router,
                    ))
                },
            ))
        }
        None => tokio::spawn(agent.clone().run_with(listener, metrics.router())),
    };
    tokio::spawn(report_traffic(
        control,
        node.to_string(),
        metrics.mesh.clone(),
    ));
    Ok(StartedAgent {
        agent,
        task,
        identity,
        access,
    })
}

/// Asks the control plane to start an instance of a service at zero that a request waits for.
fn waker(control: ControlClient) -> strata_mesh::ingress::Waker {
    Arc::new(move |env: &str, service: &str| {
        let (control, env, service) = (control.clone(), env.to_string(), service.to_string());
        tokio::spawn(async move {
            if let Err(error) = control.wake(&env, &service).await {
                tracing::warn!(%error, env, service, "could not wake the service");
            }
        });
    })
}

/// Refused calls become `policy.denied` events (and a warning in the log).
fn denial_reporter(events: EventReporter) -> impl Fn(Denial) + Send + Sync + 'static {
    move |denial: Denial| {
        tracing::warn!(
            env = %denial.env,
            caller = %denial.caller,
            callee = %denial.callee,
            rule = %denial.rule,
            "call refused by policy"
        );
        events.report(NodeEvent {
            kind: strata_core::EventKind::PolicyDenied,
            // What the proxy saw; a name that is not valid is left out of the event.
            env: strata_core::EnvName::new(denial.env.clone()).ok(),
            service: strata_core::ServiceName::new(denial.callee.clone()).ok(),
            instance: None,
            message: format!(
                "{} called {}: refused ({})",
                denial.caller, denial.callee, denial.rule
            ),
        });
    }
}

/// Where the node's mesh proxy listens, and the key of its callers' credentials.
#[derive(Clone)]
struct MeshEndpoint {
    address: std::net::SocketAddr,
    keys: CallerKeys,
    proxy: Arc<MeshProxy>,
    /// What the proxy forwards through (its balancer, limits and peering).
    forwarder: Arc<Ingress>,
}

/// Starts the node's mesh proxy on loopback. Its port and key are kept in the agent's data
/// directory, so instances re-adopted after an agent restart still reach it with the
/// `HTTP_PROXY` they were started with. Refused calls become `policy.denied` events.
async fn start_mesh_proxy(
    agent_dir: &Path,
    table: Arc<RoutingTable>,
    metrics: &NodeMetrics,
    events: EventReporter,
    control: ControlClient,
    takeover: &mut Option<&mut super::handover::Takeover>,
) -> Result<MeshEndpoint, Failure> {
    let keys = CallerKeys::load_or_create(&agent_dir.join("mesh.key"))
        .with_context(|| format!("cannot keep the mesh key in {}", agent_dir.display()))?;
    let port_file = agent_dir.join("mesh.port");
    let kept_port = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok());
    let listener = super::handover::listener(takeover, "mesh-proxy", async {
        Ok(match kept_port {
            Some(port) => match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, port, "the mesh proxy's port is taken; instances started before must be restarted to reach it");
                    TcpListener::bind(("127.0.0.1", 0)).await?
                }
            },
            None => TcpListener::bind(("127.0.0.1", 0)).await?,
        })
    })
    .await?;
    let address = listener.local_addr()?;
    std::fs::write(&port_file, address.port().to_string())
        .with_context(|| format!("cannot write {}", port_file.display()))?;
    let forwarder = Ingress::with_metrics(
        table.clone(),
        IngressConfig::default(),
        Some(metrics.mesh.clone()),
    );
    forwarder.set_waker(waker(control.clone()));
    let proxy = MeshProxy::new(
        forwarder.clone(),
        table,
        keys.clone(),
        denial_reporter(events),
    );
    let serving = proxy.clone();
    serve_on_threads("mesh-proxy", listener, proxy_threads(), move |l| {
        serving.clone().serve(l)
    })?;
    tracing::info!(%address, "mesh proxy listening");
    Ok(MeshEndpoint {
        address,
        keys,
        proxy,
        forwarder,
    })
}

/// Every second, sends the control plane what the node's proxy saw of each service (only
/// when it saw something); sooner, after a quarter of a second, when a service's requests in
/// flight have at least doubled since the last report (and are at least 4): a load step
/// reaches the autoscaler in ~250 ms while reports stay at one per second otherwise. A lost
/// report is lost traffic data, nothing more.
async fn report_traffic(client: ControlClient, node: String, mesh: MeshMetrics) {
    const WINDOW: Duration = Duration::from_secs(1);
    const LOOK: Duration = Duration::from_millis(250);
    let mut tick = tokio::time::interval(LOOK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sent = tokio::time::Instant::now();
    let mut reported: std::collections::HashMap<(String, String), i64> = Default::default();
    loop {
        tick.tick().await;
        let surge = mesh.in_flight_now().into_iter().any(|(env, service, now)| {
            let before = reported.get(&(env, service)).copied().unwrap_or(0);
            now >= 4 && now >= 2 * before
        });
        if last_sent.elapsed() < WINDOW && !surge {
            continue;
        }
        let window_ms = last_sent.elapsed().as_millis() as u64;
        last_sent = tokio::time::Instant::now();
        let services = mesh.take_window();
        if services.is_empty() {
            continue;
        }
        for summary in &services {
            reported.insert(
                (summary.env.clone(), summary.service.clone()),
                summary.in_flight,
            );
        }
        let report = strata_core::api::MetricsReport {
            window_ms,
            services,
        };
        if let Err(error) = client.metrics(&node, &report).await {
            tracing::debug!(%error, "traffic report not delivered");
        }
    }
}

/// Starts an ingress that routes with `table`, kept current from the control plane, and
/// records every request in `metrics`.
pub fn start_ingress(
    access: &ControlAccess,
    table: Arc<RoutingTable>,
    listener: TcpListener,
    https: Option<(TcpListener, strata_mesh::ingress::tls::ServerTls)>,
    metrics: &NodeMetrics,
    peering: Option<Peering<'_>>,
) -> Result<(), Failure> {
    let source = RouteSource::trusting(&access.url, Some(&access.credential), access.ca.as_deref());
    // The route source presents the node's certificate too: the current one before its first
    // request, each renewed one from then on.
    let present = |source: &RouteSource, pem: Option<NodePem>| {
        if let Some((cert, key)) = pem {
            if let Err(error) = source.present_certificate(&cert, &key) {
                tracing::warn!(%error, "the route source cannot present the node's certificate");
            }
        }
    };
    let mut certificates = access.certificates.clone();
    present(&source, certificates.borrow_and_update().clone());
    let presenting = source.clone();
    tokio::spawn(async move {
        while certificates.changed().await.is_ok() {
            present(&presenting, certificates.borrow_and_update().clone());
        }
    });
    tokio::spawn(source.run(table.clone(), Duration::from_secs(2)));
    let ingress =
        Ingress::with_metrics(table, IngressConfig::default(), Some(metrics.mesh.clone()));
    ingress.set_waker(waker(access.client.clone()));
    if let Some(peering) = peering {
        ingress.enable_peering(peering.node, peering.identity);
        ingress.instances_listen_on(peering.instances_listen_on);
    }
    if let Some((listener, tls)) = https {
        let serving = ingress.clone();
        serve_on_threads("ingress-tls", listener, proxy_threads(), move |l| {
            serving.clone().serve_tls(l, tls.clone())
        })
        .context("cannot start the ingress's HTTPS threads")?;
    }
    serve_on_threads("ingress", listener, proxy_threads(), move |l| {
        ingress.clone().serve(l)
    })
    .context("cannot start the ingress's threads")?;
    Ok(())
}

/// The node's `container` driver, when this node can run containers (root, iproute2,
/// nftables, cgroups); otherwise the node does not offer it (placement then puts container
/// services elsewhere) and the log says why. Images live in `DATA_DIR/images`. Of the
/// capabilities past the ordinary set it grants only those `allowed` (the node's labels);
/// containers run in user namespaces, without one only if the node's labels allow it
/// (`host_root`).
fn container_driver(
    agent_dir: &Path,
    allowed: std::collections::BTreeSet<String>,
    host_root: bool,
) -> Option<Arc<strata_container::ContainerDriver>> {
    if !nix::unistd::geteuid().is_root() {
        tracing::info!("this node does not run containers: the agent is not root");
        return None;
    }
    let images = match strata_image::ImageStore::open(agent_dir.join("images")) {
        Ok(store) => store,
        Err(error) => {
            tracing::warn!(%error, "this node does not run containers: no image store");
            return None;
        }
    };
    // Each container runs in `strata container-shim`: this very binary, re-executed.
    let shim = match std::env::current_exe() {
        Ok(exe) => vec![exe.display().to_string(), "container-shim".to_string()],
        Err(error) => {
            tracing::warn!(%error, "this node does not run containers: cannot find its own binary");
            return None;
        }
    };
    let mut config = strata_container::ContainerConfig::new(agent_dir.join("containers"), shim);
    config.allowed_capabilities = allowed;
    config.allow_host_root = host_root;
    match strata_container::ContainerDriver::new(
        config,
        Arc::new(strata_container::StoreImages::new(images)),
    ) {
        Ok(driver) => {
            let driver = Arc::new(driver);
            // Images no instance has used for half an hour go, with the layers only they had.
            driver.spawn_garbage_collection(Duration::from_secs(600), Duration::from_secs(1800));
            Some(driver)
        }
        Err(error) => {
            tracing::warn!(%error, "this node does not run containers");
            None
        }
    }
}

/// The node's `wasm` driver: one wasmtime host (compile cache in `DATA_DIR/wasm-cache`);
/// guests' outbound calls by service name go to healthy instances from the node's routing
/// table, in the caller's environment; refused calls are reported as `outbound.refused` events.
fn wasm_driver(
    agent_dir: &Path,
    table: Arc<RoutingTable>,
    events: EventReporter,
    mesh: MeshEndpoint,
) -> Result<Arc<dyn Driver>, Failure> {
    let host = WasmHost::new(WasmHostConfig::new(agent_dir.join("wasm-cache")))
        .map_err(|error| Failure::Failed(anyhow!("cannot start the wasm runtime: {error}")))?;
    let driver = WasmDriver::new(host, move |spec: &StartSpec| -> Arc<dyn OutboundRouter> {
        let env = spec
            .env
            .get("STRATA_ENV")
            .cloned()
            .unwrap_or_else(|| "dev".into());
        let caller = spec.env.get("STRATA_SERVICE").cloned().unwrap_or_default();
        Arc::new(MeshRouter {
            table: table.clone(),
            authorization: mesh.keys.authorization(&env, &caller),
            proxy: mesh.address,
            env,
            caller,
            instance: spec.instance_id.clone(),
            events: events.clone(),
        })
    });
    Ok(Arc::new(driver))
}

/// Sends a wasm guest's `http://SERVICE/` through the node's mesh proxy, as its service.
struct MeshRouter {
    table: Arc<RoutingTable>,
    proxy: std::net::SocketAddr,
    authorization: String,
    env: String,
    caller: String,
    instance: String,
    events: EventReporter,
}

impl OutboundRouter for MeshRouter {
    fn resolve(&self, service: &str) -> Option<std::net::SocketAddr> {
        self.table
            .lookup(&strata_core::api::default_host(service, &self.env))
            .map(|_| self.proxy)
    }

    fn authorization(&self) -> Option<String> {
        Some(self.authorization.clone())
    }

    fn refused(&self, destination: &str) {
        tracing::warn!(
            caller = %self.caller,
            env = %self.env,
            destination,
            "outbound call refused: only Strata services are reachable, as http://SERVICE/"
        );
        self.events.report(NodeEvent {
            kind: strata_core::EventKind::OutboundRefused,
            env: strata_core::EnvName::new(self.env.clone()).ok(),
            service: strata_core::ServiceName::new(self.caller.clone()).ok(),
            instance: strata_core::InstanceId::new(self.instance.clone()).ok(),
            message: format!(
                "{} called {destination}: refused; a wasm service reaches only Strata services, as http://SERVICE/",
                self.caller
            ),
        });
    }
}
