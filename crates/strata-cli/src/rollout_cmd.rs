//! `strata rollout status|pause|resume|abort SERVICE`: a service's progressive rollout
//! (canary, blue-green), and how `strata deploy` follows one, step by step, to its end.

use std::time::{Duration, Instant};

use clap::Subcommand;
use strata_core::api::{RolloutActionRequest, RolloutStatus};
use strata_core::{Rollout, RolloutPhase};

use crate::api::Api;
use crate::{CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// The rollout going on, or the last one's outcome: its step, the new release's share of
    /// the traffic, its instances, and each release's requests since that share.
    Status {
        service: String,
        #[arg(long, default_value = "dev")]
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// Hold the rollout at its step (a failed analysis still rolls it back).
    Pause {
        service: String,
        #[arg(long, default_value = "dev")]
        env: String,
        /// Why, for the event and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Go on with a paused rollout (its step is analysed afresh from now).
    Resume {
        service: String,
        #[arg(long, default_value = "dev")]
        env: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Stop the rollout: the new release's instances go, the stable release serves alone.
    Abort {
        service: String,
        #[arg(long, default_value = "dev")]
        env: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

pub async fn run(api: &Api, command: RolloutCommand) -> CliResult {
    let (action, service, env, reason) = match command {
        RolloutCommand::Status { service, env, json } => {
            let status: RolloutStatus = api
                .get(&format!("/v1/envs/{env}/services/{service}/rollout"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", describe(&status));
            }
            return Ok(());
        }
        RolloutCommand::Pause {
            service,
            env,
            reason,
        } => ("pause", service, env, reason),
        RolloutCommand::Resume {
            service,
            env,
            reason,
        } => ("resume", service, env, reason),
        RolloutCommand::Abort {
            service,
            env,
            reason,
        } => ("abort", service, env, reason),
    };
    let rollout: Rollout = api
        .post(
            &format!("/v1/envs/{env}/services/{service}/rollout/{action}"),
            &RolloutActionRequest { reason },
        )
        .await?;
    eprintln!("{service}: {}", rollout.message);
    Ok(())
}

/// `strata rollout status` in words.
fn describe(status: &RolloutStatus) -> String {
    let service = &status.service;
    let Some(rollout) = &status.rollout else {
        return format!(
            "{service}: no rollout yet (a release deployed with `[service.{service}.rollout] strategy = \"canary\"` or \"blue-green\" begins one)\n"
        );
    };
    let steps: Vec<String> = rollout
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            if i == rollout.step && rollout.is_active() {
                format!("[{step}%]")
            } else {
                format!("{step}%")
            }
        })
        .collect();
    let mut text = format!(
        "{service}: {} of release {} beside release {}: {}\n  steps     {}\n  traffic   {}% to release {}\n",
        rollout.strategy.as_str(),
        rollout.release,
        rollout.stable,
        rollout.phase.as_str(),
        steps.join(" "),
        rollout.weight,
        rollout.release
    );
    if rollout.is_active() {
        text.push_str(&format!(
            "  instances {} of {} wanted available\n",
            status.available, status.wanted
        ));
    }
    for release in &status.traffic {
        let rate = if release.attempts == 0 {
            0.0
        } else {
            release.failures as f64 * 100.0 / release.attempts as f64
        };
        text.push_str(&format!(
            "  release {:<4} {} requests, {} failed ({rate:.1}%), p99 {:.0} ms\n",
            release.release, release.attempts, release.failures, release.p99_ms
        ));
    }
    text.push_str(&format!("  {}\n", rollout.message));
    text
}

/// Follows `service`'s rollout of `release` in `env`: each step as it passes, until the
/// release took all the traffic and passed (then until it serves in full, as any release),
/// or was rolled back or aborted (a failure, with the analysis), or `timeout` passed.
pub async fn follow(
    api: &Api,
    env: &str,
    service: &str,
    release: u64,
    started: u64,
    timeout: Duration,
) -> CliResult {
    let deadline = Instant::now() + timeout;
    let mut told = String::new();
    loop {
        let status: RolloutStatus = api
            .get(&format!("/v1/envs/{env}/services/{service}/rollout"))
            .await?;
        let Some(rollout) = status.rollout.filter(|r| r.release == release) else {
            return Err(Failure::Failed(anyhow::anyhow!(
                "deploy failed: {service}: the rollout of release {release} was replaced by another change (`strata rollout status {service} --env {env}`)"
            )));
        };
        if rollout.message != told {
            eprintln!("{service}: {}", rollout.message);
            told = rollout.message.clone();
        }
        match rollout.phase {
            RolloutPhase::Succeeded => {
                let replicas = api
                    .get::<strata_core::api::ServiceStatus>(&format!(
                        "/v1/envs/{env}/services/{service}"
                    ))
                    .await?
                    .service
                    .replicas;
                let left = deadline.saturating_duration_since(Instant::now());
                return crate::deploy_cmd::follow_rollouts(
                    api,
                    env,
                    &[(service.to_string(), release, replicas)],
                    started,
                    left.max(Duration::from_secs(1)),
                    "deploy",
                )
                .await;
            }
            RolloutPhase::RolledBack => {
                return Err(Failure::Failed(anyhow::anyhow!(
                    "deploy failed: {service}: release {release} was rolled back; release {} serves alone:\n  {}",
                    rollout.stable,
                    rollout.message
                )));
            }
            RolloutPhase::Aborted => {
                return Err(Failure::Failed(anyhow::anyhow!(
                    "deploy failed: {service}: the rollout of release {release} was aborted: {}",
                    rollout.message
                )));
            }
            RolloutPhase::Progressing | RolloutPhase::Paused => {}
        }
        if let Some(message) = crate::deploy_cmd::placement_failure(api, service, started).await {
            return Err(Failure::Failed(anyhow::anyhow!(
                "deploy failed: {service}: {message}\n  the rollout of release {release} waits for room (the stable release serves); `strata rollout abort {service} --env {env}` takes it back"
            )));
        }
        if Instant::now() >= deadline {
            return Err(Failure::Failed(anyhow::anyhow!(
                "deploy failed: {service}: the rollout of release {release} did not end within {} (it goes on; `strata rollout status {service} --env {env}`): {}",
                humantime::format_duration(timeout),
                rollout.message
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_names_the_step_the_share_and_each_releases_requests() {
        let status: RolloutStatus = serde_json::from_value(serde_json::json!({
            "env": "dev", "service": "web",
            "rollout": {"release": 3, "stable": 2, "strategy": "canary", "steps": [5, 25, 100],
                "step": 1, "weight": 5, "weight_since": 0, "phase": "progressing",
                "message": "step 2 of 3 (25%): starting release 3's instances",
                "started_at": 0, "updated_at": 0},
            "wanted": 3, "available": 1,
            "traffic": [{"release": 2, "attempts": 950, "failures": 0, "p99_ms": 4.0},
                        {"release": 3, "attempts": 50, "failures": 1, "p99_ms": 6.0}]
        }))
        .unwrap();
        let text = describe(&status);
        for expected in [
            "canary of release 3 beside release 2: progressing",
            "5% [25%] 100%",
            "5% to release 3",
            "1 of 3 wanted available",
            "release 3    50 requests, 1 failed (2.0%), p99 6 ms",
            "starting release 3's instances",
        ] {
            assert!(text.contains(expected), "{expected:?} in {text}");
        }
    }
}
