//! What a write costs the embedded store (redb) at fleet size: the store is filled with
//! `--keys` records shaped like a fleet's (instance records and statuses under random ids,
//! about 250 bytes each), then rounds of concurrent transactions are committed as the
//! control plane sends them (placements: 60 records under new random ids a transaction;
//! status reports: 40 existing records rewritten; events: 60 keys that only grow), and the
//! time per write is printed for each kind, with the group commits' sizes.
//!
//!   cargo bench -p strata-store --bench group_commit [-- --keys 2000000 --rounds 20]

use std::sync::Arc;
use std::time::Instant;

use strata_store::redb::RedbStore;
use strata_store::{Store, Txn};

struct Args {
    keys: usize,
    rounds: usize,
}

fn args() -> Args {
    let given: Vec<String> = std::env::args().collect();
    let number = |flag: &str, default: usize| -> usize {
        given
            .windows(2)
            .find(|pair| pair[0] == flag)
            .and_then(|pair| pair[1].parse().ok())
            .unwrap_or(default)
    };
    Args {
        // At least 40 statuses a node for the rewrites by node (1,000 nodes).
        keys: number("--keys", 2_000_000).max(100_000),
        rounds: number("--rounds", 20),
    }
}

/// A record about the size of an instance's or a status's JSON.
fn record(id: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"svc-{id}-1-{id:06x}","env":"fleet","service":"svc-{id}","release":1,"node":"sim-{:05}","node_epoch":1,"desired":"running","created_at":1765000000000,"stop_requested_at":null,"address":"10.0.0.1:8080","ready_since":1765000000000}}"#,
        id % 10_000
    )
    .into_bytes()
}

/// Random-looking ids (a fixed permutation of the counter: the same run each time).
fn scatter(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// How many transactions a round sends at once (the reconciler's 16, the reports' 8 per
/// node, several nodes).
const CONCURRENT: usize = 32;

/// Nodes the filled statuses are spread over.
const NODES: u64 = 1_000;

/// The kinds of transaction measured.
#[derive(Clone, Copy)]
enum Kind {
    /// New records under random ids (today's placements).
    NewScattered,
    /// New records of one service with consecutive ids.
    NewConsecutive,
    /// Existing records rewritten, keyed by random id (today's status reports).
    RewriteScattered,
    /// Existing records rewritten, all of one node's (statuses keyed by node).
    RewriteByNode,
    /// Keys that only grow (events).
    Append,
    /// Transactions of one write each, to keys that only grow: what a transaction costs
    /// besides its writes.
    AppendAlone,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::NewScattered => {
                "new records under random ids (placements before consecutive ids)"
            }
            Kind::NewConsecutive => "new records of one service, consecutive ids (placements now)",
            Kind::RewriteScattered => {
                "records rewritten, keyed by random id (status reports today)"
            }
            Kind::RewriteByNode => "records rewritten, one node's, keyed by node",
            Kind::Append => "keys that only grow (events)",
            Kind::AppendAlone => "keys that only grow, one a transaction",
        }
    }

    fn per_txn(self) -> usize {
        match self {
            Kind::RewriteScattered | Kind::RewriteByNode => 40,
            Kind::AppendAlone => 1,
            _ => 60,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        RedbStore::open(&dir.path().join("bench.redb"))
            .await
            .unwrap(),
    );
    let filling = Instant::now();
    // Half instance records under random ids, half statuses under their node; in
    // transactions of 120 writes (a transaction's most), 64 at once.
    let half = (args.keys / 2) as u64;
    let mut next = 0u64;
    while next < 2 * half {
        let mut commits = Vec::new();
        for _ in 0..64 {
            let mut txn = Txn::new();
            for _ in 0..120.min(2 * half - next) {
                txn = if next < half {
                    let id = scatter(next);
                    txn.put(format!("/instances/{id:016x}"), record(id))
                } else {
                    let n = next - half;
                    txn.put(by_node(n % NODES, n / NODES), record(n))
                };
                next += 1;
            }
            if txn.ops.is_empty() {
                break;
            }
            let store = store.clone();
            commits.push(tokio::spawn(async move { store.txn(txn).await.unwrap() }));
        }
        for commit in commits {
            commit.await.unwrap();
        }
    }
    let file_mib = std::fs::metadata(dir.path().join("bench.redb"))
        .unwrap()
        .len()
        >> 20;
    println!(
        "store filled with {} records in {:.1} s ({file_mib} MiB file)",
        2 * half,
        filling.elapsed().as_secs_f64()
    );
    let mut event_seq = 0u64;
    let mut fresh = half;
    println!("| writes | per transaction | transactions | µs per write | writes/s |");
    println!("|---|---:|---:|---:|---:|");
    let kinds = [
        Kind::NewScattered,
        Kind::NewConsecutive,
        Kind::RewriteScattered,
        Kind::RewriteByNode,
        Kind::Append,
        Kind::AppendAlone,
    ];
    for kind in kinds {
        let per_txn = kind.per_txn();
        let mut writes = 0usize;
        let started = Instant::now();
        for round in 0..args.rounds {
            let mut txns = Vec::with_capacity(CONCURRENT);
            for t in 0..CONCURRENT {
                let batch = (round * CONCURRENT + t) as u64;
                let mut txn = Txn::new();
                for i in 0..per_txn as u64 {
                    let (key, value) = match kind {
                        Kind::NewScattered => {
                            fresh += 1;
                            let id = scatter(fresh);
                            (format!("/instances/{id:016x}"), record(id))
                        }
                        Kind::NewConsecutive => {
                            let service = scatter(batch) % 1_000;
                            let start = scatter(batch + 7) & 0xff_ffff;
                            let id = format!("svc-{service}-2-{:06x}", (start + i) & 0xff_ffff);
                            (format!("/instances/{id}"), record(i))
                        }
                        Kind::RewriteScattered => {
                            let id = scatter((batch * 40 + i) * 7_919 % half);
                            (format!("/instances/{id:016x}"), record(id))
                        }
                        Kind::RewriteByNode => {
                            let node = scatter(batch) % NODES;
                            let per_node = half / NODES;
                            // 40 adjacent statuses of the node (it holds at least 40).
                            let groups = (per_node / 40).max(1);
                            let slot = scatter(batch) % groups * 40 + i;
                            (by_node(node, slot), record(slot))
                        }
                        Kind::Append | Kind::AppendAlone => {
                            event_seq += 1;
                            (format!("/events/{event_seq:020}"), record(event_seq))
                        }
                    };
                    txn = txn.put(key, value);
                }
                writes += txn.ops.len();
                txns.push(txn);
            }
            let commits = txns.into_iter().map(|txn| {
                let store = store.clone();
                tokio::spawn(async move { store.txn(txn).await.unwrap() })
            });
            for commit in commits.collect::<Vec<_>>() {
                commit.await.unwrap();
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "| {} | {per_txn} | {} | {:.1} | {:.0} |",
            kind.describe(),
            args.rounds * CONCURRENT,
            seconds * 1e6 / writes as f64,
            writes as f64 / seconds
        );
    }
}

/// A status's key in a layout by node.
fn by_node(node: u64, n: u64) -> String {
    format!("/status/sim-{node:05}/{n:08}")
}
