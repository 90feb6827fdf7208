//! The etcd v3 backend: [`EtcdStore`], the state store kept in an etcd cluster.
//!
//! This is the store of a highly available Strata control plane: several control-plane
//! replicas share one etcd cluster (3 or 5 members), which keeps the state replicated and
//! survives the loss of a minority of its members. [`Store`]'s semantics are etcd v3's, so
//! this backend maps each call onto one etcd request (or a few, for listings).
//!
//! # Connecting
//!
//! [`EtcdOptions::parse`] reads the URL form
//! `etcd[s]://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/NAMESPACE]`; [`EtcdStore::connect`]
//! connects to every endpoint (requests are balanced over them; one that fails because its
//! member is down is retried, see below) and fails with [`StoreError::Open`] naming the
//! endpoints if no member answers a linearizable read within
//! [`EtcdOptions::connect_timeout`].
//!
//! - `etcd://` is plain-text gRPC (`http://` to every member).
//! - `etcds://` is gRPC over TLS (`https://` to every member; rustls, no OpenSSL). The
//!   members' certificates are checked against the CA of [`EtcdTls::ca_pem`], or the
//!   system's trust roots without one, and must name the host as written in the URL (a DNS
//!   name, or an IP address in the certificate's subject alternative names). With
//!   [`EtcdTls::client_cert_pem`] and [`EtcdTls::client_key_pem`] the client also presents
//!   a certificate: mutual TLS, for an etcd started with `--client-cert-auth` and
//!   `--trusted-ca-file`. [`EtcdTls::from_files`] reads the three PEM files (Strata's
//!   `--store-ca`, `--store-cert` and `--store-key`); [`EtcdOptions::with_tls`] sets them and
//!   refuses them for a plain `etcd://` URL. A member whose certificate is not trusted, or
//!   that refuses the client's (or the lack of one), fails the connect at once with
//!   [`StoreError::Open`] naming the endpoints and what the TLS handshake said.
//! - `USER:PASSWORD@` is etcd's own authentication (`etcdctl auth enable`), independent of
//!   TLS (and best only used over it, as the password crosses the network): the client
//!   authenticates and refreshes its token when it expires. With mutual TLS and etcd's
//!   authentication on, etcd takes the user from the client certificate's common name
//!   when no `USER:PASSWORD@` is given.
//!
//! # Namespaces
//!
//! A namespace such as `/strata` prefixes every key on the way in (`/envs/prod` is stored
//! as `/strata/envs/prod`) and is stripped on the way out (gets, listings, watch events,
//! conflicts), so several Strata clusters, or the conformance suite's fresh stores, can share
//! one etcd. In a namespaced store every key must start with `/` (Strata's keys all do), so
//! that the namespaces `/a` and `/ab` can never see each other's keys; a key without the
//! leading `/` is rejected with [`StoreError::InvalidKey`]. The empty namespace stores keys as
//! they are.
//!
//! # Mapping
//!
//! - [`KeyValue`]: etcd's `create_revision`, `mod_revision`, `version` and `lease` (etcd's
//!   lease 0 is `None`). Keys that are not UTF-8 (written by something else) are reported as
//!   [`StoreError::Backend`].
//! - [`Store::txn`]: one etcd `Txn`. Each [`Compare`](crate::Compare) is etcd's
//!   `mod_revision == N`; etcd reads an absent key's `mod_revision` as 0, so 0 means "absent"
//!   exactly as in [`Store`]. The failure branch reads every compared key in the same
//!   transaction, so [`TxnOutcome::Conflict`] names the first compare that really failed,
//!   without a second, racy read. A committed txn returns the response header's revision
//!   (etcd does not bump the revision for a txn that changes nothing).
//! - etcd refuses a txn that puts or deletes the same key twice ("duplicate key given in txn
//!   request"). Such a txn is answered like etcd would answer a valid one as far as it can:
//!   its compares are checked first (a failed compare is a `Conflict`, as on every backend),
//!   and only then is it rejected with [`StoreError::Backend`] naming the key. The embedded
//!   backend applies such ops in order; code meant to run on both should not write a key
//!   twice in one txn.
//! - [`Store::list_page`]: a range `[max(prefix, start_after + "\0"), prefix_end)` in key
//!   order with etcd's `limit`; `next` is set when etcd says there is `more`; the page's
//!   revision is the response header's. `limit` 0 and [`Store::list`] read in pages of
//!   [`LIST_PAGE`] keys, all at the first page's revision (etcd's `revision` option), so a
//!   listing of any size is one consistent snapshot and no response grows unbounded.
//! - [`Store::watch`]: an etcd watch over the prefix range from `from` (from 0: from the
//!   current revision + 1, read just before), with `prev_kv` so that deletes carry the value
//!   before. A watch whose start was compacted away fails with [`StoreError::Compacted`]
//!   (`oldest` is etcd's `compact_revision`); watch responses never split a revision, so the
//!   stream knows the next revision it owes the caller. If the stream breaks (a member
//!   restarts, the connection drops, the member loses its leader), it re-watches from that
//!   revision on any member that answers, dropping anything already delivered: no gap, no
//!   duplicate. It gives up with [`StoreError::Backend`] if no member lets it resume within
//!   [`WATCH_RESUME_TIMEOUT`], and ends with [`StoreError::Closed`] once the last handle to
//!   the store is dropped.
//! - [`Store::revision`]: the header revision of a linearizable count-only read.
//! - Leases: etcd leases have a granularity of one second. [`Store::grant_lease`] rounds the
//!   TTL up to whole seconds (at least 1), and etcd itself raises it to its minimum TTL
//!   (1.5 election timeouts, rounded up: 2 s with etcd's defaults), so short leases live
//!   longer than asked. [`Store::keep_alive`] is one request and response on a keep-alive
//!   stream; etcd answers TTL 0 for an unknown or expired lease, which is
//!   [`StoreError::LeaseNotFound`], as is revoking an unknown lease or putting a key with
//!   one.
//!
//! # Errors and timeouts
//!
//! Every request is bounded by [`REQUEST_TIMEOUT`]. etcd and transport errors become
//! [`StoreError::Backend`] naming the operation and key; when no member could be reached (or
//! none has a leader) they are [`StoreError::Unavailable`], whose message lists the
//! endpoints: the control plane answers those 503, which clients retry on another server. Reads (get, list, revision, keep-alive, opening a
//! watch) are retried while the cluster is unavailable, within that bound. Writes are retried
//! only when they certainly never reached etcd (no connection to the member, or the member
//! had no leader); a write whose answer was lost may have been applied, so it fails instead.

