//! Heartbeat datagrams ([`strata_core::beat`]) received over UDP on the API's address. A beat
//! costs the server one datagram, a tag check and a map update: no connection, no HTTP, no
//! store read (the node's epoch and state come from the reflector). Beats reaching a follower
//! are passed on, as they came, to the leader's address, where liveness is judged. A beat
//! that does not verify, names a node the cluster does not know, or repeats a number already
//! seen is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::beat;
use strata_core::NodeState;
use tokio::net::UdpSocket;

use crate::heartbeats::DatagramOutcome;
use crate::ControlPlane;

/// The most datagrams taken in one go before the task yields.
const BATCH: usize = 256;

/// How often a follower looks up where the leader is.
const LEADER_REFRESH: Duration = Duration::from_secs(1);

/// Receives beats on `socket` until the task is dropped.
pub async fn serve(plane: Arc<ControlPlane>, socket: UdpSocket) {
    let mut receiver = Receiver {
        plane,
        keys: HashMap::new(),
        last_seq: HashMap::new(),
        leader: None,
    };
    let mut buffer = [0u8; 512];
    loop {
        // One wake-up takes every datagram waiting, not one each.
        if let Err(error) = socket.readable().await {
            tracing::debug!(%error, "heartbeat socket");
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        // At most a batch before giving the runtime back: under a flood of beats, the
        // liveness checker and the API on this worker must still run.
        for _ in 0..BATCH {
            match socket.try_recv_from(&mut buffer) {
                Ok((len, _from)) => receiver.take(&socket, &buffer[..len]).await,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    tracing::debug!(%error, "heartbeat socket");
                    break;
                }
            }
        }
        tokio::task::yield_now().await;
    }
}

struct Receiver {
    plane: Arc<ControlPlane>,
    /// Each known node's beat key, derived once.
    keys: HashMap<String, [u8; 32]>,
    /// The last beat number taken from each node.
    last_seq: HashMap<String, u64>,
    /// Where the leader takes beats, and when that was looked up.
    leader: Option<(Instant, Option<SocketAddr>)>,
}

impl Receiver {
    async fn take(&mut self, socket: &UdpSocket, datagram: &[u8]) {
        let outcome = self.judge(socket, datagram).await;
        self.plane.heartbeats().count_datagram(outcome);
    }

    async fn judge(&mut self, socket: &UdpSocket, datagram: &[u8]) -> DatagramOutcome {
        let Ok(beat) = beat::parse(datagram) else {
            return DatagramOutcome::Refused;
        };
        let state = self
            .plane
            .reflector()
            .read()
            .node(beat.node)
            .map(|n| (n.value.epoch, n.value.state));
        // Only nodes the cluster knows get a key (so junk cannot grow the map).
        if state.is_none() && !self.keys.contains_key(beat.node) {
            return DatagramOutcome::Refused;
        }
        let key = match self.keys.get(beat.node) {
            Some(key) => key,
            None => {
                let credential = self.plane.credentials().node_credential(beat.node);
                self.keys
                    .entry(beat.node.to_string())
                    .or_insert(beat::beat_key(&credential))
            }
        };
        if !beat.signed_by(key) {
            return DatagramOutcome::Refused;
        }
        let plane = &self.plane;
        if plane.term().is_none() {
            if let Some(leader) = self.leader_addr().await {
                let _ = socket.send_to(datagram, leader).await;
            }
            return DatagramOutcome::Forwarded;
        }
        match self.last_seq.get_mut(beat.node) {
            Some(last) if beat.seq <= *last => return DatagramOutcome::Replayed,
            Some(last) => *last = beat.seq,
            None => {
                self.last_seq.insert(beat.node.to_string(), beat.seq);
            }
        }
        match state {
            Some((epoch, NodeState::Ready)) if epoch == beat.epoch => {
                self.plane.heartbeats().note_datagram(beat.node);
                DatagramOutcome::Taken
            }
            // Suspect again: the HTTP path writes the change of state.
            Some((epoch, NodeState::Suspect)) if epoch == beat.epoch => {
                let plane = self.plane.clone();
                let (name, epoch) = (beat.node.to_string(), beat.epoch);
                tokio::spawn(async move {
                    if let Ok(name) = strata_core::NodeName::new(name) {
                        let _ = plane.heartbeat(&name, epoch).await;
                        plane.heartbeats().note_datagram(&name);
                    }
                });
                DatagramOutcome::Taken
            }
            // Another epoch, or down: the node learns to register again from its HTTP beat.
            _ => DatagramOutcome::Stale,
        }
    }

    /// The leader's beat address (its API's host and port), looked up at most every second.
    async fn leader_addr(&mut self) -> Option<SocketAddr> {
        if let Some((at, addr)) = self.leader {
            if at.elapsed() < LEADER_REFRESH {
                return addr;
            }
        }
        let addr = match crate::leader::current_leader(self.plane.store()).await {
            Some(leader) if leader.server_id != self.plane.server_id() => {
                strata_client::api_socket_addr(&leader.api_url).await
            }
            _ => None,
        };
        self.leader = Some((Instant::now(), addr));
        addr
    }
}
