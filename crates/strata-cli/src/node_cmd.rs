//! `strata node ...`: the nodes of the cluster listed, drained, removed and decommissioned.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Subcommand;
use strata_core::decommission::{
    DecommissionOutcome, DecommissionRecord, DecommissionRequest, DecommissionStatus, WipeScope,
};
use strata_core::{InstanceView, Node};

use crate::api::Api;
use crate::{CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// List nodes: name, agent address, state, epoch, instances, labels.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Move every instance off a node with no downtime, and keep new work off it.
    Drain {
        node: String,
        /// Give up waiting after this long.
        #[arg(long, default_value = "2m", value_parser = crate::humantime_duration)]
        timeout: std::time::Duration,
    },
    /// Let a drained node take work again.
    Undrain { node: String },
    /// Remove a down node from the cluster's records (refused while it is alive or holds
    /// instances). Down nodes are also forgotten after the server's --forget-down-after.
    Rm { node: String },
    /// Take a node out of service for good: drain it (replacements first), archive what it
    /// held (signed by the node, countersigned, kept: `strata archive ls`), wipe its data and
    /// revoke its identity. Follows it until it is done.
    Decommission {
        node: String,
        /// Go on even though some instances have no other node to run on: they stop.
        #[arg(long)]
        force: bool,
        /// The node cannot be reached: revoke it now, with nothing archived or wiped.
        #[arg(long)]
        unreachable: bool,
        /// Give up following it after this long (it goes on).
        #[arg(long, default_value = "10m", value_parser = crate::humantime_duration)]
        timeout: Duration,
        /// Start it and return at once.
        #[arg(long)]
        detach: bool,
        /// What the node wipes once its archive is kept: `files` (every file of its data
        /// directory) or `device` (then the whole device the data directory has to itself).
        #[arg(long, default_value = "files", value_parser = str::parse::<WipeScope>)]
        wipe: WipeScope,
        /// Also fetch the node's archive into this directory once it is kept (it stays in
        /// the control plane's blob store as well).
        #[arg(long, value_name = "DIR")]
        archive_to: Option<std::path::PathBuf>,
    },
    /// The decommissioned nodes: how each ended, its archive and its wipe.
    Decommissions {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(api: &Api, action: NodeAction) -> CliResult {
    match action {
        NodeAction::Ls { json } => node_ls(api, json).await,
        NodeAction::Drain { node, timeout } => node_drain(api, &node, true, timeout).await,
        NodeAction::Undrain { node } => node_drain(api, &node, false, Duration::ZERO).await,
        NodeAction::Rm { node } => node_rm(api, &node).await,
        NodeAction::Decommission {
            node,
            force,
            unreachable,
            timeout,
            detach,
            wipe,
            archive_to,
        } => {
            if let Some(dir) = archive_to.as_ref() {
                if !dir.is_dir() {
                    return Err(Failure::BadInput(anyhow!(
                        "error: --archive-to {}: not a directory",
                        dir.display()
                    )));
                }
                if detach || unreachable {
                    return Err(Failure::BadInput(anyhow!(
                        "error: --archive-to fetches the archive once it is kept: not with --detach (fetch it later with `strata archive get`) nor --unreachable (nothing is archived)"
                    )));
                }
            }
            let request = DecommissionRequest {
                force,
                unreachable,
                wipe,
            };
            let archive = decommission(api, &node, &request, timeout, detach).await?;
            match (archive, archive_to) {
                (Some(id), Some(dir)) => {
                    let path = dir.join(format!("{id}.strata-archive"));
                    crate::archive_cmd::fetch(api, &id, &path).await
                }
                _ => Ok(()),
            }
        }
        NodeAction::Decommissions { json } => decommissions(api, json).await,
    }
}

async fn node_ls(api: &Api, json: bool) -> CliResult {
    let nodes: Vec<Node> = api.get("/v1/nodes").await?;
    let instances: Vec<InstanceView> = api.get("/v1/instances").await?;
    if json {
        let rows: Vec<serde_json::Value> = nodes
            .iter()
            .map(|node| {
                let mut value = serde_json::to_value(node).expect("node serializes");
                let ids: Vec<&str> = instances
                    .iter()
                    .filter(|v| v.instance.node == node.name)
                    .map(|v| v.instance.id.as_str())
                    .collect();
                value["instances"] = serde_json::json!(ids);
                value["effective_state"] =
                    serde_json::to_value(node.effective_state()).expect("state serializes");
                value
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<26} {:<24} {:>5} {:>9}  LABELS",
        "NODE", "AGENT", "STATE", "EPOCH", "INSTANCES"
    );
    for node in &nodes {
        let count = instances
            .iter()
            .filter(|v| v.instance.node == node.name)
            .count();
        let labels: Vec<String> = node
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "{:<16} {:<26} {:<24} {:>5} {:>9}  {}",
            node.name,
            node.agent_url,
            state_word(node),
            node.epoch,
            count,
            labels.join(",")
        );
    }
    Ok(())
}

/// `strata node rm NODE`: removes a down node's record.
async fn node_rm(api: &Api, name: &str) -> CliResult {
    api.delete(&format!("/v1/nodes/{name}")).await?;
    eprintln!("node {name}: removed");
    Ok(())
}

async fn node_drain(api: &Api, name: &str, drain: bool, timeout: Duration) -> CliResult {
    let path = if drain { "drain" } else { "undrain" };
    let _node: Node = api
        .post(&format!("/v1/nodes/{name}/{path}"), &serde_json::json!({}))
        .await?;
    if !drain {
        eprintln!("node {name}: undrained; it takes new work again");
        return Ok(());
    }
    eprintln!("node {name}: draining; moving its instances (replacements start first)");
    let deadline = Instant::now() + timeout;
    loop {
        let instances: Vec<InstanceView> = api.get("/v1/instances").await?;
        let left = instances.iter().filter(|v| v.instance.node == name).count();
        if left == 0 {
            eprintln!("node {name}: drained");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::Failed(anyhow!(
                "node {name}: {left} instance(s) still there after {}; see `strata status` and `strata events`",
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A node's state as `node ls` shows it: its liveness, or its decommission's phase.
fn state_word(node: &Node) -> String {
    match &node.decommission {
        Some(running) => format!("decommission:{}", running.phase.as_str()),
        None => format!("{:?}", node.effective_state()).to_lowercase(),
    }
}

/// `strata node decommission NODE`: starts it, then says each phase as it comes, until the
/// node is decommissioned (exit 0; its archive's id, if it has one), its decommission
/// failed (1, with the reason) or `timeout` passed (1; it goes on).
async fn decommission(
    api: &Api,
    name: &str,
    request: &DecommissionRequest,
    timeout: Duration,
    detach: bool,
) -> Result<Option<String>, Failure> {
    let started = Instant::now();
    let mut status: DecommissionStatus = api
        .post(&format!("/v1/nodes/{name}/decommission"), request)
        .await?;
    let mut said = String::new();
    loop {
        if let Some(record) = &status.finished {
            eprintln!("{}", finished_line(record));
            return Ok(record.archive.clone());
        }
        let Some(running) = &status.running else {
            return Err(Failure::Failed(anyhow!(
                "node {name}: no decommission under way"
            )));
        };
        let line = match running.phase {
            strata_core::decommission::DecommissionPhase::Draining => format!(
                "draining: {} instance(s) left (replacements start elsewhere first)",
                status.instances
            ),
            strata_core::decommission::DecommissionPhase::Archiving => {
                "archiving what it held".to_string()
            }
            strata_core::decommission::DecommissionPhase::Wiping => format!(
                "archive {} kept and countersigned; wiping its data",
                running.archive.as_deref().unwrap_or("?")
            ),
            strata_core::decommission::DecommissionPhase::Revoked => {
                "revoked unreachable; its record goes once its instances are replaced".to_string()
            }
            strata_core::decommission::DecommissionPhase::Failed => {
                return Err(Failure::Failed(anyhow!(
                    "node {name}: decommission failed: {}\n  hint: mend it, then `strata node decommission {name}` again starts over (the archive, once kept, is not made again)",
                    running.reason.as_deref().unwrap_or("no reason given")
                )));
            }
        };
        if line != said {
            eprintln!(
                "node {name}: {line} ({:.1}s)",
                started.elapsed().as_secs_f64()
            );
            said = line;
        }
        if detach {
            return Ok(None);
        }
        if started.elapsed() >= timeout {
            return Err(Failure::Failed(anyhow!(
                "node {name}: still decommissioning after {} (it goes on); follow it with `strata node decommission {name}` or `strata events`",
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = api.get(&format!("/v1/nodes/{name}/decommission")).await?;
    }
}

fn finished_line(record: &DecommissionRecord) -> String {
    match (record.outcome, &record.archive, &record.wipe) {
        (DecommissionOutcome::Wiped, Some(archive), Some(wipe)) => format!(
            "node {}: decommissioned: archive {archive} kept (`strata archive get {archive}`); {} file(s), {} bytes wiped{}; its identity is revoked",
            record.node,
            wipe.files,
            wipe.bytes,
            match &wipe.device {
                Some(device) => format!(", then device {device} ({} bytes)", wipe.device_bytes),
                None => String::new(),
            }
        ),
        _ => format!("node {}: decommissioned: {}", record.node, record.note),
    }
}

/// `strata node decommissions [--json]`.
async fn decommissions(api: &Api, json: bool) -> CliResult {
    let records: Vec<DecommissionRecord> = api.get("/v1/decommissions").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    println!(
        "{:<16}  {:<11}  {:<28}  {:>6}  {:>12}  {:<20}  BY",
        "NODE", "OUTCOME", "ARCHIVE", "FILES", "BYTES", "FINISHED"
    );
    for record in &records {
        let outcome = match record.outcome {
            DecommissionOutcome::Wiped => "wiped",
            DecommissionOutcome::Unreachable => "unreachable",
        };
        let (files, bytes) = record
            .wipe
            .as_ref()
            .map_or(("-".to_string(), "-".to_string()), |w| {
                (w.files.to_string(), w.bytes.to_string())
            });
        println!(
            "{:<16}  {:<11}  {:<28}  {:>6}  {:>12}  {:<20}  {}",
            record.node,
            outcome,
            record.archive.as_deref().unwrap_or("-"),
            files,
            bytes,
            strata_core::utc_time(record.finished_at),
            record.requested_by
        );
    }
    Ok(())
}
