//! What the node's address for an instance leads to, in the kernel: a connection to a node
//! port on loopback (`127.0.0.1:PORT`, where the node's proxies and its operator dial an
//! instance) is translated by nftables to the instance's own address (`node_ports`, a map of
//! `address . port` to `address . port`, looked up by one `dnat` rule of the `output` hook),
//! and its loopback source masqueraded to the bridge's gateway, so no process copies its
//! bytes. The kernel routes a loopback source out of the bridge only with `route_localnet` on
//! it; the bridge's `input` chain still drops everything from instances but answers and the
//! mesh ports, so instances gain no way to the node's loopback (what kube-proxy's
//! CVE-2020-8558 was about).
//!
//! Each translation is recorded in its instance's lease (`forward ADDRESS:PORT`) and, host-wide,
//! under `/run/strata/node-ports/` (several agents may share a bridge), and removed with the
//! instance; one whose owner is gone (an agent killed, its data deleted) is reaped by the
//! next agent that starts on the host.
//! A lease's lines past the first three are `KEY VALUE` entries: `caller ENV SERVICE` says who
//! opens connections from the address (the TCP mesh's caller).

use std::net::{Ipv4Addr, SocketAddr};

use super::{nft, output, InstanceNetwork, NodeNetwork};
use crate::ContainerError;

/// Lets packets with a loopback source leave through `bridge` (then masqueraded): what a
/// node port's translation to an instance needs.
pub(super) fn allow_loopback_sources(bridge: &str) -> Result<(), ContainerError> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&path, "1")
        .map_err(|e| ContainerError::io("write", std::path::Path::new(&path), e))
}

impl NodeNetwork {
    /// Forwards `listen` (a node port) to `port` of the instance at `network`, in the kernel.
    /// Only a loopback `listen` is (a connection from elsewhere is the inter-node port's);
    /// `false` for another, which the instance's shim forwards itself.
    pub fn forward_port(
        &self,
        network: &InstanceNetwork,
        listen: SocketAddr,
        port: u16,
    ) -> Result<bool, ContainerError> {
        let SocketAddr::V4(listen) = listen else {
            return Ok(false);
        };
        if !listen.ip().is_loopback() {
            return Ok(false);
        }
        let registry = self.forwards_registry();
        let owner = registry.join(listen.to_string());
        let lease = self.leases.join(network.address.to_string());
        // A live instance holds this node port: not taken from it (the start then fails
        // when its shim cannot bind the port).
        if owned_forward(&owner, &listen.to_string()).is_some_and(|holder| holder != lease) {
            return Ok(false);
        }
        // Recorded first, in the lease and host-wide (several agents may share a bridge): a
        // translation is never left without a record that names its owner.
        self.set_lease_entry(network.address, "forward", &listen.to_string())?;
        std::fs::create_dir_all(&registry)
            .and_then(|()| std::fs::write(&owner, lease.display().to_string()))
            .map_err(|e| ContainerError::io("record the owner of", &owner, e))?;
        // Replaced whatever a dead owner left there, or added.
        let key = format!("{} . {}", listen.ip(), listen.port());
        let add = format!(
            "add element inet strata node_ports {{ {key} : {} . {port} }}\n",
            network.address
        );
        nft(&format!(
            "delete element inet strata node_ports {{ {key} }}\n{add}"
        ))
        .or_else(|_| nft(&add))?;
        Ok(true)
    }

    /// Removes the translation to the instance at `address`, if its lease records one.
    pub(super) fn unforward(&self, address: Ipv4Addr) {
        let Some(listen) = self
            .lease_entry(address, "forward")
            .and_then(|listen| listen.parse::<SocketAddr>().ok())
        else {
            return;
        };
        // Only this instance's: the port may be another's by now.
        let owner = self.forwards_registry().join(listen.to_string());
        let lease = self.leases.join(address.to_string());
        if owned_forward(&owner, &listen.to_string()) != Some(lease) {
            return;
        }
        let _ = nft(&format!(
            "delete element inet strata node_ports {{ {} . {} }}\n",
            listen.ip(),
            listen.port()
        ));
        let _ = std::fs::remove_file(self.forwards_registry().join(listen.to_string()));
    }

    /// Removes translations whose instance is gone (an agent killed before it cleaned up): no
    /// host-wide record names a lease that still records it. Any agent of the host may judge
    /// any translation so, its own or another's. How many.
    pub fn reap_forwards(&self) -> usize {
        let Ok(listing) = output(
            "nft",
            &["-j", "list", "map", "inet", "strata", "node_ports"],
        ) else {
            return 0;
        };
        let registry = self.forwards_registry();
        let mut reaped = 0;
        for (listen, _) in map_elements(&listing) {
            let owner = registry.join(listen.to_string());
            if owned_forward(&owner, &listen.to_string()).is_none() {
                let _ = nft(&format!(
                    "delete element inet strata node_ports {{ {} . {} }}\n",
                    listen.ip(),
                    listen.port()
                ));
                let _ = std::fs::remove_file(&owner);
                reaped += 1;
            }
        }
        reaped
    }

    /// Host-wide: one file per translation, named by its node port, holding the path of the
    /// lease that owns it (beside the namespaces' registry, on tmpfs like the rules).
    fn forwards_registry(&self) -> std::path::PathBuf {
        self.registry.with_file_name("node-ports")
    }

    /// Records, with the lease of `address`, which service of which environment the instance
    /// holding it is: how the node's proxies know who opens a connection from it.
    pub fn name_caller(
        &self,
        address: Ipv4Addr,
        env: &str,
        service: &str,
    ) -> Result<(), ContainerError> {
        self.set_lease_entry(address, "caller", &format!("{env} {service}"))?;
        self.redirect_if_served(address)
    }

