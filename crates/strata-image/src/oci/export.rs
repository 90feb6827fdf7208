//! Export: an image as an OCI image layout in one tar (`oci-layout`, `index.json` naming its
//! tags, and the manifest, config and layers as blobs, uncompressed), written the same way
//! every time.

use std::io::{self, BufReader, Write};
use std::path::PathBuf;

use oci_spec::image::{
    Arch, Config, Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, Os, RootFs, ANNOTATION_REF_NAME,
};

use super::ANNOTATION_CONTAINERD_NAME;
use crate::digest::LayerDigest;
use crate::error::{io_err, ImageError};
use crate::manifest::{canonical_json, Image, Manifest};
use crate::store::{ImageStore, ToReference};

fn oci_config(manifest: &Manifest) -> ImageConfiguration {
    let spec = &manifest.config;
    let mut config = Config::default();
    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    config.set_entrypoint(some_vec(&spec.entrypoint));
    config.set_cmd(some_vec(&spec.cmd));
    config.set_env(some_vec(&spec.env));
    config.set_working_dir(spec.working_dir.clone());
    config.set_user(spec.user.clone());
    config.set_exposed_ports(some_vec(&spec.exposed_ports));
    config.set_labels((!spec.labels.is_empty()).then(|| spec.labels.clone().into_iter().collect()));
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(
        manifest
            .layers
            .iter()
            .map(|l| l.digest.to_string())
            .collect(),
    );
    let mut image = ImageConfiguration::default();
    image.set_architecture(Arch::from(manifest.platform.architecture.as_str()));
    image.set_os(Os::from(manifest.platform.os.as_str()));
    image.set_variant(manifest.platform.variant.clone());
    image.set_created(manifest.created.clone());
    image.set_config(Some(config));
    image.set_rootfs(rootfs);
    image
}

fn descriptor(media_type: MediaType, bytes: &[u8]) -> Result<Descriptor, ImageError> {
    Ok(Descriptor::new(
        media_type,
        bytes.len() as u64,
        oci_digest(&LayerDigest::of(bytes).to_string())?,
    ))
}

fn oci_digest(digest: &str) -> Result<oci_spec::image::Digest, ImageError> {
    digest
        .parse()
        .map_err(|e: oci_spec::OciSpecError| export_error(&e))
}

impl ImageStore {
    /// Writes the image as an OCI image layout in a tar to `writer`: `oci-layout`,
    /// `index.json` (with the image's tags as `io.containerd.image.name` and the version as
    /// `org.opencontainers.image.ref.name`), and `blobs/sha256/...`: the OCI manifest, the
    /// image config and the layers, uncompressed. [`ImageStore::import`] on another node gives
    /// back the same image (same layer digests, same image digest).
    pub fn export_oci_layout(
        &self,
        image: &(impl ToReference + ?Sized),
        writer: impl Write,
    ) -> Result<Image, ImageError> {
        let _lock = self.lock(false)?;
        let digest = self.resolve(&image.to_reference()?)?;
        let image = self.image(&digest)?;
        let manifest = &image.manifest;

        let config_json = canonical_json(&oci_config(manifest));
        let config_descriptor = descriptor(MediaType::ImageConfig, &config_json)?;
        let mut layers: Vec<Descriptor> = Vec::new();
        for layer in &manifest.layers {
            layers.push(Descriptor::new(
                MediaType::ImageLayer,
                layer.size,
                oci_digest(&layer.digest.to_string())?,
            ));
        }
        let oci_manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_descriptor)
            .layers(layers)
            .build()
            .map_err(|e| export_error(&e))?;
        let manifest_json = canonical_json(&oci_manifest);
        let mut index_entries = Vec::new();
        if image.tags.is_empty() {
            index_entries.push(descriptor(MediaType::ImageManifest, &manifest_json)?);
        }
        for tag in &image.tags {
            let mut d = descriptor(MediaType::ImageManifest, &manifest_json)?;
            d.set_annotations(Some(
                [
                    (ANNOTATION_CONTAINERD_NAME.to_string(), tag.to_string()),
                    (ANNOTATION_REF_NAME.to_string(), tag.version().to_string()),
                ]
                .into_iter()
                .collect(),
            ));
            index_entries.push(d);
        }
        let index: ImageIndex = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(index_entries)
            .build()
            .map_err(|e| export_error(&e))?;
        let index_json = canonical_json(&index);

        let mut tar = tar::Builder::new(writer);
        let fail = |e: io::Error| {
            ImageError::io(
                "write the export of",
                PathBuf::from(image.digest.to_string()),
                e,
            )
        };
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(fail)?;
        append_dir(&mut tar, "blobs/").map_err(fail)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(fail)?;
        let mut written = std::collections::HashSet::new();
        for layer in &manifest.layers {
            if !written.insert(layer.digest.clone()) {
                continue;
            }
            let file = self.open_blob(&layer.digest)?;
            let size = file
                .metadata()
                .map_err(io_err("inspect", &self.blob_path(&layer.digest)))?
                .len();
            let mut header = file_header(size);
            tar.append_data(
                &mut header,
                format!("blobs/sha256/{}", layer.digest.hex()),
                BufReader::new(file),
            )
            .map_err(fail)?;
        }
        for json in [&config_json, &manifest_json] {
            let name = format!("blobs/sha256/{}", LayerDigest::of(json).hex());
            append_bytes(&mut tar, &name, json).map_err(fail)?;
        }
        append_bytes(&mut tar, "index.json", &index_json).map_err(fail)?;
        tar.into_inner().and_then(|mut w| w.flush()).map_err(fail)?;
        Ok(image)
    }
}

fn export_error(e: &oci_spec::OciSpecError) -> ImageError {
    ImageError::Build {
        path: PathBuf::from("(OCI export)"),
        reason: e.to_string(),
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = file_header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_mtime(0);
    tar.append_data(&mut header, name, io::empty())
}
