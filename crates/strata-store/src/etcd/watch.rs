//! Watches: an etcd watch over a prefix that knows the next revision it owes the caller, and
//! resumes from it on any member when the stream breaks (no gap, no duplicate).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use etcd_client::{GetOptions, WatchOptions};
use futures::StreamExt;
use tokio::sync::watch as signal;

use super::failure::Failure;
use super::mapping::{rev_in, rev_out};
use super::{Shared, REQUEST_TIMEOUT, RETRY_FIRST, RETRY_MAX, WATCH_RESUME_TIMEOUT};
use crate::{Revision, StoreError, WatchEvent, WatchStream};

/// [`Store::watch`](crate::Store::watch): the changes under `prefix` from `from` (0: from
/// the current revision + 1).
pub(super) async fn watch(
    shared: &Arc<Shared>,
    prefix: &str,
    from: Revision,
) -> Result<WatchStream, StoreError> {
    let Some(range) = shared.range(prefix) else {
        // No key of this namespace can match: a watch that only ends with the store.
        let mut closed = shared.closed.clone();
        return Ok(futures::stream::once(async move {
            store_dropped(&mut closed).await;
            Err(StoreError::Closed)
        })
        .boxed());
    };
    let next = if from == 0 {
        shared.revision().await? + 1
    } else {
        from
    };
    let mut watcher = Watcher {
        shared: Arc::clone(shared),
        closed: shared.closed.clone(),
        prefix: prefix.to_owned(),
        range,
        next,
        stream: None,
        buffer: VecDeque::new(),
        broken: String::new(),
        fatal: None,
        done: false,
    };
    watcher.stream = Some(watcher.open().await?);
    Ok(futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next_item().await?;
        Some((item, watcher))
    })
    .boxed())
}

/// The state of one [`Store::watch`](crate::Store::watch) stream.
struct Watcher {
    shared: Arc<Shared>,
    closed: signal::Receiver<()>,
    prefix: String,
    /// The etcd range watched.
    range: (Vec<u8>, Vec<u8>),
    /// The first revision not yet delivered: everything before it was, in full (etcd never
    /// splits a revision's events over two responses unless asked to).
    next: Revision,
    /// The etcd watch; `None` once broken, until it is resumed.
    stream: Option<etcd_client::WatchStream>,
    /// Events received and not yet delivered.
    buffer: VecDeque<WatchEvent>,
    /// Why the etcd watch broke, while `stream` is `None`.
    broken: String,
    /// The error the stream ends with, once `buffer` is delivered.
    fatal: Option<StoreError>,
    /// Set once the stream has ended.
    done: bool,
}

/// What an etcd watch response means for the stream.
enum Absorbed {
    Ok,
    /// The etcd watch ended; resume it.
    Broken(String),
    /// The stream fails with this and ends.
    Fatal(StoreError),
}

impl Watcher {
    fn what(&self) -> String {
        format!("watch of {}", self.prefix)
    }

