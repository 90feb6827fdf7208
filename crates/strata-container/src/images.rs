//! [`StoreImages`]: the node's image store as the container driver's [`ImageSource`].
//!
//! A container service's artifact is an image archive (an OCI image layout tar, or a
//! `docker save` archive, as `strata image save` or `docker save` write them). The node
//! downloads it once per digest; the first instance imports it into the node's
//! [`ImageStore`] (layers deduplicated by digest, unpacked once and shared by every instance)
//! and later ones reuse the import.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_image::{ImageStore, ImportOptions, ManifestDigest};

use crate::{ContainerError, IdShift, ImageSource, ResolvedImage};

pub struct StoreImages {
    store: ImageStore,
    /// Artifact file -> the image imported from it.
    imported: Mutex<HashMap<PathBuf, ManifestDigest>>,
}

impl StoreImages {
    pub fn new(store: ImageStore) -> Self {
        Self {
            store,
            imported: Mutex::new(HashMap::new()),
        }
    }

    fn import(&self, artifact: &Path) -> Result<ManifestDigest, ContainerError> {
        if let Some(digest) = self.imported.lock().expect("not poisoned").get(artifact) {
            return Ok(digest.clone());
        }
        let images = self
            .store
            // Untagged on the node: an image no instance has used for a while is collected.
            .import(
                artifact,
                &ImportOptions {
                    tags: Some(Vec::new()),
                },
            )
            .map_err(|e| ContainerError::Image(e.to_string()))?;
        let digest = match images.as_slice() {
            [one] => one.image.digest.clone(),
            [] => {
                return Err(ContainerError::Image(format!(
                    "{} holds no image",
                    artifact.display()
                )))
            }
            more => {
                return Err(ContainerError::Image(format!(
                    "{} holds {} images; a service runs one: save just that image (strata image save NAME:VERSION)",
                    artifact.display(),
                    more.len()
                )))
            }
        };
        self.imported
            .lock()
            .expect("not poisoned")
            .insert(artifact.to_path_buf(), digest.clone());
        Ok(digest)
    }
}

impl ImageSource for StoreImages {
    fn resolve(
        &self,
        artifact: &Path,
        shift: Option<IdShift>,
    ) -> Result<ResolvedImage, ContainerError> {
        let digest = self.import(artifact)?;
        let image = self
            .store
            .inspect(&digest)
            .map_err(|e| ContainerError::Image(e.to_string()))?;
        let lower_dirs = self
            .store
            .lower_dirs_shifted(&digest, shift)
            .map_err(|e| ContainerError::Image(e.to_string()))?;
        let config = image.manifest.config;
        let (uid, gid) = user_ids(config.user.as_deref())?;
        Ok(ResolvedImage {
            id: digest.to_string(),
            lower_dirs,
            entrypoint: config.entrypoint,
            cmd: config.cmd,
            env: config
                .env
                .iter()
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            working_dir: config.working_dir,
            uid,
            gid,
        })
    }

    fn collect(&self, keep: &[String]) -> Result<String, ContainerError> {
        let keep: Vec<ManifestDigest> = keep
            .iter()
            .filter_map(|id| ManifestDigest::parse(id).ok())
            .collect();
        self.imported
            .lock()
            .expect("not poisoned")
            .retain(|_, digest| keep.contains(digest));
        let report = self
            .store
            .gc(&keep)
            .map_err(|e| ContainerError::Image(e.to_string()))?;
        Ok(format!(
            "{} images, {} layers removed, {} bytes freed",
            report.manifests_removed.len(),
            report.layers_removed.len(),
            report.bytes_freed
        ))
    }
}

/// The image's `user` as numeric ids: `""`/`root` is 0:0, `UID` or `UID:GID` as written. A
/// user name would need the image's /etc/passwd, which a JEOS image does not have: refused
/// with how to fix it.
pub fn user_ids(user: Option<&str>) -> Result<(u32, u32), ContainerError> {
    let user = user.unwrap_or("").trim();
    if user.is_empty() || user == "root" || user == "root:root" {
        return Ok((0, 0));
    }
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    match (u.parse::<u32>(), g.parse::<u32>()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(ContainerError::Image(format!(
            "the image's user `{user}` is not numeric; set it as UID or UID:GID (e.g. 65534:65534) when building the image"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        type Ids = Option<(u32, u32)>;
        let table: [(Option<&str>, Ids); 7] = [
            (None, Some((0, 0))),
            (Some(""), Some((0, 0))),
            (Some("root"), Some((0, 0))),
            (Some("1000"), Some((1000, 1000))),
            (Some("1000:100"), Some((1000, 100))),
            (Some("nobody"), None),
            (Some("1000:staff"), None),
        ];
        for (user, expected) in table {
            assert_eq!(user_ids(user).ok(), expected, "{user:?}");
        }
    }
}
