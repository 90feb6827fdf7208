//! `strata releases` (a service's release history), `strata rollback` (back to one of its
//! releases as it was) and `strata promote` (another environment's release, as tested there,
//! with this one's configuration), each followed until it serves, as a deploy is.

use std::time::Duration;

use clap::Args;
use strata_core::api::{PromoteRequest, Promoted, RollbackRequest, RolledBack, ServiceStatus};
use strata_core::Release;

use crate::api::Api;
use crate::ApiArgs;
use crate::CliResult;

/// `strata releases SERVICE`.
#[derive(Debug, Args)]
pub struct ReleasesArgs {
    service: String,
    #[arg(long, default_value = "dev")]
    env: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// `strata rollback SERVICE`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    service: String,
    #[arg(long, default_value = "dev")]
    env: String,
    /// The release to go back to (default: the newest one that served in full before the
    /// one running now).
    #[arg(long, value_name = "N")]
    to: Option<u64>,
    /// Why, for the event and the audit log.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    follow: FollowArgs,
    #[command(flatten)]
    api: ApiArgs,
}

/// How a change is followed until it serves.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// How long to follow the rollout.
    #[arg(long, default_value = "5m", value_parser = crate::humantime_duration)]
    timeout: Duration,
    /// Return once the change is recorded, without following the rollout.
    #[arg(long)]
    detach: bool,
}

/// `strata promote SERVICE --from ENV --to ENV`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    service: String,
    /// The environment promoted from.
    #[arg(long)]
    from: String,
    /// The environment promoted into.
    #[arg(long)]
    to: String,
    /// The release to promote (default: the one running in --from).
    #[arg(long, value_name = "N")]
    release: Option<u64>,
    /// How long it must have served in --from, in full and within its SLO.
    #[arg(long, default_value = "10m", value_parser = crate::humantime_duration)]
    soak: Duration,
    /// Promote even when it does not serve in full, soaked too little or missed its SLO.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    follow: FollowArgs,
    #[command(flatten)]
    api: ApiArgs,
}

/// What a release is to its service now (`None`: the service was deleted).
fn standing(release: &Release, status: Option<&ServiceStatus>) -> String {
    let Some(status) = status else {
        return "deleted".into();
    };
    let service = &status.service;
    let rollout = service
        .rollout
        .as_ref()
        .filter(|rollout| rollout.release == release.number);
    match rollout {
        Some(rollout) if rollout.is_active() => {
            return match rollout.strategy {
                strata_core::spec::RolloutStrategy::BlueGreen => {
                    format!("green {}%", rollout.weight)
                }
                _ => format!("canary {}%", rollout.weight),
            }
        }
        Some(rollout) if rollout.phase == strata_core::RolloutPhase::Aborted => {
            return "aborted".into()
        }
        _ => {}
    }
    if release.number == service.desired_release {
        // Honest about a release that does not start: none of its instances serves and
        // some crash or fail.
        let of_it = status
            .instances
            .iter()
            .filter(|v| v.instance.release == release.number)
            .filter(|v| v.instance.desired == strata_core::DesiredState::Running);
        let (mut serving, mut failing) = (false, false);
        for view in of_it {
            serving |= view.is_routable();
            failing |= matches!(
                view.state(),
                strata_core::InstanceState::Backoff | strata_core::InstanceState::Failed
            );
        }
        return if failing && !serving {
            "failing"
        } else {
            "running"
        }
        .into();
    }
    match service.ending_of(release.number).map(|end| end.how) {
        Some(strata_core::ReleaseEnding::Superseded) | None
            if service.served.contains(&release.number) =>
        {
            "served"
        }
        Some(how) => how.as_str(),
        // Records from before endings were kept.
        None if release.number > service.desired_release => "rolled back",
        None => "superseded",
    }
    .into()
}

/// Why a release ended, as the service recorded it (empty when it did not, or before it was
/// kept).
fn why(release: &Release, status: Option<&ServiceStatus>) -> String {
    status
        .and_then(|status| status.service.ending_of(release.number))
        .map(|end| end.why.clone())
        .unwrap_or_default()
}

