//! The pieces `strata dev`, `strata server` and `strata agent` are made of, started the same
//! way by each: the control plane (API, reconciler, liveness), a node agent, an ingress.
//!
//! - [`control`]: a control plane (store, credentials, CA, HTTPS API, controllers).
//! - [`node`]: a node (agent, drivers, mesh proxy, traffic reports, ingress).
//! - [`trust`]: a node's trust in the control plane and its identity there (the CA checked
//!   against the join token, its credential, its certificate, the TLS of its own API).

mod control;
pub mod handover;
mod node;
mod tcp_mesh;
mod trust;

pub use control::*;
pub use node::*;
pub use trust::*;

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use tokio::net::TcpListener;

use crate::Failure;

pub async fn bind(what: &str, addr: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).await.map_err(|error| {
        let hint = if error.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "\n  hint: another process listens there; pick another address with --{what}-addr"
            )
        } else {
            String::new()
        };
        Failure::Failed(anyhow!(
            "cannot listen for the {what} on {addr}: {error}{hint}"
        ))
    })
}

pub fn absolute(dir: PathBuf) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    Ok(dir.canonicalize().unwrap_or(dir))
}

pub async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// How the long-running commands (`server`, `agent`, `dev`) write their log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people; coloured only on a terminal (and never with `NO_COLOR` set).
    #[default]
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Sets the log format (`--log-format`) before a command starts its log.
pub fn set_log_format(format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
}

/// Tells the operator of a long-running command something (it is up, it is stopping): a
/// plain line on standard error, or a log record when the log is JSON, so that every line
/// of a JSON log is JSON.
pub fn announce(message: &str) {
    match LOG_FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => eprintln!("{message}"),
        LogFormat::Json => tracing::info!("{message}"),
    }
}

/// Logs to standard error (text, or JSON with `--log-format json`), and with `own_log` (an
/// agent) to the agent's own log file too (`strata_agent::own_log`).
pub fn init_tracing(own_log: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,strata::platform=info,strata::cluster=info,strata::dev=info,strata_control=info,strata_agent=info,strata_mesh=info,strata_wasm=info,strata_cli=info",
        )
    });
    let writer = match own_log {
        true => BoxMakeWriter::new(std::io::stderr.and(strata_agent::own_log::writer)),
        false => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    match LOG_FORMAT.get().copied().unwrap_or_default() {
        LogFormat::Text => builder
            .with_ansi(
                !own_log
                    && std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
