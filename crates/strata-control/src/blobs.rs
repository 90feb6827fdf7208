//! The content-addressed blob store for artifacts: `sha256:<hex>` -> bytes, one file each
//! under `<data>/blobs/sha256/`. An upload is written to a temporary file while its digest is
//! computed, and renamed into place only if the digest matches the one claimed, so a blob on
//! disk is always complete and correct.

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::ControlError;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// Checks a digest is `sha256:` and 64 lowercase hex digits; returns the hex.
pub fn parse_digest(digest: &str) -> Result<&str, ControlError> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        ControlError::bad_request(
            format!("digest `{digest}` is not a sha256 digest"),
            Some("write it as sha256:<64 hex digits>".to_string()),
        )
    })?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ControlError::bad_request(
            format!("digest `{digest}` must have 64 lowercase hex digits"),
            None,
        ));
    }
    Ok(hex)
}

impl BlobStore {
    pub fn open(dir: &Path) -> Result<Self, ControlError> {
        let dir = dir.join("sha256");
        std::fs::create_dir_all(&dir).map_err(|error| {
            ControlError::Internal(format!("cannot create blob dir {}: {error}", dir.display()))
        })?;
        Ok(Self { dir })
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf, ControlError> {
        Ok(self.dir.join(parse_digest(digest)?))
    }

    pub async fn exists(&self, digest: &str) -> Result<bool, ControlError> {
        Ok(tokio::fs::try_exists(self.path(digest)?)
            .await
            .unwrap_or(false))
    }

    /// Stores a stream of bytes as `digest`, verifying it. Returns the size.
    pub async fn put<S, E>(&self, digest: &str, body: S, limit: u64) -> Result<u64, ControlError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let final_path = self.path(digest)?;
        let (temp_path, size, actual) = self.receive_hashed(body, limit).await?;
        let io = |error: std::io::Error| ControlError::Internal(format!("writing blob: {error}"));
        let kept = if actual != digest {
            Err(ControlError::bad_request(
                format!("uploaded bytes have digest {actual}, not {digest}"),
                Some(
                    "the file changed during upload, or the digest is wrong; deploy again"
                        .to_string(),
                ),
            ))
        } else {
            tokio::fs::rename(&temp_path, &final_path).await.map_err(io)
        };
        if kept.is_err() {
            let _ = tokio::fs::remove_file(&temp_path).await;
        }
        kept.map(|()| size)
    }

    /// Receives a stream of bytes into a temporary file of the store (at most `limit`), for
    /// a blob whose digest is known only once it was checked and changed (a forensic archive,
    /// countersigned); [`BlobStore::keep`] puts it in place.
    pub async fn receive<S, E>(&self, body: S, limit: u64) -> Result<PathBuf, ControlError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        Ok(self.receive_hashed(body, limit).await?.0)
    }

    /// Streams `body` into a new temporary file of the store, at most `limit` bytes and synced:
    /// its path, size and digest. Nothing is left of a stream that fails.
    async fn receive_hashed<S, E>(
        &self,
        mut body: S,
        limit: u64,
    ) -> Result<(PathBuf, u64, String), ControlError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let temp_path = self.dir.join(format!(
            ".upload-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let io = |error: std::io::Error| ControlError::Internal(format!("writing blob: {error}"));
        let mut file = tokio::fs::File::create(&temp_path).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let result: Result<(), ControlError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|error| {
                    ControlError::bad_request(format!("upload interrupted: {error}"), None)
                })?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                if size > limit {
                    return Err(too_large(limit));
                }
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.sync_all().await.map_err(io)
        }
        .await;
        match result {
            Ok(()) => Ok((
                temp_path,
                size,
                format!("sha256:{}", hex::encode(hasher.finalize())),
            )),
            Err(error) => {
                let _ = tokio::fs::remove_file(&temp_path).await;
                Err(error)
            }
        }
    }

    /// Keeps the file `received` made as the blob of its bytes' digest: (digest, size).
    pub async fn keep(&self, received: &Path) -> Result<(String, u64), ControlError> {
        let io = |error: std::io::Error| ControlError::Internal(format!("keeping blob: {error}"));
        let path = received.to_path_buf();
        let (digest, size) =
            tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
                let mut file = std::fs::File::open(&path)?;
                let mut hasher = Sha256::new();
                let size = std::io::copy(&mut file, &mut hasher)?;
                Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
            })
            .await
            .map_err(|e| ControlError::Internal(format!("hashing blob: {e}")))?
            .map_err(io)?;
        tokio::fs::rename(received, self.path(&digest)?)
            .await
            .map_err(io)?;
        Ok((digest, size))
    }
}

/// The refusal of an artifact over `--max-artifact-size`.
pub fn too_large(limit: u64) -> ControlError {
    ControlError::TooLarge {
        message: format!("the artifact is larger than this server takes ({limit} bytes)"),
        hint: "make it smaller (a JEOS image: `strata image build --jeos`), or start the server with a larger --max-artifact-size".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    #[tokio::test]
    async fn put_verifies_the_digest_and_leaves_nothing_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let good = digest_of(b"hello");
        let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("hello"))]);
        assert_eq!(blobs.put(&good, body, u64::MAX).await.unwrap(), 5);
        assert!(blobs.exists(&good).await.unwrap());

        let wrong = digest_of(b"other");
        let body = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("hello"))]);
        let error = blobs
            .put(&wrong, body, u64::MAX)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("not sha256:"), "{error}");
        assert!(!blobs.exists(&wrong).await.unwrap());
        let leftovers = std::fs::read_dir(dir.path().join("sha256"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 1, "only the good blob remains");
    }

    #[tokio::test]
    async fn a_blob_over_the_limit_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let big = vec![7u8; 10_000];
        let digest = digest_of(&big);
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
            .chunks(1000)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let error = blobs
            .put(&digest, futures::stream::iter(chunks), 4096)
            .await
            .unwrap_err();
        assert!(matches!(error, ControlError::TooLarge { .. }), "{error}");
        assert!(!blobs.exists(&digest).await.unwrap());
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".upload")
            })
            .count();
        assert_eq!(leftovers, 0, "no partial upload is left");
    }

    #[test]
    fn digests_are_checked() {
        for bad in [
            "md5:abc",
            "sha256:xyz",
            "sha256:ABCDEF",
            "sha256:../../etc/passwd",
        ] {
            assert!(parse_digest(bad).is_err(), "{bad}");
        }
    }
}
