//! The document and its keys: top-level tables, unknown keys and where a misplaced key
//! belongs.

use super::*;

impl<'s> Checker<'s> {
    pub(super) fn document(&mut self, root: &dyn TableLike) -> Vec<ServiceSpec> {
        const NO_SERVICES: &str = "no services defined; add a [service.NAME] table";
        const MINIMAL: &str =
            "a minimal service is `[service.hello]` with `artifact = \"build/hello\"`";
        let mut services = Vec::new();
        let mut service_seen = false;
        let mut unknown_seen = false;
        for (name, _) in root.iter() {
            let Some((key, item)) = root.get_key_value(name) else {
                continue;
            };
            if name != "service" {
                self.unknown_top_level(name, key, item);
                unknown_seen = true;
                continue;
            }
            service_seen = true;
            let Some(table) = item.as_table_like() else {
                let hint = match item {
                    Item::ArrayOfTables(_) => {
                        "name each service: write [service.hello] instead of [[service]]".into()
                    }
                    _ => "declare each service as a table: [service.hello]".into(),
                };
                self.push(
                    value_span(key, item),
                    Some("service".into()),
                    format!(
                        "`service` must be a table of named services, found {}",
                        describe(item)
                    ),
                    Some(hint),
                );
                continue;
            };
            if table.is_empty() {
                self.push(
                    key.span(),
                    Some("service".into()),
                    NO_SERVICES.into(),
                    Some(MINIMAL.into()),
                );
                continue;
            }
            let mut entries: Vec<(&Key, &Item)> = table
                .iter()
                .filter_map(|(n, _)| table.get_key_value(n))
                .collect();
            entries.sort_by_key(|(k, _)| k.span().map_or(0, |s| s.start));
            for (key, item) in entries {
                if let Some(spec) = self.service(key, item) {
                    services.push(spec);
                }
            }
        }
        // An unknown top-level key's hint already tells where services go.
        if !service_seen && !unknown_seen {
            self.push(Some(0..0), None, NO_SERVICES.into(), Some(MINIMAL.into()));
        }
        services
    }

    pub(super) fn unknown_top_level(&mut self, name: &str, key: &Key, item: &Item) {
        let hint = if let Some(s) = closest(name, &["service"]) {
            format!("did you mean `{s}`?")
        } else if Section::Service.allows(name) || Section::nested().any(|s| s.allows(name)) {
            format!("`{name}` belongs in a service's table, under [service.NAME]")
        } else if item.is_table_like() {
            format!(
                "services are declared under `service`: write [service.{}]",
                display_key(&suggest_label(name, "hello"))
            )
        } else {
            "the only top-level table is `service`, as in [service.hello]".into()
        };
        self.push(
            key.span(),
            Some(display_key(name)),
            format!("unknown key `{}`", display_key(name)),
            Some(hint),
        );
    }

    /// Checks that every key of `table` is allowed in `section`.
    pub(super) fn check_keys(
        &mut self,
        table: &dyn TableLike,
        path: &Path,
        service: &Path,
        section: Section,
    ) {
        for (name, item) in table.iter() {
            if section.allows(name) {
                continue;
            }
            let key = table.get_key_value(name).map(|(k, _)| k);
            let span = key.and_then(Key::span);
            let hint = self.unknown_key_hint(name, item, path, service, section);
            self.push(
                span,
                Some(path.child(name).to_string()),
                format!("unknown key `{}`", path.child(name)),
                Some(hint),
            );
        }
    }

