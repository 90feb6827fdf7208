//! Sealing a backup's secrets: each secret value is encrypted with XChaCha20-Poly1305 under a
//! key stretched from the operator's passphrase with Argon2id (a fresh salt per backup), the
//! value's key name bound in as associated data (a sealed value cannot be moved to another
//! key). The header carries the salt, the Argon2 costs and a sealed check value, so a wrong
//! passphrase is told at once, before anything is restored.
//!
//! The passphrase never leaves the CLI: it derives the key and sends only the key (over the
//! API's TLS) to the server taking the backup, which seals as it writes; the backup's bytes
//! never hold a secret in clear.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use serde::{Deserialize, Serialize};

/// The only key derivation function written.
pub const KDF: &str = "argon2id";

/// What was used at the passphrase, as the header records it (nothing secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SealParams {
    /// `argon2id`.
    pub kdf: String,
    /// The salt (base64, 16 bytes).
    pub salt: String,
    /// Argon2's memory cost in KiB.
    pub memory_kib: u32,
    /// Argon2's passes.
    pub iterations: u32,
    /// Argon2's lanes.
    pub lanes: u32,
    /// A known text sealed with the key (base64): opening it proves the passphrase.
    pub check: String,
}

impl std::fmt::Debug for SealParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealParams({} m={} t={} p={})",
            self.kdf, self.memory_kib, self.iterations, self.lanes
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the passphrase does not open this backup's secrets")]
    WrongPassphrase,
    #[error("the backup's seal is not readable: {0}")]
    Malformed(String),
    #[error("sealed value of {key} does not open: the file was altered")]
    Altered { key: String },
}

/// What the check value says.
const CHECK: &[u8] = b"strata backup seal v1";
const CHECK_NAME: &str = "";

/// Seals and opens values under one backup's key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    params: SealParams,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({:?})", self.params)
    }
}

impl Sealer {
    /// A sealer for a new backup: a fresh salt, Argon2id at its recommended costs.
    pub fn for_new_backup(passphrase: &[u8]) -> Result<(Self, [u8; 32]), SealError> {
        let salt: [u8; 16] = rand::random();
        let defaults = argon2::Params::default();
        let mut params = SealParams {
            kdf: KDF.to_string(),
            salt: BASE64.encode(salt),
            memory_kib: defaults.m_cost(),
            iterations: defaults.t_cost(),
            lanes: defaults.p_cost(),
            check: String::new(),
        };
        let key = derive(passphrase, &params)?;
        let cipher = XChaCha20Poly1305::new((&key).into());
        params.check = seal_with(&cipher, CHECK_NAME, CHECK);
        Ok((Self { cipher, params }, key))
    }

    /// The sealer of a backup with `params`, from the passphrase.
    pub fn open(passphrase: &[u8], params: &SealParams) -> Result<Self, SealError> {
        let key = derive(passphrase, params)?;
        Self::from_key(&key, params)
    }

    /// The sealer for `params` from the derived key itself (what a server taking a backup
    /// is given); the key must open the check value.
    pub fn from_key(key: &[u8], params: &SealParams) -> Result<Self, SealError> {
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| SealError::Malformed("the key is not 32 bytes".into()))?;
        let sealer = Self {
            cipher: XChaCha20Poly1305::new((&key).into()),
            params: params.clone(),
        };
        match sealer.open_value(CHECK_NAME, &params.check) {
            Ok(text) if text == CHECK => Ok(sealer),
            _ => Err(SealError::WrongPassphrase),
        }
    }

    pub fn params(&self) -> SealParams {
        self.params.clone()
    }

    /// `value` of `key`, sealed (base64 of nonce and ciphertext).
    pub fn seal(&self, key: &str, value: &[u8]) -> String {
        seal_with(&self.cipher, key, value)
    }

    /// The value of `key` from its sealed form.
    pub fn open_value(&self, key: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        crate::secrets::cipher::open(&self.cipher, key.as_bytes(), sealed).ok_or_else(|| {
            SealError::Altered {
                key: key.to_string(),
            }
        })
    }
}

fn seal_with(cipher: &XChaCha20Poly1305, key: &str, value: &[u8]) -> String {
    crate::secrets::cipher::seal(cipher, key.as_bytes(), value)
}

/// Argon2id of the passphrase with the header's salt and costs.
fn derive(passphrase: &[u8], params: &SealParams) -> Result<[u8; 32], SealError> {
    if params.kdf != KDF {
        return Err(SealError::Malformed(format!(
            "key derivation `{}` is not known (this version reads {KDF})",
            params.kdf
        )));
    }
    let salt = BASE64
        .decode(&params.salt)
        .map_err(|_| SealError::Malformed("the salt is not base64".into()))?;
    let costs = argon2::Params::new(params.memory_kib, params.iterations, params.lanes, Some(32))
        .map_err(|error| SealError::Malformed(format!("Argon2 costs: {error}")))?;
    // A hostile header must not make the CLI allocate without bound: 1 GiB at most.
    if params.memory_kib > 1 << 20 {
        return Err(SealError::Malformed(format!(
            "Argon2 memory cost {} KiB is over the 1 GiB this version accepts",
            params.memory_kib
        )));
    }
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, costs)
        .hash_password_into(passphrase, &salt, &mut key)
        .map_err(|error| SealError::Malformed(format!("Argon2: {error}")))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_the_passphrase_and_under_its_own_key() {
        let (sealer, key) = Sealer::for_new_backup(b"correct horse").unwrap();
        let sealed = sealer.seal("/pki/ca", b"-----BEGIN PRIVATE KEY-----");
        assert!(!sealed.contains("PRIVATE"));

        let reopened = Sealer::open(b"correct horse", &sealer.params()).unwrap();
        assert_eq!(
            reopened.open_value("/pki/ca", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        // The server's way in: the derived key, checked against the header.
        let by_key = Sealer::from_key(&key, &sealer.params()).unwrap();
        assert_eq!(
            by_key.open_value("/pki/ca", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );

        assert_eq!(
            Sealer::open(b"wrong horse", &sealer.params()).unwrap_err(),
            SealError::WrongPassphrase
        );
        assert_eq!(
            Sealer::from_key(&[7u8; 32], &sealer.params()).unwrap_err(),
            SealError::WrongPassphrase
        );
        // Moved to another key, or altered: refused.
        assert!(matches!(
            reopened.open_value("/cluster/join-token", &sealed),
            Err(SealError::Altered { .. })
        ));
        let mut altered = BASE64.decode(&sealed).unwrap();
        *altered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            reopened.open_value("/pki/ca", &BASE64.encode(altered)),
            Err(SealError::Altered { .. })
        ));
    }

    #[test]
    fn a_header_asking_for_unbounded_memory_is_refused() {
        let (sealer, _) = Sealer::for_new_backup(b"p").unwrap();
        let mut params = sealer.params();
        params.memory_kib = u32::MAX;
        assert!(matches!(
            Sealer::open(b"p", &params),
            Err(SealError::Malformed(_))
        ));
        params.memory_kib = sealer.params().memory_kib;
        params.kdf = "md5".into();
        assert!(matches!(
            Sealer::open(b"p", &params),
            Err(SealError::Malformed(_))
        ));
    }
}
