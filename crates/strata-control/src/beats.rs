//! Heartbeat datagrams ([`strata_core::beat`]) received over UDP on the API's address. A beat
//! costs the server a share of one system call, one map lookup, a tag check and two atomic
//! writes: no connection, no HTTP, no store read (the node's epoch and state come from the
//! reflector, read once per batch). Beats reaching a follower are passed on, as they came, to
//! the leader's address, where liveness is judged. A beat that does not verify, names a node
//! the cluster does not know, or repeats a number already seen is dropped; a verified beat of
//! another epoch or of a node declared down is answered "register again" (signed with the
//! node's key, no bigger than the beat: nothing to reflect or amplify).
//!
//! Under load the receiver takes datagrams in batches, many to a system call (`recvmmsg`):
//! after a wake-up that found many
//! waiting, it lets [`GATHER`] pass before the next, so 100,000 beats a second cost a few
//! hundred wake-ups, not 100,000. The socket's receive buffer is raised so a gathering
//! interval's beats fit ([`RECEIVE_BUFFER`]). If beats are lost anyway (the kernel counts
//! what it drops for a full buffer, and says so with each datagram: `SO_RXQ_OVFL`), nobody
//! can tell whose were lost: liveness forgives every node's silence up to then rather than
//! declare down nodes whose beats this server failed to read. Nor does it judge silence past
//! what the receiver has read: while beats wait in the socket (a busy server), liveness
//! counts time only up to the moment the receiver last found the socket empty
//! ([`crate::heartbeats::Heartbeats::judged_now`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use strata_core::beat::{self, BeatKey, Kind};
use strata_core::NodeState;

