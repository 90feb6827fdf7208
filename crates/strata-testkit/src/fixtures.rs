//! Records of the data model with everything a test does not care about set plainly, so a
//! test spells out only what it is about.

use strata_core::spec::ServiceSpec;
use strata_core::{DesiredState, EnvName, Instance, InstanceId, NodeName, Release, ServiceName};

/// Instance `id` of the `dev` environment's `service`, release 1, placed on `node` (epoch 1)
/// at time 0. Panics on a malformed name: fixtures are written by hand.
pub fn instance(id: &str, service: &str, node: &str, desired: DesiredState) -> Instance {
    Instance {
        id: InstanceId::new(id).unwrap(),
        env: EnvName::from_static("dev"),
        service: ServiceName::new(service).unwrap(),
        release: 1,
        node: NodeName::new(node).unwrap(),
        node_epoch: 1,
        desired,
        created_at: 0,
        stop_requested_at: None,
        quarantine: None,
    }
}

/// Release `number` of `env`'s `service` running `spec`: no artifact, config version 1.
pub fn release(env: &str, service: &str, number: u64, spec: ServiceSpec) -> Release {
    Release {
        env: EnvName::new(env).unwrap(),
        service: ServiceName::new(service).unwrap(),
        number,
        artifact_digest: None,
        config_version: 1,
        secrets: Default::default(),
        spec_hash: String::new(),
        spec,
        created_at: 0,
        created_by: None,
        promoted_from: None,
    }
}
