//! `strata server` (the control plane alone), `strata agent` (a node joining it), and
//! `strata node` (list, drain, undrain).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use strata_agent::AgentConfig;
use strata_sched::liveness::LivenessThresholds;

use crate::platform::{self, bind};
use crate::{CliResult, Failure};

pub struct ServerArgs {
    pub data_dir: PathBuf,
    /// `etcd://...` or `etcds://...` with its TLS files, or `None` for the embedded store.
    pub store: Option<platform::EtcdArgs>,
    pub api_addr: String,
    pub suspect_after: Duration,
    pub down_after: Duration,
    pub node_cert_ttl: Duration,
    pub plane: platform::PlaneFlags,
    /// More names for the API's certificate (DNS names or IPs other hosts reach it by).
    pub api_sans: Vec<String>,
    /// The operator's certificate, key and CA for the API, instead of the cluster CA's.
    pub tls_files: Option<(PathBuf, PathBuf, PathBuf)>,
}

pub async fn server(args: ServerArgs) -> CliResult {
    if args.down_after <= args.suspect_after {
        return Err(Failure::BadInput(anyhow!(
            "error: --down-after ({:?}) must be longer than --suspect-after ({:?})",
            args.down_after,
            args.suspect_after
        )));
    }
    platform::init_tracing(false);
    let data_dir = platform::absolute(args.data_dir)?;
    let listener = bind("api", &args.api_addr).await?;
    let liveness = LivenessThresholds {
        suspect_after_ms: args.suspect_after.as_millis() as u64,
        down_after_ms: args.down_after.as_millis() as u64,
    };
    let control = platform::start_control_plane(
        platform::ControlSettings {
            data_dir: &data_dir,
            store: args.store.as_ref(),
            liveness,
            ingress_port: None,
            node_cert_ttl: args.node_cert_ttl,
            plane: args.plane.clone(),
            local_only: false,
            tls: match args.tls_files.clone() {
                Some((cert, key, ca)) => platform::ApiTls::Files { cert, key, ca },
                None => platform::ApiTls::ClusterCa {
                    extra_names: args.api_sans.clone(),
                },
            },
        },
        listener,
    )
    .await?;
    println!("api: {}", control.api_url);
    println!("join token: {}", control.token);
    platform::announce(&format!(
        "strata server is up. Join nodes with (the join token file is {}):\n  strata agent --join {} --token-file JOIN_TOKEN_FILE --advertise-addr NODE_IP\nThis machine's CLI uses the admin token in {} (`strata token create` makes others).",
        data_dir.join("join-token").display(),
        control.api_url,
        data_dir.join("admin-token").display()
    ));
    tokio::select! {
        result = control.api => Err(Failure::Failed(anyhow!("the API server stopped: {result:?}"))),
        _ = platform::shutdown_signal() => {
            // Another server leads at once, not when this one's lease runs out.
            control.plane.resign().await;
            Ok(())
        }
    }
}

