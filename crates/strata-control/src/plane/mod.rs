//! The control plane's typed operations over the store. Every write that can race is a
//! transaction guarded by the revisions it read (compare-and-swap), retried a bounded number
//! of times on conflict (`crate::cas`).
//!
//! The plane composes the parts that each own a concern and its state: the cluster identity
//! ([`crate::identity::Identity`]: CA, node certificates, the client to other servers), the
//! event log ([`crate::event_log::EventLog`]), nodes' heartbeats
//! ([`crate::heartbeats::Heartbeats`]), their traffic ([`crate::traffic::Traffic`]), the
//! leader's fence ([`crate::leader::Fence`]) and the artifacts ([`BlobStore`]). Its own
//! operations are the ones over the desired state, by concern: [`nodes`] (registration,
//! heartbeats, drains, assignments, status), [`deploys`] (deploys, deletes, environments) and
//! [`reads`] (what the API lists). It never sees HTTP: the API turns requests into these
//! calls, and forwards to the leader itself (`crate::api::forward`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_core::api::{
    default_host, Assignment, Assignments, DeployRequest, DeployResponse, DeployService,
    DeployedService, RegisterNode, Route, RouteTable, ServiceStatus, StatusReportsStored,
};
use strata_core::spec::{config_hash, DriverKind};
use strata_core::{
    keys, Actor, CallPolicy, ConfigVersion, DesiredState, EnvName, Environment, Event, EventKind,
    Instance, InstanceId, InstanceState, InstanceStatus, InstanceView, Node, NodeName, NodeState,
    Origin, Release, Service, ServiceName,
};
use strata_sched::liveness::LivenessThresholds;
use strata_sched::{plan_deploy, DeployCurrent, DeployWant};
use strata_store::{KeyValue, Store, Txn, TxnOutcome};
use tokio::sync::Notify;

use crate::blobs::BlobStore;
use crate::cas::{Change, Writer};
use crate::event_log::{event, EventLog};
use crate::heartbeats::Heartbeats;
use crate::identity::Identity;
use crate::leader::{ElectionConfig, Fence, LeaderTerm};
use crate::traffic::Traffic;
use crate::{now_millis, ControlError};

pub mod archives;
mod decommissions;
mod deploys;
pub mod hosts;
pub mod lifecycle;
mod nodes;

pub(crate) use nodes::stop_event;
mod preview;
mod progressive;
mod promotions;
mod quarantines;
mod reads;
mod rollbacks;
mod stored;

/// How many times a read-modify-write is retried when another writer got there first.
pub(crate) const CAS_ATTEMPTS: usize = 16;

/// How long a read waits for this server's reflector to reach the store.
pub const REFLECTOR_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// How long events are kept.
    pub event_retention: std::time::Duration,
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
    /// How long a node stays listed once down, silent and empty, before the leader forgets
    /// it (0: never; `strata node rm` removes one at once).
    pub forget_down_after_ms: u64,
    /// The file of key-encryption keys the secrets' data key is sealed under (made 0600 at
    /// the first start; `--secrets-key-file`, default `DATA_DIR/secrets.key`).
    pub secrets_key_file: PathBuf,
}

/// The default of [`ControlConfig::forget_down_after_ms`]: a day.
pub const DEFAULT_FORGET_DOWN_AFTER: std::time::Duration =
    std::time::Duration::from_secs(24 * 60 * 60);

/// The default of [`ControlConfig::scale_down_window`].
pub const DEFAULT_SCALE_DOWN_WINDOW: std::time::Duration =
    std::time::Duration::from_millis(strata_sched::autoscale::DEFAULT_STABLE_WINDOW_MS);

/// The last lines of gone instances' logs are kept this long unless the server is told
/// otherwise.
pub const DEFAULT_LOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Events are kept a day unless the server is told otherwise: what `strata events` and the
/// status's explanations read, and a fleet placing a million instances writes millions.
pub const DEFAULT_EVENT_RETENTION: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Nodes' certificates are valid a day unless the server is told otherwise.
pub const DEFAULT_NODE_CERT_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The control plane: typed operations over the store, shared by the API and the controllers.
pub struct ControlPlane {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blobs: BlobStore,
    pub(crate) config: ControlConfig,
    /// Wakes the reconciler early (after a deploy, a status report, ...).
    pub(crate) kick: Notify,
    /// The wall and monotonic clocks (a test's harness drives its own).
    clock: Arc<dyn crate::clock::Clock>,
    /// The CA, node certificates and the client to other servers and agents.
    identity: Identity,
    /// What happened, under `/events/`.
    events: EventLog,
    /// When each node was last heard from (in memory, on the leader).
    heartbeats: Heartbeats,
    /// Every node's per-service traffic, per second (in memory, on the leader).
    traffic: Traffic,
    /// This server's terms as leader, as the election publishes them.
    terms: tokio::sync::watch::Sender<Option<LeaderTerm>>,
    /// Whether this server stands for election (until it stops).
    standing: Arc<std::sync::atomic::AtomicBool>,
    /// What controllers' writes are checked against.
    fence: Fence,
    /// Tokens and node credentials: who a request is.
    credentials: crate::credentials::Credentials,
    /// Audit records written, for their sequence numbers.
    pub(crate) audit_counter: AtomicU64,
    /// Open watches per identity.
    watchers: crate::guard::Watchers,
    /// Repeated refusals folded into one audit record per window.
    refusals: crate::guard::RefusalFolder,
    /// The cluster's state kept current from the store's watch (what the hot paths read).
    reflector: Arc<crate::reflector::Reflector>,
    /// The key-encryption keys and, once opened, the secrets' data key.
    pub(crate) secrets: crate::secrets::SecretsKeeper,
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

/// A DNS label: what token names must be (environment, service and node names are their own
/// types, checked where they enter: [`strata_core::names`]).
pub fn valid_name(name: &str) -> bool {
    strata_core::names::is_dns_label(name)
}

impl ControlPlane {
    pub fn new(store: Arc<dyn Store>, config: ControlConfig) -> Result<Arc<Self>, ControlError> {
        Self::with_clock(
            store,
            config,
            Arc::new(crate::clock::SystemClock::default()),
        )
    }

