//! How images are named: tags (`NAME:VERSION`) and references (a tag, a digest, or a unique
//! prefix of a digest's hex digits).
//!
//! NAME follows the OCI distribution rules for repository names (lowercase components
//! separated by `/`, at most 255 characters); VERSION follows the rules for OCI tags
//! (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`). Registry hosts with a port (`host:5000/name`) are not
//! names here: there is no registry in Strata's store.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{is_sha256_hex, ManifestDigest};
use crate::error::ImageError;

/// The longest NAME, as in the OCI distribution spec.
const MAX_NAME_LEN: usize = 255;
/// The longest VERSION, as in the OCI distribution spec.
const MAX_VERSION_LEN: usize = 128;

/// `NAME:VERSION`, e.g. `shop/api:1.4.2`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    name: String,
    version: String,
}

impl Tag {
    /// Validates a name and a version.
    pub fn new(name: &str, version: &str) -> Result<Tag, ImageError> {
        let input = format!("{name}:{version}");
        validate_name(name).map_err(|reason| ImageError::InvalidTag {
            input: input.clone(),
            reason,
        })?;
        validate_version(version).map_err(|reason| ImageError::InvalidTag {
            input: input.clone(),
            reason,
        })?;
        Ok(Tag {
            name: name.to_string(),
            version: version.to_string(),
        })
    }

    /// Parses `NAME:VERSION` (split at the last `:`).
    pub fn parse(input: &str) -> Result<Tag, ImageError> {
        let Some((name, version)) = input.rsplit_once(':') else {
            return Err(ImageError::InvalidTag {
                input: input.to_string(),
                reason: "it has no `:VERSION`".into(),
            });
        };
        Tag::new(name, version).map_err(|error| match error {
            ImageError::InvalidTag { reason, .. } => ImageError::InvalidTag {
                input: input.to_string(),
                reason,
            },
            other => other,
        })
    }

    /// The repository name, e.g. `shop/api`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version, e.g. `1.4.2`.
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.version)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.version)
    }
}

impl std::str::FromStr for Tag {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::parse(s)
    }
}

impl Serialize for Tag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Tag::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a repository name: `component(/component)*`, each component
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the NAME is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the NAME is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    for component in name.split('/') {
        validate_component(component).map_err(|why| format!("in the NAME `{name}`, {why}"))?;
    }
    Ok(())
}

fn validate_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("a component between `/` is empty".into());
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if let Some(bad) = component
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        let hint = if bad.is_ascii_uppercase() {
            " (names are lowercase)"
        } else {
            ""
        };
        return Err(format!("`{component}` has the character `{bad}`{hint}"));
    }
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!(
            "`{component}` must start and end with a lowercase letter or a digit"
        ));
    }
    // Separators: `.`, `_`, `__` or any number of `-`, always between alphanumerics.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "`{component}` has the separator `{separator}`; only `.`, `_`, `__` or dashes \
                 may separate letters and digits"
            ));
        }
    }
    Ok(())
}

/// Checks an OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn validate_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("the VERSION is empty".into());
    }
    if version.len() > MAX_VERSION_LEN {
        return Err(format!(
            "the VERSION is {} characters long; at most {MAX_VERSION_LEN} are allowed",
            version.len()
        ));
    }
    let first = version.as_bytes()[0];
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(format!(
            "the VERSION `{version}` starts with `{}`",
            first as char
        ));
    }
    if let Some(bad) = version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("the VERSION `{version}` has the character `{bad}`"));
    }
    Ok(())
}

/// What `inspect`, `remove`, `lower_dirs` and `export_oci_layout` accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `NAME:VERSION`.
    Tag(Tag),
    /// `sha256:<64 hex digits>`.
    Digest(ManifestDigest),
    /// A prefix of a manifest digest's hex digits (`sha256:3f2a` or `3f2a`).
    Prefix(String),
}

