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

/// An archive the control plane does not keep (larger than `--max-artifact-size`): the wipe
/// never starts; the decommission fails with the control plane's reason and the node's data
/// is all there.
#[test]
fn no_wipe_before_the_archive_is_kept() {
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start_with(&dir.path().join("dev"), &["--max-artifact-size", "4Ki"]);
    let listed = dev.cli(&["node", "ls", "--json"]);
    let nodes: Vec<strata_core::Node> = serde_json::from_slice(&listed.stdout).unwrap();
    let name = nodes[0].name.to_string();
    let agent_dir = dev.data_dir.join("agent");
    let before = files_under(&agent_dir);
    assert!(!before.is_empty());

    let output = dev.cli(&["node", "decommission", &name, "--timeout", "60s"]);
    let said = common::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}\n{}", dev.log());
    assert!(
        said.contains("decommission failed: the control plane refused the archive")
            && said.contains("larger than this server takes"),
        "{said}"
    );
    let shown = common::stdout(&dev.cli(&["node", "ls"]));
    assert!(shown.contains("decommission:failed"), "{shown}");
    // Every file the node held before is still there (the agent may have written more).
    let after = files_under(&agent_dir);
    let missing: Vec<&String> = before.iter().filter(|f| !after.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "wiped before its archive was kept: {missing:?}"
    );
}

/// The files under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(at) = dirs.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found
}
