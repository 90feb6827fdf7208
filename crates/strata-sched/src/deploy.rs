//! The deploy decision: given a service as stored (its record, desired release and latest
//! configuration version) and the spec being deployed, what to write: a new configuration
//! version, a new release, a new count. Pure; the control plane reads the records, asks, and
//! writes the answer in one transaction (retrying the whole on a conflict).
//!
//! - Configuration is versioned apart: a new version only when the values' hash changed.
//! - A new release when what runs changed (the spec's hash: program, artifact, driver
//!   settings, ...), the configuration version did, or a secret's version did; the same
//!   spec, values and secrets make none.
//! - Scale is not part of a release: a fixed service takes the spec's count; an autoscaled
//!   one keeps the autoscaler's, clamped into the new bounds.

use std::collections::BTreeMap;

use strata_core::spec::{AutoscaleSpec, ScaleSpec, SloSpec};
use strata_core::{ConfigVersion, Release, Service};

/// What is deployed: the spec's identity and scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployWant<'a> {
    /// `ServiceSpec::spec_hash` of the spec with its artifact.
    pub spec_hash: &'a str,
    /// `config_hash` of the configuration for the environment deployed to.
    pub config_hash: &'a str,
    /// The version of each secret the spec names, as a new release would run them.
    pub secrets: &'a BTreeMap<String, u64>,
    pub scale: &'a ScaleSpec,
    pub slo: Option<SloSpec>,
}

/// The stored service, if any, with its desired release and latest configuration version.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeployCurrent<'a> {
    pub service: Option<&'a Service>,
    pub release: Option<&'a Release>,
    pub config: Option<&'a ConfigVersion>,
    /// Without a service: the newest release and configuration version numbers its name
    /// has from before it was deleted (its history stays; numbers are never reused).
    pub numbered_before: (u64, u64),
}

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployPlan {
    /// The configuration version the release uses.
    pub config_version: u64,
    /// Whether that version is new (to be written).
    pub new_config: bool,
    /// The number of a new release to write and make desired; `None`: the current one stays.
    pub new_release: Option<u64>,
    /// The instance count to store.
    pub replicas: u32,
    /// Whether the count changed (the service's `scaled_at` moves).
    pub scaled: bool,
    /// Whether the autoscaling bounds or the SLO changed.
    pub bounds_changed: bool,
}

impl DeployPlan {
    /// Nothing to write: the same release, count, bounds and SLO.
    pub fn is_noop(&self) -> bool {
        !self.new_config && self.new_release.is_none() && !self.scaled && !self.bounds_changed
    }
}

