//! A spec that arrives typed is checked as one written as text is. The API's deploy takes
//! services as JSON, so whatever client sent them (an old CLI, a script, an attacker with a
//! deployer's token) skipped the parser: the control plane runs [`check_received`] on every
//! one. The bounds come from the same schema the parser checks against, and the rules for
//! probe paths, capabilities, host names, config names and node labels are the parser's own
//! functions, so the two cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

use super::names::{check_host, is_label_key, is_label_part};
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
    // (table, key, value) of every integer and duration the schema bounds.
    use Section::{Container, Health, Liveness, Mesh, Scale, Slo, Wasm};
    let mut integers: Vec<(Section, &str, i64)> =
        vec![(Scale, "replicas", spec.scale.replicas.into())];
    let mut durations: Vec<(Section, &str, u64)> = vec![
        (Section::Service, "min_ready", spec.min_ready_ms),
        (Section::Service, "stop_timeout", spec.stop_timeout_ms),
    ];
    if let Some(autoscale) = &spec.scale.autoscale {
        integers.push((Scale, "min", autoscale.min.into()));
        integers.push((Scale, "max", autoscale.max.into()));
        integers.push((
            Scale,
            "target_concurrency",
            autoscale.target_concurrency.into(),
        ));
        durations.push((
            Scale,
            "scale_to_zero_after",
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
    let probes = [
        spec.health.as_ref().map(|h| {
            let thresholds = [
                ("healthy_threshold", h.healthy_threshold),
                ("unhealthy_threshold", h.unhealthy_threshold),
            ];
            (
                Health,
                Some(&h.path),
                h.interval_ms,
                h.timeout_ms,
                thresholds.to_vec(),
            )
        }),
        spec.liveness.as_ref().map(|l| {
            let thresholds = [("unhealthy_threshold", l.unhealthy_threshold)];
            (
                Liveness,
                l.path.as_ref(),
                l.interval_ms,
                l.timeout_ms,
                thresholds.to_vec(),
            )
        }),
    ];
    for (section, path, interval, timeout, thresholds) in probes.into_iter().flatten() {
        if let Some(path) = path {
            let key = shown(section, "path");
            if let Some(problem) = probe_path_problem(&key, path) {
                return Err(refuse(&key, problem));
            }
        }
        durations.push((section, "interval", interval));
        durations.push((section, "timeout", timeout));
        for (name, value) in thresholds {
            integers.push((section, name, value.into()));
        }
    }
    if let Some(rollout) = &spec.rollout {
        rollout_problem(rollout).map_err(|(key, problem)| refuse(key, problem))?;
        if rollout.strategy.is_progressive() {
            durations.push((Section::Rollout, "step_interval", rollout.step_interval_ms));
            integers.push((
                Section::Rollout,
                "min_requests",
                rollout.analysis.min_requests.into(),
            ));
            if let Some(ms) = rollout.analysis.max_p99_ms {
                integers.push((Section::Rollout, "max_p99_ms", ms as i64));
            }
        }
    }
    if let Some((key, problem, hint)) =
        super::protocol::protocol_problem(spec.protocol, spec.driver, spec.port, spec.route.public)
    {
        return Err(refuse(key, (problem, hint)));
    }
    if let Some(forensics) = &spec.forensics {
        durations.push((Section::Forensics, "keep", forensics.keep_ms));
    }
    if let Some(wasm) = &spec.wasm {
        only_for(spec, DriverKind::Wasm, "wasm").map_err(|p| refuse("wasm", p))?;
        if let Some(ms) = wasm.request_timeout_ms {
            durations.push((Wasm, "request_timeout", ms));
        }
        if let Some(n) = wasm.max_concurrency {
            integers.push((Wasm, "max_concurrency", n.into()));
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
            integers.push((Container, "pids", pids.into()));
        }
    }
    if let Some(mesh) = &spec.mesh {
        let timeout = mesh.request_timeout_ms;
        durations.push((Mesh, "request_timeout", timeout));
        integers.push((Mesh, "retries", mesh.retries.into()));
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
        integers.push((Slo, "p99_ms", p99));
    }
    // Out of the schema's bounds: (value as shown, the schema's hint).
    let bounded = integers
        .into_iter()
        .filter_map(|(section, name, value)| match section.key(name).rule {
            Rule::Integer { min, max, hint, .. } if !(min..=max).contains(&value) => {
                Some((section, name, value.to_string(), hint))
            }
            _ => None,
        })
        .chain(durations.into_iter().filter_map(
            |(section, name, ms)| match section.key(name).rule {
                Rule::Duration {
                    min_ms,
                    max_ms,
                    hint,
                    ..
                } if !(min_ms..=max_ms).contains(&ms) => {
                    Some((section, name, format!("{ms} ms"), hint))
                }
                _ => None,
            },
        ));
    if let Some((section, name, value, hint)) = bounded.into_iter().next() {
        let key = shown(section, name);
        let problem = format!("`{key}` is {value}, out of range");
        return Err(refuse(&key, (problem, hint.to_string())));
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
            if let Some((problem, hint)) = super::secrets::env_var_problem(name) {
                return Err(refuse(&key, (format!("`{key}`: {problem}"), hint)));
            }
        }
    }
    for (name, target) in &spec.secrets {
        let key = format!("secrets.{name}");
        if !crate::secret::is_secret_name(name) {
            return Err(refuse(
                "secrets",
                (
                    format!("`secrets`: {} is not a valid secret name", quote(name)),
                    crate::secret::SECRET_NAME_RULE.into(),
                ),
            ));
        }
        let problem = match target {
            crate::secret::SecretTarget::Env(var) => super::secrets::env_var_problem(var),
            crate::secret::SecretTarget::File(path) => crate::secret::file_path_problem(path)
                .map(|p| (p, "put secret files under `/run/secrets/`".to_string())),
        };
        if let Some((problem, hint)) = problem {
            return Err(refuse(&key, (format!("`{key}`: {problem}"), hint)));
        }
    }
    let config_names: BTreeSet<&str> = spec
        .config
        .keys()
        .chain(spec.env_config.values().flat_map(BTreeMap::keys))
        .map(String::as_str)
        .collect();
    if let Some((name, problem, hint)) =
        super::secrets::delivery_problems(&spec.secrets, &config_names, spec.driver)
            .into_iter()
            .next()
    {
        return Err(refuse(&format!("secrets.{name}"), (problem, hint)));
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

/// Key `name` of `section` as a spec file writes it under the service (`health.interval`,
/// `min_ready`).
fn shown(section: Section, name: &str) -> String {
    match section {
        Section::Service => name.to_string(),
        _ => format!("{}.{name}", section.name()),
    }
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

/// A `[rollout]` the parser would not have made: steps a canary cannot go through (none past
/// 100%, not increasing, not ending at 100%), or steps on another strategy.
fn rollout_problem(
    rollout: &crate::spec::RolloutSpec,
) -> Result<(), (&'static str, (String, String))> {
    use crate::spec::RolloutStrategy;
    let steps = &rollout.steps;
    let hint = || {
        "steps are the new release's shares of the traffic, from 1% to 100%, increasing, the last 100%: for example [5, 25, 50, 100]".to_string()
    };
    match rollout.strategy {
        RolloutStrategy::Canary => {
            let increasing = steps.windows(2).all(|pair| pair[0] < pair[1]);
            let in_range = steps.iter().all(|step| (1..=100).contains(step));
            if steps.last() != Some(&100) || !increasing || !in_range {
                return Err((
                    "rollout.steps",
                    (
                        format!("`rollout.steps` {steps:?} cannot be gone through"),
                        hint(),
                    ),
                ));
            }
        }
        _ if !steps.is_empty() => {
            return Err((
                "rollout.steps",
                (
                    format!(
                        "`rollout.steps` applies to `strategy = \"canary\"`, not `{}`",
                        rollout.strategy.as_str()
                    ),
                    "remove `steps`, or set `strategy = \"canary\"`".to_string(),
                ),
            ))
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
