//! Container networking on a node: a bridge (`strata0`, 10.89.0.1/16 by default) and, for each
//! instance, its own network namespace joined to the bridge by a veth pair.
//!
//! What an instance can reach: nothing but what connects to it. The node's proxy (in the
//! host's namespace) connects to the instance's address; the replies are let back in. A
//! connection the instance opens is dropped: to the host's own listeners (nftables `input`),
//! through the host to anywhere (`forward`), and to other instances on the bridge (bridge
//! ports are `isolated`). Exactly one way out is open: the node's mesh proxy, at the bridge's
//! gateway address on the proxy's port ([`NodeNetwork::allow_mesh_port`]); and through it,
//! to TCP services by name: the node's resolver at the gateway (UDP 53), and connections to
//! service addresses, which the firewall redirects to the node's TCP proxy
//! ([`NodeNetwork::serve_by_name`]).
//!
//! The kernel is driven with iproute2 (`ip`) and nftables (`nft`), the tools every Linux
//! distribution ships for this; each call's failure is reported with the command and what it
//! printed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::ContainerError;

mod by_name;
mod node_ports;

pub use by_name::ByName;

/// The node's container network.
#[derive(Debug, Clone)]
pub struct NodeNetwork {
    pub bridge: String,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    /// Where address leases are kept (one file per address in use: holder, namespace, veth).
    leases: PathBuf,
    /// Namespaces made ahead, ready to be claimed by the next instance (shared by clones).
    pool: Arc<Mutex<Vec<InstanceNetwork>>>,
    filling: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    pool_size: usize,
    /// The mesh proxy ports this node opened in `mesh_ports` (its HTTP proxy's, its TCP
    /// proxy's), closed again with the driver.
    mesh_ports: Arc<Mutex<Vec<u16>>>,
    /// Where this agent's resolver and TCP proxy for its instances listen, once they do.
    by_name: Arc<Mutex<Option<by_name::ByName>>>,
    /// Host-wide: one file per namespace a driver made, naming the lease that owns it.
    registry: PathBuf,
}

/// Where drivers record which lease owns each `strata-*` namespace (host-wide, on tmpfs like
/// the namespaces themselves), so any agent can tell an orphan from another agent's.
pub const NETNS_REGISTRY: &str = "/run/strata/netns";

/// Namespaces kept ready by default: a start takes one instead of making one (~8 ms).
pub const DEFAULT_POOL_SIZE: usize = 2;
const POOL_HOLDER: &str = "pool:";

/// One instance's network: its namespace, host-side veth and address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceNetwork {
    pub netns: String,
    pub host_veth: String,
    pub address: Ipv4Addr,
}

impl InstanceNetwork {
    /// The namespace's bind-mount path, for the OCI bundle.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.netns)
    }
}

pub const DEFAULT_BRIDGE: &str = "strata0";
pub const DEFAULT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 1);
pub const DEFAULT_PREFIX_LEN: u8 = 16;

