//! Forensic archives made from real files, countersigned, and verified offline; then every
//! way of changing one after the fact, each caught and named.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use strata_forensics::{
    countersign, parts, verify, ArchiveBuilder, FileKind, ForensicsError, Origin, Signer,
};

/// A cluster CA: (certificate PEM, key PEM).
fn ca() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "test cluster CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Node `node`'s certificate from `ca`, as the cluster issues them, and its key.
fn node_identity(ca: &(String, String), node: &str) -> Signer {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, node);
    params.subject_alt_names = vec![SanType::DnsName(
        format!("{node}.node.strata").try_into().unwrap(),
    )];
    let issuer = Issuer::from_ca_cert_pem(&ca.0, KeyPair::from_pem(&ca.1).unwrap()).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Signer::from_pem("node key", &cert.pem(), &key.serialize_pem()).unwrap()
}

fn ca_signer(ca: &(String, String)) -> Signer {
    Signer::from_pem("cluster CA key", &ca.0, &ca.1).unwrap()
}

/// What a node held: nested directories, a private file, a link, a few MiB of noise.
fn node_data(root: &Path) {
    std::fs::create_dir_all(root.join("instances/web-1/work")).unwrap();
    std::fs::write(
        root.join("instances/web-1/work/secret.txt"),
        "canary-string-7f3a written by the instance\n",
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("instances/web-1/work/secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        root.join("instances/web-1/stdout.log"),
        "hello: listening\n",
    )
    .unwrap();
    let mut noise = vec![0u8; 3 << 20];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in noise.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    std::fs::write(root.join("instances/web-1/work/blob.bin"), noise).unwrap();
    std::os::unix::fs::symlink("work/secret.txt", root.join("instances/web-1/latest")).unwrap();
}

/// The node's slice of the event log, as the agent adds it.
const EVENTS: &[u8] = b"{\"kind\":\"node.draining\"}\n";

fn origin(node: &str) -> Origin {
    Origin {
        node: node.into(),
        subject: "node".into(),
        kernel: "6.1.0-test".into(),
        strata_version: "0.1.0".into(),
        releases: vec!["dev/web#3".into()],
        created_at: 1_765_000_000_000,
    }
}

/// An archive of `node_data` made by node n1 and countersigned: (dir, path, CA).
fn countersigned_archive() -> (tempfile::TempDir, PathBuf, (String, String)) {
    let dir = tempfile::tempdir().unwrap();
    node_data(&dir.path().join("data"));
    let ca = ca();
    let node = node_identity(&ca, "n1");
    let out = dir.path().join("n1.strata-archive");
    let mut builder = ArchiveBuilder::create(&out, origin("n1")).unwrap();
    builder.add_path(&dir.path().join("data"), "data").unwrap();
    builder
        .add_bytes("events.jsonl", EVENTS, 0o644, 1_765_000_000)
        .unwrap();
    builder.finish(&node).unwrap();
    countersign(&out, &ca_signer(&ca)).unwrap();
    (dir, out, ca)
}

#[test]
fn an_archive_holds_every_file_with_its_metadata_and_verifies_offline() {
    let (dir, out, ca) = countersigned_archive();
    let verified = verify(&out, &ca.0, true).unwrap();
    assert!(verified.countersigned);
    let manifest = &verified.manifest;
    assert_eq!(manifest.origin.node, "n1");
    let file = |path: &str| {
        manifest
            .files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("{path} in {:?}", manifest.files))
    };
    let secret = file("data/instances/web-1/work/secret.txt");
    assert_eq!((secret.kind, secret.mode.as_str()), (FileKind::File, "600"));
    let on_disk = std::fs::read(dir.path().join("data/instances/web-1/work/secret.txt")).unwrap();
    assert_eq!(secret.size, on_disk.len() as u64);
    assert_eq!(
        secret.sha256.as_deref().unwrap(),
        format!("sha256:{}", sha256_hex(&on_disk))
    );
    assert_eq!(
        file("data/instances/web-1/latest").link.as_deref(),
        Some("work/secret.txt")
    );
    assert_eq!(file("data/instances").kind, FileKind::Directory);
    assert_eq!(file("events.jsonl").size, EVENTS.len() as u64);
    assert!(manifest.bytes > 3 << 20);
    // Countersigning again changes nothing.
    let size = std::fs::metadata(&out).unwrap().len();
    countersign(&out, &ca_signer(&ca)).unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
    // The payload holds the bytes themselves.
    let payload = part(&out, parts::PAYLOAD);
    let mut files = tar::Archive::new(zstd::Decoder::new(payload.as_slice()).unwrap());
    let mut found = false;
    for entry in files.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with("secret.txt") {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            found = text.contains("canary-string-7f3a");
        }
    }
    assert!(found);
}

#[test]
fn a_changed_file_is_named() {
    let (dir, out, ca) = countersigned_archive();
    // The payload rebuilt with one file's bytes changed, manifest and signatures kept.
    let payload = part(&out, parts::PAYLOAD);
    let mut rebuilt = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap());
    let mut original = tar::Archive::new(zstd::Decoder::new(payload.as_slice()).unwrap());
    for entry in original.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if path.ends_with("stdout.log") {
            bytes = b"hello: nothing to see\n".to_vec();
            header.set_size(bytes.len() as u64);
            header.set_cksum();
        }
        rebuilt.append(&header, bytes.as_slice()).unwrap();
    }
    let changed = rebuilt.into_inner().unwrap().finish().unwrap();
    let tampered = dir.path().join("tampered.strata-archive");
    replace_part(&out, &tampered, parts::PAYLOAD, &changed);
    let error = verify(&tampered, &ca.0, true).unwrap_err();
    assert!(
        matches!(&error, ForensicsError::FileChanged { path, field: "size", .. }
            if path == "data/instances/web-1/stdout.log"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("data/instances/web-1/stdout.log"),
        "{error}"
    );
    // A byte flipped in the compressed payload: caught, saying where it broke or its digest.
    let mut flipped = payload.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    replace_part(&out, &tampered, parts::PAYLOAD, &flipped);
    let error = verify(&tampered, &ca.0, true).unwrap_err();
    assert!(
        matches!(
            error,
            ForensicsError::BadPayload(_)
                | ForensicsError::FileChanged { .. }
                | ForensicsError::PayloadDigest { .. }
        ),
        "{error}"
    );
}

