//! A node's TCP services by name (docs/mesh.md): its resolver for instances at the container
//! bridge's gateway (UDP 53), its TCP proxy at the gateway, and the firewall rule that sends
//! instances' connections to service addresses to that proxy. Only instances with their own
//! network namespace on the bridge (containers, sandboxed exec) can call by name: the node
//! knows who calls by the connection's source address.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_mesh::ingress::{proxy_threads, serve_on_threads, Ingress};
use strata_mesh::proxy::Caller;
use strata_mesh::tcp::addresses::{ServiceAddresses, SERVICE_RANGE};
use strata_mesh::tcp::metrics::TcpMetrics;
use strata_mesh::tcp::{dns, TcpProxy};
use strata_mesh::{Denial, RoutingTable};
use tokio::net::{TcpListener, UdpSocket};

use crate::Failure;

/// Starts the node's resolver and TCP proxy for the instances on `container`'s bridge.
/// Fails only if the proxy's listener cannot be had; a resolver port taken is retried in the
/// background (an agent handing over to the next holds it until it exits).
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
    let port = listener.local_addr()?.port();
    let serving = proxy.clone();
    serve_on_threads("tcp-proxy", listener, proxy_threads(), move |l| {
        serving.clone().serve(l)
    })?;
    if let Err(error) = container.redirect_service_addresses(SERVICE_RANGE, port) {
        tracing::warn!(%error, "instances cannot call TCP services by name");
        return Ok(());
    }
    let (env_proxy, name_proxy) = (proxy.clone(), proxy);
    let env_of: dns::EnvOf = Arc::new(move |address| env_proxy.env_of(address));
    let lookup: dns::NameLookup = Arc::new(move |env, name| name_proxy.address_for(env, name));
    tokio::spawn(async move {
        let mut said = false;
        loop {
            match UdpSocket::bind((gateway, 53)).await {
                Ok(socket) => {
                    tracing::info!(%gateway, port, "instances resolve TCP services by name here; their connections go to the tcp proxy");
                    dns::serve(socket, env_of, lookup).await;
                    return;
                }
                Err(error) => {
                    if !std::mem::replace(&mut said, true) {
                        tracing::warn!(%error, %gateway, "the resolver for instances cannot listen yet; trying again every second");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}