impl NodeNetwork {
    /// Creates the bridge and the firewall rules if they are missing (idempotent; the rules
    /// are replaced as a whole). `state_dir` keeps address leases.
    pub fn ensure(
        bridge: &str,
        gateway: Ipv4Addr,
        prefix_len: u8,
        state_dir: &Path,
    ) -> Result<Self, ContainerError> {
        let leases = state_dir.join("leases");
        std::fs::create_dir_all(&leases).map_err(|e| ContainerError::io("create", &leases, e))?;
        // Several agents of one host (tests, `strata dev` beside an agent) may get here at
        // once: losing the race to create the bridge or its address is success.
        // Asked of the kernel (netlink), not of /sys: an agent may run in a network namespace
        // whose /sys it does not see (entered with `nsenter --net`).
        let bridge_exists = || run("ip", &["link", "show", "dev", bridge]).is_ok();
        if !bridge_exists() {
            if let Err(error) = run("ip", &["link", "add", bridge, "type", "bridge"]) {
                if !bridge_exists() {
                    return Err(error);
                }
            }
        }
        let cidr = format!("{gateway}/{prefix_len}");
        let has_address = || {
            output("ip", &["-4", "-o", "addr", "show", "dev", bridge])
                .is_ok_and(|addresses| addresses.contains(&cidr))
        };
        if !has_address() {
            if let Err(error) = run("ip", &["addr", "add", &cidr, "dev", bridge]) {
                if !has_address() {
                    return Err(error);
                }
            }
        }
        run("ip", &["link", "set", bridge, "up"])?;
        // Node ports are forwarded to instances in the kernel (`node_ports`): a connection to
        // 127.0.0.1 leaves through the bridge, which the kernel allows only with this.
        node_ports::allow_loopback_sources(bridge)?;
        nft(&firewall(bridge, gateway))?;
        let network = Self {
            bridge: bridge.to_string(),
            gateway,
            prefix_len,
            leases,
            pool: Arc::default(),
            filling: Arc::default(),
            closed: Arc::default(),
            pool_size: DEFAULT_POOL_SIZE,
            mesh_ports: Arc::default(),
            by_name: Arc::default(),
            registry: PathBuf::from(NETNS_REGISTRY),
        };
        // Pooled namespaces an earlier agent made and nobody claimed.
        for (holder, stale) in network.held() {
            if holder.starts_with(POOL_HOLDER) {
                network.detach(&stale);
            }
        }
        let reaped = network.reap_orphans() + network.reap_forwards();
        if reaped > 0 {
            tracing::info!(
                reaped,
                "removed network namespaces and mesh ports that killed agents left"
            );
        }
        network.refill();
        Ok(network)
    }

    /// Removes what agents killed before they cleaned up left on this host: `strata-*`
    /// namespaces whose owning lease is gone (its data directory deleted, or the lease freed),
    /// and `mesh_ports` and `resolver_ports` elements no process listens on any more. Returns
    /// how many.
    pub fn reap_orphans(&self) -> usize {
        let mut reaped = 0;
        let names: Vec<String> = std::fs::read_dir("/var/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(NETNS_PREFIX))
            .collect();
        for netns in names {
            let owned = std::fs::read_to_string(self.registry.join(&netns))
                .ok()
                .and_then(|lease| std::fs::read_to_string(lease.trim()).ok())
                .is_some_and(|lease| lease.lines().nth(1) == Some(netns.as_str()));
            if !owned {
                let host_veth = format!("sv{}", &netns[NETNS_PREFIX.len()..]);
                self.detach_names(&netns, &host_veth);
                reaped += 1;
            }
        }
        let sets = [
            ("mesh_ports", listening_ports()),
            ("resolver_ports", bound_udp_ports()),
        ];
        for (set, in_use) in sets {
            let Ok(listing) = output("nft", &["-j", "list", "set", "inet", "strata", set]) else {
                continue;
            };
            for port in set_elements(&listing) {
                if !in_use.contains(&port) {
                    let _ = nft(&format!("delete element inet strata {set} {{ {port} }}\n"));
                    reaped += 1;
                }
            }
        }
        reaped
    }

    /// How many namespaces to keep ready (0: none; every start makes its own).
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Tops the pool up in the background (one filler at a time).
    fn refill(&self) {
        if self.pool_size == 0 || self.filling.swap(true, Ordering::SeqCst) {
            return;
        }
        let network = self.clone();
        std::thread::spawn(move || {
            while network.pool.lock().expect("not poisoned").len() < network.pool_size {
                let holder = format!("{POOL_HOLDER}{:016x}", rand_u64());
                if network.closed.load(Ordering::SeqCst) {
                    break;
                }
                match network.make(&holder) {
                    Ok(made) if network.closed.load(Ordering::SeqCst) => network.detach(&made),
                    Ok(made) => network.pool.lock().expect("not poisoned").push(made),
                    Err(error) => {
                        tracing::warn!(%error, "cannot prepare a network namespace ahead");
                        break;
                    }
                }
            }
            network.filling.store(false, Ordering::SeqCst);
        });
    }

    /// The node's address on the bridge: where instances reach the node's mesh proxy.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Lets instances open connections to the node's mesh proxy at `gateway:port`, the one way
    /// out of their namespace.
    pub fn allow_mesh_port(&self, port: u16) -> Result<(), ContainerError> {
        // A driver shutting down opens nothing more (`close` would not see it).
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        nft(&format!(
            "add element inet strata mesh_ports {{ {port} }}\n"
        ))?;
        self.mesh_ports.lock().expect("not poisoned").push(port);
        Ok(())
    }

    /// Removes the namespaces kept ready and the mesh port it opened, and stops making more
    /// namespaces (the driver is going away).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // A filler in the middle of making a namespace removes it itself once made (it sees
        // `closed`): wait for it, bounded, so that nothing is left when the process exits
        // right after (a node stopped just after it started).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.filling.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.close_by_name();
        for port in std::mem::take(&mut *self.mesh_ports.lock().expect("not poisoned")) {
            let _ = nft(&format!(
                "delete element inet strata mesh_ports {{ {port} }}\n"
            ));
        }
        let pooled: Vec<InstanceNetwork> =
            std::mem::take(&mut *self.pool.lock().expect("not poisoned"));
        for network in pooled {
            self.detach(&network);
        }
    }

