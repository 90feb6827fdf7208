//! Standbys, in-process (the harness): the instances of a node that goes silent get
//! standbys on other nodes while it is only suspect, so that by the time it is judged down
//! its work already serves elsewhere (nothing more is placed then); a node that beats again
//! before that has its standbys stopped, its own instances kept; and when many nodes are
//! silent at once (the network, or the control plane itself, more likely than so many
//! deaths) no standby is placed.

mod common;

use common::harness::Harness;
use strata_core::{InstanceId, NodeState};

fn spec(replicas: u32) -> String {
    format!("[service.web]\ncommand = [\"web\"]\n[service.web.scale]\nreplicas = {replicas}\n")
}

/// The wanted instances of `web`: (id, node).
async fn wanted(h: &Harness) -> Vec<(InstanceId, String)> {
    let mut all: Vec<(InstanceId, String)> = h
        .instances("web")
        .await
        .into_iter()
        .filter(|v| v.instance.desired == strata_core::DesiredState::Running)
        .map(|v| (v.instance.id, v.instance.node.to_string()))
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_nodes_instances_have_standbys_serving_by_the_time_it_is_down() {
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    h.deploy(&spec(2)).await;
    h.step().await;
    let before = wanted(&h).await;
    let (lost, victim) = before[0].clone();
    h.kill(&victim);
    h.run_for(300).await;
    assert_eq!(h.node_state(&victim).await, NodeState::Suspect);
    h.step().await;
    let standing = wanted(&h).await;
    assert_eq!(standing.len(), 3, "a standby beside the two: {standing:?}");
    assert!(standing.contains(&(lost.clone(), victim.clone())));
    let standby: Vec<_> = standing.iter().filter(|w| !before.contains(w)).collect();
    assert_eq!(standby.len(), 1);
    assert_ne!(standby[0].1, victim, "elsewhere");
    // Down: its instance is stopped, and nothing new is placed (the standby serves).
    h.run_for(400).await;
    assert_eq!(h.node_state(&victim).await, NodeState::Down);
    h.step().await;
    let after = wanted(&h).await;
    let expected: Vec<_> = standing.into_iter().filter(|(id, _)| *id != lost).collect();
    assert_eq!(after, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_beats_again_keeps_its_instances_and_the_standbys_go() {
    let mut h = Harness::start(&["n1", "n2", "n3"]).await;
    h.deploy(&spec(2)).await;
    h.step().await;
    let before = wanted(&h).await;
    let victim = before[0].1.clone();
    h.kill(&victim);
    h.run_for(300).await;
    h.step().await;
    assert_eq!(wanted(&h).await.len(), 3);
    h.resume(&victim);
    h.run_for(200).await;
    assert_eq!(h.node_state(&victim).await, NodeState::Ready);
    h.step().await;
    assert_eq!(
        wanted(&h).await,
        before,
        "the standby stopped, the rest as before"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_standbys_while_many_nodes_are_silent_at_once() {
    let names: Vec<String> = (1..=12).map(|i| format!("n{i}")).collect();
    let nodes: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::start(&nodes).await;
    h.deploy(&spec(12)).await;
    h.step().await;
    let before = wanted(&h).await;
    assert_eq!(before.len(), 12);
    // Two of twelve silent: more than one in ten.
    h.kill("n1");
    h.kill("n2");
    h.run_for(300).await;
    assert_eq!(h.node_state("n1").await, NodeState::Suspect);
    assert_eq!(h.node_state("n2").await, NodeState::Suspect);
    h.step().await;
    assert_eq!(
        wanted(&h).await,
        before,
        "nothing placed while they are suspect"
    );
    // One of them beats again: one silent of twelve, and its instance gets a standby.
    h.resume("n1");
    h.run_for(200).await;
    h.step().await;
    assert_eq!(h.node_state("n2").await, NodeState::Suspect);
    assert_eq!(wanted(&h).await.len(), 13);
}
