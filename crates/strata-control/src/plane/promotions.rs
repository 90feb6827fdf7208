//! Promotion: a release of one environment deployed into another as it was tested (the same
//! artifact digest and spec), with the target environment's own configuration, secrets and
//! scale (so the service must have been deployed there once, from its spec); the new release
//! records where it came from. Refused, unless forced, when the
//! source release does not serve in full, has served less than the soak, or missed its SLO
//! over it (`strata_sched::promotion::promotion_refusal` decides).

use strata_core::api::{DeployRequest, DeployService, PromoteRequest, Promoted};
use strata_core::spec::ScaleSpec;
use strata_core::{keys, Actor, ConfigVersion, EnvName, Origin, Release, Service, ServiceName};
use strata_sched::promotion::{promotion_refusal, SourceHealth};

use super::ControlPlane;
use crate::ControlError;

/// How long a release must have served before it is promoted, by default.
pub const DEFAULT_SOAK_S: u64 = 600;

impl ControlPlane {
    /// Promotes `name`'s release from `request.from` into `env` (see the module docs).
    pub async fn promote(
        &self,
        env: &EnvName,
        name: &ServiceName,
        request: &PromoteRequest,
        actor: &Actor,
    ) -> Result<Promoted, ControlError> {
        let from = &request.from;
        if from == env {
            return Err(ControlError::bad_request(
                format!("cannot promote {name} from {env} into {env}: the same environment"),
                Some("promote into another environment: --from staging --to prod".to_string()),
            ));
        }
        let Some((source, _)) = self.get::<Service>(&keys::service(from, name)).await? else {
            return Err(ControlError::not_found(
                format!("service {name} in environment {from}"),
                Some(format!("`strata status --env {from}` lists its services")),
            ));
        };
        let number = request.release.unwrap_or(source.desired_release);
        let Some((release, _)) = self
            .get::<Release>(&keys::release(from, name, number))
            .await?
        else {
            return Err(ControlError::not_found(
                format!("release {number} of {name} in {from}"),
                Some(format!("`strata releases {name} --env {from}` lists them")),
            ));
        };
        if !request.force {
            let soak_ms = request
                .soak_s
                .unwrap_or(DEFAULT_SOAK_S)
                .saturating_mul(1_000);
            let slo = match source.slo {
                Some(slo) => {
                    let traffic =
                        self.traffic
                            .since(from, name, self.now().saturating_sub(soak_ms));
                    Some(crate::metrics::slo_report(&slo, &traffic))
                }
                None => None,
            };
            let health = SourceHealth {
                runs_it: source.desired_release == number,
                serves_in_full: self.serves_in_full(&source),
                // Since it became the desired release (a canary's time beside the stable
                // one, or its wait before a rollback back to it, does not count).
                served_ms: self
                    .now()
                    .saturating_sub(release.created_at.max(source.desired_since)),
                slo: slo.as_ref(),
            };
            if let Some((message, hint)) = promotion_refusal(name, from, number, soak_ms, &health) {
                return Err(ControlError::Conflict {
                    message,
                    hint: Some(hint),
                });
            }
        }
        // The target's own configuration and scale: a service's first deploy into an
        // environment comes from its spec, which holds that environment's configuration.
        let Some((target, _)) = self.get::<Service>(&keys::service(env, name)).await? else {
            return Err(ControlError::Conflict {
                message: format!(
                    "{name} has never been deployed to {env}, so {env} has no configuration of it to promote into"
                ),
                hint: Some(format!(
                    "deploy it to {env} once from its spec (`strata deploy FILE --env {env}`), then promote"
                )),
            });
        };
        let config: Option<ConfigVersion> = self
            .get(&keys::config(env, name, target.latest_config))
            .await?
            .map(|(c, _)| c);
        let mut spec = release.spec.without_config();
        spec.config = config.map(|c| c.values).unwrap_or_default();
        spec.scale = ScaleSpec {
            replicas: target.replicas,
            autoscale: target.autoscale,
        };
        let origin = Origin {
            env: from.clone(),
            release: number,
        };
        let request = DeployRequest {
            services: vec![DeployService {
                spec,
                artifact_digest: release.artifact_digest.clone(),
            }],
        };
        let deployed = self
            .deploy_from(env, request, actor, Some(&origin))
            .await?
            .services
            .remove(0);
        Ok(Promoted {
            env: env.clone(),
            name: name.clone(),
            release: deployed.release,
            created: deployed.created,
            replicas: deployed.replicas,
            from: origin,
        })
    }
}
