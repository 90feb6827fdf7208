//! Nodes' heartbeats, kept in memory on the server that leads: when each node was last heard
//! from, on the monotonic clock. A heartbeat costs no store write and wakes no watcher; after a
//! restart or a change of leader every node gets a full grace period (as Nomad resets TTLs on
//! a new leader). Liveness is judged from these by [`crate::reconcile::judge_liveness`], with
//! whether each node's agent still holds its blocking query open here ([`HeldQuery`]): a
//! query its caller abandoned says the agent's connection broke.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use strata_core::NodeName;
pub use strata_sched::liveness::Connection;

use crate::clock::Clock;

/// What became of a heartbeat datagram ([`crate::beats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatagramOutcome {
    /// A beat of a ready node at its epoch: noted.
    Taken,
    /// Received by a follower and passed to the leader.
    Forwarded,
    /// Not a beat, not signed by its node, or of a node the cluster does not know.
    Refused,
    /// A number already seen (a replay, or reordered on the way).
    Replayed,
    /// Of another epoch or a node declared down: it must register again (over HTTP).
    Stale,
    /// Lost before it was read: the kernel dropped it, the socket's buffer being full (the
    /// kernel's count). Nobody can tell whose it was, so liveness forgives every node's
    /// silence up to then.
    Dropped,
}

impl DatagramOutcome {
    pub const ALL: [DatagramOutcome; 6] = [
        DatagramOutcome::Taken,
        DatagramOutcome::Forwarded,
        DatagramOutcome::Refused,
        DatagramOutcome::Replayed,
        DatagramOutcome::Stale,
        DatagramOutcome::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatagramOutcome::Taken => "taken",
            DatagramOutcome::Forwarded => "forwarded",
            DatagramOutcome::Refused => "refused",
            DatagramOutcome::Replayed => "replayed",
            DatagramOutcome::Stale => "stale",
            DatagramOutcome::Dropped => "dropped",
        }
    }
}

/// One node's beats: when it was last heard from and how many datagrams it sent since its
/// last HTTP heartbeat, and whether its agent's blocking query is held. The datagram
/// receiver keeps each node's slot at hand, so a beat costs two atomic writes, no lock.
#[derive(Debug, Default)]
pub struct BeatSlot {
    /// Monotonic ms of the last beat, plus one (0: never).
    last: AtomicU64,
    datagrams: AtomicU64,
    /// The node's blocking assignments queries this server holds open.
    open_queries: AtomicU64,
    /// When the node's last query was abandoned by its caller, with none open since
    /// (monotonic ms, plus one; 0: not abandoned).
    abandoned: AtomicU64,
}

impl BeatSlot {
    fn beat(&self, now: u64) {
        self.last.fetch_max(now + 1, Ordering::Relaxed);
    }

    /// Notes a beat by datagram at `now`.
    pub fn datagram(&self, now: u64) {
        self.beat(now);
        self.datagrams.fetch_add(1, Ordering::Relaxed);
    }

