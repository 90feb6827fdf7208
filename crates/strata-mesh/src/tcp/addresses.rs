//! The node's service addresses: each TCP service its instances may call gets an IPv4
//! address of its own on this node (in [`SERVICE_RANGE`]), which the node's resolver answers
//! for its name and the node's firewall sends to the node's TCP proxy. The address stands for
//! the service only on this node: the proxy learns which service a connection is for from
//! the address it was dialled at (and the port from the port), so two services may both use
//! port 5432.
//!
//! An address is chosen from a hash of the service's environment and name (the next free
//! one on a collision) and kept, in a file of the agent's, for the node's life: an instance
//! that resolved a name before an agent restart still reaches the same service.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Where service addresses are taken from ([`strata_core::api::SERVICE_ADDRESSES`]).
pub const SERVICE_RANGE: (Ipv4Addr, u8) = strata_core::api::SERVICE_ADDRESSES;

/// `(environment, service)`.
pub type ServiceKey = (String, String);

/// The node's service addresses, both ways.
#[derive(Debug)]
pub struct ServiceAddresses {
    base: u32,
    size: u32,
    state: Mutex<State>,
    /// Where they are kept (`None`: in memory only).
    file: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct State {
    by_service: HashMap<ServiceKey, Ipv4Addr>,
    by_address: HashMap<Ipv4Addr, ServiceKey>,
}

impl ServiceAddresses {
    /// Addresses in `range` (`(network, prefix length)`, prefix 8..=30), kept in `file`
    /// (read now if it exists: lines `ADDRESS ENV SERVICE`).
    pub fn new(range: (Ipv4Addr, u8), file: Option<PathBuf>) -> Self {
        let prefix = u32::from(range.1.clamp(8, 30));
        let size = 1u32 << (32 - prefix);
        let base = u32::from(range.0) & !(size - 1);
        let mut state = State::default();
        if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
            for line in text.lines() {
                let mut parts = line.split_whitespace();
                let (Some(address), Some(env), Some(service)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Ok(address) = address.parse::<Ipv4Addr>() else {
                    continue;
                };
                let inside = u32::from(address).wrapping_sub(base) < size;
                let key = (env.to_string(), service.to_string());
                if inside
                    && !state.by_address.contains_key(&address)
                    && !state.by_service.contains_key(&key)
                {
                    state.by_address.insert(address, key.clone());
                    state.by_service.insert(key, address);
                }
            }
        }
        Self {
            base,
            size,
            state: Mutex::new(state),
            file,
        }
    }

    /// The address of `service` in `env`, given it now if it has none; `None` when the range
    /// is full.
    pub fn address_of(&self, env: &str, service: &str) -> Option<Ipv4Addr> {
        let key = (env.to_string(), service.to_string());
        let mut state = self.state.lock().expect("addresses lock");
        if let Some(address) = state.by_service.get(&key) {
            return Some(*address);
        }
        let offset = choose(&key, self.size, |offset| {
            state
                .by_address
                .contains_key(&Ipv4Addr::from(self.base + offset))
        })?;
        let address = Ipv4Addr::from(self.base + offset);
        state.by_address.insert(address, key.clone());
        state.by_service.insert(key, address);
        if let Some(file) = &self.file {
            let text: String = state
                .by_address
                .iter()
                .map(|(address, (env, service))| format!("{address} {env} {service}\n"))
                .collect();
            let partial = file.with_extension("partial");
            let kept =
                std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, file));
            if let Err(error) = kept {
                tracing::warn!(%error, file = %file.display(), "cannot keep the node's service addresses; an agent restart may give services new ones");
            }
        }
        Some(address)
    }

    /// The service `address` stands for, if any.
    pub fn service_at(&self, address: Ipv4Addr) -> Option<ServiceKey> {
        self.state
            .lock()
            .expect("addresses lock")
            .by_address
            .get(&address)
            .cloned()
    }
}

/// The offset in a range of `size` addresses for `key`: from a hash of it, the next one not
/// `taken` (never the range's first or last address); `None` when every one is.
pub fn choose(key: &ServiceKey, size: u32, taken: impl Fn(u32) -> bool) -> Option<u32> {
    let usable = size.checked_sub(2).filter(|n| *n > 0)?;
    let digest = Sha256::digest(format!("{}/{}", key.0, key.1).as_bytes());
    let hash = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let start = hash % usable;
    (0..usable)
        .map(|step| 1 + (start + step) % usable)
        .find(|offset| !taken(*offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(env: &str, service: &str) -> ServiceKey {
        (env.to_string(), service.to_string())
    }

    #[test]
    fn an_address_comes_from_the_name_and_passes_over_taken_ones() {
        let first = choose(&key("dev", "redis"), 256, |_| false).unwrap();
        assert!((1..255).contains(&first));
        // The same name, the same address.
        assert_eq!(choose(&key("dev", "redis"), 256, |_| false), Some(first));
        // Taken: the next one, wrapping past the end, never 0 or 255.
        let next = choose(&key("dev", "redis"), 256, |o| o == first).unwrap();
        assert_eq!(next, if first == 254 { 1 } else { first + 1 });
        // Every one taken: none.
        assert_eq!(choose(&key("dev", "redis"), 256, |_| true), None);
        // Too small a range to hold one.
        assert_eq!(choose(&key("dev", "redis"), 2, |_| false), None);
        assert_eq!(choose(&key("dev", "redis"), 3, |_| false), Some(1));
    }

    #[test]
    fn addresses_are_unique_both_ways_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("service-addresses");
        // A /29: six usable addresses, so names collide.
        let range = (Ipv4Addr::new(10, 90, 0, 0), 29);
        let addresses = ServiceAddresses::new(range, Some(file.clone()));
        let services: Vec<ServiceKey> = (0..6).map(|i| key("dev", &format!("s{i}"))).collect();
        let given: Vec<Ipv4Addr> = services
            .iter()
            .map(|(env, service)| addresses.address_of(env, service).unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<_> = given.iter().collect();
        assert_eq!(distinct.len(), 6, "{given:?}");
        for (service, address) in services.iter().zip(&given) {
            assert!(u32::from(*address) > u32::from(range.0));
            assert!(u32::from(*address) < u32::from(range.0) + 7);
            assert_eq!(addresses.service_at(*address).as_ref(), Some(service));
        }
        // Full: a seventh service gets none; the others keep theirs.
        assert_eq!(addresses.address_of("dev", "s6"), None);
        assert_eq!(addresses.address_of("dev", "s0"), Some(given[0]));
        // The range's own address stands for nothing.
        assert_eq!(addresses.service_at(Ipv4Addr::new(10, 90, 0, 0)), None);

        // After a restart (the file read again), the same addresses.
        let again = ServiceAddresses::new(range, Some(file));
        for (service, address) in services.iter().zip(&given) {
            assert_eq!(again.service_at(*address).as_ref(), Some(service));
            assert_eq!(again.address_of(&service.0, &service.1), Some(*address));
        }
    }
}