impl Reference {
    /// Parses a reference. `sha256:...` is always a digest (or a prefix of one); a bare string
    /// of hex digits without `:` is a prefix; anything else must be `NAME:VERSION`.
    pub fn parse(input: &str) -> Result<Reference, ImageError> {
        let is_hex = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if let Some(hex) = input.strip_prefix("sha256:") {
            if is_sha256_hex(hex) {
                return Ok(Reference::Digest(ManifestDigest::from_hex_unchecked(
                    hex.to_string(),
                )));
            }
            if is_hex(hex) && hex.len() < 64 {
                return Ok(Reference::Prefix(hex.to_string()));
            }
            return Err(ImageError::InvalidReference {
                input: input.to_string(),
                reason: "after `sha256:` come up to 64 lowercase hex digits".into(),
            });
        }
        if !input.contains(':') {
            if is_sha256_hex(input) {
                return Ok(Reference::Digest(ManifestDigest::from_hex_unchecked(
                    input.to_string(),
                )));
            }
            if is_hex(input) && input.len() < 64 {
                return Ok(Reference::Prefix(input.to_string()));
            }
            return Err(ImageError::InvalidReference {
                input: input.to_string(),
                reason: "it has no `:VERSION` and is not hex digits of a digest".into(),
            });
        }
        Tag::parse(input).map(Reference::Tag).map_err(|e| match e {
            ImageError::InvalidTag { reason, .. } => ImageError::InvalidReference {
                input: input.to_string(),
                reason,
            },
            other => other,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => write!(f, "{tag}"),
            Reference::Digest(digest) => write!(f, "{digest}"),
            Reference::Prefix(prefix) => write!(f, "{prefix}"),
        }
    }
}

impl From<Tag> for Reference {
    fn from(tag: Tag) -> Self {
        Reference::Tag(tag)
    }
}

impl From<ManifestDigest> for Reference {
    fn from(digest: ManifestDigest) -> Self {
        Reference::Digest(digest)
    }
}

impl From<&ManifestDigest> for Reference {
    fn from(digest: &ManifestDigest) -> Self {
        Reference::Digest(digest.clone())
    }
}

impl From<&Tag> for Reference {
    fn from(tag: &Tag) -> Self {
        Reference::Tag(tag.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_tags() {
        for ok in [
            "api:1",
            "shop/api:1.4.2",
            "a-b/c__d/e.f:latest",
            "x--y:_v",
            "docker.io/library/alpine:3.20",
            "a:V1.0-RC_2",
        ] {
            let tag = Tag::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(tag.to_string(), ok);
        }
    }

    #[test]
    fn invalid_tags_say_why() {
        for (bad, why) in [
            ("api", "no `:VERSION`"),
            (":1", "NAME is empty"),
            ("api:", "VERSION is empty"),
            ("Api:1", "lowercase"),
            ("a..b:1", "separator `..`"),
            ("a/:1", "empty"),
            ("-a:1", "start and end"),
            ("a:.hidden", "starts with `.`"),
            ("a:-x", "starts with `-`"),
            ("a:1/2", "character `/`"),
            ("a b:1", "character ` `"),
            ("../etc:1", "start and end"),
            ("localhost:5000/a:1", "character `:`"),
        ] {
            let error = Tag::parse(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
            assert!(error.contains("NAME:VERSION"), "{error}");
        }
        let long = format!("a:{}", "v".repeat(129));
        assert!(Tag::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("at most 128"));
    }

    #[test]
    fn references() {
        let hex = "ab".repeat(32);
        assert!(matches!(
            Reference::parse(&format!("sha256:{hex}")).unwrap(),
            Reference::Digest(_)
        ));
        assert!(matches!(
            Reference::parse(&hex).unwrap(),
            Reference::Digest(_)
        ));
        assert_eq!(
            Reference::parse("sha256:abc").unwrap(),
            Reference::Prefix("abc".into())
        );
        assert_eq!(
            Reference::parse("abc1").unwrap(),
            Reference::Prefix("abc1".into())
        );
        assert!(matches!(
            Reference::parse("shop/api:2").unwrap(),
            Reference::Tag(_)
        ));
        assert!(Reference::parse("shop").is_err());
        assert!(Reference::parse("sha256:xyz").is_err());
    }
}
