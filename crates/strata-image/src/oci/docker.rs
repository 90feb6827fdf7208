//! Reading `docker save` archives: `manifest.json` names each image's config and layers (the
//! classic `<id>/layer.tar`, or docker 25+'s OCI blobs) and its `RepoTags`.

use oci_spec::image::ImageConfiguration;
use serde::Deserialize;

use super::source::{parse_json, Source};
use super::{FoundImage, WantedLayer};
use crate::digest::is_sha256_hex;
use crate::error::ImageError;
use crate::reference::Tag;

/// One image of docker's manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The images of a `docker save` archive.
pub(super) fn docker_images(source: &mut Source) -> Result<Vec<FoundImage>, ImageError> {
    let bytes = source.read_json("manifest.json", None)?;
    let manifests: Vec<DockerManifest> = parse_json(source, "manifest.json", &bytes)?;
    let mut found = Vec::new();
    for entry in manifests {
        // `<hex>.json` (classic) or `blobs/sha256/<hex>` (docker 25+): the name is the digest.
        let file = entry.config.rsplit('/').next().unwrap_or_default();
        let hex = file.strip_suffix(".json").unwrap_or(file);
        let expected = is_sha256_hex(hex).then(|| format!("sha256:{hex}"));
        let config_bytes = source.read_json(&entry.config, expected.as_deref())?;
        let config: ImageConfiguration = parse_json(source, &entry.config, &config_bytes)?;
        let mut layers = Vec::new();
        for name in &entry.layers {
            let resolved = source
                .resolve(name)
                .ok_or_else(|| source.error(format!("the layer `{name}` is missing from it")))?;
            // docker 25+ names layers by the digest of the blob as stored.
            let blob_digest = resolved
                .strip_prefix("blobs/sha256/")
                .filter(|h| is_sha256_hex(h))
                .map(|h| format!("sha256:{h}"));
            layers.push(WantedLayer {
                name: resolved,
                blob_digest,
            });
        }
        let mut tags = Vec::new();
        let mut unusable = Vec::new();
        for name in entry.repo_tags.unwrap_or_default() {
            match Tag::parse(&name) {
                Ok(tag) if !tags.contains(&tag) => tags.push(tag),
                Ok(_) => {}
                Err(e) => unusable.push(format!("{name}: {e}")),
            }
        }
        found.push(FoundImage {
            config,
            config_name: entry.config.clone(),
            layers,
            tags,
            unusable_names: unusable,
        });
    }
    Ok(found)
}
