//! Heartbeat datagrams: how a node tells the control plane it is alive, ten times a second,
//! without an HTTP request each time. One UDP datagram per beat, sent to the API's address
//! (the same port number, over UDP), authenticated with a key only the node and the servers
//! know (derived from the node's credential), and numbered so a captured datagram cannot be
//! replayed:
//!
//! ```text
//! "SHB1" | epoch u64 | seq u64 | name length u8 | name | HMAC-SHA256(key, all before)[..16]
//! ```
//!
//! (integers big-endian). `seq` only grows (the sender's clock in microseconds): the server
//! takes a beat only if its `seq` is past the last it took from that node.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"SHB1";
const TAG_LEN: usize = 16;
/// The longest datagram: a 63-byte name.
pub const MAX_LEN: usize = 4 + 8 + 8 + 1 + 63 + TAG_LEN;

/// A heartbeat as the datagram carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat<'a> {
    pub node: &'a str,
    pub epoch: u64,
    pub seq: u64,
    /// The bytes the tag covers, and the tag.
    signed: &'a [u8],
    tag: &'a [u8],
}

/// Why a datagram is not a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeatError {
    #[error("not a heartbeat datagram (length {0})")]
    Malformed(usize),
}

/// The key node `node_credential`'s beats are signed with: what the node and the servers
/// (which derive the credential) both know, and nothing that lets anyone act as the node.
pub fn beat_key(node_credential: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"strata node heartbeat\0");
    hash.update(node_credential.as_bytes());
    hash.finalize().into()
}

/// The datagram of one beat of `node` (a DNS label, so at most 63 bytes).
pub fn encode(node: &str, epoch: u64, seq: u64, key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    let name = &node.as_bytes()[..node.len().min(63)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
    out
}

/// Reads a datagram (without checking its tag: [`Beat::signed_by`]).
pub fn parse(bytes: &[u8]) -> Result<Beat<'_>, BeatError> {
    let malformed = || BeatError::Malformed(bytes.len());
    if bytes.len() < 4 + 8 + 8 + 1 + TAG_LEN || &bytes[..4] != MAGIC {
        return Err(malformed());
    }
    let epoch = u64::from_be_bytes(bytes[4..12].try_into().map_err(|_| malformed())?);
    let seq = u64::from_be_bytes(bytes[12..20].try_into().map_err(|_| malformed())?);
    let len = bytes[20] as usize;
    if bytes.len() != 21 + len + TAG_LEN {
        return Err(malformed());
    }
    let node = std::str::from_utf8(&bytes[21..21 + len]).map_err(|_| malformed())?;
    Ok(Beat {
        node,
        epoch,
        seq,
        signed: &bytes[..21 + len],
        tag: &bytes[21 + len..],
    })
}

impl Beat<'_> {
    /// Whether the beat was signed with `key` (compared in constant time).
    pub fn signed_by(&self, key: &[u8; 32]) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(self.signed);
        mac.verify_truncated_left(self.tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_reads_back_and_only_its_key_verifies_it() {
        let key = beat_key("sn.n1.abc");
        let bytes = encode("n1", 3, 1_700_000_000_000_000, &key);
        let beat = parse(&bytes).unwrap();
        assert_eq!(
            (beat.node, beat.epoch, beat.seq),
            ("n1", 3, 1_700_000_000_000_000)
        );
        assert!(beat.signed_by(&key));
        assert!(!beat.signed_by(&beat_key("sn.n1.other")));
    }

    #[test]
    fn a_changed_or_cut_datagram_is_refused() {
        let key = beat_key("sn.n1.abc");
        let bytes = encode("n1", 3, 9, &key);
        // Every single-bit change either fails to parse or fails the tag.
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut changed = bytes.clone();
                changed[byte] ^= 1 << bit;
                if let Ok(beat) = parse(&changed) {
                    assert!(!beat.signed_by(&key), "byte {byte} bit {bit}");
                }
            }
        }
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len]).is_err(), "cut to {len}");
        }
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}
