//! A deploy's preview: what it would change, service by service, decided as the deploy
//! decides (`strata_sched::plan_deploy`) and told in words by
//! `strata_sched::preview::describe_changes`, with nothing written. Artifacts need not be
//! uploaded yet: the preview compares digests.

use strata_core::api::{DeployPreview, DeployRequest, ServicePreview};
use strata_core::spec::config_hash;
use strata_core::{keys, ConfigVersion, EnvName};
use strata_sched::preview::{describe_changes, Incoming, Running};
use strata_sched::{plan_deploy, DeployCurrent, DeployWant};

use super::ControlPlane;
use crate::ControlError;

impl ControlPlane {
    /// What deploying `request` to `env` would change; refused as the deploy would be for a
    /// spec that does not check or a secret that is not set.
    pub async fn preview(
        &self,
        env: &EnvName,
        request: &DeployRequest,
    ) -> Result<DeployPreview, ControlError> {
        if request.services.is_empty() {
            return Err(ControlError::bad_request(
                "the deploy names no services",
                Some("add at least one [service.NAME] table to the spec".to_string()),
            ));
        }
        let mut services = Vec::with_capacity(request.services.len());
        for item in &request.services {
            let spec = &item.spec;
            strata_core::spec::check_received(spec).map_err(|refused| {
                ControlError::bad_request(refused.to_string(), Some(refused.hint))
            })?;
            let name = &spec.name;
            let secrets = self.secret_versions(env, name, spec.secrets.keys()).await?;
            let stored = self.stored_service(env, name).await?;
            let (service, release, latest_config, numbered_before) = (
                stored.service.map(|(service, _)| service),
                stored.release,
                stored.latest_config,
                stored.numbered_before,
            );
            let running_config: Option<ConfigVersion> = match &release {
                Some(release) => self
                    .get(&keys::config(env, name, release.config_version))
                    .await?
                    .map(|(c, _)| c),
                None => None,
            };
            let values = spec.config_for(env);
            let spec_hash = spec.spec_hash(item.artifact_digest.as_deref());
            let plan = plan_deploy(
                DeployCurrent {
                    service: service.as_ref(),
                    release: release.as_ref(),
                    config: latest_config.as_ref(),
                    numbered_before,
                },
                &DeployWant {
                    spec_hash: &spec_hash,
                    config_hash: &config_hash(&values),
                    secrets: &secrets.versions,
                    scale: &spec.scale,
                    slo: spec.slo,
                },
            );
            let changes = describe_changes(
                Running {
                    release: release.as_ref(),
                    config: running_config.as_ref(),
                    replicas: service.as_ref().map(|s| s.replicas),
                },
                Incoming {
                    spec,
                    artifact_digest: item.artifact_digest.as_deref(),
                    config: &values,
                    secrets: &secrets.versions,
                },
                &plan,
            );
            services.push(ServicePreview {
                name: name.clone(),
                new_release: plan.new_release,
                changes,
            });
        }
        Ok(DeployPreview {
            env: env.clone(),
            services,
        })
    }
}
