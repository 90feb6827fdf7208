//! Signing with a certificate's key (a node's, or the cluster CA's: ECDSA P-256, as the
//! cluster's identities are made), and the control plane's countersignature.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::verify::{verify, Verified};
use crate::{parts, ForensicsError};

/// A certificate and its private key, signing.
pub struct Signer {
    certificate_pem: String,
    key: EcdsaKeyPair,
    random: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// From a PEM certificate and its PEM (PKCS #8) ECDSA P-256 key; `what` names them in
    /// errors (`node key`, `cluster CA key`).
    pub fn from_pem(
        what: &'static str,
        certificate_pem: &str,
        key_pem: &str,
    ) -> Result<Signer, ForensicsError> {
        let bad = |reason: String| ForensicsError::BadKey { what, reason };
        let key = pem::parse(key_pem).map_err(|e| bad(e.to_string()))?;
        let random = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key.contents(), &random)
                .map_err(|e| bad(format!("not an ECDSA P-256 PKCS #8 key ({e})")))?;
        pem::parse(certificate_pem).map_err(|e| bad(format!("its certificate: {e}")))?;
        Ok(Signer {
            certificate_pem: certificate_pem.to_string(),
            key,
            random,
        })
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The signature (ASN.1 DER) of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ForensicsError> {
        self.key
            .sign(&self.random, message)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| ForensicsError::BadKey {
                what: "signing key",
                reason: "signing failed".into(),
            })
    }
}

/// What the countersignature signs: the manifest's bytes, then the node's signature.
pub(crate) fn countersigned_message(manifest: &[u8], node_signature: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(manifest.len() + node_signature.len());
    message.extend_from_slice(manifest);
    message.extend_from_slice(node_signature);
    message
}

/// The control plane's countersignature: verifies the archive at `path` in full against
/// `ca`'s certificate (the node's certificate, its signature, the payload and every file),
/// then appends the CA's signature over the manifest and the node's signature. An archive
/// that does not verify is left as it was.
pub fn countersign(path: &Path, ca: &Signer) -> Result<Verified, ForensicsError> {
    let verified = verify(path, ca.certificate_pem(), false)?;
    if verified.countersigned {
        return Ok(verified);
    }
    let signature = ca.sign(&countersigned_message(
        &verified.manifest_bytes,
        &verified.node_signature,
    ))?;
    let io = |e| ForensicsError::io(path.display(), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    // After the last part come the tar's end blocks (zeros, as verifying checked): the
    // countersignature goes in their place.
    let at = verified.end_of_parts;
    file.set_len(at).map_err(io)?;
    file.seek(SeekFrom::Start(at)).map_err(io)?;
    let mut archive = tar::Builder::new(file);
    let mut header = tar::Header::new_gnu();
    header.set_size(signature.len() as u64);
    header.set_mode(0o444);
    header.set_mtime(verified.manifest.origin.created_at / 1000);
    header.set_entry_type(tar::EntryType::Regular);
    archive
        .append_data(&mut header, parts::COUNTERSIGNATURE, signature.as_slice())
        .map_err(io)?;
    archive.into_inner().map_err(io)?.sync_all().map_err(io)?;
    Ok(Verified {
        countersigned: true,
        ..verified
    })
}
