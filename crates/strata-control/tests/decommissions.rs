//! Decommissioning a node through the control plane, in-process (the harness: a real plane
//! and store, a manual clock, fake agents): the node drains with no loss of service, its
//! archive is taken only once it holds nothing, its wipe only once the archive is kept, and
//! then it is revoked for good with a record kept; one that would strand work asks for
//! `--force`; one that cannot be reached is revoked at once, as unreachable.

mod common;

use common::forensics::{body, node_archive};
use common::harness::Harness;
use strata_core::decommission::{
    DecommissionOutcome, DecommissionPhase, DecommissionProgress, DecommissionRequest, WipeSummary,
};
use strata_core::{Actor, DesiredState, EventKind, NodeName, NodeState};

fn spec(replicas: u32, zone: Option<&str>) -> String {
    let constraint = zone
        .map(|z| format!("[service.web.placement]\nlabels = {{ zone = \"{z}\" }}\n"))
        .unwrap_or_default();
    format!(
        "[service.web]\ncommand = [\"web\"]\n[service.web.scale]\nreplicas = {replicas}\n{constraint}"
    )
}

fn operator() -> Actor {
    Actor::User("ops".to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decommissioned_node_drains_archives_wipes_and_is_revoked() {
    let mut h = Harness::start(&["n1", "n2"]).await;
    h.deploy(&spec(2, None)).await;
    h.run_for(1200).await;
    assert_eq!(h.available("web").await, 2);
    let n2 = NodeName::from_static("n2");
    let started = h
        .plane
        .decommission_node(&n2, &DecommissionRequest::default(), &operator())
        .await
        .unwrap();
    let running = started.running.expect("under way");
    assert_eq!(running.phase, DecommissionPhase::Draining);
    assert_eq!(running.requested_by, "ops");
    // Asked again: how it stands, nothing restarted.
    let again = h
        .plane
        .decommission_node(&n2, &DecommissionRequest::default(), &operator())
        .await
        .unwrap();
    assert_eq!(again.running.unwrap().requested_at, running.requested_at);
    // Asked again with other options: refused, saying which apply.
    let other = DecommissionRequest {
        wipe: strata_core::decommission::WipeScope::Device,
        ..Default::default()
    };
    let refused = h
        .plane
        .decommission_node(&n2, &other, &operator())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("already, with --wipe files"),
        "{refused}"
    );
    // While it runs an instance: no archive, no "archiving".
    let early = h
        .plane
        .decommission_progress(&n2, &DecommissionProgress::Archiving)
        .await
        .unwrap_err();
    assert!(
        early.to_string().contains("still runs 1 instance"),
        "{early}"
    );
    let dir = tempfile::tempdir().unwrap();
    let refused = h
        .plane
        .store_node_archive(&n2, body(node_archive(&h, "n2", "node", dir.path()).await))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("still draining"), "{refused}");
    assert!(h.plane.archives().await.unwrap().is_empty());
    // An instance's archive (a quarantine on the draining node) is taken all the same.
    let instance_dir = tempfile::tempdir().unwrap();
    h.plane
        .store_node_archive(
            &n2,
            body(node_archive(&h, "n2", "instance:web-1-000001", instance_dir.path()).await),
        )
        .await
        .unwrap();
    // It drains with no loss of service: the replacement serves before the instance stops.
    for _ in 0..40 {
        h.advance(100);
        h.step().await;
        assert!(h.available("web").await >= 1);
    }
    assert_eq!(
        h.wanted("web").await,
        [(1, "n1".to_string()), (1, "n1".to_string())]
    );
    assert_eq!(h.available("web").await, 2);
    // Drained: it archives. A wipe reported before its archive is kept is refused.
    let archiving = h
        .plane
        .decommission_progress(&n2, &DecommissionProgress::Archiving)
        .await
        .unwrap();
    assert_eq!(
        archiving.running.unwrap().phase,
        DecommissionPhase::Archiving
    );
    let wipe = WipeSummary {
        files: 12,
        bytes: 4096,
        other: 5,
        ..Default::default()
    };
    let too_soon = h
        .plane
        .decommission_progress(&n2, &DecommissionProgress::Wiped { wipe: wipe.clone() })
        .await
        .unwrap_err();
    assert!(
        too_soon.to_string().contains("no archive kept"),
        "{too_soon}"
    );
    let record = h
        .plane
        .store_node_archive(&n2, body(node_archive(&h, "n2", "node", dir.path()).await))
        .await
        .unwrap();
    let wiping = h.plane.decommission_status(&n2).await.unwrap();
    let wiping = wiping.running.unwrap();
    assert_eq!(wiping.phase, DecommissionPhase::Wiping);
    assert_eq!(wiping.archive.as_deref(), Some(record.id.as_str()));
    // Wiped: the end. Its record goes, the decommission record stays, the name is revoked.
    h.kill("n2");
    let done = h
        .plane
        .decommission_progress(&n2, &DecommissionProgress::Wiped { wipe: wipe.clone() })
        .await
        .unwrap();
    let finished = done.finished.expect("finished");
    assert_eq!(finished.outcome, DecommissionOutcome::Wiped);
    assert_eq!(finished.archive.as_deref(), Some(record.id.as_str()));
    assert_eq!(finished.wipe, Some(wipe.clone()));
    assert!(h.plane.nodes().await.unwrap().iter().all(|n| n.name != n2));
    // Its last report sent again (the answer lost): the same record.
    let resent = h
        .plane
        .decommission_progress(&n2, &DecommissionProgress::Wiped { wipe })
        .await
        .unwrap();
    assert_eq!(resent.finished.unwrap(), finished);
    assert_eq!(
        h.plane.decommissions().await.unwrap(),
        std::slice::from_ref(&finished)
    );
    h.step().await;
    let revoked = h.plane.revocation("n2").expect("revoked");
    assert_eq!(revoked.by, "ops");
    let rejoined = h
        .plane
        .register_node(strata_core::api::RegisterNode::bare(
            n2.clone(),
            "http://n2.invalid:7701",
        ))
        .await
        .unwrap_err();
    assert!(
        rejoined.to_string().contains("its name is revoked"),
        "{rejoined}"
    );
    // The mesh learns it with the routes.
    let routes = h.plane.routes().await.unwrap();
    assert!(routes.revoked.contains("n2"), "{:?}", routes.revoked);
    let events = h.plane.events(None, 200).await.unwrap();
    let kinds: Vec<EventKind> = events
        .iter()
        .filter(|e| e.node.as_ref() == Some(&n2))
        .map(|e| e.kind)
        .collect();
    for kind in [
        EventKind::NodeDecommissioning,
        EventKind::NodeArchived,
        EventKind::NodeDecommissioned,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} missing: {kinds:?}");
    }
    // The service never noticed.
    h.run_for(500).await;
    assert_eq!(h.available("web").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decommission_that_would_strand_work_asks_for_force_and_stops_it_then() {
    let mut h = Harness::start(&["n1", "n2"]).await;
    // Only n2 is in zone-n2.
    h.deploy(&spec(1, Some("zone-n2"))).await;
    h.run_for(1200).await;
    assert_eq!(h.wanted("web").await, [(1, "n2".to_string())]);
    let n2 = NodeName::from_static("n2");
    let refused = h
        .plane
        .decommission_node(&n2, &DecommissionRequest::default(), &operator())
        .await
        .unwrap_err();
    let text = format!("{refused} {:?}", refused.hint());
    assert!(
        text.contains("would stop instances no other node can take: dev/web: 1 of its 1")
            && text.contains("label zone=zone-n2 not present")
            && text.contains("--force"),
        "{text}"
    );
    let node = h.plane.decommission_status(&n2).await.unwrap();
    assert_eq!(node.running, None, "nothing changed");
    let forced = DecommissionRequest {
        force: true,
        unreachable: false,
        ..Default::default()
    };
    let started = h
        .plane
        .decommission_node(&n2, &forced, &operator())
        .await
        .unwrap();
    assert!(started.running.unwrap().force);
    h.run_for(300).await;
    assert!(h.wanted("web").await.is_empty(), "stopped with the node");
    let events = h.plane.events(None, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e
            .message
            .contains("decommissioned (--force) and no other node can take it")),
        "{events:#?}"
    );
    // Nothing runs on it now: it may archive.
    h.plane
        .decommission_progress(&n2, &DecommissionProgress::Archiving)
        .await
        .unwrap();
    // A step that fails: the node stays decommissioning, with the reason; asked again, it
    // starts over.
    let failed = h
        .plane
        .decommission_progress(
            &n2,
            &DecommissionProgress::Failed {
                reason: "wipe: /data/x: Input/output error".into(),
            },
        )
        .await
        .unwrap()
        .running
        .unwrap();
    assert_eq!(failed.phase, DecommissionPhase::Failed);
    assert_eq!(
        failed.reason.as_deref(),
        Some("wipe: /data/x: Input/output error")
    );
    let nodes = h.plane.nodes().await.unwrap();
    assert!(nodes.iter().any(|n| n.name == n2), "still there");
    let again = h
        .plane
        .decommission_node(&n2, &forced, &operator())
        .await
        .unwrap()
        .running
        .unwrap();
    assert_eq!(
        (again.phase, again.reason),
        (DecommissionPhase::Draining, None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_cannot_be_reached_is_revoked_as_unreachable_and_forgotten() {
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    h.deploy(&spec(2, None)).await;
    h.run_for(1200).await;
    let victim = h.wanted("web").await[0].1.clone();
    let name = NodeName::new(victim.clone()).unwrap();
    let unreachable = DecommissionRequest {
        force: false,
        unreachable: true,
        ..Default::default()
    };
    // Alive: it can archive itself; --unreachable is refused unless forced.
    let refused = h
        .plane
        .decommission_node(&name, &unreachable, &operator())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("ready and heard from"),
        "{refused}"
    );
    h.kill(&victim);
    h.run_for(700).await;
    assert_eq!(h.node_state(&victim).await, NodeState::Down);
    // Down: a plain decommission cannot archive it.
    let plain = h
        .plane
        .decommission_node(&name, &DecommissionRequest::default(), &operator())
        .await
        .unwrap_err();
    assert!(
        format!("{plain} {:?}", plain.hint()).contains("--unreachable"),
        "{plain}"
    );
    let status = h
        .plane
        .decommission_node(&name, &unreachable, &operator())
        .await
        .unwrap();
    let record = status.finished.expect("revoked at once");
    assert_eq!(record.outcome, DecommissionOutcome::Unreachable);
    assert_eq!((record.archive.clone(), record.wipe.clone()), (None, None));
    assert!(record.note.contains("nothing of it was archived or wiped"));
    assert!(h.plane.revocation(&victim).is_some());
    // Its instances are replaced as for any down node; its record goes once they are gone,
    // without waiting for the forget period.
    h.run_for(1200).await;
    assert_eq!(h.available("web").await, 2);
    assert!(h
        .wanted("web")
        .await
        .iter()
        .all(|(_, node)| *node != victim));
    assert_eq!(h.plane.nodes_to_forget(), std::slice::from_ref(&name));
    assert!(h
        .instances("web")
        .await
        .iter()
        .all(|v| v.instance.node != victim || v.instance.desired == DesiredState::Stopped));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_lost_after_its_archive_was_kept_is_revoked_with_the_archive_named() {
    let mut h = Harness::start(&["n1", "n2"]).await;
    let n2 = NodeName::from_static("n2");
    h.plane
        .decommission_node(&n2, &DecommissionRequest::default(), &operator())
        .await
        .unwrap();
    h.run_for(300).await;
    h.plane
        .decommission_progress(&n2, &DecommissionProgress::Archiving)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kept = h
        .plane
        .store_node_archive(&n2, body(node_archive(&h, "n2", "node", dir.path()).await))
        .await
        .unwrap();
    // It dies while wiping: revoked unreachable, its record naming the archive it sent.
    h.kill("n2");
    h.run_for(700).await;
    let unreachable = DecommissionRequest {
        unreachable: true,
        ..Default::default()
    };
    let record = h
        .plane
        .decommission_node(&n2, &unreachable, &operator())
        .await
        .unwrap()
        .finished
        .unwrap();
    assert_eq!(record.outcome, DecommissionOutcome::Unreachable);
    assert_eq!(record.archive.as_deref(), Some(kept.id.as_str()));
    assert!(
        record.note.contains("unreachable while wiping") && record.note.contains(&kept.id),
        "{}",
        record.note
    );
}
