//! Leader election: of all the servers sharing one store, exactly one runs the controllers
//! (reconciler, liveness) at a time.
//!
//! A server campaigns by creating the key `/leader` bound to a lease of its own (a
//! transaction that succeeds only if the key is absent). While it keeps the lease alive it is
//! the leader; its *term* is the revision at which it created the key. Every controller write
//! carries the compare "`/leader` is still at my term's revision" ([`LeaderTerm::fence`]), so a
//! deposed leader (paused, partitioned, slow to notice) cannot write: once its lease expires
//! the key is deleted, and once another server wins it is recreated at a later revision.
//! Followers watch the key and campaign again when it disappears.
//!
//! A server restarting with the same identity (its data directory's `server-id`) revokes its
//! own stale lease at once instead of waiting for it to expire.
//!
//! A crashed leader is replaced faster than its lease: followers probe the leader's API, and
//! when its address refuses connections (the process is gone while its host is up) on two
//! probes in a row, they revoke its lease. A leader that is merely slow, frozen or cut off
//! still answers the TCP handshake or times out instead; it loses only by lease expiry. Either
//! way the fence keeps a deposed leader from writing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use strata_store::{LeaseId, Revision, Store, Txn, TxnOutcome, WatchEvent};
use tokio::sync::watch;

use crate::ControlError;

/// The key the leader holds.
pub const LEADER_KEY: &str = strata_core::keys::LEADER;

/// What `/leader` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub server_id: String,
    /// The leader's API, where followers forward heartbeats.
    pub api_url: String,
    pub lease: LeaseId,
}

/// One term of leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderTerm {
    pub lease: LeaseId,
    /// The revision at which this server created `/leader`.
    pub revision: Revision,
}

impl LeaderTerm {
    /// Adds the fencing compare to a controller's transaction.
    pub fn fence(&self, txn: Txn) -> Txn {
        txn.when(LEADER_KEY, self.revision)
    }
}

/// What lets a controller write: the term this server leads in, checked by the store on every
/// write ([`LeaderTerm::fence`]). Cloned into each part of the plane that writes as the
/// controller (the event log, the reconciler through the plane).
#[derive(Clone)]
pub struct Fence {
    store: Arc<dyn Store>,
    terms: watch::Receiver<Option<LeaderTerm>>,
}

impl Fence {
    pub fn new(store: Arc<dyn Store>, terms: watch::Receiver<Option<LeaderTerm>>) -> Fence {
        Fence { store, terms }
    }

    /// This server's current term as leader, if it leads.
    pub fn term(&self) -> Option<LeaderTerm> {
        *self.terms.borrow()
    }

    /// Waits until this server leads (at once if it does). `false` when the election is over
    /// (the server is shutting down): a controller's loop ends then.
    pub async fn wait_to_lead(&mut self) -> bool {
        self.terms.wait_for(Option::is_some).await.is_ok()
    }

    /// Waits until leadership changes; `false` when the election is over.
    pub async fn changed(&mut self) -> bool {
        self.terms.changed().await.is_ok()
    }

    /// Applies a controller's write, fenced by this server's term: it lands only while this
    /// server still leads. A deposed leader gets [`ControlError::NotLeader`].
    pub async fn txn(&self, txn: Txn) -> Result<TxnOutcome, ControlError> {
        let term = self.term().ok_or(ControlError::NotLeader)?;
        match self.store.txn(term.fence(txn)).await? {
            TxnOutcome::Conflict { key } if key == LEADER_KEY => {
                tracing::warn!("a controller write was fenced off: this server no longer leads");
                Err(ControlError::NotLeader)
            }
            outcome => Ok(outcome),
        }
    }
}

/// Election settings.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub server_id: String,
    pub api_url: String,
    /// The leader's lease. etcd rounds it up to whole seconds with a minimum near 2 s.
    pub lease_ttl: Duration,
    /// Cleared when the server stops: it campaigns no more (see [`crate::ControlPlane::resign`]).
    pub standing: Arc<std::sync::atomic::AtomicBool>,
}

