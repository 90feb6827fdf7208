//! `strata dev`: the whole platform on one machine, in one process: the control plane (API,
//! reconciler, liveness) on the embedded store, one node agent, and the ingress. The agent
//! and the ingress reach the control plane over its HTTP API, with the join token, exactly as
//! they do across machines.
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

pub async fn run(
    data_dir: PathBuf,
    api_addr: &str,
    ingress_addr: &str,
    scale_down_window: std::time::Duration,
) -> CliResult {
    platform::init_tracing();
    let data_dir = platform::absolute(data_dir)?;
    let api_listener = bind("api", api_addr).await?;
    let ingress_listener = bind("ingress", ingress_addr).await?;
    let ingress_local = ingress_listener.local_addr()?;
    let control = platform::start_control_plane(
        &data_dir,
        None,
        api_listener,
        LivenessThresholds::lenient(),
        Some(ingress_local.port()),
        strata_control::DEFAULT_NODE_CERT_TTL,
        scale_down_window,
    )
    .await?;
    let mut agent_config = AgentConfig::local("local", &control.api_url, data_dir.join("agent"));
    agent_config.token = Some(control.token.clone());
    let table = RoutingTable::new();
    let metrics = platform::NodeMetrics::new();
    // One node: every instance is local, no inter-node port.
    let started = platform::start_agent(agent_config, table.clone(), &metrics, None).await?;
    let (agent, agent_task) = (started.agent, started.task);
    platform::start_ingress(
        &control.api_url,
        Some(&control.token),
        table,
        ingress_listener,
        &metrics,
        None,
    )?;

    let api_url = &control.api_url;
    println!("api: {api_url}");
    println!("ingress: http://{ingress_local}");
    println!("data: {}", data_dir.display());
    eprintln!(
        "strata dev is up. Deploy with `strata deploy FILE` (STRATA_ADDR={api_url}); services are served at http://SERVICE.dev.localhost:{}/",
        ingress_local.port()
    );
    tokio::select! {
        result = control.api => {
            return Err(Failure::Failed(anyhow!("the API server stopped: {result:?}")));
        }
        result = agent_task => {
            return Err(Failure::Failed(anyhow!("the node agent stopped: {result:?}")));
        }
        _ = platform::shutdown_signal() => {}
    }
    eprintln!("stopping every instance...");
    agent.stop_all().await;
    Ok(())
}
