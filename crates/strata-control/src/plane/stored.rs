//! A service as a deploy (and its preview) reads it before deciding: the record, the release
//! a deploy compares with, the latest configuration and the numbers its history holds.

use strata_core::{keys, ConfigVersion, EnvName, Release, Service, ServiceName};

use super::ControlPlane;
use crate::ControlError;

/// A service as stored, for a deploy's decision: its record with its revision, the release a
/// deploy compares with (a progressive rollout's new release while one goes on, else the
/// desired one), the latest configuration version, and the newest release and configuration
/// numbers its name has (from before it was deleted, when it has no record).
pub(super) struct StoredService {
    pub service: Option<(Service, u64)>,
    pub release: Option<Release>,
    pub latest_config: Option<ConfigVersion>,
    pub numbered_before: (u64, u64),
}

impl ControlPlane {
    pub(super) async fn stored_service(
        &self,
        env: &EnvName,
        name: &ServiceName,
    ) -> Result<StoredService, ControlError> {
        let service: Option<(Service, u64)> = self.get(&keys::service(env, name)).await?;
        let numbered_before = match &service {
            Some((service, _)) => (service.latest_release, service.latest_config),
            None => (
                self.newest_number(&keys::releases_of(env, name)).await?,
                self.newest_number(&keys::configs_of(env, name)).await?,
            ),
        };
        let compared = service.as_ref().map_or(0, |(service, _)| {
            service.rollout_release().unwrap_or(service.desired_release)
        });
        let release: Option<Release> = self
            .get(&keys::release(env, name, compared))
            .await?
            .map(|(release, _)| release);
        let latest_config: Option<ConfigVersion> = self
            .get(&keys::config(env, name, numbered_before.1))
            .await?
            .map(|(config, _)| config);
        Ok(StoredService {
            service,
            release,
            latest_config,
            numbered_before,
        })
    }
}