    /// Every lease: its holder and network.
    fn held(&self) -> Vec<(String, InstanceNetwork)> {
        let Ok(entries) = std::fs::read_dir(&self.leases) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let address = entry.file_name().to_string_lossy().parse().ok()?;
                let text = std::fs::read_to_string(entry.path()).ok()?;
                let mut lines = text.lines();
                let holder = lines.next()?.to_string();
                let netns = lines.next().unwrap_or_default().to_string();
                let host_veth = lines.next().unwrap_or_default().to_string();
                Some((
                    holder,
                    InstanceNetwork {
                        netns,
                        host_veth,
                        address,
                    },
                ))
            })
            .collect()
    }

    /// Makes the instance's namespace, veth pair and address. Idempotent for the same
    /// instance (an earlier half-made attempt is cleaned first).
    pub fn attach(&self, instance: &str) -> Result<InstanceNetwork, ContainerError> {
        for (holder, stale) in self.held() {
            if holder == instance {
                self.detach(&stale);
            }
        }
        let pooled = self.pool.lock().expect("not poisoned").pop();
        if let Some(network) = pooled {
            self.refill();
            let path = self.leases.join(network.address.to_string());
            std::fs::write(&path, lease_text(instance, &network))
                .map_err(|e| ContainerError::io("write lease", &path, e))?;
            return Ok(network);
        }
        let network = self.make(instance)?;
        self.refill();
        Ok(network)
    }

    /// Makes a namespace with its veth and address, leased to `holder`.
    fn make(&self, holder: &str) -> Result<InstanceNetwork, ContainerError> {
        let tag = short_hash(holder);
        let netns = format!("{NETNS_PREFIX}{tag}");
        let host_veth = format!("sv{tag}");
        let peer = format!("sp{tag}");
        self.detach_names(&netns, &host_veth);
        let address = self.lease(holder, &netns, &host_veth)?;
        // Recorded before it exists, so no agent ever sees it without an owner.
        let owner = self.registry.join(&netns);
        let lease = self.leases.join(address.to_string());
        std::fs::create_dir_all(&self.registry)
            .and_then(|()| std::fs::write(&owner, lease.display().to_string()))
            .map_err(|e| ContainerError::io("record the owner of", &owner, e))?;
        // Three processes instead of ten: `ip -batch` runs the host side and the namespace
        // side each in one netlink session (saves ~13 ms per start here).
        let made = (|| {
            run("ip", &["netns", "add", &netns])?;
            batch(
                None,
                &format!(
                    "link add {host_veth} type veth peer name {peer} netns {netns}\n\
                     link set {host_veth} master {bridge}\n\
                     link set dev {host_veth} type bridge_slave isolated on\n\
                     link set {host_veth} up\n",
                    bridge = self.bridge
                ),
            )?;
            batch(
                Some(&netns),
                &format!(
                    "link set {peer} name eth0\n\
                     link set eth0 address {mac}\n\
                     addr add {address}/{prefix} dev eth0\n\
                     link set eth0 up\n\
                     link set lo up\n\
                     route add default via {gateway}\n",
                    prefix = self.prefix_len,
                    gateway = self.gateway,
                    mac = mac_for(address),
                ),
            )
        })();
        let network = InstanceNetwork {
            netns,
            host_veth,
            address,
        };
        if let Err(error) = made {
            self.detach(&network);
            return Err(error);
        }
        Ok(network)
    }

    /// Removes the instance's namespace and veth and frees its address. Idempotent.
    pub fn detach(&self, network: &InstanceNetwork) {
        self.unforward(network.address);
        self.unredirect(network.address);
        self.detach_names(&network.netns, &network.host_veth);
        let lease = self.leases.join(network.address.to_string());
        let claim = self.address_claim(network.address);
        if std::fs::read_to_string(&claim).is_ok_and(|owner| Path::new(owner.trim()) == lease) {
            let _ = std::fs::remove_file(&claim);
        }
        let _ = std::fs::remove_file(&lease);
    }

    /// Claims `address` for the lease at `lease` host-wide: several agents of one host may
    /// share the bridge, and an address (who a connection comes from) must be one instance's.
    /// `false` when a live lease of another agent holds it; a claim whose lease is gone is
    /// taken over.
    fn claim_host_wide(&self, address: Ipv4Addr, lease: &Path) -> bool {
        let claim = self.address_claim(address);
        if let Some(dir) = claim.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Made whole, then linked into place (which fails if it exists): never seen empty.
        let whole = claim.with_file_name(format!("{address}.{}.partial", std::process::id()));
        let made = std::fs::write(&whole, lease.display().to_string())
            .and_then(|()| std::fs::hard_link(&whole, &claim));
        let _ = std::fs::remove_file(&whole);
        match made {
            Ok(()) => true,
            Err(_) => {
                let owner = std::fs::read_to_string(&claim).unwrap_or_default();
                let owner = Path::new(owner.trim());
                if owner == lease || !owner.exists() {
                    std::fs::write(&claim, lease.display().to_string()).is_ok()
                } else {
                    false
                }
            }
        }
    }

    /// Host-wide: the claim on `address` of this bridge, naming the lease that holds it.
    fn address_claim(&self, address: Ipv4Addr) -> PathBuf {
        self.registry
            .with_file_name("addresses")
            .join(&self.bridge)
            .join(address.to_string())
    }

    fn detach_names(&self, netns: &str, host_veth: &str) {
        if Path::new("/sys/class/net").join(host_veth).exists() {
            let _ = run("ip", &["link", "del", host_veth]);
        }
        if Path::new("/var/run/netns").join(netns).exists() {
            let _ = run("ip", &["netns", "del", netns]);
        }
        let _ = std::fs::remove_file(self.registry.join(netns));
    }

    /// Claims a free address for `instance` (a lease file created with `create_new`, so two
    /// instances never get the same one). An instance that already holds one keeps it.
    fn lease(
        &self,
        instance: &str,
        netns: &str,
        host_veth: &str,
    ) -> Result<Ipv4Addr, ContainerError> {
        let base = u32::from(self.gateway) & !((1u32 << (32 - self.prefix_len)) - 1);
        let size = 1u32 << (32 - self.prefix_len);
        if let Some((_, held)) = self
            .held()
            .into_iter()
            .find(|(holder, _)| holder == instance)
        {
            return Ok(held.address);
        }
        // Start from a point derived from the name: fewer collisions to walk past.
        let start = u32::from_str_radix(&short_hash(instance), 16).unwrap_or(0) % size;
        for step in 0..size {
            let offset = (start + step) % size;
            let address = Ipv4Addr::from(base + offset);
            if offset == 0 || offset == size - 1 || address == self.gateway {
                continue;
            }
            let path = self.leases.join(address.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) if !self.claim_host_wide(address, &path) => {
                    // Another agent of this host holds it on the shared bridge.
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                Ok(_) => {
                    let network = InstanceNetwork {
                        netns: netns.to_string(),
                        host_veth: host_veth.to_string(),
                        address,
                    };
                    std::fs::write(&path, lease_text(instance, &network))
                        .map_err(|e| ContainerError::io("write lease", &path, e))?;
                    return Ok(address);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ContainerError::io("write lease", &path, e)),
            }
        }
        Err(ContainerError::Network(format!(
            "no free address left in {}/{} for instance {instance}",
            self.gateway, self.prefix_len
        )))
    }
}