    /// When the node last beat (monotonic ms), if it has since this process started.
    pub fn last(&self) -> Option<u64> {
        self.last.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Whether the node's agent still waits on this server: its connection broke if its
    /// last query was abandoned by its caller and none was opened since.
    pub fn connection(&self) -> Connection {
        if self.abandoned.load(Ordering::SeqCst) > 0 {
            Connection::Abandoned
        } else {
            Connection::Held
        }
    }

    fn query_opened(&self) {
        self.open_queries.fetch_add(1, Ordering::SeqCst);
        self.abandoned.store(0, Ordering::SeqCst);
    }

    /// A query closed: answered, or abandoned by its caller at `abandoned_at`.
    fn query_closed(&self, abandoned_at: Option<u64>) {
        let open = self.open_queries.fetch_sub(1, Ordering::SeqCst) - 1;
        if let (0, Some(at)) = (open, abandoned_at) {
            self.abandoned.store(at + 1, Ordering::SeqCst);
        }
    }
}

/// A node's blocking query held open by this server ([`Heartbeats::query_held`]): dropped
/// before [`HeldQuery::answered`], it was abandoned by its caller (the connection that
/// carried it closed), which liveness takes as a sign the node's agent is gone.
pub struct HeldQuery {
    slot: Arc<BeatSlot>,
    clock: Arc<dyn Clock>,
    answered: bool,
}

impl HeldQuery {
    /// The query is answered: its caller will open the next.
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for HeldQuery {
    fn drop(&mut self) {
        let abandoned_at = (!self.answered).then(|| self.clock.monotonic_ms());
        self.slot.query_closed(abandoned_at);
    }
}

/// Every node's name and beat slot, as a liveness pass walks them.
pub type Roster = Arc<Vec<(NodeName, Arc<BeatSlot>)>>;

/// When each node was last heard from.
pub struct Heartbeats {
    clock: Arc<dyn Clock>,
    /// Silence longer than this makes a node down.
    down_after_ms: u64,
    /// Each node's beats.
    slots: RwLock<HashMap<String, Arc<BeatSlot>>>,
    /// When this server began to lead, in monotonic ms.
    led_since: AtomicU64,
    /// Datagrams received, by outcome (in [`DatagramOutcome::ALL`] order), since start.
    outcomes: [AtomicU64; 6],
    /// When beats were last lost to a full socket buffer (monotonic ms, plus one; 0: not
    /// since the last look).
    dropped_at: AtomicU64,
    /// Whether the datagram receiver waits on an empty socket (or there is none).
    receiver_waiting: AtomicBool,
    /// When the receiver last found its socket empty, every beat before noted (monotonic ms).
    read_up_to: AtomicU64,
    /// The roster, and the version of the set of nodes it was made for.
    roster: Mutex<(u64, Roster)>,
}

impl Heartbeats {
    pub fn new(clock: Arc<dyn Clock>, down_after_ms: u64) -> Heartbeats {
        Heartbeats {
            clock,
            down_after_ms,
            slots: RwLock::default(),
            led_since: AtomicU64::new(0),
            outcomes: Default::default(),
            dropped_at: AtomicU64::new(0),
            receiver_waiting: AtomicBool::new(true),
            read_up_to: AtomicU64::new(0),
            roster: Mutex::default(),
        }
    }

    /// The monotonic clock beats are noted on.
    pub fn now(&self) -> u64 {
        self.clock.monotonic_ms()
    }

    /// `node`'s slot (made on its first beat).
    pub fn slot(&self, node: &str) -> Arc<BeatSlot> {
        if let Some(slot) = self.slots.read().expect("heartbeats lock").get(node) {
            return slot.clone();
        }
        self.slots
            .write()
            .expect("heartbeats lock")
            .entry(node.to_string())
            .or_default()
            .clone()
    }

    /// A blocking query of `node`'s held open until the returned guard is answered or
    /// dropped (see [`HeldQuery`]).
    pub fn query_held(&self, node: &str) -> HeldQuery {
        let slot = self.slot(node);
        slot.query_opened();
        HeldQuery {
            slot,
            clock: self.clock.clone(),
            answered: false,
        }
    }

    /// How many of `node`'s blocking queries this server holds open now.
    pub fn open_queries(&self, node: &str) -> u64 {
        self.slots
            .read()
            .expect("heartbeats lock")
            .get(node)
            .map_or(0, |slot| slot.open_queries.load(Ordering::SeqCst))
    }

    /// Whether `node`'s agent still waits on this server ([`BeatSlot::connection`]).
    pub fn connection(&self, node: &str) -> Connection {
        self.slots
            .read()
            .expect("heartbeats lock")
            .get(node)
            .map_or(Connection::Held, |slot| slot.connection())
    }

    /// Notes a heartbeat of `node` now.
    pub fn note(&self, node: &str) {
        self.slot(node).beat(self.now());
    }

