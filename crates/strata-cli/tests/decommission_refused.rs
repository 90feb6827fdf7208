//! A decommission whose wipe cannot be done, on a real node (`strata dev`): `--wipe device` on
//! a node whose data directory is not a whole device of its own. The node finds that out
//! before it archives or wipes anything; the decommission stops as failed with the reason,
//! the CLI says so (exit 1), and the node stays: decommissioning (`decommission:failed`),
//! not revoked, its data where it was.

mod common;

use common::Dev;

#[test]
fn a_node_whose_wipe_fails_stays_decommissioning_with_the_reason() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(&dir.path().join("dev"));
    let listed = dev.cli(&["node", "ls", "--json"]);
    assert!(listed.status.success(), "{}", common::stderr(&listed));
    let nodes: Vec<strata_core::Node> = serde_json::from_slice(&listed.stdout).unwrap();
    let name = nodes[0].name.to_string();
    let epoch = dev.data_dir.join("agent").join("epoch");
    assert!(epoch.exists());

    let output = dev.cli(&[
        "node",
        "decommission",
        &name,
        "--wipe",
        "device",
        "--timeout",
        "60s",
    ]);
    let said = common::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}\n{}", dev.log());
    assert!(
        said.contains(&format!("node {name}: decommission failed: --wipe device:")),
        "{said}"
    );
    assert!(said.contains("hint:"), "{said}");

    let shown = common::stdout(&dev.cli(&["node", "ls"]));
    assert!(shown.contains("decommission:failed"), "{shown}");
    let status = dev.cli(&["node", "decommissions", "--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_slice(&status.stdout).unwrap();
    assert!(records.is_empty(), "no decommission record: {records:?}");
    // Nothing archived, nothing wiped, and the node still speaks for itself.
    let archives = dev.cli(&["archive", "ls", "--json"]);
    let archives: Vec<serde_json::Value> = serde_json::from_slice(&archives.stdout).unwrap();
    assert!(archives.is_empty(), "{archives:?}");
    assert!(epoch.exists(), "the node's data is where it was");
    let nodes: Vec<strata_core::Node> =
        serde_json::from_slice(&dev.cli(&["node", "ls", "--json"]).stdout).unwrap();
    assert_eq!(nodes.len(), 1);
}
