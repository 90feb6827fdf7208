//! Services' secrets, sealed at rest and opened only for the node that runs an instance.
//!
//! Envelope encryption, as Kubernetes' KMS provider and Vault's barrier do it:
//!
//! - Each secret value is sealed with XChaCha20-Poly1305 ([`cipher`]) under the cluster's
//!   **data key**, its store key and version bound in as associated data (a sealed value
//!   moved to another secret or version does not open).
//! - The data key is kept in the store (`/cluster/secrets-key`) only sealed under a
//!   **key-encryption key** that lives outside the store, in each server's key file
//!   ([`keyring`]). A copy of the store opens nothing without that file.
//! - `strata secret rotate-key` seals the data key under a fresh key-encryption key: one
//!   small write, no value re-sealed, nothing restarted. Servers that lack a key the data
//!   key is sealed under copy it from another server over their authenticated API
//!   ([`follow_keys`]).
//!
//! No route returns a value: values leave the control plane only in a node's own
//! assignments, for instances the node must run ([`ControlPlane::deliver_secrets`]).

pub mod cipher;
pub mod keyring;
mod plane;

use std::sync::{Arc, Mutex, RwLock};

use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use serde::{Deserialize, Serialize};
use strata_core::Millis;

pub use keyring::{Kek, Keyring, KeyringError};
pub use plane::follow_keys;

/// The data key as the store holds it (`/cluster/secrets-key`): sealed under a
/// key-encryption key, named by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedDataKey {
    /// The id of the key-encryption key it is sealed under.
    pub kek: String,
    /// Base64 of nonce and ciphertext.
    pub sealed: String,
    pub sealed_at: Millis,
    /// The server that sealed it (the one to copy the key-encryption key from).
    pub sealed_by: String,
}

/// What binds a sealed data key to the key-encryption key it claims.
fn data_key_place(kek: &str) -> Vec<u8> {
    format!("{}#{kek}", strata_core::keys::SECRETS_KEY).into_bytes()
}

/// What binds a sealed value to its secret and version.
fn value_place(key: &str, version: u64) -> Vec<u8> {
    format!("{key}#{version}").into_bytes()
}

/// The data key, opened.
#[derive(Clone)]
struct DataKey {
    bytes: [u8; 32],
    cipher: XChaCha20Poly1305,
}

impl DataKey {
    fn new(bytes: [u8; 32]) -> DataKey {
        DataKey {
            cipher: XChaCha20Poly1305::new(&bytes.into()),
            bytes,
        }
    }

    /// The data key sealed under `kek` (id `kek_id`), by `server`.
    fn seal(&self, kek_id: &str, kek: &Kek, server: &str, now: Millis) -> SealedDataKey {
        let wrapper = XChaCha20Poly1305::new(&kek.0.into());
        SealedDataKey {
            kek: kek_id.to_string(),
            sealed: cipher::seal(&wrapper, &data_key_place(kek_id), &self.bytes),
            sealed_at: now,
            sealed_by: server.to_string(),
        }
    }

    /// The data key `sealed` holds, if `kek` opens it.
    fn open(sealed: &SealedDataKey, kek: &Kek) -> Option<DataKey> {
        let wrapper = XChaCha20Poly1305::new(&kek.0.into());
        let bytes = cipher::open(&wrapper, &data_key_place(&sealed.kek), &sealed.sealed)?;
        Some(DataKey::new(bytes.try_into().ok()?))
    }
}

/// This server's keys: its key file, and the data key once opened (it never changes, so it
/// is kept for the process's life).
pub struct SecretsKeeper {
    keyring: Mutex<Keyring>,
    data_key: RwLock<Option<Arc<DataKey>>>,
}

impl std::fmt::Debug for SecretsKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKeeper(<redacted>)")
    }
}

impl SecretsKeeper {
    /// Opens (or makes, 0600) the key file at `path`.
    pub fn open(path: &std::path::Path) -> Result<SecretsKeeper, KeyringError> {
        Ok(SecretsKeeper {
            keyring: Mutex::new(Keyring::open_or_create(path)?),
            data_key: RwLock::new(None),
        })
    }

    fn data_key(&self) -> Option<Arc<DataKey>> {
        self.data_key.read().expect("not poisoned").clone()
    }

    fn keep(&self, key: DataKey) -> Arc<DataKey> {
        let key = Arc::new(key);
        *self.data_key.write().expect("not poisoned") = Some(key.clone());
        key
    }

    fn keyring(&self) -> std::sync::MutexGuard<'_, Keyring> {
        self.keyring.lock().expect("not poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_key_opens_only_under_the_key_it_names() {
        let data = DataKey::new([3; 32]);
        let kek = Kek([9; 32]);
        let sealed = data.seal("kek-1", &kek, "server-a", 1);
        assert_eq!(DataKey::open(&sealed, &kek).map(|k| k.bytes), Some([3; 32]));
        assert!(DataKey::open(&sealed, &Kek([8; 32])).is_none());
        // Claiming another key id (to trick a server into using another key) fails too.
        let relabelled = SealedDataKey {
            kek: "kek-2".into(),
            ..sealed.clone()
        };
        assert!(DataKey::open(&relabelled, &kek).is_none());
        assert!(!format!("{sealed:?}").contains("[3, 3"));
    }
}