#[test]
fn a_changed_manifest_or_signature_or_another_ca_fails() {
    let (dir, out, ca) = countersigned_archive();
    let tampered = dir.path().join("tampered.strata-archive");
    // The manifest edited to hide a file's new hash: the node's signature no longer holds.
    let manifest = String::from_utf8(part(&out, parts::MANIFEST)).unwrap();
    let edited = manifest.replacen("dev/web#3", "dev/web#4", 1);
    replace_part(&out, &tampered, parts::MANIFEST, edited.as_bytes());
    let error = verify(&tampered, &ca.0, true).unwrap_err();
    assert!(matches!(error, ForensicsError::NodeSignature), "{error}");
    // Another CA: the node's certificate is not from it.
    let other = ca_pem_of(&self::ca());
    let error = verify(&out, &other, true).unwrap_err();
    assert!(matches!(error, ForensicsError::NotIssuedByCa(_)), "{error}");
    // The countersignature replaced by another CA's.
    let stranger = self::ca();
    let forged = ca_signer(&stranger)
        .sign(
            &[
                part(&out, parts::MANIFEST),
                part(&out, parts::NODE_SIGNATURE),
            ]
            .concat(),
        )
        .unwrap();
    replace_part(&out, &tampered, parts::COUNTERSIGNATURE, &forged);
    let error = verify(&tampered, &ca.0, true).unwrap_err();
    assert!(matches!(error, ForensicsError::Countersignature), "{error}");
    // Not countersigned: fails only when a countersignature is required.
    let dir2 = tempfile::tempdir().unwrap();
    node_data(&dir2.path().join("data"));
    let unsigned = dir2.path().join("a.strata-archive");
    let mut builder = ArchiveBuilder::create(&unsigned, origin("n1")).unwrap();
    builder.add_path(&dir2.path().join("data"), "data").unwrap();
    builder.finish(&node_identity(&ca, "n1")).unwrap();
    assert!(!verify(&unsigned, &ca.0, false).unwrap().countersigned);
    let error = verify(&unsigned, &ca.0, true).unwrap_err();
    assert!(matches!(error, ForensicsError::NotCountersigned), "{error}");
    // A node cannot make an archive in another node's name.
    let impostor = dir2.path().join("b.strata-archive");
    let mut builder = ArchiveBuilder::create(&impostor, origin("n2")).unwrap();
    builder.add_path(&dir2.path().join("data"), "data").unwrap();
    builder.finish(&node_identity(&ca, "n1")).unwrap();
    let error = countersign(&impostor, &ca_signer(&ca)).unwrap_err();
    assert!(matches!(error, ForensicsError::WrongNode { .. }), "{error}");
    // Not an archive at all.
    std::fs::write(dir2.path().join("c"), b"not a tar").unwrap();
    assert!(verify(&dir2.path().join("c"), &ca.0, true).is_err());
}

fn ca_pem_of(ca: &(String, String)) -> String {
    ca.0.clone()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Part `name` of the archive at `path`.
fn part(path: &Path, name: &str) -> Vec<u8> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == name {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("no {name}");
}

/// The archive at `from` with part `name` replaced by `bytes`, written to `to`.
fn replace_part(from: &Path, to: &Path, name: &str, bytes: &[u8]) {
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut out = tar::Builder::new(std::fs::File::create(to).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        if path == name {
            content = bytes.to_vec();
            header.set_size(content.len() as u64);
            header.set_cksum();
        }
        out.append(&header, content.as_slice()).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn bytes_past_the_end_or_a_part_twice_are_refused_and_never_countersigned() {
    let (dir, out, ca) = countersigned_archive();
    // Bytes hidden after the tar's end.
    let hidden = dir.path().join("hidden.strata-archive");
    let mut bytes = std::fs::read(&out).unwrap();
    bytes.extend_from_slice(b"an unsigned note");
    std::fs::write(&hidden, &bytes).unwrap();
    let error = verify(&hidden, &ca.0, true).unwrap_err();
    assert!(
        error.to_string().contains("bytes after the archive's end"),
        "{error}"
    );
    assert!(countersign(&hidden, &ca_signer(&ca)).is_err());
    // A second manifest after the signed one.
    let twice = dir.path().join("twice.strata-archive");
    let mut archive = tar::Archive::new(std::fs::File::open(&out).unwrap());
    let mut rebuilt = tar::Builder::new(std::fs::File::create(&twice).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        rebuilt.append(&header, content.as_slice()).unwrap();
    }
    let manifest = part(&out, parts::MANIFEST);
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o444);
    rebuilt
        .append_data(&mut header, parts::MANIFEST, manifest.as_slice())
        .unwrap();
    rebuilt.finish().unwrap();
    let error = verify(&twice, &ca.0, true).unwrap_err();
    assert!(error.to_string().contains("appears twice"), "{error}");
}
