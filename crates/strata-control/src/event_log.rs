//! The event log: what happened to the cluster, appended under `/events/` with a sequence
//! number and who did it. Controllers' events are fenced like their other writes (a deposed
//! leader records nothing); nodes may record only the kinds they observe.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata_core::api::NodeEvent;
use strata_core::{keys, Actor, EnvName, Event, EventKind, NodeName, ServiceName};
use strata_store::{Store, StoreError, Txn};

use crate::clock::Clock;
use crate::leader::Fence;
use crate::plane::encode;
use crate::ControlError;

/// The server's log lines for `events` (kind and message each): a routine step that more
/// than [`FOLDED_NAMED`] events of different services tell (a node's report as it starts a
/// thousand instances, one of each service) is one line naming the first few; anything
/// else is a line an event. The events themselves stay one per service in the event log.
pub fn log_lines(events: &[Event]) -> Vec<(EventKind, String)> {
    let mut routine: std::collections::BTreeMap<EventKind, Vec<&str>> = Default::default();
    for event in events.iter().filter(|e| e.kind.is_routine_progress()) {
        routine.entry(event.kind).or_default().push(&event.message);
    }
    let mut lines = Vec::new();
    let mut told = BTreeSet::new();
    for event in events {
        match routine.get(&event.kind) {
            Some(messages) if messages.len() > FOLDED_NAMED => {
                if told.insert(event.kind) {
                    let named = messages[..FOLDED_NAMED].join("; ");
                    let more = messages.len() - FOLDED_NAMED;
                    lines.push((
                        event.kind,
                        format!("{} of them: {named}; and {more} more", messages.len()),
                    ));
                }
            }
            _ => lines.push((event.kind, event.message.clone())),
        }
    }
    lines
}

/// The event log of one server.
pub struct EventLog {
    store: Arc<dyn Store>,
    fence: Fence,
    clock: Arc<dyn Clock>,
    server_id: String,
    /// Events written in the same millisecond, for unique sequence numbers.
    counter: AtomicU64,
}

/// The pauses before each new attempt at an event the store could not take (about 30 s in
/// all: an etcd election takes a few seconds).
const EVENT_RETRIES: [std::time::Duration; 6] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
    std::time::Duration::from_secs(8),
    std::time::Duration::from_secs(15),
];

/// Writes one event: a controller's fenced by its term, any other as it is.
struct EventWriter {
    store: Arc<dyn Store>,
    fence: Fence,
    from_controller: bool,
}

impl EventWriter {
    /// Writes `event` at `key` unless something is there already (then it was written, by
    /// an attempt whose answer was lost).
    async fn write(&self, key: &str, event: &Event) -> Result<(), ControlError> {
        let txn = Txn::new().when(key, 0).put(key, encode(event));
        match self.from_controller {
            true => self.fence.txn(txn).await.map(|_| ()),
            false => self
                .store
                .txn(txn)
                .await
                .map(|_| ())
                .map_err(ControlError::from),
        }
    }
}

/// Says `event` in the server's log, as it was recorded.
fn logged(event: &Event) {
    // Fields as plain values: a service only when there is one.
    match &event.service {
        Some(service) => tracing::info!(kind = %event.kind, %service, "{}", event.message),
        None => tracing::info!(kind = %event.kind, "{}", event.message),
    }
}

/// A controller's event of `kind`; set its env, service, instance or node as it concerns.
pub fn event(kind: EventKind, message: impl Into<String>) -> Event {
    Event {
        seq: 0,
        at: 0,
        kind,
        env: None,
        service: None,
        instance: None,
        node: None,
        message: message.into(),
        actor: Actor::Controller { server: None },
    }
}

/// How many instances a folded event names; the rest are counted.
const FOLDED_NAMED: usize = 5;

