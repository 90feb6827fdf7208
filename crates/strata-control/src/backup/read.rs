//! Reading a backup back: every line checked as it is read (the running digest, each
//! artifact's bytes against its name, sealed values against the passphrase), and the end line
//! against what was read, so a restore can verify the whole file first and then apply it.

use std::collections::BTreeSet;
use std::io::BufRead;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::format::{artifact_digest, Header, Line, FORMAT};
use super::seal::{SealError, Sealer};

/// Why a file cannot be restored from. Each says where (`FILE:LINE`) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot read {at}: {reason}")]
    Io { at: String, reason: String },
    #[error("{at}: not a Strata backup line: {reason}")]
    NotABackup { at: String, reason: String },
    #[error("{at}: backup format {found} is newer than this version of strata reads ({FORMAT}); restore with a newer strata")]
    Format { at: String, found: u32 },
    #[error("{at}: the file ends before its end line: it was cut short (a full disk, or a copy that did not finish); take the backup again")]
    Truncated { at: String },
    #[error("{at}: {what}: the file was altered after it was written")]
    Altered { at: String, what: String },
    #[error(
        "{at}: artifact {digest} is missing: a release names it and the backup does not hold it"
    )]
    MissingArtifact { at: String, digest: String },
    #[error("{at}: the server taking the backup failed: {message}")]
    ServerFailed { at: String, message: String },
    #[error("{at}: the backup's secrets are sealed; give the passphrase (--passphrase-file FILE, or STRATA_BACKUP_PASSPHRASE)")]
    NeedsPassphrase { at: String },
    #[error("{at}: {source}")]
    Seal {
        at: String,
        #[source]
        source: SealError,
    },
}

/// One item of a backup, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A key and its value (a secret's opened).
    Key { key: String, value: Vec<u8> },
    /// A secret key read without the passphrase: present, not opened.
    Sealed { key: String },
    /// An artifact's bytes, which hash to `digest`.
    Artifact { digest: String, bytes: Vec<u8> },
}

/// What a whole file holds, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub header: Header,
    pub keys: usize,
    pub artifacts: usize,
    /// Secret keys, sealed (opened when a passphrase was given).
    pub sealed: usize,
    pub bytes: u64,
}

/// Reads a backup entry by entry.
pub struct Reader<R: BufRead> {
    input: R,
    source: String,
    number: usize,
    digest: Sha256,
    header: Header,
    sealer: Option<Sealer>,
    keys: usize,
    artifacts: usize,
    sealed: usize,
    bytes: u64,
    /// Artifacts the backup's records name, and those it holds.
    named: BTreeSet<String>,
    held: BTreeSet<String>,
    ended: bool,
}

