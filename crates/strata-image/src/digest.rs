//! Content digests: what names a layer and an image in the store, and the reader and writer
//! that compute a sha256 while data streams through them.
//!
//! A [`LayerDigest`] is the sha256 of a layer's *uncompressed* tar (OCI calls it the layer's
//! `diff_id`); a [`ManifestDigest`] is the sha256 of an image manifest's canonical JSON. Both
//! print as `sha256:<64 hex digits>`.

use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;

/// `true` when `s` is 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses `sha256:<hex>` (or bare `<hex>`) into the 64 hex digits.
fn parse_sha256(input: &str) -> Result<String, ImageError> {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    if let Some((algorithm, _)) = input.split_once(':') {
        if algorithm != "sha256" {
            return Err(ImageError::InvalidDigest {
                input: input.to_string(),
                reason: format!("the algorithm is `{algorithm}`; Strata uses sha256 only"),
            });
        }
    }
    if !is_sha256_hex(hex) {
        return Err(ImageError::InvalidDigest {
            input: input.to_string(),
            reason: format!(
                "`{hex}` is not 64 lowercase hex digits (it has {} characters)",
                hex.chars().count()
            ),
        });
    }
    Ok(hex.to_string())
}

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses `sha256:<64 hex digits>` (the `sha256:` prefix may be left out).
            pub fn parse(input: &str) -> Result<Self, ImageError> {
                parse_sha256(input).map(Self)
            }

            /// The 64 lowercase hex digits, without the `sha256:` prefix.
            pub fn hex(&self) -> &str {
                &self.0
            }

            /// The digest of `bytes`.
            pub fn of(bytes: &[u8]) -> Self {
                Self(hex::encode(Sha256::digest(bytes)))
            }

            pub(crate) fn from_hex_unchecked(hex: String) -> Self {
                debug_assert!(is_sha256_hex(&hex));
                Self(hex)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "sha256:{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "sha256:{}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ImageError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_type! {
    /// The sha256 of a layer's uncompressed tar (its OCI `diff_id`): the name of the layer's
    /// blob (`blobs/sha256/<hex>`) and of its unpacked tree (`layers/<hex>/`).
    LayerDigest
}

digest_type! {
    /// The sha256 of an image manifest's canonical JSON (`manifests/<hex>.json`).
    ManifestDigest
}

/// A reader that hashes (sha256) and counts what is read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads what is left (so that the digest covers the whole stream) and returns the hex
    /// digest and the number of bytes.
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex::encode(self.hasher.finalize()), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes (sha256) and counts what is written through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the hex digest and the number of bytes written.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_prefix() {
        let hex = "a".repeat(64);
        let with = LayerDigest::parse(&format!("sha256:{hex}")).unwrap();
        let without = LayerDigest::parse(&hex).unwrap();
        assert_eq!(with, without);
        assert_eq!(with.to_string(), format!("sha256:{hex}"));
    }

    #[test]
    fn refuses_bad_digests() {
        for bad in [
            "",
            "sha256:",
            "sha512:aaaa",
            &"A".repeat(64),
            &"a".repeat(63),
            "sha256:zz",
        ] {
            let error = ManifestDigest::parse(bad).unwrap_err();
            assert!(error.to_string().contains("not a valid digest"), "{error}");
        }
    }

    #[test]
    fn hashing_reader_and_writer_agree() {
        let data = b"hello layers".repeat(1000);
        let mut reader = HashingReader::new(&data[..]);
        let mut buf = [0u8; 7];
        let _ = reader.read(&mut buf).unwrap();
        let (hex_r, count) = reader.finish().unwrap();
        assert_eq!(count, data.len() as u64);
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(&data).unwrap();
        let (out, hex_w, _) = writer.finish();
        assert_eq!(out, data);
        assert_eq!(hex_r, hex_w);
        assert_eq!(LayerDigest::of(&data).hex(), hex_r);
    }
}