pub async fn releases(args: ReleasesArgs) -> CliResult {
    let api = Api::new(&args.api.addr);
    let (env, service) = (&args.env, &args.service);
    // The history outlives the service: a deleted one's releases are listed too.
    let releases: Vec<Release> = api
        .get(&format!("/v1/envs/{env}/services/{service}/releases"))
        .await?;
    let status: Option<ServiceStatus> =
        match api.get(&format!("/v1/envs/{env}/services/{service}")).await {
            Ok(status) => Some(status),
            Err(error) => {
                let services: Vec<ServiceStatus> =
                    api.get(&format!("/v1/envs/{env}/services")).await?;
                if services.iter().any(|s| s.service.name == service.as_str()) {
                    return Err(error);
                }
                None
            }
        };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&releases)?);
        return Ok(());
    }
    println!(
        "{:>7}  {:<11}  {:<20}  {:<16}  {:>6}  {:<19}  {:<19}  WHY",
        "RELEASE", "STATE", "CREATED", "BY", "CONFIG", "ARTIFACT", "SPEC"
    );
    for release in releases.iter().rev() {
        let artifact = release
            .artifact_digest
            .as_deref()
            .map_or("-".to_string(), |d| short(d, 19));
        println!(
            "{:>7}  {:<11}  {:<20}  {:<16}  {:>6}  {:<19}  {:<19}  {}",
            release.number,
            standing(release, status.as_ref()),
            crate::access_cmd::format_time(release.created_at),
            release.created_by.as_deref().unwrap_or("-"),
            release.config_version,
            artifact,
            short(&release.spec_hash, 19),
            why(release, status.as_ref())
        );
    }
    Ok(())
}

/// `sha256:0123456789ab` of a digest.
fn short(digest: &str, width: usize) -> String {
    digest.chars().take(width).collect()
}

pub async fn rollback(args: RollbackArgs) -> CliResult {
    let api = Api::new(&args.api.addr);
    let (env, service) = (&args.env, &args.service);
    let started = strata_control::now_millis();
    let rolled: RolledBack = api
        .post(
            &format!("/v1/envs/{env}/services/{service}/rollback"),
            &RollbackRequest {
                to: args.to,
                reason: args.reason.clone(),
            },
        )
        .await?;
    eprintln!(
        "{service}: rolling back from release {} to release {}",
        rolled.from, rolled.to
    );
    if args.follow.detach {
        return Ok(());
    }
    let status: ServiceStatus = api
        .get(&format!("/v1/envs/{env}/services/{service}"))
        .await?;
    let rollouts = [(service.clone(), rolled.to, status.service.replicas)];
    crate::deploy_cmd::follow_rollouts(
        &api,
        env,
        &rollouts,
        started,
        args.follow.timeout,
        "rollback",
    )
    .await
}