    /// Counts a datagram's outcome.
    pub fn count_datagram(&self, outcome: DatagramOutcome) {
        self.count_datagrams(outcome, 1);
    }

    /// Counts `count` datagrams of one outcome.
    pub fn count_datagrams(&self, outcome: DatagramOutcome, count: u64) {
        let index = DatagramOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .expect("every outcome is listed");
        self.outcomes[index].fetch_add(count, Ordering::Relaxed);
    }

    /// Notes that `count` beats were lost before they were read (the socket's buffer was
    /// full): liveness cannot tell whose, and forgives every node's silence up to now.
    pub fn note_dropped(&self, count: u64) {
        self.count_datagrams(DatagramOutcome::Dropped, count);
        self.dropped_at.fetch_max(self.now() + 1, Ordering::Relaxed);
    }

    /// Says whether the datagram receiver now waits on an empty socket.
    pub fn receiver_waits(&self, waiting: bool) {
        self.receiver_waiting.store(waiting, Ordering::SeqCst);
    }

    /// Says that every beat that arrived before `at` (monotonic ms) is noted.
    pub fn read_up_to(&self, at: u64) {
        self.read_up_to.fetch_max(at, Ordering::SeqCst);
    }

    /// The time up to which nodes' silence can be judged at `now`: `now` while the datagram
    /// receiver waits on an empty socket, else when it last found the socket empty (beats
    /// waiting in it are not silence). A receiver far behind pauses liveness rather than
    /// blame nodes it has not read.
    pub fn judged_now(&self, now: u64) -> u64 {
        if self.receiver_waiting.load(Ordering::SeqCst) {
            now
        } else {
            now.min(self.read_up_to.load(Ordering::SeqCst))
        }
    }

    /// When beats were last lost (monotonic ms), if they were since the last call.
    pub fn take_dropped(&self) -> Option<u64> {
        self.dropped_at.swap(0, Ordering::Relaxed).checked_sub(1)
    }

    /// Datagrams received since start, by outcome.
    pub fn datagram_outcomes(&self) -> Vec<(DatagramOutcome, u64)> {
        DatagramOutcome::ALL
            .iter()
            .zip(&self.outcomes)
            .map(|(outcome, count)| (*outcome, count.load(Ordering::Relaxed)))
            .collect()
    }

    /// How many beats `node` sent by datagram since the last call (what its HTTP heartbeat
    /// tells it, so it knows its datagrams arrive).
    pub fn take_datagrams(&self, node: &str) -> u64 {
        self.slots
            .read()
            .expect("heartbeats lock")
            .get(node)
            .map_or(0, |slot| slot.datagrams.swap(0, Ordering::Relaxed))
    }

    /// When `node` last heartbeated (monotonic ms), if it has since this process started.
    pub fn last(&self, node: &str) -> Option<u64> {
        self.slots
            .read()
            .expect("heartbeats lock")
            .get(node)
            .and_then(|slot| slot.last())
    }

    /// Every node's name and beat slot (a slot made for a node that never beat), for the set
    /// of nodes at `version`: made again from `names` only when the set changed, so a
    /// liveness pass over 10,000 nodes reads 10,000 slots in a row, with no lookup by name.
    pub fn roster(&self, version: u64, names: impl FnOnce() -> Vec<NodeName>) -> Roster {
        let mut held = self.roster.lock().expect("heartbeats lock");
        if held.0 != version || version == 0 {
            let roster = names()
                .into_iter()
                .map(|name| {
                    let slot = self.slot(&name);
                    (name, slot)
                })
                .collect();
            *held = (version, Arc::new(roster));
        }
        held.1.clone()
    }

    /// Whether `node` was heard from within the down threshold.
    pub fn heard_from_recently(&self, node: &str) -> bool {
        let now = self.clock.monotonic_ms();
        self.last(node)
            .is_some_and(|last| now.saturating_sub(last) < self.down_after_ms)
    }

