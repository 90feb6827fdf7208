//! Which Linux capabilities a container service may be granted, and where. The ordinary ones
//! (the set Docker grants every container) on any node; any other (`SYS_ADMIN`,
//! `SYS_MODULE`, `SYS_PTRACE`, `SYS_RAWIO`, `NET_ADMIN`, `BPF`, ...) only on a node whose
//! operator allowed it (`strata agent --allow-capability SYS_ADMIN`). The allowance travels
//! as a node label, `capabilities.strata/SYS_ADMIN = allowed`, so placement needs nothing
//! new: the control plane adds that label to the constraints of a service that asks for the
//! capability, and the node's container driver refuses it anyway when its node does not
//! allow it. Running a container as the host's root (`userns = false`: no user namespace)
//! is allowed the same way (`--allow-host-root`, label `sandbox.strata/host-root`).

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{DriverKind, ServiceSpec};

/// What any node grants a container service that asks (Docker's default set).
pub const ORDINARY: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The prefix of the node labels that allow a capability.
pub const LABEL_PREFIX: &str = "capabilities.strata/";

/// The value of a label that allows a capability.
pub const ALLOWED: &str = "allowed";

/// Whether granting `capability` (as capabilities(7) names it, without `CAP_`) needs the
/// node's allowance.
pub fn needs_allowance(capability: &str) -> bool {
    !ORDINARY.contains(&capability)
}

/// The node label that allows `capability`.
pub fn allowance_label(capability: &str) -> String {
    format!("{LABEL_PREFIX}{capability}")
}

/// The capabilities a node with `labels` allows beyond the ordinary ones.
pub fn allowed_by(labels: &BTreeMap<String, String>) -> BTreeSet<String> {
    labels
        .iter()
        .filter(|(_, value)| value.as_str() == ALLOWED)
        .filter_map(|(key, _)| key.strip_prefix(LABEL_PREFIX))
        .map(str::to_string)
        .collect()
}

/// The node label that allows containers without a user namespace (their root the host's
/// root): `strata agent --allow-host-root`.
pub const HOST_ROOT_LABEL: &str = "sandbox.strata/host-root";

/// Whether a node with `labels` lets a container run as the host's root (`userns = false`).
pub fn allows_host_root(labels: &BTreeMap<String, String>) -> bool {
    labels.get(HOST_ROOT_LABEL).map(String::as_str) == Some(ALLOWED)
}

/// The node labels `spec`'s instances need for the capabilities it asks for, and for running
/// as the host's root (`userns = false`).
pub fn required_labels(spec: &ServiceSpec) -> BTreeMap<String, String> {
    if spec.driver != DriverKind::Container {
        return BTreeMap::new();
    }
    let mut labels: BTreeMap<String, String> = spec
        .container
        .iter()
        .flat_map(|settings| &settings.capabilities)
        .filter(|capability| needs_allowance(capability))
        .map(|capability| (allowance_label(capability), ALLOWED.to_string()))
        .collect();
    if spec.container.as_ref().is_some_and(|c| c.host_root()) {
        labels.insert(HOST_ROOT_LABEL.to_string(), ALLOWED.to_string());
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> ServiceSpec {
        crate::spec::parse("s.toml", toml)
            .unwrap()
            .services
            .remove(0)
    }

    #[test]
    fn a_capability_past_the_ordinary_set_needs_a_node_that_allows_it() {
        let container = |caps: &str| {
            spec(&format!(
                "[service.box]\ndriver = \"container\"\nartifact = \"b.tar\"\n[service.box.container]\ncapabilities = {caps}\n"
            ))
        };
        let table = [
            ("[]", vec![]),
            ("[\"NET_BIND_SERVICE\", \"CHOWN\"]", vec![]),
            (
                "[\"SYS_ADMIN\", \"NET_BIND_SERVICE\"]",
                vec!["capabilities.strata/SYS_ADMIN"],
            ),
            (
                "[\"CAP_SYS_PTRACE\", \"net_admin\"]",
                vec![
                    "capabilities.strata/NET_ADMIN",
                    "capabilities.strata/SYS_PTRACE",
                ],
            ),
        ];
        for (caps, labels) in table {
            let required = required_labels(&container(caps));
            let keys: Vec<&str> = required.keys().map(String::as_str).collect();
            assert_eq!(keys, labels, "{caps}");
            assert!(required.values().all(|v| v == ALLOWED));
        }
        // Host root: only where the node allows it.
        let host_root = required_labels(&spec(
            "[service.box]\ndriver = \"container\"\nartifact = \"b.tar\"\n[service.box.container]\nuserns = false\n",
        ));
        assert_eq!(
            host_root,
            BTreeMap::from([(HOST_ROOT_LABEL.to_string(), ALLOWED.to_string())])
        );
        assert!(allows_host_root(&host_root));
        assert!(!allows_host_root(&BTreeMap::new()));
        let explicit_userns = required_labels(&spec(
            "[service.box]\ndriver = \"container\"\nartifact = \"b.tar\"\n[service.box.container]\nuserns = true\n",
        ));
        assert!(explicit_userns.is_empty());
        // Not a container: nothing (the spec cannot grant it any capability).
        assert!(required_labels(&spec("[service.web]\ncommand = [\"w\"]\n")).is_empty());
    }

    #[test]
    fn a_node_allows_what_its_labels_say() {
        let labels: BTreeMap<String, String> = [
            ("capabilities.strata/SYS_ADMIN", "allowed"),
            ("capabilities.strata/NET_ADMIN", "no"),
            ("zone", "a"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            allowed_by(&labels),
            BTreeSet::from(["SYS_ADMIN".to_string()])
        );
        assert!(needs_allowance("SYS_ADMIN") && !needs_allowance("NET_BIND_SERVICE"));
    }
}
