//! Helpers of the tests that run a real cluster (`strata_testkit::Cluster`: agents in
//! network namespaces).

use std::time::{Duration, Instant};

use strata_testkit::Cluster;

/// `name`'s state as `strata node ls --json` shows it ("ready", "down", ...; "unknown" when
/// it is not listed).
pub fn node_state(cluster: &Cluster, name: &str) -> String {
    let listed = cluster.cli(&["node", "ls", "--json"]);
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap_or_default();
    nodes
        .iter()
        .find(|n| n["name"] == name)
        .and_then(|n| n["state"].as_str())
        .unwrap_or("unknown")
        .to_string()
}

/// Waits (every 100 ms, at most `limit`) until `check` holds; panics naming `what`, with the
/// cluster's logs.
pub fn wait_until(cluster: &Cluster, limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?}: {what}\n{}", cluster.logs());
}

/// Deploys `spec` through the cluster's CLI, waiting for it to serve (60 s at most); panics
/// with the cluster's logs if it does not.
pub fn deploy(cluster: &Cluster, spec: &std::path::Path) {
    let output = cluster.cli(&["deploy", spec.to_str().unwrap(), "--timeout", "60s"]);
    assert!(
        output.status.success(),
        "deploy failed: {}\n{}",
        super::stderr(&output),
        cluster.logs()
    );
}
