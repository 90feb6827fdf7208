//! The control plane's typed operations over the store. Every write that can race is a
//! transaction guarded by the revisions it read (compare-and-swap), retried a bounded number
//! of times on conflict.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_core::api::{
    default_host, Assignment, Assignments, CertificateRequest, DeployRequest, DeployResponse,
    DeployService, DeployedService, NodeCertificate, NodeEvent, RegisterNode, Route, RouteTable,
    ServiceStatus,
};
use strata_core::spec::{config_hash, DriverKind};
use strata_core::{
    keys, CallPolicy, ConfigVersion, DesiredState, Environment, Event, Instance, InstanceState,
    InstanceStatus, InstanceView, Node, NodeState, Release, Service,
};
use strata_sched::liveness::LivenessThresholds;
use strata_sched::{plan_deploy, DeployCurrent, DeployWant};
use strata_store::{KeyValue, Store, Txn, TxnOutcome};
use tokio::sync::Notify;

use strata_mesh::identity::ClusterCa;

use crate::blobs::BlobStore;
use crate::cas::{Change, Writer};
use crate::leader::{ElectionConfig, LeaderTerm};
use crate::{now_millis, ControlError};

/// How many times a read-modify-write is retried when another writer got there first.
pub(crate) const CAS_ATTEMPTS: usize = 16;

/// Settings of a control plane.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub data_dir: PathBuf,
    pub liveness: LivenessThresholds,
    /// The port the ingress listens on, for the URLs `status` shows (`None`: unknown).
    pub ingress_port: Option<u16>,
    /// The secret a new node presents once, for its node credential.
    pub join_token: String,
    /// The key node and server credentials are derived with ([`crate::credentials`]).
    pub credential_key: Vec<u8>,
    /// The largest artifact `PUT /v1/blobs` takes.
    pub max_artifact_size: u64,
    /// How long audit records are kept.
    pub audit_retention: std::time::Duration,
    /// How long the last lines of a gone instance's log are kept after its node last
    /// shipped them.
    pub log_retention: std::time::Duration,
    /// Nodes act by their certificate (mutual TLS on an HTTPS API); their bearer credential
    /// only gets them the certificate. Off for `strata dev`'s plain-HTTP API.
    pub node_certificates_required: bool,
    /// The CA of the API's certificate when the operator gives it (`--tls-ca`); `None`: the
    /// cluster CA signs it. `GET /v1/ca` serves this one, and servers trust both.
    pub api_ca_pem: Option<String>,
    /// How often node liveness is judged.
    pub liveness_tick: std::time::Duration,
    /// This server's stable identity (kept in its data directory).
    pub server_id: String,
    /// This server's API as other servers reach it (heartbeats are forwarded to the leader).
    pub api_url: String,
    /// The leader's lease: how long a dead leader blocks the controllers at most.
    pub lease_ttl: std::time::Duration,
    /// How long a node's certificate is valid (nodes renew at two thirds of it).
    pub node_cert_ttl: std::time::Duration,
    /// How long an autoscaled count must hold, with the traffic of that window, before it
    /// goes down.
    pub scale_down_window: std::time::Duration,
}

/// The default of [`ControlConfig::scale_down_window`].
pub const DEFAULT_SCALE_DOWN_WINDOW: std::time::Duration =
    std::time::Duration::from_millis(strata_sched::autoscale::DEFAULT_STABLE_WINDOW_MS);

/// The last lines of gone instances' logs are kept this long unless the server is told
/// otherwise.
pub const DEFAULT_LOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Nodes' certificates are valid a day unless the server is told otherwise.
pub const DEFAULT_NODE_CERT_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The control plane: typed operations over the store, shared by the API and the controllers.
pub struct ControlPlane {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blobs: BlobStore,
    pub(crate) config: ControlConfig,
    /// Wakes the reconciler early (after a deploy, a status report, ...).
    pub(crate) kick: Notify,
    event_counter: AtomicU64,
    /// Calls to other servers (forwarding to the leader, copying artifacts) and to agents;
    /// trusts the cluster CA once it is known ([`ControlPlane::cluster_ca`]).
    http: std::sync::RwLock<reqwest::Client>,
    /// Last heartbeat of each node, in [`ControlPlane::monotonic_ms`]. Kept in memory, never
    /// written to the store: a heartbeat costs no disk write and wakes no watcher. After a
    /// restart every node gets a full grace period (as Nomad resets TTLs on a new leader).
    heartbeats: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    clock_start: std::time::Instant,
    /// The cluster CA, once read or made ([`ControlPlane::cluster_ca`]).
    cluster_ca: tokio::sync::OnceCell<ClusterCa>,
    terms: tokio::sync::watch::Sender<Option<LeaderTerm>>,
    led_since: AtomicU64,
    /// Every node's per-service traffic, per second (see [`crate::metrics::TrafficLog`]).
    traffic: std::sync::Mutex<crate::metrics::TrafficLog>,
    /// Tokens and node credentials: who a request is.
    credentials: crate::credentials::Credentials,
    /// Audit records written, for their sequence numbers.
    pub(crate) audit_counter: AtomicU64,
    /// Open watches per identity.
    watchers: crate::guard::Watchers,
    /// Repeated refusals folded into one audit record per window.
    refusals: crate::guard::RefusalFolder,
}

pub(crate) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, ControlError> {
    serde_json::from_slice(&kv.value).map_err(|error| ControlError::Corrupt {
        key: kv.key.clone(),
        reason: error.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// A DNS label: what environment and service names must be.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn check_name(kind: &str, name: &str) -> Result<(), ControlError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ControlError::bad_request(
            format!("{kind} name `{name}` is not valid"),
            Some(
                "use lowercase letters, digits and `-`, starting with a letter, at most 63 characters"
                    .to_string(),
            ),
        ))
    }
}

impl ControlPlane {
    pub fn new(store: Arc<dyn Store>, config: ControlConfig) -> Result<Arc<Self>, ControlError> {
        let blobs = BlobStore::open(&config.data_dir.join("blobs"))?;
        let credentials = crate::credentials::Credentials::new(
            store.clone(),
            config.credential_key.clone(),
            config.join_token.clone(),
        );
        Ok(Arc::new(Self {
            credentials,
            audit_counter: AtomicU64::new(0),
            watchers: crate::guard::Watchers::default(),
            refusals: crate::guard::RefusalFolder::default(),
            store,
            blobs,
            config,
            kick: Notify::new(),
            event_counter: AtomicU64::new(0),
            http: std::sync::RwLock::new(reqwest::Client::new()),
            heartbeats: std::sync::Mutex::new(std::collections::HashMap::new()),
            clock_start: std::time::Instant::now(),
            terms: tokio::sync::watch::channel(None).0,
            led_since: AtomicU64::new(0),
            traffic: std::sync::Mutex::default(),
            cluster_ca: tokio::sync::OnceCell::new(),
        }))
    }