    /// Remembers when this server began to lead; nodes it has not heard from yet count their
    /// silence from then.
    pub fn grace_unknown_nodes(&self, now: u64) {
        self.led_since.store(now, Ordering::SeqCst);
    }

    /// When this server began to lead (monotonic ms).
    pub fn led_since(&self) -> u64 {
        self.led_since.load(Ordering::SeqCst)
    }

    /// Forgives every node's silence up to `now` (used when this process itself stalled),
    /// and the queries abandoned before it (a stalled server's callers give up on it).
    pub fn forgive_until(&self, now: u64) {
        for slot in self.slots.read().expect("heartbeats lock").values() {
            if slot.last().is_some() {
                slot.beat(now);
            }
            slot.abandoned.store(0, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Silence is judged only up to what the datagram receiver has read.
    #[test]
    fn silence_is_judged_up_to_what_the_receiver_has_read() {
        let beats = Heartbeats::new(Arc::new(ManualClock::starting_at(0)), 600);
        // (receiver waits on an empty socket, read up to, now, judged now)
        let table = [
            ("no receiver yet", None, 0, 5_000, 5_000),
            (
                "waiting on an empty socket",
                Some(true),
                4_000,
                5_000,
                5_000,
            ),
            ("busy, read up to 4,900", Some(false), 4_900, 5_000, 4_900),
            ("busy, far behind", Some(false), 4_900, 9_000, 4_900),
            ("drained again", Some(false), 9_000, 9_000, 9_000),
            ("never ahead of now", Some(false), 9_000, 8_000, 8_000),
        ];
        for (what, waiting, read, now, judged) in table {
            if let Some(waiting) = waiting {
                beats.receiver_waits(waiting);
            }
            beats.read_up_to(read);
            assert_eq!(beats.judged_now(now), judged, "{what}");
        }
    }

    #[test]
    fn a_query_dropped_unanswered_is_abandoned_until_the_next_one_opens() {
        let clock = Arc::new(ManualClock::starting_at(0));
        let beats = Heartbeats::new(clock.clone(), 600);
        assert_eq!(beats.connection("n1"), Connection::Held, "never asked");
        beats.query_held("n1").answered();
        assert_eq!(beats.connection("n1"), Connection::Held, "answered");
        // Two open at once (a retry beside a slow one): one abandoned while the other is
        // open says nothing; the last one abandoned does.
        let first = beats.query_held("n1");
        let second = beats.query_held("n1");
        drop(first);
        assert_eq!(beats.connection("n1"), Connection::Held);
        drop(second);
        assert_eq!(beats.connection("n1"), Connection::Abandoned);
        // The agent asks again: held.
        let next = beats.query_held("n1");
        assert_eq!(beats.connection("n1"), Connection::Held);
        drop(next);
        assert_eq!(beats.connection("n1"), Connection::Abandoned);
        // A server that stalled forgives what its callers gave up on meanwhile.
        beats.note("n1");
        beats.forgive_until(clock.monotonic_ms());
        assert_eq!(beats.connection("n1"), Connection::Held);
    }

    #[test]
    fn beats_lost_are_told_once_and_forgiveness_reaches_every_node_that_beat() {
        let clock = Arc::new(ManualClock::starting_at(0));
        let beats = Heartbeats::new(clock.clone(), 600);
        beats.note("n1");
        let _ = beats.slot("n2"); // never beat
        clock.advance(1_000);
        assert_eq!(beats.take_dropped(), None);
        beats.note_dropped(3);
        let at = beats.take_dropped().expect("lost beats told");
        assert_eq!(beats.take_dropped(), None, "told once");
        beats.forgive_until(at);
        assert_eq!(beats.last("n1"), Some(at));
        assert_eq!(
            beats.last("n2"),
            None,
            "a node that never beat keeps its grace rule"
        );
        let dropped = beats
            .datagram_outcomes()
            .into_iter()
            .find(|(o, _)| *o == DatagramOutcome::Dropped);
        assert_eq!(dropped, Some((DatagramOutcome::Dropped, 3)));
    }
}
