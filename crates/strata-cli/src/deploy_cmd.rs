//! `strata deploy`: reads and checks the spec (artifacts found, code packed), uploads what
//! the control plane lacks, asks for the deploy, and follows the rollout until every new
//! instance is available (or says, per instance, why not: a crash loop with its last log
//! lines, a placement that failed, a timeout with each instance's state and reason).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use strata_core::api::{
    DeployPreview, DeployRequest, DeployResponse, DeployService, EventList, ServiceStatus,
};
use strata_core::spec::{self, SpecError, SpecErrors};
use strata_core::{DesiredState, InstanceState, InstanceView};

use crate::api::Api;
use crate::{CliResult, Failure};

/// A crash loop: this many restarts of one new instance fail the deploy.
const CRASH_LOOP_RESTARTS: u32 = 3;

fn bad_input(message: impl std::fmt::Display) -> Failure {
    Failure::BadInput(anyhow!("{message}"))
}

/// What a service uploads: its artifact as written, or, for a `command` service, its code
/// packed into a tar (kept in `_packed` until the upload is done).
struct Upload {
    path: PathBuf,
    _packed: Option<tempfile::TempDir>,
}

/// Reads and parses a spec file, and checks its artifacts exist. Any problem is bad input,
/// reported with file:line:col.
fn load_spec(
    file: &Path,
) -> Result<(spec::SpecFile, BTreeMap<strata_core::ServiceName, Upload>), Failure> {
    let shown = file.display().to_string();
    let source = std::fs::read_to_string(file).map_err(|error| {
        bad_input(format!(
            "error: cannot read spec file {shown}: {error}\n  hint: pass the path of a strata.toml (see docs/spec.md)"
        ))
    })?;
    let parsed =
        spec::parse(&shown, &source).map_err(|errors| bad_input(errors.render(&source)))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut artifacts = BTreeMap::new();
    let mut errors = Vec::new();
    for service in &parsed.services {
        let Some(artifact) = &service.artifact else {
            continue;
        };
        let path = base.join(artifact);
        let runs_code = !service.command.is_empty();
        // The code `command` runs in: a directory or a file packed into one (a tar goes as it
        // is, as any other file artifact).
        let packs = runs_code
            && (path.is_dir() || (path.is_file() && !strata_runtime::code::is_archive_name(&path)));
        if packs {
            let packed = tempfile::tempdir().context("cannot make a temporary directory")?;
            let tar = packed.path().join(format!("{}.tar", service.name));
            strata_runtime::code::pack(&path, &tar).map_err(|error| {
                bad_input(format!(
                    "error: cannot pack the code of `{}`: {error}",
                    service.name
                ))
            })?;
            artifacts.insert(
                service.name.clone(),
                Upload {
                    path: tar,
                    _packed: Some(packed),
                },
            );
            continue;
        }
        if path.is_file() {
            artifacts.insert(
                service.name.clone(),
                Upload {
                    path,
                    _packed: None,
                },
            );
            continue;
        }
        let (line, column) =
            spec::locate(&source, &["service", &service.name, "artifact"]).unwrap_or((1, 1));
        let why = if path.is_dir() && service.driver == spec::DriverKind::Exec {
            "is a directory; an exec service without `command` runs its artifact as the program (to ship code, add `command = [\"python3\", \"app.py\"]`, run in it)"
        } else if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        errors.push(SpecError {
            file: shown.clone(),
            line,
            column,
            key: Some(format!("service.{}.artifact", service.name)),
            message: format!(
                "artifact `{artifact}` {why} (looked for {})",
                path.display()
            ),
            hint: Some(
                "build it first, or fix the path (relative to the spec file's directory)"
                    .to_string(),
            ),
        });
    }
    if !errors.is_empty() {
        return Err(bad_input(SpecErrors(errors).render(&source)));
    }
    Ok((parsed, artifacts))
}

fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

/// The spec file's services with their artifacts' digests; with `uploads`, each artifact the
/// control plane lacks is uploaded first (its progress shown there).
async fn deploy_services(
    api: &Api,
    file: &Path,
    uploads: Option<&MultiProgress>,
) -> Result<Vec<DeployService>, Failure> {
    let (parsed, artifacts) = load_spec(file)?;
    let tty = std::io::stderr().is_terminal();
    let mut services = Vec::new();
    for service in parsed.services {
        let digest = match artifacts.get(&service.name).map(|upload| &upload.path) {
            Some(path) => {
                let (digest, size) = sha256_file(path)?;
                if let Some(progress) = uploads {
                    if !api.blob_exists(&digest).await? {
                        upload(api, progress, tty, &service.name, path, &digest, size).await?;
                    }
                }
                Some(digest)
            }
            None => None,
        };
        services.push(DeployService {
            spec: service,
            artifact_digest: digest,
        });
    }
    Ok(services)
}