    pub(super) fn unknown_key_hint(
        &self,
        name: &str,
        item: &Item,
        path: &Path,
        service: &Path,
        section: Section,
    ) -> String {
        let raw = match item {
            Item::Value(v) => self.raw(v.span()),
            _ => None,
        };
        // Words people use for something that is not a key of this table: where it goes.
        let redirect = match (section, name) {
            (Section::Service, "name") => {
                Some("a service's name is its table key, as in [service.NAME]".into())
            }
            (Section::Service, "env" | "vars" | "variables" | "environment_variables") => Some(format!(
                "environment variables go in [{service}.config]; values for one environment in [{service}.environments.ENV.config]"
            )),
            (Section::Service, "timeout") => Some(format!(
                "did you mean `stop_timeout`? (a health check's `timeout` belongs in [{service}.health])"
            )),
            (Section::Service, "host" | "hostname" | "domain" | "domains") => Some(format!(
                "host names go in [{service}.route] as `hosts = [\"{}\"]`",
                "hello.example.com"
            )),
            (Section::Service, "instances" | "count" | "replica") => Some(format!(
                "the number of instances is `replicas`, in [{service}.scale]: write `scale.replicas = {}`",
                raw.unwrap_or("2")
            )),
            (Section::Service, "autoscale" | "autoscaling" | "autoscaler") => Some(format!(
                "autoscaling is set in [{service}.scale]: write `min` and `max` there, like `scale = {{ min = 1, max = 10 }}`"
            )),
            (
                Section::Service,
                "constraints" | "constraint" | "node_selector" | "nodeSelector" | "affinity",
            ) => Some(format!(
                "node label constraints go in [{service}.placement] as `labels = {{ zone = \"eu-1\" }}`"
            )),
            // `request_timeout` is a key of both [wasm] and [mesh], with different meanings.
            (Section::Service, "request_timeout") => Some(format!(
                "`request_timeout` belongs in [{service}.mesh] (the deadline of a call through the mesh) or, for a wasm service, in [{service}.wasm] (the deadline of one request inside the instance)"
            )),
            (Section::Mesh, "max_concurrency") => Some(format!(
                "did you mean `max_concurrent`? (`max_concurrency`, the requests one wasm instance serves at once, belongs in [{service}.wasm])"
            )),
            (Section::Wasm, "max_concurrent") => Some(format!(
                "did you mean `max_concurrency`? (`max_concurrent`, the mesh's circuit breaker, belongs in [{service}.mesh])"
            )),
            (Section::Mesh, "deny" | "deny_from" | "block" | "block_from") => Some(
                "there is no deny list: `allow_from` lists the services allowed to call this one (`allow_from = []`: none)".into(),
            ),
            _ => None,
        };
        if let Some(redirect) = redirect {
            return redirect;
        }
        if let Some(alias) = section.alias(name) {
            return format!("did you mean `{alias}`?");
        }
        if section == Section::Environment {
            if let Some(suggestion) = closest(name, &section.names()) {
                return format!("did you mean `{suggestion}`?");
            }
            let service_key =
                Section::Service.allows(name) || Section::nested().any(|s| s.allows(name));
            if !service_key && is_env_name(name) && item.is_value() {
                return format!(
                    "values for one environment go in its `config` table: write `config.{name} = {}`, or put it under [{path}.config]",
                    raw.unwrap_or("\"...\"")
                );
            }
            return format!("only `config` can be set per environment, as in [{path}.config]");
        }
        // A key of another table of the service, written in the wrong one.
        if section != Section::Service && Section::Service.allows(name) {
            return format!("`{name}` belongs directly in [{service}], not in [{path}]");
        }
        if let Some(home) = Section::nested().find(|s| *s != section && s.allows(name)) {
            let table = service.child(home.name());
            return match (section, raw) {
                (Section::Service, Some(raw)) => format!(
                    "`{name}` belongs in [{table}]: write `{}.{name} = {raw}` here, or put it under [{table}]",
                    home.name()
                ),
                _ => format!("`{name}` belongs in [{table}]"),
            };
        }
        if let Some(suggestion) = closest(name, &section.names()) {
            return format!("did you mean `{suggestion}`?");
        }
        // A node label written directly in [placement].
        if section == Section::Placement && is_label_key(name) {
            if let Item::Value(Value::String(s)) = item {
                return format!(
                    "node labels go in the `labels` table: write `labels.{} = {}`, or put it under [{path}.labels]",
                    display_key(name),
                    self.raw(s.span()).map_or_else(|| quote(s.value()), str::to_string)
                );
            }
        }
        format!("[{path}] accepts {}", list(&section.names()))
    }
}
