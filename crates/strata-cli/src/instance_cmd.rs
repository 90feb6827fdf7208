//! `strata instance quarantine ID`: one instance taken out of service for investigation. It
//! leaves routing at once and its service gets a replacement; its node freezes it, archives
//! it (`strata archive ls`) and then stops it. Followed until the archive is kept.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Subcommand;
use strata_core::api::ServiceStatus;
use strata_core::Instance;

use crate::api::Api;
use crate::{CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum InstanceAction {
    /// Take an instance out of routing, freeze it, archive it (its writable layer or working
    /// directory, log, processes, connections and memory maps), then stop it; its service
    /// gets a replacement. Follows it until the archive is kept.
    Quarantine {
        /// The instance, as `strata status SERVICE` names it.
        id: String,
        /// Give up following it after this long (it goes on).
        #[arg(long, default_value = "3m", value_parser = crate::humantime_duration)]
        timeout: Duration,
        /// Start it and return at once.
        #[arg(long)]
        detach: bool,
    },
}

pub async fn run(api: &Api, action: InstanceAction) -> CliResult {
    match action {
        InstanceAction::Quarantine {
            id,
            timeout,
            detach,
        } => quarantine(api, &id, timeout, detach).await,
    }
}

async fn quarantine(api: &Api, id: &str, timeout: Duration, detach: bool) -> CliResult {
    let started = Instant::now();
    let instance: Instance = api
        .post(
            &format!("/v1/instances/{id}/quarantine"),
            &serde_json::json!({}),
        )
        .await?;
    eprintln!(
        "instance {id}: quarantined: out of routing; node {} freezes and archives it, then stops it; {}/{} gets a replacement",
        instance.node, instance.env, instance.service
    );
    if detach {
        return Ok(());
    }
    loop {
        // The instance's service only, not every instance of the cluster.
        let status: ServiceStatus = api
            .get(&format!(
                "/v1/envs/{}/services/{}",
                instance.env, instance.service
            ))
            .await?;
        let found = status.instances.iter().find(|v| v.instance.id == id);
        let mut archive = found
            .and_then(|v| v.instance.quarantine.as_ref())
            .and_then(|q| q.archive.clone());
        if found.is_none() {
            // Stopped and forgotten already: its archive, if one was kept.
            let subject = format!("instance:{id}");
            let kept: Vec<strata_core::archive::ArchiveRecord> = api.get("/v1/archives").await?;
            archive = kept
                .into_iter()
                .find(|r| r.subject == subject)
                .map(|r| r.id);
        }
        match (found, archive) {
            (_, Some(archive)) => {
                eprintln!(
                    "instance {id}: archive {archive} kept ({:.1}s); `strata archive get {archive} -o FILE` fetches it",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            (None, None) => {
                return Err(Failure::Failed(anyhow!(
                "instance {id} stopped with no archive kept\n  hint: `strata events {}` says why",
                instance.service
            )))
            }
            // Stopped and no archive: it was not kept (the events say why).
            (Some(view), None) if view.state().is_terminal() => {
                return Err(Failure::Failed(anyhow!(
                    "instance {id} stopped with no archive kept: {}\n  hint: `strata events {}` says more",
                    view.status.as_ref().map_or("", |s| s.message.as_str()),
                    instance.service
                )))
            }
            (Some(_), None) => {}
        }
        if started.elapsed() >= timeout {
            return Err(Failure::Failed(anyhow!(
                "instance {id}: no archive kept after {} (it goes on); see `strata events {}`",
                humantime::format_duration(timeout),
                instance.service
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
