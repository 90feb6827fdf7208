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

/// A node's beat.
const MAGIC: &[u8; 4] = b"SHB1";
/// The server's answer to a beat it cannot take (another epoch, or a node declared down):
/// "register again", signed with the node's key and echoing its beat's number.
const REGISTER_AGAIN: &[u8; 4] = b"SHR1";
const TAG_LEN: usize = 16;
/// The longest datagram: a 63-byte name.
pub const MAX_LEN: usize = 4 + 8 + 8 + 1 + 63 + TAG_LEN;

/// What a datagram says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A node is alive (node to server).
    Beat,
    /// The node must register again (server to node).
    RegisterAgain,
}

/// A heartbeat (or its answer) as the datagram carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat<'a> {
    pub kind: Kind,
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

/// A node's beat key, ready to sign and check (the HMAC's keyed state is computed once, not
/// for every datagram).
#[derive(Clone)]
pub struct BeatKey {
    mac: Hmac<Sha256>,
}

impl BeatKey {
    pub fn new(key: &[u8; 32]) -> BeatKey {
        BeatKey {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key"),
        }
    }

    fn tag(&self, bytes: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        tag
    }
}

impl std::fmt::Debug for BeatKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeatKey(..)")
    }
}

/// The datagram of one beat of `node` (a DNS label, so at most 63 bytes).
pub fn encode(node: &str, epoch: u64, seq: u64, key: &[u8; 32]) -> Vec<u8> {
    encode_kind(Kind::Beat, node, epoch, seq, &BeatKey::new(key))
}

/// The datagram telling the sender of `beat` to register again, signed with its key.
pub fn register_again(beat: &Beat<'_>, key: &BeatKey) -> Vec<u8> {
    encode_kind(Kind::RegisterAgain, beat.node, beat.epoch, beat.seq, key)
}

/// The datagram of `kind` about `node`.
pub fn encode_kind(kind: Kind, node: &str, epoch: u64, seq: u64, key: &BeatKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_LEN);
    out.extend_from_slice(match kind {
        Kind::Beat => MAGIC,
        Kind::RegisterAgain => REGISTER_AGAIN,
    });
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    let name = &node.as_bytes()[..node.len().min(63)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    let tag = key.tag(&out);
    out.extend_from_slice(&tag);
    out
}

/// Reads a datagram (without checking its tag: [`Beat::signed_by`]).
pub fn parse(bytes: &[u8]) -> Result<Beat<'_>, BeatError> {
    let malformed = || BeatError::Malformed(bytes.len());
    if bytes.len() < 4 + 8 + 8 + 1 + TAG_LEN {
        return Err(malformed());
    }
    let kind = match &bytes[..4] {
        magic if magic == MAGIC => Kind::Beat,
        magic if magic == REGISTER_AGAIN => Kind::RegisterAgain,
        _ => return Err(malformed()),
    };
    let epoch = u64::from_be_bytes(bytes[4..12].try_into().map_err(|_| malformed())?);
    let seq = u64::from_be_bytes(bytes[12..20].try_into().map_err(|_| malformed())?);
    let len = bytes[20] as usize;
    if bytes.len() != 21 + len + TAG_LEN {
        return Err(malformed());
    }
    let node = std::str::from_utf8(&bytes[21..21 + len]).map_err(|_| malformed())?;
    Ok(Beat {
        kind,
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
        self.verified_by(&BeatKey::new(key))
    }

    /// Whether the beat was signed with `key` (compared in constant time).
    pub fn verified_by(&self, key: &BeatKey) -> bool {
        let mut mac = key.mac.clone();
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

    #[test]
    fn a_register_again_answer_echoes_the_beat_and_is_signed_with_its_key() {
        let key = BeatKey::new(&beat_key("sn.n1.abc"));
        let bytes = encode("n1", 3, 9, &beat_key("sn.n1.abc"));
        let beat = parse(&bytes).unwrap();
        assert_eq!(beat.kind, Kind::Beat);
        let answer = register_again(&beat, &key);
        let read = parse(&answer).unwrap();
        assert_eq!(
            (read.kind, read.node, read.epoch, read.seq),
            (Kind::RegisterAgain, "n1", 3, 9)
        );
        assert!(read.verified_by(&key));
        assert!(!read.verified_by(&BeatKey::new(&beat_key("sn.n1.other"))));
        // A beat is not its answer: the kinds differ in the signed bytes.
        assert_ne!(&answer[4..], &bytes[4..]);
    }
}
