//! Secrets: values a service needs and no one may read back (passwords, API keys). The
//! records here hold only ciphertext; the control plane seals and opens them
//! (`strata_control::secrets`), and only the node running an instance gets a value, in its
//! assignment, at start.
//!
//! - [`SecretRecord`] (`/secrets/{env}/{service}/{name}`): a secret's sealed versions (the
//!   newest few, so a release still running an older one can restart), who set each and
//!   when. Removing a secret keeps a tombstone, so its version numbers are never reused and
//!   a release pinned to an old version never gets another value under that number.
//! - [`SecretInfo`]: what `strata secret ls` shows: names, versions, who and when; never a
//!   value.
//! - [`SecretTarget`]: where an instance gets a value (`[service.NAME.secrets]`).
//! - [`DeliveredSecret`]: a value on its way to the node that runs the instance; its `Debug`
//!   hides the value, so no log line or error can carry it by accident.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{EnvName, Millis, ServiceName};

/// How many versions of a secret are kept (older ones are dropped as new ones are set).
pub const VERSIONS_KEPT: usize = 5;

/// The longest secret value, in bytes (a certificate chain fits; a file does not belong here).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Where an instance finds a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretTarget {
    /// An environment variable of this name.
    Env(String),
    /// A file at this absolute path, on a tmpfs only the instance sees (container driver).
    File(String),
}

impl fmt::Display for SecretTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretTarget::Env(name) => write!(f, "env {name}"),
            SecretTarget::File(path) => write!(f, "file {path}"),
        }
    }
}

/// One sealed version of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedVersion {
    pub version: u64,
    /// The value sealed under the cluster's data key: base64 of nonce and ciphertext.
    pub sealed: String,
    /// Who set it (an [`crate::Actor`]'s text).
    pub set_by: String,
    pub set_at: Millis,
}

/// A secret of one service in one environment: its newest versions, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub env: EnvName,
    pub service: ServiceName,
    pub name: String,
    /// The newest version ever set (kept through a removal: numbers are never reused).
    pub latest_version: u64,
    /// The versions kept, oldest first; empty once removed.
    pub versions: Vec<SealedVersion>,
    /// When it was removed (`strata secret rm`); the record stays as a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<Millis>,
}

impl SecretRecord {
    /// Whether the secret has a value now (it was set and not removed since).
    pub fn is_set(&self) -> bool {
        self.removed_at.is_none() && !self.versions.is_empty()
    }

    /// The sealed value of `version`, if it is still kept.
    pub fn version(&self, version: u64) -> Option<&SealedVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// The newest version kept.
    pub fn newest(&self) -> Option<&SealedVersion> {
        self.versions.last()
    }

    /// What `ls` shows of it.
    pub fn info(&self) -> Option<SecretInfo> {
        let newest = self.newest().filter(|_| self.is_set())?;
        Some(SecretInfo {
            name: self.name.clone(),
            version: newest.version,
            set_by: newest.set_by.clone(),
            set_at: newest.set_at,
            versions_kept: self.versions.iter().map(|v| v.version).collect(),
        })
    }
}

/// What `strata secret ls` shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretInfo {
    pub name: String,
    /// The version new releases get.
    pub version: u64,
    pub set_by: String,
    pub set_at: Millis,
    /// The versions still kept (a release pinned to one of them can restart).
    pub versions_kept: Vec<u64>,
}

/// A secret's value on its way to the node that runs an instance (in the node's own
/// assignments, over its authenticated connection); `Debug` shows the name only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveredSecret {
    pub name: String,
    pub version: u64,
    pub target: SecretTarget,
    pub value: String,
}

impl fmt::Debug for DeliveredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveredSecret")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("target", &self.target)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// `PUT /v1/envs/{env}/services/{service}/secrets/{name}`: the value; `Debug` hides it.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct SetSecretRequest {
    pub value: String,
}

impl fmt::Debug for SetSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetSecretRequest(<redacted>)")
    }
}

/// The answer to [`SetSecretRequest`]: the version made, and the release that rolls it out
/// when the service runs with the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretSet {
    pub name: String,
    pub version: u64,
    pub release: Option<u64>,
}