    /// The cluster's CA: read from the store, or made and stored if this is the cluster's
    /// first server (two servers racing agree on the first one written).
    pub async fn cluster_ca(&self) -> Result<ClusterCa, ControlError> {
        self.cluster_ca
            .get_or_try_init(|| async {
                let key = keys::CLUSTER_CA;
                for _ in 0..CAS_ATTEMPTS {
                    if let Some((stored, _)) = self.get::<serde_json::Value>(key).await? {
                        let ca = ClusterCa::from_json(&stored).map_err(|error| {
                            ControlError::Corrupt {
                                key: key.to_string(),
                                reason: error.to_string(),
                            }
                        })?;
                        self.trust(&ca);
                        return Ok(ca);
                    }
                    let made = ClusterCa::generate()
                        .map_err(|error| ControlError::Internal(error.to_string()))?;
                    let txn = Txn::new().when(key, 0).put(key, encode(&made.to_json()));
                    if self.store.txn(txn).await?.is_committed() {
                        tracing::info!("made the cluster CA");
                        self.trust(&made);
                        return Ok(made);
                    }
                }
                Err(ControlError::Internal(
                    "the cluster CA could not be stored: too many concurrent writers".into(),
                ))
            })
            .await
            .cloned()
    }

    /// Makes this server's outgoing calls trust `ca` (other servers' HTTPS APIs).
    fn trust(&self, ca: &ClusterCa) {
        self.rebuild_http(&ca.cert_pem, None);
    }

    /// From now on this server presents `cert_pem` (a client certificate of the cluster CA
    /// naming it, `ID.server.strata`) on its outgoing calls: how nodes' own APIs know it is
    /// the control plane.
    pub async fn use_client_certificate(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), ControlError> {
        let ca = self.cluster_ca().await?;
        self.rebuild_http(&ca.cert_pem, Some((cert_pem, key_pem)));
        Ok(())
    }

