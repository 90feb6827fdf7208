//! The key-encryption keys (KEKs): kept outside the store, in a file only the server's user
//! reads (`--secrets-key-file`, made 0600 at a server's first start). The store holds the
//! secrets' data key only sealed under one of them, so a copy of the store (a stolen disk,
//! an etcd snapshot, a backup) opens no secret without this file.
//!
//! The file is JSON: every key this server knows, by id, and which one seals now. Keys are
//! only added (rotation adds a new active one; a server copies the ones it lacks from
//! another), so a backup sealed under an older key still opens; an operator may remove an
//! old key from the file once no backup needs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// A key-encryption key: 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Kek(pub [u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read the secrets key file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write the secrets key file {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("the secrets key file {path} is not readable as one: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("the secrets key file {path} may be read by other users (mode {mode:o})")]
    TooOpen { path: PathBuf, mode: u32 },
}

impl KeyringError {
    /// How to fix it.
    pub fn hint(&self) -> String {
        match self {
            KeyringError::TooOpen { path, .. } => {
                format!("run `chmod 600 {}`", path.display())
            }
            KeyringError::Malformed { .. } => "restore the file from where you keep its copy, or copy it from another server of the cluster".into(),
            _ => "check the path given to --secrets-key-file and its permissions".into(),
        }
    }
}

/// The file's content.
#[derive(Serialize, Deserialize)]
struct KeyringFile {
    /// The id of the key new seals use.
    active: String,
    /// Every key known, by id (base64 of 32 bytes).
    keys: BTreeMap<String, String>,
}

/// The keys in the file, and the file.
#[derive(Debug)]
pub struct Keyring {
    path: PathBuf,
    active: String,
    keys: BTreeMap<String, Kek>,
}

