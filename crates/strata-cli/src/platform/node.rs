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
use strata_control::credentials::write_private;
use strata_core::api::NodeEvent;
use strata_mesh::identity::{NodeIdentity, TlsConfigs};
use strata_mesh::ingress::{proxy_threads, serve_on_threads};
use strata_mesh::{
    CallerKeys, Denial, Ingress, IngressConfig, MeshMetrics, MeshProxy, PeerListener, RouteSource,
    RoutingTable,
};
use strata_runtime::{Driver, StartSpec};
use strata_wasm::{OutboundRouter, WasmDriver, WasmHost, WasmHostConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Failure;

/// A client of the control plane as node `config` reaches it (its CA, if HTTPS).
fn control_client(config: &AgentConfig, token: Option<&str>) -> ControlClient {
    ControlClient::trusting(&config.control_url, token, config.control_ca.as_deref())
}

/// The cluster CA an HTTPS control plane at `join` (one URL or several) must present: the one
/// kept in `AGENT_DIR/ca.pem`, or else fetched from the server and accepted only if its
/// SHA-256 is the fingerprint the join token carries. Nothing secret is sent before that
/// check. `None` for a plain-HTTP control plane (`strata dev`).
pub async fn control_plane_ca(
    join: &str,
    token: Option<&strata_core::auth::JoinToken>,
    data_dir: &Path,
) -> Result<Option<String>, Failure> {
    if !join
        .split(',')
        .any(|url| url.trim().starts_with("https://"))
    {
        return Ok(None);
    }
    let kept = data_dir.join("ca.pem");
    if let Ok(pem) = std::fs::read_to_string(&kept) {
        return Ok(Some(pem));
    }
    let Some(expected) = token.and_then(|t| t.ca_fingerprint.clone()) else {
        return Err(Failure::BadInput(anyhow!(
            "error: the join token carries no CA fingerprint, so the server at {join} cannot be verified\n  hint: use the token `strata server token` prints (sj1.FINGERPRINT.SECRET)"
        )));
    };
    // The CA is public; its authenticity is the fingerprint's to prove, not the connection's.
    let probe = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| Failure::Failed(anyhow!("{error}")))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut last = String::new();
        for url in join.split(',').map(|u| u.trim().trim_end_matches('/')) {
            let fetched = async {
                probe
                    .get(format!("{url}/v1/ca"))
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await
            }
            .await;
            match fetched {
                Ok(pem) => {
                    let got = strata_mesh::identity::ca_fingerprint(&pem).unwrap_or_default();
                    if got != expected {
                        return Err(Failure::Failed(anyhow!(
                            "the server at {url} is not the cluster this join token is for: its CA has fingerprint {got}, the token expects {expected}\n  hint: check --join, and copy the token `strata server token` prints on that cluster"
                        )));
                    }
                    write_private(&kept, &pem)?;
                    return Ok(Some(pem));
                }
                Err(error) => last = format!("{url}: {error}"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::Failed(anyhow!(
                "cannot fetch the cluster CA: {last}"
            )));
        }
        tracing::info!(%last, "control plane not reachable yet; asking again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// This node's credential: the one kept in `AGENT_DIR/node-credential` while the control
/// plane accepts it, otherwise asked for with the join token (once; kept, mode 0600).
/// Retried while the control plane does not answer, for a minute.
async fn node_credential(config: &AgentConfig) -> Result<String, Failure> {
    let path = config.data_dir.join("node-credential");
    std::fs::create_dir_all(&config.data_dir)?;
    if let Ok(kept) = std::fs::read_to_string(&path) {
        let kept = kept.trim().to_string();
        let client = control_client(config, Some(&kept));
        if client.whoami().await.is_ok() {
            return Ok(kept);
        }
    }
    let client = control_client(config, config.token.as_deref());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match client.credential(&config.name).await {
            Ok(credential) => {
                strata_control::credentials::write_private(&path, &credential)?;
                return Ok(credential);
            }
            Err(strata_agent::client::ClientError::Refused { status: 401, .. }) => {
                return Err(Failure::Failed(anyhow!(
                    "node {} cannot join {}: the join token is not this cluster's\n  hint: give the agent the token `strata server token` prints (--token-file FILE or STRATA_JOIN_TOKEN)",
                    config.name,
                    config.control_url
                )));
            }
            Err(error) if error.is_permanent() || tokio::time::Instant::now() >= deadline => {
                return Err(Failure::Failed(anyhow!(
                    "node {} cannot join {}: {error}",
                    config.name,
                    config.control_url
                )));
            }
            Err(error) => {
                tracing::info!(%error, "no node credential yet; asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The node's Prometheus registry: the proxy's request metrics, served at the agent's
/// `/metrics`.
#[derive(Clone)]
pub struct NodeMetrics {
    registry: Arc<prometheus_client::registry::Registry>,
    mesh: MeshMetrics,
}

impl NodeMetrics {
    pub fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let mesh = MeshMetrics::register(&mut registry);
        Self {
            registry: Arc::new(registry),
            mesh,
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

/// A node's certificate and key (PEM).
pub type NodePem = (String, String);

/// How a node's parts reach the control plane: its URL(s), the node's credential, the CA an
/// HTTPS control plane must present, one client shared by the agent, its reports and its
/// proxies (which presents the node's certificate once the node has one), and the node's
/// certificate as it is renewed, for parts with clients of their own (the route source).
#[derive(Clone)]
pub struct ControlAccess {
    pub url: String,
    pub credential: String,
    pub ca: Option<String>,
    pub client: ControlClient,
    pub certificates: tokio::sync::watch::Receiver<Option<NodePem>>,
}

/// Starts a node agent with the `exec`, `wasm` and (when the node can) `container` drivers;
/// wasm guests' outbound calls resolve service names with `table` (the node's routing table).
/// The agent's API serves `metrics` at `/metrics`. With `peer_listener` (at the config's
/// `mesh_addr`), the node gets its certificate and takes calls from other nodes' proxies there.
pub async fn start_agent(
    mut config: AgentConfig,
    table: Arc<RoutingTable>,
    metrics: &NodeMetrics,
    peer_listener: Option<TcpListener>,
) -> Result<StartedAgent, Failure> {
    // The join token only gets the node its credential; from here on the node presents that,
    // and, where it has a certificate (a cluster node), its certificate instead.
    let credential = node_credential(&config).await?;
    config.token = Some(credential.clone());
    let control = control_client(&config, config.token.as_deref());
    config.client = Some(control.clone());
    let (certificates_tx, certificates) = tokio::sync::watch::channel(None);
    let events = EventReporter::start(control.clone(), config.name.clone());
    let mesh = start_mesh_proxy(
        &config.data_dir,
        table.clone(),
        metrics,
        events.clone(),
        control.clone(),
    )
    .await?;
    let identity = match peer_listener {
        Some(listener) => {
            let identity = node_identity(&config, control.clone(), certificates_tx).await?;
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
        None => None,
    };
    let wasm = wasm_driver(&config.data_dir, table, events, mesh.clone())?;
    let mut drivers = vec![wasm];
    if let Some(container) = container_driver(&config.data_dir) {
        // Containers reach the mesh proxy at the bridge's gateway, the one way out of their
        // namespace; their HTTP_PROXY is pointed there.
        let at = std::net::SocketAddr::from((container.gateway(), mesh.address.port()));
        match TcpListener::bind(at).await {
            Ok(listener) => {
                let proxy = mesh.proxy.clone();
                serve_on_threads("mesh-gateway", listener, proxy_threads(), move |l| {
                    proxy.clone().serve(l)
                })?;
                if let Err(error) = container.allow_mesh_proxy(at.port()) {
                    tracing::warn!(%error, "containers cannot reach the mesh proxy");
                }
            }
            Err(error) => tracing::warn!(%error, %at, "containers cannot reach the mesh proxy"),
        }
        drivers.push(container);
    }
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
    let (agent, listener) = Agent::start_with_drivers(config, drivers).await?;
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
    tokio::spawn(report_traffic(control, node, metrics.mesh.clone()));
    Ok(StartedAgent {
        agent,
        task,
        identity,
        access,
    })
}

/// The node's certificate, from the control plane (retried while it does not answer, for a
/// minute), kept current: renewed at two thirds of its life with a fresh key. Each one is
/// presented to the control plane from then on (mutual TLS: `client` and every clone of it,
/// and whoever watches `certificates`). The key, the certificate and the CA are also written
/// to `DATA_DIR/tls/` for operators to inspect.
async fn node_identity(
    config: &AgentConfig,
    client: ControlClient,
    certificates: tokio::sync::watch::Sender<Option<NodePem>>,
) -> Result<Arc<NodeIdentity>, Failure> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (configs, issued_at, pem) = loop {
        match request_certificate(&client, config).await {
            Ok(got) => break got,
            // A wrong token, a refused request: asking again cannot help.
            Err(error)
                if error
                    .downcast_ref::<strata_agent::client::ClientError>()
                    .is_some_and(|error| error.is_permanent()) =>
            {
                return Err(Failure::Failed(anyhow!("{error}")));
            }
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "no node certificate yet; asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(Failure::Failed(anyhow!(
                    "cannot get this node's certificate from {}: {error}\n  hint: check that the server is up and --token is its join token",
                    config.control_url
                )))
            }
        }
    };
    present(&client, &certificates, pem)?;
    let identity = NodeIdentity::new(configs);
    let renewing = identity.clone();
    let config = config.clone();
    tokio::spawn(async move {
        let mut issued_at = issued_at;
        loop {
            let not_after = renewing.current().not_after;
            let renew_at = NodeIdentity::renew_at(issued_at, not_after);
            let wait = renew_at.saturating_sub(unix_now()).max(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            match request_certificate(&client, &config).await {
                Ok((configs, issued, pem)) => {
                    tracing::info!(not_after = configs.not_after, "node certificate renewed");
                    renewing.replace(configs);
                    issued_at = issued;
                    if let Err(error) = present(&client, &certificates, pem) {
                        tracing::warn!(?error, "the renewed certificate cannot be presented");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "node certificate not renewed; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });
    Ok(identity)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The TLS configuration of the node's own API: its current certificate (followed at every
/// renewal), asking clients for a certificate of the cluster CA (the control plane's) but
/// serving those without one too (`/healthz`, Prometheus with the API key).
fn node_api_tls(
    agent_dir: &Path,
    mut certificates: tokio::sync::watch::Receiver<Option<NodePem>>,
) -> Result<strata_mesh::serve::CurrentTls, Failure> {
    let ca_file = agent_dir.join("tls/ca.crt");
    let ca = std::fs::read_to_string(&ca_file)
        .with_context(|| format!("cannot read {}", ca_file.display()))?;
    let build = move |pem: &NodePem| {
        strata_mesh::identity::api_server_config(&pem.0, &pem.1, Some(&ca)).map(Arc::new)
    };
    let first = certificates
        .borrow_and_update()
        .clone()
        .ok_or_else(|| Failure::Failed(anyhow!("the node has no certificate yet")))?;
    let current = Arc::new(std::sync::RwLock::new(
        build(&first).map_err(|error| Failure::Failed(anyhow!("{error}")))?,
    ));
    let updating = current.clone();
    tokio::spawn(async move {
        while certificates.changed().await.is_ok() {
            let pem = certificates.borrow_and_update().clone();
            match pem.as_ref().map(&build) {
                Some(Ok(config)) => *updating.write().expect("tls lock") = config,
                Some(Err(error)) => {
                    tracing::warn!(%error, "the renewed certificate cannot serve the node's API")
                }
                None => {}
            }
        }
    });
    Ok(Arc::new(move || current.read().expect("tls lock").clone()))
}

/// Presents `pem` (the node's certificate and key) to the control plane from now on.
fn present(
    client: &ControlClient,
    certificates: &tokio::sync::watch::Sender<Option<NodePem>>,
    pem: NodePem,
) -> Result<(), Failure> {
    client
        .present_certificate(&pem.0, &pem.1)
        .map_err(|error| Failure::Failed(anyhow!("{error}")))?;
    certificates.send_replace(Some(pem));
    Ok(())
}

/// One certificate request with a fresh key; the TLS configurations, when it was issued, and
/// the certificate and key.
async fn request_certificate(
    client: &ControlClient,
    config: &AgentConfig,
) -> anyhow::Result<(TlsConfigs, u64, NodePem)> {
    let (key, csr) = strata_mesh::identity::node_key_and_csr(&config.name)?;
    let signed = client
        .certificate(
            &config.name,
            &strata_core::api::CertificateRequest {
                csr,
                address: config.mesh_addr.clone(),
            },
        )
        .await?;
    let configs = TlsConfigs::new(&signed.certificate, &key, &signed.ca, signed.not_after)?;
    let dir = config.data_dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    write_private(&dir.join("node.key"), &key)?;
    std::fs::write(dir.join("node.crt"), &signed.certificate)?;
    std::fs::write(dir.join("ca.crt"), &signed.ca)?;
    Ok((configs, signed.issued_at, (signed.certificate, key)))
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
            kind: "policy.denied".into(),
            env: Some(denial.env.clone()),
            service: Some(denial.callee.clone()),
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
) -> Result<MeshEndpoint, Failure> {
    let keys = CallerKeys::load_or_create(&agent_dir.join("mesh.key"))
        .with_context(|| format!("cannot keep the mesh key in {}", agent_dir.display()))?;
    let port_file = agent_dir.join("mesh.port");
    let kept_port = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok());
    let listener = match kept_port {
        Some(port) => match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, port, "the mesh proxy's port is taken; instances started before must be restarted to reach it");
                TcpListener::bind(("127.0.0.1", 0)).await?
            }
        },
        None => TcpListener::bind(("127.0.0.1", 0)).await?,
    };
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
    serve_on_threads("ingress", listener, proxy_threads(), move |l| {
        ingress.clone().serve(l)
    })
    .context("cannot start the ingress's threads")?;
    Ok(())
}

/// The node's `container` driver, when this node can run containers (root, iproute2,
/// nftables, cgroups); otherwise the node does not offer it (placement then puts container
/// services elsewhere) and the log says why. Images live in `DATA_DIR/images`.
fn container_driver(agent_dir: &Path) -> Option<Arc<strata_container::ContainerDriver>> {
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
    let config = strata_container::ContainerConfig::new(agent_dir.join("containers"), shim);
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
            kind: "outbound.refused".into(),
            env: Some(self.env.clone()),
            service: Some(self.caller.clone()),
            instance: Some(self.instance.clone()),
            message: format!(
                "{} called {destination}: refused; a wasm service reaches only Strata services, as http://SERVICE/",
                self.caller
            ),
        });
    }
}