/// `strata deploy --dry-run` and `strata diff`: what the deploy would change, service by
/// service, with nothing uploaded or changed (artifacts are compared by digest).
pub async fn preview(api: &Api, file: &Path, env: &str) -> CliResult {
    let services = deploy_services(api, file, None).await?;
    let preview: DeployPreview = api
        .post(
            &format!("/v1/envs/{env}/deploy/preview"),
            &DeployRequest { services },
        )
        .await?;
    for service in &preview.services {
        println!("{}:", service.name);
        for line in &service.changes {
            println!("  {line}");
        }
    }
    let changing = preview
        .services
        .iter()
        .filter(|s| s.changes != ["unchanged"])
        .count();
    eprintln!(
        "{changing} of {} service(s) would change in {env}; nothing was changed (services not in the file are not touched)",
        preview.services.len()
    );
    Ok(())
}

pub async fn deploy(
    api: &Api,
    file: &Path,
    env: &str,
    timeout: Duration,
    detach: bool,
) -> CliResult {
    let progress = MultiProgress::new();
    let services = deploy_services(api, file, Some(&progress)).await?;
    let started = strata_control::now_millis();
    let response: DeployResponse = api
        .post(
            &format!("/v1/envs/{env}/deploy"),
            &DeployRequest { services },
        )
        .await?;
    for service in &response.services {
        let what = if service.created {
            "created"
        } else {
            "unchanged"
        };
        match service.rollout {
            Some(new) => eprintln!(
                "{}: release {new} {}rolling out beside release {} ({} replica{}); `strata rollout status {}` follows it",
                service.name,
                if service.created { "created, " } else { "" },
                service.release,
                service.replicas,
                if service.replicas == 1 { "" } else { "s" },
                service.name
            ),
            None => eprintln!(
                "{}: release {} {what} ({} replica{})",
                service.name,
                service.release,
                service.replicas,
                if service.replicas == 1 { "" } else { "s" }
            ),
        }
    }
    if detach {
        return Ok(());
    }
    let rollouts: Vec<(String, u64, u32)> = response
        .services
        .iter()
        .filter(|s| s.rollout.is_none())
        .map(|s| (s.name.to_string(), s.release, s.replicas))
        .collect();
    // Canaries and blue-greens are followed step by step, beside the others.
    let progressive = response.services.iter().filter_map(|s| {
        let release = s.rollout?;
        Some(crate::rollout_cmd::follow(
            api, env, &s.name, release, started, timeout,
        ))
    });
    let (plain, progressive) = futures::join!(
        async {
            if rollouts.is_empty() {
                Ok(())
            } else {
                follow_rollouts(api, env, &rollouts, started, timeout, "deploy").await
            }
        },
        futures::future::join_all(progressive)
    );
    let mut failures: Vec<String> = Vec::new();
    for result in std::iter::once(plain).chain(progressive) {
        match result {
            Ok(()) => {}
            Err(Failure::Failed(error)) | Err(Failure::BadInput(error)) => {
                failures.push(error.to_string())
            }
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(Failure::Failed(anyhow!("{}", failures.remove(0)))),
        _ => Err(Failure::Failed(anyhow!("{}", failures.join("\n")))),
    }
}

/// Follows each `(service, release, replicas)` rollout until the release serves, fails (a
/// crash loop with its last log lines, a placement that failed) or `timeout` passes (each
/// instance's state and reason): bars on a terminal, a line a change otherwise. `what`
/// names the command in the failure ("deploy failed: ...").
pub async fn follow_rollouts(
    api: &Api,
    env: &str,
    rollouts: &[(String, u64, u32)],
    started: u64,
    timeout: Duration,
    what: &str,
) -> CliResult {
    let progress = MultiProgress::new();
    let tty = std::io::stderr().is_terminal();
    let mut failures = Vec::new();
    let bars: Vec<(String, u64, ProgressBar)> = rollouts
        .iter()
        .map(|(name, release, replicas)| {
            let bar = progress.add(ProgressBar::new(u64::from(*replicas)));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} {spinner} [{bar:20}] {pos}/{len} available  {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.clone());
            if !tty {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            (name.clone(), *release, bar)
        })
        .collect();
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<usize> = (0..bars.len()).collect();
    let mut told_recreate = std::collections::BTreeSet::new();
    let mut last_line: BTreeMap<String, String> = BTreeMap::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for index in pending {
            let (name, release, bar) = &bars[index];
            let status: ServiceStatus = api.get(&format!("/v1/envs/{env}/services/{name}")).await?;
            let rollout = Rollout::of(&status, *release);
            bar.set_length(u64::from(status.service.replicas));
            bar.set_position(rollout.available as u64);
            bar.set_message(rollout.describe());
            bar.tick();
            if !tty {
                let line = format!(
                    "{name}: {}/{} available, {}",
                    rollout.available,
                    status.service.replicas,
                    rollout.describe()
                );
                if last_line.get(name) != Some(&line) {
                    eprintln!("{line}");
                    last_line.insert(name.clone(), line);
                }
            }
            if let Some(crash) = rollout.crash_loop {
                bar.abandon_with_message("failed");
                failures.push(crash_report(api, env, name, &crash).await);
                continue;
            }
            if !told_recreate.contains(name) && recreating(api, name, started).await {
                told_recreate.insert(name.clone());
                let _ = progress.println(format!(
                    "{name}: no node can take release {release} beside the old instances (a fixed port or capacity only they hold): each old instance stops before its replacement starts, one at a time (recreate)"
                ));
                if !tty {
                    eprintln!("{name}: recreating: each old instance stops before its replacement starts, one at a time");
                }
            }
            if let Some(message) = placement_failure(api, name, started).await {
                bar.abandon_with_message("failed");
                failures.push(format!("{name}: {message}"));
                continue;
            }
            if rollout.complete(status.service.replicas) {
                bar.finish_with_message("done");
                let urls = status.hosts.join(" ");
                eprintln!(
                    "{name}: release {release} is serving{}{urls}",
                    if urls.is_empty() { "" } else { " at " }
                );
                if !urls.is_empty() {
                    println!("{}", status.hosts[0]);
                }
                continue;
            }
            still.push(index);
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for index in &pending {
                let (name, release, bar) = &bars[*index];
                bar.abandon_with_message("timed out");
                let status: ServiceStatus =
                    api.get(&format!("/v1/envs/{env}/services/{name}")).await?;
                let placement = placement_failure(api, name, started).await;
                failures.push(format!(
                    "{name}: release {release} did not finish rolling out within {}:\n{}",
                    humantime::format_duration(timeout),
                    waiting_report(&status, *release, placement.as_deref())
                ));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(anyhow!(
            "{what} failed:\n{}",
            failures.join("\n")
        )))
    }
}

async fn upload(
    api: &Api,
    progress: &MultiProgress,
    tty: bool,
    name: &str,
    path: &Path,
    digest: &str,
    size: u64,
) -> Result<(), Failure> {
    let bar = progress.add(ProgressBar::new(size));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} uploading [{bar:20}] {bytes}/{total_bytes}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    if !tty {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        eprintln!(
            "{name}: uploading {} ({size} bytes, {})",
            path.display(),
            strata_control::plane::short_digest(digest)
        );
    }
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let counted = bar.clone();
    let stream = tokio_util_stream(file).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            counted.inc(bytes.len() as u64);
        }
        chunk
    });
    api.upload(digest, reqwest::Body::wrap_stream(stream))
        .await?;
    bar.finish_and_clear();
    Ok(())
}

fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(error) => Some((Err(error), file)),
        }
    })
}

/// Where a rollout stands, from a service's status.
struct Rollout {
    healthy: usize,
    /// Healthy for the release's `min_ready` without a break (the control plane's count).
    available: usize,
    starting: usize,
    old_live: usize,
    crash_loop: Option<InstanceView>,
}

impl Rollout {
    fn of(status: &ServiceStatus, release: u64) -> Self {
        let mut rollout = Rollout {
            healthy: 0,
            available: if status.service.desired_release == release {
                status.available as usize
            } else {
                0
            },
            starting: 0,
            old_live: 0,
            crash_loop: None,
        };
        for view in &status.instances {
            let state = view.state();
            let wanted = view.instance.desired == DesiredState::Running;
            if view.instance.release == release && wanted {
                match state {
                    InstanceState::Running => rollout.healthy += 1,
                    InstanceState::Failed => rollout.crash_loop = Some(view.clone()),
                    _ => rollout.starting += 1,
                }
                let restarts = view.status.as_ref().map(|s| s.restarts).unwrap_or(0);
                if restarts >= CRASH_LOOP_RESTARTS && state != InstanceState::Running {
                    rollout.crash_loop = Some(view.clone());
                }
            } else if view.instance.release != release && (wanted || state.is_live()) {
                rollout.old_live += 1;
            }
        }
        rollout
    }

