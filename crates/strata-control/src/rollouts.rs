//! The rollout controller (on the leader): every [`TICK`], for each service whose record holds
//! an active progressive rollout (canary, blue-green), it reads the new release's available
//! instances from the reflector and each release's attempts from the traffic the nodes
//! reported, asks [`strata_sched::canary::next`] and writes the answer into the service's
//! record with a `rollout.*` event (the reconciler starts the step's instances, the routes
//! give the new release its share). Also what a person does to a rollout: pause, resume,
//! abort, and its status.
//!
//! Level-triggered and idempotent: each tick decides from the record and the traffic only; a
//! write lost to a concurrent change (a deploy, a scale) is decided again at the next tick. A
//! new leader goes on from the record: the same step, and the traffic it has heard of since
//! (the traffic log is the leader's memory, so a step begun before the change waits for
//! enough requests again rather than pass on what the old leader saw).

use std::sync::Arc;
use std::time::Duration;

use strata_core::api::{ReleaseWindow, RolloutStatus};
use strata_core::spec::{CanaryCriteria, RolloutSpec};
use strata_core::{
    keys, Actor, EnvName, EventKind, ReleaseEnding, Rollout, RolloutPhase, Service, ServiceName,
};
use strata_sched::canary::{analyse, next, Decision, Facts, ReleaseTraffic};
use strata_store::{Txn, TxnOutcome};

use crate::plane::{encode, ControlPlane, CAS_ATTEMPTS};
use crate::reflector::ServiceKey;
use crate::ControlError;

/// How often the controller looks (nodes report their traffic every second).
pub const TICK: Duration = Duration::from_millis(250);