pub fn server_token(data_dir: &Path) -> CliResult {
    let path = data_dir.join("join-token");
    let token = std::fs::read_to_string(&path).map_err(|error| {
        Failure::Failed(anyhow!(
            "cannot read the join token at {}: {error}\n  hint: start `strata server --data-dir {}` once; it makes the token",
            path.display(),
            data_dir.display()
        ))
    })?;
    println!("{}", token.trim());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The control plane's URL, e.g. http://10.0.0.1:7700 (several, comma-separated).
    #[arg(long)]
    pub join: String,
    /// The cluster's join token (`strata server token` prints it). Prefer --token-file or
    /// STRATA_JOIN_TOKEN: a flag's value shows in `ps`. Only the node's first start needs
    /// it; the node keeps its own credential in --data-dir.
    #[arg(long, env = "STRATA_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the join token.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// The node's name (default: the hostname).
    #[arg(long)]
    pub name: Option<String>,
    /// Node labels, KEY=VALUE, comma-separated or repeated (e.g. zone=eu-1).
    #[arg(long)]
    pub labels: Vec<String>,
    /// A Linux capability past the ordinary set (SYS_ADMIN, NET_ADMIN, SYS_PTRACE, ...) that
    /// container services may be granted on this node, comma-separated or repeated. Without
    /// it, they are placed elsewhere, and refused here.
    #[arg(long, value_name = "CAPABILITY")]
    pub allow_capability: Vec<String>,
    /// Let container services run without a user namespace (`[container] userns = false`):
    /// their root is then this host's root. Without it, they are placed elsewhere, and
    /// refused here.
    #[arg(long)]
    pub allow_host_root: bool,
    /// Run exec instances sandboxed: each as its own user, in its own cgroup, mount and
    /// network namespaces, the host read-only (needs what containers need: root, cgroups,
    /// nftables).
    #[arg(long, value_enum, default_value = "on")]
    pub exec_sandbox: platform::ExecSandbox,
    /// The IP address other nodes reach this one at (its ingress, API and inter-node port;
    /// instances listen on loopback, reached through the node's proxies).
    #[arg(long, default_value = "127.0.0.1")]
    pub advertise_addr: String,
    /// Where the agent's own API (logs) listens (default ADVERTISE_ADDR:7701).
    #[arg(long)]
    pub api_addr: Option<String>,
    /// Where this node's ingress listens (default ADVERTISE_ADDR:8080).
    #[arg(long)]
    pub ingress_addr: Option<String>,
    /// Serve HTTPS on the ingress (HTTP/2 or HTTP/1.1) with the certificates of this
    /// directory: each NAME.crt (PEM, leaf first) with its NAME.key, chosen by the name asked
    /// (SNI; a wildcard covers one label).
    #[arg(long)]
    pub tls_cert_dir: Option<PathBuf>,
    /// Where the ingress serves HTTPS with --tls-cert-dir (default ADVERTISE_ADDR:8443).
    #[arg(long)]
    pub https_addr: Option<String>,
    /// Where this node's proxy takes calls from other nodes' proxies, mutual TLS only
    /// (default ADVERTISE_ADDR:7443).
    #[arg(long)]
    pub mesh_addr: Option<String>,
    #[arg(long, default_value = ".strata-agent")]
    pub data_dir: PathBuf,
    /// How often the agent heartbeats.
    #[arg(long, default_value = "100ms", value_parser = crate::humantime_duration)]
    pub heartbeat_interval: Duration,
    /// On SIGTERM, how long to wait for the control plane to move this node's instances
    /// elsewhere (replacements serving first) before stopping what is left.
    #[arg(long, default_value = "60s", value_parser = crate::humantime_duration)]
    pub stop_timeout: Duration,
    /// On SIGTERM, leave the instances running for the next agent on this data directory to
    /// adopt (an upgrade of the agent in place) instead of moving them off the node.
    #[arg(long)]
    pub keep_instances: bool,
}

/// `SYS_ADMIN,NET_ADMIN` (and repeated flags) -> the labels that allow them (see
/// `strata_core::capability`).
pub fn capability_labels(values: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    use strata_core::capability::{allowance_label, needs_allowance, ALLOWED};
    let mut labels = BTreeMap::new();
    for item in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let upper = item.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        if !strata_core::spec::is_capability(bare) {
            return Err(Failure::BadInput(anyhow!(
                "error: --allow-capability `{item}` is not a Linux capability
  hint: name it as capabilities(7) does, without CAP_, e.g. --allow-capability SYS_ADMIN"
            )));
        }
        if needs_allowance(bare) {
            labels.insert(allowance_label(bare), ALLOWED.to_string());
        }
    }
    Ok(labels)
}

/// A node's labels: its own (`--labels`), those allowing capabilities
/// (`--allow-capability`) and running containers as the host's root (`--allow-host-root`).
pub fn node_labels(
    labels: &[String],
    capabilities: &[String],
    host_root: bool,
) -> Result<BTreeMap<String, String>, Failure> {
    let mut all = parse_labels(labels)?;
    all.extend(capability_labels(capabilities)?);
    if host_root {
        all.insert(
            strata_core::capability::HOST_ROOT_LABEL.to_string(),
            strata_core::capability::ALLOWED.to_string(),
        );
    }
    Ok(all)
}

