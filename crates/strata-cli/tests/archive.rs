//! `strata archive verify`, offline, on an archive made as a node makes one (its key and
//! certificate from the cluster CA) and countersigned as the control plane does: verified
//! (exit 0), a changed file named (exit 1), no CA given (exit 2).

mod common;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use strata_forensics::{countersign, parts, ArchiveBuilder, Origin, Signer};
use strata_mesh::identity::{node_key_and_csr, ClusterCa};

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(common::strata_bin())
        .args(args)
        .env_remove("STRATA_CA")
        .output()
        .unwrap()
}

#[test]
fn an_archive_verifies_offline_and_a_changed_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate().unwrap();
    let (key_pem, csr_pem) = node_key_and_csr("n1").unwrap();
    let signed = ca
        .sign_node(&csr_pem, "n1", None, Duration::from_secs(3600))
        .unwrap();
    let node = Signer::from_pem("node key", &signed.cert_pem, &key_pem).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("instances/web-1")).unwrap();
    std::fs::write(data.join("instances/web-1/out.log"), "canary-string-19c2\n").unwrap();
    let archive = dir.path().join("n1.strata-archive");
    let mut builder = ArchiveBuilder::create(
        &archive,
        Origin {
            node: "n1".into(),
            subject: "node".into(),
            kernel: "6.1".into(),
            strata_version: "0.1.0".into(),
            releases: vec!["dev/web#1".into()],
            created_at: 1_765_000_000_000,
        },
    )
    .unwrap();
    builder.add_path(&data, "data").unwrap();
    builder.finish(&node).unwrap();
    let ca_json = ca.to_json();
    let ca_signer = Signer::from_pem(
        "cluster CA key",
        ca_json["cert"].as_str().unwrap(),
        ca_json["key"].as_str().unwrap(),
    )
    .unwrap();
    countersign(&archive, &ca_signer).unwrap();
    let ca_file = common::write_file(dir.path(), "ca.pem", ca_json["cert"].as_str().unwrap());

    let ok = strata(&[
        "archive",
        "verify",
        archive.to_str().unwrap(),
        "--ca",
        ca_file.to_str().unwrap(),
    ]);
    let out = common::stdout(&ok);
    assert!(ok.status.success(), "{}", common::stderr(&ok));
    assert!(
        out.contains("verified: made by node n1") && out.contains("countersignature hold"),
        "{out}"
    );
    let json = strata(&[
        "archive",
        "verify",
        archive.to_str().unwrap(),
        "--ca",
        ca_file.to_str().unwrap(),
        "--json",
    ]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["manifest"]["origin"]["node"], "n1");

    // The log rewritten inside the payload: named, exit 1.
    let tampered = dir.path().join("tampered.strata-archive");
    rewrite_payload_file(&archive, &tampered, "out.log", b"nothing here\n");
    let failed = strata(&[
        "archive",
        "verify",
        tampered.to_str().unwrap(),
        "--ca",
        ca_file.to_str().unwrap(),
    ]);
    let err = common::stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{err}");
    assert!(err.contains("data/instances/web-1/out.log"), "{err}");

    // No CA, or no such file: bad input.
    let no_ca = strata(&["archive", "verify", archive.to_str().unwrap()]);
    assert_eq!(no_ca.status.code(), Some(2), "{}", common::stderr(&no_ca));
    assert!(common::stderr(&no_ca).contains("--ca"));
    let missing = strata(&[
        "archive",
        "verify",
        "/nonexistent",
        "--ca",
        ca_file.to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2));
}

/// `from` with the payload file whose path ends in `name` given `bytes`, written to `to`.
fn rewrite_payload_file(from: &std::path::Path, to: &std::path::Path, name: &str, bytes: &[u8]) {
    let mut outer = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut out = tar::Builder::new(std::fs::File::create(to).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        if path == parts::PAYLOAD {
            let mut inner = tar::Archive::new(zstd::Decoder::new(content.as_slice()).unwrap());
            let mut rebuilt = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap());
            for file in inner.entries().unwrap() {
                let mut file = file.unwrap();
                let mut file_header = file.header().clone();
                let mut file_bytes = Vec::new();
                let file_path = file.path().unwrap().into_owned();
                file.read_to_end(&mut file_bytes).unwrap();
                if file_path.ends_with(name) {
                    file_bytes = bytes.to_vec();
                    file_header.set_size(file_bytes.len() as u64);
                    file_header.set_cksum();
                }
                rebuilt.append(&file_header, file_bytes.as_slice()).unwrap();
            }
            content = rebuilt.into_inner().unwrap().finish().unwrap();
            header.set_size(content.len() as u64);
            header.set_cksum();
        }
        out.append(&header, content.as_slice()).unwrap();
    }
    out.finish().unwrap();
}
