//! Garbage collection: [`ImageStore::gc`] removes the manifests no tag names and no instance
//! uses, the layers no kept image has, and the leftovers of interrupted writes.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use super::files::{read_dir, remove_tree};
use super::{ImageStore, TMP_PREFIX};
use crate::digest::{is_sha256_hex, LayerDigest, ManifestDigest};
use crate::error::ImageError;

/// What [`ImageStore::gc`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Manifests no tag names and no instance uses.
    pub manifests_removed: Vec<ManifestDigest>,
    /// Layer blobs (tars) no kept image has.
    pub blobs_removed: Vec<LayerDigest>,
    /// Unpacked layer trees no kept image has.
    pub layers_removed: Vec<LayerDigest>,
    /// Leftovers of interrupted writes (`.tmp-*`).
    pub temporaries_removed: usize,
    /// The bytes all that took (hard-linked files counted once per tree).
    pub bytes_freed: u64,
    /// Digests passed as in use that are not in the store (nothing of theirs could be kept).
    pub in_use_missing: Vec<ManifestDigest>,
}

impl GcReport {
    /// How many things were removed in all.
    pub fn removed(&self) -> usize {
        self.manifests_removed.len()
            + self.blobs_removed.len()
            + self.layers_removed.len()
            + self.temporaries_removed
    }
}

impl ImageStore {
    /// Removes everything no image needs: manifests that no tag names and that are not in
    /// `in_use` (the digests of the images running instances use), the blobs and unpacked
    /// trees of layers that no kept image has, and leftovers of interrupted writes. Holds the
    /// store's lock exclusively, so it waits for imports, builds and unpacks in progress.
    pub fn gc(&self, in_use: &[ManifestDigest]) -> Result<GcReport, ImageError> {
        let _lock = self.lock(true)?;
        let mut report = GcReport::default();
        let tagged: BTreeSet<ManifestDigest> = self.tags()?.into_values().collect();
        let present: BTreeSet<ManifestDigest> = self.manifest_digests()?.into_iter().collect();
        let mut keep: BTreeSet<ManifestDigest> = BTreeSet::new();
        for digest in tagged.iter().chain(in_use) {
            if present.contains(digest) {
                keep.insert(digest.clone());
            } else if in_use.contains(digest) && !report.in_use_missing.contains(digest) {
                report.in_use_missing.push(digest.clone());
            }
        }
        let mut layers: HashSet<String> = HashSet::new();
        for digest in &keep {
            // A kept manifest that cannot be read would leave its layers unprotected: stop.
            let manifest = self.read_manifest(digest)?;
            layers.extend(manifest.layers.iter().map(|l| l.digest.hex().to_string()));
        }

        // Manifests.
        for entry in read_dir(&self.manifests_dir())? {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.remove_leftover(&name, &path, &mut report)? {
                continue;
            }
            let Some(hex) = name.strip_suffix(".json").filter(|h| is_sha256_hex(h)) else {
                continue;
            };
            let digest = ManifestDigest::from_hex_unchecked(hex.to_string());
            if !keep.contains(&digest) {
                report.bytes_freed += remove_tree(&path, !self.is_root)?;
                report.manifests_removed.push(digest);
            }
        }
        // Blobs and unpacked trees.
        for (dir, blobs) in [(self.blobs_dir(), true), (self.layers_dir(), false)] {
            for entry in read_dir(&dir)? {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if self.remove_leftover(&name, &path, &mut report)? {
                    continue;
                }
                // A layer's trees: `<hex>` and, shifted for user namespaces, `<hex>.ids-...`.
                let hex = match name.split_once('.') {
                    Some((hex, _)) if !blobs => hex.to_string(),
                    _ => name.clone(),
                };
                if !is_sha256_hex(&hex) || layers.contains(&hex) {
                    continue;
                }
                report.bytes_freed += remove_tree(&path, !self.is_root)?;
                let digest = LayerDigest::from_hex_unchecked(hex);
                if blobs {
                    report.blobs_removed.push(digest);
                } else if !report.layers_removed.contains(&digest) {
                    report.layers_removed.push(digest);
                }
            }
        }
        // Interrupted tag writes and empty tag directories.
        for name_entry in read_dir(&self.tags_dir())? {
            let name_dir = name_entry.path();
            if !name_dir.is_dir() {
                continue;
            }
            for entry in read_dir(&name_dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                self.remove_leftover(&name, &entry.path(), &mut report)?;
            }
            let _ = fs::remove_dir(&name_dir);
        }
        report.manifests_removed.sort();
        report.blobs_removed.sort();
        report.layers_removed.sort();
        Ok(report)
    }

    /// Removes `path`, named `name`, if it is the leftover of an interrupted write (`.tmp-*`),
    /// and counts it; returns whether it was one.
    fn remove_leftover(
        &self,
        name: &str,
        path: &Path,
        report: &mut GcReport,
    ) -> Result<bool, ImageError> {
        if !name.starts_with(TMP_PREFIX) {
            return Ok(false);
        }
        report.bytes_freed += remove_tree(path, !self.is_root)?;
        report.temporaries_removed += 1;
        Ok(true)
    }
}