/// `zone=a,disk=ssd` (and repeated flags) -> labels.
pub fn parse_labels(values: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut labels = BTreeMap::new();
    for item in values
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|s| !s.is_empty())
    {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            Failure::BadInput(anyhow!(
                "error: label `{item}` is not KEY=VALUE\n  hint: --labels zone=eu-1,disk=ssd"
            ))
        })?;
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        };
        if !valid(key) || !valid(value) {
            return Err(Failure::BadInput(anyhow!(
                "error: label `{item}`: keys and values are 1-63 letters, digits, `.`, `_`, `-` or `/`"
            )));
        }
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

pub async fn agent(args: AgentArgs) -> CliResult {
    let labels = node_labels(&args.labels, &args.allow_capability, args.allow_host_root)?;
    let advertise: std::net::IpAddr = args.advertise_addr.parse().map_err(|_| {
        Failure::BadInput(anyhow!(
            "error: --advertise-addr `{}` is not an IP address\n  hint: the address other nodes reach this one at, e.g. 10.0.0.2",
            args.advertise_addr
        ))
    })?;
    // Read before anything starts: a certificate that cannot serve is bad input, said at once.
    let certificates = match &args.tls_cert_dir {
        Some(dir) => Some(
            strata_mesh::ingress::tls::IngressCertificates::from_dir(dir).map_err(|error| {
                Failure::BadInput(anyhow!(
                    "error: --tls-cert-dir: {error}\n  hint: each NAME.crt (PEM, leaf first) needs its own NAME.key beside it"
                ))
            })?,
        ),
        None => None,
    };
    platform::init_tracing(true);
    let data_dir = platform::absolute(args.data_dir)?;
    strata_agent::own_log::keep_in(&data_dir);
    // An agent already running on this data directory hands the node over (an upgrade in
    // place): its listening sockets, then its instances.
    let mut takeover = platform::handover::Takeover::connect(&data_dir)?;
    if takeover.is_some() {
        platform::announce(&format!(
            "taking the node over from the agent running on {}",
            data_dir.display()
        ));
    }
    let name = args.name.unwrap_or_else(hostname);
    let api_addr: SocketAddr = match &args.api_addr {
        Some(addr) => addr.parse().map_err(|_| {
            Failure::BadInput(anyhow!("error: --api-addr `{addr}` is not HOST:PORT"))
        })?,
        None => SocketAddr::new(advertise, 7701),
    };
    let name = strata_core::NodeName::new(name).map_err(|error| {
        Failure::BadInput(anyhow!(
            "error: {error}\n  hint: name the node with --name (the machine's host name is the default)"
        ))
    })?;
    let mut config = AgentConfig::local(name.clone(), &args.join, data_dir.clone());
    config.labels = labels;
    config.listen_addr = api_addr;
    config.advertise_host = advertise.to_string();
    // Instances listen on loopback: this node's proxies reach them there, other nodes only
    // through its inter-node port (mutual TLS); nothing else on the network can.
    config.bind_host = "127.0.0.1".to_string();
    config.heartbeat_interval = args.heartbeat_interval;
    config.token = match (&args.token, &args.token_file) {
        (Some(token), _) => Some(token.trim().to_string()),
        (None, Some(file)) => Some(
            std::fs::read_to_string(file)
                .map_err(|error| {
                    Failure::BadInput(anyhow!(
                        "error: cannot read --token-file {}: {error}",
                        file.display()
                    ))
                })?
                .trim()
                .to_string(),
        ),
        (None, None) if data_dir.join("node-credential").exists() => None,
        (None, None) => {
            return Err(Failure::BadInput(anyhow!(
                "error: a node's first start needs the cluster's join token\n  hint: --token-file FILE or STRATA_JOIN_TOKEN (`strata server token` prints it)"
            )))
        }
    };
    let mesh_addr = args
        .mesh_addr
        .unwrap_or_else(|| format!("{advertise}:7443"));
    let peer_listener = platform::handover::listener(
        &mut takeover.as_mut(),
        "mesh-peers",
        bind("mesh", &mesh_addr),
    )
    .await?;
    config.mesh_addr = Some(peer_listener.local_addr()?.to_string());
    let join_token = config
        .token
        .as_deref()
        .map(strata_core::auth::JoinToken::parse);
    let ca = platform::control_plane_ca(&args.join, join_token.as_ref(), &data_dir).await?;
    config.control_ca = ca.clone();
    let table = strata_mesh::RoutingTable::new();
    let metrics = platform::NodeMetrics::new();
    let started = platform::start_agent(
        config,
        table.clone(),
        &metrics,
        Some(peer_listener),
        takeover.as_mut(),
        args.exec_sandbox,
    )
    .await?;
    let (agent, agent_task, access) = (started.agent, started.task, started.access);
    let ingress_addr = args
        .ingress_addr
        .unwrap_or_else(|| format!("{advertise}:8080"));
    let ingress = platform::handover::listener(
        &mut takeover.as_mut(),
        "ingress",
        bind("ingress", &ingress_addr),
    )
    .await?;
    let ingress_local = ingress.local_addr()?;
    let peering = started.identity.map(|identity| platform::Peering {
        node: &name,
        identity,
        instances_listen_on: "127.0.0.1",
    });
    let https = match certificates {
        Some(certificates) => {
            let addr = args
                .https_addr
                .clone()
                .unwrap_or_else(|| format!("{advertise}:8443"));
            let listener = platform::handover::listener(
                &mut takeover.as_mut(),
                "ingress-tls",
                bind("ingress (https)", &addr),
            )
            .await?;
            Some((listener, certificates.server_config()))
        }
        None => None,
    };
    platform::start_ingress(&access, table.clone(), ingress, https, &metrics, peering)?;
    if let Some(takeover) = takeover {
        // Accept once the routing table is loaded: until then the old agent serves.
        let mut routes = table.subscribe();
        let loaded =
            tokio::time::timeout(Duration::from_secs(10), routes.wait_for(|g| *g > 0)).await;
        if loaded.is_err() {
            tracing::warn!("no routing table after 10 s; taking the node over anyway");
        }
        takeover.done()?;
        platform::announce("took the node over; the agent before this one stops");
    }
    // Said on standard output for whoever started the agent; one that went away (a pipe
    // closed) is no reason to stop.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "agent: {} (node {name})", agent.agent_url());
        let _ = writeln!(out, "ingress: http://{ingress_local}");
        let _ = out.flush();
    }
    // Under systemd (Type=notify): this process is the service's, and it is up.
    if let Err(error) = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::MainPid(std::process::id()),
            sd_notify::NotifyState::Ready,
        ],
    ) {
        tracing::warn!(%error, "cannot tell systemd the agent is ready");
    }
    let mut successor = Box::pin(platform::handover::serve(&data_dir, agent.clone()));
    let mut agent_task = agent_task;
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let done = loop {
        tokio::select! {
            handed = &mut successor => {
                handed?;
                hand_off(args.stop_timeout).await;
                return Ok(());
            }
            done = agent.decommissioned() => break done,
            result = &mut agent_task => return match result {
                Ok(Err(error)) => Err(Failure::Failed(anyhow!("{error}"))),
                other => Err(Failure::Failed(anyhow!("the node agent stopped: {other:?}"))),
            },
            _ = hangups.recv() => {
                // `systemctl reload`: the binary on disk (an upgrade) takes the node over.
                match platform::handover::start_successor() {
                    Ok(pid) => platform::announce(&format!(
                        "SIGHUP: started the agent binary on disk again (pid {pid}); it takes the node over"
                    )),
                    Err(error) => tracing::warn!(%error, "SIGHUP: cannot start the agent binary again"),
                }
            }
            _ = platform::shutdown_signal() => {
                if args.keep_instances {
                    platform::announce(&format!(
                        "stopping; {} instance(s) keep running for the next agent on {} to adopt",
                        agent.instance_count(),
                        data_dir.display()
                    ));
                    return Ok(());
                }
                leave(&agent, &access.client, &name, args.stop_timeout).await;
                return Ok(());
            }
        }
    };
    // Decommissioned. Nothing of this process may hold a file under the data directory
    // when its device is wiped: the handover listener goes, the drivers shut down.
    drop(successor);
    platform::handover::stop_offering(&data_dir);
    agent.stop_all().await;
    let done = match done.device_pending {
        true => agent
            .finish_device_wipe(done)
            .await
            .map_err(|why| Failure::Failed(anyhow!("node {name}: {why}")))?,
        false => done,
    };
    let device = match &done.wipe.device {
        Some(device) => format!(", then device {device}"),
        None => String::new(),
    };
    platform::announce(&format!(
        "node {name} decommissioned: archive {} kept; {} file(s), {} bytes wiped{device}; its identity is revoked. This agent stops.",
        done.archive, done.wipe.files, done.wipe.bytes
    ));
    Ok(())
}

