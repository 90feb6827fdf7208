//! [`Heartbeater`]: how a node beats. Ten times a second, by a UDP datagram to the control
//! plane's API address ([`strata_core::beat`]: signed with a key derived from the node's
//! credential, numbered against replay), and every 30 s over HTTP, whose answer says
//! whether the node must register again and how many of its datagrams arrived. A server that
//! cannot take a beat (the node was declared down, or registered again elsewhere) answers it
//! "register again", and the node beats over HTTP at once to learn more. A node beats
//! both ways every time until an answer shows its datagrams arrive; if later none do (a
//! firewall drops UDP, an older server), it goes back to HTTP every time, and tries datagrams
//! again a while later. A node without a credential (`strata dev`) beats over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::api::HeartbeatAck;
use strata_core::beat::{self, BeatKey, Kind};
use tokio::net::UdpSocket;

use crate::client::{ClientError, ControlClient};

/// One beat in this many goes over HTTP as well (every 30 s at the default 100 ms): how soon a
/// node learns its datagrams no longer arrive (a node declared down while they do is told at
/// once, by datagram). 10,000 nodes cost the server 333 HTTP beats a second.
pub const HTTP_EVERY: u64 = 300;

/// Datagrams sent with no answer counting any before a node gives up on them.
const PROBES: u64 = 10;

/// How long a node whose datagrams did not arrive beats over HTTP before trying again.
const DATAGRAMS_RETRY: Duration = Duration::from_secs(30);

/// How a node beats now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Over HTTP only (no credential, or datagrams did not arrive: until then).
    Http { until: Option<Instant> },
    /// Both ways every time, until an answer shows datagrams arrive.
    Probing,
    /// By datagram, and over HTTP every [`HTTP_EVERY`]th beat.
    Datagrams,
}

/// See the module docs.
pub struct Heartbeater {
    key: Option<BeatKey>,
    /// The socket and the address datagrams go to, for the API URL they were resolved from.
    target: Option<(String, Arc<UdpSocket>, SocketAddr)>,
    /// A socket to send from, shared with other senders (else one is bound per target).
    shared: Option<Arc<UdpSocket>>,
    mode: Mode,
    beats: u64,
    /// Datagrams sent since the last HTTP beat.
    sent: u64,
}

impl Heartbeater {
    /// A node presenting `credential` beats by datagram; one without, over HTTP only.
    pub fn new(credential: Option<&str>) -> Self {
        Heartbeater {
            key: credential.map(|c| BeatKey::new(&beat::beat_key(c))),
            target: None,
            shared: None,
            mode: match credential {
                Some(_) => Mode::Probing,
                None => Mode::Http { until: None },
            },
            beats: 0,
            sent: 0,
        }
    }

    /// Sends datagrams from `socket` (one many senders share, as a simulator of many nodes
    /// in one process does) instead of binding one.
    pub fn sharing(mut self, socket: Arc<UdpSocket>) -> Self {
        self.shared = Some(socket);
        self
    }

    /// How the node beats now.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// One beat of `node` at `epoch`; the HTTP answer when this beat made one.
    pub async fn beat(
        &mut self,
        client: &ControlClient,
        node: &str,
        epoch: u64,
    ) -> Result<Option<HeartbeatAck>, ClientError> {
        self.beats += 1;
        if let Mode::Http { until: Some(until) } = self.mode {
            if Instant::now() >= until {
                self.mode = Mode::Probing;
            }
        }
        let datagram = matches!(self.mode, Mode::Probing | Mode::Datagrams);
        if datagram && self.send(&client.base(), node, epoch).await {
            self.sent += 1;
        }
        let told_to_register = datagram && self.told_to_register(node, epoch);
        if self.mode == Mode::Datagrams
            && !self.beats.is_multiple_of(HTTP_EVERY)
            && !told_to_register
        {
            return Ok(None);
        }
        let ack = client.heartbeat(node, epoch).await?;
        match self.mode {
            Mode::Probing if ack.datagrams > 0 => self.mode = Mode::Datagrams,
            Mode::Probing | Mode::Datagrams if self.sent >= PROBES && ack.datagrams == 0 => {
                tracing::warn!(
                    "the control plane got none of this node's last {} heartbeat datagrams; beating over HTTP",
                    self.sent
                );
                self.mode = Mode::Http {
                    until: Some(Instant::now() + DATAGRAMS_RETRY),
                };
            }
            _ => {}
        }
        if self.mode != Mode::Probing || ack.datagrams > 0 {
            self.sent = 0;
        }
        Ok(Some(ack))
    }

    /// Whether an answer waiting on the socket tells `node` at `epoch` to register again
    /// (signed with its key; answers meant for others sharing the socket are dropped).
    fn told_to_register(&self, node: &str, epoch: u64) -> bool {
        let (Some(key), Some((_, socket, _))) = (&self.key, &self.target) else {
            return false;
        };
        let mut buffer = [0u8; beat::MAX_LEN + 1];
        let mut told = false;
        // A bounded number each time: a flood of junk cannot hold the beat up.
        for _ in 0..16 {
            let Ok(len) = socket.try_recv(&mut buffer) else {
                break;
            };
            if let Ok(answer) = beat::parse(&buffer[..len.min(buffer.len())]) {
                told |= answer.kind == Kind::RegisterAgain
                    && answer.node == node
                    && answer.epoch == epoch
                    && answer.verified_by(key);
            }
        }
        if told {
            tracing::info!("the control plane answered a heartbeat datagram: register again");
        }
        told
    }

    /// Sends one datagram to the API at `base`; whether it left.
    async fn send(&mut self, base: &str, node: &str, epoch: u64) -> bool {
        let Some(key) = self.key.clone() else {
            return false;
        };
        if self.target.as_ref().is_none_or(|(url, _, _)| url != base) {
            self.target = target(base, self.shared.clone()).await;
        }
        let Some((_, socket, to)) = &self.target else {
            return false;
        };
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let datagram = beat::encode_kind(Kind::Beat, node, epoch, seq, &key);
        socket.send_to(&datagram, to).await.is_ok()
    }
}

/// A socket to send datagrams to the API at `base` from (`shared`, or one bound for it), and
/// its address.
async fn target(
    base: &str,
    shared: Option<Arc<UdpSocket>>,
) -> Option<(String, Arc<UdpSocket>, SocketAddr)> {
    let to = strata_client::api_socket_addr(base).await?;
    if let Some(socket) = shared {
        return Some((base.to_string(), socket, to));
    }
    let local: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    Some((base.to_string(), Arc::new(socket), to))
}