impl Keyring {
    /// The keyring at `path`, made with one fresh key (mode 0600) if there is no file.
    pub fn open_or_create(path: &Path) -> Result<Keyring, KeyringError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Keyring::parse(path, &text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .map_err(|error| KeyringError::Write {
                            path: path.to_path_buf(),
                            reason: error.to_string(),
                        })?;
                }
                let (id, key) = fresh_key();
                let keyring = Keyring {
                    path: path.to_path_buf(),
                    active: id.clone(),
                    keys: BTreeMap::from([(id, key)]),
                };
                keyring.save()?;
                Ok(keyring)
            }
            Err(error) => Err(KeyringError::Read {
                path: path.to_path_buf(),
                reason: error.to_string(),
            }),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Keyring, KeyringError> {
        use std::os::unix::fs::PermissionsExt;
        let malformed = |reason: String| KeyringError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let mode = std::fs::metadata(path)
            .map_err(|error| KeyringError::Read {
                path: path.to_path_buf(),
                reason: error.to_string(),
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyringError::TooOpen {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let file: KeyringFile =
            serde_json::from_str(text).map_err(|error| malformed(error.to_string()))?;
        let mut keys = BTreeMap::new();
        for (id, encoded) in file.keys {
            let bytes = BASE64
                .decode(encoded.trim())
                .map_err(|_| malformed(format!("key `{id}` is not base64")))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| malformed(format!("key `{id}` is not 32 bytes")))?;
            keys.insert(id, Kek(key));
        }
        if !keys.contains_key(&file.active) {
            return Err(malformed(format!(
                "the active key `{}` is not among its keys",
                file.active
            )));
        }
        Ok(Keyring {
            path: path.to_path_buf(),
            active: file.active,
            keys,
        })
    }

    /// Writes the file whole (to a new file, renamed over the old: never half written).
    fn save(&self) -> Result<(), KeyringError> {
        let file = KeyringFile {
            active: self.active.clone(),
            keys: self.export(),
        };
        let text = serde_json::to_string_pretty(&file).expect("a keyring serializes");
        let fresh = self.path.with_extension("new");
        let written = crate::credentials::write_private(&fresh, &text)
            .and_then(|()| std::fs::rename(&fresh, &self.path));
        written.map_err(|error| KeyringError::Write {
            path: self.path.clone(),
            reason: error.to_string(),
        })
    }

    /// The key new seals use, with its id.
    pub fn active(&self) -> (&str, &Kek) {
        (&self.active, &self.keys[&self.active])
    }

    /// The key of `id`, if this server has it.
    pub fn get(&self, id: &str) -> Option<&Kek> {
        self.keys.get(id)
    }

    /// Every key, by id (for another server of the cluster that lacks one).
    pub fn export(&self) -> BTreeMap<String, String> {
        self.keys
            .iter()
            .map(|(id, key)| (id.clone(), BASE64.encode(key.0)))
            .collect()
    }

    /// Adds a fresh key and makes it the active one (saved before it is returned).
    pub fn rotate(&mut self) -> Result<(String, Kek), KeyringError> {
        let (id, key) = fresh_key();
        let previous = std::mem::replace(&mut self.active, id.clone());
        self.keys.insert(id.clone(), key.clone());
        if let Err(error) = self.save() {
            self.keys.remove(&id);
            self.active = previous;
            return Err(error);
        }
        Ok((id, key))
    }

    /// Adds the keys (from [`Keyring::export`] of another server) this one lacks; the active
    /// one stays. Returns how many were added. Malformed entries are skipped.
    pub fn merge(&mut self, keys: &BTreeMap<String, String>) -> Result<usize, KeyringError> {
        let mut added = Vec::new();
        for (id, encoded) in keys {
            if self.keys.contains_key(id) {
                continue;
            }
            let Some(key) = BASE64
                .decode(encoded)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            else {
                continue;
            };
            self.keys.insert(id.clone(), Kek(key));
            added.push(id.clone());
        }
        if added.is_empty() {
            return Ok(0);
        }
        if let Err(error) = self.save() {
            for id in &added {
                self.keys.remove(id);
            }
            return Err(error);
        }
        Ok(added.len())
    }
}

/// A new key and its id (`kek-` and 8 random hex digits: names it, tells nothing of it).
fn fresh_key() -> (String, Kek) {
    let id = format!("kek-{:08x}", rand::random::<u32>());
    (id, Kek(rand::random()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_keyring_is_made_private_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let made = Keyring::open_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = Keyring::open_or_create(&path).unwrap();
        assert_eq!(read.active().0, made.active().0);
        assert_eq!(read.active().1, made.active().1);
        assert!(format!("{read:?}").contains("redacted"));
    }

    #[test]
    fn rotation_adds_an_active_key_and_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let mut keyring = Keyring::open_or_create(&path).unwrap();
        let old = keyring.active().0.to_string();
        let (new, _) = keyring.rotate().unwrap();
        assert_ne!(old, new);
        let read = Keyring::open_or_create(&path).unwrap();
        assert_eq!(read.active().0, new);
        assert!(read.get(&old).is_some());
    }

    #[test]
    fn a_server_merges_the_keys_it_lacks_and_keeps_its_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Keyring::open_or_create(&dir.path().join("a.key")).unwrap();
        let mut b = Keyring::open_or_create(&dir.path().join("b.key")).unwrap();
        let b_active = b.active().0.to_string();
        assert_eq!(b.merge(&a.export()).unwrap(), 1);
        assert_eq!(b.merge(&a.export()).unwrap(), 0, "idempotent");
        assert_eq!(b.active().0, b_active);
        assert_eq!(b.get(a.active().0), Some(a.active().1));
        let read = Keyring::open_or_create(&dir.path().join("b.key")).unwrap();
        assert!(read.get(a.active().0).is_some(), "saved");
        let junk = BTreeMap::from([("kek-bad".to_string(), "short".to_string())]);
        assert_eq!(a.merge(&junk).unwrap(), 0);
    }

    #[test]
    fn a_key_file_others_may_read_or_that_is_garbled_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        Keyring::open_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Keyring::open_or_create(&path).unwrap_err();
        assert!(
            matches!(error, KeyringError::TooOpen { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.hint().contains("chmod 600"));
        crate::credentials::write_private(&path, "{\"active\":\"kek-1\",\"keys\":{}}").unwrap();
        let error = Keyring::open_or_create(&path).unwrap_err();
        assert!(
            error.to_string().contains("`kek-1` is not among its keys"),
            "{error}"
        );
    }
}
