//! `strata dev`: the whole platform on one machine, in one process: the control plane (API and
//! reconciler) on the embedded store, one node agent, and the ingress. The agent and the
//! ingress reach the control plane over its HTTP API exactly as they do across machines.
//!
//! Ctrl-C (or SIGTERM) stops every instance and exits. A `kill -9` leaves instances running;
//! the next `strata dev` on the same data directory re-adopts them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use strata_agent::{Agent, AgentConfig};
use strata_control::{reconcile, ControlConfig, ControlPlane};
use strata_mesh::{Ingress, IngressConfig, RouteSource, RoutingTable};
use strata_store::RedbStore;
use tokio::net::TcpListener;

use crate::{CliResult, Failure};

async fn bind(what: &str, addr: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|error| {
        let hint = if error.kind() == std::io::ErrorKind::AddrInUse {
            format!("\n  hint: another process listens there (another `strata dev`?); pick another with --{what}-addr")
        } else {
            String::new()
        };
        Failure::Failed(anyhow!("cannot listen for the {what} on {addr}: {error}{hint}"))
    })
}

pub async fn run(data_dir: PathBuf, api_addr: &str, ingress_addr: &str) -> CliResult {
    init_tracing();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let api_listener = bind("api", api_addr).await?;
    let ingress_listener = bind("ingress", ingress_addr).await?;
    let api_url = format!("http://{}", api_listener.local_addr()?);
    let ingress_local = ingress_listener.local_addr()?;

    let store = RedbStore::open(&data_dir.join("store.redb"))
        .await
        .with_context(|| format!("cannot open the state store in {}", data_dir.display()))?;
    let plane = ControlPlane::new(
        Arc::new(store),
        ControlConfig {
            data_dir: data_dir.clone(),
            liveness: Default::default(),
            ingress_port: Some(ingress_local.port()),
        },
    )?;
    let router = strata_control::api::router(plane.clone());
    let api = tokio::spawn(async move { axum::serve(api_listener, router).await });
    tokio::spawn(reconcile::run(plane.clone()));

    let (agent, agent_listener) =
        Agent::start(AgentConfig::local("local", &api_url, agent_dir(&data_dir))).await?;
    let agent_task = tokio::spawn(agent.clone().run(agent_listener));

    let table = RoutingTable::new();
    tokio::spawn(RouteSource::new(&api_url).run(table.clone(), Duration::from_secs(2)));
    let ingress = Ingress::new(table, IngressConfig::default());
    tokio::spawn(ingress.serve(ingress_listener));

    println!("api: {api_url}");
    println!("ingress: http://{ingress_local}");
    println!("data: {}", data_dir.display());
    eprintln!(
        "strata dev is up. Deploy with `strata deploy FILE` (STRATA_ADDR={api_url}); services are served at http://SERVICE.dev.localhost:{}/",
        ingress_local.port()
    );

    tokio::select! {
        result = api => {
            return Err(Failure::Failed(anyhow!("the API server stopped: {result:?}")));
        }
        result = agent_task => {
            return Err(Failure::Failed(anyhow!("the node agent stopped: {result:?}")));
        }
        _ = shutdown_signal() => {}
    }
    eprintln!("stopping every instance...");
    agent.stop_all().await;
    Ok(())
}

fn agent_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent")
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,strata_control=info,strata_agent=info,strata_mesh=info,strata_cli=info",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