mod connect;
mod failure;
mod list;
mod mapping;
mod options;
mod request;
mod tls;
mod txn;
mod watch;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{KvClient, LeaseClient, WatchClient};
use tokio::sync::watch as signal;

use crate::{KeyValue, LeaseId, Page, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream};
use mapping::{header_revision, lease_in, lease_out};

pub use options::EtcdOptions;
pub use tls::EtcdTls;

/// The URL form [`EtcdOptions::parse`] reads (`etcds://`: TLS).
pub const URL_FORM: &str = "etcd[s]://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/NAMESPACE]";

/// The [`EtcdOptions::connect_timeout`] that [`EtcdOptions::parse`] and [`EtcdOptions::new`]
/// give.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest any one request (or a listing's page) may take, retries included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a broken watch keeps trying to resume before it fails.
pub const WATCH_RESUME_TIMEOUT: Duration = Duration::from_secs(60);

/// How many keys a listing reads per request.
pub const LIST_PAGE: usize = 1000;

/// The largest gRPC message the client accepts (etcd's Go client's default).
const MAX_MESSAGE: usize = i32::MAX as usize;

/// HTTP/2 keep-alive: a ping every interval, the connection is dropped if one is not
/// answered within the timeout (so a silently dead member is noticed by watches).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an unavailable cluster is retried, at first and at most.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// The store.

/// The etcd [`Store`]. See the [module docs](self).
///
/// Cloning is cheap and shares the connection. Open watches end with [`StoreError::Closed`]
/// once the last clone is dropped.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
    /// Dropped with the last clone, which tells the watches.
    _alive: Arc<signal::Sender<()>>,
}