    fn rebuild_http(&self, cluster_ca_pem: &str, identity: Option<(&str, &str)>) {
        let roots = std::iter::once(cluster_ca_pem).chain(self.config.api_ca_pem.as_deref());
        let client = roots
            .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()))
            .try_fold(reqwest::Client::builder(), |builder, root| {
                root.map(|root| builder.add_root_certificate(root))
            })
            .and_then(|builder| match identity {
                Some((cert, key)) => {
                    reqwest::Identity::from_pem(format!("{key}\n{cert}").as_bytes())
                        .map(|identity| builder.identity(identity))
                }
                None => Ok(builder),
            })
            .and_then(|builder| builder.build());
        match client {
            Ok(client) => *self.http.write().expect("http lock") = client,
            Err(error) => {
                tracing::warn!(%error, "cannot set up calls to other servers and nodes")
            }
        }
    }

    /// The HTTP client for other servers and agents.
    pub(crate) fn http(&self) -> reqwest::Client {
        self.http.read().expect("http lock").clone()
    }

    /// Signs node `name`'s certificate request: the certificate names the node and the
    /// address other nodes reach its proxy at, for [`ControlConfig::node_cert_ttl`].
    pub async fn issue_node_certificate(
        &self,
        name: &str,
        request: &CertificateRequest,
    ) -> Result<NodeCertificate, ControlError> {
        check_name("node", name)?;
        let address = match &request.address {
            None => None,
            Some(address) => {
                let host = address
                    .parse::<std::net::SocketAddr>()
                    .map(|a| a.ip())
                    .or_else(|_| address.parse::<std::net::IpAddr>());
                Some(host.map_err(|_| {
                    ControlError::bad_request(
                        format!("certificate request of node {name}: address `{address}` is not IP:PORT"),
                        None,
                    )
                })?)
            }
        };
        // A registered node gets certificates only for the address it registered.
        if let (Some(address), Some((node, _))) =
            (address, self.get::<Node>(&keys::node(name)).await?)
        {
            let registered = node.mesh_addr.as_deref().and_then(|a| {
                a.parse::<std::net::SocketAddr>()
                    .map(|a| a.ip())
                    .or_else(|_| a.parse::<std::net::IpAddr>())
                    .ok()
            });
            if registered.is_some_and(|registered| registered != address) {
                return Err(ControlError::Forbidden {
                    message: format!(
                        "node {name} is registered at {}; it may get certificates only for its own address, not {address}",
                        node.mesh_addr.as_deref().unwrap_or_default()
                    ),
                    hint: "a node that moved registers again with its new --mesh-addr first".into(),
                });
            }
        }
        let ca = self.cluster_ca().await?;
        let signed = ca
            .sign_node(&request.csr, name, address, self.config.node_cert_ttl)
            .map_err(|error| {
                ControlError::bad_request(
                    format!("certificate request of node {name}: {error}"),
                    Some("the agent sends a PKCS #10 request in PEM".to_string()),
                )
            })?;
        Ok(NodeCertificate {
            certificate: signed.cert_pem,
            ca: ca.cert_pem,
            issued_at: signed.not_after - self.config.node_cert_ttl.as_secs(),
            not_after: signed.not_after,
        })
    }

    /// Starts campaigning for leadership (see [`crate::leader`]).
    pub fn start_election(self: &Arc<Self>) {
        let config = ElectionConfig {
            server_id: self.config.server_id.clone(),
            api_url: self.config.api_url.clone(),
            lease_ttl: self.config.lease_ttl,
        };
        tokio::spawn(crate::leader::campaign(
            self.store.clone(),
            config,
            self.terms.clone(),
        ));
        let plane = self.clone();
        tokio::spawn(async move {
            let mut terms = plane.terms.subscribe();
            while terms.changed().await.is_ok() {
                let term = *terms.borrow_and_update();
                if let Some(term) = term {
                    let event = Self::event(
                        "leader.elected",
                        format!(
                            "server {} at {} leads (term {})",
                            plane.config.server_id, plane.config.api_url, term.revision
                        ),
                    );
                    plane.record(event).await;
                }
            }
        });
    }

    /// This server's current term as leader, if it leads.
    pub fn term(&self) -> Option<LeaderTerm> {
        *self.terms.borrow()
    }

    /// Wakes when leadership changes.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<Option<LeaderTerm>> {
        self.terms.subscribe()
    }

    pub fn server_id(&self) -> &str {
        &self.config.server_id
    }

    /// Applies a controller's write, fenced by this server's term: it lands only while this
    /// server still leads. A deposed leader gets [`ControlError::NotLeader`].
    pub async fn controller_txn(&self, txn: Txn) -> Result<TxnOutcome, ControlError> {
        let term = self.term().ok_or(ControlError::NotLeader)?;
        match self.store.txn(term.fence(txn)).await? {
            TxnOutcome::Conflict { key } if key == crate::leader::LEADER_KEY => {
                tracing::warn!("a controller write was fenced off: this server no longer leads");
                Err(ControlError::NotLeader)
            }
            outcome => Ok(outcome),
        }
    }

    /// Hands an agent's heartbeat to the leader (liveness is judged there).
    pub async fn forward_heartbeat(
        &self,
        node: &str,
        beat: &strata_core::api::Heartbeat,
        headers: &axum::http::HeaderMap,
    ) -> Result<strata_core::api::HeartbeatAck, ControlError> {
        self.forward_to_leader(
            reqwest::Method::POST,
            &format!("/v1/nodes/{node}/heartbeat"),
            Some(beat),
            headers,
        )
        .await?
        .json()
        .await
        .map_err(|error| ControlError::Internal(format!("the leader answered badly: {error}")))
    }
    /// Adds a node's per-service traffic report (on the leader; followers forward it).
    pub fn record_traffic(&self, node: &str, report: &strata_core::api::MetricsReport) {
        self.traffic
            .lock()
            .expect("traffic lock")
            .record(crate::now_millis(), node, report);
    }

    /// A service's traffic over the last minutes, per second.
    pub fn traffic(&self, env: &str, service: &str) -> strata_core::api::ServiceMetrics {
        let from = now_millis().saturating_sub(crate::metrics::RECENT_TRAFFIC_MS);
        self.traffic_since(env, service, from)
    }

    /// A service's traffic per second from `from_ms` on (at most the last hour).
    pub fn traffic_since(
        &self,
        env: &str,
        service: &str,
        from_ms: u64,
    ) -> strata_core::api::ServiceMetrics {
        self.traffic
            .lock()
            .expect("traffic lock")
            .service(env, service, from_ms)
    }

    /// How `env/service` did against its SLO over the last hour (`None`: it has no SLO).
    pub async fn slo_report(
        &self,
        env: &str,
        service: &str,
    ) -> Result<Option<strata_core::api::SloReport>, ControlError> {
        let Some((record, _)) = self.get::<Service>(&keys::service(env, service)).await? else {
            return Err(ControlError::not_found(
                format!("service {service} in environment {env}"),
                None,
            ));
        };
        let Some(slo) = record.slo else {
            return Ok(None);
        };
        let from = now_millis().saturating_sub(crate::metrics::TRAFFIC_KEPT_MS);
        let traffic = self.traffic_since(env, service, from);
        Ok(Some(crate::metrics::slo_report(&slo, &traffic)))
    }

    /// Sends `request` to the leader's API at `path` (with the caller's credentials), for the
    /// requests only the leader can answer. `NotLeader` when no other server leads.
    pub async fn forward_to_leader(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
        headers: &axum::http::HeaderMap,
    ) -> Result<reqwest::Response, ControlError> {
        let leader = crate::leader::current_leader(&self.store)
            .await
            .ok_or(ControlError::NotLeader)?;
        if leader.server_id == self.config.server_id {
            return Err(ControlError::NotLeader);
        }
        let mut request = self
            .http()
            .request(
                method,
                format!("{}{path}", leader.api_url.trim_end_matches('/')),
            )
            .timeout(std::time::Duration::from_secs(2));
        if let Some(body) = body {
            request = request.json(body);
        }
        // The caller's credential, or this server's vouching for a node
        // (`crate::guard::forwarding_headers`).
        for name in [
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderName::from_static(crate::guard::ON_BEHALF_OF),
        ] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name.clone(), value.clone());
            }
        }
        let response = request.send().await.map_err(|error| {
            ControlError::Internal(format!("leader {} unreachable: {error}", leader.api_url))
        })?;
        if !response.status().is_success() {
            return Err(ControlError::Internal(format!(
                "leader {} refused {path}: HTTP {}",
                leader.api_url,
                response.status()
            )));
        }
        Ok(response)
    }

    /// Milliseconds on a monotonic clock since this control plane started.
    pub fn monotonic_ms(&self) -> u64 {
        self.clock_start.elapsed().as_millis() as u64
    }

    /// When `node` last heartbeated (monotonic ms), if it has since this process started.
    pub(crate) fn last_heartbeat(&self, node: &str) -> Option<u64> {
        self.heartbeats
            .lock()
            .expect("heartbeats lock")
            .get(node)
            .copied()
    }

    /// Remembers when this server began to lead; nodes it has not heard from yet count their
    /// silence from then.
    pub(crate) fn grace_unknown_nodes(&self, now: u64) {
        self.led_since.store(now, Ordering::SeqCst);
    }

    pub(crate) fn led_since(&self) -> u64 {
        self.led_since.load(Ordering::SeqCst)
    }

    /// Forgives every node's silence up to now (used when this process itself stalled).
    pub(crate) fn refresh_heartbeats(&self, now: u64) {
        for last in self
            .heartbeats
            .lock()
            .expect("heartbeats lock")
            .values_mut()
        {
            *last = (*last).max(now);
        }
    }

    /// Whether this server heard from node `name` within the down threshold.
    pub fn heard_from_recently(&self, name: &str) -> bool {
        let now = self.monotonic_ms();
        self.heartbeats
            .lock()
            .expect("heartbeats lock")
            .get(name)
            .is_some_and(|last| now.saturating_sub(*last) < self.config.liveness.down_after_ms)
    }

    fn note_heartbeat(&self, node: &str) {
        let now = self.monotonic_ms();
        self.heartbeats
            .lock()
            .expect("heartbeats lock")
            .insert(node.to_string(), now);
    }

    /// Who requests are, and the API tokens.
    pub fn credentials(&self) -> &crate::credentials::Credentials {
        &self.credentials
    }

    /// Repeated refusals, folded for the audit log.
    pub fn refusals(&self) -> &crate::guard::RefusalFolder {
        &self.refusals
    }

    /// Open watches per identity.
    pub fn watchers(&self) -> &crate::guard::Watchers {
        &self.watchers
    }

    /// The CA (PEM) clients verify this API's certificate with: the operator's, or the
    /// cluster's.
    pub async fn api_ca_pem(&self) -> Result<String, ControlError> {
        match &self.config.api_ca_pem {
            Some(pem) => Ok(pem.clone()),
            None => Ok(self.cluster_ca().await?.cert_pem),
        }
    }

    /// The settings this control plane runs with.
    pub fn config(&self) -> &ControlConfig {
        &self.config
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, u64)>, ControlError> {
        match self.store.get(key).await? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(T, u64)>, ControlError> {
        let page = self.store.list(prefix).await?;
        page.kvs
            .iter()
            .map(|kv| Ok((decode(kv)?, kv.mod_revision)))
            .collect()
    }

    /// Appends an event. Events are best effort: a failure is logged, never fatal. A
    /// controller's events are fenced like its other writes: a deposed leader records nothing.
    pub async fn record(&self, mut event: Event) {
        let now = now_millis();
        let counter = self.event_counter.fetch_add(1, Ordering::Relaxed) % 1000;
        event.seq = now * 1000 + counter;
        event.at = now;
        let from_controller = event.actor == "controller";
        if from_controller {
            event.actor = format!("controller@{}", self.config.server_id);
        }
        let key = keys::event(event.seq);
        let txn = Txn::new().when(&key, 0).put(&key, encode(&event));
        let written = if from_controller {
            self.controller_txn(txn).await.map(|_| ())
        } else {
            self.store
                .txn(txn)
                .await
                .map(|_| ())
                .map_err(ControlError::from)
        };
        match written {
            Ok(()) => {
                tracing::info!(kind = %event.kind, service = ?event.service, "{}", event.message)
            }
            Err(ControlError::NotLeader) => {}
            Err(error) => tracing::warn!(%error, "could not record event"),
        }
    }

    /// Records what node `node` reports having seen. Only the kinds in [`NodeEvent::KINDS`]
    /// are accepted: a node cannot write what looks like a controller's decision.
    pub async fn record_node_event(
        &self,
        node: &str,
        event: NodeEvent,
    ) -> Result<(), ControlError> {
        if !NodeEvent::KINDS.contains(&event.kind.as_str()) {
            return Err(ControlError::bad_request(
                format!("nodes cannot record events of kind `{}`", event.kind),
                Some(format!(
                    "the kinds a node may record are {}",
                    NodeEvent::KINDS.join(", ")
                )),
            ));
        }
        let mut message = event.message;
        if message.len() > NodeEvent::MAX_MESSAGE {
            let mut cut = NodeEvent::MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.record(Event {
            env: event.env,
            service: event.service,
            instance: event.instance,
            node: Some(node.to_string()),
            actor: format!("agent:{node}"),
            ..Self::event(&event.kind, message)
        })
        .await;
        Ok(())
    }

    pub(crate) fn event(kind: &str, message: impl Into<String>) -> Event {
        Event {
            seq: 0,
            at: 0,
            kind: kind.to_string(),
            env: None,
            service: None,
            instance: None,
            node: None,
            message: message.into(),
            actor: "controller".into(),
        }
    }

    // ----- deploys -----------------------------------------------------------------------

    /// Creates a new release for every service whose spec, artifact or config changed, and
    /// makes it the desired one. Unchanged services keep their release (replicas may change).
    pub async fn deploy(
        &self,
        env: &str,
        request: DeployRequest,
        actor: &str,
    ) -> Result<DeployResponse, ControlError> {
        check_name("environment", env)?;
        if request.services.is_empty() {
            return Err(ControlError::bad_request(
                "the deploy names no services",
                Some("add at least one [service.NAME] table to the spec".to_string()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for item in &request.services {
            self.validate(item).await?;
            if !seen.insert(item.spec.name.clone()) {
                return Err(ControlError::bad_request(
                    format!("service `{}` appears twice in the deploy", item.spec.name),
                    None,
                ));
            }
        }
        let demands: Vec<strata_sched::quota::ServiceDemand> = request
            .services
            .iter()
            .map(|item| strata_sched::quota::ServiceDemand {
                service: item.spec.name.clone(),
                instances: crate::quota::most_instances(
                    item.spec.scale.replicas,
                    item.spec.scale.autoscale.as_ref(),
                ),
                per_instance: item.spec.resources,
            })
            .collect();
        self.check_quota(env, &demands).await?;
        let env_key = keys::env(env);
        if self.store.get(&env_key).await?.is_none() {
            let record = Environment {
                name: env.to_string(),
                created_at: now_millis(),
                default_policy: CallPolicy::default(),
                quota: None,
            };
            self.store
                .txn(Txn::new().when(&env_key, 0).put(&env_key, encode(&record)))
                .await?;
        }
        let mut services = Vec::new();
        for item in request.services {
            services.push(self.deploy_one(env, item, actor).await?);
        }
        self.kick.notify_one();
        Ok(DeployResponse {
            env: env.to_string(),
            services,
        })
    }

    async fn validate(&self, item: &DeployService) -> Result<(), ControlError> {
        let spec = &item.spec;
        check_name("service", &spec.name)?;
        match spec.driver {
            DriverKind::Wasm => self.validate_wasm(item).await?,
            DriverKind::Container => self.validate_image(item).await?,
            DriverKind::Exec => {}
        }
        match (&spec.artifact, &item.artifact_digest) {
            (Some(path), None) => return Err(ControlError::bad_request(
                format!("service `{}`: artifact `{path}` has no digest", spec.name),
                Some(
                    "upload it to /v1/blobs/DIGEST and send its digest (strata deploy does both)"
                        .to_string(),
                ),
            )),
            (_, Some(digest)) => {
                let recorded = self
                    .store
                    .get(&format!("{}{digest}", crate::replicate::BLOBS))
                    .await?
                    .is_some();
                if !self.blobs.exists(digest).await? && !recorded {
                    return Err(ControlError::bad_request(
                        format!(
                            "service `{}`: artifact {digest} was never uploaded",
                            spec.name
                        ),
                        Some(format!("PUT its bytes to /v1/blobs/{digest} first")),
                    ));
                }
            }
            (None, None) if spec.command.is_empty() => {
                return Err(ControlError::bad_request(
                    format!(
                        "service `{}` has neither an artifact nor a command",
                        spec.name
                    ),
                    Some("set `artifact` (a file to upload) or `command`".to_string()),
                ))
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// A wasm service's artifact must be a `wasi:http/proxy` component; anything else fails
    /// the deploy with what it is and how to fix it, before any release is made.
    /// A container service's artifact must be an image archive (OCI image layout or docker
    /// save); anything else fails the deploy with what it is, before any release is made.
    async fn validate_image(&self, item: &DeployService) -> Result<(), ControlError> {
        let name = &item.spec.name;
        let Some(digest) = &item.artifact_digest else {
            return Err(ControlError::bad_request(
                format!("service `{name}`: a container service needs an `artifact` (the image)"),
                Some(
                    "set artifact = \"build/app.tar\", written by `strata image save`".to_string(),
                ),
            ));
        };
        if !self.blobs.exists(digest).await? {
            self.fetch_blob_from_peers(digest).await?;
        }
        let path = self.blobs.path(digest)?;
        tokio::task::spawn_blocking(move || strata_artifact::check_archive(&path))
            .await
            .map_err(|e| ControlError::Internal(format!("checking artifact {digest}: {e}")))?
            .map_err(|error| {
                ControlError::bad_request(
                    format!(
                        "service `{name}`: artifact `{}` is not an image: {error}",
                        item.spec.artifact.as_deref().unwrap_or(digest)
                    ),
                    None,
                )
            })?;
        Ok(())
    }

    async fn validate_wasm(&self, item: &DeployService) -> Result<(), ControlError> {
        let name = &item.spec.name;
        let Some(digest) = &item.artifact_digest else {
            return Err(ControlError::bad_request(
                format!("service `{name}`: a wasm service needs an `artifact` (the component)"),
                Some("set artifact = \"build/app.wasm\"".to_string()),
            ));
        };
        if !self.blobs.exists(digest).await? {
            // Uploaded to another server: fetch it to look at it.
            self.fetch_blob_from_peers(digest).await?;
        }
        let path = self.blobs.path(digest)?;
        let bytes = tokio::fs::read(&path).await.map_err(|error| {
            ControlError::Internal(format!("reading artifact {digest}: {error}"))
        })?;
        strata_artifact::inspect_component(&bytes).map_err(|error| {
            ControlError::bad_request(
                format!(
                    "service `{name}`: artifact `{}` is not a usable component: {error}",
                    item.spec.artifact.as_deref().unwrap_or(digest)
                ),
                None,
            )
        })?;
        Ok(())
    }

    async fn deploy_one(
        &self,
        env: &str,
        item: DeployService,
        actor: &str,
    ) -> Result<DeployedService, ControlError> {
        let name = item.spec.name.clone();
        let service_key = keys::service(env, &name);
        let values = item.spec.config_for(env);
        let values_hash = config_hash(&values);
        let spec_hash = item.spec.spec_hash(item.artifact_digest.as_deref());
        for _ in 0..CAS_ATTEMPTS {
            let now = now_millis();
            let existing: Option<(Service, u64)> = self.get(&service_key).await?;
            let (mut service, revision) = match existing {
                Some(found) => found,
                None => (
                    Service {
                        env: env.to_string(),
                        name: name.clone(),
                        desired_release: 0,
                        latest_release: 0,
                        latest_config: 0,
                        replicas: item.spec.scale.replicas,
                        autoscale: item.spec.scale.autoscale,
                        slo: item.spec.slo,
                        scaled_at: now,
                        created_at: now,
                        updated_at: now,
                    },
                    0,
                ),
            };
            let current_release: Option<Release> = self
                .get(&keys::release(env, &name, service.desired_release))
                .await?
                .map(|(release, _)| release);
            let latest_config: Option<ConfigVersion> = self
                .get(&keys::config(env, &name, service.latest_config))
                .await?
                .map(|(config, _)| config);

            let plan = plan_deploy(
                DeployCurrent {
                    service: (revision != 0).then_some(&service),
                    release: current_release.as_ref(),
                    config: latest_config.as_ref(),
                },
                &DeployWant {
                    spec_hash: &spec_hash,
                    config_hash: &values_hash,
                    scale: &item.spec.scale,
                    slo: item.spec.slo,
                },
            );
            if plan.is_noop() {
                return Ok(DeployedService {
                    name,
                    release: service.desired_release,
                    created: false,
                    replicas: service.replicas,
                });
            }
            let mut txn = Txn::new().when(&service_key, revision);
            if plan.new_config {
                let record = ConfigVersion {
                    env: env.to_string(),
                    service: name.clone(),
                    version: plan.config_version,
                    values: values.clone(),
                    hash: values_hash.clone(),
                    created_at: now,
                };
                txn = txn.put(
                    keys::config(env, &name, plan.config_version),
                    encode(&record),
                );
                service.latest_config = plan.config_version;
            }
            let mut new_release = None;
            if let Some(number) = plan.new_release {
                let release = Release {
                    env: env.to_string(),
                    service: name.clone(),
                    number,
                    artifact_digest: item.artifact_digest.clone(),
                    config_version: plan.config_version,
                    spec_hash: spec_hash.clone(),
                    spec: item.spec.clone(),
                    created_at: now,
                };
                txn = txn.put(keys::release(env, &name, number), encode(&release));
                service.latest_release = number;
                service.desired_release = number;
                new_release = Some(release);
            }
            if plan.scaled {
                service.scaled_at = now;
            }
            service.replicas = plan.replicas;
            service.autoscale = item.spec.scale.autoscale;
            service.slo = item.spec.slo;
            service.updated_at = now;
            txn = txn.put(&service_key, encode(&service));
            match self.store.txn(txn).await? {
                TxnOutcome::Committed(_) => {
                    let mut event = match &new_release {
                        Some(release) => Self::event(
                            "release.created",
                            format!(
                                "{name}: release {} ({}, config v{}), {} replica(s)",
                                release.number,
                                release
                                    .artifact_digest
                                    .as_deref()
                                    .map(short_digest)
                                    .unwrap_or_else(|| "host command".to_string()),
                                release.config_version,
                                service.replicas
                            ),
                        ),
                        None => Self::event(
                            "service.scaled",
                            match &service.autoscale {
                                Some(bounds) => format!(
                                    "{name}: {} replica(s), autoscaled {}..{} at {} in flight per instance",
                                    service.replicas,
                                    bounds.min,
                                    bounds.max,
                                    bounds.target_concurrency
                                ),
                                None => format!("{name}: {} replica(s)", service.replicas),
                            },
                        ),
                    };
                    event.env = Some(env.to_string());
                    event.service = Some(name.clone());
                    event.actor = actor.to_string();
                    self.record(event).await;
                    return Ok(DeployedService {
                        name,
                        release: service.desired_release,
                        created: new_release.is_some(),
                        replicas: service.replicas,
                    });
                }
                TxnOutcome::Conflict { .. } => continue,
            }
        }
        Err(ControlError::Conflict {
            message: format!("service `{name}` kept changing during the deploy"),
            hint: Some("another deploy of it is running; try again".to_string()),
        })
    }

    /// Deletes a service: its instances are stopped by the reconciler; its releases and
    /// configs are removed.
    pub async fn delete_service(
        &self,
        env: &str,
        name: &str,
        actor: &str,
    ) -> Result<(), ControlError> {
        let key = keys::service(env, name);
        if self.store.get(&key).await?.is_none() {
            return Err(self.service_not_found(env, name).await);
        }
        let mut txn = Txn::new().delete(&key);
        for prefix in [keys::releases_of(env, name), keys::configs_of(env, name)] {
            for kv in self.store.list(&prefix).await?.kvs {
                txn = txn.delete(kv.key);
            }
        }
        self.store.txn(txn).await?;
        let mut event = Self::event("service.deleted", format!("{name}: deleted"));
        event.env = Some(env.to_string());
        event.service = Some(name.to_string());
        event.actor = actor.to_string();
        self.record(event).await;
        self.kick.notify_one();
        Ok(())
    }

    async fn service_not_found(&self, env: &str, name: &str) -> ControlError {
        let names: Vec<String> = self
            .list::<Service>(&keys::services_of(env))
            .await
            .map(|services| services.into_iter().map(|(s, _)| s.name).collect())
            .unwrap_or_default();
        let hint = if names.is_empty() {
            format!("environment `{env}` has no services; deploy one with `strata deploy FILE --env {env}`")
        } else {
            format!("services in `{env}`: {}", names.join(", "))
        };
        ControlError::not_found(
            format!("service `{name}` in environment `{env}`"),
            Some(hint),
        )
    }

    // ----- reads --------------------------------------------------------------------------

    pub async fn environments(&self) -> Result<Vec<Environment>, ControlError> {
        Ok(self
            .list(keys::ENVS)
            .await?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    pub async fn instance_views(&self) -> Result<Vec<InstanceView>, ControlError> {
        let instances: Vec<(Instance, u64)> = self.list(keys::INSTANCES).await?;
        let mut statuses: BTreeMap<String, InstanceStatus> = self
            .list::<InstanceStatus>(keys::STATUS)
            .await?
            .into_iter()
            .map(|(s, _)| (s.id.clone(), s))
            .collect();
        Ok(instances
            .into_iter()
            .map(|(instance, _)| {
                let status = statuses.remove(&instance.id);
                InstanceView { instance, status }
            })
            .collect())
    }

    pub async fn service_status(
        &self,
        env: &str,
        name: &str,
    ) -> Result<ServiceStatus, ControlError> {
        let Some((service, _)) = self.get::<Service>(&keys::service(env, name)).await? else {
            return Err(self.service_not_found(env, name).await);
        };
        let views = self.instance_views().await?;
        self.status_of(service, &views).await
    }

    async fn status_of(
        &self,
        service: Service,
        views: &[InstanceView],
    ) -> Result<ServiceStatus, ControlError> {
        let release: Option<Release> = self
            .get(&keys::release(
                &service.env,
                &service.name,
                service.desired_release,
            ))
            .await?
            .map(|(r, _)| r);
        let instances: Vec<InstanceView> = views
            .iter()
            .filter(|v| v.instance.env == service.env && v.instance.service == service.name)
            .cloned()
            .collect();
        let min_ready_ms = release
            .as_ref()
            .map_or(strata_core::spec::DEFAULT_MIN_READY_MS, |r| {
                r.spec.min_ready_ms
            });
        let now = now_millis();
        let available = instances
            .iter()
            .filter(|v| v.instance.release == service.desired_release)
            .filter(|v| v.is_available(now, min_ready_ms))
            .count() as u32;
        let port = self
            .config
            .ingress_port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let mut hosts = vec![default_host(&service.name, &service.env)];
        if let Some(release) = &release {
            if !release.spec.route.public {
                hosts.clear();
            } else {
                hosts.extend(release.spec.route.hosts.iter().cloned());
            }
        }
        let hosts = hosts
            .into_iter()
            .map(|h| format!("http://{h}{port}/"))
            .collect();
        Ok(ServiceStatus {
            service,
            release,
            instances,
            hosts,
            available,
        })
    }

    pub async fn services(&self, env: Option<&str>) -> Result<Vec<ServiceStatus>, ControlError> {
        let prefix = match env {
            Some(env) => keys::services_of(env),
            None => keys::SERVICES.to_string(),
        };
        let services: Vec<(Service, u64)> = self.list(&prefix).await?;
        let views = self.instance_views().await?;
        let mut out = Vec::new();
        for (service, _) in services {
            out.push(self.status_of(service, &views).await?);
        }
        Ok(out)
    }

    pub async fn releases(&self, env: &str, name: &str) -> Result<Vec<Release>, ControlError> {
        if self.store.get(&keys::service(env, name)).await?.is_none() {
            return Err(self.service_not_found(env, name).await);
        }
        Ok(self
            .list(&keys::releases_of(env, name))
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    pub async fn events(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>, ControlError> {
        let events: Vec<Event> = self
            .list::<Event>(keys::EVENTS)
            .await?
            .into_iter()
            .map(|(e, _)| e)
            .filter(|e| service.is_none() || e.service.as_deref() == service)
            .collect();
        let skip = events.len().saturating_sub(limit);
        Ok(events.into_iter().skip(skip).collect())
    }

    pub async fn nodes(&self) -> Result<Vec<Node>, ControlError> {
        Ok(self
            .list(keys::NODES)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// The routing table of every node's ingress and mesh proxy: every service's hosts,
    /// healthy endpoints, whether the ingress serves it, and who may call it.
    pub async fn routes(&self) -> Result<RouteTable, ControlError> {
        let revision = self.store.revision().await?;
        let policies: BTreeMap<String, CallPolicy> = self
            .environments()
            .await?
            .into_iter()
            .map(|env| (env.name, env.default_policy))
            .collect();
        let services = self.services(None).await?;
        let nodes = self.nodes().await?;
        let live_nodes: std::collections::BTreeSet<String> = nodes
            .iter()
            .filter(|node| node.state != NodeState::Down)
            .map(|node| node.name.clone())
            .collect();
        let peers: BTreeMap<String, String> = nodes
            .into_iter()
            .filter_map(|node| Some((node.name, node.mesh_addr?)))
            .collect();
        let routes = services
            .into_iter()
            .filter_map(|status| {
                let release = status.release?;
                let mut hosts = vec![default_host(&status.service.name, &status.service.env)];
                hosts.extend(release.spec.route.hosts.iter().cloned());
                let endpoint_nodes: BTreeMap<String, String> = status
                    .instances
                    .iter()
                    .filter(|v| v.is_routable())
                    .filter_map(|v| {
                        let address = v.status.as_ref()?.address.clone()?;
                        Some((address, v.instance.node.clone()))
                    })
                    .collect();
                let endpoints = endpoint_nodes.keys().cloned().collect();
                // Being stopped on a live node: its requests in flight finish there.
                let draining = status
                    .instances
                    .iter()
                    .filter(|v| v.instance.desired == DesiredState::Stopped)
                    .filter(|v| {
                        matches!(v.state(), InstanceState::Running | InstanceState::Stopping)
                    })
                    .filter(|v| live_nodes.contains(&v.instance.node))
                    .filter_map(|v| v.status.as_ref()?.address.clone())
                    .collect();
                let env_policy = policies
                    .get(&status.service.env)
                    .copied()
                    .unwrap_or_default();
                let (allow_from, policy_rule) = call_policy(
                    &status.service.name,
                    &status.service.env,
                    release
                        .spec
                        .mesh
                        .as_ref()
                        .and_then(|m| m.allow_from.as_ref()),
                    env_policy,
                );
                Some(Route {
                    env: status.service.env,
                    service: status.service.name,
                    hosts,
                    endpoints,
                    desired: status.service.replicas,
                    public: release.spec.route.public,
                    allow_from,
                    policy_rule,
                    limits: (&release.spec.mesh_settings()).into(),
                    endpoint_nodes,
                    scale_from_zero: status
                        .service
                        .autoscale
                        .is_some_and(|bounds| bounds.min == 0),
                    draining,
                })
            })
            .collect();
        Ok(RouteTable {
            revision,
            routes,
            peers,
        })
    }

    /// Sets environment `env`'s default for calls between its services (an audit event).
    pub async fn set_env_policy(
        &self,
        env: &str,
        policy: CallPolicy,
        actor: &str,
    ) -> Result<Environment, ControlError> {
        self.update_environment(env, actor, "env.policy", |record| {
            let before = record.default_policy;
            record.default_policy = policy;
            format!("environment {env}: calls between services default to {policy} (was {before})")
        })
        .await
    }

    /// Changes environment `env`'s record (made if it does not exist) with `change`, which
    /// returns the message of the `kind` event recorded once the change is written
    /// (compare-and-swap on the record's revision).
    pub(crate) async fn update_environment(
        &self,
        env: &str,
        actor: &str,
        kind: &str,
        change: impl Fn(&mut Environment) -> String,
    ) -> Result<Environment, ControlError> {
        check_name("environment", env)?;
        let key = keys::env(env);
        let (record, message) = self
            .update_cas(
                &key,
                &format!("environment `{env}`"),
                Writer::Api,
                |found: Option<Environment>| {
                    let mut record = found.unwrap_or_else(|| Environment {
                        name: env.to_string(),
                        created_at: now_millis(),
                        default_policy: CallPolicy::default(),
                        quota: None,
                    });
                    let message = change(&mut record);
                    Ok(Change::Write(record.clone(), (record, message)))
                },
            )
            .await?;
        self.record(Event {
            env: Some(env.to_string()),
            actor: actor.to_string(),
            ..Self::event(kind, message)
        })
        .await;
        Ok(record)
    }

    // ----- nodes and agents --------------------------------------------------------------

    /// Registers (or re-registers) a node. A node that comes back with the epoch it had and
    /// was never declared down keeps it, and re-adopts its instances; otherwise its epoch
    /// moves on and instances placed under the old one are fenced.
    pub async fn register_node(&self, request: RegisterNode) -> Result<Node, ControlError> {
        check_name("node", &request.name)?;
        let key = keys::node(&request.name);
        let what = format!("node `{}`", request.name);
        let node = self
            .update_cas(&key, &what, Writer::Api, |existing: Option<Node>| {
                let node = registered(existing.as_ref(), &request, now_millis());
                Ok(Change::Write(node.clone(), node))
            })
            .await?;
        self.note_heartbeat(&node.name);
        let mut event = Self::event(
            "node.registered",
            format!(
                "node {} registered at {} (epoch {})",
                node.name, node.agent_url, node.epoch
            ),
        );
        event.node = Some(node.name.clone());
        event.actor = format!("agent:{}", node.name);
        self.record(event).await;
        self.kick.notify_one();
        Ok(node)
    }

    /// Records a heartbeat (in memory). Returns whether the agent must register again
    /// (unknown node, or its epoch is stale because it was declared down meanwhile).
    pub async fn heartbeat(&self, name: &str, epoch: u64) -> Result<bool, ControlError> {
        let key = keys::node(name);
        let Some((mut node, revision)) = self.get::<Node>(&key).await? else {
            return Ok(true);
        };
        if node.epoch != epoch || node.state == NodeState::Down {
            return Ok(true);
        }
        self.note_heartbeat(name);
        if node.state == NodeState::Suspect {
            node.state = NodeState::Ready;
            node.last_heartbeat = now_millis();
            let committed = self
                .controller_txn(Txn::new().when(&key, revision).put(&key, encode(&node)))
                .await?
                .is_committed();
            if committed {
                let mut event = Self::event(
                    "node.ready",
                    format!("node {name}: suspect -> ready (heartbeats resumed)"),
                );
                event.node = Some(name.to_string());
                self.record(event).await;
            }
        }
        Ok(false)
    }

    /// Starts or ends a drain of a node. A drain moves the node's instances elsewhere with no
    /// downtime (replacements first) and keeps new work off it.
    pub async fn set_draining(
        &self,
        name: &str,
        draining: bool,
        actor: &str,
    ) -> Result<Node, ControlError> {
        let key = keys::node(name);
        let changed = self
            .update_cas(
                &key,
                &format!("node `{name}`"),
                Writer::Api,
                |found: Option<Node>| {
                    Ok(match found {
                        None => Change::Keep(None),
                        Some(node) if node.draining == draining => {
                            Change::Keep(Some((node, false)))
                        }
                        Some(mut node) => {
                            node.draining = draining;
                            Change::Write(node.clone(), Some((node, true)))
                        }
                    })
                },
            )
            .await?;
        let Some((node, changed)) = changed else {
            let names: Vec<String> = self.nodes().await?.into_iter().map(|n| n.name).collect();
            return Err(ControlError::not_found(
                format!("node `{name}`"),
                Some(format!("nodes: {}", names.join(", "))),
            ));
        };
        if changed {
            let (kind, what) = if draining {
                (
                    "node.draining",
                    "draining: its instances move to other nodes",
                )
            } else {
                ("node.undrained", "undrained: takes new work again")
            };
            let mut event = Self::event(kind, format!("node {name}: {what}"));
            event.node = Some(name.to_string());
            event.actor = actor.to_string();
            self.record(event).await;
            self.kick.notify_one();
        }
        Ok(node)
    }

    /// What a node must run: its instances with their releases and configs.
    pub async fn assignments(&self, node: &str) -> Result<Assignments, ControlError> {
        let revision = self.store.revision().await?;
        let instances: Vec<(Instance, u64)> = self.list(keys::INSTANCES).await?;
        let mut assignments = Vec::new();
        let mut releases: BTreeMap<String, Option<Release>> = BTreeMap::new();
        let mut configs: BTreeMap<String, Option<ConfigVersion>> = BTreeMap::new();
        for (instance, _) in instances.into_iter().filter(|(i, _)| i.node == node) {
            let release_key = keys::release(&instance.env, &instance.service, instance.release);
            if !releases.contains_key(&release_key) {
                let found = self.get(&release_key).await?.map(|(r, _)| r);
                releases.insert(release_key.clone(), found);
            }
            let Some(release) = releases[&release_key].clone() else {
                continue;
            };
            let config_key = keys::config(&instance.env, &instance.service, release.config_version);
            if !configs.contains_key(&config_key) {
                let found = self.get(&config_key).await?.map(|(c, _)| c);
                configs.insert(config_key.clone(), found);
            }
            let Some(config) = configs[&config_key].clone() else {
                continue;
            };
            assignments.push(Assignment {
                instance,
                release,
                config,
            });
        }
        Ok(Assignments {
            revision,
            assignments,
        })
    }

    /// Stores an agent's report on an instance; records an event when its state changes.
    /// Fails with not-found if the instance is no longer wanted (the agent then stops it).
    pub async fn report_status(&self, status: InstanceStatus) -> Result<(), ControlError> {
        let Some((instance, _)) = self.get::<Instance>(&keys::instance(&status.id)).await? else {
            return Err(ControlError::not_found(
                format!("instance `{}`", status.id),
                Some("it is no longer wanted; stop it".to_string()),
            ));
        };
        if instance.node != status.node {
            return Err(ControlError::Conflict {
                message: format!(
                    "instance `{}` belongs to node {}, not {}",
                    status.id, instance.node, status.node
                ),
                hint: Some("stop it".to_string()),
            });
        }
        let key = keys::status(&status.id);
        let previous: Option<(InstanceStatus, u64)> = self.get(&key).await?;
        let mut status = status;
        // Healthy since when, by this plane's clock: kept across reports while it stays
        // running, so `min_ready` measures an unbroken stretch.
        status.ready_since = match (status.state, &previous) {
            (InstanceState::Running, Some((p, _))) if p.state == InstanceState::Running => {
                p.ready_since.or(Some(now_millis()))
            }
            (InstanceState::Running, _) => Some(now_millis()),
            _ => None,
        };
        self.store.put(&key, encode(&status)).await?;
        let changed = previous.as_ref().map(|(p, _)| p.state) != Some(status.state);
        if changed {
            let kind = match status.state {
                InstanceState::Running => "instance.healthy",
                InstanceState::Backoff => "instance.crashed",
                InstanceState::Unhealthy => "instance.unhealthy",
                InstanceState::Failed => "instance.failed",
                InstanceState::Stopped => "instance.stopped",
                InstanceState::Starting => "instance.started",
                InstanceState::Stopping => "instance.stopping",
                InstanceState::Pending => "instance.pending",
            };
            let mut event = Self::event(kind, format!("{}: {}", status.id, status.message));
            event.env = Some(instance.env.clone());
            event.service = Some(instance.service.clone());
            event.instance = Some(status.id.clone());
            event.node = Some(status.node.clone());
            event.actor = format!("agent:{}", status.node);
            self.record(event).await;
            self.kick.notify_one();
        }
        Ok(())
    }

    /// Marks an instance as no longer wanted (idempotent). Fails, rather than giving up
    /// silently, if the record keeps changing.
    pub(crate) async fn request_stop(&self, id: &str, why: &str) -> Result<(), ControlError> {
        let key = keys::instance(id);
        let stopped = self
            .update_cas(
                &key,
                &format!("instance `{id}`"),
                Writer::Controller,
                |found: Option<Instance>| {
                    Ok(match found {
                        Some(mut instance) if instance.desired != DesiredState::Stopped => {
                            instance.desired = DesiredState::Stopped;
                            instance.stop_requested_at = Some(now_millis());
                            Change::Write(instance.clone(), Some(instance))
                        }
                        _ => Change::Keep(None),
                    })
                },
            )
            .await?;
        if let Some(instance) = stopped {
            let mut event = Self::event("instance.stop", format!("{id}: stopping ({why})"));
            event.env = Some(instance.env.clone());
            event.service = Some(instance.service.clone());
            event.instance = Some(id.to_string());
            event.node = Some(instance.node.clone());
            self.record(event).await;
        }
        Ok(())
    }

    /// Wakes the reconciler.
    pub fn kick(&self) {
        self.kick.notify_one();
    }
}

/// The node record a registration makes of what was stored (`None`: a new node). A node
/// that comes back with the epoch it had and was never declared down keeps it (and re-adopts
/// its instances); otherwise its epoch moves on and instances placed under the old one are
/// fenced.
fn registered(existing: Option<&Node>, request: &RegisterNode, now: u64) -> Node {
    let epoch = match existing {
        Some(node) if node.state != NodeState::Down && request.last_epoch == Some(node.epoch) => {
            node.epoch
        }
        Some(node) => node.epoch + 1,
        None => 1,
    };
    Node {
        name: request.name.clone(),
        agent_url: request.agent_url.clone(),
        labels: request.labels.clone(),
        capacity: request.capacity,
        drivers: request.drivers.clone(),
        epoch,
        state: NodeState::Ready,
        draining: existing.is_some_and(|n| n.draining),
        mesh_addr: request.mesh_addr.clone(),
        last_heartbeat: now,
        registered_at: existing.map_or(now, |n| n.registered_at),
    }
}

/// `sha256:0123456789ab` (the first 12 hex digits), for messages.
pub fn short_digest(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

/// Who may call service `service` of `env` through the mesh, and the rule that says so: its
/// own `allow_from` if it has one, else the environment's default.
pub fn call_policy(
    service: &str,
    env: &str,
    allow_from: Option<&Vec<String>>,
    env_policy: CallPolicy,
) -> (Option<Vec<String>>, String) {
    match (allow_from, env_policy) {
        (Some(list), _) => (
            Some(list.clone()),
            format!("{service}.allow_from = [{}]", list.join(", ")),
        ),
        (None, CallPolicy::Allow) => (
            None,
            format!("environment {env} allows calls between its services"),
        ),
        (None, CallPolicy::Deny) => (
            Some(Vec::new()),
            format!(
                "environment {env} denies calls by default and {service} sets no [mesh] allow_from"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_rule_wins_over_the_environment_default() {
        let admin = vec!["admin".to_string()];
        let table = [
            (
                Some(&admin),
                CallPolicy::Allow,
                Some(vec!["admin"]),
                "vault.allow_from = [admin]",
            ),
            (
                Some(&admin),
                CallPolicy::Deny,
                Some(vec!["admin"]),
                "vault.allow_from = [admin]",
            ),
            (
                None,
                CallPolicy::Allow,
                None,
                "environment prod allows calls between its services",
            ),
            (
                None,
                CallPolicy::Deny,
                Some(vec![]),
                "environment prod denies calls by default and vault sets no [mesh] allow_from",
            ),
        ];
        for (allow_from, env_policy, want, rule) in table {
            let (got, got_rule) = call_policy("vault", "prod", allow_from, env_policy);
            let want: Option<Vec<String>> =
                want.map(|list| list.into_iter().map(String::from).collect());
            assert_eq!(got, want, "{allow_from:?} {env_policy}");
            assert_eq!(got_rule, rule);
        }
    }

    #[test]
    fn a_registration_keeps_the_epoch_only_of_a_node_that_never_went_down() {
        let request = |last_epoch| RegisterNode {
            name: "n1".into(),
            agent_url: "http://10.0.0.1:7701".into(),
            labels: BTreeMap::new(),
            capacity: Default::default(),
            drivers: vec![],
            last_epoch,
            mesh_addr: None,
        };
        let stored = |epoch, state, draining| Node {
            epoch,
            state,
            draining,
            registered_at: 5,
            ..registered(None, &request(None), 5)
        };
        // (stored, last epoch the agent ran under, epoch, draining kept, registered_at)
        let table = [
            (None, None, 1, false, 100),
            (
                Some(stored(3, NodeState::Ready, false)),
                Some(3),
                3,
                false,
                5,
            ),
            (
                Some(stored(3, NodeState::Suspect, true)),
                Some(3),
                3,
                true,
                5,
            ),
            (
                Some(stored(3, NodeState::Down, false)),
                Some(3),
                4,
                false,
                5,
            ),
            (
                Some(stored(3, NodeState::Ready, false)),
                Some(2),
                4,
                false,
                5,
            ),
            (Some(stored(3, NodeState::Ready, false)), None, 4, false, 5),
        ];
        for (existing, last, epoch, draining, since) in table {
            let node = registered(existing.as_ref(), &request(last), 100);
            assert_eq!(
                (node.epoch, node.draining, node.registered_at, node.state),
                (epoch, draining, since, NodeState::Ready),
                "{existing:?} {last:?}"
            );
        }
    }
}
