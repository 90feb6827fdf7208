//! Whether a node can leave service without taking work with it: before a decommission
//! drains a node, the instances it holds are placed, in thought, on the other nodes (with
//! what those already hold), and every service some of whose instances would find no node is
//! named with the reason. A decommission that would strand any asks for `--force`.

use strata_core::{NodeName, NodeState};

use crate::placement::{Demand, NodeView, Placer};

/// The instances of one service on the node that leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// `env/service`, as the refusal names it.
    pub service: String,
    /// Of this release (two may share the node during a rollout).
    pub release: u64,
    pub demand: Demand,
    /// Its running instances on the node.
    pub instances: usize,
}

/// A service some of whose instances would stop with the node: no other node takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stranded {
    pub service: String,
    pub release: u64,
    /// Instances that would find no node, of those the node holds.
    pub stranded: usize,
    pub held: usize,
    /// Why not (every other node and why it refused).
    pub why: String,
}

impl std::fmt::Display for Stranded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} of its {} instance(s) on the node would stop ({})",
            self.service, self.stranded, self.held, self.why
        )
    }
}

/// The services that would lose instances if `leaving` left: `held` placed on the other
/// `nodes` (the leaving one among them or not), in order, each taking what the last left.
pub fn what_would_stop(leaving: &NodeName, nodes: &[NodeView], held: &[Held]) -> Vec<Stranded> {
    let others: Vec<NodeView> = nodes
        .iter()
        .filter(|node| node.name != *leaving)
        .cloned()
        .collect();
    if held.is_empty() {
        return Vec::new();
    }
    let no_node = others.is_empty();
    let mut placer = Placer::new(others);
    let mut stranded = Vec::new();
    for service in held {
        if let Err((placed, error)) = placer.place(&service.demand, service.instances, &[]) {
            let why = if no_node {
                "it is the only node".to_string()
            } else {
                let reasons: Vec<String> = error
                    .refusals
                    .iter()
                    .map(|(node, why)| format!("{node}: {why}"))
                    .collect();
                reasons.join("; ")
            };
            stranded.push(Stranded {
                service: service.service.clone(),
                release: service.release,
                stranded: service.instances - placed.len(),
                held: service.instances,
                why,
            });
        }
    }
    stranded
}

/// Whether a node in `state` can archive and wipe itself: a node that is down (or silent) cannot,
/// and is decommissioned only as unreachable.
pub fn reachable(state: NodeState) -> bool {
    matches!(
        state,
        NodeState::Ready | NodeState::Draining | NodeState::Suspect
    )
}

/// What an operator asked: `--force`, `--unreachable`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Asked {
    pub force: bool,
    pub unreachable: bool,
}

/// Why a decommission is refused as asked, and how to ask instead (message, hint); `None`:
/// it goes ahead. `state` is the node's liveness (stored, not derived), `heard_recently`
/// whether a server heard from it lately, `stranded` what would stop with it.
pub fn refusal(
    name: &NodeName,
    state: NodeState,
    heard_recently: bool,
    asked: Asked,
    stranded: &[Stranded],
) -> Option<(String, String)> {
    let answers = reachable(state) && heard_recently;
    if asked.unreachable {
        if answers && !asked.force {
            return Some((
                format!("node {name} is {} and heard from: it can archive and wipe itself", as_word(state)),
                format!("decommission it without --unreachable; or add --force to revoke it now, with nothing archived or wiped (`strata node decommission {name} --unreachable --force`)"),
            ));
        }
        return None;
    }
    if !answers {
        return Some((
            format!("node {name} is {} and not heard from: it cannot archive or wipe itself", as_word(state)),
            format!("`strata node decommission {name} --unreachable` revokes it now, with nothing archived or wiped (its record says so); or start its agent again and retry"),
        ));
    }
    if !stranded.is_empty() && !asked.force {
        let what: Vec<String> = stranded.iter().map(ToString::to_string).collect();
        return Some((
            format!(
                "decommissioning node {name} would stop instances no other node can take: {}",
                what.join("; ")
            ),
            "make room on another node (or join one) first; or add --force to stop them with the node".to_string(),
        ));
    }
    None
}

