//! Environment quotas: setting one (`PUT /v1/envs/{env}/quota`, an event) and checking a
//! deploy or a scale change against it before anything is written. The decision is
//! `strata_sched::quota::check`; this reads the environment's services for it.

use strata_core::{keys, CallPolicy, Environment, Event, Quota, Release, Service};
use strata_sched::quota::{check, ServiceDemand};
use strata_store::{Txn, TxnOutcome};

use crate::plane::{encode, CAS_ATTEMPTS};
use crate::{now_millis, ControlError, ControlPlane};

/// The most instances a service may run: its count, or its autoscaling maximum.
pub fn most_instances(replicas: u32, autoscale: Option<&strata_core::spec::AutoscaleSpec>) -> u32 {
    autoscale.map_or(replicas, |bounds| bounds.max.max(replicas))
}

impl ControlPlane {
    /// Sets environment `env`'s quota (made if it does not exist). It applies to the next
    /// deploy or scale change; what already runs is not stopped.
    pub async fn set_quota(
        &self,
        env: &str,
        quota: Quota,
        actor: &str,
    ) -> Result<Environment, ControlError> {
        if !crate::plane::valid_name(env) {
            return Err(ControlError::bad_request(
                format!("environment name `{env}` is not valid"),
                None,
            ));
        }
        let key = keys::env(env);
        for _ in 0..CAS_ATTEMPTS {
            let existing: Option<(Environment, u64)> = self.get(&key).await?;
            let (mut record, revision) = existing.unwrap_or_else(|| {
                (
                    Environment {
                        name: env.to_string(),
                        created_at: now_millis(),
                        default_policy: CallPolicy::default(),
                        quota: None,
                    },
                    0,
                )
            });
            record.quota = Some(quota).filter(|q| *q != Quota::default());
            let written = self
                .store
                .txn(Txn::new().when(&key, revision).put(&key, encode(&record)))
                .await?;
            if let TxnOutcome::Committed(_) = written {
                self.record(Event {
                    env: Some(env.to_string()),
                    actor: actor.to_string(),
                    ..Self::event(
                        "env.quota",
                        format!("environment {env}: quota {}", show(&quota)),
                    )
                })
                .await;
                return Ok(record);
            }
        }
        Err(ControlError::Conflict {
            message: format!("environment {env} kept changing while its quota was set"),
            hint: Some("try again".into()),
        })
    }

    /// Checks that environment `env`'s services, with `changed` in place of what they are
    /// now (or added), fit its quota; a refusal says which limit, by how much, who uses it,
    /// and how to fix it.
    pub(crate) async fn check_quota(
        &self,
        env: &str,
        changed: &[ServiceDemand],
    ) -> Result<(), ControlError> {
        let Some((environment, _)) = self.get::<Environment>(&keys::env(env)).await? else {
            return Ok(());
        };
        let Some(quota) = environment.quota else {
            return Ok(());
        };
        let mut demands: Vec<ServiceDemand> = changed.to_vec();
        for (service, _) in self.list::<Service>(&keys::services_of(env)).await? {
            if changed.iter().any(|c| c.service == service.name) {
                continue;
            }
            let release: Option<(Release, u64)> = self
                .get(&keys::release(env, &service.name, service.desired_release))
                .await?;
            let Some((release, _)) = release else {
                continue;
            };
            demands.push(ServiceDemand {
                service: service.name.clone(),
                instances: most_instances(service.replicas, service.autoscale.as_ref()),
                per_instance: release.spec.resources,
            });
        }
        check(&quota, &demands).map_err(|exceeded| {
            let users: Vec<String> = exceeded
                .by_service
                .iter()
                .map(|(service, used)| format!("{service} {}", exceeded.show(*used)))
                .collect();
            let flag = match exceeded.limit {
                "instances" => "--instances",
                "memory" => "--memory",
                _ => "--cpu",
            };
            ControlError::Forbidden {
                message: format!(
                    "environment {env}'s quota allows {} {}; this would take {} ({})",
                    exceeded.show(exceeded.allowed),
                    exceeded.limit,
                    exceeded.show(exceeded.wanted),
                    users.join(", ")
                ),
                hint: format!(
                    "lower replicas, [scale] max or [resources], or have an operator raise it: strata env quota {env} {flag} {}",
                    exceeded.show(exceeded.wanted)
                ),
            }
        })
    }
}

fn show(quota: &Quota) -> String {
    let mut parts = Vec::new();
    if let Some(n) = quota.instances {
        parts.push(format!("{n} instances"));
    }
    if let Some(bytes) = quota.memory_bytes {
        parts.push(format!("{}Mi memory", bytes.div_ceil(1 << 20)));
    }
    if let Some(millis) = quota.cpu_millis {
        parts.push(format!("{} cpu", millis as f64 / 1000.0));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}
