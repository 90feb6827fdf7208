//! The autoscaler controller (on the leader): every [`TICK`], for each service with autoscaling
//! bounds, reads the traffic every node reported ([`crate::metrics::TrafficLog`]), asks
//! [`strata_sched::autoscale::decide`] and writes the new count with its reason as a
//! `service.autoscaled` event; the reconciler then starts or stops instances. Also the
//! change of scale by hand (`strata scale`) and the wake-up of a service at zero instances
//! (the ingress holds a request for it).
//!
//! Level-triggered and idempotent: each tick decides from the current state only; a write
//! lost to a concurrent change is decided again at the next tick.

use std::sync::Arc;
use std::time::Duration;

use strata_core::spec::AutoscaleSpec;
use strata_core::{keys, Actor, EnvName, EventKind, Service, ServiceName};
use strata_sched::autoscale::{decide, ScalePolicy};
use strata_store::{Txn, TxnOutcome};

use crate::plane::{encode, ControlPlane, CAS_ATTEMPTS};
use crate::{now_millis, ControlError};

/// How often the autoscaler looks (nodes report every second; a tick of 250 ms acts on a
/// report within a quarter of a second of its arrival).
pub const TICK: Duration = Duration::from_millis(250);

/// Runs the autoscaler until the task is dropped.
pub async fn run(plane: Arc<ControlPlane>) {
    let mut fence = plane.fence();
    while fence.wait_to_lead().await {
        if let Err(error) = tick(&plane).await {
            if !matches!(error, ControlError::NotLeader) {
                tracing::warn!(%error, "autoscaler pass failed; retrying");
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// The policy of an autoscaled service; `stable_window`: the platform's scale-down window.
pub fn policy(bounds: &AutoscaleSpec, service: &Service, stable_window: Duration) -> ScalePolicy {
    ScalePolicy {
        min: bounds.min,
        max: bounds.max,
        target_concurrency: bounds.target_concurrency,
        scale_to_zero_after_ms: bounds.scale_to_zero_after_ms,
        slo_p99_ms: service
            .slo
            .as_ref()
            .and_then(|slo| slo.p99_ms)
            .map(|ms| ms as f64),
        stable_window_ms: stable_window.as_millis() as u64,
    }
}

async fn tick(plane: &ControlPlane) -> Result<(), ControlError> {
    let now = now_millis();
    for (service, _) in plane.list::<Service>(keys::SERVICES).await? {
        let Some(bounds) = service.autoscale else {
            continue;
        };
        // What the decision looks at: the stable window, and the idle period of a service
        // that scales to zero.
        let span = plane
            .config
            .scale_down_window
            .max(Duration::from_millis(bounds.scale_to_zero_after_ms));
        let traffic = plane.traffic().since(
            &service.env,
            &service.name,
            now.saturating_sub(span.as_millis() as u64 + 1000),
        );
        let decision = decide(
            now,
            service.replicas,
            service.scaled_at,
            &policy(&bounds, &service, plane.config.scale_down_window),
            &traffic.seconds,
        );
        if let Some(decision) = decision {
            plane
                .set_replicas(
                    &service.env,
                    &service.name,
                    service.replicas,
                    decision.replicas,
                    &decision.reason,
                    &Actor::Autoscaler,
                )
                .await?;
        }
    }
    Ok(())
}

impl ControlPlane {
    /// Sets `env/name`'s count to `to` if it is still `from` (otherwise another change came
    /// first and nothing is written), with `reason` in a `service.autoscaled` (autoscaler) or
    /// `service.scaled` (a person) event. Returns whether it was written.
    pub async fn set_replicas(
        &self,
        env: &EnvName,
        name: &ServiceName,
        from: u32,
        to: u32,
        reason: &str,
        actor: &Actor,
    ) -> Result<bool, ControlError> {
        let key = keys::service(env, name);
        let Some((mut service, revision)) = self.get::<Service>(&key).await? else {
            return Ok(false);
        };
        if service.replicas != from || from == to {
            return Ok(false);
        }
        let now = now_millis();
        service.replicas = to;
        service.scaled_at = now;
        service.updated_at = now;
        let txn = Txn::new().when(&key, revision).put(&key, encode(&service));
        let outcome = match actor {
            // The autoscaler is a controller: fenced, only the leader writes.
            Actor::Autoscaler => self.controller_txn(txn).await?,
            _ => self.store.txn(txn).await?,
        };
        if !matches!(outcome, TxnOutcome::Committed(_)) {
            return Ok(false);
        }
        let kind = match actor {
            Actor::Autoscaler => EventKind::ServiceAutoscaled,
            _ => EventKind::ServiceScaled,
        };
        let mut event = crate::event_log::event(kind, format!("{name}: {reason}"));
        event.env = Some(env.clone());
        event.service = Some(name.clone());
        event.actor = actor.clone();
        tracing::info!(%env, service = %name, reason, "scaled");
        self.event_log().record(event).await;
        self.kick.notify_one();
        Ok(true)
    }

    /// A request waits for `env/name`, at zero instances: if it scales to zero, one instance
    /// is started now rather than at the autoscaler's next look at the traffic.
    pub async fn wake(&self, env: &EnvName, name: &ServiceName) -> Result<(), ControlError> {
        let key = keys::service(env, name);
        let Some((service, _)) = self.get::<Service>(&key).await? else {
            return Err(ControlError::not_found(
                format!("service {name} in environment {env}"),
                None,
            ));
        };
        let Some(bounds) = service.autoscale else {
            return Ok(());
        };
        if service.replicas == 0 && bounds.max > 0 {
            let to = bounds.min.max(1);
            self.set_replicas(
                env,
                name,
                0,
                to,
                &format!("a request waits at zero instances: 0 -> {to}"),
                &Actor::Autoscaler,
            )
            .await?;
        }
        Ok(())
    }

    /// Changes `env/name`'s scale by hand: a count (within the autoscaling bounds, if any)
    /// and/or new bounds (both `min` and `max` turn autoscaling on for a fixed service). A
    /// later deploy of the spec sets the spec's again.
    pub async fn scale_by_hand(
        &self,
        env: &EnvName,
        name: &ServiceName,
        request: &strata_core::api::ScaleRequest,
        actor: &Actor,
    ) -> Result<Service, ControlError> {
        let key = keys::service(env, name);
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut service, revision)) = self.get::<Service>(&key).await? else {
                return Err(ControlError::not_found(
                    format!("service {name} in environment {env}"),
                    Some(format!("see `strata status --env {env}`")),
                ));
            };
            let before = (service.replicas, service.autoscale);
            let mut bounds = service.autoscale;
            match (request.min, request.max, &mut bounds) {
                (None, None, _) => {}
                (Some(min), Some(max), None) => {
                    bounds = Some(AutoscaleSpec {
                        min,
                        max,
                        target_concurrency: AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY,
                        scale_to_zero_after_ms: AutoscaleSpec::DEFAULT_SCALE_TO_ZERO_AFTER_MS,
                    })
                }
                (_, _, None) => {
                    return Err(ControlError::bad_request(
                        format!(
                            "{name} has a fixed count: give both --min and --max to autoscale it"
                        ),
                        Some(format!("strata scale {name} --min 1 --max 5")),
                    ))
                }
                (min, max, Some(current)) => {
                    current.min = min.unwrap_or(current.min);
                    current.max = max.unwrap_or(current.max);
                }
            }
            if let Some(bounds) = &bounds {
                if bounds.max == 0 || bounds.max > 1000 || bounds.min > bounds.max {
                    return Err(ControlError::bad_request(
                        format!(
                            "scale bounds {}..{} of {name}: min must be at most max, and max 1..1000",
                            bounds.min, bounds.max
                        ),
                        None,
                    ));
                }
            }
            let mut replicas = request.replicas.unwrap_or(service.replicas);
            if let Some(bounds) = &bounds {
                if let Some(asked) = request.replicas {
                    if asked < bounds.min || asked > bounds.max {
                        return Err(ControlError::bad_request(
                            format!(
                                "{asked} instances is outside {name}'s autoscaling bounds {}..{}",
                                bounds.min, bounds.max
                            ),
                            Some(format!(
                                "change the bounds too: strata scale {name} {asked} --min {} --max {}",
                                asked.min(bounds.min),
                                asked.max(bounds.max)
                            )),
                        ));
                    }
                }
                replicas = replicas.clamp(bounds.min, bounds.max);
            } else if replicas > 1000 {
                return Err(ControlError::bad_request(
                    format!("{replicas} instances: at most 1000"),
                    None,
                ));
            }
            if before == (replicas, bounds) {
                return Ok(service);
            }
            let release: Option<(strata_core::Release, u64)> = self
                .get(&keys::release(env, name, service.desired_release))
                .await?;
            if let Some((release, _)) = release {
                self.check_quota(
                    env,
                    &[strata_sched::quota::ServiceDemand {
                        service: name.clone(),
                        instances: crate::quota::most_instances(replicas, bounds.as_ref()),
                        per_instance: release.spec.resources,
                    }],
                )
                .await?;
            }
            let now = now_millis();
            if replicas != service.replicas {
                service.scaled_at = now;
            }
            service.replicas = replicas;
            service.autoscale = bounds;
            service.updated_at = now;
            let txn = Txn::new().when(&key, revision).put(&key, encode(&service));
            if self.store.txn(txn).await?.is_committed() {
                let message = match &service.autoscale {
                    Some(bounds) => format!(
                        "{name}: {} -> {} instance(s), autoscaled {}..{} (by hand)",
                        before.0, service.replicas, bounds.min, bounds.max
                    ),
                    None => format!(
                        "{name}: {} -> {} instance(s) (by hand)",
                        before.0, service.replicas
                    ),
                };
                let mut event = crate::event_log::event(EventKind::ServiceScaled, message);
                event.env = Some(env.clone());
                event.service = Some(name.clone());
                event.actor = actor.clone();
                self.event_log().record(event).await;
                self.kick.notify_one();
                return Ok(service);
            }
        }
        Err(ControlError::Conflict {
            message: format!("service `{name}` kept changing"),
            hint: Some("try again".to_string()),
        })
    }
}