    /// The environment and service of the instance holding `address` on this bridge, if
    /// one does and it was named ([`NodeNetwork::name_caller`]).
    pub fn caller_at(&self, address: Ipv4Addr) -> Option<(String, String)> {
        let caller = self.lease_entry(address, "caller")?;
        let (env, service) = caller.split_once(' ')?;
        Some((env.to_string(), service.to_string()))
    }

    /// The value of entry `key` of the lease of `address`.
    fn lease_entry(&self, address: Ipv4Addr, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.leases.join(address.to_string())).ok()?;
        entry(&text, key).map(str::to_string)
    }

    /// Sets entry `key` of the lease of `address` to `value`.
    fn set_lease_entry(
        &self,
        address: Ipv4Addr,
        key: &str,
        value: &str,
    ) -> Result<(), ContainerError> {
        let path = self.leases.join(address.to_string());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ContainerError::io("read lease", &path, e))?;
        // Whole or not at all: another agent of the host may read it at any moment (to judge
        // whether a namespace or a translation is owned).
        let partial = path.with_extension("partial");
        std::fs::write(&partial, with_entry(&text, key, value))
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| ContainerError::io("write lease", &path, e))
    }
}

/// The lease that holds the node port `listen`, by its host-wide record `owner`, if that
/// lease still exists and records it.
fn owned_forward(owner: &std::path::Path, listen: &str) -> Option<std::path::PathBuf> {
    let lease = std::path::PathBuf::from(std::fs::read_to_string(owner).ok()?.trim());
    let text = std::fs::read_to_string(&lease).ok()?;
    (entry(&text, "forward") == Some(listen)).then_some(lease)
}

/// Entry `key` of a lease's text (a line `KEY VALUE` past the first three).
fn entry<'t>(lease: &'t str, key: &str) -> Option<&'t str> {
    lease
        .lines()
        .skip(3)
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
}

/// A lease's text with entry `key` set to `value` (replaced if there was one).
fn with_entry(lease: &str, key: &str, value: &str) -> String {
    let mut lines: Vec<String> = lease.lines().take(3).map(str::to_string).collect();
    lines.resize(3, String::new());
    lines.extend(
        lease
            .lines()
            .skip(3)
            .filter(|line| line.split(' ').next() != Some(key))
            .map(str::to_string),
    );
    lines.push(format!("{key} {value}"));
    lines.join("\n") + "\n"
}

/// The `(listen, target)` pairs of an `nft -j list map` answer.
fn map_elements(listing: &str) -> Vec<(std::net::SocketAddrV4, std::net::SocketAddrV4)> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(listing) else {
        return Vec::new();
    };
    let pair = |value: &serde_json::Value| -> Option<std::net::SocketAddrV4> {
        let parts = value["concat"].as_array()?;
        let address: Ipv4Addr = parts.first()?.as_str()?.parse().ok()?;
        let port = u16::try_from(parts.get(1)?.as_u64()?).ok()?;
        Some(std::net::SocketAddrV4::new(address, port))
    };
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["map"]["elem"].as_array())
        .flatten()
        .filter_map(|elem| {
            let elem = elem.as_array()?;
            Some((pair(elem.first()?)?, pair(elem.get(1)?)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_entries_are_set_replaced_and_read() {
        let lease = "web-1-abc\nstrata-1234\nsv1234\n";
        let named = with_entry(lease, "caller", "dev web");
        assert_eq!(named, "web-1-abc\nstrata-1234\nsv1234\ncaller dev web\n");
        let forwarded = with_entry(&named, "forward", "127.0.0.1:6379");
        assert_eq!(entry(&forwarded, "caller"), Some("dev web"));
        assert_eq!(entry(&forwarded, "forward"), Some("127.0.0.1:6379"));
        let renamed = with_entry(&forwarded, "caller", "prod web");
        assert_eq!(entry(&renamed, "caller"), Some("prod web"));
        assert_eq!(renamed.matches("caller").count(), 1, "{renamed}");
        // The first three lines are never entries, whatever they hold.
        assert_eq!(entry("caller x\nforward y\nz\n", "caller"), None);
        assert_eq!(entry(lease, "caller"), None);
        // A short (half-written) lease keeps its three positional lines.
        assert_eq!(with_entry("h\n", "caller", "a b"), "h\n\n\ncaller a b\n");
    }

    #[test]
    fn map_elements_are_read_from_nft_json() {
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"map": {"family": "inet", "name": "node_ports", "table": "strata", "type": ["ipv4_addr", "inet_service"], "handle": 1, "map": "ipv4_addr . inet_service", "elem": [[{"concat": ["127.0.0.1", 6379]}, {"concat": ["10.89.0.5", 6379]}], [{"concat": ["127.0.0.1", 40001]}, {"concat": ["10.89.3.7", 8080]}]]}}]}"#;
        assert_eq!(
            map_elements(listing),
            vec![
                (
                    "127.0.0.1:6379".parse().unwrap(),
                    "10.89.0.5:6379".parse().unwrap()
                ),
                (
                    "127.0.0.1:40001".parse().unwrap(),
                    "10.89.3.7:8080".parse().unwrap()
                ),
            ]
        );
        assert!(map_elements(r#"{"nftables": [{"map": {"name": "node_ports"}}]}"#).is_empty());
        assert!(map_elements("garbage").is_empty());
    }
}