/// The answer to `POST /v1/secrets/rotate-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyRotated {
    /// The key-encryption key the data key is sealed under now.
    pub kek: String,
    /// The one it was sealed under before.
    pub previous: String,
}

/// Whether `name` may name a secret: 1 to 63 of letters, digits, `_`, `-` and `.`, starting
/// with a letter or digit (it is a segment of a store key and a CLI argument).
pub fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The rule [`is_secret_name`] applies, for error messages.
pub const SECRET_NAME_RULE: &str =
    "a secret's name is 1 to 63 letters, digits, `_`, `-` or `.`, starting with a letter or digit, like `DB_PASSWORD`";

/// Why a secret file's path is refused, or `None` when it is fine: an absolute, normal path
/// (no `.`, `..` or empty segments), not `/` itself and not under the kernel's or the
/// platform's own trees.
pub fn file_path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!(
            "`{path}` is not absolute; a secret file's path starts with `/`, like `/run/secrets/db`"
        ));
    }
    if path == "/" || path.ends_with('/') {
        return Some(format!(
            "`{path}` names a directory; give the file's path, like `/run/secrets/db`"
        ));
    }
    if path
        .split('/')
        .skip(1)
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Some(format!(
            "`{path}` has an empty, `.` or `..` segment; write the plain path, like `/run/secrets/db`"
        ));
    }
    if path.len() > 255 || path.contains('\0') {
        return Some("a secret file's path is at most 255 bytes".to_string());
    }
    let reserved = [
        "/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/usr", "/lib",
    ];
    if let Some(root) = reserved
        .iter()
        .find(|root| path == **root || path.starts_with(&format!("{root}/")))
    {
        return Some(format!(
            "`{path}` is under `{root}`, which the container's image or kernel owns; put secrets under `/run/secrets/`"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_key_segments() {
        for good in ["DB_PASSWORD", "db-password", "tls.key", "a", "9lives"] {
            assert!(is_secret_name(good), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-x", ".env", "a/b", "a b", "é", long.as_str(), "x:y"] {
            assert!(!is_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn secret_file_paths_are_plain_absolute_paths_outside_the_systems_trees() {
        let table: [(&str, Option<&str>); 11] = [
            ("/run/secrets/db", None),
            ("/app/config/key.pem", None),
            ("run/secrets/db", Some("not absolute")),
            ("/", Some("names a directory")),
            ("/run/secrets/", Some("names a directory")),
            ("/run/../etc/shadow", Some("`..` segment")),
            ("/run//db", Some("empty")),
            ("/proc/self/environ", Some("under `/proc`")),
            ("/etc/passwd", Some("under `/etc`")),
            ("/dev/sda", Some("under `/dev`")),
            ("/devices/x", None),
        ];
        for (path, problem) in table {
            let found = file_path_problem(path);
            match (problem, &found) {
                (None, None) => {}
                (Some(words), Some(message)) if message.contains(words) => {}
                _ => panic!("{path}: expected {problem:?}, got {found:?}"),
            }
        }
    }

    #[test]
    fn a_delivered_secrets_debug_hides_its_value() {
        let secret = DeliveredSecret {
            name: "DB_PASSWORD".into(),
            version: 2,
            target: SecretTarget::Env("DB_PASSWORD".into()),
            value: "hunter2".into(),
        };
        let shown = format!("{secret:?}");
        assert!(
            shown.contains("DB_PASSWORD") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn a_removed_secret_shows_nothing_and_keeps_its_numbering() {
        let mut record = SecretRecord {
            env: EnvName::from_static("dev"),
            service: ServiceName::from_static("web"),
            name: "token".into(),
            latest_version: 2,
            versions: vec![
                SealedVersion {
                    version: 1,
                    sealed: "x".into(),
                    set_by: "alice".into(),
                    set_at: 1,
                },
                SealedVersion {
                    version: 2,
                    sealed: "y".into(),
                    set_by: "bob".into(),
                    set_at: 2,
                },
            ],
            removed_at: None,
        };
        let info = record.info().expect("set");
        assert_eq!((info.version, info.set_by.as_str()), (2, "bob"));
        assert_eq!(info.versions_kept, vec![1, 2]);
        record.versions.clear();
        record.removed_at = Some(3);
        assert!(record.info().is_none() && !record.is_set());
        assert_eq!(record.latest_version, 2);
    }
}
