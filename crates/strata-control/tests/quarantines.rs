//! Quarantining an instance through the control plane, in-process (the harness): it leaves
//! routing at once, its service gets a replacement while it is archived, its node learns to
//! freeze and archive it, and the archive kept is named in its record.

mod common;

use common::forensics::{body, node_archive};
use common::harness::Harness;
use strata_core::{Actor, DesiredState, EventKind, InstanceId};

#[tokio::test(flavor = "multi_thread")]
async fn a_quarantined_instance_leaves_routing_is_replaced_and_gets_its_archive() {
    let mut h = Harness::start(&["n1", "n2"]).await;
    h.deploy("[service.web]\ncommand = [\"web\"]\n[service.web.scale]\nreplicas = 2\n")
        .await;
    h.run_for(1200).await;
    assert_eq!(h.available("web").await, 2);
    let suspect = h.instances("web").await[0].instance.clone();
    let operator = Actor::User("ops".to_string());
    let quarantined = h
        .plane
        .quarantine_instance(&suspect.id, &operator)
        .await
        .unwrap();
    let quarantine = quarantined.quarantine.clone().expect("quarantined");
    assert_eq!(quarantine.requested_by, "ops");
    assert_eq!(quarantined.desired, DesiredState::Stopped);
    // Asked again: as it stands.
    let again = h
        .plane
        .quarantine_instance(&suspect.id, &operator)
        .await
        .unwrap();
    assert_eq!(again.quarantine, Some(quarantine));
    // Out of routing at once: not an endpoint, not draining, not a caller its node vouches
    // for.
    let address = h.instances("web").await[0]
        .status
        .as_ref()
        .and_then(|s| s.address.clone())
        .unwrap();
    let routes = h.plane.routes().await.unwrap();
    let route = routes.routes.iter().find(|r| r.service == "web").unwrap();
    assert!(!route.endpoints.contains(&address), "{route:?}");
    assert!(!route.draining.contains(&address), "{route:?}");
    // Its node is told to quarantine it (not only to stop it).
    let told = h.plane.assignments(&suspect.node).await.unwrap();
    let told = told
        .assignments
        .iter()
        .find(|a| a.instance.id == suspect.id)
        .expect("still assigned while it is archived");
    assert!(told.instance.quarantine.is_some());
    // The service gets a replacement.
    h.run_for(1200).await;
    let running = h.wanted("web").await;
    assert_eq!(running.len(), 2, "{running:?}");
    assert_eq!(h.available("web").await, 2);
    // The node's archive of it is named in its record; then its node stops it.
    let dir = tempfile::tempdir().unwrap();
    let subject = format!("instance:{}", suspect.id);
    let record = h
        .plane
        .store_node_archive(
            &suspect.node,
            body(node_archive(&h, suspect.node.as_str(), &subject, dir.path()).await),
        )
        .await
        .unwrap();
    let events = h.plane.events(None, 100).await.unwrap();
    let kept = h.instances("web").await;
    let kept = kept.iter().find(|v| v.instance.id == suspect.id).unwrap();
    assert_eq!(
        kept.instance
            .quarantine
            .as_ref()
            .unwrap()
            .archive
            .as_deref(),
        Some(record.id.as_str())
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::InstanceQuarantined && e.message.contains(&record.id)),
        "{events:#?}"
    );
    h.run_for(300).await;
    assert!(
        h.instances("web")
            .await
            .iter()
            .all(|v| v.instance.id != suspect.id),
        "stopped and forgotten once archived"
    );
    // One that does not exist is not found.
    let missing = h
        .plane
        .quarantine_instance(&InstanceId::new("web-9-000000").unwrap(), &operator)
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("not found") || missing.to_string().contains("web-9-000000"),
        "{missing}"
    );
}
