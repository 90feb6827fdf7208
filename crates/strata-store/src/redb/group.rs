//! Group commit: transactions that arrive while a commit is on its way to disk wait in a
//! queue, and the next commit takes all of them (each still at its own revision, with its own
//! outcome). One disk sync then serves many writers, as etcd batches its backend commits;
//! every caller is still answered only after its commit is durable.

use std::sync::{Arc, PoisonError};

use tokio::sync::oneshot;

use super::writer::Applied;
use super::Inner;
use crate::{StoreError, Txn};

/// The most transactions one commit takes.
const MAX_GROUP: usize = 512;

/// A transaction waiting for a commit, and who waits for its outcome.
pub(super) struct Queued {
    txn: Txn,
    done: oneshot::Sender<Result<Applied, StoreError>>,
}

/// Transactions waiting, and whether a committer is running.
#[derive(Default)]
pub(super) struct Queue {
    waiting: Vec<Queued>,
    committing: bool,
}

/// Applies `txn` in the next group commit; its failed compare (if any) and the revision after
/// it.
pub(super) async fn commit(inner: &Arc<Inner>, txn: Txn) -> Result<Applied, StoreError> {
    let (done, outcome) = oneshot::channel();
    let start_committer = {
        let mut queue = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.waiting.push(Queued { txn, done });
        !std::mem::replace(&mut queue.committing, true)
    };
    if start_committer {
        let inner = Arc::clone(inner);
        tokio::task::spawn_blocking(move || commit_queued(&inner));
    }
    outcome
        .await
        .map_err(|_| StoreError::Backend("the store's committer stopped".into()))?
}

/// Commits what is queued, group by group, until the queue is empty.
fn commit_queued(inner: &Inner) {
    loop {
        let group: Vec<Queued> = {
            let mut queue = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.waiting.is_empty() {
                queue.committing = false;
                return;
            }
            let take = queue.waiting.len().min(MAX_GROUP);
            queue.waiting.drain(..take).collect()
        };
        let (txns, waiters): (Vec<Txn>, Vec<_>) =
            group.into_iter().map(|q| (q.txn, q.done)).unzip();
        match inner.write_group(&txns) {
            Ok(outcomes) => {
                for (waiter, outcome) in waiters.into_iter().zip(outcomes) {
                    let _ = waiter.send(outcome);
                }
            }
            // One transaction at fault (a corrupt record it reads) must not fail the others:
            // each is committed alone, and gets its own outcome.
            Err(_) => {
                for (txn, waiter) in txns.into_iter().zip(waiters) {
                    let alone = inner.write(|w| w.apply(txn));
                    let _ = waiter.send(alone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use futures::StreamExt;

    use super::super::RedbStore;
    use crate::{Store, StoreError, Txn, TxnOutcome};

    /// Many writers at once: each transaction gets its own revision and outcome (one of the
    /// racing creates wins), a dead lease refuses only its own, and a watch sees every
    /// revision once, in order, with its own events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transactions_keep_their_own_revisions_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("s.redb")).await.unwrap();
        let mut watch = store.watch("/", 1).await.unwrap();
        let writers = (0..200).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let txn = match i % 4 {
                    // Everyone in this quarter races to create the same key.
                    0 => Txn::new().when("/race", 0).put("/race", vec![i as u8]),
                    // A put with a lease that never existed.
                    1 => Txn::new().put_with_lease(format!("/leased/{i}"), vec![], 999_999),
                    _ => Txn::new().put(format!("/own/{i}"), vec![i as u8]),
                };
                (i, store.txn(txn).await)
            })
        });
        let mut revisions = BTreeSet::new();
        let mut race_winners = 0;
        for writer in futures::future::join_all(writers).await {
            let (i, outcome) = writer.unwrap();
            match (i % 4, outcome) {
                (0, Ok(TxnOutcome::Committed(revision))) => {
                    race_winners += 1;
                    assert!(revisions.insert(revision));
                }
                (0, Ok(TxnOutcome::Conflict { key })) => assert_eq!(key, "/race"),
                (1, Err(StoreError::LeaseNotFound(999_999))) => {}
                (_, Ok(TxnOutcome::Committed(revision))) if i % 4 >= 2 => {
                    assert!(revisions.insert(revision), "revision {revision} twice");
                }
                (_, other) => panic!("writer {i}: {other:?}"),
            }
        }
        assert_eq!(race_winners, 1);
        assert_eq!(revisions.len(), 101);
        assert_eq!(store.revision().await.unwrap(), *revisions.last().unwrap());
        assert!(store.list("/leased/").await.unwrap().kvs.is_empty());
        let mut seen = Vec::new();
        while seen.len() < 101 {
            let event = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
                .await
                .expect("every revision is delivered")
                .unwrap()
                .unwrap();
            seen.push(event.revision());
        }
        let delivered: Vec<u64> = revisions.into_iter().collect();
        assert_eq!(seen, delivered);
    }
}
