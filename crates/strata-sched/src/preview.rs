//! What a deploy would change of a service, in words, for `strata deploy --dry-run` and
//! `strata diff`: a new release or not and why (the artifact, the spec's fields, the names of
//! configuration keys, never their values; secrets' versions), and scale. Pure: the control
//! plane reads the records and asks.

use std::collections::{BTreeMap, BTreeSet};

use strata_core::spec::ServiceSpec;
use strata_core::{ConfigVersion, Release};

use crate::deploy::DeployPlan;

/// What runs now: the desired release and its configuration values (`None`: a new service).
#[derive(Debug, Clone, Copy, Default)]
pub struct Running<'a> {
    pub release: Option<&'a Release>,
    pub config: Option<&'a ConfigVersion>,
    /// The service's instance count now.
    pub replicas: Option<u32>,
}

/// What the deploy brings.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub spec: &'a ServiceSpec,
    pub artifact_digest: Option<&'a str>,
    pub config: &'a BTreeMap<String, String>,
    pub secrets: &'a BTreeMap<String, u64>,
}

/// The changes, one line each (`unchanged` alone when there are none).
pub fn describe_changes(
    running: Running<'_>,
    incoming: Incoming<'_>,
    plan: &DeployPlan,
) -> Vec<String> {
    let mut lines = Vec::new();
    let Some(release) = running.release else {
        lines.push(format!(
            "new service: release {}",
            plan.new_release.unwrap_or(1)
        ));
        lines.push(format!("replicas {}", plan.replicas));
        return lines;
    };
    if let Some(number) = plan.new_release {
        lines.push(format!(
            "new release {number} (runs {} now)",
            release.number
        ));
    }
    if release.artifact_digest.as_deref() != incoming.artifact_digest {
        lines.push(format!(
            "artifact {} -> {}",
            short(release.artifact_digest.as_deref()),
            short(incoming.artifact_digest)
        ));
    }
    let fields = changed_fields(
        &release.spec.release_shape(),
        &incoming.spec.release_shape(),
    );
    if !fields.is_empty() {
        lines.push(format!("spec: {} changed", fields.join(", ")));
    }
    let empty = BTreeMap::new();
    let before = running.config.map_or(&empty, |c| &c.values);
    let keys = changed_keys(before, incoming.config);
    if !keys.is_empty() {
        lines.push(format!("config: {} (values not shown)", keys.join(", ")));
    }
    let names: BTreeSet<&String> = release
        .secrets
        .keys()
        .chain(incoming.secrets.keys())
        .collect();
    for name in names {
        match (release.secrets.get(name), incoming.secrets.get(name)) {
            (Some(old), Some(new)) if old != new => {
                lines.push(format!("secret {name}: version {old} -> {new}"))
            }
            (None, Some(new)) => lines.push(format!("secret {name}: added (version {new})")),
            (Some(_), None) => lines.push(format!("secret {name}: no longer used")),
            _ => {}
        }
    }
    if plan.scaled {
        let before = running.replicas.map_or("-".to_string(), |r| r.to_string());
        lines.push(format!("replicas {before} -> {}", plan.replicas));
    }
    if plan.bounds_changed {
        lines.push("autoscaling bounds or SLO changed".to_string());
    }
    if lines.is_empty() {
        lines.push("unchanged".to_string());
    }
    lines
}

/// `sha256:0123456789ab` (or `none`).
fn short(digest: Option<&str>) -> String {
    digest.map_or("none".to_string(), |d| d.chars().take(19).collect())
}

/// The spec's top-level fields whose values differ.
fn changed_fields(before: &ServiceSpec, after: &ServiceSpec) -> Vec<String> {
    let (Ok(serde_json::Value::Object(before)), Ok(serde_json::Value::Object(after))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return vec!["(spec)".to_string()];
    };
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|name| before.get(*name) != after.get(*name))
        .cloned()
        .collect()
}

