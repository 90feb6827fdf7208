//! Watches: each committed revision is published on a broadcast channel; a watch replays the
//! revisions it missed from the event log, then follows the channel, re-reading the log when
//! it falls behind (no gap, no duplicate).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use tokio::sync::broadcast::{self, error::RecvError};

use super::codec;
use super::tables::{backend, current_revision, oldest_event, EVENTS, META};
use super::{run_blocking, Inner, RedbStore};
use crate::{Revision, StoreError, WatchEvent, WatchStream};

/// How many revisions a catching-up watcher reads from the log per read transaction.
const REPLAY_CHUNK: u64 = 256;

/// The revisions' events, as published to live watchers.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) revision: Revision,
    pub(super) events: Vec<WatchEvent>,
}

impl RedbStore {
    /// The rest of [`Store::watch`], given a receiver subscribed *before* this call: replays
    /// revisions `from..=current` from the log, then follows `rx`, skipping revisions
    /// already delivered.
    pub(super) async fn start_watch(
        &self,
        rx: broadcast::Receiver<Arc<Batch>>,
        prefix: &str,
        from: Revision,
    ) -> Result<WatchStream, StoreError> {
        let (current, oldest) = self
            .blocking(|inner| {
                inner.read(|txn| {
                    let meta = txn.open_table(META).map_err(backend)?;
                    Ok((current_revision(&meta)?, oldest_event(&meta)?))
                })
            })
            .await?;
        if from != 0 && from < oldest {
            return Err(StoreError::Compacted {
                requested: from,
                oldest,
            });
        }
        let watch = Watch {
            store: Arc::downgrade(&self.inner),
            rx,
            prefix: prefix.to_owned(),
            next: if from == 0 { current + 1 } else { from },
            head: current,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watch,
            |mut watch| async move { watch.next_event().await.map(|event| (event, watch)) },
        )))
    }
}

impl Inner {
    /// Reads the logged events under `prefix` from `next` up to `head` (at most
    /// [`REPLAY_CHUNK`] revisions). Returns them, the last revision read (`next - 1` if
    /// none) and the current revision.
    fn read_log(
        &self,
        prefix: &str,
        next: Revision,
        head: Revision,
    ) -> Result<(Vec<WatchEvent>, Revision, Revision), StoreError> {
        self.read(|txn| {
            let meta = txn.open_table(META).map_err(backend)?;
            let current = current_revision(&meta)?;
            let oldest = oldest_event(&meta)?;
            if next < oldest {
                return Err(StoreError::Compacted {
                    requested: next,
                    oldest,
                });
            }
            let end = head.min(current).min(next.saturating_add(REPLAY_CHUNK - 1));
            if end < next {
                return Ok((Vec::new(), next - 1, current));
            }
            let log = txn.open_table(EVENTS).map_err(backend)?;
            let mut events = Vec::new();
            let mut expected = next;
            for entry in log.range(next..=end).map_err(backend)? {
                let (revision, bytes) = entry.map_err(backend)?;
                let revision = revision.value();
                if revision != expected {
                    return Err(StoreError::Backend(format!(
                        "event log is missing revision {expected}"
                    )));
                }
                expected += 1;
                events.extend(
                    codec::decode_events(revision, bytes.value())?
                        .into_iter()
                        .filter(|e| e.key().starts_with(prefix)),
                );
            }
            if expected != end + 1 {
                return Err(StoreError::Backend(format!(
                    "event log is missing revision {expected}"
                )));
            }
            Ok((events, end, current))
        })
    }
}

/// The state of one watch stream.
struct Watch {
    /// Weak, so that an open watch does not keep the store (and its file) open.
    store: Weak<Inner>,
    rx: broadcast::Receiver<Arc<Batch>>,
    prefix: String,
    /// The next revision to deliver; every earlier one has been delivered (or predates the
    /// watch).
    next: Revision,
    /// Revisions up to `head` are committed and must be read from the log (catching up);
    /// after that the watch follows the channel.
    head: Revision,
    /// Events read but not yet yielded.
    pending: VecDeque<WatchEvent>,
    done: bool,
}

impl Watch {
    async fn next_event(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if self.next <= self.head {
                if let Err(e) = self.catch_up().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(batch) if batch.revision < self.next => {} // already delivered
                Ok(batch) if batch.revision == self.next => {
                    let prefix = &self.prefix;
                    self.pending.extend(
                        batch
                            .events
                            .iter()
                            .filter(|e| e.key().starts_with(prefix.as_str()))
                            .cloned(),
                    );
                    self.next += 1;
                }
                // A revision was skipped, or the channel dropped some: read what we missed
                // from the log (everything committed so far).
                Ok(_) | Err(RecvError::Lagged(_)) => self.head = Revision::MAX,
                Err(RecvError::Closed) => {
                    self.done = true;
                    return Some(Err(StoreError::Closed));
                }
            }
        }
    }

    /// Reads the next chunk of missed revisions from the log.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let inner = self.store.upgrade().ok_or(StoreError::Closed)?;
        let (prefix, next, head) = (self.prefix.clone(), self.next, self.head);
        let (events, last, current) =
            run_blocking(inner, move |inner| inner.read_log(&prefix, next, head)).await?;
        self.pending.extend(events);
        self.next = last + 1;
        if self.next > current {
            // Caught up with everything committed; the rest comes on the channel.
            self.head = current;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::Store;

    /// Revisions committed between a watch's subscription and its read of the current
    /// revision are both on the channel and in the log: delivered once, from the log.
    #[tokio::test]
    async fn watch_delivers_revisions_in_both_log_and_channel_once() {
        use futures::StreamExt;

        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("s.redb")).await.unwrap();
        let first = store.put("/w/before", b"0".to_vec()).await.unwrap();
        let (rx_old, rx_new) = (
            store.inner.events.subscribe(),
            store.inner.events.subscribe(),
        );
        let mut expected = vec![first];
        for i in 1..=3u8 {
            expected.push(store.put(&format!("/w/{i}"), vec![i]).await.unwrap());
        }
        for (rx, from, want) in [(rx_old, first, &expected[..]), (rx_new, 0, &[][..])] {
            let mut watch = store.start_watch(rx, "/w/", from).await.unwrap();
            let live = store.put("/w/live", vec![]).await.unwrap();
            for &rev in want.iter().chain([&live]) {
                let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
                    .await
                    .expect("an event")
                    .expect("not the end")
                    .expect("not an error");
                assert_eq!(event.revision(), rev);
            }
            let more = tokio::time::timeout(Duration::from_millis(100), watch.next()).await;
            assert!(more.is_err(), "duplicate: {more:?}");
        }
    }
}