/// Campaigns forever, publishing the current term (`None` while not leader) on `terms`.
pub async fn campaign(
    store: Arc<dyn Store>,
    config: ElectionConfig,
    terms: watch::Sender<Option<LeaderTerm>>,
) {
    loop {
        if !config.standing.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        match try_lead(&store, &config).await {
            Ok(Some(term)) => {
                tracing::info!(server = %config.server_id, term = term.revision, "elected leader");
                let _ = terms.send(Some(term));
                hold(&store, &config, term).await;
                let _ = terms.send(None);
                tracing::warn!(server = %config.server_id, "lost leadership");
            }
            Ok(None) => wait_for_vacancy(&store).await,
            Err(error) => {
                tracing::warn!(%error, "campaign failed; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// One attempt to become leader.
async fn try_lead(
    store: &Arc<dyn Store>,
    config: &ElectionConfig,
) -> Result<Option<LeaderTerm>, strata_store::StoreError> {
    if let Some(current) = store.get(LEADER_KEY).await? {
        let record: Option<LeaderRecord> = serde_json::from_slice(&current.value).ok();
        match record {
            // Our own key from before a restart: take it back now.
            Some(record) if record.server_id == config.server_id => {
                let _ = store.revoke_lease(record.lease).await;
                let _ = store
                    .txn(
                        Txn::new()
                            .when(LEADER_KEY, current.mod_revision)
                            .delete(LEADER_KEY),
                    )
                    .await;
            }
            _ => return Ok(None),
        }
    }
    let lease = store.grant_lease(config.lease_ttl).await?;
    let record = LeaderRecord {
        server_id: config.server_id.clone(),
        api_url: config.api_url.clone(),
        lease,
    };
    let value = serde_json::to_vec(&record).expect("record serializes");
    match store
        .txn(
            Txn::new()
                .when(LEADER_KEY, 0)
                .put_with_lease(LEADER_KEY, value, lease),
        )
        .await?
    {
        TxnOutcome::Committed(revision) => Ok(Some(LeaderTerm { lease, revision })),
        TxnOutcome::Conflict { .. } => {
            let _ = store.revoke_lease(lease).await;
            Ok(None)
        }
    }
}

/// Keeps the lease alive until it cannot, or the key is no longer ours.
async fn hold(store: &Arc<dyn Store>, config: &ElectionConfig, term: LeaderTerm) {
    let period = (config.lease_ttl / 4).max(Duration::from_millis(100));
    let deadline_after = config.lease_ttl;
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(period).await;
        // The store counts the lease's life from when the renewal reached it, which is no
        // earlier than when it was sent: counting from then keeps this side's deadline first.
        let sent = tokio::time::Instant::now();
        let renewed = tokio::time::timeout(period, store.keep_alive(term.lease)).await;
        match renewed {
            Ok(Ok(())) => {
                if sent.elapsed() >= period / 2 {
                    tracing::debug!(
                        took_ms = sent.elapsed().as_millis() as u64,
                        "leader lease renewal was slow"
                    );
                }
                last_renewal = sent;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "leader lease lost");
                return;
            }
            Err(_) => tracing::warn!("leader lease renewal timed out"),
        }
        // Step down before the lease can have expired on the store's side.
        if last_renewal.elapsed() >= deadline_after.mul_f32(0.75) {
            return;
        }
        match store.get(LEADER_KEY).await {
            Ok(Some(kv)) if kv.mod_revision == term.revision => {}
            Ok(_) => return,
            Err(_) => {}
        }
    }
}

/// Returns when `/leader` is deleted (or after a while, to look again). Meanwhile probes
/// the leader, and revokes its lease if its process is plainly gone.
async fn wait_for_vacancy(store: &Arc<dyn Store>) {
    let Ok(mut changes) = store.watch(LEADER_KEY, 0).await else {
        tokio::time::sleep(Duration::from_millis(250)).await;
        return;
    };
    // The key may have gone between our read and the watch.
    let Some(leader) = current_leader(store).await else {
        return;
    };
    let vacated = async {
        while let Some(change) = changes.next().await {
            match change {
                Ok(WatchEvent::Delete { key, .. }) if key == LEADER_KEY => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    let probe = async {
        let mut refused = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if leader_refuses_connections(&leader.api_url).await {
                refused += 1;
            } else {
                refused = 0;
            }
            if refused >= 2 {
                tracing::warn!(leader = %leader.server_id, url = %leader.api_url, "the leader's process is gone; revoking its lease");
                let _ = store.revoke_lease(leader.lease).await;
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            _ = vacated => {}
            _ = probe => {}
        }
    })
    .await;
}

/// Whether the leader's API address actively refuses TCP connections (nothing listens there:
/// the process is gone). A timeout or an unreachable host is not proof: those wait for the
/// lease.
async fn leader_refuses_connections(api_url: &str) -> bool {
    let authority = api_url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    match tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    {
        Ok(Err(error)) => error.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// The current leader's record, if any.
pub async fn current_leader(store: &Arc<dyn Store>) -> Option<LeaderRecord> {
    let kv = store.get(LEADER_KEY).await.ok()??;
    serde_json::from_slice(&kv.value).ok()
}

/// Deletes the keys under `prefix` that sort before `cutoff` (records keyed by time), a page
/// of 500 to a transaction; returns how many went.
pub async fn delete_keys_before(
    store: &std::sync::Arc<dyn strata_store::Store>,
    prefix: &str,
    cutoff: &str,
) -> Result<usize, crate::ControlError> {
    let mut removed = 0;
    loop {
        // A page is one transaction's worth of deletes.
        let page = store
            .list_page(prefix, None, strata_store::MAX_TXN_OPS)
            .await?;
        let old: Vec<&str> = page
            .kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .take_while(|key| *key < cutoff)
            .collect();
        if old.is_empty() {
            return Ok(removed);
        }
        let mut txn = strata_store::Txn::new();
        for key in &old {
            txn = txn.delete(*key);
        }
        store.txn(txn).await?;
        removed += old.len();
        if old.len() < page.kvs.len() {
            return Ok(removed);
        }
    }
}

/// On the leader, every minute: `prune(plane, before)` drops the `what` older than their
/// retention (`before` = now minus `retention(config)`), and says how many went. Followers
/// skip their turn. Runs until the task is dropped.
pub async fn prune_on_leader<F, Fut>(
    plane: std::sync::Arc<crate::ControlPlane>,
    what: &'static str,
    retention: fn(&crate::ControlConfig) -> Duration,
    prune: F,
) where
    F: Fn(std::sync::Arc<crate::ControlPlane>, u64) -> Fut,
    Fut: std::future::Future<Output = Result<usize, crate::ControlError>>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        if plane.term().is_none() {
            continue;
        }
        let keep = retention(plane.config()).as_millis() as u64;
        let before = plane.now().saturating_sub(keep);
        match prune(plane.clone(), before).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "{what} past their retention removed"),
            Err(error) => tracing::warn!(%error, "cannot prune {what}"),
        }
    }
}
