//! Forensic archives as a node makes them, for the tests of what the control plane does with
//! them.

#![allow(dead_code)]

use std::time::Duration;

use strata_forensics::{ArchiveBuilder, Origin, Signer};
use strata_mesh::identity::node_key_and_csr;

use super::harness::Harness;

/// An archive node `node` made of `subject` (a small data directory), signed with a certificate of the
/// plane's CA; its bytes.
pub async fn node_archive(
    h: &Harness,
    node: &str,
    subject: &str,
    dir: &std::path::Path,
) -> Vec<u8> {
    let origin = Origin {
        node: node.into(),
        subject: subject.into(),
        created_at: strata_core::now_millis(),
        ..Default::default()
    };
    archive_of(h, origin, dir).await
}

/// An archive of a small data directory with `origin`, signed by its node with a
/// certificate of the plane's CA; its bytes.
pub async fn archive_of(h: &Harness, origin: Origin, dir: &std::path::Path) -> Vec<u8> {
    let node = origin.node.clone();
    let node = node.as_str();
    let ca = h.plane.identity().cluster_ca().await.unwrap();
    let (key, csr) = node_key_and_csr(node).unwrap();
    let signed = ca
        .sign_node(&csr, node, None, Duration::from_secs(3600))
        .unwrap();
    let signer = Signer::from_pem("node key", &signed.cert_pem, &key).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("instances/web-1")).unwrap();
    std::fs::write(data.join("instances/web-1/output.log"), "canary-7f3a\n").unwrap();
    let out = dir.join("node.strata-archive");
    let mut builder = ArchiveBuilder::create(&out, origin).unwrap();
    builder.add_path(&data, "data").unwrap();
    builder.finish(&signer).unwrap();
    std::fs::read(out).unwrap()
}

pub fn body(
    bytes: Vec<u8>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
    futures::stream::iter(vec![Ok(bytes::Bytes::from(bytes))])
}
