//! A `[service.NAME]` table: its own keys and the sections it holds.

use super::*;

impl<'s> Checker<'s> {
    pub(super) fn service(&mut self, key: &Key, item: &Item) -> Option<ServiceSpec> {
        let name = key.get();
        let path = Path::from_segments(&["service", name]);
        let header = key.span();
        if !is_dns_label(name) {
            self.push(
                header.clone(),
                Some(path.to_string()),
                format!("invalid service name `{name}`"),
                Some(format!(
                    "a service name is a DNS label (lowercase letters, digits and `-`, starting with a letter, at most 63 characters), for example `{}`",
                    suggest_label(name, "hello")
                )),
            );
        }
        let Some(table) = item.as_table_like() else {
            let hint = if Section::Service.allows(name) {
                format!("`{name}` belongs in a service's table: [service.NAME]")
            } else {
                format!("declare the service as a table: [{path}]")
            };
            self.push(
                value_span(key, item),
                Some(path.to_string()),
                format!("`{path}` must be a table, found {}", describe(item)),
                Some(hint),
            );
            return None;
        };
        self.check_keys(table, &path, &path, Section::Service);
        let field = |n: &str| table.get_key_value(n);

        // driver
        let driver = match field("driver") {
            None => Some(DriverKind::Exec),
            Some((k, i)) => self.driver(&path.child("driver"), k, i),
        };

        // artifact / command
        let artifact = field("artifact").and_then(|(k, i)| {
            let p = path.child("artifact");
            let (s, span) =
                self.string(&p, k, i, "a string", "`artifact = \"build/hello\"`")?;
            if s.trim().is_empty() {
                self.push(
                    span,
                    Some(p.to_string()),
                    format!("`{p}` must not be empty"),
                    Some("give the path of a file, relative to the spec file, like `artifact = \"build/hello\"`".into()),
                );
                return None;
            }
            Some(s.to_string())
        });
        let command = field("command").and_then(|(k, i)| {
            let p = path.child("command");
            let (list, span) = self.string_list(&p, k, i, "command", "[\"python3\", \"-m\", \"http.server\"]")?;
            if list.is_empty() {
                self.push(
                    span,
                    Some(p.to_string()),
                    format!("`{p}` must not be empty"),
                    Some("give the program first, then its arguments: `command = [\"python3\", \"app.py\"]`".into()),
                );
                return None;
            }
            if list[0].trim().is_empty() {
                self.push(
                    span,
                    Some(p.index(0)),
                    format!("`{}` (the program) must not be empty", p.index(0)),
                    Some("the first element is the program to run, like `\"python3\"`".into()),
                );
                return None;
            }
            Some(list)
        });
        let artifact_entry = field("artifact");
        let command_entry = field("command");
        match driver {
            // With both, the artifact is the code the command runs in (a directory or a tar
            // of one, unpacked as the instance's working directory).
            Some(DriverKind::Exec) if artifact_entry.is_none() && command_entry.is_none() => {
                self.push(
                    header.clone(),
                    Some(path.to_string()),
                    format!("`{path}` needs an `artifact` or a `command`"),
                    Some("add `artifact = \"build/hello\"` (a program uploaded at deploy) or `command = [\"python3\", \"app.py\"]` (a program on the node)".into()),
                );
            }
            Some(DriverKind::Exec) => {}
            Some(kind @ (DriverKind::Wasm | DriverKind::Container)) => {
                if let Some((ck, _)) = command_entry {
                    self.push(
                        ck.span(),
                        Some(path.child("command").to_string()),
                        format!(
                            "`command` is only for the `exec` driver, and `{path}` uses `{}`",
                            kind.as_str()
                        ),
                        Some(format!(
                            "a {} service runs its `artifact`; remove `command`",
                            kind.as_str()
                        )),
                    );
                }
                if artifact_entry.is_none() {
                    let example = match kind {
                        DriverKind::Wasm => "build/hello.wasm",
                        _ => "build/hello.tar",
                    };
                    self.push(
                        header.clone(),
                        Some(path.child("artifact").to_string()),
                        format!(
                            "`{path}` uses the `{}` driver and needs an `artifact`",
                            kind.as_str()
                        ),
                        Some(format!(
                            "add `artifact = \"{example}\"`, a file uploaded at deploy"
                        )),
                    );
                }
            }
            None => {}
        }

        let args = field("args")
            .and_then(|(k, i)| {
                self.string_list(&path.child("args"), k, i, "args", "[\"--verbose\"]")
                    .map(|(list, _)| list)
            })
            .unwrap_or_default();

        let port = match field("port") {
            None => PortSpec::Auto,
            Some((k, i)) => self
                .port(&path.child("port"), k, i)
                .unwrap_or(PortSpec::Auto),
        };

        let protocol = field("protocol")
            .and_then(|(k, i)| self.protocol(&path.child("protocol"), k, i))
            .unwrap_or_default();

        let stop_timeout_ms = match field("stop_timeout") {
            None => DEFAULT_STOP_TIMEOUT_MS,
            Some(entry) => self
                .duration_key(&path, entry, Section::Service, "stop_timeout")
                .unwrap_or(DEFAULT_STOP_TIMEOUT_MS),
        };

        let scale = self.scale(field("scale"), &path);
        let route = self.route(field("route"), &path);
        let config = match field("config") {
            None => BTreeMap::new(),
            Some((k, i)) => self.config(&path.child("config"), k, i),
        };
        let env_config = match field("environments") {
            None => BTreeMap::new(),
            Some((k, i)) => self.environments(&path, k, i),
        };
        let min_ready_ms = match field("min_ready") {
            None => DEFAULT_MIN_READY_MS,
            Some(entry) => self
                .duration_key(&path, entry, Section::Service, "min_ready")
                .unwrap_or(DEFAULT_MIN_READY_MS),
        };
        let health = field("health").and_then(|(k, i)| self.health(&path, k, i));
        let liveness = field("liveness").and_then(|(k, i)| self.liveness(&path, k, i));
        let resources = self.resources(field("resources"), &path);
        let constraints = self.placement(field("placement"), &path);
        let wasm = self.wasm(field("wasm"), &path, driver);
        let container = self.container(field("container"), &path, driver);
        let mesh = self.mesh(field("mesh"), &path);
        let slo = self.slo(field("slo"), &path);
        let rollout = self.rollout(field("rollout"), &path);
        let forensics = self.forensics(field("forensics"), &path);
        let config_names: BTreeSet<&str> = config
            .keys()
            .chain(env_config.values().flat_map(BTreeMap::keys))
            .map(String::as_str)
            .collect();
        let secrets = self.secrets(field("secrets"), &path, driver, &config_names);

        let mut spec = ServiceSpec {
            // Checked above (the problem is already reported).
            name: crate::ServiceName::new(name).ok()?,
            driver: driver.unwrap_or(DriverKind::Exec),
            artifact,
            command: command.unwrap_or_default(),
            args,
            port,
            protocol,
            scale,
            route,
            config,
            env_config,
            health,
            liveness,
            min_ready_ms,
            resources,
            constraints,
            stop_timeout_ms,
            wasm,
            container,
            mesh,
            slo,
            rollout,
            secrets,
            forensics,
        };
        self.check_protocol(&path, table, &mut spec);
        Some(spec)
    }

    // -- typed values ---------------------------------------------------------------------------
}