pub async fn promote(args: PromoteArgs) -> CliResult {
    let api = Api::new(&args.api.addr);
    let (to, service) = (&args.to, &args.service);
    if args.from == *to {
        return Err(crate::Failure::BadInput(anyhow::anyhow!(
            "error: --from and --to are both {to}: promote into another environment"
        )));
    }
    let from = strata_core::EnvName::new(&args.from).map_err(|e| {
        crate::Failure::BadInput(anyhow::anyhow!("error: --from {}: {e}", args.from))
    })?;
    let started = strata_control::now_millis();
    let promoted: Promoted = api
        .post(
            &format!("/v1/envs/{to}/services/{service}/promote"),
            &PromoteRequest {
                from,
                release: args.release,
                soak_s: Some(args.soak.as_secs()),
                force: args.force,
            },
        )
        .await?;
    let origin = format!("release {} of {}", promoted.from.release, promoted.from.env);
    if !promoted.created {
        eprintln!(
            "{service}: {to} already runs {origin} (release {}): nothing to do",
            promoted.release
        );
        return Ok(());
    }
    eprintln!(
        "{service}: {origin} promoted to {to} as release {} ({} replica{})",
        promoted.release,
        promoted.replicas,
        if promoted.replicas == 1 { "" } else { "s" }
    );
    if args.follow.detach {
        return Ok(());
    }
    let rollouts = [(service.clone(), promoted.release, promoted.replicas)];
    crate::deploy_cmd::follow_rollouts(
        &api,
        to,
        &rollouts,
        started,
        args.follow.timeout,
        "promotion",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_stands_as_the_service_says() {
        let mut status: ServiceStatus = serde_json::from_value(serde_json::json!({
            "service": {"env": "dev", "name": "web", "desired_release": 3, "latest_release": 5,
                "latest_config": 1, "replicas": 2, "served": [1, 2], "created_at": 0, "updated_at": 0},
            "release": null, "instances": [], "hosts": [], "available": 2
        }))
        .unwrap();
        let spec = strata_core::spec::parse(
            "s.toml",
            "[service.web]
command = [\"w\"]
",
        )
        .unwrap()
        .services
        .remove(0);
        let release =
            |number| strata_testkit::fixtures::release("dev", "web", number, spec.clone());
        let table = [
            (1, "served"),
            (2, "served"),
            (3, "running"),
            (4, "rolled back"),
            (5, "rolled back"),
        ];
        for (number, want) in table {
            assert_eq!(standing(&release(number), Some(&status)), want, "{number}");
        }
        let mut canary = status.clone();
        canary.service.rollout = Some(strata_core::Rollout {
            release: 4,
            stable: 3,
            strategy: strata_core::spec::RolloutStrategy::Canary,
            steps: vec![5, 100],
            step: 0,
            weight: 5,
            weight_since: 0,
            phase: strata_core::RolloutPhase::Progressing,
            message: String::new(),
            started_at: 0,
            started_by: None,
            updated_at: 0,
        });
        assert_eq!(standing(&release(4), Some(&canary)), "canary 5%");
        assert_eq!(standing(&release(3), Some(&canary)), "running");
        canary.service.rollout.as_mut().unwrap().phase = strata_core::RolloutPhase::RolledBack;
        assert_eq!(standing(&release(4), Some(&canary)), "rolled back");
        // Recorded endings say how, and why.
        canary.service.note_ended(
            4,
            strata_core::ReleaseEnding::Failed,
            "canary analysis failed".into(),
            9,
        );
        assert_eq!(standing(&release(4), Some(&canary)), "failed");
        assert_eq!(why(&release(4), Some(&canary)), "canary analysis failed");
        canary.service.note_ended(
            2,
            strata_core::ReleaseEnding::Superseded,
            "replaced by release 3".into(),
            9,
        );
        assert_eq!(standing(&release(2), Some(&canary)), "served");
        canary.service.note_ended(
            1,
            strata_core::ReleaseEnding::RolledBack,
            "rolled back to release 0 by ops".into(),
            9,
        );
        assert_eq!(standing(&release(1), Some(&canary)), "rolled back");
        // The running release whose instances crash and none serves is failing.
        let crashing = |id: &str, state| strata_core::InstanceView {
            instance: strata_core::Instance {
                id: strata_core::InstanceId::new(id).unwrap(),
                env: strata_core::EnvName::from_static("dev"),
                service: strata_core::ServiceName::from_static("web"),
                release: 3,
                node: strata_core::NodeName::from_static("n1"),
                node_epoch: 1,
                desired: strata_core::DesiredState::Running,
                created_at: 0,
                stop_requested_at: None,
                quarantine: None,
            },
            status: Some(strata_core::InstanceStatus::new(
                strata_core::InstanceId::new(id).unwrap(),
                strata_core::NodeName::from_static("n1"),
                state,
                "",
            )),
        };
        let mut failing = status.clone();
        failing.instances = vec![crashing("web-3-a", strata_core::InstanceState::Backoff)];
        assert_eq!(standing(&release(3), Some(&failing)), "failing");
        failing
            .instances
            .push(crashing("web-3-b", strata_core::InstanceState::Starting));
        assert_eq!(standing(&release(3), Some(&failing)), "failing");
        status.service.served.clear();
        assert_eq!(standing(&release(1), Some(&status)), "superseded");
        assert_eq!(standing(&release(1), None), "deleted");
    }
}