fn as_word(state: NodeState) -> &'static str {
    match state {
        NodeState::Ready => "ready",
        NodeState::Suspect => "suspect",
        NodeState::Down => "down",
        NodeState::Draining => "draining",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use strata_core::spec::DriverKind;
    use strata_core::Resources;

    use super::*;

    const MI: u64 = 1024 * 1024;

    fn node(name: &'static str, drivers: &[DriverKind], free_mi: u64) -> NodeView {
        NodeView {
            name: NodeName::from_static(name),
            state: NodeState::Ready,
            labels: BTreeMap::new(),
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 1024 * MI,
            },
            allocated: Resources {
                cpu_millis: 0,
                memory_bytes: (1024 - free_mi) * MI,
            },
            drivers: drivers.to_vec(),
            static_ports: BTreeMap::new(),
            instances_of_service: 0,
        }
    }

    fn held(service: &str, driver: DriverKind, mem_mi: u64, instances: usize) -> Held {
        Held {
            service: service.to_string(),
            release: 1,
            demand: Demand {
                resources: Resources {
                    cpu_millis: 100,
                    memory_bytes: mem_mi * MI,
                },
                driver,
                static_port: None,
                constraints: BTreeMap::new(),
            },
            instances,
        }
    }

    #[test]
    fn what_would_stop_with_a_node() {
        use DriverKind::{Exec, Wasm};
        let leaving = NodeName::from_static("b");
        let mut labelled = held("dev/gpu", Exec, 64, 1);
        labelled
            .demand
            .constraints
            .insert("gpu".into(), "yes".into());
        let mut down = node("c", &[Exec], 1024);
        down.state = NodeState::Down;
        let mut fixed_port = held("dev/edge", Exec, 64, 1);
        fixed_port.demand.static_port = Some(8080);
        let mut port_taken = node("a", &[Exec], 1024);
        port_taken
            .static_ports
            .insert(8080, "instance edge-1 (dev/edge release 1)".into());
        /// (case, nodes, held, per service stranded of held, a reason contains)
        type Case = (
            &'static str,
            Vec<NodeView>,
            Vec<Held>,
            Vec<(&'static str, usize, usize)>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "another node takes everything",
                vec![node("a", &[Exec], 1024), node("b", &[Exec], 1024)],
                vec![held("dev/web", Exec, 64, 3)],
                vec![],
                "",
            ),
            (
                "the only node",
                vec![node("b", &[Exec], 1024)],
                vec![held("dev/web", Exec, 64, 2)],
                vec![("dev/web", 2, 2)],
                "the only node",
            ),
            (
                "no other node has the driver",
                vec![node("a", &[Exec], 1024), node("b", &[Exec, Wasm], 1024)],
                vec![held("dev/web", Exec, 64, 1), held("dev/fn", Wasm, 64, 1)],
                vec![("dev/fn", 1, 1)],
                "has no `wasm` driver",
            ),
            (
                "room for some only",
                vec![node("a", &[Exec], 200), node("b", &[Exec], 1024)],
                vec![held("dev/web", Exec, 64, 5)],
                vec![("dev/web", 2, 5)],
                "memory",
            ),
            (
                "services share what is free, in order",
                vec![node("a", &[Exec], 128), node("b", &[Exec], 1024)],
                vec![held("dev/one", Exec, 64, 2), held("dev/two", Exec, 64, 1)],
                vec![("dev/two", 1, 1)],
                "memory",
            ),
            (
                "a label only the leaving node has",
                vec![node("a", &[Exec], 1024), node("b", &[Exec], 1024)],
                vec![labelled],
                vec![("dev/gpu", 1, 1)],
                "label gpu=yes",
            ),
            (
                "a down node takes nothing",
                vec![down, node("b", &[Exec], 1024)],
                vec![held("dev/web", Exec, 64, 1)],
                vec![("dev/web", 1, 1)],
                "not ready",
            ),
            (
                "a fixed port held elsewhere",
                vec![port_taken, node("b", &[Exec], 1024)],
                vec![fixed_port],
                vec![("dev/edge", 1, 1)],
                "port 8080 is held",
            ),
            (
                "nothing held",
                vec![node("b", &[Exec], 1024)],
                vec![],
                vec![],
                "",
            ),
        ];
        for (case, nodes, held, want, reason) in cases {
            let got = what_would_stop(&leaving, &nodes, &held);
            let summary: Vec<(&str, usize, usize)> = got
                .iter()
                .map(|s| (s.service.as_str(), s.stranded, s.held))
                .collect();
            assert_eq!(summary, want, "{case}");
            for stranded in &got {
                assert!(stranded.why.contains(reason), "{case}: {}", stranded.why);
            }
        }
    }

    #[test]
    fn when_a_decommission_is_refused() {
        let name = NodeName::from_static("b");
        let stranded = [Stranded {
            service: "dev/web".into(),
            release: 1,
            stranded: 1,
            held: 1,
            why: "it is the only node".into(),
        }];
        let plain = Asked::default();
        let force = Asked {
            force: true,
            unreachable: false,
        };
        let unreachable = Asked {
            force: false,
            unreachable: true,
        };
        let both = Asked {
            force: true,
            unreachable: true,
        };
        use NodeState::{Down, Ready, Suspect};
        /// (case, state, heard recently, asked, stranded, refused with a message containing)
        type Case<'a> = (
            &'a str,
            NodeState,
            bool,
            Asked,
            &'a [Stranded],
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a ready node, nothing stranded",
                Ready,
                true,
                plain,
                &[],
                None,
            ),
            (
                "stranded work asks for --force",
                Ready,
                true,
                plain,
                &stranded,
                Some("would stop instances no other node can take: dev/web: 1 of its 1"),
            ),
            (
                "--force stops it with the node",
                Ready,
                true,
                force,
                &stranded,
                None,
            ),
            (
                "a down node cannot archive itself",
                Down,
                false,
                plain,
                &[],
                Some("down and not heard from"),
            ),
            (
                "--force does not make a down node answer",
                Down,
                false,
                force,
                &[],
                Some("cannot archive or wipe itself"),
            ),
            (
                "a silent node is not asked to archive",
                Suspect,
                false,
                plain,
                &[],
                Some("suspect and not heard from"),
            ),
            (
                "a down node, unreachable",
                Down,
                false,
                unreachable,
                &[],
                None,
            ),
            (
                "unreachable ignores what is stranded (replaced as for a down node)",
                Down,
                false,
                unreachable,
                &stranded,
                None,
            ),
            (
                "a node that answers is not revoked unreachable",
                Ready,
                true,
                unreachable,
                &[],
                Some("ready and heard from: it can archive and wipe itself"),
            ),
            ("unless forced", Ready, true, both, &[], None),
        ];
        for (case, state, heard, asked, stranded, want) in cases {
            let got = refusal(&name, state, heard, asked, stranded);
            match (want, got) {
                (None, None) => {}
                (Some(want), Some((message, hint))) => {
                    assert!(message.contains(want), "{case}: {message}");
                    assert!(!hint.is_empty(), "{case}");
                }
                (want, got) => panic!("{case}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn only_a_node_that_answers_can_archive_itself() {
        for (state, want) in [
            (NodeState::Ready, true),
            (NodeState::Draining, true),
            (NodeState::Suspect, true),
            (NodeState::Down, false),
        ] {
            assert_eq!(reachable(state), want, "{state:?}");
        }
    }
}
