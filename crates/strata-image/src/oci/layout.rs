//! Reading OCI image layouts: `index.json` (and nested indexes, picking this machine's
//! platform), the image manifests it leads to, their configs and layers, and the tags its
//! annotations name.

use std::collections::HashMap;

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, ANNOTATION_REF_NAME,
};

use super::source::{parse_json, Source};
use super::{FoundImage, WantedLayer, ANNOTATION_CONTAINERD_NAME};
use crate::digest::is_sha256_hex;
use crate::error::ImageError;
use crate::manifest::Platform;
use crate::reference::Tag;

/// How deep image indexes may nest.
const MAX_INDEX_DEPTH: usize = 4;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The tags named by an index descriptor's annotations.
fn names_from_annotations(
    annotations: Option<&HashMap<String, String>>,
    tags: &mut Vec<Tag>,
    unusable: &mut Vec<String>,
) {
    let Some(annotations) = annotations else {
        return;
    };
    if let Some(name) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        match Tag::parse(name) {
            Ok(tag) => {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
                return;
            }
            Err(e) => unusable.push(format!("{name}: {e}")),
        }
    }
    if let Some(name) = annotations.get(ANNOTATION_REF_NAME) {
        match Tag::parse(name) {
            Ok(tag) => {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            Err(_) => unusable.push(format!(
                "{name}: the {ANNOTATION_REF_NAME} annotation is a version without a NAME; give \
                 the tag when importing"
            )),
        }
    }
}

/// The images of an OCI image layout.
pub(super) fn oci_images(source: &mut Source) -> Result<Vec<FoundImage>, ImageError> {
    let layout = source.read_json("oci-layout", None)?;
    let layout: serde_json::Value = parse_json(source, "oci-layout", &layout)?;
    let version = layout
        .get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !version.starts_with("1.") {
        return Err(source.error(format!(
            "its oci-layout says imageLayoutVersion `{version}`; Strata reads version 1.x"
        )));
    }
    let index_bytes = source.read_json("index.json", None)?;
    let index: ImageIndex = parse_json(source, "index.json", &index_bytes)?;
    let mut found: Vec<FoundImage> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let host = Platform::host();
    let mut other_platforms: Vec<String> = Vec::new();
    for descriptor in index.manifests() {
        // A layout may list the images of several platforms itself: take this machine's.
        if let Some(platform) = descriptor.platform() {
            let (os, arch) = (
                platform.os().to_string(),
                platform.architecture().to_string(),
            );
            if os != host.os || arch != host.architecture {
                other_platforms.push(format!("{os}/{arch}"));
                continue;
            }
        }
        let mut tags = Vec::new();
        let mut unusable = Vec::new();
        names_from_annotations(descriptor.annotations().as_ref(), &mut tags, &mut unusable);
        let mut manifests = Vec::new();
        collect_manifests(source, descriptor, 0, true, &mut manifests)?;
        for (digest, manifest) in manifests {
            if let Some(&at) = seen.get(&digest) {
                for tag in &tags {
                    if !found[at].tags.contains(tag) {
                        found[at].tags.push(tag.clone());
                    }
                }
                found[at].unusable_names.extend(unusable.iter().cloned());
                continue;
            }
            let image = found_from_oci_manifest(source, &manifest, tags.clone(), unusable.clone())?;
            seen.insert(digest, found.len());
            found.push(image);
        }
    }
    if found.is_empty() && !other_platforms.is_empty() {
        return Err(source.error(format!(
            "it has no image for this machine ({}/{}); it has {}",
            host.os,
            host.architecture,
            other_platforms.join(", ")
        )));
    }
    Ok(found)
}

fn blob_name(source: &Source, digest: &oci_spec::image::Digest) -> Result<String, ImageError> {
    let text = digest.to_string();
    match text.strip_prefix("sha256:") {
        Some(hex) if is_sha256_hex(hex) => Ok(format!("blobs/sha256/{hex}")),
        _ => Err(source.error(format!(
            "the digest `{text}` is not sha256; Strata reads sha256 blobs only"
        ))),
    }
}