/// Folds the routine progress among `events` ([`EventKind::is_routine_progress`]): those
/// of one kind, service and actor become one event telling how many instances made the
/// step, on which node (or how many), naming the first few. A step only one instance made
/// keeps its own event; problems and stops are never folded. Order is kept: a folded
/// event stands where its first one stood. A placement of 60 instances writes one event,
/// not 60, and the store's writer is what bounds placements a second.
pub fn fold_routine_progress(events: Vec<Event>) -> Vec<Event> {
    type Group = (EventKind, Option<EnvName>, Option<ServiceName>, Actor);
    let group_of = |event: &Event| -> Option<Group> {
        (event.kind.is_routine_progress() && event.instance.is_some()).then(|| {
            (
                event.kind,
                event.env.clone(),
                event.service.clone(),
                event.actor.clone(),
            )
        })
    };
    let mut sizes: HashMap<Group, usize> = HashMap::new();
    for group in events.iter().filter_map(group_of) {
        *sizes.entry(group).or_default() += 1;
    }
    if sizes.values().all(|&size| size < 2) {
        return events;
    }
    // Per group of more than one: where its event stands in the output, and its members.
    let mut folded: HashMap<Group, (usize, Vec<Event>)> = HashMap::new();
    let mut out: Vec<Option<Event>> = Vec::with_capacity(events.len());
    for event in events {
        match group_of(&event).filter(|group| sizes[group] > 1) {
            Some(group) => {
                let (_, members) = folded.entry(group).or_insert_with(|| {
                    out.push(None);
                    (out.len() - 1, Vec::new())
                });
                members.push(event);
            }
            None => out.push(Some(event)),
        }
    }
    for (_, (at, members)) in folded {
        out[at] = Some(one_for_all(members));
    }
    out.into_iter().flatten().collect()
}

/// One event for `members` (two or more routine events of one kind, service and actor).
fn one_for_all(members: Vec<Event>) -> Event {
    let first = &members[0];
    let nodes: BTreeSet<&NodeName> = members.iter().filter_map(|e| e.node.as_ref()).collect();
    let step = first
        .kind
        .as_str()
        .strip_prefix("instance.")
        .unwrap_or(first.kind.as_str());
    let service = first.service.as_ref().map_or("", |s| s.as_str());
    let whereabouts = match nodes.len() {
        0 => String::new(),
        1 => format!(" on node {}", nodes.first().expect("one node")),
        n => format!(" on {n} nodes"),
    };
    let named: Vec<&str> = members
        .iter()
        .filter_map(|e| e.instance.as_ref().map(|id| id.as_str()))
        .take(FOLDED_NAMED)
        .collect();
    let more = members.len().saturating_sub(named.len());
    let mut list = named.join(", ");
    if more > 0 {
        list.push_str(&format!(" and {more} more"));
    }
    let mut event = event(
        first.kind,
        format!(
            "{service}: {} instances {step}{whereabouts} ({list})",
            members.len()
        ),
    );
    event.env = first.env.clone();
    event.service = first.service.clone();
    event.node = (nodes.len() == 1).then(|| (*nodes.first().expect("one node")).clone());
    event.actor = first.actor.clone();
    event
}

impl EventLog {
    pub fn new(
        store: Arc<dyn Store>,
        fence: Fence,
        clock: Arc<dyn Clock>,
        server_id: String,
    ) -> EventLog {
        EventLog {
            store,
            fence,
            clock,
            server_id,
            counter: AtomicU64::new(0),
        }
    }

    /// Appends an event. Events are best effort: a failure is logged, never fatal. A
    /// controller's events are fenced like its other writes: a deposed leader records nothing.
    pub async fn record(&self, event: Event) {
        let from_controller = event.actor.is_controller();
        let (key, event) = self.stamp(event);
        let writer = EventWriter {
            store: self.store.clone(),
            fence: self.fence.clone(),
            from_controller,
        };
        match writer.write(&key, &event).await {
            Ok(()) => logged(&event),
            Err(ControlError::NotLeader) => {}
            // The store is electing a leader or out of reach: the event is sent again in the
            // background for a while (its key, written only if absent, keeps it from being
            // written twice), rather than lost to the outage it may be telling of.
            Err(ControlError::Store(StoreError::Unavailable(_))) => {
                tokio::spawn(async move {
                    for delay in EVENT_RETRIES {
                        tokio::time::sleep(delay).await;
                        match writer.write(&key, &event).await {
                            Ok(()) => return logged(&event),
                            Err(ControlError::Store(StoreError::Unavailable(_))) => continue,
                            Err(ControlError::NotLeader) => return,
                            Err(error) => return tracing::warn!(%error, "could not record event"),
                        }
                    }
                    tracing::warn!(kind = %event.kind, "could not record event: the store stayed unavailable");
                });
            }
            Err(error) => tracing::warn!(%error, "could not record event"),
        }
    }

    /// Gives `event` its sequence number, time and (a controller's) server; returns its key.
    fn stamp(&self, mut event: Event) -> (String, Event) {
        let now = self.clock.now_millis();
        let counter = self.counter.fetch_add(1, Ordering::Relaxed) % 1000;
        event.seq = now * 1000 + counter;
        event.at = now;
        // A controller's event names the server it ran on.
        if event.actor.is_controller() {
            event.actor = Actor::controller(&self.server_id);
        }
        (keys::event(event.seq), event)
    }

