//! A node's TCP services by name (docs/mesh.md): its resolver for instances at the container
//! bridge's gateway (UDP 53), its TCP proxy at the gateway, and the firewall rule that sends
//! instances' connections to service addresses to that proxy. Only instances with their own
//! network namespace on the bridge (containers, sandboxed exec) can call by name: the node
//! knows who calls by the connection's source address.

use std::path::Path;
use std::sync::Arc;

use strata_mesh::ingress::{proxy_threads, serve_on_threads, Ingress};
use strata_mesh::proxy::Caller;
use strata_mesh::tcp::addresses::{ServiceAddresses, SERVICE_RANGE};
use strata_mesh::tcp::metrics::TcpMetrics;
use strata_mesh::tcp::{dns, TcpProxy};
use strata_mesh::{Denial, RoutingTable};
use tokio::net::{TcpListener, UdpSocket};

use crate::Failure;

/// Starts the node's resolver and TCP proxy for the instances on `container`'s bridge, on
/// ports of the gateway the kernel redirects this node's instances to (their DNS queries to
/// the gateway's port 53, their connections to service addresses): several agents of one host
/// may share the bridge, each serving its own instances.
pub async fn start(
    data_dir: &Path,
    container: &Arc<strata_container::ContainerDriver>,
    forwarder: Arc<Ingress>,
    table: Arc<RoutingTable>,
    metrics: TcpMetrics,
    on_denial: impl Fn(Denial) + Send + Sync + 'static,
    takeover: &mut Option<&mut super::handover::Takeover>,
) -> Result<(), Failure> {
    let gateway = container.gateway();
    let addresses = Arc::new(ServiceAddresses::new(
        SERVICE_RANGE,
        Some(data_dir.join("service-addresses")),
    ));
    let callers = container.clone();
    let caller_of: strata_mesh::tcp::CallerOf = Arc::new(move |address| {
        callers
            .caller_at(address)
            .map(|(env, service)| Caller { env, service })
    });
    let proxy = TcpProxy::new(forwarder, table, addresses, caller_of, metrics, on_denial);
    let listener = super::handover::listener(takeover, "tcp-proxy", async {
        TcpListener::bind((gateway, 0)).await.map_err(Failure::from)
    })
    .await?;
    let tcp_proxy_port = listener.local_addr()?.port();
    let resolver = UdpSocket::bind((gateway, 0)).await?;
    let resolver_port = resolver.local_addr()?.port();
    let serving = proxy.clone();
    serve_on_threads("tcp-proxy", listener, proxy_threads(), move |l| {
        serving.clone().serve(l)
    })?;
    let (env_proxy, ready_proxy, name_proxy) = (proxy.clone(), proxy.clone(), proxy);
    let env_of: dns::EnvOf = Arc::new(move |address| env_proxy.env_of(address));
    let ready: dns::Ready = Arc::new(move || ready_proxy.ready());
    let lookup: dns::NameLookup = Arc::new(move |env, name| name_proxy.address_for(env, name));
    tokio::spawn(dns::serve(resolver, env_of, ready, lookup));
    // Last: the kernel sends this node's instances here only once both answer.
    container
        .serve_by_name(strata_container::net::ByName {
            resolver_port,
            tcp_proxy_port,
        })
        .map_err(|error| Failure::Failed(anyhow::anyhow!(error)))?;
    tracing::info!(%gateway, resolver_port, tcp_proxy_port, "instances resolve TCP services by name and reach them through the node's tcp proxy");
    Ok(())
}
