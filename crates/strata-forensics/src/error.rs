//! What can go wrong building, signing or verifying an archive.

/// An archive that cannot be made, or does not verify: each says which part or file.
#[derive(Debug, thiserror::Error)]
pub enum ForensicsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a forensic archive: {0}")]
    NotAnArchive(String),
    #[error("the archive has no `{0}`")]
    MissingPart(&'static str),
    #[error("the manifest does not parse: {0}")]
    BadManifest(String),
    #[error("{what}: {reason}")]
    BadKey { what: &'static str, reason: String },
    #[error("the node's certificate was not issued by this CA ({0})")]
    NotIssuedByCa(String),
    #[error("the node's certificate names `{certificate}`, the manifest node `{manifest}`")]
    WrongNode {
        certificate: String,
        manifest: String,
    },
    #[error("the node's signature over the manifest does not verify: the manifest or the signature changed")]
    NodeSignature,
    #[error("the archive is not countersigned by the control plane")]
    NotCountersigned,
    #[error("the control plane's countersignature does not verify against this CA: the manifest, the node's signature or the countersignature changed, or another CA signed it")]
    Countersignature,
    #[error("the payload's digest is {found}, the manifest says {expected}: the payload changed")]
    PayloadDigest { expected: String, found: String },
    #[error("file `{path}` changed: its {field} is {found}, the manifest says {expected}")]
    FileChanged {
        path: String,
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("file `{0}` is in the manifest but not in the payload")]
    FileMissing(String),
    #[error("file `{0}` is in the payload but not in the manifest")]
    FileUnexpected(String),
    #[error("the payload does not decompress or read: {0}")]
    BadPayload(String),
}

impl ForensicsError {
    /// An IO error on `path`.
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        ForensicsError::Io {
            path: path.to_string(),
            source,
        }
    }
}