    /// A control plane reading `clock` for time (tests drive a [`crate::clock::ManualClock`]).
    pub fn with_clock(
        store: Arc<dyn Store>,
        config: ControlConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Arc<Self>, ControlError> {
        let blobs = BlobStore::open(&config.data_dir.join("blobs"))?;
        let credentials = crate::credentials::Credentials::new(
            store.clone(),
            config.credential_key.clone(),
            config.join_token.clone(),
        );
        let secrets = crate::secrets::SecretsKeeper::open(&config.secrets_key_file)
            .map_err(|error| ControlError::Internal(format!("{error}; {}", error.hint())))?;
        let terms = tokio::sync::watch::channel(None).0;
        let fence = Fence::new(store.clone(), terms.subscribe());
        Ok(Arc::new(Self {
            reflector: crate::reflector::Reflector::start(store.clone()),
            secrets,
            credentials,
            audit_counter: AtomicU64::new(0),
            watchers: crate::guard::Watchers::default(),
            refusals: crate::guard::RefusalFolder::default(),
            identity: Identity::new(
                store.clone(),
                config.api_ca_pem.clone(),
                config.node_cert_ttl,
            ),
            events: EventLog::new(
                store.clone(),
                fence.clone(),
                clock.clone(),
                config.server_id.clone(),
            ),
            heartbeats: Heartbeats::new(clock.clone(), config.liveness.down_after_ms),
            traffic: Traffic::new(clock.clone()),
            fence,
            terms,
            standing: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            store,
            blobs,
            config,
            kick: Notify::new(),
            clock,
        }))
    }

    /// Starts campaigning for leadership (see [`crate::leader`]).
    pub fn start_election(self: &Arc<Self>) {
        let config = ElectionConfig {
            server_id: self.config.server_id.clone(),
            api_url: self.config.api_url.clone(),
            lease_ttl: self.config.lease_ttl,
            standing: self.standing.clone(),
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
                    let event = event(
                        EventKind::LeaderElected,
                        format!(
                            "server {} at {} leads (term {})",
                            plane.config.server_id, plane.config.api_url, term.revision
                        ),
                    );
                    plane.events.record(event).await;
                }
            }
        });
    }

    /// The server is stopping: it stands for election no more and, if it leads, gives the
    /// lead up now (its lease revoked, `/leader` deleted), so another server takes over at
    /// once instead of when the lease expires.
    pub async fn resign(&self) {
        self.standing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if let Some(term) = self.term() {
            match self.store.revoke_lease(term.lease).await {
                Ok(()) => tracing::info!(term = term.revision, "gave up the lead"),
                Err(error) => {
                    tracing::warn!(%error, "could not give up the lead; another server takes it when the lease expires")
                }
            }
        }
    }

    /// This server's current term as leader, if it leads.
    pub fn term(&self) -> Option<LeaderTerm> {
        self.fence.term()
    }

    /// A fence of its own for a controller's loop, to wait on leadership with.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    pub fn server_id(&self) -> &str {
        &self.config.server_id
    }

    /// Applies a controller's write, fenced by this server's term (see [`Fence::txn`]).
    pub async fn controller_txn(&self, txn: Txn) -> Result<TxnOutcome, ControlError> {
        self.fence.txn(txn).await
    }

    /// The CA, node certificates and the client to other servers and agents.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The event log.
    pub fn event_log(&self) -> &EventLog {
        &self.events
    }

    /// When each node was last heard from.
    pub fn heartbeats(&self) -> &Heartbeats {
        &self.heartbeats
    }

    /// The cluster's state as the store's watch last showed it.
    pub fn reflector(&self) -> &crate::reflector::Reflector {
        &self.reflector
    }

    /// Waits until the reflector holds every write the store had committed when called
    /// (what a read that must see acknowledged writes needs); fails as unavailable (worth
    /// retrying) if it does not within [`REFLECTOR_CATCH_UP`].
    pub(crate) async fn reflector_caught_up(&self) -> Result<(), ControlError> {
        if self
            .reflector
            .caught_up_with(self.store.as_ref(), REFLECTOR_CATCH_UP)
            .await?
        {
            return Ok(());
        }
        Err(ControlError::Store(strata_store::StoreError::Unavailable(
            "this server's view of the cluster is behind the store; ask again".into(),
        )))
    }

    /// Nodes' per-service traffic.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
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

    /// Milliseconds since the Unix epoch, by this plane's clock.
    pub fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    /// Milliseconds on a monotonic clock since this control plane started.
    pub fn monotonic_ms(&self) -> u64 {
        self.clock.monotonic_ms()
    }

    /// Wakes the reconciler.
    pub fn kick(&self) {
        self.kick.notify_one();
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
}
