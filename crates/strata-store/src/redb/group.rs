//! Group commit: transactions that arrive while a commit is on its way to disk wait in a
//! queue, and the next commit takes all of them (each still at its own revision, with its own
//! outcome). One disk sync then serves many writers, as etcd batches its backend commits;
//! every caller is still answered only after its commit is durable.
//!
//! Lease renewals wait in the same queue but go first: each group commit starts with the
//! renewals that arrived during the last one, so a leader's lease is renewed within one
//! commit however many writes are queued (a writer lock taken alone could be passed over by
//! the committer again and again, and the lease lost to the server's own write load).

use std::sync::{Arc, PoisonError};

use tokio::sync::oneshot;

use super::writer::Applied;
use super::Inner;
use crate::{LeaseId, StoreError, Txn};

/// The most transactions one commit takes.
const MAX_GROUP: usize = 512;

/// The most writes (puts and deletes) one commit takes, besides its first transaction: what
/// bounds how long a commit takes, so how long a lease renewal arriving during one waits.
const MAX_GROUP_OPS: usize = 8_192;

/// A commit taking this long is logged: it holds up every writer, lease renewals included.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// A transaction waiting for a commit, and who waits for its outcome.
pub(super) struct Queued {
    txn: Txn,
    done: oneshot::Sender<Result<Applied, StoreError>>,
}

/// A lease renewal waiting for the next commit, and who waits for its outcome.
struct Renewal {
    lease: LeaseId,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Transactions and renewals waiting, and whether a committer is running.
#[derive(Default)]
pub(super) struct Queue {
    waiting: Vec<Queued>,
    renewals: Vec<Renewal>,
    committing: bool,
}

/// Applies `txn` in the next group commit; its failed compare (if any) and the revision after
/// it.
pub(super) async fn commit(inner: &Arc<Inner>, txn: Txn) -> Result<Applied, StoreError> {
    let (done, outcome) = oneshot::channel();
    enqueue(inner, |queue| queue.waiting.push(Queued { txn, done }));
    outcome
        .await
        .map_err(|_| StoreError::Backend("the store's committer stopped".into()))?
}

/// Renews `lease` at the start of the next group commit (before any transaction waiting).
pub(super) async fn renew(inner: &Arc<Inner>, lease: LeaseId) -> Result<(), StoreError> {
    let (done, outcome) = oneshot::channel();
    enqueue(inner, |queue| queue.renewals.push(Renewal { lease, done }));
    outcome
        .await
        .map_err(|_| StoreError::Backend("the store's committer stopped".into()))?
}

/// Adds to the queue with `add`, starting a committer if none runs.
fn enqueue(inner: &Arc<Inner>, add: impl FnOnce(&mut Queue)) {
    let start_committer = {
        let mut queue = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
        add(&mut queue);
        !std::mem::replace(&mut queue.committing, true)
    };
    if start_committer {
        let inner = Arc::clone(inner);
        tokio::task::spawn_blocking(move || commit_queued(&inner));
    }
}

/// Renews the leases of `renewals` in one write, and answers each.
fn renew_all(inner: &Inner, renewals: Vec<Renewal>) {
    let leases: Vec<LeaseId> = renewals.iter().map(|r| r.lease).collect();
    let renewed: Result<(Vec<Result<(), StoreError>>, _), StoreError> =
        inner.write(|w| Ok(leases.iter().map(|l| w.keep_alive(*l)).collect()));
    match renewed {
        Ok((outcomes, _)) => {
            for (renewal, outcome) in renewals.into_iter().zip(outcomes) {
                let _ = renewal.done.send(outcome);
            }
        }
        Err(error) => {
            for renewal in renewals {
                let _ = renewal
                    .done
                    .send(Err(StoreError::Backend(error.to_string())));
            }
        }
    }
}

/// Commits what is queued, group by group, until the queue is empty.
fn commit_queued(inner: &Inner) {
    loop {
        let (renewals, group): (Vec<Renewal>, Vec<Queued>) = {
            let mut queue = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.waiting.is_empty() && queue.renewals.is_empty() {
                queue.committing = false;
                return;
            }
            let mut take = 0;
            let mut ops = 0;
            for queued in queue.waiting.iter().take(MAX_GROUP) {
                ops += queued.txn.ops.len();
                if take > 0 && ops > MAX_GROUP_OPS {
                    break;
                }
                take += 1;
            }
            let renewals = std::mem::take(&mut queue.renewals);
            (renewals, queue.waiting.drain(..take).collect())
        };
        if !renewals.is_empty() {
            renew_all(inner, renewals);
        }
        if group.is_empty() {
            continue;
        }
        let (txns, waiters): (Vec<Txn>, Vec<_>) =
            group.into_iter().map(|q| (q.txn, q.done)).unzip();
        let started = std::time::Instant::now();
        let written = inner.write_group(&txns);
        let took = started.elapsed();
        tracing::trace!(
            took_ms = took.as_millis() as u64,
            transactions = txns.len(),
            writes = txns.iter().map(|t| t.ops.len()).sum::<usize>(),
            "group commit"
        );
        if took >= SLOW_COMMIT {
            let ops: usize = txns.iter().map(|t| t.ops.len()).sum();
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                transactions = txns.len(),
                writes = ops,
                "a store commit was slow (the disk, or a machine short of CPU)"
            );
        }
        match written {
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

    /// A lease renewal does not wait behind the transactions queued before it: it is applied
    /// at the start of the next group commit, so only the group being committed when it
    /// arrived finishes first, and that group is bounded by its writes (`MAX_GROUP_OPS`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_renewal_goes_before_the_writes_queued_ahead_of_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("s.redb")).await.unwrap();
        let lease = store
            .grant_lease(std::time::Duration::from_secs(60))
            .await
            .unwrap();
        const QUEUED: usize = 2_000;
        const PUTS: usize = 8;
        let done = Arc::new(AtomicUsize::new(0));
        // The writer is held (by a thread of its own), so the committer stops at its first
        // group and the rest queue.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel::<()>();
        let inner = Arc::clone(&store.inner);
        let holder = std::thread::spawn(move || {
            let _held = inner.writer.lock().unwrap();
            locked.send(()).unwrap();
            let _ = released.recv();
        });
        is_locked.recv().unwrap();
        let writers: Vec<_> = (0..QUEUED)
            .map(|i| {
                let (store, done) = (store.clone(), Arc::clone(&done));
                tokio::spawn(async move {
                    let txn = (0..PUTS).fold(Txn::new(), |txn, k| {
                        txn.put(format!("/queued/{i}/{k}"), vec![1])
                    });
                    store.txn(txn).await.unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let first_group = super::MAX_GROUP_OPS / PUTS;
        let queued = || store.inner.queue.lock().unwrap().waiting.len();
        for _ in 0..500 {
            if queued() + first_group >= QUEUED {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(queued() + first_group >= QUEUED, "the writes queued");
        let renewal = {
            let store = store.clone();
            tokio::spawn(async move {
                store.keep_alive(lease).await.unwrap();
                done.load(Ordering::SeqCst)
            })
        };
        // Until the renewal waits in the queue (or a second: the committer then takes it).
        for _ in 0..200 {
            if !store.inner.queue.lock().unwrap().renewals.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        release.send(()).unwrap();
        holder.join().unwrap();
        let finished_before = renewal.await.unwrap();
        assert!(
            finished_before <= first_group,
            "{finished_before} of the {QUEUED} writes queued ahead finished before the renewal"
        );
        for writer in writers {
            writer.await.unwrap();
        }
    }
}