/// The names of the namespaces drivers make.
const NETNS_PREFIX: &str = "strata-";

/// The ports in an `nft -j list set` answer.
fn set_elements(listing: &str) -> Vec<u16> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(listing) else {
        return Vec::new();
    };
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["set"]["elem"].as_array())
        .flatten()
        .filter_map(|elem| elem.as_u64())
        .filter_map(|port| u16::try_from(port).ok())
        .collect()
}

/// The TCP ports something listens on in this network namespace.
fn listening_ports() -> std::collections::BTreeSet<u16> {
    let v4 = procfs::net::tcp().unwrap_or_default();
    let v6 = procfs::net::tcp6().unwrap_or_default();
    v4.into_iter()
        .chain(v6)
        .filter(|entry| entry.state == procfs::net::TcpState::Listen)
        .map(|entry| entry.local_address.port())
        .collect()
}

/// The UDP ports something is bound to in this network namespace.
fn bound_udp_ports() -> std::collections::BTreeSet<u16> {
    let v4 = procfs::net::udp().unwrap_or_default();
    let v6 = procfs::net::udp6().unwrap_or_default();
    v4.into_iter()
        .chain(v6)
        .map(|entry| entry.local_address.port())
        .collect()
}

fn lease_text(holder: &str, network: &InstanceNetwork) -> String {
    format!("{holder}\n{}\n{}\n", network.netns, network.host_veth)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// The nftables rules of the node's container network. The chains' rules are replaced as a
/// whole; the set of mesh proxy ports is kept (each agent of the host adds its own port).
pub fn firewall(bridge: &str, gateway: Ipv4Addr) -> String {
    let (network, prefix) = strata_core::api::SERVICE_ADDRESSES;
    let services = format!("{network}/{prefix}");
    format!(
        r#"add table inet strata
add set inet strata mesh_ports {{ type inet_service; }}
add chain inet strata input {{ type filter hook input priority 0; policy accept; }}
add chain inet strata forward {{ type filter hook forward priority 0; policy accept; }}
add chain inet strata prerouting {{ type nat hook prerouting priority -100; policy accept; }}
add map inet strata tcp_proxies {{ type ipv4_addr : inet_service; }}
add map inet strata resolvers {{ type ipv4_addr : inet_service; }}
add set inet strata resolver_ports {{ type inet_service; }}
flush chain inet strata prerouting
add rule inet strata prerouting iifname "{bridge}" ip daddr {services} meta l4proto tcp redirect to ip saddr map @tcp_proxies
add rule inet strata prerouting iifname "{bridge}" ip daddr {gateway} udp dport 53 redirect to ip saddr map @resolvers
add map inet strata node_ports {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}
add chain inet strata output_nat {{ type nat hook output priority -100; policy accept; }}
add chain inet strata postrouting {{ type nat hook postrouting priority 100; policy accept; }}
flush chain inet strata output_nat
flush chain inet strata postrouting
add rule inet strata output_nat meta l4proto tcp dnat ip to ip daddr . tcp dport map @node_ports
add rule inet strata postrouting oifname "{bridge}" ip saddr 127.0.0.0/8 masquerade
flush chain inet strata input
flush chain inet strata forward
add rule inet strata input iifname "{bridge}" ct state established,related accept
add rule inet strata input iifname "{bridge}" ip daddr {gateway} tcp dport @mesh_ports accept
add rule inet strata input iifname "{bridge}" ip daddr {gateway} udp dport @resolver_ports accept
add rule inet strata input iifname "{bridge}" drop
add rule inet strata forward iifname "{bridge}" drop
add rule inet strata forward oifname "{bridge}" drop
"#
    )
}

/// Eight hex digits naming an instance in interface and namespace names (at most 15 bytes).
fn short_hash(instance: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(instance.as_bytes());
    hex::encode(&digest[..4])
}

/// The instance's MAC address, derived from its IPv4 address (locally administered, `02:53`
/// then the four address bytes). An address is reused by later instances; with the same MAC,
/// the node's neighbour cache entry for it stays right, where a random MAC would leave a stale
/// entry and the first SYN to the new instance lost (a 1 s retransmission).
pub fn mac_for(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("02:53:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// `ip [-n NETNS] -batch -` with `commands`, one per line.
fn batch(netns: Option<&str>, commands: &str) -> Result<(), ContainerError> {
    let mut args = Vec::new();
    if let Some(netns) = netns {
        args.extend(["-n", netns]);
    }
    args.extend(["-batch", "-"]);
    feed("ip", &args, commands, "iproute2")
}

fn nft(rules: &str) -> Result<(), ContainerError> {
    feed("nft", &["-f", "-"], rules, "nftables")
}

/// Runs `program args` with `input` on its stdin; its failure names the program and what it
/// printed.
fn feed(program: &str, args: &[&str], input: &str, package: &str) -> Result<(), ContainerError> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool(program, package, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| ContainerError::Network(format!("{program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ContainerError::Network(format!("{program}: {e}")))?;
    if !out.status.success() {
        return Err(ContainerError::Network(format!(
            "`{program} {}` failed: {} (input: {})",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            input.lines().collect::<Vec<_>>().join("; ")
        )));
    }
    Ok(())
}

fn missing_tool(tool: &str, package: &str, error: std::io::Error) -> ContainerError {
    ContainerError::Network(format!(
        "cannot run `{tool}`: {error}; install it (Debian: apt-get install {package}; scripts/deps.sh does)"
    ))
}

fn output(program: &str, args: &[&str]) -> Result<String, ContainerError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| missing_tool(program, "iproute2", e))?;
    if !out.status.success() {
        return Err(ContainerError::Network(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(program: &str, args: &[&str]) -> Result<(), ContainerError> {
    output(program, args).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_elements_are_read_from_nft_json() {
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "mesh_ports", "table": "strata", "type": "inet_service", "handle": 3, "elem": [32821, 33051]}}]}"#;
        assert_eq!(set_elements(listing), vec![32821, 33051]);
        let empty = r#"{"nftables": [{"metainfo": {}}, {"set": {"name": "mesh_ports"}}]}"#;
        assert!(set_elements(empty).is_empty());
        assert!(set_elements("not json").is_empty());
    }

    #[test]
    fn macs_follow_addresses() {
        assert_eq!(mac_for(Ipv4Addr::new(10, 89, 0, 2)), "02:53:0a:59:00:02");
        assert_eq!(
            mac_for(Ipv4Addr::new(10, 89, 255, 254)),
            "02:53:0a:59:ff:fe"
        );
        assert_ne!(
            mac_for(Ipv4Addr::new(10, 89, 1, 2)),
            mac_for(Ipv4Addr::new(10, 89, 2, 1))
        );
    }

    #[test]
    fn names_fit_interface_limits() {
        for instance in ["a", "hello-1-3f1c64", &"x".repeat(200)] {
            let tag = short_hash(instance);
            assert_eq!(tag.len(), 8);
            assert!(format!("sv{tag}").len() <= 15);
        }
        assert_ne!(short_hash("a-1"), short_hash("a-2"));
    }

    #[test]
    fn leases_are_unique_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let network = NodeNetwork {
            bridge: "unused".into(),
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            prefix_len: 29, // 8 addresses: 6 usable, minus the gateway: 5
            leases: dir.path().to_path_buf(),
            pool: Arc::default(),
            filling: Arc::default(),
            closed: Arc::default(),
            pool_size: 0,
            mesh_ports: Arc::default(),
            by_name: Arc::default(),
            registry: dir.path().join("registry"),
        };
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..5 {
            let address = network.lease(&format!("i{i}"), "ns", "veth").unwrap();
            assert!(seen.insert(address), "{address} given twice");
            assert_ne!(address, network.gateway);
            assert_ne!(address, Ipv4Addr::new(10, 89, 0, 0));
            assert_ne!(address, Ipv4Addr::new(10, 89, 0, 7));
        }
        // The same instance keeps its address; a sixth is refused, clearly.
        let again = network.lease("i3", "ns", "veth").unwrap();
        assert!(seen.contains(&again));
        let error = network.lease("i5", "ns", "veth").unwrap_err().to_string();
        assert!(error.contains("no free address"), "{error}");
    }
}
