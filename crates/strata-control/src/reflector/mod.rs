//! The reflector: a [`ClusterState`] kept current from the store, as kube-runtime's reflector
//! keeps its cache. It lists what it follows once, then applies the store's watch change by
//! change (relisting only if the watch breaks or falls behind the kept history). The hot paths
//! read it instead of listing the store: a node's assignments (by its index, and as a blocking
//! query that returns when they change), heartbeats, and the reconciler, which plans only the
//! services changes concern ([`Dirty`]).
//!
//! Every server runs one (followers serve assignments too). The store stays the truth:
//! writes are still transactions guarded by the revisions the state holds, and a reader that
//! must see a write waits for the state to reach its revision ([`Reflector::caught_up_with`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use futures::StreamExt;
use strata_store::{Revision, Store};
use tokio::sync::Notify;

#[cfg(test)]
pub(crate) mod fixtures;
mod state;

pub use state::{ClusterState, Dirty, NodeLoad, NodeSlot, ServiceKey, Versioned, FOLLOWED};

/// See the module docs.
pub struct Reflector {
    state: RwLock<ClusterState>,
    /// The revision applied so far, for readers waiting on a write.
    applied: tokio::sync::watch::Sender<Revision>,
    /// Wakes the blocking assignment queries of one node.
    node_waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// Wakes the reconciler when a change concerns some service.
    dirtied: Notify,
}

impl Default for Reflector {
    fn default() -> Self {
        Reflector {
            state: RwLock::default(),
            applied: tokio::sync::watch::channel(0).0,
            node_waiters: Mutex::default(),
            dirtied: Notify::new(),
        }
    }
}

impl Reflector {
    /// Starts following `store` (until the reflector is dropped).
    pub fn start(store: Arc<dyn Store>) -> Arc<Reflector> {
        let reflector = Arc::new(Reflector::default());
        tokio::spawn(follow(Arc::downgrade(&reflector), store));
        reflector
    }

    /// The state as of [`ClusterState::revision`]. Hold the guard briefly: the watch waits.
    pub fn read(&self) -> RwLockReadGuard<'_, ClusterState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the services changes concerned since the last call.
    pub fn take_dirty(&self) -> Dirty {
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take_dirty()
    }

    /// Waits until a change concerns some service.
    pub async fn dirtied(&self) {
        self.dirtied.notified().await
    }

    /// Waits (at most `wait`) until every change up to `revision` is applied; whether it is.
    pub async fn caught_up(&self, revision: Revision, wait: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        let reached = async { applied.wait_for(|at| *at >= revision).await.is_ok() };
        tokio::time::timeout(wait, reached).await.unwrap_or(false)
    }

    /// Waits (at most `wait`) until the state holds every write the store had committed when
    /// called: what a reader that must see its own (or anyone's acknowledged) writes needs.
    pub async fn caught_up_with(
        &self,
        store: &dyn Store,
        wait: Duration,
    ) -> Result<bool, strata_store::StoreError> {
        let revision = store.revision().await?;
        Ok(self.caught_up(revision, wait).await)
    }

    /// Waits (at most `wait`) until what `node` must run changed after `index`; returns the
    /// state's revision then (the next query's index).
    pub async fn node_changed_after(
        &self,
        node: &str,
        index: Revision,
        wait: Duration,
    ) -> Revision {
        let notify = self
            .node_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node.to_string())
            .or_default()
            .clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.read();
                if state.node_changed(node) > index {
                    return state.revision();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.read().revision();
            }
        }
    }

    /// Makes a change to the state (a batch of the watch's events, or a new listing) and
    /// wakes who waits on what it concerns.
    fn publish(&self, change: impl FnOnce(&mut ClusterState)) {
        let (revision, touched, dirty, corrupt) = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            change(&mut state);
            let dirty = state.is_dirty();
            (
                state.revision(),
                state.take_touched_nodes(),
                dirty,
                state.take_corrupt(),
            )
        };
        for (key, reason) in corrupt {
            tracing::error!(
                key,
                reason,
                "a stored record does not decode; it is ignored"
            );
        }
        let waiters = self.node_waiters.lock().unwrap_or_else(|e| e.into_inner());
        for node in &touched {
            if let Some(notify) = waiters.get(node.as_str()) {
                notify.notify_waiters();
            }
        }
        drop(waiters);
        if dirty {
            self.dirtied.notify_one();
        }
        self.applied.send_if_modified(|at| {
            let moved = revision > *at;
            *at = (*at).max(revision);
            moved
        });
    }
}

