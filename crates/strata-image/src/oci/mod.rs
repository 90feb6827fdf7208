//! Images as files that travel: export to an OCI image layout (as one tar), and import of OCI
//! image layouts (a directory or a tar) and `docker save` archives (the classic format, with
//! layers at `<id>/layer.tar`, and docker 25+'s, with the layers as OCI blobs).
//!
//! Imported layers may be plain or gzip-compressed tars; they are stored uncompressed, so a
//! layer's digest is its OCI `diff_id`. Every blob is checked against its digest (the
//! descriptor's for OCI, the file name's for docker's config), and every layer against the
//! image config's `rootfs.diff_ids`: a mismatch is refused, naming the layer. An export of an
//! imported image writes the layers uncompressed, so exporting and importing again gives the
//! same layer digests (and the same image digest).

mod docker;
mod export;
mod layout;
mod source;

use std::path::Path;

use oci_spec::image::ImageConfiguration;

use crate::error::ImageError;
use crate::manifest::{Image, ImageConfigSpec, Platform};
use crate::reference::Tag;
use crate::store::ImageStore;
use docker::docker_images;
use layout::oci_images;
use source::Source;

/// containerd's (and docker 25+'s) annotation for an image's full name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// How [`ImageStore::import`] tags what it imports.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// When set, these tags replace the archive's own (the archive must hold one image).
    pub tags: Option<Vec<Tag>>,
}

/// One image [`ImageStore::import`] stored.
#[derive(Clone, Debug)]
pub struct ImportedImage {
    pub image: Image,
    /// Names found in the archive that could not be used as tags, and why (e.g. a bare
    /// `latest` in `org.opencontainers.image.ref.name`, which has no NAME).
    pub unusable_names: Vec<String>,
}

/// The image config Strata keeps from an OCI image config.
pub(crate) fn config_spec_from_oci(config: &ImageConfiguration) -> ImageConfigSpec {
    let Some(c) = config.config() else {
        return ImageConfigSpec::default();
    };
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    ImageConfigSpec {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: non_empty(c.working_dir()),
        user: non_empty(c.user()),
        exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
    }
    .normalized()
}

impl ImageStore {
    /// Imports the images of `path`: an OCI image layout (a directory, or a tar of one), or a
    /// `docker save` archive (a tar, or a directory it was extracted to); a tar may be
    /// gzip-compressed. Tags come from the archive (`io.containerd.image.name`,
    /// `org.opencontainers.image.ref.name` when it is a whole `NAME:VERSION`, docker's
    /// `RepoTags`), or from `options.tags`. From an index with several platforms, the one of
    /// this machine is imported.
    pub fn import(
        &self,
        path: &Path,
        options: &ImportOptions,
    ) -> Result<Vec<ImportedImage>, ImageError> {
        let _lock = self.lock(false)?;
        let mut source = Source::open(path, self)?;
        let found = if source.exists("manifest.json") {
            docker_images(&mut source)?
        } else if source.exists("oci-layout") && source.exists("index.json") {
            oci_images(&mut source)?
        } else {
            return Err(source.error(format!(
                "it is neither a `docker save` archive (no manifest.json) nor an OCI image \
                 layout (no oci-layout and index.json){}",
                source.describe_contents()
            )));
        };
        if found.is_empty() {
            return Err(source.error("it holds no image".into()));
        }
        if options.tags.is_some() && found.len() != 1 {
            return Err(ImageError::TagOverrideAmbiguous { count: found.len() });
        }

        // Store every layer once.
        let mut wanted: Vec<WantedLayer> = Vec::new();
        for image in &found {
            for layer in &image.layers {
                if !wanted.iter().any(|w| w.name == layer.name) {
                    wanted.push(layer.clone());
                }
            }
        }
        let stored = source.add_layers(self, &wanted)?;

        let mut imported: Vec<ImportedImage> = Vec::new();
        for image in found {
            let diff_ids = image.config.rootfs().diff_ids();
            if !diff_ids.is_empty() && diff_ids.len() != image.layers.len() {
                return Err(source.error(format!(
                    "the image config {} lists {} layers (rootfs.diff_ids), the manifest {}",
                    image.config_name,
                    diff_ids.len(),
                    image.layers.len()
                )));
            }
            let mut layers = Vec::new();
            for (index, layer) in image.layers.iter().enumerate() {
                let Some(digest) = stored.get(&layer.name) else {
                    return Err(source.error(format!("the layer {} was not found", layer.name)));
                };
                if let Some(expected) = diff_ids.get(index) {
                    if expected != &digest.to_string() {
                        return Err(ImageError::DiffIdMismatch {
                            archive: source.path().to_path_buf(),
                            layer: layer.name.clone(),
                            index,
                            expected: expected.clone(),
                            actual: digest.to_string(),
                        });
                    }
                }
                layers.push(digest.clone());
            }
            let platform = Platform {
                os: image.config.os().to_string(),
                architecture: image.config.architecture().to_string(),
                variant: image.config.variant().clone(),
            };
            let manifest = self.manifest_for(
                &layers,
                &config_spec_from_oci(&image.config),
                platform,
                image.config.created().clone(),
            )?;
            let tags = options.tags.clone().unwrap_or(image.tags);
            let stored_image = self.put_manifest_unlocked(&manifest, &tags)?;
            // The same image under several names in one archive: one entry.
            if let Some(existing) = imported
                .iter_mut()
                .find(|i| i.image.digest == stored_image.digest)
            {
                existing.image = stored_image;
                existing.unusable_names.extend(image.unusable_names);
                continue;
            }
            imported.push(ImportedImage {
                image: stored_image,
                unusable_names: image.unusable_names,
            });
        }
        Ok(imported)
    }
}

/// A layer an import needs: where it is in the archive, and what its descriptor says.
#[derive(Clone, Debug)]
struct WantedLayer {
    /// The path in the archive (symbolic links resolved).
    name: String,
    /// The descriptor's digest of the blob as stored (compressed or not), when known.
    blob_digest: Option<String>,
}

/// An image found in an archive, before its layers are stored.
struct FoundImage {
    config: ImageConfiguration,
    config_name: String,
    layers: Vec<WantedLayer>,
    tags: Vec<Tag>,
    unusable_names: Vec<String>,
}
