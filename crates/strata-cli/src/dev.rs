//! `strata dev`: the whole platform on one machine, in one process: the control plane (API,
//! reconciler, liveness) on the embedded store, one node agent, and the ingress. The agent
//! and the ingress reach the control plane over its HTTP API, with the node's credential
//! (got with the join token), exactly as they do across machines. The CLI on this machine
//! finds the admin token through the context `strata dev` records.
//!
//! Ctrl-C (or SIGTERM) stops every instance and exits. A `kill -9` leaves instances running;
//! the next `strata dev` on the same data directory re-adopts them.

use std::path::PathBuf;

use anyhow::anyhow;
use strata_agent::AgentConfig;
use strata_mesh::RoutingTable;
use strata_sched::liveness::LivenessThresholds;

use crate::platform::{self, bind};
use crate::{CliResult, Failure};

/// `strata dev`'s flags.
pub struct DevArgs {
    pub data_dir: PathBuf,
    pub api_addr: String,
    pub ingress_addr: String,
    pub https_addr: String,
    pub exec_sandbox: platform::ExecSandbox,
    pub plane: platform::PlaneFlags,
}

pub async fn run(args: DevArgs) -> CliResult {
    platform::init_tracing(false);
    let data_dir = platform::absolute(args.data_dir)?;
    let api_listener = bind("api", &args.api_addr).await?;
    let ingress_listener = bind("ingress", &args.ingress_addr).await?;
    let ingress_local = ingress_listener.local_addr()?;
    let https_listener = bind("ingress (https)", &args.https_addr).await?;
    let https_local = https_listener.local_addr()?;
    // HTTPS for `*.localhost` with certificates of a CA of this machine's, kept beside the
    // data (trust `ingress-ca.crt` to browse without a warning).
    let certificates = strata_mesh::ingress::tls::IngressCertificates::local(&data_dir)
        .map_err(|error| Failure::Failed(anyhow!(error)))?;
    // On loopback the API answers only to its own address (no DNS rebinding, no cross-site
    // requests); on another address it is the operator's choice to expose it.
    let local_only = api_listener.local_addr()?.ip().is_loopback();
    let control = platform::start_control_plane(
        platform::ControlSettings {
            data_dir: &data_dir,
            store: None,
            liveness: LivenessThresholds::lenient(),
            ingress_port: Some(ingress_local.port()),
            node_cert_ttl: strata_control::DEFAULT_NODE_CERT_TTL,
            plane: args.plane.clone(),
            local_only,
            tls: platform::ApiTls::Plain,
        },
        api_listener,
    )
    .await?;
    let mut agent_config = AgentConfig::local(
        strata_core::NodeName::from_static("local"),
        &control.api_url,
        data_dir.join("agent"),
    );
    agent_config.token = Some(control.token.clone());
    let table = RoutingTable::new();
    let metrics = platform::NodeMetrics::new();
    // One node: every instance is local, no inter-node port.
    let started = platform::start_agent(
        agent_config,
        table.clone(),
        &metrics,
        None,
        None,
        args.exec_sandbox,
    )
    .await?;
    let (agent, agent_task) = (started.agent, started.task);
    platform::start_ingress(
        &started.access,
        table,
        ingress_listener,
        Some((https_listener, certificates.server_config())),
        &metrics,
        None,
    )?;

    let api_url = &control.api_url;
    println!("api: {api_url}");
    println!("ingress: http://{ingress_local}");
    println!(
        "ingress (https): https://{https_local} (certificates of {})",
        data_dir.join("ingress-ca.crt").display()
    );
    println!("data: {}", data_dir.display());
    platform::announce(&format!(
        "strata dev is up. Deploy with `strata deploy FILE` (STRATA_ADDR={api_url}); services are served at http://SERVICE.dev.localhost:{}/",
        ingress_local.port()
    ));
    tokio::select! {
        result = control.api => {
            return Err(Failure::Failed(anyhow!("the API server stopped: {result:?}")));
        }
        result = agent_task => {
            return Err(Failure::Failed(anyhow!("the node agent stopped: {result:?}")));
        }
        _ = platform::shutdown_signal() => {}
    }
    platform::announce("stopping every instance...");
    agent.stop_all().await;
    Ok(())
}
