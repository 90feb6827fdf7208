//! The serving side of handing a node's listeners from one agent process to the next (an
//! in-place upgrade). Every accept loop of the process's proxies and TLS APIs goes through
//! one gate:
//!
//! - a process that takes listeners over starts [`hold`]ing: it sets everything up on them
//!   without accepting (its routing table is empty until its first fetch), while the old
//!   process goes on serving; then it calls [`start_accepting`];
//! - the old process then calls [`stop_accepting`]: its accept loops stop for good while the
//!   listening sockets stay open (the new process accepts on its copies, and the kernel
//!   queues nothing for a process that does not accept); each response it still writes
//!   carries `Connection: close`, so a keep-alive connection ends cleanly after its next
//!   answer instead of being cut; [`connections_open`] says how many remain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

/// Where this process stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Holds listeners it does not accept on yet.
    Holding,
    Accepting,
    /// Handed its listeners on: accepts no more.
    Stopped,
}

static PHASE: LazyLock<tokio::sync::watch::Sender<Phase>> =
    LazyLock::new(|| tokio::sync::watch::Sender::new(Phase::Accepting));
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Accept nothing until [`start_accepting`] (a process taking listeners over).
pub fn hold() {
    PHASE.send_replace(Phase::Holding);
}

/// Accept from now on.
pub fn start_accepting() {
    PHASE.send_if_modified(|phase| {
        let held = *phase == Phase::Holding;
        if held {
            *phase = Phase::Accepting;
        }
        held
    });
}

/// From now on this process takes no new connection on any of its proxies or TLS APIs.
pub fn stop_accepting() {
    PHASE.send_replace(Phase::Stopped);
}

/// Whether [`stop_accepting`] was called.
pub fn stopping() -> bool {
    *PHASE.borrow() == Phase::Stopped
}

/// Waits while the process holds its listeners; returns `false` once it has stopped
/// accepting for good (the caller then accepts no more).
pub(crate) async fn may_accept() -> bool {
    let mut changes = PHASE.subscribe();
    let phase = match changes.wait_for(|phase| *phase != Phase::Holding).await {
        Ok(phase) => *phase,
        Err(_) => Phase::Accepting,
    };
    phase == Phase::Accepting
}

/// Resolves once [`stop_accepting`] is called.
pub(crate) async fn stopped() {
    let mut changes = PHASE.subscribe();
    let _ = changes.wait_for(|phase| *phase == Phase::Stopped).await;
}

/// Connections being served now.
pub fn connections_open() -> usize {
    OPEN.load(Ordering::SeqCst)
}

/// Counts one connection as open while it lives.
pub struct OpenConnection(());

impl OpenConnection {
    pub fn new() -> Self {
        OPEN.fetch_add(1, Ordering::SeqCst);
        Self(())
    }
}

impl Default for OpenConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks a response to end its connection once this process stops accepting.
pub fn mark<B>(response: &mut http::Response<B>) {
    if stopping() {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}