impl<R: BufRead> Reader<R> {
    /// Reads the header of `input` (named `source` in errors). With `passphrase`, sealed
    /// secrets are opened (a wrong one is refused here); without, they are only counted.
    pub fn open(input: R, source: &str, passphrase: Option<&[u8]>) -> Result<Self, BackupError> {
        let mut reader = Self {
            input,
            source: source.to_string(),
            number: 0,
            digest: Sha256::new(),
            header: Header {
                strata_backup: 0,
                revision: 0,
                taken_at_ms: 0,
                taken_by: String::new(),
                seal: None,
            },
            sealer: None,
            keys: 0,
            artifacts: 0,
            sealed: 0,
            bytes: 0,
            named: BTreeSet::new(),
            held: BTreeSet::new(),
            ended: false,
        };
        let header = match reader.line()? {
            Some(Line::Header(header)) => header,
            Some(_) => {
                return Err(BackupError::NotABackup {
                    at: reader.at(),
                    reason: "the first line is not a backup header (an export from before backups were verifiable? import it with a strata of that time)".into(),
                })
            }
            None => return Err(BackupError::Truncated { at: reader.at() }),
        };
        if header.strata_backup > FORMAT || header.strata_backup == 0 {
            return Err(BackupError::Format {
                at: reader.at(),
                found: header.strata_backup,
            });
        }
        if let (Some(params), Some(passphrase)) = (&header.seal, passphrase) {
            reader.sealer =
                Some(
                    Sealer::open(passphrase, params).map_err(|source| BackupError::Seal {
                        at: reader.at(),
                        source,
                    })?,
                );
        }
        reader.header = header;
        Ok(reader)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether sealed secrets will be opened (a passphrase was given for a sealed backup).
    pub fn opens_secrets(&self) -> bool {
        self.sealer.is_some()
    }

    /// The next entry, checked; `None` once the end line has been read and matched.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, BackupError> {
        if self.ended {
            return Ok(None);
        }
        // The digest covers every line before the end line.
        let before = self.digest.clone();
        let Some(line) = self.line()? else {
            return Err(BackupError::Truncated { at: self.at() });
        };
        match line {
            Line::Header(_) => Err(BackupError::NotABackup {
                at: self.at(),
                reason: "a second header: two backups joined into one file".into(),
            }),
            Line::Key {
                key,
                value,
                value_base64,
                sealed,
            } => {
                self.keys += 1;
                if key.starts_with(strata_core::keys::BLOBS) {
                    self.named
                        .insert(key.trim_start_matches(strata_core::keys::BLOBS).to_string());
                }
                let value = match (value, value_base64, sealed) {
                    (Some(json), None, None) => {
                        serde_json::to_vec(&json).map_err(|error| BackupError::NotABackup {
                            at: self.at(),
                            reason: error.to_string(),
                        })?
                    }
                    (None, Some(encoded), None) => {
                        BASE64
                            .decode(encoded)
                            .map_err(|error| BackupError::NotABackup {
                                at: self.at(),
                                reason: format!("value of {key}: {error}"),
                            })?
                    }
                    (None, None, Some(sealed)) => {
                        self.sealed += 1;
                        if self.header.seal.is_none() {
                            return Err(BackupError::NotABackup {
                                at: self.at(),
                                reason: format!("{key} is sealed, but the header names no seal"),
                            });
                        }
                        match &self.sealer {
                            Some(sealer) => sealer.open_value(&key, &sealed).map_err(|source| {
                                BackupError::Seal {
                                    at: self.at(),
                                    source,
                                }
                            })?,
                            None => return Ok(Some(Entry::Sealed { key })),
                        }
                    }
                    _ => {
                        return Err(BackupError::NotABackup {
                            at: self.at(),
                            reason: format!(
                                "{key} needs exactly one of value, value_base64, sealed"
                            ),
                        })
                    }
                };
                Ok(Some(Entry::Key { key, value }))
            }
            Line::Artifact { blob, base64 } => {
                let bytes = BASE64
                    .decode(base64)
                    .map_err(|error| BackupError::NotABackup {
                        at: self.at(),
                        reason: format!("artifact {blob}: {error}"),
                    })?;
                if artifact_digest(&bytes) != blob {
                    return Err(BackupError::Altered {
                        at: self.at(),
                        what: format!("artifact {blob} does not hash to its name"),
                    });
                }
                self.artifacts += 1;
                self.held.insert(blob.clone());
                Ok(Some(Entry::Artifact {
                    digest: blob,
                    bytes,
                }))
            }
            Line::Failed { error } => Err(BackupError::ServerFailed {
                at: self.at(),
                message: error,
            }),
            Line::End { end } => {
                let whole = hex::encode(before.finalize());
                if end.sha256 != whole || end.keys != self.keys || end.artifacts != self.artifacts {
                    return Err(BackupError::Altered {
                        at: self.at(),
                        what: format!(
                            "the end line says {} keys, {} artifacts, sha256 {}; the file holds {} keys, {} artifacts, sha256 {whole}",
                            end.keys, end.artifacts, end.sha256, self.keys, self.artifacts
                        ),
                    });
                }
                if let Some(missing) = self.named.difference(&self.held).next() {
                    return Err(BackupError::MissingArtifact {
                        at: self.at(),
                        digest: missing.clone(),
                    });
                }
                let mut rest = String::new();
                if self.read_line(&mut rest)? > 0 {
                    return Err(BackupError::NotABackup {
                        at: self.at(),
                        reason: "lines follow the end line".into(),
                    });
                }
                self.ended = true;
                Ok(None)
            }
        }
    }

    /// Reads to the end, checking everything.
    pub fn verify(mut self) -> Result<Summary, BackupError> {
        while self.next_entry()?.is_some() {}
        Ok(Summary {
            header: self.header,
            keys: self.keys,
            artifacts: self.artifacts,
            sealed: self.sealed,
            bytes: self.bytes,
        })
    }

    fn at(&self) -> String {
        format!("{}:{}", self.source, self.number)
    }

    fn read_line(&mut self, buffer: &mut String) -> Result<usize, BackupError> {
        self.input
            .read_line(buffer)
            .map_err(|error| BackupError::Io {
                at: format!("{}:{}", self.source, self.number + 1),
                reason: error.to_string(),
            })
    }

    /// The next line, parsed (`None` at the end of the input); it enters the digest.
    fn line(&mut self) -> Result<Option<Line>, BackupError> {
        let mut text = String::new();
        if self.read_line(&mut text)? == 0 {
            return Ok(None);
        }
        self.number += 1;
        self.bytes += text.len() as u64;
        self.digest.update(text.as_bytes());
        if !text.ends_with('\n') {
            return Err(BackupError::Truncated { at: self.at() });
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| BackupError::NotABackup {
                at: self.at(),
                reason: error.to_string(),
            })
    }
}