    /// Adds a controller's `event` to `txn`, so it is written with (and only with) the
    /// change it tells of. The caller logs it once the transaction commits.
    pub fn stage(&self, txn: Txn, event: Event) -> Txn {
        let (key, event) = self.stamp(event);
        txn.when(&key, 0).put(&key, encode(&event))
    }

    /// Records what node `node` reports having seen. Only the kinds nodes may report
    /// ([`strata_core::EventKind::reported_by_nodes`]) are accepted: a node cannot write what
    /// looks like a controller's decision.
    pub async fn record_node_event(
        &self,
        node: &NodeName,
        report: NodeEvent,
    ) -> Result<(), ControlError> {
        if !report.kind.reported_by_nodes() {
            return Err(ControlError::bad_request(
                format!("nodes cannot record events of kind `{}`", report.kind),
                Some(format!(
                    "the kinds a node may record are {}",
                    EventKind::ALL
                        .iter()
                        .filter(|kind| kind.reported_by_nodes())
                        .map(|kind| kind.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
        let mut message = report.message;
        if message.len() > NodeEvent::MAX_MESSAGE {
            let mut cut = NodeEvent::MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        self.record(Event {
            env: report.env,
            service: report.service,
            instance: report.instance,
            node: Some(node.clone()),
            actor: Actor::Agent(node.to_string()),
            ..event(report.kind, message)
        })
        .await;
        Ok(())
    }
}

/// Deletes the events older than `before` (milliseconds since the epoch); returns how many
/// went.
pub async fn prune(store: &Arc<dyn Store>, before: u64) -> Result<usize, ControlError> {
    crate::leader::delete_keys_before(store, keys::EVENTS, &keys::event(before * 1000)).await
}

/// On the leader, every minute: drops events older than the retention.
pub async fn run_retention(plane: Arc<crate::ControlPlane>) {
    crate::leader::prune_on_leader(
        plane,
        "events",
        |config| config.event_retention,
        |plane, before| async move { prune(plane.store(), before).await },
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reports_routine_steps_of_many_services_are_one_log_line() {
        let event = |kind, service: &str| {
            let mut e = super::event(kind, format!("{service}-1-a: step"));
            e.service = Some(strata_core::ServiceName::new(service).unwrap());
            e
        };
        let services = ["a", "b", "c", "d", "e", "f", "g"];
        // (events, lines expected)
        let many: Vec<Event> = services
            .iter()
            .map(|s| event(EventKind::InstanceHealthy, s))
            .chain([event(EventKind::InstanceFailed, "x")])
            .collect();
        let few: Vec<Event> = services[..3]
            .iter()
            .map(|s| event(EventKind::InstanceHealthy, s))
            .collect();
        let lines = super::log_lines(&many);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].0, EventKind::InstanceHealthy);
        assert!(
            lines[0]
                .1
                .starts_with("7 of them: a-1-a: step; b-1-a: step"),
            "{lines:?}"
        );
        assert!(lines[0].1.ends_with("; and 2 more"), "{lines:?}");
        // A problem is never folded.
        assert_eq!(lines[1], (EventKind::InstanceFailed, "x-1-a: step".into()));
        assert_eq!(super::log_lines(&few).len(), 3);
    }

    use super::*;
    use strata_store::RedbStore;

    /// An instance's event of `kind`, by `actor` ("c": the controller, else an agent).
    fn told(kind: EventKind, service: &str, instance: &str, node: &str, actor: &str) -> Event {
        let mut told = event(kind, format!("{instance}: {}", kind.as_str()));
        told.env = Some(EnvName::from_static("dev"));
        told.service = Some(ServiceName::new(service).unwrap());
        told.instance = Some(strata_core::InstanceId::new(instance).unwrap());
        told.node = Some(NodeName::new(node).unwrap());
        if actor != "c" {
            told.actor = Actor::Agent(actor.to_string());
        }
        told
    }

    #[test]
    fn routine_progress_is_folded_per_kind_service_and_actor() {
        use EventKind::*;
        // (case, events as (kind, service, instance, node, actor), wanted (kind, message)).
        type Told = (
            EventKind,
            &'static str,
            &'static str,
            &'static str,
            &'static str,
        );
        type Case = (
            &'static str,
            &'static [Told],
            &'static [(EventKind, &'static str)],
        );
        let cases: &[Case] = &[
            (
                "one of a kind stays as it is",
                &[(InstancePlaced, "web", "web-1-a", "n1", "c")],
                &[(InstancePlaced, "web-1-a: instance.placed")],
            ),
            (
                "placements across nodes fold, in the first one's place",
                &[
                    (InstanceStop, "web", "web-1-z", "n3", "c"),
                    (InstancePlaced, "web", "web-2-a", "n1", "c"),
                    (InstancePlaced, "web", "web-2-b", "n2", "c"),
                    (InstancePlaced, "api", "api-1-a", "n2", "c"),
                    (InstancePlaced, "web", "web-2-c", "n1", "c"),
                ],
                &[
                    (InstanceStop, "web-1-z: instance.stop"),
                    (
                        InstancePlaced,
                        "web: 3 instances placed on 2 nodes (web-2-a, web-2-b, web-2-c)",
                    ),
                    (InstancePlaced, "api-1-a: instance.placed"),
                ],
            ),
            (
                "one node's report names its node; past five, the rest are counted",
                &[
                    (InstanceHealthy, "web", "w1", "n1", "n1"),
                    (InstanceHealthy, "web", "w2", "n1", "n1"),
                    (InstanceHealthy, "web", "w3", "n1", "n1"),
                    (InstanceStarted, "web", "w7", "n1", "n1"),
                    (InstanceHealthy, "web", "w4", "n1", "n1"),
                    (InstanceHealthy, "web", "w5", "n1", "n1"),
                    (InstanceHealthy, "web", "w6", "n1", "n1"),
                ],
                &[
                    (
                        InstanceHealthy,
                        "web: 6 instances healthy on node n1 (w1, w2, w3, w4, w5 and 1 more)",
                    ),
                    (InstanceStarted, "w7: instance.started"),
                ],
            ),
            (
                "problems and stops are told one by one",
                &[
                    (InstanceCrashed, "web", "w1", "n1", "n1"),
                    (InstanceCrashed, "web", "w2", "n1", "n1"),
                    (InstanceStop, "web", "w3", "n1", "c"),
                    (InstanceStop, "web", "w4", "n1", "c"),
                ],
                &[
                    (InstanceCrashed, "w1: instance.crashed"),
                    (InstanceCrashed, "w2: instance.crashed"),
                    (InstanceStop, "w3: instance.stop"),
                    (InstanceStop, "w4: instance.stop"),
                ],
            ),
            (
                "different actors are not folded together",
                &[
                    (InstanceStopped, "web", "w1", "n1", "n1"),
                    (InstanceStopped, "web", "w2", "n2", "n2"),
                ],
                &[
                    (InstanceStopped, "w1: instance.stopped"),
                    (InstanceStopped, "w2: instance.stopped"),
                ],
            ),
        ];
        for (case, events, wanted) in cases {
            let events = events
                .iter()
                .map(|(kind, service, id, node, actor)| told(*kind, service, id, node, actor))
                .collect();
            let folded = fold_routine_progress(events);
            let got: Vec<(EventKind, &str)> = folded
                .iter()
                .map(|e| (e.kind, e.message.as_str()))
                .collect();
            assert_eq!(got, *wanted, "{case}");
            for event in &folded {
                let folded = event.message.contains(" instances ");
                assert_eq!(event.instance.is_none(), folded, "{case}: {event:?}");
                assert_eq!(event.env, Some(EnvName::from_static("dev")), "{case}");
                assert!(event.service.is_some(), "{case}");
            }
        }
        // A folded report's event keeps its node and actor.
        let report = (1..=2)
            .map(|i| told(InstanceHealthy, "web", &format!("w{i}"), "n1", "n1"))
            .collect();
        let folded = fold_routine_progress(report);
        assert_eq!(folded[0].node, Some(NodeName::from_static("n1")));
        assert_eq!(folded[0].actor, Actor::Agent("n1".to_string()));
    }

    #[tokio::test]
    async fn events_past_the_retention_go_and_the_recent_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("s")).await.unwrap());
        // 1,200 events a millisecond apart (more than one page of deletes), and a record
        // under another prefix that sorts near them.
        for at in 0..1_200u64 {
            let mut record = event(EventKind::NodeReady, format!("event {at}"));
            record.at = 10_000 + at;
            record.seq = record.at * 1000;
            store
                .put(&keys::event(record.seq), encode(&record))
                .await
                .unwrap();
        }
        store.put("/evidence", b"kept".to_vec()).await.unwrap();
        assert_eq!(prune(&store, 11_100).await.unwrap(), 1_100);
        let left = store.list(keys::EVENTS).await.unwrap().kvs;
        assert_eq!(left.len(), 100);
        let first: Event = serde_json::from_slice(&left[0].value).unwrap();
        assert_eq!(
            first.at, 11_100,
            "the first kept is the first at the cutoff"
        );
        assert_eq!(prune(&store, 11_100).await.unwrap(), 0);
        assert!(store.get("/evidence").await.unwrap().is_some());
    }
}