    /// Opens an etcd watch from [`Watcher::next`] and waits until etcd confirms it. Fails
    /// with [`StoreError::Compacted`] if that revision was compacted.
    async fn open(&self) -> Result<etcd_client::WatchStream, StoreError> {
        let shared = &*self.shared;
        let start = rev_in(self.next);
        // etcd reports a compacted start only after confirming the watch, and maybe not at
        // once; a read at that revision says so right away. (If a compaction sneaks in
        // between, the stream reports it as its first item.)
        let probe = GetOptions::new().with_count_only().with_revision(start);
        let compacted = match shared
            .call(true, || {
                let (mut kv, key, probe) = (shared.kv.clone(), self.range.0.clone(), probe.clone());
                async move { kv.get(key, Some(probe)).await }
            })
            .await
        {
            Ok(_) => false,
            Err(f) if f.is_compacted() => true,
            Err(f) if f.is_future_revision() => false,
            Err(f) => return Err(shared.fail(&self.what(), f)),
        };
        let options = WatchOptions::new()
            .with_range(self.range.1.clone())
            .with_start_revision(start)
            .with_prev_key();
        let mut stream = shared
            .call(true, || {
                let (mut watch, key, options) =
                    (shared.watch.clone(), self.range.0.clone(), options.clone());
                async move { watch.watch(key, Some(options)).await }
            })
            .await
            .map_err(|f| shared.fail(&self.what(), f))?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let resp = match tokio::time::timeout(remaining, stream.message()).await {
                Ok(Ok(Some(resp))) => resp.0,
                Ok(Ok(None)) => {
                    return Err(shared.fail(
                        &self.what(),
                        Failure::Etcd(etcd_client::Error::WatchError(
                            "the watch stream ended before etcd confirmed the watch".into(),
                        )),
                    ))
                }
                Ok(Err(e)) => return Err(shared.fail(&self.what(), Failure::Etcd(e))),
                Err(_) => return Err(shared.fail(&self.what(), Failure::Timeout)),
            };
            if resp.canceled {
                return Err(if resp.compact_revision > 0 {
                    StoreError::Compacted {
                        requested: self.next,
                        oldest: rev_out(resp.compact_revision),
                    }
                } else {
                    StoreError::Backend(format!(
                        "etcd refused the {}: {}",
                        self.what(),
                        resp.cancel_reason
                    ))
                });
            }
            if resp.created && !compacted {
                return Ok(stream);
            }
            // Compacted: etcd cancels the watch right after confirming it.
        }
    }

    /// Keeps trying to re-open the etcd watch from [`Watcher::next`], for at most
    /// [`WATCH_RESUME_TIMEOUT`].
    async fn resume(&self, why: &str) -> Result<etcd_client::WatchStream, StoreError> {
        tracing::warn!(prefix = %self.prefix, next = self.next, why, "etcd watch broke; resuming");
        let deadline = Instant::now() + WATCH_RESUME_TIMEOUT;
        let mut backoff = RETRY_FIRST * 2;
        let mut last = why.to_owned();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.min(remaining)).await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.open()).await {
                Ok(Ok(stream)) => {
                    tracing::info!(prefix = %self.prefix, next = self.next, "etcd watch resumed");
                    return Ok(stream);
                }
                Ok(Err(e @ StoreError::Compacted { .. })) => return Err(e),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Backend(format!(
                    "etcd {} broke ({why}) and could not resume from revision {} within \
                     {WATCH_RESUME_TIMEOUT:?} (endpoints: {}): {last}",
                    self.what(),
                    self.next,
                    self.shared.endpoints
                )));
            }
            backoff = (backoff * 2).min(RETRY_MAX * 2);
        }
    }

    fn absorb(&mut self, resp: etcd_client::WatchResponse) -> Absorbed {
        let resp = resp.0;
        if resp.canceled {
            if resp.compact_revision > 0 {
                return Absorbed::Fatal(StoreError::Compacted {
                    requested: self.next,
                    oldest: rev_out(resp.compact_revision),
                });
            }
            return Absorbed::Broken(format!("canceled by etcd: {}", resp.cancel_reason));
        }
        let mut last = None;
        for event in resp.events {
            let event = match self.shared.event_out(event) {
                Ok(event) => event,
                Err(e) => return Absorbed::Fatal(e),
            };
            // Already delivered before the watch was resumed.
            if event.revision() < self.next {
                continue;
            }
            last = Some(event.revision());
            self.buffer.push_back(event);
        }
        if let Some(last) = last {
            if !resp.fragment {
                self.next = last + 1;
            }
        }
        Absorbed::Ok
    }

    async fn next_item(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if let Some(error) = self.fatal.take() {
                self.done = true;
                return Some(Err(error));
            }
            if self.done {
                return None;
            }
            let mut closed = self.closed.clone();
            let outcome = match self.stream.as_mut() {
                None => {
                    let why = std::mem::take(&mut self.broken);
                    let resumed = tokio::select! {
                        biased;
                        () = store_dropped(&mut closed) => Err(StoreError::Closed),
                        resumed = self.resume(&why) => resumed,
                    };
                    match resumed {
                        Ok(stream) => {
                            self.stream = Some(stream);
                            continue;
                        }
                        Err(e) => Absorbed::Fatal(e),
                    }
                }
                Some(stream) => {
                    let message = tokio::select! {
                        biased;
                        () = store_dropped(&mut closed) => None,
                        message = stream.message() => Some(message),
                    };
                    match message {
                        None => Absorbed::Fatal(StoreError::Closed),
                        Some(Ok(Some(resp))) => self.absorb(resp),
                        Some(Ok(None)) => Absorbed::Broken("the stream ended".into()),
                        Some(Err(e)) => Absorbed::Broken(Failure::Etcd(e).to_string()),
                    }
                }
            };
            match outcome {
                Absorbed::Ok => {}
                Absorbed::Broken(why) => {
                    self.stream = None;
                    self.broken = why;
                }
                Absorbed::Fatal(error) => {
                    // Events of the same response that converted are delivered first.
                    self.stream = None;
                    self.fatal = Some(error);
                }
            }
        }
    }
}

/// Resolves when the last handle to the store is dropped.
async fn store_dropped(closed: &mut signal::Receiver<()>) {
    while closed.changed().await.is_ok() {}
}