/// Runs the rollout controller until the task is dropped.
pub async fn run(plane: Arc<ControlPlane>) {
    let mut fence = plane.fence();
    while fence.wait_to_lead().await {
        if let Err(error) = control_rollouts_once(&plane).await {
            if !matches!(error, ControlError::NotLeader) {
                tracing::warn!(%error, "rollout controller pass failed; retrying");
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// What a person asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Pause,
    Resume,
    Abort,
}

impl RolloutAction {
    pub fn parse(text: &str) -> Option<RolloutAction> {
        match text {
            "pause" => Some(RolloutAction::Pause),
            "resume" => Some(RolloutAction::Resume),
            "abort" => Some(RolloutAction::Abort),
            _ => None,
        }
    }
}

/// One service's rollout as the controller sees it: the record, its revision, and the facts.
struct Looked {
    service: Service,
    revision: u64,
    facts: Facts,
}

/// One look at every active rollout, each moved on as [`next`] says (what [`run`] does
/// every [`TICK`] on the leader).
pub async fn control_rollouts_once(plane: &ControlPlane) -> Result<(), ControlError> {
    let active: Vec<ServiceKey> = plane
        .reflector()
        .read()
        .services()
        .filter(|s| s.value.rollout_release().is_some())
        .map(|s| (s.value.env.clone(), s.value.name.clone()))
        .collect();
    for id in active {
        let Some(looked) = look(plane, &id) else {
            continue;
        };
        let Some(rollout) = looked.service.rollout.as_ref() else {
            continue;
        };
        let decision = next(rollout, &looked.facts);
        if decision != Decision::Nothing {
            apply(plane, looked, decision).await?;
        }
    }
    Ok(())
}

/// The service's record and what the controller knows of its rollout's new release now.
fn look(plane: &ControlPlane, id: &ServiceKey) -> Option<Looked> {
    let now = plane.now();
    let state = plane.reflector().read();
    let record = state.service(id)?;
    let service = record.value.clone();
    let rollout = service.rollout.as_ref().filter(|r| r.is_active())?;
    let release = state.release(&id.0, &id.1, rollout.release)?;
    let spec = release.spec.rollout.clone().unwrap_or_default();
    let of_release: Vec<_> = state
        .instances_of(id)
        .into_iter()
        .filter(|v| v.instance.release == rollout.release)
        .filter(|v| v.instance.desired == strata_core::DesiredState::Running)
        .collect();
    let available = of_release
        .iter()
        .filter(|v| v.is_available(now, release.spec.min_ready_ms))
        .filter(|v| !state.node_lost(&v.instance.node))
        .count() as u32;
    // An instance that failed for good, or keeps crashing: the release does not start.
    let failing = of_release.iter().find_map(|v| {
        let status = v.status?;
        let crashed = status.restarts >= strata_sched::canary::CRASHES_BEFORE_ROLLBACK;
        let failed = status.state == strata_core::InstanceState::Failed;
        (failed || crashed).then(|| {
            let last = status.last_exit.as_ref().map_or(String::new(), |exit| {
                format!(", last exit: {}", exit.description)
            });
            format!(
                "instance {} {} ({}{last})",
                v.instance.id,
                if failed {
                    "failed".to_string()
                } else {
                    format!("crashed {} times", status.restarts)
                },
                status.message
            )
        })
    });
    let verdict = (rollout.weight > 0).then(|| {
        let traffic = plane
            .traffic()
            .releases_since(&id.0, &id.1, analysed_from(rollout));
        judge(rollout, &spec, service.slo.as_ref(), &traffic)
    });
    Some(Looked {
        facts: Facts {
            now,
            replicas: service.replicas,
            available,
            verdict,
            interval_ms: spec.step_interval_ms,
            failing,
        },
        revision: record.revision,
        service,
    })
}

/// Where a step's analysis starts: the second its weight took effect in (the traffic log
/// keeps seconds; before the weight the new release got none of that second's requests).
fn analysed_from(rollout: &Rollout) -> u64 {
    rollout.weight_since / 1000 * 1000
}

fn judge(
    rollout: &Rollout,
    spec: &RolloutSpec,
    slo: Option<&strata_core::spec::SloSpec>,
    traffic: &std::collections::BTreeMap<u64, ReleaseTraffic>,
) -> strata_sched::canary::Verdict {
    let criteria: CanaryCriteria = spec.analysis.with_slo(slo);
    let new = traffic.get(&rollout.release).copied().unwrap_or_default();
    analyse(
        rollout.release,
        &new,
        rollout.stable,
        traffic.get(&rollout.stable),
        &criteria,
    )
}

/// Writes `decision` into the service's record (if it did not change meanwhile), with its
/// event.
async fn apply(
    plane: &ControlPlane,
    looked: Looked,
    decision: Decision,
) -> Result<(), ControlError> {
    let Looked {
        mut service,
        revision,
        facts,
    } = looked;
    let Some(mut rollout) = service.rollout.take() else {
        return Ok(());
    };
    let now = facts.now;
    let (kind, message) = match decision {
        Decision::Nothing => return Ok(()),
        Decision::Wait(message) => (EventKind::RolloutWaiting, message),
        Decision::Shift { weight, message } => {
            rollout.weight = weight;
            rollout.weight_since = now;
            (EventKind::RolloutStep, message)
        }
        Decision::NextStep { step, message } => {
            rollout.step = step;
            (EventKind::RolloutStep, message)
        }
        Decision::Succeed(message) => {
            if plane.serves_in_full(&service) {
                service.note_served(service.desired_release);
            }
            service.make_desired(
                rollout.release,
                now,
                ReleaseEnding::Superseded,
                format!(
                    "replaced by release {} once its {} passed",
                    rollout.release,
                    rollout.strategy.as_str()
                ),
            );
            rollout.phase = RolloutPhase::Succeeded;
            rollout.weight = 100;
            (EventKind::RolloutSucceeded, message)
        }
        Decision::RollBack(message) => {
            rollout.phase = RolloutPhase::RolledBack;
            rollout.weight = 0;
            service.note_ended(
                rollout.release,
                ReleaseEnding::Failed,
                format!("{} {message}", rollout.strategy.as_str()),
                now,
            );
            (EventKind::RolloutRolledBack, message)
        }
    };
    rollout.message = message.clone();
    rollout.updated_at = now;
    service.rollout = Some(rollout);
    service.updated_at = now;
    let key = keys::service(&service.env, &service.name);
    let mut event = crate::event_log::event(kind, format!("{}: {message}", service.name));
    event.env = Some(service.env.clone());
    event.service = Some(service.name.clone());
    let txn = Txn::new().when(&key, revision).put(&key, encode(&service));
    let txn = plane.event_log().stage(txn, event);
    if let TxnOutcome::Committed(_) = plane.controller_txn(txn).await? {
        tracing::info!(env = %service.env, service = %service.name, %kind, "{message}");
        plane.kick();
    }
    Ok(())
}

impl ControlPlane {
    /// `env/name`'s rollout (going on, or the last one's outcome), its new release's
    /// instances wanted and available, and each release's traffic since the current weight.
    pub async fn rollout_status(
        &self,
        env: &EnvName,
        name: &ServiceName,
    ) -> Result<RolloutStatus, ControlError> {
        let Some((service, _)) = self.get::<Service>(&keys::service(env, name)).await? else {
            return Err(self.service_not_found(env, name).await);
        };
        let id = (env.clone(), name.clone());
        let (wanted, available) = match service.rollout.as_ref().filter(|r| r.is_active()) {
            Some(rollout) => {
                let available = self
                    .reflector_caught_up()
                    .await
                    .ok()
                    .and_then(|()| look(self, &id))
                    .map_or(0, |looked| looked.facts.available);
                (rollout.wanted_instances(service.replicas), available)
            }
            None => (0, 0),
        };
        let traffic = match &service.rollout {
            Some(rollout) => self
                .traffic()
                .releases_since(env, name, analysed_from(rollout))
                .into_iter()
                .map(|(release, traffic)| ReleaseWindow {
                    release,
                    attempts: traffic.attempts,
                    failures: traffic.failures,
                    p99_ms: traffic.p99_ms.unwrap_or(0.0),
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(RolloutStatus {
            env: env.to_string(),
            service: name.to_string(),
            rollout: service.rollout,
            wanted,
            available,
            traffic,
        })
    }

    /// Pauses, resumes or aborts `env/name`'s rollout, by `actor`, for `reason`.
    pub async fn steer_rollout(
        &self,
        env: &EnvName,
        name: &ServiceName,
        action: RolloutAction,
        reason: Option<&str>,
        actor: &Actor,
    ) -> Result<Rollout, ControlError> {
        let key = keys::service(env, name);
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut service, revision)) = self.get::<Service>(&key).await? else {
                return Err(self.service_not_found(env, name).await);
            };
            let Some(mut rollout) = service.rollout.take().filter(|r| r.is_active()) else {
                return Err(ControlError::bad_request(
                    format!("service {name} in environment {env} has no rollout going on"),
                    Some(format!(
                        "a rollout begins when a release of a service with `[service.{name}.rollout] strategy = \"canary\"` or \"blue-green\" is deployed; `strata rollout status {name} --env {env}` shows the last one"
                    )),
                ));
            };
            let now = self.now();
            let by = match reason {
                Some(why) if !why.trim().is_empty() => format!("by {actor}: {}", why.trim()),
                _ => format!("by {actor}"),
            };
            let (kind, message) = match action {
                RolloutAction::Pause => {
                    rollout.phase = RolloutPhase::Paused;
                    (
                        EventKind::RolloutPaused,
                        format!(
                            "paused at {}% of the traffic {by}; `strata rollout resume` goes on",
                            rollout.weight
                        ),
                    )
                }
                RolloutAction::Resume => {
                    rollout.phase = RolloutPhase::Progressing;
                    // The step's analysis starts over from now: the paused time is not
                    // counted as passed.
                    rollout.weight_since = now;
                    (
                        EventKind::RolloutPaused,
                        format!("resumed at {}% of the traffic {by}", rollout.weight),
                    )
                }
                RolloutAction::Abort => {
                    rollout.phase = RolloutPhase::Aborted;
                    rollout.weight = 0;
                    let message = format!(
                        "aborted {by}: release {} is taken out, release {} serves alone",
                        rollout.release, rollout.stable
                    );
                    service.note_ended(
                        rollout.release,
                        ReleaseEnding::Aborted,
                        format!("{} {message}", rollout.strategy.as_str()),
                        now,
                    );
                    (EventKind::RolloutAborted, message)
                }
            };
            rollout.message = message.clone();
            rollout.updated_at = now;
            service.rollout = Some(rollout.clone());
            service.updated_at = now;
            let mut event = crate::event_log::event(kind, format!("{name}: {message}"));
            event.env = Some(env.clone());
            event.service = Some(name.clone());
            event.actor = actor.clone();
            let txn = Txn::new().when(&key, revision).put(&key, encode(&service));
            let txn = self.event_log().stage(txn, event);
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                tracing::info!(%env, service = %name, "{message}");
                self.kick();
                return Ok(rollout);
            }
        }
        Err(ControlError::Conflict {
            message: format!("service `{name}` kept changing"),
            hint: Some("try again".to_string()),
        })
    }
}

/// The rollout a deploy begins: release `release` brought in beside `stable` under `spec`.
pub fn begin(release: u64, stable: u64, spec: &RolloutSpec, now: u64, by: &Actor) -> Rollout {
    let steps = spec.traffic_steps();
    Rollout {
        release,
        stable,
        strategy: spec.strategy,
        message: format!(
            "{} of release {release} beside release {stable}: steps {}",
            spec.strategy.as_str(),
            steps
                .iter()
                .map(|s| format!("{s}%"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        steps,
        step: 0,
        weight: 0,
        weight_since: now,
        phase: RolloutPhase::Progressing,
        started_at: now,
        started_by: Some(by.to_string()),
        updated_at: now,
    }
}
