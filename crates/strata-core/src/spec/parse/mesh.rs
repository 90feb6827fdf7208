//! `[mesh]`: who may call the service, and how proxies call it (timeout, retries, budget,
//! circuit breaker).

use super::*;

impl<'s> Checker<'s> {
    /// `[mesh]`: who may call the service through the mesh, and how every node's proxy calls
    /// it. Any driver; a key not set takes its default (see [`MeshSettings`]).
    pub(super) fn mesh(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
    ) -> Option<MeshSettings> {
        let (key, item) = entry?;
        let hint = match item {
            Item::Value(v @ Value::Array(_)) => Some(format!(
                "write `mesh.allow_from = {}`",
                self.raw(v.span()).unwrap_or("[\"web\"]")
            )),
            _ => None,
        };
        let (path, table) = self.open_section((key, item), service, Section::Mesh, None, hint)?;
        let mut settings = MeshSettings::default();
        if let Some((k, i)) = table.get_key_value("allow_from") {
            settings.allow_from = self.allow_from(&path.child("allow_from"), k, i);
        }
        if let Some(entry) = table.get_key_value("request_timeout") {
            if let Some(ms) = self.duration_key(&path, entry, Section::Mesh, "request_timeout") {
                settings.request_timeout_ms = ms;
            }
        }
        if let Some((k, i)) = table.get_key_value("retries") {
            if let Some(n) = self.integer_key(&path, (k, i), Section::Mesh, "retries") {
                settings.retries = n;
            }
        }
        if let Some((k, i)) = table.get_key_value("retry_budget") {
            if let Some(permille) = self.retry_budget(&path.child("retry_budget"), k, i) {
                settings.retry_budget_permille = permille;
            }
        }
        if let Some((k, i)) = table.get_key_value("max_concurrent") {
            let p = path.child("max_concurrent");
            if let Some((n, span)) = self.integer(&p, k, i, 1024) {
                match u32::try_from(n) {
                    Ok(n) if n >= 1 => settings.max_concurrent = n,
                    _ => {
                        let message = if n < 1 {
                            format!("`{p}` must be at least 1, found {n}")
                        } else {
                            format!("`{p}` must be at most {}, found {n}", u32::MAX)
                        };
                        self.push(
                            span,
                            Some(p.to_string()),
                            message,
                            Some("max_concurrent is how many requests one node's proxy has in flight to this service before it answers 503, for example `max_concurrent = 1024`".into()),
                        );
                    }
                }
            }
        }
        Some(settings)
    }

    /// `[mesh] allow_from`: service names, or `"*"` alone.
    pub(super) fn allow_from(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
    ) -> Option<Vec<String>> {
        // Reports a value that is not an array, and each element that is not a string; the
        // strings are checked all the same, so that every problem is reported at once.
        let mut ok = self
            .string_list(path, key, item, "allow_from", "[\"web\", \"worker\"]")
            .is_some();
        let array = item.as_array()?;
        let mut out: Vec<String> = Vec::new();
        let mut star = None;
        for value in array.iter() {
            let Value::String(s) = value else {
                continue;
            };
            let name = s.value();
            let span = value.span().or_else(|| key.span());
            if name == "*" {
                star = Some(span.clone());
            } else if name.is_empty() {
                ok = false;
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("`{path}` has an empty service name"),
                    Some("write a service name, like \"web\", or \"*\" for any service".into()),
                );
                continue;
            } else if !is_dns_label(name) {
                ok = false;
                let suggestion = suggest_label(name, "");
                let hint = if name.contains('*') {
                    "patterns are not supported: list each service by name, or write \"*\" alone for any service".to_string()
                } else if suggestion.is_empty() || suggestion == *name {
                    "a service name is a DNS label: lowercase letters, digits and `-`, starting with a letter, at most 63 characters; or \"*\" for any service".to_string()
                } else {
                    format!(
                        "did you mean {}? A service name is a DNS label: lowercase letters, digits and `-`, starting with a letter, at most 63 characters; or \"*\" for any service",
                        quote(&suggestion)
                    )
                };
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("`{path}`: `{name}` is not a service name ({SERVICE_NAME_RULE})"),
                    Some(hint),
                );
                continue;
            }
            if out.contains(name) {
                ok = false;
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("{} is listed twice in `{path}`", quote(name)),
                    Some("remove one of them".into()),
                );
                continue;
            }
            out.push(name.clone());
        }
        if let Some(span) = star.filter(|_| out.len() > 1) {
            ok = false;
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` lists \"*\" (any service) and service names"),
                Some("\"*\" already allows every service of the environment: write `allow_from = [\"*\"]`, or remove \"*\" to allow only the services named".into()),
            );
        }
        ok.then_some(out)
    }

    /// `[mesh] retry_budget`: a fraction from 0.0 to 1.0, in thousandths.
    pub(super) fn retry_budget(&mut self, path: &Path, key: &Key, item: &Item) -> Option<u32> {
        const MEANING: &str = "retry_budget is the most retries as a fraction of the requests over the last 10 s, from 0.0 to 1.0, for example `retry_budget = 0.2`";
        let fraction = |value: f64| format!("{}", (value * 1000.0).round() / 1000.0);
        let (value, span) = match item {
            Item::Value(Value::Float(f)) => (*f.value(), f.span()),
            Item::Value(Value::Integer(i)) => (*i.value() as f64, i.span()),
            _ => {
                let hint = match item {
                    Item::Value(Value::String(s)) => {
                        let text = s.value().trim();
                        let percent = text
                            .strip_suffix('%')
                            .and_then(|t| t.trim().parse::<f64>().ok())
                            .filter(|p| (0.0..=100.0).contains(p));
                        match (percent, text.parse::<f64>()) {
                            (Some(p), _) => {
                                format!(
                                    "write a fraction: `retry_budget = {}`",
                                    fraction(p / 100.0)
                                )
                            }
                            (None, Ok(_)) => {
                                format!("write the number without quotes: `retry_budget = {text}`")
                            }
                            _ => MEANING.to_string(),
                        }
                    }
                    _ => MEANING.to_string(),
                };
                self.type_error(path, key, item, "a number from 0.0 to 1.0", hint);
                return None;
            }
        };
        let found = self.raw(span.clone()).unwrap_or("").to_string();
        if !(0.0..=1.0).contains(&value) {
            let hint = if value > 1.0 && value <= 100.0 {
                format!(
                    "it is a fraction, not a percentage: for {found}% write `retry_budget = {}`",
                    fraction(value / 100.0)
                )
            } else {
                MEANING.to_string()
            };
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` must be between 0.0 and 1.0, found {found}"),
                Some(hint),
            );
            return None;
        }
        let permille = (value * 1000.0).round() as u32;
        if permille == 0 && value > 0.0 {
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` is counted in thousandths, and {found} rounds to 0"),
                Some("write at least 0.001, or `retry_budget = 0` for no retries".into()),
            );
            return None;
        }
        Some(permille)
    }
}