pub fn plan_deploy(current: DeployCurrent<'_>, want: &DeployWant<'_>) -> DeployPlan {
    let (releases_before, configs_before) = current.numbered_before;
    let latest_config = current.service.map_or(configs_before, |s| s.latest_config);
    let (config_version, new_config) = match current.config {
        Some(config) if config.hash == want.config_hash => (config.version, false),
        _ => (latest_config + 1, true),
    };
    let same_release = current.release.is_some_and(|release| {
        release.spec_hash == want.spec_hash
            && release.config_version == config_version
            && release.secrets == *want.secrets
    });
    let new_release = (!same_release).then(|| {
        current
            .service
            .map_or(releases_before, |s| s.latest_release)
            + 1
    });
    let stored_autoscale: Option<AutoscaleSpec> = current.service.and_then(|s| s.autoscale);
    let replicas = match (&want.scale.autoscale, &stored_autoscale, current.service) {
        (Some(bounds), Some(_), Some(service)) => service.replicas.clamp(bounds.min, bounds.max),
        _ => want.scale.replicas,
    };
    let (scaled, bounds_changed) = match current.service {
        Some(service) => (
            service.replicas != replicas,
            service.autoscale != want.scale.autoscale || service.slo != want.slo,
        ),
        None => (false, false),
    };
    DeployPlan {
        config_version,
        new_config,
        new_release,
        replicas,
        scaled,
        bounds_changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::spec::ServiceSpec;

    fn service(replicas: u32, autoscale: Option<(u32, u32)>) -> Service {
        Service {
            desired_release: 3,
            latest_release: 4,
            latest_config: 2,
            autoscale: autoscale.map(|(min, max)| bounds(min, max)),
            ..Service::new(
                strata_core::EnvName::from_static("dev"),
                strata_core::ServiceName::from_static("web"),
                replicas,
                0,
            )
        }
    }

    fn bounds(min: u32, max: u32) -> AutoscaleSpec {
        AutoscaleSpec {
            min,
            max,
            target_concurrency: AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY,
            scale_to_zero_after_ms: AutoscaleSpec::DEFAULT_SCALE_TO_ZERO_AFTER_MS,
        }
    }

    fn release(spec_hash: &str, config_version: u64) -> Release {
        let spec: ServiceSpec =
            strata_core::spec::parse("t.toml", "[service.web]\ncommand = [\"x\"]\n")
                .unwrap()
                .services
                .remove(0);
        Release {
            env: strata_core::EnvName::from_static("dev"),
            service: strata_core::ServiceName::from_static("web"),
            number: 3,
            artifact_digest: None,
            config_version,
            secrets: BTreeMap::new(),
            spec_hash: spec_hash.into(),
            spec,
            created_at: 0,
            created_by: None,
            promoted_from: None,
        }
    }

    fn config(version: u64, hash: &str) -> ConfigVersion {
        ConfigVersion {
            env: strata_core::EnvName::from_static("dev"),
            service: strata_core::ServiceName::from_static("web"),
            version,
            values: Default::default(),
            hash: hash.into(),
            created_at: 0,
        }
    }

    fn scale(replicas: u32, autoscale: Option<(u32, u32)>) -> ScaleSpec {
        ScaleSpec {
            replicas,
            autoscale: autoscale.map(|(min, max)| bounds(min, max)),
        }
    }

    #[test]
    fn deploy_decisions() {
        let fixed = service(2, None);
        let auto = service(7, Some((1, 10)));
        let current_release = release("spec-a", 2);
        let current_config = config(2, "cfg-a");
        let at = |service| DeployCurrent {
            service: Some(service),
            release: Some(&current_release),
            config: Some(&current_config),
            numbered_before: (0, 0),
        };
        // (name, current, spec hash, config hash, scale, plan)
        #[allow(clippy::type_complexity)]
        let table: Vec<(
            &str,
            DeployCurrent,
            &str,
            &str,
            ScaleSpec,
            (u64, bool, Option<u64>, u32, bool, bool),
        )> = vec![
            (
                "a new service",
                DeployCurrent::default(),
                "spec-a",
                "cfg-a",
                scale(2, None),
                (1, true, Some(1), 2, false, false),
            ),
            (
                "a new service of a name deleted after release 130 and config 7",
                DeployCurrent {
                    numbered_before: (130, 7),
                    ..DeployCurrent::default()
                },
                "spec-a",
                "cfg-a",
                scale(2, None),
                (8, true, Some(131), 2, false, false),
            ),
            (
                "the same again",
                at(&fixed),
                "spec-a",
                "cfg-a",
                scale(2, None),
                (2, false, None, 2, false, false),
            ),
            (
                "new code",
                at(&fixed),
                "spec-b",
                "cfg-a",
                scale(2, None),
                (2, false, Some(5), 2, false, false),
            ),
            (
                "new configuration",
                at(&fixed),
                "spec-a",
                "cfg-b",
                scale(2, None),
                (3, true, Some(5), 2, false, false),
            ),
            (
                "only the count",
                at(&fixed),
                "spec-a",
                "cfg-a",
                scale(4, None),
                (2, false, None, 4, true, false),
            ),
            (
                "autoscaled keeps the autoscaler's count",
                at(&auto),
                "spec-a",
                "cfg-a",
                scale(1, Some((1, 10))),
                (2, false, None, 7, false, false),
            ),
            (
                "clamped into narrower bounds",
                at(&auto),
                "spec-a",
                "cfg-a",
                scale(1, Some((1, 5))),
                (2, false, None, 5, true, true),
            ),
            (
                "fixed to autoscaled takes the spec's start",
                at(&fixed),
                "spec-a",
                "cfg-a",
                scale(1, Some((1, 5))),
                (2, false, None, 1, true, true),
            ),
            (
                "autoscaled to fixed",
                at(&auto),
                "spec-a",
                "cfg-a",
                scale(3, None),
                (2, false, None, 3, true, true),
            ),
        ];
        for (name, current, spec_hash, config_hash, scale, want) in table {
            let plan = plan_deploy(
                current,
                &DeployWant {
                    spec_hash,
                    config_hash,
                    secrets: &BTreeMap::new(),
                    scale: &scale,
                    slo: None,
                },
            );
            assert_eq!(
                (
                    plan.config_version,
                    plan.new_config,
                    plan.new_release,
                    plan.replicas,
                    plan.scaled,
                    plan.bounds_changed
                ),
                want,
                "{name}"
            );
        }
        let same = plan_deploy(
            at(&fixed),
            &DeployWant {
                spec_hash: "spec-a",
                config_hash: "cfg-a",
                secrets: &BTreeMap::new(),
                scale: &scale(2, None),
                slo: None,
            },
        );
        assert!(same.is_noop());
    }

    #[test]
    fn a_new_secret_version_is_a_new_release_and_the_same_ones_are_not() {
        let fixed = service(2, None);
        let mut current_release = release("spec-a", 2);
        current_release.secrets = BTreeMap::from([("DB".to_string(), 1)]);
        let current_config = config(2, "cfg-a");
        let current = DeployCurrent {
            service: Some(&fixed),
            release: Some(&current_release),
            config: Some(&current_config),
            numbered_before: (0, 0),
        };
        let plan = |secrets: &BTreeMap<String, u64>| {
            plan_deploy(
                current,
                &DeployWant {
                    spec_hash: "spec-a",
                    config_hash: "cfg-a",
                    secrets,
                    scale: &scale(2, None),
                    slo: None,
                },
            )
        };
        let same = BTreeMap::from([("DB".to_string(), 1)]);
        assert!(plan(&same).is_noop());
        let newer = BTreeMap::from([("DB".to_string(), 2)]);
        assert_eq!(plan(&newer).new_release, Some(5));
        assert!(!plan(&newer).new_config, "secrets are not configuration");
        assert_eq!(plan(&BTreeMap::new()).new_release, Some(5), "one dropped");
    }
}
