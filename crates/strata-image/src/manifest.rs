//! What an image is in Strata's store: its manifest (the ordered layers, the run
//! configuration, the platform, its size and when it was made), and the canonical JSON whose
//! sha256 is the image's digest.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::{LayerDigest, ManifestDigest};
use crate::error::ImageError;
use crate::reference::Tag;

/// The version of [`Manifest`]'s JSON format.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// How an image runs by default, as in OCI's image config (`config` of
/// `application/vnd.oci.image.config.v1+json`). Empty fields mean "not set".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfigSpec {
    /// The program and its first arguments, e.g. `["/bin/api"]`.
    pub entrypoint: Vec<String>,
    /// Default arguments (after `entrypoint`), or the command when there is no entrypoint.
    pub cmd: Vec<String>,
    /// `NAME=VALUE` pairs.
    pub env: Vec<String>,
    /// The working directory of the program (absolute).
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`.
    pub user: Option<String>,
    /// Ports the program listens on, e.g. `8080/tcp` (sorted, no duplicates).
    pub exposed_ports: Vec<String>,
    /// Free-form metadata.
    pub labels: BTreeMap<String, String>,
}

impl ImageConfigSpec {
    /// `self` stacked on `base`: every field set in `self` wins; `env` is merged by variable
    /// name (`self`'s value wins), `labels` by key, `exposed_ports` is the union. When `self`
    /// sets an entrypoint, the base's `cmd` is dropped (it was arguments for another program).
    pub fn over(&self, base: &ImageConfigSpec) -> ImageConfigSpec {
        let mut env: Vec<String> = Vec::new();
        let key = |pair: &String| pair.split('=').next().unwrap_or_default().to_string();
        for pair in base.env.iter().chain(&self.env) {
            let name = key(pair);
            env.retain(|existing| key(existing) != name);
            env.push(pair.clone());
        }
        let mut labels = base.labels.clone();
        labels.extend(self.labels.clone());
        let mut ports: Vec<String> = base
            .exposed_ports
            .iter()
            .chain(&self.exposed_ports)
            .cloned()
            .collect();
        ports.sort();
        ports.dedup();
        let cmd = if !self.cmd.is_empty() {
            self.cmd.clone()
        } else if !self.entrypoint.is_empty() {
            Vec::new()
        } else {
            base.cmd.clone()
        };
        ImageConfigSpec {
            entrypoint: if self.entrypoint.is_empty() {
                base.entrypoint.clone()
            } else {
                self.entrypoint.clone()
            },
            cmd,
            env,
            working_dir: self
                .working_dir
                .clone()
                .or_else(|| base.working_dir.clone()),
            user: self.user.clone().or_else(|| base.user.clone()),
            exposed_ports: ports,
            labels,
        }
    }

    /// Sorts and deduplicates the exposed ports, so that equal configs give equal digests.
    pub(crate) fn normalized(mut self) -> ImageConfigSpec {
        self.exposed_ports.sort();
        self.exposed_ports.dedup();
        self
    }
}

/// The platform an image's programs run on, in OCI's (Go's) words: `linux`, `amd64`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "powerpc64" => {
                if cfg!(target_endian = "little") {
                    "ppc64le"
                } else {
                    "ppc64"
                }
            }
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }
}

/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The sha256 of the uncompressed tar.
    pub digest: LayerDigest,
    /// The size of the uncompressed tar in bytes.
    pub size: u64,
}

/// An image: what `manifests/<hex>.json` holds. Its digest is the sha256 of
/// [`Manifest::canonical_json`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// How the image runs.
    pub config: ImageConfigSpec,
    pub platform: Platform,
    /// The sum of the layers' sizes (uncompressed tars), in bytes.
    pub size: u64,
    /// When the image was made (RFC 3339), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

impl Manifest {
    /// The JSON the digest is computed over: keys sorted, no whitespace.
    pub fn canonical_json(&self) -> Vec<u8> {
        canonical_json(self)
    }

    /// The manifest's digest.
    pub fn digest(&self) -> ManifestDigest {
        ManifestDigest::of(&self.canonical_json())
    }

    /// The layer digests, bottom first.
    pub fn layer_digests(&self) -> Vec<LayerDigest> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }

    pub(crate) fn from_json(bytes: &[u8], path: &std::path::Path) -> Result<Manifest, ImageError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ImageError::CorruptManifest {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        if manifest.schema_version != MANIFEST_SCHEMA_VERSION {
            return Err(ImageError::CorruptManifest {
                path: path.to_path_buf(),
                detail: format!(
                    "its schema_version is {}, this Strata reads {MANIFEST_SCHEMA_VERSION}",
                    manifest.schema_version
                ),
            });
        }
        Ok(manifest)
    }
}

/// An image in the store: its digest, manifest and the tags that name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Image {
    pub digest: ManifestDigest,
    pub manifest: Manifest,
    /// Sorted; empty when no tag names the image (it then goes at the next `gc`, unless in use).
    pub tags: Vec<Tag>,
}

/// `value` as JSON with every object's keys sorted and no whitespace: the same value always
/// gives the same bytes, whatever the map types inside it.
pub(crate) fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    fn sort(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    // Serializing our own types and oci-spec's into a Value cannot fail (string keys only).
    let value = serde_json::to_value(value).map(sort).unwrap_or_default();
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Now, as RFC 3339 in UTC with seconds (`2024-05-01T12:00:00Z`).
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// `secs` since the epoch as RFC 3339 in UTC.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_714_564_800), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut map = std::collections::HashMap::new();
        for key in ["z", "a", "m", "b"] {
            map.insert(key.to_string(), 1);
        }
        assert_eq!(canonical_json(&map), br#"{"a":1,"b":1,"m":1,"z":1}"#);
    }

    #[test]
    fn config_over_base() {
        let base = ImageConfigSpec {
            entrypoint: vec!["/bin/sh".into()],
            cmd: vec!["-c".into(), "x".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            working_dir: Some("/".into()),
            exposed_ports: vec!["80/tcp".into()],
            ..Default::default()
        };
        let top = ImageConfigSpec {
            entrypoint: vec!["/bin/api".into()],
            env: vec!["A=2".into()],
            exposed_ports: vec!["8080/tcp".into()],
            ..Default::default()
        };
        let merged = top.over(&base);
        assert_eq!(merged.entrypoint, vec!["/bin/api"]);
        assert!(merged.cmd.is_empty());
        assert_eq!(merged.env, vec!["PATH=/bin", "A=2"]);
        assert_eq!(merged.working_dir.as_deref(), Some("/"));
        assert_eq!(merged.exposed_ports, vec!["80/tcp", "8080/tcp"]);
    }
}
