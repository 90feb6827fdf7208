//! Liveness that distrusts itself: a Strata server must never blame nodes for its store's
//! unavailability or its own. A real cluster (agents in their own network namespaces) on a
//! real three-member etcd: the etcd raft leader is killed (etcd elects another while writes
//! wait), and the Strata server is frozen (SIGSTOP) for two seconds. No node may be marked
//! down and no instance replaced; a node that really dies while etcd elects is still caught
//! once the store is back.
//!
//! These tests need root, network namespaces and etcd; without them they say why and skip.

mod common;

use common::cluster::{deploy, node_state, wait_until};

use std::time::{Duration, Instant};

use strata_core::api::ServiceStatus;
use strata_core::DesiredState;
use strata_store::testing::{etcd_unavailable, EtcdServer};
use strata_testkit::{Cluster, Options};

/// A cluster of `nodes` (zones z0, z1, ...) whose server keeps its state in `store`, or
/// `None` (with why, on stderr) where root or namespaces are missing.
fn cluster_on(nodes: usize, store: &str) -> Option<Cluster> {
    if let Some(why) = strata_testkit::unavailable() {
        eprintln!("SKIPPED: cluster tests {why}");
        return None;
    }
    Some(Cluster::start(Options {
        strata: common::strata_bin(),
        node_labels: (0..nodes).map(|i| format!("zone=z{i}")).collect(),
        server_args: vec!["--store".into(), store.into()],
    }))
}

/// The wanted instances of hello: (id, node).
fn wanted_instances(cluster: &Cluster) -> Vec<(String, String)> {
    let output = cluster.cli(&["status", "hello", "--json"]);
    let Ok(list) = serde_json::from_slice::<Vec<ServiceStatus>>(&output.stdout) else {
        return Vec::new();
    };
    let mut wanted: Vec<(String, String)> = list
        .iter()
        .flat_map(|s| &s.instances)
        .filter(|v| v.instance.desired == DesiredState::Running)
        .map(|v| (v.instance.id.to_string(), v.instance.node.to_string()))
        .collect();
    wanted.sort();
    wanted
}

fn serving(cluster: &Cluster) -> usize {
    let output = cluster.cli(&["status", "hello", "--json"]);
    serde_json::from_slice::<Vec<ServiceStatus>>(&output.stdout)
        .map(|list| {
            list.iter()
                .flat_map(|s| &s.instances)
                .filter(|v| v.is_routable())
                .count()
        })
        .unwrap_or(0)
}

fn events(cluster: &Cluster) -> String {
    String::from_utf8_lossy(&cluster.cli(&["events", "--limit", "1000"]).stdout).into_owned()
}

/// Kills the etcd raft leader; returns which member it was.
fn kill_etcd_leader(etcd: &mut EtcdServer) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some(leader) = etcd.leader() {
            break leader;
        }
        assert!(Instant::now() < deadline, "etcd has no leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    etcd.kill(leader);
    leader
}

#[test]
fn the_server_blames_no_node_for_its_store_or_itself() {
    if let Some(why) = etcd_unavailable() {
        eprintln!("SKIPPED: needs etcd: {why}");
        return;
    }
    let mut etcd = EtcdServer::cluster(3);
    let Some(mut cluster) = cluster_on(2, &etcd.url("/strata-distrust")) else {
        return;
    };
    deploy(
        &cluster,
        &common::hello_spec(cluster.root.path(), 2, "Trusted"),
    );
    let before = wanted_instances(&cluster);
    assert_eq!(before.len(), 2, "{before:?}");

    // The store's leader dies: etcd elects another while every write waits.
    let member = kill_etcd_leader(&mut etcd);
    std::thread::sleep(Duration::from_secs(4));
    etcd.restart(member);
    // The server itself stops for two seconds (a stalled VM, a long pause).
    cluster.freeze_server(true);
    std::thread::sleep(Duration::from_secs(2));
    cluster.freeze_server(false);
    // And the etcd leader dies again, right after.
    let member = kill_etcd_leader(&mut etcd);
    std::thread::sleep(Duration::from_secs(3));
    etcd.restart(member);
    std::thread::sleep(Duration::from_secs(3));

    wait_until(
        &cluster,
        Duration::from_secs(20),
        "hello serves twice",
        || serving(&cluster) == 2,
    );
    let after = wanted_instances(&cluster);
    let log = events(&cluster);
    assert_eq!(
        after,
        before,
        "no instance may be replaced\n{log}\n{}",
        cluster.logs()
    );
    assert!(
        !log.contains("-> down"),
        "no node may be marked down\n{log}\n{}",
        cluster.logs()
    );
    for node in &cluster.nodes {
        assert_eq!(node_state(&cluster, &node.name), "ready", "{log}");
    }
    // Told in the event log: the stall forgiven, or (when the stall cost the server its
    // lease) the grace a leader gives every node when it begins to lead. The event may come
    // only once the server leads again, and its liveness pass may wait on a store read that
    // etcd's election left hanging (reads are retried within the store's request timeout,
    // 30 s): waited for, within that.
    let deadline = Instant::now() + Duration::from_secs(35);
    let mut log = log;
    while log.matches("liveness paused").count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        log = events(&cluster);
    }
    assert!(
        log.matches("liveness paused").count() >= 2,
        "the pause is told in the event log\n{log}\n{}",
        cluster.logs()
    );

    // A node that really dies while etcd elects a leader is caught once the store is back,
    // and its instance serves elsewhere.
    let victim = cluster.nodes[1].name.clone();
    let member = kill_etcd_leader(&mut etcd);
    cluster.kill_node(1);
    std::thread::sleep(Duration::from_secs(3));
    etcd.restart(member);
    wait_until(
        &cluster,
        Duration::from_secs(30),
        "the dead node is marked down",
        || node_state(&cluster, &victim) == "down",
    );
    wait_until(
        &cluster,
        Duration::from_secs(30),
        "both replicas serve on the surviving node",
        || {
            serving(&cluster) == 2
                && wanted_instances(&cluster)
                    .iter()
                    .all(|(_, node)| *node != victim)
        },
    );

    // The dead node is removed by hand once its instances are replaced; a live one is not.
    let live = cluster.nodes[0].name.clone();
    let refused = cluster.cli(&["node", "rm", &live]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        common::stderr(&refused)
    );
    assert!(
        common::stderr(&refused).contains("only a down node can be removed"),
        "{}",
        common::stderr(&refused)
    );
    wait_until(
        &cluster,
        Duration::from_secs(20),
        "the dead node is removed",
        || cluster.cli(&["node", "rm", &victim]).status.success(),
    );
    assert_eq!(
        node_state(&cluster, &victim),
        "unknown",
        "it is no longer listed"
    );
    assert!(events(&cluster).contains(&format!("node {victim}: removed by hand")));
}