    fn complete(&self, replicas: u32) -> bool {
        self.available >= replicas as usize && self.old_live == 0
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.healthy > self.available {
            parts.push(format!(
                "{} healthy, waiting out min_ready",
                self.healthy - self.available
            ));
        }
        if self.starting > 0 {
            parts.push(format!("{} starting", self.starting));
        }
        if self.old_live > 0 {
            parts.push(format!("{} old stopping", self.old_live));
        }
        if parts.is_empty() {
            "rolling out".into()
        } else {
            parts.join(", ")
        }
    }
}

async fn crash_report(api: &Api, env: &str, name: &str, view: &InstanceView) -> String {
    let status = view.status.clone();
    let message = status
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_default();
    let restarts = status.as_ref().map(|s| s.restarts).unwrap_or(0);
    let mut report = format!(
        "{name}: instance {} of release {} is crash-looping ({restarts} restarts): {message}",
        view.instance.id, view.instance.release
    );
    if let Ok(response) = api
        .stream(&format!("/v1/envs/{env}/services/{name}/logs?tail=20"))
        .await
    {
        if let Ok(text) = response.text().await {
            let prefix = format!("[{}] ", view.instance.id);
            let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
            if !lines.is_empty() {
                report.push_str("\nlast log lines:\n");
                for line in lines {
                    report.push_str("  ");
                    report.push_str(&line[prefix.len()..]);
                    report.push('\n');
                }
            }
        }
    }
    report
}

/// Per instance of the release (and of the one it replaces), its state and last reason; and
/// why instances still wait to be placed, if they do. For a deploy that timed out.
fn waiting_report(status: &ServiceStatus, release: u64, placement: Option<&str>) -> String {
    let mut lines = Vec::new();
    let wanted = |v: &&InstanceView| v.instance.desired == DesiredState::Running;
    let new = status
        .instances
        .iter()
        .filter(wanted)
        .filter(|v| v.instance.release == release)
        .count();
    for view in status
        .instances
        .iter()
        .filter(|v| wanted(v) || v.state().is_live())
    {
        let (state, message) = match &view.status {
            Some(s) => (format!("{:?}", s.state).to_lowercase(), s.message.clone()),
            None => (
                "pending".to_string(),
                "not yet started by its node".to_string(),
            ),
        };
        let stopping = if wanted(&view) { "" } else { ", stopping" };
        lines.push(format!(
            "  {} (release {}, node {}{stopping}): {state}: {message}",
            view.instance.id, view.instance.release, view.instance.node
        ));
    }
    let replicas = status.service.replicas as usize;
    if new < replicas {
        let why = placement.unwrap_or("waiting for the control plane to place them");
        lines.push(format!(
            "  {} of {replicas} instances not placed: {why}",
            replicas - new
        ));
    }
    if lines.is_empty() {
        lines.push("  no instances".into());
    }
    lines.push("see `strata status`, `strata logs` and `strata events`".into());
    lines.join("\n")
}

pub(crate) async fn placement_failure(api: &Api, name: &str, since: u64) -> Option<String> {
    let events: EventList = api
        .get(&format!("/v1/events?service={name}&limit=20"))
        .await
        .ok()?;
    events
        .events
        .into_iter()
        .rev()
        .find(|e| e.kind == strata_core::EventKind::PlacementFailed && e.at >= since)
        .map(|e| e.message)
}

/// Whether the control plane had to stop an old instance of `name` before its replacement
/// could be placed since `since` (a recreate: a fixed port or capacity only it held).
async fn recreating(api: &Api, name: &str, since: u64) -> bool {
    let Ok(events) = api
        .get::<EventList>(&format!("/v1/events?service={name}&limit=50"))
        .await
    else {
        return false;
    };
    events.events.iter().any(|e| {
        e.kind == strata_core::EventKind::InstanceStop
            && e.at >= since
            && e.message.contains("recreate:")
    })
}
