//! The event log through a store outage, in-process (the harness): an event the store could
//! not take (an etcd election, say) is sent again in the background until the store is
//! back, once, rather than lost; the caller that recorded it did not wait for that.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::faulty_store::FaultyStore;
use common::harness::Harness;
use strata_core::{EventKind, NodeName};
use strata_store::{Op, StoreError};

#[tokio::test(flavor = "multi_thread")]
async fn an_event_the_store_could_not_take_is_sent_again_once_it_is_back() {
    let failing = Arc::new(AtomicUsize::new(0));
    let refusals = failing.clone();
    // The store refuses, as unavailable, the next `failing` transactions writing an event.
    let h = Harness::start_with(&["n1"], move |inner| {
        Arc::new(FaultyStore {
            txn_fault: Box::new(move |txn| {
                let writes_event = txn.ops.iter().any(|op| {
                    matches!(op, Op::Put { key, .. } if key.starts_with(strata_core::keys::EVENTS))
                });
                let refused = writes_event
                    && refusals
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                refused.then(|| StoreError::Unavailable("electing a leader".into()))
            }),
            ..FaultyStore::new(inner)
        })
    })
    .await;
    Harness::elected(&h.plane).await;
    // The store refuses the event's first two attempts.
    failing.store(2, Ordering::SeqCst);
    let mut event = strata_control::event_log::event(
        EventKind::LivenessPaused,
        "liveness paused: told through an outage",
    );
    event.node = NodeName::new("n1").ok();
    let started = Instant::now();
    h.plane.event_log().record(event).await;
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "the caller does not wait for the retries"
    );
    let told = |events: &[strata_core::Event]| {
        events
            .iter()
            .filter(|e| e.message.contains("told through an outage"))
            .count()
    };
    assert_eq!(told(&h.plane.events(None, 100).await.unwrap()), 0);
    // Sent again after 0.5 s (refused), then 1 s more: kept once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while told(&h.plane.events(None, 100).await.unwrap()) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failing.load(Ordering::SeqCst), 0, "both refusals were used");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(told(&h.plane.events(None, 100).await.unwrap()), 1);
}
