//! Names of what Strata keeps: environments, services, nodes and instances. Each is a type of
//! its own, checked once where it enters (a spec, an API path or body, a record read from the
//! store), so code past the edge never holds an invalid one and never mixes one kind up with
//! another. Each serializes as its plain string.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// Whether `s` is a DNS label: 1 to 63 lowercase letters, digits and `-`, starting with a
/// letter and not ending with `-`. What environment, service and node names are.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Whether `s` can be an instance's id: what the control plane makes (`SERVICE-RELEASE-HEX`),
/// at most 128 lowercase letters, digits and `-`, starting with a letter.
pub fn is_instance_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// A name that is not valid for its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name `{name}` is not valid: {rule}")]
pub struct InvalidName {
    pub kind: &'static str,
    pub name: String,
    pub rule: &'static str,
}

const DNS_LABEL_RULE: &str =
    "use lowercase letters, digits and `-`, starting with a letter, at most 63 characters";

macro_rules! name_type {
    ($(#[$doc:meta])* $Name:ident, $kind:literal, $check:path, $rule:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $Name(String);

        impl $Name {
            /// What kind of name this is, for messages.
            pub const KIND: &'static str = $kind;

            /// `name`, if it is valid for this kind.
            pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
                let name = name.into();
                if $check(&name) {
                    Ok(Self(name))
                } else {
                    Err(InvalidName {
                        kind: $kind,
                        name,
                        rule: $rule,
                    })
                }
            }

            /// A name written in the code itself (tests, fixed names).
            ///
            /// # Panics
            ///
            /// When `name` is not valid: a mistake in the code, never input (input goes
            /// through [`Self::new`]).
            #[track_caller]
            pub fn from_static(name: &'static str) -> Self {
                match Self::new(name) {
                    Ok(name) => name,
                    Err(error) => panic!("{error}"),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $Name {
            type Error = InvalidName;
            fn try_from(name: String) -> Result<Self, InvalidName> {
                Self::new(name)
            }
        }

        impl TryFrom<&str> for $Name {
            type Error = InvalidName;
            fn try_from(name: &str) -> Result<Self, InvalidName> {
                Self::new(name)
            }
        }

        impl std::str::FromStr for $Name {
            type Err = InvalidName;
            fn from_str(name: &str) -> Result<Self, InvalidName> {
                Self::new(name)
            }
        }

        impl From<$Name> for String {
            fn from(name: $Name) -> String {
                name.0
            }
        }

        impl Deref for $Name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $Name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $Name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $Name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $Name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $Name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $Name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $Name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&$Name> for $Name {
            fn eq(&self, other: &&$Name) -> bool {
                self.0 == other.0
            }
        }

        impl PartialEq<$Name> for str {
            fn eq(&self, other: &$Name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$Name> for &str {
            fn eq(&self, other: &$Name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$Name> for String {
            fn eq(&self, other: &$Name) -> bool {
                *self == other.0
            }
        }

        impl utoipa::PartialSchema for $Name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <String as utoipa::PartialSchema>::schema()
            }
        }

        impl utoipa::ToSchema for $Name {}
    };
}

name_type!(
    /// An environment's name (`dev`, `prod`): a DNS label.
    EnvName,
    "environment",
    is_dns_label,
    DNS_LABEL_RULE
);
name_type!(
    /// A service's name, unique in its environment: a DNS label.
    ServiceName,
    "service",
    is_dns_label,
    DNS_LABEL_RULE
);
name_type!(
    /// A node's name, unique in the cluster: a DNS label.
    NodeName,
    "node",
    is_dns_label,
    DNS_LABEL_RULE
);
name_type!(
    /// An instance's id (`web-3-0a1b2c`), unique in the cluster.
    InstanceId,
    "instance",
    is_instance_id,
    "use lowercase letters, digits and `-`, starting with a letter, at most 128 characters"
);

impl InstanceId {
    /// The id of a new instance of `service`'s release `release`: `SERVICE-RELEASE-SUFFIX`,
    /// the suffix in six hex digits (its low 24 bits). Valid by construction: a service name
    /// is a DNS label.
    pub fn for_release(service: &ServiceName, release: u64, suffix: u32) -> InstanceId {
        InstanceId(format!("{service}-{release}-{:06x}", suffix & 0xff_ffff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once_at_the_edge() {
        let table: [(&str, bool, bool); 9] = [
            // name, valid as a DNS label, valid as an instance id
            ("web", true, true),
            ("web-1-0a1b2c", true, true),
            ("a", true, true),
            ("", false, false),
            ("Web", false, false),
            ("1web", false, false),
            ("web-", false, true),
            ("we_b", false, false),
            (&"x".repeat(64), false, true),
        ];
        for (name, label, instance) in table {
            assert_eq!(ServiceName::new(name).is_ok(), label, "{name:?}");
            assert_eq!(EnvName::new(name).is_ok(), label, "{name:?}");
            assert_eq!(NodeName::new(name).is_ok(), label, "{name:?}");
            assert_eq!(InstanceId::new(name).is_ok(), instance, "{name:?}");
        }
        assert!(InstanceId::new("x".repeat(129)).is_err());
        let longest = ServiceName::new("s".repeat(63)).unwrap();
        let id = InstanceId::for_release(&longest, u64::MAX, u32::MAX);
        assert_eq!(InstanceId::new(id.to_string()), Ok(id));
    }

    #[test]
    fn a_name_reads_and_writes_as_its_string() {
        let name = ServiceName::new("web").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"web\"");
        assert_eq!(
            serde_json::from_str::<ServiceName>("\"web\"").unwrap(),
            name
        );
        let error = serde_json::from_str::<ServiceName>("\"Web!\"").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("service name `Web!` is not valid"),
            "{error}"
        );
        assert_eq!(name, "web");
        assert_eq!("web", name);
        assert_eq!(format!("[{name:>5}]"), "[  web]");
        assert_eq!(&*name, "web");
    }
}
