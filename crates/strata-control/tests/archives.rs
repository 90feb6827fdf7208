//! Forensic archives through the control plane: a node's archive, made with its key, is
//! verified, countersigned (it then verifies offline against the CA), kept and listed; one a
//! node makes in another node's name, or one changed after it was signed, is refused with
//! nothing kept.

mod common;

use std::time::Duration;

use common::harness::Harness;
use strata_core::NodeName;
use strata_forensics::{verify, ArchiveBuilder, Origin, Signer};
use strata_mesh::identity::node_key_and_csr;

/// Node `node`'s signer: its key, and a certificate from the plane's CA.
async fn node_signer(h: &Harness, node: &str) -> Signer {
    let ca = h.plane.identity().cluster_ca().await.unwrap();
    let (key, csr) = node_key_and_csr(node).unwrap();
    let signed = ca
        .sign_node(&csr, node, None, Duration::from_secs(3600))
        .unwrap();
    Signer::from_pem("node key", &signed.cert_pem, &key).unwrap()
}

/// An archive of a small data directory made by `signer` in `node`'s name; its bytes.
fn archive_bytes(dir: &std::path::Path, node: &str, signer: &Signer) -> Vec<u8> {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("instances/web-1")).unwrap();
    std::fs::write(data.join("instances/web-1/out.log"), "canary-string-5b1e\n").unwrap();
    let out = dir.join(format!("{node}.strata-archive"));
    let mut builder = ArchiveBuilder::create(
        &out,
        Origin {
            node: node.into(),
            subject: "node".into(),
            kernel: "6.1".into(),
            strata_version: "0.1.0".into(),
            releases: vec!["dev/web#2".into()],
            created_at: 1_765_000_000_000,
        },
    )
    .unwrap();
    builder.add_path(&data, "data").unwrap();
    builder.finish(signer).unwrap();
    std::fs::read(out).unwrap()
}

fn body(
    bytes: Vec<u8>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
    futures::stream::iter(
        bytes
            .chunks(4096)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nodes_archive_is_verified_countersigned_and_kept() {
    let h = Harness::start(&["n1", "n2"]).await;
    Harness::elected(&h.plane).await;
    let dir = tempfile::tempdir().unwrap();
    let n1 = NodeName::from_static("n1");
    let signer = node_signer(&h, "n1").await;
    let record = h
        .plane
        .store_node_archive(&n1, body(archive_bytes(dir.path(), "n1", &signer)))
        .await
        .unwrap();
    assert_eq!(record.id, "n1-1765000000000");
    assert_eq!((record.node.as_str(), record.files), ("n1", 4));
    assert_eq!(record.releases, ["dev/web#2"]);
    // Sent again (its answer lost): the same record; other contents at the same time: refused.
    let again = h
        .plane
        .store_node_archive(&n1, body(archive_bytes(dir.path(), "n1", &signer)))
        .await
        .unwrap();
    assert_eq!(again, record);
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("data")).unwrap();
    std::fs::write(other.path().join("data/else.txt"), "other contents").unwrap();
    let error = h
        .plane
        .store_node_archive(&n1, body(archive_bytes(other.path(), "n1", &signer)))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("kept as it was"), "{error}");
    let listed = h.plane.archives().await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&record));
    // Kept countersigned: it verifies offline against the CA alone.
    let (_, path) = h.plane.archive_file(&record.id).await.unwrap();
    let ca = h.plane.identity().cluster_ca().await.unwrap().to_json();
    let verified = verify(&path, ca["cert"].as_str().unwrap(), true).unwrap();
    assert!(verified.countersigned);
    assert!(
        path.starts_with(h.dir().join("s1/blobs/sha256")),
        "{}",
        path.display()
    );
    let events = h.plane.events(None, 50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind.as_str() == "node.archived" && e.message.contains(&record.id)),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_in_another_nodes_name_or_changed_is_refused_and_nothing_kept() {
    let h = Harness::start(&["n1", "n2"]).await;
    Harness::elected(&h.plane).await;
    let dir = tempfile::tempdir().unwrap();
    let n1 = NodeName::from_static("n1");
    // n2's archive, sent by n1.
    let n2_signer = node_signer(&h, "n2").await;
    let error = h
        .plane
        .store_node_archive(&n1, body(archive_bytes(dir.path(), "n2", &n2_signer)))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("node n1 sent an archive made by node n2"),
        "{error}"
    );
    // n1 signing in n2's name: its certificate names n1.
    let n1_signer = node_signer(&h, "n1").await;
    let error = h
        .plane
        .store_node_archive(&n1, body(archive_bytes(dir.path(), "n2", &n1_signer)))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("does not verify"), "{error}");
    // A byte of the payload changed after signing.
    let mut bytes = archive_bytes(dir.path(), "n1", &n1_signer);
    let last = bytes.len() - 2048;
    bytes[last] ^= 0x01;
    let error = h
        .plane
        .store_node_archive(&n1, body(bytes))
        .await
        .unwrap_err();
    assert!(
        matches!(error, strata_control::ControlError::BadRequest { .. }),
        "{error}"
    );
    assert!(h.plane.archives().await.unwrap().is_empty());
    // Nothing left in the blob store either.
    let blobs = h.dir().join("s1/blobs/sha256");
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap_or_else(|e| panic!("{}: {e}", blobs.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?} in {}", blobs.display());
}
