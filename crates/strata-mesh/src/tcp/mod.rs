//! Services that speak any protocol over TCP (`protocol = "tcp"`), called by name: an instance
//! dials `redis:6379` and reaches a healthy instance of `redis` without knowing an address.
//!
//! - [`dns`]: the node's resolver answers `redis` (in the caller's environment) with the
//!   service's address on this node ([`addresses`]);
//! - the node's firewall sends every connection an instance opens to a service address to the
//!   node's TCP proxy ([`TcpProxy`]), which reads where it was dialled (the connection's
//!   original destination) and so which service and port it is for;
//! - the caller is known by the connection's source, the instance's own address on the bridge
//!   (an instance cannot take another's: its namespace is the node's, not its own to change);
//! - the proxy applies who-may-call-whom (a refused connection is closed and becomes a
//!   `policy.denied` event), picks an instance as requests are balanced, and carries the
//!   connection there: on this node directly, on another through that node's inter-node port
//!   over mutual TLS, where the same checks are made again ([`crate::peer`]).

pub mod addresses;
pub mod dns;
pub mod metrics;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use strata_core::api::default_host;
use tokio::net::{TcpListener, TcpStream};

use crate::ingress::Ingress;
use crate::policy;
use crate::proxy::{Caller, Denial};
use crate::routes::RoutingTable;
use addresses::ServiceAddresses;
use metrics::{Outcome, TcpMetrics};

/// The service whose instance has source address `IpAddr` on this node, if one does.
pub type CallerOf = Arc<dyn Fn(IpAddr) -> Option<Caller> + Send + Sync>;

/// The node's TCP proxy.
pub struct TcpProxy {
    forwarder: Arc<Ingress>,
    table: Arc<RoutingTable>,
    addresses: Arc<ServiceAddresses>,
    caller_of: CallerOf,
    metrics: TcpMetrics,
    on_denial: Box<dyn Fn(Denial) + Send + Sync>,
}

impl TcpProxy {
    /// A proxy that carries connections through `forwarder` (its balancer and peering),
    /// knowing services from `table` and their addresses from `addresses`.
    pub fn new(
        forwarder: Arc<Ingress>,
        table: Arc<RoutingTable>,
        addresses: Arc<ServiceAddresses>,
        caller_of: CallerOf,
        metrics: TcpMetrics,
        on_denial: impl Fn(Denial) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            forwarder,
            table,
            addresses,
            caller_of,
            metrics,
            on_denial: Box::new(on_denial),
        })
    }

    /// The address of the TCP service `name` (as [`dns::service_named`] reads it) for an
    /// instance of `env`, if it is one that is routed.
    pub fn address_for(&self, env: &str, name: &str) -> Option<Ipv4Addr> {
        let service = dns::service_named(name, env)?;
        let route = self.table.lookup(&default_host(service, env))?;
        route.tcp_port?;
        self.addresses.address_of(env, service)
    }

    /// Whether the node knows its services yet, for the resolver.
    pub fn ready(&self) -> bool {
        self.table.loaded()
    }

    /// The environment of the instance at `address`, for the resolver.
    pub fn env_of(&self, address: IpAddr) -> Option<String> {
        (self.caller_of)(address).map(|caller| caller.env)
    }

    /// Serves connections redirected to `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, peer) = crate::ingress::accept(&listener, "tcp proxy accept failed").await;
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            tokio::spawn(async move {
                let _open = crate::handover::OpenConnection::new();
                this.handle(stream, peer).await;
            });
        }
    }

    async fn handle(&self, mut stream: TcpStream, peer: SocketAddr) {
        let Some(dialled) = original_destination(&stream) else {
            tracing::debug!(%peer, "a tcp proxy connection without an original destination (not redirected) closed");
            return;
        };
        let Some(caller) = (self.caller_of)(peer.ip()) else {
            tracing::warn!(%peer, %dialled, "a tcp connection from an address that is no instance of this node was refused");
            return;
        };
        let Some((env, service)) = self.addresses.service_at(*dialled.ip()) else {
            tracing::debug!(%peer, %dialled, "a tcp connection to an address no service has on this node closed");
            return;
        };
        if env != caller.env {
            // Told in the caller's environment: another environment learns nothing of it.
            self.refuse(
                &caller,
                &caller.env,
                &service,
                format!("`{}` is in environment `{}`, `{service}` in `{env}`: services call their own environment's only", caller.service, caller.env),
            );
            return;
        }
        let Some(route) = self.table.lookup(&default_host(&service, &env)) else {
            tracing::debug!(%env, %service, "a tcp connection to a service no longer routed closed");
            self.metrics.connection(&env, &service, Outcome::Failed);
            return;
        };
        if route.tcp_port != Some(dialled.port()) {
            tracing::info!(%env, %service, port = dialled.port(), wanted = ?route.tcp_port, caller = %caller.service, "a tcp connection to a port the service does not take closed");
            self.metrics.connection(&env, &service, Outcome::Failed);
            return;
        }
        if let Err(rule) = policy::decide(&caller.service, &route) {
            self.refuse(&caller, &env, &service, rule);
            return;
        }
        let (endpoint, mut upstream) = match self.forwarder.open_tcp(&route, &caller.service).await
        {
            Ok(opened) => opened,
            Err(error) => {
                tracing::info!(%env, %service, caller = %caller.service, %error, "a tcp connection could not reach an instance");
                self.metrics.connection(&env, &service, Outcome::Failed);
                return;
            }
        };
        let _open = self.metrics.opened(&env, &service);
        match tokio::io::copy_bidirectional(&mut stream, &mut upstream).await {
            Ok((to, from)) => self.metrics.carried(&env, &service, to, from),
            Err(error) => {
                tracing::debug!(%error, %endpoint, "a tcp connection ended with an error")
            }
        }
    }

    /// Refuses `caller`'s connection to `service` of `env` by `rule`: counted and told.
    fn refuse(&self, caller: &Caller, env: &str, service: &str, rule: String) {
        self.metrics.connection(env, service, Outcome::Refused);
        (self.on_denial)(Denial {
            env: env.to_string(),
            caller: caller.service.clone(),
            callee: service.to_string(),
            rule,
        });
    }
}

/// Where `stream` was dialled before the firewall redirected it here (`SO_ORIGINAL_DST`).
fn original_destination(stream: &TcpStream) -> Option<SocketAddrV4> {
    let address =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::OriginalDst).ok()?;
    Some(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr)),
        u16::from_be(address.sin_port),
    ))
}