/// The image manifests a descriptor leads to (through indexes, picking this machine's
/// platform), with the digests they are known by.
fn collect_manifests(
    source: &Source,
    descriptor: &Descriptor,
    depth: usize,
    top: bool,
    out: &mut Vec<(String, ImageManifest)>,
) -> Result<(), ImageError> {
    if depth > MAX_INDEX_DEPTH {
        return Err(source.error(format!(
            "its image indexes nest more than {MAX_INDEX_DEPTH} deep"
        )));
    }
    let name = blob_name(source, descriptor.digest())?;
    let digest = descriptor.digest().to_string();
    let media = descriptor.media_type().to_string();
    let is_index =
        matches!(descriptor.media_type(), MediaType::ImageIndex) || media == DOCKER_MANIFEST_LIST;
    let is_manifest =
        matches!(descriptor.media_type(), MediaType::ImageManifest) || media == DOCKER_MANIFEST;
    if is_manifest {
        let bytes = source.read_json(&name, Some(&digest))?;
        let manifest: ImageManifest = parse_json(source, &name, &bytes)?;
        out.push((digest, manifest));
        return Ok(());
    }
    if !is_index {
        if top {
            return Err(source.error(format!(
                "index.json points at `{media}`, which is neither an image manifest nor an index"
            )));
        }
        return Ok(());
    }
    let bytes = source.read_json(&name, Some(&digest))?;
    let index: ImageIndex = parse_json(source, &name, &bytes)?;
    let host = Platform::host();
    let mut platforms = Vec::new();
    let mut matched = false;
    for child in index.manifests() {
        match child.platform() {
            Some(platform) => {
                let os = platform.os().to_string();
                let arch = platform.architecture().to_string();
                platforms.push(format!("{os}/{arch}"));
                if os == host.os && arch == host.architecture && !matched {
                    matched = true;
                    collect_manifests(source, child, depth + 1, false, out)?;
                }
            }
            None => {
                matched = true;
                collect_manifests(source, child, depth + 1, false, out)?;
            }
        }
    }
    if !matched {
        return Err(source.error(format!(
            "the index {name} has no image for this machine ({}/{}); it has {}",
            host.os,
            host.architecture,
            platforms.join(", ")
        )));
    }
    Ok(())
}

fn found_from_oci_manifest(
    source: &Source,
    manifest: &ImageManifest,
    tags: Vec<Tag>,
    unusable_names: Vec<String>,
) -> Result<FoundImage, ImageError> {
    let config_name = blob_name(source, manifest.config().digest())?;
    let config_bytes = source.read_json(&config_name, Some(manifest.config().digest().as_ref()))?;
    let config: ImageConfiguration = parse_json(source, &config_name, &config_bytes)?;
    let mut layers = Vec::new();
    for layer in manifest.layers() {
        let media = layer.media_type().to_string();
        match layer.media_type() {
            MediaType::ImageLayer
            | MediaType::ImageLayerGzip
            | MediaType::ImageLayerNonDistributable
            | MediaType::ImageLayerNonDistributableGzip => {}
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                return Err(ImageError::UnsupportedCompression {
                    what: format!(
                        "the layer {} of {}",
                        layer.digest(),
                        source.path().display()
                    ),
                    detail: format!("zstd-compressed (media type {media})"),
                })
            }
            _ if media == DOCKER_LAYER_GZIP || media == DOCKER_LAYER => {}
            _ => {
                return Err(source.error(format!(
                    "the layer {} has the media type `{media}`, which is not a layer Strata \
                     reads (a tar, plain or gzip)",
                    layer.digest()
                )))
            }
        }
        let name = blob_name(source, layer.digest())?;
        let resolved = source
            .resolve(&name)
            .ok_or_else(|| source.error(format!("the layer {name} is missing from it")))?;
        layers.push(WantedLayer {
            name: resolved,
            blob_digest: Some(layer.digest().to_string()),
        });
    }
    Ok(FoundImage {
        config,
        config_name,
        layers,
        tags,
        unusable_names,
    })
}
