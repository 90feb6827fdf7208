//! What an instance starts with, from its assignment: its environment (the platform's
//! variables, its configuration, other services through the node's mesh proxy, its secrets)
//! and its driver's settings, typed from the validated spec (never through the environment).

use std::collections::BTreeMap;

use strata_core::api::Assignment;
use strata_core::secret::SecretTarget;
use strata_core::spec::{DriverKind, ForensicsSpec, ServiceSpec};
use strata_runtime::{ContainerSettings, DriverSettings, ExecSettings, SecretFile, WasmSettings};

use crate::supervisor::SupervisorContext;

/// The environment of an instance listening on `port`, and the secrets it gets as files.
pub(crate) fn environment(
    ctx: &SupervisorContext,
    assignment: &Assignment,
    port: u16,
) -> (BTreeMap<String, String>, Vec<SecretFile>) {
    let mut env: BTreeMap<String, String> = assignment.config.values.clone();
    let instance = &assignment.instance;
    let release = &assignment.release;
    env.insert("PORT".into(), port.to_string());
    env.insert("HOST".into(), ctx.bind_host.clone());
    env.insert("STRATA_SERVICE".into(), instance.service.to_string());
    env.insert("STRATA_ENV".into(), instance.env.to_string());
    env.insert("STRATA_INSTANCE".into(), instance.id.to_string());
    env.insert("STRATA_RELEASE".into(), instance.release.to_string());
    // Other services, by name, through the node's mesh proxy (not for wasm: its outbound
    // hook is its only way out and goes through the proxy itself).
    if release.spec.driver != DriverKind::Wasm {
        if let Some(mesh) = &ctx.mesh {
            env.extend(mesh.instance_env(&instance.env, &instance.service));
        }
    }
    if let Some(digest) = &release.artifact_digest {
        env.insert("STRATA_ARTIFACT_DIGEST".into(), digest.clone());
    }
    // Secrets last: the spec checks keep them from a configured or platform name.
    let mut secret_files = Vec::new();
    for secret in &assignment.secrets {
        match &secret.target {
            SecretTarget::Env(name) => {
                env.insert(name.clone(), secret.value.clone());
            }
            SecretTarget::File(path) => secret_files.push(SecretFile {
                path: path.clone(),
                value: secret.value.clone(),
            }),
        }
    }
    (env, secret_files)
}

/// The driver's settings for an instance of `spec`.
pub(crate) fn driver_settings(spec: &ServiceSpec) -> DriverSettings {
    match spec.driver {
        DriverKind::Exec => DriverSettings::Exec(ExecSettings {
            memory_bytes: Some(spec.resources.memory_bytes),
            cpu_millis: Some(spec.resources.cpu_millis),
        }),
        DriverKind::Wasm => {
            let limits = spec.wasm.unwrap_or_default();
            DriverSettings::Wasm(WasmSettings {
                memory_bytes: Some(spec.resources.memory_bytes),
                request_timeout_ms: limits.request_timeout_ms,
                max_concurrency: limits.max_concurrency,
            })
        }
        DriverKind::Container => {
            let container = spec.container.clone().unwrap_or_default();
            DriverSettings::Container(ContainerSettings {
                memory_bytes: spec.resources.memory_bytes,
                cpu_millis: spec.resources.cpu_millis,
                pids: container.pids.map(u64::from),
                host_root: container.host_root(),
                capabilities: container.capabilities,
                // What it wrote is archived with its failure, then discarded.
                keep_writable_layer: ForensicsSpec::archives_failures(spec.forensics.as_ref()),
            })
        }
    }
}
