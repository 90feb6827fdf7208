//! Verifying an archive offline: the node's certificate against the CA, both signatures, the
//! payload's digest, and every file against the manifest.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use sha2::{Digest, Sha256};

use crate::build::HashingReader;
use crate::manifest::{FileEntry, FileKind, Manifest};
use crate::sign::countersigned_message;
use crate::{parts, ForensicsError};

/// An archive that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    /// Whether the control plane countersigned it.
    pub countersigned: bool,
    pub(crate) manifest_bytes: Vec<u8>,
    pub(crate) node_signature: Vec<u8>,
}

/// The small parts, read whole.
#[derive(Default)]
struct Parts {
    manifest: Option<Vec<u8>>,
    certificate: Option<Vec<u8>>,
    node_signature: Option<Vec<u8>>,
    countersignature: Option<Vec<u8>>,
    /// The payload's digest and what checking its files against the manifest found.
    payload: Option<(String, Result<(), ForensicsError>)>,
}

/// The most a small part may be (a manifest of a million files is about 300 MiB).
const SMALL_PART_MAX: u64 = 1 << 30;

/// Verifies the archive at `path` against the CA certificate `ca_pem`; with `countersigned`,
/// an archive the control plane did not countersign fails. The first failure found, in this
/// order: the node's certificate, the node's signature, the countersignature, the files (the
/// first that differs from the manifest, by name), the payload's digest.
pub fn verify(path: &Path, ca_pem: &str, countersigned: bool) -> Result<Verified, ForensicsError> {
    let io = |e| ForensicsError::io(path.display(), e);
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut found = Parts::default();
    let entries = archive
        .entries()
        .map_err(|e| ForensicsError::NotAnArchive(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ForensicsError::NotAnArchive(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| ForensicsError::NotAnArchive(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut small = || -> Result<Vec<u8>, ForensicsError> {
            if entry.size() > SMALL_PART_MAX {
                return Err(ForensicsError::NotAnArchive(format!(
                    "`{name}` is too large"
                )));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(io)?;
            Ok(bytes)
        };
        match name.as_str() {
            parts::MANIFEST => found.manifest = Some(small()?),
            parts::NODE_CERTIFICATE => found.certificate = Some(small()?),
            parts::NODE_SIGNATURE => found.node_signature = Some(small()?),
            parts::COUNTERSIGNATURE => found.countersignature = Some(small()?),
            parts::PAYLOAD => {
                let manifest: Option<Manifest> = found
                    .manifest
                    .as_deref()
                    .and_then(|bytes| serde_json::from_slice(bytes).ok());
                let mut hashing = HashingReader {
                    inner: &mut entry,
                    hasher: Sha256::new(),
                    read: 0,
                };
                let files = match &manifest {
                    Some(manifest) => check_files(&mut hashing, &manifest.files),
                    None => Err(ForensicsError::MissingPart(parts::MANIFEST)),
                };
                // Whatever the files said, the digest covers every byte.
                std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io)?;
                let digest = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
                found.payload = Some((digest, files));
            }
            other => {
                return Err(ForensicsError::NotAnArchive(format!(
                    "unknown part `{other}`"
                )))
            }
        }
    }
    let manifest_bytes = found
        .manifest
        .ok_or(ForensicsError::MissingPart(parts::MANIFEST))?;
    let certificate = found
        .certificate
        .ok_or(ForensicsError::MissingPart(parts::NODE_CERTIFICATE))?;
    let node_signature = found
        .node_signature
        .ok_or(ForensicsError::MissingPart(parts::NODE_SIGNATURE))?;
    let (payload_digest, files) = found
        .payload
        .ok_or(ForensicsError::MissingPart(parts::PAYLOAD))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| ForensicsError::BadManifest(e.to_string()))?;

    // The node's certificate, from this CA, for the node the manifest names.
    let ca_der = pem_der(ca_pem.as_bytes(), "the CA certificate")?;
    let node_der = pem_der(&certificate, "the node's certificate")?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| ForensicsError::NotIssuedByCa(format!("the CA certificate: {e}")))?;
    let (_, node) = x509_parser::parse_x509_certificate(&node_der)
        .map_err(|e| ForensicsError::NotIssuedByCa(format!("the node's certificate: {e}")))?;
    node.verify_signature(Some(ca.public_key()))
        .map_err(|e| ForensicsError::NotIssuedByCa(e.to_string()))?;
    let named = node_of(&node).unwrap_or_default();
    if named != manifest.origin.node {
        return Err(ForensicsError::WrongNode {
            certificate: named,
            manifest: manifest.origin.node.clone(),
        });
    }
    // The node's signature, then the control plane's.
    UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        node.public_key().subject_public_key.data.as_ref(),
    )
    .verify(&manifest_bytes, &node_signature)
    .map_err(|_| ForensicsError::NodeSignature)?;
    match &found.countersignature {
        Some(signature) => UnparsedPublicKey::new(
            &ECDSA_P256_SHA256_ASN1,
            ca.public_key().subject_public_key.data.as_ref(),
        )
        .verify(
            &countersigned_message(&manifest_bytes, &node_signature),
            signature,
        )
        .map_err(|_| ForensicsError::Countersignature)?,
        None if countersigned => return Err(ForensicsError::NotCountersigned),
        None => {}
    }
    // A file that changed is named; a payload changed otherwise (recompressed, padded)
    // still fails on its digest.
    files?;
    if payload_digest != manifest.payload_sha256 {
        return Err(ForensicsError::PayloadDigest {
            expected: manifest.payload_sha256.clone(),
            found: payload_digest,
        });
    }
    Ok(Verified {
        countersigned: found.countersignature.is_some(),
        manifest,
        manifest_bytes,
        node_signature,
    })
}