/// The most watch events applied under one write lock (more when a revision has more: a
/// revision is applied whole).
const BATCH: usize = 512;

/// The watch's next events: what is ready, up to [`BATCH`], and then whatever is ready of
/// the last one's revision, so a reader never sees a revision half applied (the state says
/// it holds revision R only once all of R's changes are in: an assignments answer at R must
/// hold every instance written at R). `None` when the watch ended.
async fn next_batch<S>(
    watch: &mut std::pin::Pin<Box<futures::stream::Peekable<S>>>,
) -> Option<Vec<S::Item>>
where
    S: futures::Stream<Item = Result<strata_store::WatchEvent, strata_store::StoreError>>,
{
    use futures::FutureExt;
    let first = watch.next().await?;
    let mut batch = vec![first];
    loop {
        let last = batch
            .last()
            .and_then(|event| event.as_ref().ok())
            .map(strata_store::WatchEvent::revision);
        let take = match watch.as_mut().peek().now_or_never() {
            Some(Some(Ok(next))) => batch.len() < BATCH || Some(next.revision()) == last,
            Some(Some(Err(_))) => true,
            _ => false,
        };
        if !take {
            return Some(batch);
        }
        match watch.next().now_or_never() {
            Some(Some(event)) => batch.push(event),
            _ => return Some(batch),
        }
    }
}

/// Lists, then follows the watch; starts over (relists) whenever the watch ends or fails.
async fn follow(reflector: std::sync::Weak<Reflector>, store: Arc<dyn Store>) {
    loop {
        if reflector.strong_count() == 0 {
            return;
        }
        if let Err(error) = follow_once(&reflector, store.as_ref()).await {
            tracing::warn!(%error, "the store's watch broke; listing the state again");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn follow_once(
    reflector: &std::sync::Weak<Reflector>,
    store: &dyn Store,
) -> Result<(), strata_store::StoreError> {
    let start = store.revision().await?;
    // Open the watch first, so nothing committed after `start` is missed.
    let watch = store.watch("/", start + 1).await?;
    let mut listed = ClusterState::default();
    for prefix in FOLLOWED {
        let page = store.list(prefix).await?;
        for kv in page.kvs {
            listed.load_listed(&kv);
        }
    }
    // Listings ran at `start` or later; changes after `start` come (again) from the watch,
    // and the state applies each key's newest only.
    listed.advance_to(start);
    let Some(live) = reflector.upgrade() else {
        return Ok(());
    };
    live.publish(|state| {
        *state = listed;
        state.touch_everything(start);
    });
    drop(live);
    let mut watch = Box::pin(watch.peekable());
    while let Some(batch) = next_batch(&mut watch).await {
        let Some(live) = reflector.upgrade() else {
            return Ok(());
        };
        let mut failure = None;
        live.publish(|state| {
            for event in batch {
                match event {
                    Ok(event) => state.apply(&event),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
        });
        if let Some(error) = failure {
            return Err(error);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::put;

    fn events(
        revisions: &[(Revision, usize)],
    ) -> Vec<Result<strata_store::WatchEvent, strata_store::StoreError>> {
        revisions
            .iter()
            .flat_map(|(revision, count)| {
                (0..*count)
                    .map(move |i| Ok(put(format!("/instances/r{revision}-{i}"), &i, *revision)))
            })
            .collect()
    }

    /// A batch never ends in the middle of a revision, however many changes it has.
    #[tokio::test]
    async fn a_revision_is_applied_whole() {
        // (what, changes per revision, the sizes of the batches taken)
        type Case = (&'static str, Vec<(Revision, usize)>, Vec<usize>);
        let table: Vec<Case> = vec![
            ("one small revision", vec![(1, 3)], vec![3]),
            ("a revision past the batch size", vec![(1, 600)], vec![600]),
            (
                "many revisions fill batches",
                vec![(1, 300), (2, 300), (3, 10)],
                vec![600, 10],
            ),
            (
                "the batch ends where a revision does",
                vec![(1, 500), (2, 20), (3, 5)],
                vec![520, 5],
            ),
        ];
        for (what, revisions, want) in table {
            let mut watch = Box::pin(futures::stream::iter(events(&revisions)).peekable());
            let mut sizes = Vec::new();
            while let Some(batch) = next_batch(&mut watch).await {
                sizes.push(batch.len());
            }
            assert_eq!(sizes, want, "{what}");
        }
    }
}