use nix::sys::socket::{
    recvmmsg, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::heartbeats::{BeatSlot, DatagramOutcome};
use crate::ControlPlane;

/// The most datagrams taken in one go before the task yields.
const BATCH: usize = 256;

/// How many datagrams the first read of a wake-up asks for (the headers of a read are made
/// for it: a quiet socket's reads stay small).
const FIRST_READ: usize = 16;

/// A wake-up that finds at least this many datagrams waiting means beats arrive faster than
/// wake-ups are worth: gather for a while before the next.
const BUSY: usize = 32;

/// How long beats gather in the socket between batches when busy: nothing next to the
/// liveness thresholds (hundreds of milliseconds).
const GATHER: Duration = Duration::from_millis(5);

/// The socket receive buffer asked for: a third of a second of 100,000 beats a second, at the
/// kernel's cost of about a kilobyte per small datagram (a busy server's receiver can be
/// late by that much, well under the liveness thresholds' scale).
const RECEIVE_BUFFER: usize = 32 << 20;

/// The least time between two "register again" answers to one node.
const ANSWER_EVERY: Duration = Duration::from_secs(1);

/// How often a follower looks up where the leader is.
const LEADER_REFRESH: Duration = Duration::from_secs(1);

/// Receives beats on `socket` until the task is dropped.
pub async fn serve(plane: Arc<ControlPlane>, socket: UdpSocket) {
    raise_receive_buffer(&socket);
    if let Err(error) = nix::sys::socket::setsockopt(&socket, sockopt::RxqOvfl, &1) {
        tracing::info!(%error, "the kernel will not count heartbeat datagrams it drops");
    }
    let mut receiver = Receiver {
        plane,
        peers: HashMap::new(),
        leader: None,
        drops_seen: None,
    };
    let mut buffers = vec![[0u8; beat::MAX_LEN + 1]; BATCH];
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut received = [(0usize, unspecified); BATCH];
    let heartbeats = receiver.plane.clone();
    let heartbeats = heartbeats.heartbeats();
    // Whether the last read found the socket empty.
    let mut drained = true;
    loop {
        // Waiting on an empty socket, this receiver is behind by nothing; woken, it is behind
        // by what arrived since it last found the socket empty, until it drains it again.
        heartbeats.receiver_waits(drained);
        let waited = socket.readable().await;
        heartbeats.receiver_waits(false);
        if let Err(error) = waited {
            tracing::debug!(%error, "heartbeat socket");
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let mut taken = 0;
        let mut drained_at = None;
        while taken < BATCH {
            // A first read sized for a quiet socket; the rest of the batch if it was full.
            let upto = if taken == 0 { FIRST_READ } else { BATCH };
            match receive(
                &socket,
                &mut buffers[taken..upto],
                &mut received[taken..upto],
            ) {
                Ok((count, drops)) => {
                    taken += count;
                    if let Some(drops) = drops {
                        receiver.dropped_so_far(drops);
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    drained_at = Some(heartbeats.now());
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "heartbeat socket");
                    break;
                }
            }
        }
        let datagrams: Vec<(&[u8], SocketAddr)> = buffers[..taken]
            .iter()
            .zip(&received)
            .map(|(buffer, (len, from))| (&buffer[..(*len).min(buffer.len())], *from))
            .collect();
        receiver.take(&socket, &datagrams).await;
        // Every beat that arrived before the socket was found empty is noted now.
        drained = drained_at.is_some();
        if let Some(at) = drained_at {
            heartbeats.read_up_to(at);
        }
        if taken == BATCH {
            // More are waiting: the liveness checker and the API must still run.
            tokio::task::yield_now().await;
        } else if taken >= BUSY {
            tokio::time::sleep(GATHER).await;
        }
    }
}

/// Reads waiting datagrams, as many as `buffers` hold, in one system call (`recvmmsg`):
/// each one's length and sender go to `received`. Returns how many, and how many datagrams
/// the kernel has dropped on this socket so far (when it says); `WouldBlock` if none waits.
///
/// The message headers are made for each call: the kernel shrinks their control-buffer
/// lengths to what it wrote, and nix's `recvmmsg` does not restore them, so reused headers
/// stop carrying the drop count (nix-rust/nix#2813).
fn receive(
    socket: &UdpSocket,
    buffers: &mut [[u8; beat::MAX_LEN + 1]],
    received: &mut [(usize, SocketAddr)],
) -> std::io::Result<(usize, Option<u32>)> {
    socket.try_io(Interest::READABLE, || {
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
            buffers.len(),
            Some(nix::cmsg_space!(u32)),
        );
        let mut slices: Vec<[IoSliceMut; 1]> = buffers
            .iter_mut()
            .map(|buffer| [IoSliceMut::new(buffer)])
            .collect();
        let messages = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        let mut count = 0;
        let mut drops = None;
        for (message, slot) in messages.zip(received.iter_mut()) {
            *slot = (message.bytes, sender(message.address));
            if let Some(dropped) = message.cmsgs().ok().and_then(|mut messages| {
                messages.find_map(|m| match m {
                    ControlMessageOwned::RxqOvfl(dropped) => Some(dropped),
                    _ => None,
                })
            }) {
                drops = Some(dropped);
            }
            count += 1;
        }
        Ok((count, drops))
    })
}

/// A datagram's sender as a socket address (unspecified if the kernel gave none).
fn sender(address: Option<SockaddrStorage>) -> SocketAddr {
    address
        .and_then(|address| {
            if let Some(v4) = address.as_sockaddr_in() {
                Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
            } else {
                address
                    .as_sockaddr_in6()
                    .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
            }
        })
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Asks for a receive buffer that holds [`RECEIVE_BUFFER`] bytes of beats: past the system's
/// `net.core.rmem_max` where this process may (`CAP_NET_ADMIN`), else up to it.
fn raise_receive_buffer(socket: &UdpSocket) {
    // The kernel counts its own overhead in the buffer and doubles what is asked for it.
    let asked = RECEIVE_BUFFER / 2;
    if nix::sys::socket::setsockopt(socket, sockopt::RcvBufForce, &asked).is_err() {
        let _ = nix::sys::socket::setsockopt(socket, sockopt::RcvBuf, &asked);
    }
    let size = nix::sys::socket::getsockopt(socket, sockopt::RcvBuf).unwrap_or(0);
    if size < RECEIVE_BUFFER {
        tracing::info!(
            bytes = size,
            "the heartbeat socket's receive buffer is small for a large fleet: raise net.core.rmem_max to {RECEIVE_BUFFER}"
        );
    }
}

/// What the receiver keeps of a node that beats.
struct Peer {
    key: BeatKey,
    /// The last beat number taken.
    last_seq: u64,
    slot: Arc<BeatSlot>,
    /// The node's epoch and state, as of a version of the node records (read again from
    /// the reflector only when some node's record changed).
    known: Option<(u64, u64, NodeState)>,
    /// When it was last told to register again (monotonic ms).
    told_at: Option<u64>,
    /// Where its beats last came from (kept by a follower, to relay the leader's answers).
    address: Option<SocketAddr>,
}

struct Receiver {
    plane: Arc<ControlPlane>,
    /// Each known node that beat here.
    peers: HashMap<String, Peer>,
    /// Where the leader takes beats, and when that was looked up.
    leader: Option<(Instant, Option<SocketAddr>)>,
    /// The kernel's count of datagrams dropped on the socket, as last seen.
    drops_seen: Option<u32>,
}

/// A datagram to send, and where: sent after a batch (sending waits; a batch is judged
/// under the reflector's lock).
type Send = (Vec<u8>, SocketAddr);

impl Receiver {
    /// Notes the kernel's count of drops so far; what grew since the last look was lost.
    fn dropped_so_far(&mut self, drops: u32) {
        let lost = drops.wrapping_sub(self.drops_seen.unwrap_or(0));
        self.drops_seen = Some(drops);
        if lost > 0 {
            self.plane.heartbeats().note_dropped(u64::from(lost));
        }
    }

    async fn take(&mut self, socket: &UdpSocket, datagrams: &[(&[u8], SocketAddr)]) {
        let leads = self.plane.term().is_some();
        let leader = if leads {
            None
        } else {
            self.leader_addr().await
        };
        let now = self.plane.heartbeats().now();
        let mut sends = Vec::new();
        {
            let plane = self.plane.clone();
            let state = plane.reflector().read();
            let version = state.node_records_version();
            for (datagram, from) in datagrams {
                let outcome = self.judge(
                    datagram,
                    *from,
                    version,
                    // A node revoked (decommissioned unreachable) beats for nothing.
                    |name| {
                        state
                            .node(name)
                            .filter(|_| state.revoked(name).is_none())
                            .map(|n| (n.value.epoch, n.value.state))
                    },
                    leads,
                    leader,
                    now,
                    &mut sends,
                );
                self.plane.heartbeats().count_datagram(outcome);
            }
        }
        for (bytes, to) in sends {
            let _ = socket.send_to(&bytes, to).await;
        }
    }

    /// What becomes of one datagram; what to send because of it goes to `sends`.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        version: u64,
        node: impl Fn(&str) -> Option<(u64, NodeState)>,
        leads: bool,
        leader: Option<SocketAddr>,
        now: u64,
        sends: &mut Vec<Send>,
    ) -> DatagramOutcome {
        let Ok(beat) = beat::parse(datagram) else {
            return DatagramOutcome::Refused;
        };
        let peer = match self.peers.get_mut(beat.node) {
            Some(peer) => peer,
            // Only nodes the cluster knows get a key (so junk cannot grow the map).
            None if node(beat.node).is_none() => return DatagramOutcome::Refused,
            None => {
                let credential = self.plane.credentials().node_credential(beat.node);
                self.peers.entry(beat.node.to_string()).or_insert(Peer {
                    key: BeatKey::new(&beat::beat_key(&credential)),
                    last_seq: 0,
                    slot: self.plane.heartbeats().slot(beat.node),
                    known: None,
                    told_at: None,
                    address: None,
                })
            }
        };
        let state = match peer.known {
            Some((seen, epoch, state)) if seen == version => Some((epoch, state)),
            _ => {
                let state = node(beat.node);
                peer.known = state.map(|(epoch, state)| (version, epoch, state));
                state
            }
        };
        if !beat.verified_by(&peer.key) {
            return DatagramOutcome::Refused;
        }
        if beat.kind == Kind::RegisterAgain {
            // The leader's answer to a beat this follower passed on: relayed to where the
            // node's beats come from (signed with the node's key, so only the leader, which
            // derives it, could have made it: this is no open relay).
            return match (leads, peer.address) {
                (false, Some(node)) => {
                    sends.push((datagram.to_vec(), node));
                    DatagramOutcome::Forwarded
                }
                _ => DatagramOutcome::Refused,
            };
        }
        if !leads {
            peer.address = Some(from);
            if let Some(leader) = leader {
                sends.push((datagram.to_vec(), leader));
            }
            return DatagramOutcome::Forwarded;
        }
        if beat.seq <= peer.last_seq {
            return DatagramOutcome::Replayed;
        }
        peer.last_seq = beat.seq;
        match state {
            // Ready, or suspect again (the liveness judge writes it ready on its next tick).
            Some((epoch, NodeState::Ready | NodeState::Suspect)) if epoch == beat.epoch => {
                peer.slot.datagram(now);
                DatagramOutcome::Taken
            }
            // Another epoch, or down: the node must register again, and is told so now (at
            // most once per [`ANSWER_EVERY`]: it beats ten times a second meanwhile).
            _ => {
                if peer
                    .told_at
                    .is_none_or(|at| now.saturating_sub(at) >= ANSWER_EVERY.as_millis() as u64)
                {
                    peer.told_at = Some(now);
                    sends.push((beat::register_again(&beat, &peer.key), from));
                }
                DatagramOutcome::Stale
            }
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