fn pem_der(text: &[u8], what: &str) -> Result<Vec<u8>, ForensicsError> {
    pem::parse(text)
        .map(|pem| pem.contents().to_vec())
        .map_err(|e| ForensicsError::NotIssuedByCa(format!("{what} is not PEM: {e}")))
}

/// The node a node certificate names: `NAME` of its `NAME.node.strata` DNS name.
fn node_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    let names = cert.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => dns
                .strip_suffix(".node.strata")
                .filter(|n| !n.is_empty() && !n.contains('.'))
                .map(str::to_string),
            _ => None,
        })
}

/// Reads the payload (a zstd-compressed tar) from `compressed` and checks each entry against
/// `files`: every one present, with the bytes, size, mode, owner and time recorded, and
/// nothing else.
fn check_files(compressed: impl Read, files: &[FileEntry]) -> Result<(), ForensicsError> {
    let bad = |e: std::io::Error| ForensicsError::BadPayload(e.to_string());
    let decoder = zstd::Decoder::new(compressed).map_err(bad)?;
    let mut payload = tar::Archive::new(decoder);
    let mut expected: BTreeMap<&str, &FileEntry> =
        files.iter().map(|f| (f.path.as_str(), f)).collect();
    // Where the payload stopped reading, if it breaks: after this file.
    let mut last = String::from("the start");
    for entry in payload.entries().map_err(bad)? {
        let after = |e: std::io::Error| ForensicsError::BadPayload(format!("after `{last}`: {e}"));
        let mut entry = entry.map_err(after)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let path = path.trim_end_matches('/').to_string();
        last = path.clone();
        let bad = |e: std::io::Error| ForensicsError::BadPayload(format!("in `{path}`: {e}"));
        let Some(want) = expected.remove(path.as_str()) else {
            return Err(ForensicsError::FileUnexpected(path));
        };
        let header = entry.header();
        let changed =
            |field: &'static str, expected: String, found: String| ForensicsError::FileChanged {
                path: path.clone(),
                field,
                expected,
                found,
            };
        let kind = match header.entry_type() {
            tar::EntryType::Directory => FileKind::Directory,
            tar::EntryType::Symlink => FileKind::Symlink,
            _ => FileKind::File,
        };
        if kind != want.kind {
            return Err(changed(
                "kind",
                format!("{:?}", want.kind),
                format!("{kind:?}"),
            ));
        }
        let mode = format!("{:o}", header.mode().map_err(bad)? & 0o7777);
        if mode != want.mode {
            return Err(changed("mode", want.mode.clone(), mode));
        }
        let owner = (header.uid().map_err(bad)?, header.gid().map_err(bad)?);
        if owner != (want.uid, want.gid) {
            return Err(changed(
                "owner",
                format!("{}:{}", want.uid, want.gid),
                format!("{}:{}", owner.0, owner.1),
            ));
        }
        let mtime = header.mtime().map_err(bad)?;
        if mtime != want.mtime {
            return Err(changed("mtime", want.mtime.to_string(), mtime.to_string()));
        }
        match kind {
            FileKind::File => {
                let mut hashing = HashingReader {
                    inner: &mut entry,
                    hasher: Sha256::new(),
                    read: 0,
                };
                std::io::copy(&mut hashing, &mut std::io::sink()).map_err(bad)?;
                if hashing.read != want.size {
                    return Err(changed(
                        "size",
                        want.size.to_string(),
                        hashing.read.to_string(),
                    ));
                }
                let digest = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
                if Some(&digest) != want.sha256.as_ref() {
                    return Err(changed(
                        "sha256",
                        want.sha256.clone().unwrap_or_default(),
                        digest,
                    ));
                }
            }
            FileKind::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(bad)?
                    .map(|t| t.to_string_lossy().into_owned());
                if target != want.link {
                    return Err(changed(
                        "link target",
                        want.link.clone().unwrap_or_default(),
                        target.unwrap_or_default(),
                    ));
                }
            }
            FileKind::Directory => {}
        }
    }
    match expected.into_keys().next() {
        Some(missing) => Err(ForensicsError::FileMissing(missing.to_string())),
        None => Ok(()),
    }
}
