//! `[scale]` (a fixed count or autoscaling bounds) and `[route]` (public, hosts).

use super::*;

impl<'s> Checker<'s> {
    /// `[scale]`: a fixed `replicas`, or autoscaling between `min` and `max` (both required
    /// together), with `replicas` then the starting count (default `min`).
    pub(super) fn scale(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> ScaleSpec {
        let mut scale = ScaleSpec::fixed(DEFAULT_REPLICAS);
        let Some((key, item)) = entry else {
            return scale;
        };
        let hint = match item {
            Item::Value(Value::Integer(i)) => {
                Some(format!("write `scale.replicas = {}`", i.value()))
            }
            _ => None,
        };
        let Some((path, table)) =
            self.open_section((key, item), service, Section::Scale, None, hint)
        else {
            return scale;
        };
        let replicas_entry = table.get_key_value("replicas");
        let min_entry = table.get_key_value("min");
        let max_entry = table.get_key_value("max");
        let target_entry = table.get_key_value("target_concurrency");
        let zero_entry = table.get_key_value("scale_to_zero_after");

        let replicas = replicas_entry
            .and_then(|(k, i)| self.integer_key(&path, (k, i), Section::Scale, "replicas"));
        if let Some(n) = replicas {
            scale.replicas = n;
        }
        let min =
            min_entry.and_then(|(k, i)| self.integer_key(&path, (k, i), Section::Scale, "min"));
        let max =
            max_entry.and_then(|(k, i)| self.integer_key(&path, (k, i), Section::Scale, "max"));
        let target_concurrency = match target_entry {
            None => Some(AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY),
            Some((k, i)) => self.integer_key(&path, (k, i), Section::Scale, "target_concurrency"),
        };
        let scale_to_zero_after_ms = match zero_entry {
            None => Some(AutoscaleSpec::DEFAULT_SCALE_TO_ZERO_AFTER_MS),
            Some((k, i)) => self.duration_key(&path, (k, i), Section::Scale, "scale_to_zero_after"),
        };

        // A misspelt bound (`maxx`, `max_replicas`) is already reported as an unknown key with
        // a "did you mean": do not also report it missing.
        let misspelt = |this: &Self, bound: &str| {
            let hint = format!("did you mean `{bound}`?");
            table.iter().any(|(name, item)| {
                !Section::Scale.allows(name)
                    && this.unknown_key_hint(name, item, &path, service, Section::Scale) == hint
            })
        };
        let min_entry = match (min_entry, max_entry) {
            (Some(entry), Some(_)) => entry,
            (None, None) if misspelt(self, "min") || misspelt(self, "max") => return scale,
            (Some(_), None) if misspelt(self, "max") => return scale,
            (None, Some(_)) if misspelt(self, "min") => return scale,
            (None, None) => {
                // Autoscaling keys without the bounds that turn autoscaling on.
                for (name, entry, example_min) in [
                    ("target_concurrency", target_entry, 1),
                    ("scale_to_zero_after", zero_entry, 0),
                ] {
                    let Some((k, _)) = entry else {
                        continue;
                    };
                    let p = path.child(name);
                    self.push(
                        k.span(),
                        Some(p.to_string()),
                        format!("`{p}` is set without `min` and `max`: autoscaling needs min and max"),
                        Some(format!(
                            "to autoscale, add `min = {example_min}` and `max = 10` to [{path}]; for a fixed count of instances, remove `{name}` and set `replicas`"
                        )),
                    );
                }
                return scale;
            }
            (Some((k, _)), None) | (None, Some((k, _))) => {
                // One bound without the other.
                let (present, missing) = if min_entry.is_some() {
                    ("min", "max")
                } else {
                    ("max", "min")
                };
                let (example_min, example_max) = match (min, max) {
                    (Some(n), _) => (
                        n,
                        if n < 10 {
                            10
                        } else {
                            n.saturating_mul(2).min(1_000)
                        },
                    ),
                    (_, Some(n)) => (n.min(1), n),
                    _ => (1, 10),
                };
                self.push(
                    k.span(),
                    Some(path.child(missing).to_string()),
                    format!("`{path}` sets `{present}` without `{missing}`: autoscaling needs both"),
                    Some(format!(
                        "add `{missing}`: write both bounds, like `min = {example_min}` and `max = {example_max}`"
                    )),
                );
                return scale;
            }
        };
        let (Some(min), Some(max)) = (min, max) else {
            return scale;
        };
        let mut ok = true;
        if min > max {
            ok = false;
            let (k, i) = min_entry;
            self.push(
                value_span(k, i),
                Some(path.child("min").to_string()),
                format!("`{path}`: min ({min}) is above max ({max})"),
                Some(format!(
                    "min is the fewest instances and max the most: write `min = {max}` and `max = {min}`"
                )),
            );
        }
        if let Some((k, _)) = zero_entry.filter(|_| min > 0) {
            ok = false;
            let p = path.child("scale_to_zero_after");
            self.push(
                k.span(),
                Some(p.to_string()),
                format!("`{p}` is only allowed with `min = 0`, and min is {min}"),
                Some(format!(
                    "the last instance stops after a time without requests only when `min = 0`: set `min = 0`, or remove `scale_to_zero_after` to keep at least {min} running"
                )),
            );
        }
        match (replicas_entry, replicas) {
            (Some((k, i)), Some(n)) if ok && !(min..=max).contains(&n) => {
                ok = false;
                self.push(
                    value_span(k, i),
                    Some(path.child("replicas").to_string()),
                    format!(
                        "`{path}.replicas` must be between min ({min}) and max ({max}) when autoscaling, found {n}"
                    ),
                    Some(format!(
                        "with `min` and `max`, replicas is how many instances to start with: write a number from {min} to {max}, or remove `replicas` to start at min"
                    )),
                );
            }
            (Some(_), Some(_)) => {}
            (Some(_), None) => ok = false,
            (None, _) => scale.replicas = min,
        }
        let (Some(target_concurrency), Some(scale_to_zero_after_ms), true) =
            (target_concurrency, scale_to_zero_after_ms, ok)
        else {
            return scale;
        };
        scale.autoscale = Some(AutoscaleSpec {
            min,
            max,
            target_concurrency,
            scale_to_zero_after_ms,
        });
        scale
    }

    pub(super) fn route(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> RouteSpec {
        let mut route = RouteSpec {
            public: true,
            hosts: Vec::new(),
        };
        let Some((key, item)) = entry else {
            return route;
        };
        let hint = match item {
            Item::Value(Value::Boolean(b)) => Some(format!("write `route.public = {}`", b.value())),
            _ => None,
        };
        let Some((path, table)) =
            self.open_section((key, item), service, Section::Route, None, hint)
        else {
            return route;
        };
        if let Some((k, i)) = table.get_key_value("public") {
            if let Some(b) = self.boolean(&path.child("public"), k, i, true) {
                route.public = b;
            }
        }
        if let Some((k, i)) = table.get_key_value("hosts") {
            let p = path.child("hosts");
            if let Some(array) = i.as_array() {
                let mut seen = BTreeSet::new();
                for (n, value) in array.iter().enumerate() {
                    let Value::String(s) = value else {
                        self.push(
                            value.span(),
                            Some(p.to_string()),
                            format!(
                                "`{}` must be a string, found {}",
                                p.index(n),
                                describe_value(value)
                            ),
                            Some("for example `hosts = [\"hello.example.com\"]`".into()),
                        );
                        continue;
                    };
                    match check_host(s.value()) {
                        Ok(host) => {
                            if seen.insert(host.clone()) {
                                route.hosts.push(host);
                            } else {
                                self.push(
                                    s.span(),
                                    Some(p.to_string()),
                                    format!("host {} is listed twice in `{p}`", quote(&host)),
                                    Some("remove one of them".into()),
                                );
                            }
                        }
                        Err((why, hint)) => {
                            self.push(
                                s.span(),
                                Some(p.to_string()),
                                format!("`{}` {why}: {}", p.index(n), quote(s.value())),
                                Some(hint),
                            );
                        }
                    }
                }
            } else {
                let hint = match i {
                    Item::Value(Value::String(s)) => {
                        format!("write a list: `hosts = [{}]`", quote(s.value()))
                    }
                    _ => "for example `hosts = [\"hello.example.com\"]`".into(),
                };
                self.type_error(&p, k, i, "an array of host names", hint);
            }
        }
        route
    }
}