/// `+ADDED`, `-REMOVED`, `~CHANGED` configuration key names.
fn changed_keys(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| match (before.get(name), after.get(name)) {
            (None, Some(_)) => Some(format!("+{name}")),
            (Some(_), None) => Some(format!("-{name}")),
            (Some(old), Some(new)) if old != new => Some(format!("~{name}")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> ServiceSpec {
        strata_core::spec::parse("s.toml", toml)
            .unwrap()
            .services
            .remove(0)
    }

    fn release(spec: &ServiceSpec, digest: Option<&str>, secrets: &[(&str, u64)]) -> Release {
        let mut release = release_of(spec.clone());
        release.artifact_digest = digest.map(str::to_string);
        release.secrets = secrets.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        release
    }

    fn release_of(spec: ServiceSpec) -> Release {
        Release {
            env: strata_core::EnvName::from_static("dev"),
            service: strata_core::ServiceName::from_static("web"),
            number: 4,
            artifact_digest: None,
            config_version: 2,
            secrets: BTreeMap::new(),
            spec_hash: String::new(),
            spec,
            created_at: 0,
            created_by: None,
            promoted_from: None,
        }
    }

    fn config(values: &[(&str, &str)]) -> ConfigVersion {
        ConfigVersion {
            env: strata_core::EnvName::from_static("dev"),
            service: strata_core::ServiceName::from_static("web"),
            version: 2,
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            hash: String::new(),
            created_at: 0,
        }
    }

    fn plan(new_release: Option<u64>, replicas: u32, scaled: bool) -> DeployPlan {
        DeployPlan {
            config_version: 2,
            new_config: false,
            new_release,
            replicas,
            scaled,
            bounds_changed: false,
        }
    }

    #[test]
    fn changes_in_words() {
        let base = spec("[service.web]\ncommand = [\"web\"]\n");
        let other = spec("[service.web]\ncommand = [\"web\", \"--fast\"]\n[service.web.health]\npath = \"/up\"\n");
        let running_config = config(&[("GREETING", "hi"), ("OLD", "x"), ("SAME", "s")]);
        let new_values: BTreeMap<String, String> =
            [("GREETING", "hello"), ("NEW", "n"), ("SAME", "s")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let same_values: BTreeMap<String, String> = running_config.values.clone();
        let no_secrets = BTreeMap::new();
        let new_secret: BTreeMap<String, u64> = [("DB".to_string(), 3)].into();
        let now = release(&base, Some("sha256:aaaaaaaaaaaaaaaaaaaa"), &[("DB", 2)]);
        let running = Running {
            release: Some(&now),
            config: Some(&running_config),
            replicas: Some(2),
        };
        let incoming = |spec, digest, config, secrets| Incoming {
            spec,
            artifact_digest: digest,
            config,
            secrets,
        };
        let old_secret: BTreeMap<String, u64> = [("DB".to_string(), 2)].into();
        // (running, incoming, plan, lines)
        let table: Vec<(Running, Incoming, DeployPlan, Vec<&str>)> = vec![
            (
                running,
                incoming(
                    &base,
                    Some("sha256:aaaaaaaaaaaaaaaaaaaa"),
                    &same_values,
                    &old_secret,
                ),
                plan(None, 2, false),
                vec!["unchanged"],
            ),
            (
                running,
                incoming(
                    &other,
                    Some("sha256:bbbbbbbbbbbbbbbbbbbb"),
                    &new_values,
                    &new_secret,
                ),
                plan(Some(5), 3, true),
                vec![
                    "new release 5 (runs 4 now)",
                    "artifact sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb",
                    "spec: command, health changed",
                    "config: ~GREETING, +NEW, -OLD (values not shown)",
                    "secret DB: version 2 -> 3",
                    "replicas 2 -> 3",
                ],
            ),
            (
                running,
                incoming(
                    &base,
                    Some("sha256:aaaaaaaaaaaaaaaaaaaa"),
                    &same_values,
                    &no_secrets,
                ),
                plan(Some(5), 2, false),
                vec!["new release 5 (runs 4 now)", "secret DB: no longer used"],
            ),
            (
                Running::default(),
                incoming(&base, None, &new_values, &no_secrets),
                plan(Some(1), 2, false),
                vec!["new service: release 1", "replicas 2"],
            ),
        ];
        for (running, incoming, plan, want) in table {
            let lines = describe_changes(running, incoming, &plan);
            assert_eq!(lines, want);
            // Never a configuration value.
            for value in ["hello", "hi", "\"n\""] {
                assert!(!lines.join("\n").contains(value), "{lines:?}");
            }
        }
    }
}
