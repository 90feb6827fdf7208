//! Environment quotas: setting one (`PUT /v1/envs/{env}/quota`, an event) and checking a
//! deploy or a scale change against it before anything is written. The decision is
//! `strata_sched::quota::check`; this reads the environment's services for it.

use strata_core::{keys, EnvName, Environment, EventKind, Quota, Release, Service};
use strata_sched::quota::{check, ServiceDemand};

use crate::{ControlError, ControlPlane};

/// The most instances a service may run: its count, or its autoscaling maximum.
pub fn most_instances(replicas: u32, autoscale: Option<&strata_core::spec::AutoscaleSpec>) -> u32 {
    autoscale.map_or(replicas, |bounds| bounds.max.max(replicas))
}

impl ControlPlane {
    /// Sets environment `env`'s quota (made if it does not exist); no limit at all removes
    /// it. It applies to the next deploy or scale change; what already runs is not stopped.
    pub async fn set_quota(
        &self,
        env: &EnvName,
        quota: Quota,
        actor: &strata_core::Actor,
    ) -> Result<Environment, ControlError> {
        self.update_environment(env, actor, EventKind::EnvQuota, |record| {
            record.quota = Some(quota).filter(|q| *q != Quota::default());
            format!("environment {env}: quota {quota}")
        })
        .await
    }

    /// Checks that environment `env`'s services, with `changed` in place of what they are
    /// now (or added), fit its quota; a refusal says which limit, by how much, who uses it,
    /// and how to fix it.
    pub(crate) async fn check_quota(
        &self,
        env: &EnvName,
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