/// After a new agent process took the node over: accept no more, let the connections this
/// process still serves end after their next answer (at most `timeout`), and go, leaving
/// the instances to the new process.
async fn hand_off(timeout: Duration) {
    strata_mesh::handover::stop_accepting();
    let deadline = tokio::time::Instant::now() + timeout.min(Duration::from_secs(30));
    while strata_mesh::handover::connections_open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    platform::announce(&format!(
        "handed the node over to the new agent process ({} connection(s) still open); stopping",
        strata_mesh::handover::connections_open()
    ));
}

/// A graceful leave: the control plane moves this node's instances elsewhere (replacements
/// serving before each one here stops, as in a drain) while the agent goes on running them;
/// what is still here after `timeout` (or when the control plane cannot be told) is stopped.
async fn leave(
    agent: &strata_agent::Agent,
    control: &strata_agent::client::ControlClient,
    name: &strata_core::NodeName,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    match control.leave(name).await {
        Ok(leaving) if leaving.nodes_taking_work == 0 => platform::announce(
            "leaving: no other node takes work, so this node's instances cannot move",
        ),
        Ok(_) => {
            platform::announce(&format!(
                "leaving: moving {} instance(s) to other nodes before stopping (at most {})",
                agent.instance_count(),
                humantime::format_duration(timeout)
            ));
            while agent.instance_count() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(error) => tracing::warn!(
            %error,
            "cannot tell the control plane this node is leaving; stopping its instances now"
        ),
    }
    let left = agent.instance_count();
    if left > 0 {
        platform::announce(&format!(
            "stopping the {left} instance(s) still on this node..."
        ));
    } else {
        platform::announce("every instance moved to other nodes; stopping");
    }
    agent.stop_all().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowing_host_root_labels_the_node() {
        let labels = node_labels(&["zone=a".into()], &["SYS_ADMIN".into()], true).unwrap();
        assert!(strata_core::capability::allows_host_root(&labels));
        assert_eq!(labels["zone"], "a");
        assert_eq!(labels["capabilities.strata/SYS_ADMIN"], "allowed");
        let strict = node_labels(&["zone=a".into()], &[], false).unwrap();
        assert!(!strata_core::capability::allows_host_root(&strict));
    }

    #[test]
    fn an_allowed_capability_becomes_the_label_that_allows_it() {
        let allowed =
            capability_labels(&["sys_admin,CAP_NET_ADMIN".into(), "CHOWN".into()]).unwrap();
        let keys: Vec<&str> = allowed.keys().map(String::as_str).collect();
        // CHOWN is ordinary: every node grants it, no label needed.
        assert_eq!(
            keys,
            [
                "capabilities.strata/NET_ADMIN",
                "capabilities.strata/SYS_ADMIN"
            ]
        );
        assert!(matches!(
            capability_labels(&["ROOT".into()]),
            Err(Failure::BadInput(_))
        ));
    }
}