/// What the store and its watches use.
struct Shared {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    /// `""` or `/segments`.
    namespace: String,
    /// The endpoints, for messages.
    endpoints: String,
    /// Becomes "changed with an error" when the last store handle is dropped.
    closed: signal::Receiver<()>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.shared.endpoints)
            .field("namespace", &self.shared.namespace)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Parses `url` ([`EtcdOptions::parse`]) and connects.
    pub async fn connect_url(url: &str) -> Result<EtcdStore, StoreError> {
        Self::connect(EtcdOptions::parse(url)?).await
    }

    /// The namespace every key is prefixed with (`""`: none).
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let shared = &*self.shared;
        let raw = shared.key_in(key)?;
        let resp = shared
            .call(true, || {
                let (mut kv, key) = (shared.kv.clone(), raw.clone());
                async move { kv.get(key, None).await }
            })
            .await
            .map_err(|f| shared.fail(&format!("get of {key}"), f))?;
        resp.0
            .kvs
            .into_iter()
            .next()
            .map(|kv| shared.kv_out(kv))
            .transpose()
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.shared.txn(txn).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.shared.list_page(prefix, start_after, limit).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream, StoreError> {
        watch::watch(&self.shared, prefix, from).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.shared.revision().await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let shared = &*self.shared;
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000).max(1)).unwrap_or(i64::MAX);
        let what = format!("grant of a {seconds}s lease");
        let resp = shared
            .call(false, || {
                let mut lease = shared.lease.clone();
                async move { lease.grant(seconds, None).await }
            })
            .await
            .map_err(|f| shared.fail(&what, f))?;
        if !resp.error().is_empty() {
            return Err(StoreError::Backend(format!(
                "etcd {what} failed: {}",
                resp.error()
            )));
        }
        lease_out(resp.id())
            .ok_or_else(|| StoreError::Backend(format!("etcd {what}: got lease id {}", resp.id())))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let shared = &*self.shared;
        let id = lease_in(lease).ok_or(StoreError::LeaseNotFound(lease))?;
        match shared
            .call(true, || {
                let mut lease = shared.lease.clone();
                async move { lease.keep_alive(id).await }
            })
            .await
        {
            // The first reply had a TTL (etcd-client checks it); dropping the keeper and its
            // stream ends the keep-alive stream.
            Ok(_) => Ok(()),
            Err(f) if f.is_lease_not_found() => Err(StoreError::LeaseNotFound(lease)),
            Err(f) => Err(shared.fail(&format!("keep-alive of lease {lease}"), f)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let shared = &*self.shared;
        let id = lease_in(lease).ok_or(StoreError::LeaseNotFound(lease))?;
        match shared
            .call(false, || {
                let mut lease = shared.lease.clone();
                async move { lease.revoke(id).await }
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(f) if f.is_lease_not_found() => Err(StoreError::LeaseNotFound(lease)),
            Err(f) => Err(shared.fail(&format!("revoke of lease {lease}"), f)),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let shared = &*self.shared;
        let raw = shared.key_in(key)?;
        let what = format!("put of {key}");
        let resp = shared
            .call(false, || {
                let (mut kv, key, value) = (shared.kv.clone(), raw.clone(), value.clone());
                async move { kv.put(key, value, None).await }
            })
            .await
            .map_err(|f| shared.fail(&what, f))?;
        header_revision(resp.0.header.as_ref(), &what)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let shared = &*self.shared;
        let raw = shared.key_in(key)?;
        let resp = shared
            .call(false, || {
                let (mut kv, key) = (shared.kv.clone(), raw.clone());
                async move { kv.delete(key, None).await }
            })
            .await
            .map_err(|f| shared.fail(&format!("delete of {key}"), f))?;
        Ok(resp.deleted() > 0)
    }

    /// The ranges between the skipped prefixes, all at one revision.
    async fn snapshot_without(&self, skipped: &[&str]) -> Result<Page, StoreError> {
        self.shared.snapshot_without(skipped).await
    }

    /// One consistent read: pages of [`LIST_PAGE`] keys, all at the first page's revision.
    async fn list(&self, prefix: &str) -> Result<Page, StoreError> {
        self.list_page(prefix, None, 0).await
    }
}
