//! The control plane's glue, in-process: deploys, rollouts, node loss, fencing and leader
//! hand-over driven step by step through the harness (tests/common/harness.rs): a real
//! plane and store, a manual clock, fake agents. Each runs in milliseconds.

mod common;

use common::harness::Harness;
use strata_core::{DesiredState, NodeState};

fn spec(replicas: u32, version: &str) -> String {
    format!(
        "[service.web]\ncommand = [\"web\", \"{version}\"]\n[service.web.scale]\nreplicas = {replicas}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_spreads_its_instances_and_counts_them_available_after_min_ready() {
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    let deployed = h.deploy(&spec(3, "v1")).await;
    assert!(deployed.services[0].created);
    h.step().await;
    let nodes: Vec<String> = h.wanted("web").await.into_iter().map(|(_, n)| n).collect();
    assert_eq!(nodes, ["n1", "n2", "n3"], "one per node");
    // Healthy at once, available only after min_ready (1 s) of it.
    assert_eq!(h.available("web").await, 0);
    h.run_for(900).await;
    assert_eq!(h.available("web").await, 0);
    h.run_for(200).await;
    assert_eq!(h.available("web").await, 3);
    // The same spec again changes nothing.
    assert!(!h.deploy(&spec(3, "v1")).await.services[0].created);
    h.step().await;
    assert_eq!(h.wanted("web").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_instances_a_batch_places_for_a_service_have_consecutive_ids() {
    // Side by side in the store's key order: a batch rewrites a few pages, not one each.
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    h.deploy(&spec(12, "v1")).await;
    h.step().await;
    let mut suffixes: Vec<u32> = h
        .instances("web")
        .await
        .iter()
        .map(|v| {
            let id = v.instance.id.as_str();
            assert!(id.starts_with("web-1-"), "{id}");
            u32::from_str_radix(&id["web-1-".len()..], 16).unwrap()
        })
        .collect();
    assert_eq!(suffixes.len(), 12);
    suffixes.sort_unstable();
    // Consecutive modulo 2^24: at most one gap, where the run wraps past 0xffffff.
    let gaps = suffixes.windows(2).filter(|w| w[1] != w[0] + 1).count();
    let wraps = suffixes[0] == 0 && suffixes[11] == 0xff_ffff;
    assert!(gaps == 0 || (gaps == 1 && wraps), "{suffixes:x?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_stops_an_old_instance_only_once_its_replacement_was_ready_for_min_ready() {
    let mut h = Harness::start(&["n1", "n2"]).await;
    h.deploy(&spec(2, "v1")).await;
    h.step().await;
    h.run_for(1_100).await;
    assert_eq!(h.available("web").await, 2);

    let deployed = h.deploy(&spec(2, "v2")).await;
    assert_eq!(deployed.services[0].release, 2);
    h.step().await;
    let releases = |wanted: &[(u64, String)]| {
        let mut r: Vec<u64> = wanted.iter().map(|(r, _)| *r).collect();
        r.sort();
        r
    };
    // The new ones run beside the old; none of the old stops before min_ready.
    assert_eq!(releases(&h.wanted("web").await), [1, 1, 2, 2]);
    h.run_for(800).await;
    assert_eq!(releases(&h.wanted("web").await), [1, 1, 2, 2]);
    h.run_for(300).await;
    assert_eq!(releases(&h.wanted("web").await), [2, 2]);
    // The stopped ones are forgotten once their agents say so.
    h.step().await;
    h.step().await;
    let left: Vec<u64> = h
        .instances("web")
        .await
        .iter()
        .map(|v| v.instance.release)
        .collect();
    assert_eq!(left, [2, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_node_is_replaced_and_its_old_instance_fenced_when_it_returns() {
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    h.deploy(&spec(2, "v1")).await;
    h.step().await;
    let before = h.wanted("web").await;
    let victim = before[0].1.clone();
    let old_epoch = h.agents[&victim].epoch;
    h.kill(&victim);
    // Down after 600 ms of silence (the default thresholds), replaced elsewhere.
    h.run_for(300).await;
    assert_eq!(h.node_state(&victim).await, NodeState::Suspect);
    h.run_for(400).await;
    assert_eq!(h.node_state(&victim).await, NodeState::Down);
    h.step().await;
    let after = h.wanted("web").await;
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|(_, node)| *node != victim), "{after:?}");
    // It comes back: a new epoch; what it ran before is not its to run any more.
    h.revive(&victim).await;
    assert_eq!(h.agents[&victim].epoch, old_epoch + 1);
    h.step().await;
    assert!(
        h.agents[&victim].running.is_empty(),
        "the stale instance was stopped"
    );
    assert_eq!(h.node_state(&victim).await, NodeState::Ready);
    assert_eq!(h.wanted("web").await.len(), 2);
}

/// A node whose agent's connection broke (its blocking query abandoned by the caller, as
/// when the agent's process dies) is down once silent past the suspect threshold (300 ms);
/// one gone quiet with its query still open waits out the down threshold (600 ms).
#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_agent_dropped_its_blocking_query_is_down_sooner() {
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    h.deploy(&spec(3, "v1")).await;
    h.step().await;
    let hold = |node: &str| {
        let plane = h.plane.clone();
        let name = strata_core::NodeName::new(node).unwrap();
        tokio::spawn(async move {
            let index = plane.assignments(&name).await.unwrap().revision;
            plane
                .assignments_after(&name, index, std::time::Duration::from_secs(60), true)
                .await
        })
    };
    let crashed = hold("n1");
    let quiet = hold("n2");
    for _ in 0..200 {
        let beats = h.plane.heartbeats();
        if beats.open_queries("n1") == 1 && beats.open_queries("n2") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        h.plane.heartbeats().open_queries("n1"),
        1,
        "the query is held"
    );
    // n1's process dies: no beat, and its connection closes under its query. n2 goes quiet.
    h.kill("n1");
    crashed.abort();
    assert!(crashed.await.unwrap_err().is_cancelled());
    h.kill("n2");
    h.run_for(300).await;
    assert_eq!(h.node_state("n1").await, NodeState::Down);
    assert_eq!(h.node_state("n2").await, NodeState::Suspect);
    assert_eq!(h.node_state("n3").await, NodeState::Ready);
    h.run_for(300).await;
    assert_eq!(h.node_state("n2").await, NodeState::Down);
    quiet.abort();
    // n1's replacement runs elsewhere.
    h.step().await;
    let wanted = h.wanted("web").await;
    assert_eq!(wanted.len(), 3);
    assert!(wanted.iter().all(|(_, node)| node == "n3"), "{wanted:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_nodes_instances_serve_no_one_from_the_moment_it_is_down() {
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    h.deploy(&spec(2, "v1")).await;
    h.step().await;
    h.run_for(1_100).await;
    assert_eq!(h.available("web").await, 2);
    let victim = h.wanted("web").await[0].1.clone();
    let routed = |table: &strata_core::api::RouteTable| -> usize {
        table.routes.iter().map(|r| r.endpoints.len()).sum()
    };
    let table = h.plane.routes().await.unwrap();
    assert_eq!(routed(&table), 2);
    assert!(table.routes[0].running_on.contains(&victim));
    h.kill(&victim);
    // Judged down, and no reconcile pass since: its instance is still wanted and last said
    // it ran, but neither the routes nor the service's status count it.
    for _ in 0..7 {
        h.advance(100);
        h.beat_and_judge().await;
    }
    assert_eq!(h.node_state(&victim).await, NodeState::Down);
    let on_victim: Vec<_> = h
        .instances("web")
        .await
        .into_iter()
        .filter(|v| v.instance.node == victim.as_str())
        .collect();
    assert_eq!(on_victim.len(), 1);
    assert_eq!(on_victim[0].instance.desired, DesiredState::Running);
    assert_eq!(h.available("web").await, 1);
    let table = h.plane.routes().await.unwrap();
    assert_eq!(routed(&table), 1);
    // Nor may its node call others as `web` any more (the mesh believes a node's word for
    // its caller only for a service that runs there).
    assert!(!table.routes[0].running_on.contains(&victim), "{table:?}");
    assert_eq!(table.routes[0].running_on.len(), 1);
    // The pass replaces it and marks it stopped (after the placement).
    h.step().await;
    let wanted = h.wanted("web").await;
    assert_eq!(wanted.len(), 2);
    assert!(wanted.iter().all(|(_, node)| *node != victim), "{wanted:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_finishes_the_rollout_the_old_one_began() {
    let mut h = Harness::start(&["n1", "n2"]).await;
    h.deploy(&spec(2, "v1")).await;
    h.step().await;
    h.run_for(1_100).await;
    h.deploy(&spec(2, "v2")).await;
    h.step().await;
    assert_eq!(h.wanted("web").await.len(), 4, "mid-rollout");

    // The leader's lease ends (it is paused, or gone); a second server takes over.
    let second = Harness::server(&h.store, &h.clock, h.dir(), "s2").await;
    let term = h.plane.term().expect("s1 leads");
    h.store.revoke_lease(term.lease).await.unwrap();
    Harness::elected(&second).await;
    let first = std::mem::replace(&mut h.plane, second);
    // Once the new instances are available, the old leader would stop the old ones: its
    // controller writes are fenced off.
    h.advance(1_100);
    let fenced = strata_control::reconcile::reconcile_once(&first, &Default::default()).await;
    assert!(
        matches!(fenced, Err(strata_control::ControlError::NotLeader)),
        "{fenced:?}"
    );
    h.run_for(200).await;
    let wanted = h.wanted("web").await;
    assert_eq!(wanted.len(), 2);
    assert!(
        wanted.iter().all(|(release, _)| *release == 2),
        "{wanted:?}"
    );
    let all_wanted = h
        .instances("web")
        .await
        .iter()
        .all(|v| v.instance.desired == DesiredState::Running);
    assert!(
        all_wanted,
        "the old release's instances were stopped and forgotten"
    );
}

/// What a busy node and a long-lived service write fits every backend's transaction limit
/// (etcd's 128 operations, which the embedded store enforces too): a report of 100 changes
/// of state, and the deletion of a service with more releases than one transaction holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_nodes_records_are_forgotten_a_few_batches_a_pass_until_none_is_left() {
    let mut h = Harness::start(&["n1", "n2"]).await;
    let small = "[service.web.resources]\ncpu = \"1m\"\nmemory = \"1Mi\"\n";
    h.deploy(&format!("{}{small}", spec(300, "v1"))).await;
    h.step().await;
    let on_n1 = |views: &[strata_core::InstanceView]| {
        views.iter().filter(|v| v.instance.node == "n1").count()
    };
    assert_eq!(on_n1(&h.instances("web").await), 150);
    h.kill("n1");
    for _ in 0..20 {
        if h.node_state("n1").await == NodeState::Down {
            break;
        }
        h.advance(100);
        h.step().await;
    }
    assert_eq!(h.node_state("n1").await, NodeState::Down);
    // The pass that saw it down replaced its 150 and asked them to stop; their records go a
    // few batches a pass (120), so writes that matter are not queued behind them.
    let wanted = h.wanted("web").await;
    assert_eq!(wanted.len(), 300);
    assert!(wanted.iter().all(|(_, node)| node == "n2"));
    assert_eq!(on_n1(&h.instances("web").await), 150);
    h.step().await;
    assert_eq!(
        on_n1(&h.instances("web").await),
        30,
        "120 forgotten in one pass"
    );
    h.step().await;
    assert_eq!(on_n1(&h.instances("web").await), 0, "the rest in the next");
    assert_eq!(h.instances("web").await.len(), 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_reports_fit_the_transactions_etcd_takes_and_a_deleted_services_history_stays() {
    use strata_core::{InstanceState, InstanceStatus, NodeName};
    let small = |replicas: u32, version: &str| {
        format!(
            "{}[service.web.resources]\ncpu = \"10m\"\n",
            spec(replicas, version)
        )
    };
    let mut h = Harness::start(&["n1"]).await;
    h.deploy(&small(100, "v1")).await;
    h.step().await;
    let running = h.instances("web").await;
    assert_eq!(running.len(), 100);
    assert!(running.iter().all(|v| v.state() == InstanceState::Running));
    // All unhealthy at once: 100 statuses and 100 events, in one report.
    let n1 = NodeName::from_static("n1");
    let report: Vec<InstanceStatus> = running
        .iter()
        .map(|v| {
            InstanceStatus::new(
                v.instance.id.clone(),
                n1.clone(),
                InstanceState::Unhealthy,
                "",
            )
        })
        .collect();
    let stored = h.plane.report_statuses(&n1, report).await.unwrap();
    assert!(stored.not_wanted.is_empty());
    let states: Vec<InstanceState> = h.instances("web").await.iter().map(|v| v.state()).collect();
    assert_eq!(states, vec![InstanceState::Unhealthy; 100]);

    // 130 releases, then the service is deleted: its history stays, and a deploy of the
    // name goes on from it.
    for version in 2..=130 {
        h.deploy(&small(0, &format!("v{version}"))).await;
    }
    let env = strata_core::EnvName::from_static("dev");
    let web = strata_core::ServiceName::from_static("web");
    let releases = strata_core::keys::releases_of(&env, &web);
    assert_eq!(h.store.list(&releases).await.unwrap().kvs.len(), 130);
    h.plane
        .delete_service(&env, &web, &strata_core::Actor::User("test".into()))
        .await
        .unwrap();
    assert!(h
        .store
        .get(&strata_core::keys::service(&env, &web))
        .await
        .unwrap()
        .is_none());
    assert_eq!(h.store.list(&releases).await.unwrap().kvs.len(), 130);
    assert_eq!(h.plane.releases(&env, &web).await.unwrap().len(), 130);
    h.step().await;
    assert!(h.wanted("web").await.is_empty(), "its instances stop");
    let again = h.deploy(&small(1, "v1")).await;
    assert_eq!(again.services[0].release, 131);
    assert!(again.services[0].created);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_node_is_removed_by_hand_or_forgotten_after_the_forget_period() {
    use strata_control::Remover;
    use strata_core::{Actor, NodeName};
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    h.deploy(&spec(2, "v1")).await;
    h.step().await;
    let victim = h.wanted("web").await[0].1.clone();
    let name = NodeName::new(victim.clone()).unwrap();
    let operator = Actor::User("ops".to_string());
    let by_hand = || Remover::Operator(operator.clone());
    // Alive: refused, and it stays.
    let refused = h.plane.remove_node(&name, by_hand()).await.unwrap_err();
    assert!(refused.to_string().contains("is ready"), "{refused}");
    h.kill(&victim);
    h.run_for(700).await;
    assert_eq!(h.node_state(&victim).await, NodeState::Down);
    // Down, but not forgotten before the forget period: a day by default.
    assert!(h.plane.nodes_to_forget().is_empty());
    h.run_for(300).await;
    let instances_left = h
        .instances("web")
        .await
        .iter()
        .filter(|v| v.instance.node == victim)
        .count();
    assert_eq!(
        instances_left, 0,
        "its instance record is forgotten once replaced"
    );
    let day = strata_control::DEFAULT_FORGET_DOWN_AFTER.as_millis() as u64;
    h.advance(day);
    assert_eq!(h.plane.nodes_to_forget(), std::slice::from_ref(&name));
    // An operator may remove it now (the leader would, unasked); then it is gone, with an
    // event, and a second removal finds nothing.
    h.plane.remove_node(&name, by_hand()).await.unwrap();
    assert!(h
        .plane
        .nodes()
        .await
        .unwrap()
        .iter()
        .all(|n| n.name != victim));
    let events = h.plane.events(None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == strata_core::EventKind::NodeRemoved
                && e.node.as_ref() == Some(&name)
                && e.actor == operator),
        "{events:#?}"
    );
    let again = h.plane.remove_node(&name, by_hand()).await.unwrap_err();
    assert!(again.to_string().contains("no node"), "{again}");
}

/// The version skew rule at registration: an agent newer than the servers is refused (told
/// to upgrade the servers first); one of the servers' own version is taken.
#[tokio::test]
async fn an_agent_newer_than_the_servers_is_refused() {
    let h = Harness::start(&["n1"]).await;
    let node = h.plane.nodes().await.unwrap()[0].clone();
    let with_version = |version: &str| strata_core::api::RegisterNode {
        name: node.name.clone(),
        agent_url: node.agent_url.clone(),
        labels: node.labels.clone(),
        capacity: node.capacity,
        drivers: node.drivers.clone(),
        last_epoch: Some(node.epoch),
        mesh_addr: None,
        agent_version: Some(version.to_string()),
    };
    let error = h
        .plane
        .register_node(with_version("99.0.0"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, strata_control::ControlError::BadRequest { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("upgrade the servers first"),
        "{error}"
    );
    let taken = h
        .plane
        .register_node(with_version(strata_core::version::VERSION))
        .await
        .unwrap();
    assert_eq!(taken.epoch, node.epoch);
}
#[tokio::test(flavor = "multi_thread")]
async fn a_live_nodes_name_is_not_taken_by_an_agent_elsewhere() {
    use strata_core::api::RegisterNode;
    let mut h = Harness::start(&["n1", "n2"]).await;
    let holder = h.plane.nodes().await.unwrap()[0].clone();
    let name = holder.name.clone();
    let at = |url: &str, last_epoch: Option<u64>| RegisterNode {
        name: name.clone(),
        agent_url: url.to_string(),
        labels: holder.labels.clone(),
        capacity: holder.capacity,
        drivers: holder.drivers.clone(),
        last_epoch,
        mesh_addr: None,
        agent_version: None,
    };
    // A clone elsewhere, while the node is alive: refused, naming where the node is.
    let refused = h
        .plane
        .register_node(at("http://10.9.9.9:7701", None))
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains(&holder.agent_url) && text.contains("http://10.9.9.9:7701"),
        "{text}"
    );
    let after = h.plane.nodes().await.unwrap();
    let kept = after.iter().find(|n| n.name == name).unwrap();
    assert_eq!(
        (kept.epoch, &kept.agent_url),
        (holder.epoch, &holder.agent_url),
        "the node is untouched"
    );
    // Its own agent restarting at its address takes it back, epoch and all.
    let back = h
        .plane
        .register_node(at(&holder.agent_url, Some(holder.epoch)))
        .await
        .unwrap();
    assert_eq!(back.epoch, holder.epoch);
    // Once the node is down, the name is free for an agent elsewhere (a new epoch).
    h.kill(name.as_str());
    h.run_for(700).await;
    assert_eq!(h.node_state(name.as_str()).await, NodeState::Down);
    let moved = h
        .plane
        .register_node(at("http://10.9.9.9:7701", None))
        .await
        .unwrap();
    assert_eq!(moved.epoch, holder.epoch + 1);
    assert_eq!(moved.agent_url, "http://10.9.9.9:7701");
}

/// A node that registers again through another server (which alone notes it as a beat) is
/// not judged by the leader on its old silence: the registration's time in the record counts,
/// so it is not marked down at once (and made to register again, over and over). With no
/// beat after it, it goes down as any silent node does.
#[tokio::test(flavor = "multi_thread")]
async fn a_registration_through_another_server_counts_as_a_sign_of_life() {
    use strata_control::clock::Clock;
    let mut h = Harness::start(&["n1", "n2"]).await;
    h.kill("n1");
    h.run_for(700).await;
    assert_eq!(h.node_state("n1").await, NodeState::Down);
    h.run_for(1_000).await;
    // What a follower's registration writes: the node ready under a new epoch, heard now.
    let key = strata_core::keys::node("n1");
    let kv = h.store.get(&key).await.unwrap().unwrap();
    let mut node: strata_core::Node = serde_json::from_slice(&kv.value).unwrap();
    node.state = NodeState::Ready;
    node.epoch += 1;
    node.last_heartbeat = h.clock.now_millis();
    h.store
        .put(&key, serde_json::to_vec(&node).unwrap())
        .await
        .unwrap();
    h.step().await;
    assert_eq!(
        h.node_state("n1").await,
        NodeState::Ready,
        "judged on its registration, not its old silence"
    );
    h.run_for(700).await;
    assert_eq!(
        h.node_state("n1").await,
        NodeState::Down,
        "no beat after it"
    );
}

/// No node is marked down while the store does not answer promptly: a silent node stays
/// suspect, the pass says why, and once the store answers again every node gets a full
/// grace period before a real death is caught.
#[tokio::test]
async fn no_node_is_marked_down_while_the_store_is_slow() {
    let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stalled.clone();
    // The embedded store, whose `revision` (what a liveness pass asks before it marks a node
    // down) stalls for a second while `stalled` is set: a store slow or unavailable.
    let mut h = Harness::start_with(&["n1", "n2"], move |inner| {
        std::sync::Arc::new(common::faulty_store::FaultyStore {
            revision_delay: Box::new(move || {
                match flag.load(std::sync::atomic::Ordering::SeqCst) {
                    true => std::time::Duration::from_secs(1),
                    false => std::time::Duration::ZERO,
                }
            }),
            ..common::faulty_store::FaultyStore::new(inner)
        })
    })
    .await;
    h.run_for(300).await;
    h.kill("n2");
    stalled.store(true, std::sync::atomic::Ordering::SeqCst);
    h.advance(2_000);
    let judged = strata_control::reconcile::judge_liveness(&h.plane, h.plane.monotonic_ms()).await;
    assert!(
        matches!(
            &judged,
            Err(strata_control::ControlError::Store(strata_store::StoreError::Unavailable(why))) if why.contains("did not answer")
        ),
        "{judged:?}"
    );
    assert_ne!(h.node_state("n2").await, NodeState::Down);
    assert_eq!(h.node_state("n1").await, NodeState::Ready);

    // The store answers again: the silence before is forgiven, a real death is caught after
    // a full down period.
    stalled.store(false, std::sync::atomic::Ordering::SeqCst);
    h.run_for(300).await;
    assert_ne!(h.node_state("n2").await, NodeState::Down);
    h.run_for(1_500).await;
    assert_eq!(h.node_state("n2").await, NodeState::Down);
    assert_eq!(h.node_state("n1").await, NodeState::Ready);
}

/// A rollback goes back to the release that served in full before (release 1 here), rolled
/// out as any release, with an event that says who and why; two in a row go back and forth;
/// a release that does not exist, the one running, or one whose configuration is gone are
/// refused with nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_rolls_the_release_that_served_out_again_and_says_why() {
    use strata_core::api::RollbackRequest;
    use strata_core::{Actor, ServiceName};
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    let web = ServiceName::new("web").unwrap();
    let dev = common::harness::dev();
    h.deploy(&spec(2, "v1")).await;
    h.step().await;
    h.run_for(1_100).await;
    // Release 2 replaces release 1, which served in full.
    assert_eq!(h.deploy(&spec(2, "v2")).await.services[0].release, 2);
    h.run_for(2_500).await;
    let releases = |w: &[(u64, String)]| w.iter().map(|(r, _)| *r).collect::<Vec<_>>();
    assert_eq!(releases(&h.wanted("web").await), [2, 2]);

    let alice = Actor::User("alice".into());
    let back = RollbackRequest {
        to: None,
        reason: Some("release 2 answers 500s".into()),
    };
    let rolled = h.plane.rollback(&dev, &web, &back, &alice).await.unwrap();
    assert_eq!((rolled.from, rolled.to), (2, 1));
    h.run_for(2_500).await;
    assert_eq!(releases(&h.wanted("web").await), [1, 1]);
    assert_eq!(h.available("web").await, 2);
    let events = h.plane.events(None, 100).await.unwrap();
    let told = events
        .iter()
        .find(|e| e.kind == strata_core::EventKind::ServiceRolledBack)
        .expect("a service.rolled_back event");
    assert_eq!(
        told.message,
        "web: rolled back from release 2 to release 1: release 2 answers 500s"
    );
    assert_eq!(told.actor, alice);

    // Refused, nothing changed.
    let refused = |to: u64| RollbackRequest {
        to: Some(to),
        reason: None,
    };
    for (to, word) in [(1, "already runs release 1"), (9, "has no release 9")] {
        let error = h
            .plane
            .rollback(&dev, &web, &refused(to), &alice)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(word), "{error}");
    }
    // Again, with no release named: back to 2 (it served in full too), as `rollout undo`.
    let again = RollbackRequest::default();
    let rolled = h.plane.rollback(&dev, &web, &again, &alice).await.unwrap();
    assert_eq!((rolled.from, rolled.to), (1, 2));
    h.run_for(2_500).await;
    assert_eq!(releases(&h.wanted("web").await), [2, 2]);
    // A release whose configuration is no longer kept cannot run as it was.
    h.store
        .delete(&strata_core::keys::config("dev", "web", 1))
        .await
        .unwrap();
    let error = h
        .plane
        .rollback(&dev, &web, &refused(1), &alice)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("its configuration (version 1) is no longer kept"),
        "{error}"
    );
    assert_eq!(releases(&h.wanted("web").await), [2, 2]);
    // A later deploy continues the numbering.
    assert_eq!(h.deploy(&spec(2, "v3")).await.services[0].release, 3);
}

/// A promotion deploys the source release's spec (and artifact) into the target with the
/// target's own configuration and scale, records where it came from, and changes nothing when
/// promoted again; refused from the same environment, into one the service was never
/// deployed to, for a release the source does not run, or before the soak.
#[tokio::test(flavor = "multi_thread")]
async fn a_promotion_takes_the_tested_spec_and_the_targets_own_configuration() {
    use strata_core::api::{DeployRequest, DeployService, PromoteRequest};
    use strata_core::{Actor, EnvName, Origin, ServiceName};
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    let (dev, prod) = (EnvName::from_static("dev"), EnvName::from_static("prod"));
    let web = ServiceName::from_static("web");
    let alice = Actor::User("alice".into());
    let with_config = |version: &str, greeting: &str, replicas: u32| {
        let text = format!(
            "{}[service.web.config]\nGREETING = \"{greeting}\"\n",
            spec(replicas, version)
        );
        strata_core::spec::parse("s.toml", &text)
            .unwrap()
            .services
            .remove(0)
    };
    let promote = |from: &EnvName, release: Option<u64>, soak_s: Option<u64>| PromoteRequest {
        from: from.clone(),
        release,
        soak_s,
        force: false,
    };
    // Never deployed to prod: refused.
    h.deploy(&spec(2, "v1")).await;
    h.run_for(1_200).await;
    let error = h
        .plane
        .promote(&prod, &web, &promote(&dev, None, Some(0)), &alice)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("never been deployed to prod"), "{error}");
    // prod gets its own configuration and scale from a first deploy of the spec.
    let first = DeployRequest {
        services: vec![DeployService {
            spec: with_config("v1", "hello from prod", 3),
            artifact_digest: None,
        }],
    };
    h.plane.deploy(&prod, first, &alice).await.unwrap();
    // dev moves on to v2, tested there.
    let v2 = DeployRequest {
        services: vec![DeployService {
            spec: with_config("v2", "hello from dev", 2),
            artifact_digest: None,
        }],
    };
    h.plane.deploy(&dev, v2, &alice).await.unwrap();
    h.run_for(2_500).await;
    // The soak (default 10 min) is not over: refused.
    let error = h
        .plane
        .promote(&prod, &web, &promote(&dev, None, None), &alice)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("less than the 600 s soak"), "{error}");
    let error = h
        .plane
        .promote(&prod, &web, &promote(&dev, Some(1), Some(0)), &alice)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not the one dev runs"), "{error}");
    let error = h
        .plane
        .promote(&dev, &web, &promote(&dev, None, Some(0)), &alice)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("the same environment"), "{error}");

    let promoted = h
        .plane
        .promote(&prod, &web, &promote(&dev, None, Some(0)), &alice)
        .await
        .unwrap();
    assert!(promoted.created);
    assert_eq!(
        promoted.from,
        Origin {
            env: dev.clone(),
            release: 2
        }
    );
    assert_eq!(promoted.replicas, 3, "prod's scale kept");
    let releases = h.plane.releases(&prod, &web).await.unwrap();
    let (source, target) = (
        &h.plane.releases(&dev, &web).await.unwrap()[1],
        releases.last().unwrap(),
    );
    assert_eq!(target.number, promoted.release);
    assert_eq!(target.promoted_from, Some(promoted.from.clone()));
    assert_eq!(target.spec.command, source.spec.command, "the tested spec");
    assert_eq!(target.spec_hash, source.spec_hash);
    let config = h
        .store
        .get(&strata_core::keys::config(
            "prod",
            "web",
            target.config_version,
        ))
        .await
        .unwrap()
        .unwrap();
    let config: strata_core::ConfigVersion = serde_json::from_slice(&config.value).unwrap();
    assert_eq!(
        config.values["GREETING"], "hello from prod",
        "prod's configuration"
    );
    // Promoted again: nothing changes.
    let again = h
        .plane
        .promote(&prod, &web, &promote(&dev, None, Some(0)), &alice)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.release, promoted.release);
}

/// A service with a fixed port on one node cannot roll (its replacement has nowhere to go):
/// its old instance stops first, as a recreate does, and the new release runs. With two
/// nodes, one at a time. A release no node can take at all stops nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_port_service_recreates_when_no_node_can_take_its_replacement() {
    let fixed = |replicas: u32, version: &str, more: &str| {
        format!(
            "[service.redis]\ncommand = [\"redis\", \"{version}\"]\nport = 6379\n{more}[service.redis.scale]\nreplicas = {replicas}\n"
        )
    };
    let releases = |w: &[(u64, String)]| w.iter().map(|(r, _)| *r).collect::<Vec<_>>();
    // One node.
    let mut h = Harness::start(&["n1"]).await;
    h.deploy(&fixed(1, "v1", "")).await;
    h.step().await;
    h.run_for(1_200).await;
    h.deploy(&fixed(1, "v2", "")).await;
    h.run_for(2_500).await;
    assert_eq!(releases(&h.wanted("redis").await), [2]);
    assert_eq!(h.available("redis").await, 1);
    let events = h.plane.events(None, 200).await.unwrap();
    assert!(
        events.iter().any(|e| e
            .message
            .contains("recreate: no node can take its replacement")),
        "the stop says why"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.kind == strata_core::EventKind::PlacementFailed),
        "not a placement failure"
    );

    // Two nodes, two replicas: one at a time, never both old ones stopped together.
    let mut h = Harness::start(&["n1", "n2"]).await;
    h.deploy(&fixed(2, "v1", "")).await;
    h.step().await;
    h.run_for(1_200).await;
    h.deploy(&fixed(2, "v2", "")).await;
    let mut fewest_wanted = usize::MAX;
    for _ in 0..40 {
        h.run_for(100).await;
        fewest_wanted = fewest_wanted.min(h.wanted("redis").await.len());
    }
    assert_eq!(releases(&h.wanted("redis").await), [2, 2]);
    assert_eq!(h.available("redis").await, 2);
    assert!(fewest_wanted >= 1, "one at a time");

    // A release no node can take (a label none has): the old one keeps serving.
    h.deploy(&fixed(
        2,
        "v3",
        "[service.redis.placement]\nlabels = { zone = \"mars\" }\n",
    ))
    .await;
    h.run_for(1_000).await;
    assert_eq!(
        releases(&h.wanted("redis").await),
        [2, 2],
        "release 2 keeps running"
    );
    let events = h.plane.events(None, 200).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == strata_core::EventKind::PlacementFailed
            && e.message.contains("zone=mars")));
}

/// `[rollout] strategy = "recreate"`: every old instance stops in the pass that places the
/// new ones, rather than once they serve.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreate_strategy_stops_the_old_release_at_once() {
    let recreated = |version: &str| {
        format!(
            "{}[service.web.rollout]\nstrategy = \"recreate\"\n",
            spec(2, version)
        )
    };
    let mut h = Harness::start(&["n1", "n2"]).await;
    h.deploy(&recreated("v1")).await;
    h.step().await;
    h.run_for(1_200).await;
    h.deploy(&recreated("v2")).await;
    h.step().await;
    let releases: Vec<u64> = h.wanted("web").await.iter().map(|(r, _)| *r).collect();
    assert_eq!(releases, [2, 2], "the old ones stopped with the first pass");
}
