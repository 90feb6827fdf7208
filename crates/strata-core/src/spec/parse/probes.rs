//! `[health]`, `[liveness]` and `min_ready`: how an instance is checked.

use super::*;

impl<'s> Checker<'s> {
    pub(super) fn health(&mut self, service: &Path, key: &Key, item: &Item) -> Option<HealthSpec> {
        let probe = self.probe(service, key, item, Section::Health)?;
        Some(HealthSpec {
            path: probe.path?,
            interval_ms: probe.interval_ms,
            timeout_ms: probe.timeout_ms,
            healthy_threshold: probe.healthy_threshold,
            unhealthy_threshold: probe.unhealthy_threshold,
        })
    }

    pub(super) fn liveness(
        &mut self,
        service: &Path,
        key: &Key,
        item: &Item,
    ) -> Option<LivenessSpec> {
        let probe = self.probe(service, key, item, Section::Liveness)?;
        Some(LivenessSpec {
            path: probe.path,
            interval_ms: probe.interval_ms,
            timeout_ms: probe.timeout_ms,
            unhealthy_threshold: probe.unhealthy_threshold,
        })
    }

    /// A `[health]` or `[liveness]` table: what to check, how often, and how many results in
    /// a row decide. `[health]` requires a path; `[liveness]` without one connects to the port.
    pub(super) fn probe(
        &mut self,
        service: &Path,
        key: &Key,
        item: &Item,
        section: Section,
    ) -> Option<Probe> {
        let hint = match item {
            Item::Value(Value::String(s)) if s.value().starts_with('/') => Some(format!(
                "write `{}.path = {}`",
                section.name(),
                quote(s.value())
            )),
            _ => None,
        };
        let (path, table) = self.open_section((key, item), service, section, None, hint)?;
        let mut ok = true;

        let path_value = match table.get_key_value("path") {
            None if section == Section::Liveness => Some(None),
            None => {
                self.push(
                    key.span(),
                    Some(path.child("path").to_string()),
                    format!("`{path}` needs a `path`"),
                    Some(
                        "add `path = \"/healthz\"`, the URL path the health check requests".into(),
                    ),
                );
                None
            }
            Some((k, i)) => {
                let p = path.child("path");
                self.string(&p, k, i, "a string", "`path = \"/healthz\"`")
                    .and_then(|(s, span)| match probe_path_problem(&p.to_string(), s) {
                        Some((message, hint)) => {
                            self.push(span, Some(p.to_string()), message, Some(hint));
                            None
                        }
                        None => Some(Some(s.to_string())),
                    })
            }
        };
        ok &= path_value.is_some();

        let interval_ms = match table.get_key_value("interval") {
            None => Some(DEFAULT_INTERVAL_MS),
            Some(entry) => self.duration_key(&path, entry, section, "interval"),
        };
        ok &= interval_ms.is_some();

        let timeout_ms = match table.get_key_value("timeout") {
            None => Some(DEFAULT_TIMEOUT_MS.min(interval_ms.unwrap_or(DEFAULT_INTERVAL_MS))),
            Some((k, i)) => {
                let p = path.child("timeout");
                self.duration_key(&path, (k, i), section, "timeout")
                    .and_then(|ms| match interval_ms {
                        Some(interval) if ms > interval => {
                            self.push(
                                value_span(k, i),
                                Some(p.to_string()),
                                format!(
                                    "`{p}` ({}) must not be longer than the interval ({})",
                                    format_ms(ms),
                                    format_ms(interval)
                                ),
                                Some("lower `timeout` or raise `interval`".into()),
                            );
                            None
                        }
                        _ => Some(ms),
                    })
            }
        };
        ok &= timeout_ms.is_some();

        let mut threshold = |name: &str, default: u32| -> Option<u32> {
            match table.get_key_value(name) {
                None => Some(default),
                Some(entry) => self.integer_key(&path, entry, section, name),
            }
        };
        // `[liveness]` has no healthy_threshold: its checks only count failures.
        let healthy_threshold = if section.allows("healthy_threshold") {
            threshold("healthy_threshold", DEFAULT_HEALTHY_THRESHOLD)
        } else {
            Some(DEFAULT_HEALTHY_THRESHOLD)
        };
        let unhealthy_threshold = threshold("unhealthy_threshold", DEFAULT_UNHEALTHY_THRESHOLD);

        if !ok {
            return None;
        }
        Some(Probe {
            path: path_value?,
            interval_ms: interval_ms?,
            timeout_ms: timeout_ms?,
            healthy_threshold: healthy_threshold?,
            unhealthy_threshold: unhealthy_threshold?,
        })
    }
}

/// Why `value` cannot be a probe's `path` (the key at `at`), with a hint; `None` if it can. A
/// probe requests `http://ADDRESS{path}` of the instance: anything but a path (a URL, or
/// `@host/...`, which would make the node fetch another host) is refused.
pub(super) fn probe_path_problem(at: &str, value: &str) -> Option<(String, String)> {
    if let Some((_, rest)) = value.split_once("://") {
        let only = rest.find('/').map_or("/", |i| &rest[i..]);
        Some((
            format!("`{at}` must be a path, not a URL"),
            format!("write just the path: `path = {}`", quote(only)),
        ))
    } else if !value.starts_with('/') {
        Some((
            format!("`{at}` must start with `/`, found {}", quote(value)),
            format!("write `path = {}`", quote(&format!("/{}", value.trim()))),
        ))
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some((
            format!("`{at}` must not contain spaces, found {}", quote(value)),
            "percent-encode spaces as %20".into(),
        ))
    } else {
        None
    }
}
