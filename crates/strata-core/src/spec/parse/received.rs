//! A spec that arrives typed is checked as one written as text is. The API's deploy takes
//! services as JSON, so whatever client sent them (an old CLI, a script, an attacker with a
//! deployer's token) skipped the parser: the control plane runs [`check_received`] on every
//! one. The bounds come from the same schema the parser checks against, and the rules for
//! probe paths, capabilities, host names, config names and node labels are the parser's own
//! functions, so the two cannot drift apart.

use super::names::{check_host, is_env_name, is_label_key, is_label_part};
use super::probes::probe_path_problem;
use super::schema::{Rule, Section};
use super::text::quote;
use super::{CAPABILITIES, MAX_CPU_MILLIS, MIN_MEMORY_BYTES};
use crate::spec::{DriverKind, ServiceSpec};

/// Why a received service spec is refused: which service, which key (as the spec file
/// writes it), what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("service `{service}`: {problem}")]
pub struct ReceivedSpecError {
    pub service: String,
    /// The key, as a spec file writes it (`scale.replicas`, `health.path`, ...).
    pub key: String,
    pub problem: String,
    pub hint: String,
}

/// Checks `spec` as the parser checks a spec file (see the module docs); the first problem
/// found.
pub fn check_received(spec: &ServiceSpec) -> Result<(), ReceivedSpecError> {
    let refuse = |key: &str, (problem, hint): (String, String)| ReceivedSpecError {
        service: spec.name.to_string(),
        key: key.to_string(),
        problem,
        hint,
    };
    let mut integers: Vec<(Section, &str, &str, i64)> = vec![(
        Section::Scale,
        "replicas",
        "scale.replicas",
        i64::from(spec.scale.replicas),
    )];
    let mut durations: Vec<(Section, &str, &str, u64)> = vec![
        (
            Section::Service,
            "min_ready",
            "min_ready",
            spec.min_ready_ms,
        ),
        (
            Section::Service,
            "stop_timeout",
            "stop_timeout",
            spec.stop_timeout_ms,
        ),
    ];
    if let Some(autoscale) = &spec.scale.autoscale {
        integers.push((Section::Scale, "min", "scale.min", autoscale.min.into()));
        integers.push((Section::Scale, "max", "scale.max", autoscale.max.into()));
        integers.push((
            Section::Scale,
            "target_concurrency",
            "scale.target_concurrency",
            autoscale.target_concurrency.into(),
        ));
        durations.push((
            Section::Scale,
            "scale_to_zero_after",
            "scale.scale_to_zero_after",
            autoscale.scale_to_zero_after_ms,
        ));
        if autoscale.min > autoscale.max {
            return Err(refuse(
                "scale.min",
                (
                    format!(
                        "`scale.min` ({}) is more than `scale.max` ({})",
                        autoscale.min, autoscale.max
                    ),
                    "min is the fewest instances the autoscaler keeps, max the most".into(),
                ),
            ));
        }
    }
    if let Some(health) = &spec.health {
        if let Some(problem) = probe_path_problem("health.path", &health.path) {
            return Err(refuse("health.path", problem));
        }
        durations.push((
            Section::Health,
            "interval",
            "health.interval",
            health.interval_ms,
        ));
        durations.push((
            Section::Health,
            "timeout",
            "health.timeout",
            health.timeout_ms,
        ));
        integers.push((
            Section::Health,
            "healthy_threshold",
            "health.healthy_threshold",
            health.healthy_threshold.into(),
        ));
        integers.push((
            Section::Health,
            "unhealthy_threshold",
            "health.unhealthy_threshold",
            health.unhealthy_threshold.into(),
        ));
    }
    if let Some(liveness) = &spec.liveness {
        if let Some(path) = &liveness.path {
            if let Some(problem) = probe_path_problem("liveness.path", path) {
                return Err(refuse("liveness.path", problem));
            }
        }
        let interval = liveness.interval_ms;
        durations.push((Section::Liveness, "interval", "liveness.interval", interval));
        durations.push((
            Section::Liveness,
            "timeout",
            "liveness.timeout",
            liveness.timeout_ms,
        ));
        integers.push((
            Section::Liveness,
            "unhealthy_threshold",
            "liveness.unhealthy_threshold",
            liveness.unhealthy_threshold.into(),
        ));
    }
    if let Some(wasm) = &spec.wasm {
        only_for(spec, DriverKind::Wasm, "wasm").map_err(|p| refuse("wasm", p))?;
        if let Some(ms) = wasm.request_timeout_ms {
            durations.push((Section::Wasm, "request_timeout", "wasm.request_timeout", ms));
        }
        if let Some(n) = wasm.max_concurrency {
            integers.push((
                Section::Wasm,
                "max_concurrency",
                "wasm.max_concurrency",
                n.into(),
            ));
        }
    }
    if let Some(container) = &spec.container {
        only_for(spec, DriverKind::Container, "container").map_err(|p| refuse("container", p))?;
        for name in &container.capabilities {
            if !CAPABILITIES.contains(&name.as_str()) {
                return Err(refuse(
                    "container.capabilities",
                    (
                        format!(
                            "`container.capabilities`: {} is not a Linux capability",
                            quote(name)
                        ),
                        "capabilities are named as in capabilities(7), in capitals, without `CAP_` (e.g. `NET_BIND_SERVICE`)".into(),
                    ),
                ));
            }
        }
        if let Some(pids) = container.pids {
            integers.push((Section::Container, "pids", "container.pids", pids.into()));
        }
    }
    if let Some(mesh) = &spec.mesh {
        let timeout = mesh.request_timeout_ms;
        durations.push((
            Section::Mesh,
            "request_timeout",
            "mesh.request_timeout",
            timeout,
        ));
        integers.push((
            Section::Mesh,
            "retries",
            "mesh.retries",
            mesh.retries.into(),
        ));
        if mesh.retry_budget_permille > 1_000 {
            return Err(refuse(
                "mesh.retry_budget",
                (
                    format!(
                        "`mesh.retry_budget` is {}, more than 1.0",
                        f64::from(mesh.retry_budget_permille) / 1_000.0
                    ),
                    "retry_budget is a fraction of the requests, from 0.0 to 1.0".into(),
                ),
            ));
        }
        if mesh.max_concurrent == 0 {
            return Err(refuse(
                "mesh.max_concurrent",
                (
                    "`mesh.max_concurrent` is 0: no call could ever be made".into(),
                    "for example `max_concurrent = 1024`".into(),
                ),
            ));
        }
        for name in mesh.allow_from.iter().flatten() {
            let valid = name == "*" || crate::ServiceName::new(name).is_ok();
            if !valid {
                return Err(refuse(
                    "mesh.allow_from",
                    (
                        format!("`mesh.allow_from`: {} is not a service name", quote(name)),
                        "name services of the environment (DNS labels), or \"*\" alone".into(),
                    ),
                ));
            }
        }
    }
    if let Some(p99) = spec.slo.as_ref().and_then(|slo| slo.p99_ms) {
        let p99 = i64::try_from(p99).unwrap_or(i64::MAX);
        integers.push((Section::Slo, "p99_ms", "slo.p99_ms", p99));
    }
    for (section, name, key, value) in integers {
        if let Rule::Integer { min, max, hint, .. } = section.key(name).rule {
            if !(min..=max).contains(&value) {
                return Err(refuse(
                    key,
                    (
                        format!("`{key}` is {value}, out of range"),
                        hint.to_string(),
                    ),
                ));
            }
        }
    }
    for (section, name, key, ms) in durations {
        if let Rule::Duration {
            min_ms,
            max_ms,
            hint,
            ..
        } = section.key(name).rule
        {
            if !(min_ms..=max_ms).contains(&ms) {
                return Err(refuse(
                    key,
                    (
                        format!("`{key}` is {ms} ms, out of range"),
                        hint.to_string(),
                    ),
                ));
            }
        }
    }
    let cpu = spec.resources.cpu_millis;
    if !(1..=MAX_CPU_MILLIS).contains(&cpu) {
        return Err(refuse(
            "resources.cpu",
            (
                format!("`resources.cpu` is {cpu} millicores, out of range"),
                format!("from 1 millicore to {} cores", MAX_CPU_MILLIS / 1_000),
            ),
        ));
    }
    if spec.resources.memory_bytes < MIN_MEMORY_BYTES {
        return Err(refuse(
            "resources.memory",
            (
                format!(
                    "`resources.memory` is {} bytes, less than 1Mi",
                    spec.resources.memory_bytes
                ),
                "for example `memory = \"64Mi\"`".into(),
            ),
        ));
    }
    for host in &spec.route.hosts {
        match check_host(host) {
            Ok(lowered) if lowered == *host => {}
            Ok(lowered) => {
                return Err(refuse(
                    "route.hosts",
                    (
                        format!("`route.hosts`: {} is not lowercase", quote(host)),
                        format!("write {}", quote(&lowered)),
                    ),
                ))
            }
            Err((problem, hint)) => {
                return Err(refuse(
                    "route.hosts",
                    (format!("`route.hosts`: {} {problem}", quote(host)), hint),
                ))
            }
        }
    }
    let configs = std::iter::once(("config".to_string(), &spec.config)).chain(
        spec.env_config
            .iter()
            .map(|(env, values)| (format!("environments.{env}.config"), values)),
    );
    for (key, values) in configs {
        for name in values.keys() {
            if !is_env_name(name) || name == "HOST" || name.starts_with("STRATA_") {
                return Err(refuse(
                    &key,
                    (
                        format!("`{key}`: {} cannot be set", quote(name)),
                        "config names are environment variable names (letters, digits, `_`, not first a digit); `HOST` and names starting with `STRATA_` are the platform's".into(),
                    ),
                ));
            }
        }
    }
    for env in spec.env_config.keys() {
        if crate::EnvName::new(env).is_err() {
            return Err(refuse(
                "environments",
                (
                    format!("`environments`: {} is not an environment name", quote(env)),
                    "environment names are DNS labels, e.g. `prod`".into(),
                ),
            ));
        }
    }
    for (label, value) in &spec.constraints {
        if !is_label_key(label) || !is_label_part(value) {
            return Err(refuse(
                "placement.labels",
                (
                    format!(
                        "`placement.labels`: {} = {} is not a node label",
                        quote(label),
                        quote(value)
                    ),
                    "label keys and values are letters, digits, `.`, `_` and `-` (a key may have a `prefix/`)".into(),
                ),
            ));
        }
    }
    Ok(())
}

/// A `[section]` only services of `driver` may have.
fn only_for(spec: &ServiceSpec, driver: DriverKind, section: &str) -> Result<(), (String, String)> {
    if spec.driver == driver {
        return Ok(());
    }
    Err((
        format!(
            "`[{section}]` is for {} services, and this one's driver is {}",
            driver.as_str(),
            spec.driver.as_str()
        ),
        format!(
            "remove `[{section}]`, or set `driver = \"{}\"`",
            driver.as_str()
        ),
    ))
}

#[cfg(test)]
mod tests;
