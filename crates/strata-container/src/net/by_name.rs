//! The way from an instance to the TCP services of its environment by name: its DNS queries
//! to the gateway (UDP 53) and its connections to service addresses
//! ([`strata_core::api::SERVICE_ADDRESSES`]) are redirected, by the address they come from,
//! to the resolver and the TCP proxy of the agent that runs the instance (nftables maps
//! `resolvers` and `tcp_proxies`, keyed by the instance's address). Several agents of one
//! host may share a bridge: each instance reaches its own agent's, which knows it by its
//! lease. An element is set when the instance's lease is named (who it is), set again for
//! every named lease when the agent's ports are known (its instances re-adopted after a
//! restart get the new agent's), and removed with the lease; an address leased again gets
//! its new holder's.

use std::net::Ipv4Addr;

use super::{nft, NodeNetwork};
use crate::ContainerError;

/// Where an agent's resolver (UDP) and TCP proxy for its instances listen, on the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByName {
    pub resolver_port: u16,
    pub tcp_proxy_port: u16,
}

impl NodeNetwork {
    /// From now on this agent's instances reach its resolver and TCP proxy at `ports`: the
    /// ports are opened to them, and every instance this node holds is redirected there.
    pub fn serve_by_name(&self, ports: ByName) -> Result<(), ContainerError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.allow_mesh_port(ports.tcp_proxy_port)?;
        nft(&format!(
            "add element inet strata resolver_ports {{ {} }}\n",
            ports.resolver_port
        ))?;
        *self.by_name.lock().expect("not poisoned") = Some(ports);
        for (_, network) in self.held() {
            if self.caller_at(network.address).is_some() {
                self.redirect(network.address, ports)?;
            }
        }
        Ok(())
    }

    /// Redirects the instance at `address` to this agent's resolver and TCP proxy, if they
    /// listen yet.
    pub(super) fn redirect_if_served(&self, address: Ipv4Addr) -> Result<(), ContainerError> {
        let ports = *self.by_name.lock().expect("not poisoned");
        match ports {
            Some(ports) => self.redirect(address, ports),
            None => Ok(()),
        }
    }

    fn redirect(&self, address: Ipv4Addr, ports: ByName) -> Result<(), ContainerError> {
        set_element("tcp_proxies", address, ports.tcp_proxy_port)?;
        set_element("resolvers", address, ports.resolver_port)
    }

    /// Removes the redirects of the instance at `address` (its lease is going).
    pub(super) fn unredirect(&self, address: Ipv4Addr) {
        for map in ["tcp_proxies", "resolvers"] {
            let _ = nft(&format!(
                "delete element inet strata {map} {{ {address} }}\n"
            ));
        }
    }

    /// Closes the resolver port this agent opened (the driver is going away).
    pub(super) fn close_by_name(&self) {
        if let Some(ports) = self.by_name.lock().expect("not poisoned").take() {
            let _ = nft(&format!(
                "delete element inet strata resolver_ports {{ {} }}\n",
                ports.resolver_port
            ));
        }
    }
}

/// Sets `address`'s element of `map` to `port`, whatever it was (another holder's, an old
/// agent's): replaced in one transaction, or added when there was none (nftables refuses
/// both to add a key it holds with another value and to delete one it does not hold).
fn set_element(map: &str, address: Ipv4Addr, port: u16) -> Result<(), ContainerError> {
    let add = format!("add element inet strata {map} {{ {address} : {port} }}\n");
    nft(&format!(
        "delete element inet strata {map} {{ {address} }}\n{add}"
    ))
    .or_else(|_| nft(&add))
}
