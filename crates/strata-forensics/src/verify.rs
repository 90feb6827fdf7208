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
    /// Where its last part ends in the file (the tar's end blocks follow).
    pub(crate) end_of_parts: u64,
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

/// The most a manifest may be (a manifest of a million files is about 300 MiB).
const MANIFEST_MAX: u64 = 512 << 20;
/// The most a certificate or a signature may be (they are a few hundred bytes).
const SMALL_PART_MAX: u64 = 64 << 10;

/// Verifies the archive at `path` against the CA certificate `ca_pem`; with `countersigned`,
/// an archive the control plane did not countersign fails. The first failure found, in this
/// order: the node's certificate, the node's signature, the countersignature, the files (the
/// first that differs from the manifest, by name), the payload's digest.
pub fn verify(path: &Path, ca_pem: &str, countersigned: bool) -> Result<Verified, ForensicsError> {
    let io = |e| ForensicsError::io(path.display(), e);
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut found = Parts::default();
    // Where the last part ends: only the tar's zero blocks may follow it.
    let mut end_of_parts = 0u64;
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
        end_of_parts = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
        let mut small = |max: u64| -> Result<Vec<u8>, ForensicsError> {
            if entry.size() > max {
                return Err(ForensicsError::NotAnArchive(format!(
                    "`{name}` is too large"
                )));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(io)?;
            Ok(bytes)
        };
        let once = |seen: bool| match seen {
            true => Err(ForensicsError::NotAnArchive(format!(
                "`{name}` appears twice"
            ))),
            false => Ok(()),
        };
        match name.as_str() {
            parts::MANIFEST => {
                once(found.manifest.is_some())?;
                found.manifest = Some(small(MANIFEST_MAX)?)
            }
            parts::NODE_CERTIFICATE => {
                once(found.certificate.is_some())?;
                found.certificate = Some(small(SMALL_PART_MAX)?)
            }
            parts::NODE_SIGNATURE => {
                once(found.node_signature.is_some())?;
                found.node_signature = Some(small(SMALL_PART_MAX)?)
            }
            parts::COUNTERSIGNATURE => {
                once(found.countersignature.is_some())?;
                found.countersignature = Some(small(SMALL_PART_MAX)?)
            }
            parts::PAYLOAD => {
                once(found.payload.is_some())?;
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
                    Some(manifest) => check_files(&mut hashing, manifest),
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
    drop(archive);
    // Nothing but zeros after the last part (the tar's end): bytes hidden past it would be
    // shown by other tools and judged by none.
    let mut file = std::fs::File::open(path).map_err(io)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(end_of_parts)).map_err(io)?;
    let mut tail = Vec::new();
    file.take(1 << 20).read_to_end(&mut tail).map_err(io)?;
    if tail.len() >= 1 << 20 || tail.iter().any(|b| *b != 0) {
        return Err(ForensicsError::NotAnArchive(
            "there are bytes after the archive's end".into(),
        ));
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
        end_of_parts,
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
fn check_files(compressed: impl Read, manifest: &Manifest) -> Result<(), ForensicsError> {
    let files = &manifest.files;
    let bad = |e: std::io::Error| ForensicsError::BadPayload(e.to_string());
    let decoder = zstd::Decoder::new(compressed).map_err(bad)?;
    // No more than the manifest's files and their tar headers: a payload that decompresses
    // to more is refused when it passes that, not after.
    let most = manifest
        .bytes
        .saturating_add((files.len() as u64 + 4).saturating_mul(3 * 512))
        .saturating_add(1 << 20);
    let mut payload = tar::Archive::new(Bounded {
        inner: decoder,
        left: most,
    });
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

/// Reads through to `inner`, failing once more than `left` bytes came out of it.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::other("the payload decompresses to more than its manifest holds")
        })?;
        Ok(n)
    }
}
