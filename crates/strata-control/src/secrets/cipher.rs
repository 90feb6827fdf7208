//! XChaCha20-Poly1305 (RustCrypto) as every sealed value of the control plane uses it: a
//! random 192-bit nonce per value (safe to draw at random for any number of values under one
//! key), the value's place bound in as associated data so a sealed value cannot be moved to
//! another place, and the result kept as base64 of nonce then ciphertext.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

/// `value` sealed under `cipher`, bound to `place`: base64 of nonce and ciphertext.
pub fn seal(cipher: &XChaCha20Poly1305, place: &[u8], value: &[u8]) -> String {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: value,
                aad: place,
            },
        )
        .expect("XChaCha20-Poly1305 seals any length the control plane holds");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ciphertext);
    BASE64.encode(out)
}

/// The value `sealed` holds, if it was sealed under `cipher` for `place` and not altered.
pub fn open(cipher: &XChaCha20Poly1305, place: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let bytes = BASE64.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: place,
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::KeyInit;

    #[test]
    fn a_sealed_value_opens_only_under_its_key_in_its_place_unaltered() {
        let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
        let other = XChaCha20Poly1305::new(&[8u8; 32].into());
        let sealed = seal(&cipher, b"/secrets/dev/web/a", b"hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            open(&cipher, b"/secrets/dev/web/a", &sealed).as_deref(),
            Some(&b"hunter2"[..])
        );
        assert_eq!(open(&other, b"/secrets/dev/web/a", &sealed), None);
        assert_eq!(open(&cipher, b"/secrets/dev/web/b", &sealed), None);
        let mut bytes = BASE64.decode(&sealed).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        assert_eq!(
            open(&cipher, b"/secrets/dev/web/a", &BASE64.encode(bytes)),
            None
        );
        assert_eq!(open(&cipher, b"x", "AAAA"), None);
        assert_eq!(open(&cipher, b"x", "not base64!"), None);
        // A fresh nonce each time: the same value never seals the same.
        assert_ne!(sealed, seal(&cipher, b"/secrets/dev/web/a", b"hunter2"));
    }
}
