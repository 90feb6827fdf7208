//! The spec checker's tests: every key, every default, every problem and its hint.

use super::*;

const FULL: &str = r#"# Every key, set.
[service.hello]
driver = "exec"
artifact = "build/hello"
args = ["--verbose"]
port = 8080
stop_timeout = "10s"
min_ready = "3s"

[service.hello.scale]
replicas = 2
min = 1
max = 4
target_concurrency = 20

[service.hello.route]
public = true
hosts = ["hello.example.com", "Hello.Example.org"]

[service.hello.config]
GREETING = "hello"
WORKERS = 4
RATIO = 0.50
DEBUG = false

[service.hello.environments.prod.config]
GREETING = "hello from prod"

[service.hello.health]
path = "/healthz"
interval = "2s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 5

[service.hello.liveness]
path = "/alive"
interval = "5s"
unhealthy_threshold = 4

[service.hello.resources]
cpu = 0.5
memory = "128Mi"

[service.hello.slo]
p99_ms = 250
error_rate = 0.001
availability = 0.999

[service.static]
command = ["python3", "-m", "http.server"]
route = { public = false }
scale = { min = 0, max = 3, scale_to_zero_after = "5m" }
placement.labels = { zone = "eu-1", "example.com/tier" = "web" }
"#;

fn errors(source: &str) -> Vec<SpecError> {
    match parse("strata.toml", source) {
        Ok(spec) => panic!("expected errors, parsed {spec:?}"),
        Err(SpecErrors(errors)) => {
            assert!(!errors.is_empty());
            errors
        }
    }
}

/// The only error of `source`.
fn error(source: &str) -> SpecError {
    let errors = errors(source);
    assert_eq!(
        errors.len(),
        1,
        "{}",
        SpecErrors(errors.clone()).render(source)
    );
    errors.into_iter().next().unwrap()
}

/// (line, column, key, message, hint)
fn summary(e: &SpecError) -> (usize, usize, Option<&str>, &str, Option<&str>) {
    (
        e.line,
        e.column,
        e.key.as_deref(),
        e.message.as_str(),
        e.hint.as_deref(),
    )
}

fn service(body: &str) -> String {
    format!("[service.hello]\nartifact = \"build/hello\"\n{body}")
}

fn only_service(source: &str) -> ServiceSpec {
    let spec = parse("strata.toml", source).unwrap_or_else(|e| panic!("{}", e.render(source)));
    assert_eq!(spec.services.len(), 1);
    spec.services.into_iter().next().unwrap()
}

#[test]
fn full_spec_parses_with_every_key() {
    let spec = parse("strata.toml", FULL).unwrap_or_else(|e| panic!("{}", e.render(FULL)));
    let config = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        spec.services,
        vec![
            ServiceSpec {
                name: "hello".into(),
                driver: DriverKind::Exec,
                artifact: Some("build/hello".into()),
                command: vec![],
                args: vec!["--verbose".into()],
                port: PortSpec::Fixed(8080),
                scale: ScaleSpec {
                    replicas: 2,
                    autoscale: Some(AutoscaleSpec {
                        min: 1,
                        max: 4,
                        target_concurrency: 20,
                        scale_to_zero_after_ms: 60_000,
                    }),
                },
                route: RouteSpec {
                    public: true,
                    hosts: vec!["hello.example.com".into(), "hello.example.org".into()],
                },
                config: config(&[
                    ("GREETING", "hello"),
                    ("WORKERS", "4"),
                    ("RATIO", "0.50"),
                    ("DEBUG", "false"),
                ]),
                env_config: BTreeMap::from([(
                    "prod".to_string(),
                    config(&[("GREETING", "hello from prod")]),
                )]),
                health: Some(HealthSpec {
                    path: "/healthz".into(),
                    interval_ms: 2_000,
                    timeout_ms: 1_000,
                    healthy_threshold: 2,
                    unhealthy_threshold: 5,
                }),
                liveness: Some(LivenessSpec {
                    path: Some("/alive".into()),
                    interval_ms: 5_000,
                    timeout_ms: 500,
                    unhealthy_threshold: 4,
                }),
                min_ready_ms: 3_000,
                resources: Resources {
                    cpu_millis: 500,
                    memory_bytes: 128 << 20,
                },
                constraints: BTreeMap::new(),
                stop_timeout_ms: 10_000,
                wasm: None,
                container: None,
                mesh: None,
                slo: Some(SloSpec {
                    p99_ms: Some(250),
                    error_rate: Some(Ratio::from_ppm(1_000)),
                    availability: Some(Ratio::from_ppm(999_000)),
                }),
            },
            ServiceSpec {
                name: "static".into(),
                driver: DriverKind::Exec,
                artifact: None,
                command: vec!["python3".into(), "-m".into(), "http.server".into()],
                args: vec![],
                port: PortSpec::Auto,
                scale: ScaleSpec {
                    replicas: 0,
                    autoscale: Some(AutoscaleSpec {
                        min: 0,
                        max: 3,
                        target_concurrency: 10,
                        scale_to_zero_after_ms: 300_000,
                    }),
                },
                route: RouteSpec {
                    public: false,
                    hosts: vec![],
                },
                config: BTreeMap::new(),
                env_config: BTreeMap::new(),
                health: None,
                liveness: None,
                min_ready_ms: DEFAULT_MIN_READY_MS,
                resources: Resources {
                    cpu_millis: 100,
                    memory_bytes: 64 << 20,
                },
                constraints: config(&[("zone", "eu-1"), ("example.com/tier", "web")]),
                stop_timeout_ms: 5_000,
                wasm: None,
                container: None,
                mesh: None,
                slo: None,
            },
        ]
    );
    assert_eq!(
        spec.services[0].config_for("prod")["GREETING"],
        "hello from prod"
    );
}

#[test]
fn defaults_are_filled_in() {
    let s = only_service("[service.hello]\nartifact = \"build/hello\"\n");
    assert_eq!(s.driver, DriverKind::Exec);
    assert_eq!(s.port, PortSpec::Auto);
    assert_eq!(s.scale, ScaleSpec::fixed(1));
    assert_eq!(s.slo, None);
    assert_eq!(
        s.route,
        RouteSpec {
            public: true,
            hosts: vec![]
        }
    );
    assert!(s.args.is_empty() && s.command.is_empty() && s.config.is_empty());
    assert!(s.env_config.is_empty());
    assert_eq!(s.health, None);
    assert_eq!(
        s.resources,
        Resources {
            cpu_millis: 100,
            memory_bytes: 64 << 20
        }
    );
    assert_eq!(s.stop_timeout_ms, 5_000);
    assert!(s.constraints.is_empty());

    // A health table with only a path gets the defaults.
    let s = only_service(&service("[service.hello.health]\npath = \"/\"\n"));
    assert_eq!(
        s.health,
        Some(HealthSpec {
            path: "/".into(),
            interval_ms: 1_000,
            timeout_ms: 500,
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        })
    );
    // The default timeout never exceeds a short interval.
    let s = only_service(&service(
        "[service.hello.health]\npath = \"/\"\ninterval = \"200ms\"\n",
    ));
    assert_eq!(s.health.unwrap().timeout_ms, 200);
    assert_eq!(s.min_ready_ms, DEFAULT_MIN_READY_MS);
    assert_eq!(s.liveness, None);

    // A liveness table may be empty: a TCP connect to the port, every second.
    let s = only_service(&service("[service.hello.liveness]\n"));
    assert_eq!(
        s.liveness,
        Some(LivenessSpec {
            path: None,
            interval_ms: 1_000,
            timeout_ms: 500,
            unhealthy_threshold: 3,
        })
    );
}

/// Every complete example in docs/spec.md (before its Errors section) parses, so the
/// reference never shows a spec Strata refuses.
/// The key tables of docs/spec.md, section by section: each row's key, type and default.
fn documented_keys(doc: &str, heading: &str) -> Vec<(String, String, String)> {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/spec.md has no heading {heading}"));
    let after = &doc[start + heading.len() + 2..];
    let section = &after[..after.find("\n## ").unwrap_or(after.len())];
    section
        .lines()
        .skip_while(|l| !l.starts_with("| Key"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn docs_spec_md_lists_every_key_of_the_schema_with_its_type_and_default() {
    let doc = include_str!("../../../../../docs/spec.md");
    for section in Section::ALL {
        let heading = match section {
            Section::Service => "## `[service.NAME]`".to_string(),
            // Per-environment values are a `config` table, described in prose.
            Section::Environment => continue,
            other => format!("## `[service.NAME.{}]`", other.name()),
        };
        let schema: Vec<(String, String, String)> = section
            .keys()
            .iter()
            .filter(|k| !matches!(k.rule, Rule::Table))
            .map(|k| (k.name.to_string(), k.ty.to_string(), k.default.to_string()))
            .collect();
        assert_eq!(
            documented_keys(doc, &heading),
            schema,
            "docs/spec.md's table under {heading} and the schema differ (key, type, default)"
        );
    }
}

#[test]
fn the_schema_is_consistent() {
    let mut aliases = BTreeSet::new();
    for section in Section::ALL {
        for def in section.keys() {
            assert!(!def.doc.is_empty(), "`{}` has no doc line", def.name);
            match def.rule {
                Rule::Integer {
                    min,
                    max,
                    example,
                    hint,
                } => {
                    assert!(min <= example && example <= max, "`{}`'s example", def.name);
                    assert!(
                        hint.contains(&format!("from {min} to {max}")),
                        "`{}`'s hint states other bounds than its rule: {hint}",
                        def.name
                    );
                }
                Rule::Duration { min_ms, max_ms, .. } => assert!(min_ms < max_ms),
                Rule::Table => assert!(
                    section == Section::Environment
                        || Section::NESTED.iter().any(|s| s.name() == def.name)
                        || matches!(def.name, "config" | "environments"),
                    "`{}` is a table with no section",
                    def.name
                ),
                Rule::Custom => {}
            }
            for alias in def.aliases {
                assert!(
                    !section.allows(alias),
                    "alias `{alias}` is a key of its table"
                );
                assert!(
                    aliases.insert((section.name(), *alias)),
                    "alias `{alias}` names two keys"
                );
            }
        }
    }
}

#[test]
fn the_examples_of_docs_spec_md_parse() {
    let doc = include_str!("../../../../../docs/spec.md");
    let reference = &doc[..doc.find("## Errors").expect("an Errors section")];
    let mut checked = 0;
    for block in reference.split("```toml\n").skip(1) {
        let block = &block[..block.find("```").expect("closed block")];
        // Fragments (a layout, one table) are not whole specs.
        if !block.contains("[service.") || block.contains("NAME") {
            continue;
        }
        let blocks_service = block
            .lines()
            .any(|l| l.starts_with("[service.") && l.matches('.').count() == 1);
        let has_program = block.contains("artifact") || block.contains("command");
        if !blocks_service || !has_program {
            continue;
        }
        if let Err(errors) = parse("spec.md", block) {
            panic!(
                "docs/spec.md example does not parse:\n{block}\n{}",
                errors.render(block)
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} examples found");
}

#[test]
fn liveness_and_min_ready_problems() {
    let table = [
        (
            "min_ready = \"2h\"\n",
            "`service.hello.min_ready` must be at most 1h, found \"2h\"",
        ),
        (
            "min_ready = 5\n",
            "`service.hello.min_ready` must be a duration",
        ),
        ("liveness.healthy_threshold = 2\n", "healthy_threshold"),
        (
            "liveness.path = \"alive\"\n",
            "`service.hello.liveness.path` must start with `/`",
        ),
        (
            "liveness = \"/alive\"\n",
            "write `liveness.path = \"/alive\"`",
        ),
    ];
    for (extra, expected) in table {
        let source = format!("[service.hello]\ncommand = [\"hello\"]\n{extra}");
        let errors = parse("strata.toml", &source).unwrap_err().to_string();
        assert!(errors.contains(expected), "{extra:?}: {errors}");
    }
    // The default is left out of the JSON, so older releases hash the same.
    let s = only_service(&service(""));
    let json = serde_json::to_string(&s).unwrap();
    assert!(
        !json.contains("min_ready_ms") && !json.contains("liveness"),
        "{json}"
    );
    let back: ServiceSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn other_drivers_and_inline_tables() {
    let source = r#"
service.web = { driver = "wasm", artifact = "web.wasm", scale = { replicas = 0 } }
[service.db]
driver = "container"
artifact = "db.tar"
port = "auto"
resources.cpu = "250m"
resources.memory = 1073741824
"#;
    let spec = parse("strata.toml", source).unwrap();
    let web = &spec.services[0];
    assert_eq!((web.name.as_str(), web.driver), ("web", DriverKind::Wasm));
    assert_eq!(web.scale.replicas, 0);
    let db = &spec.services[1];
    assert_eq!((db.name.as_str(), db.driver), ("db", DriverKind::Container));
    assert_eq!(db.resources.cpu_millis, 250);
    assert_eq!(db.resources.memory_bytes, 1 << 30);
}

#[test]
fn wasm_limits() {
    let source = "[service.web]\ndriver = \"wasm\"\nartifact = \"web.wasm\"\n\
                  [service.web.wasm]\nrequest_timeout = \"2s\"\nmax_concurrency = 8\n";
    let spec = parse("strata.toml", source).unwrap();
    assert_eq!(
        spec.services[0].wasm,
        Some(WasmLimits {
            request_timeout_ms: Some(2_000),
            max_concurrency: Some(8),
        })
    );
    let cases = [
        (
            "driver = \"exec\"\ncommand = [\"x\"]\nwasm.max_concurrency = 2\n",
            "uses the `exec` driver",
        ),
        (
            "driver = \"wasm\"\nartifact = \"a.wasm\"\nwasm.max_concurrency = 0\n",
            "from 1 to 10000",
        ),
        (
            "driver = \"wasm\"\nartifact = \"a.wasm\"\nwasm.request_timeout = 5\n",
            "durations are strings with a unit",
        ),
        (
            "driver = \"wasm\"\nartifact = \"a.wasm\"\nwasm.request_timeout = \"0s\"\n",
            "between 1ms and 1h",
        ),
        (
            "driver = \"wasm\"\nartifact = \"a.wasm\"\nwasm.deadline = \"1s\"\n",
            "wasm.deadline",
        ),
    ];
    for (body, expected) in cases {
        let source = format!("[service.web]\n{body}");
        let errors = parse("strata.toml", &source).unwrap_err();
        let text = errors.to_string();
        assert!(text.contains(expected), "{body:?}: {text}");
    }
}

#[test]
fn container_settings() {
    let source = "[service.db]\ndriver = \"container\"\nartifact = \"db.tar\"\n\
                  [service.db.container]\ncapabilities = [\"net_bind_service\", \"CAP_CHOWN\"]\npids = 64\n";
    let spec = parse("strata.toml", source).unwrap();
    assert_eq!(
        spec.services[0].container,
        Some(ContainerSettings {
            capabilities: vec!["NET_BIND_SERVICE".into(), "CHOWN".into()],
            pids: Some(64),
        })
    );
    let cases = [
        ("driver = \"wasm\"\nartifact = \"a.wasm\"\ncontainer.pids = 2\n", "uses the `wasm` driver"),
        ("driver = \"container\"\nartifact = \"a.tar\"\ncontainer.capabilities = [\"NET_BIND\"]\n", "did you mean `NET_BIND_SERVICE`"),
        ("driver = \"container\"\nartifact = \"a.tar\"\ncontainer.pids = 0\n", "from 1 to 1000000"),
    ];
    for (body, expected) in cases {
        let source = format!("[service.db]\n{body}");
        let text = parse("strata.toml", &source).unwrap_err().to_string();
        assert!(text.contains(expected), "{body:?}: {text}");
    }
}

#[test]
fn mesh_settings() {
    // Every key set.
    let s = only_service(&service(
        "[service.hello.mesh]\nallow_from = [\"web\", \"worker-2\"]\nrequest_timeout = \"2s\"\n\
         retries = 3\nretry_budget = 0.25\nmax_concurrent = 64\n",
    ));
    let full = MeshSettings {
        allow_from: Some(vec!["web".into(), "worker-2".into()]),
        request_timeout_ms: 2_000,
        retries: 3,
        retry_budget_permille: 250,
        max_concurrent: 64,
    };
    assert_eq!(s.mesh, Some(full.clone()));
    assert_eq!(s.mesh_settings(), full);

    // Keys not set take the defaults; an empty table is all defaults.
    let defaults = MeshSettings {
        allow_from: None,
        request_timeout_ms: 30_000,
        retries: 1,
        retry_budget_permille: 200,
        max_concurrent: 1024,
    };
    assert_eq!(MeshSettings::default(), defaults);
    let s = only_service(&service("[service.hello.mesh]\n"));
    assert_eq!(s.mesh, Some(defaults.clone()));
    let s = only_service(&service("mesh = { retries = 0 }\n"));
    assert_eq!(
        s.mesh,
        Some(MeshSettings {
            retries: 0,
            ..defaults.clone()
        })
    );

    // No table: None, and the defaults apply.
    let s = only_service(&service(""));
    assert_eq!(s.mesh, None);
    assert_eq!(s.mesh_settings(), defaults);

    // Any driver may have it.
    let s = only_service(
        "[service.web]\ndriver = \"wasm\"\nartifact = \"web.wasm\"\nmesh.retries = 2\n",
    );
    assert_eq!(s.mesh_settings().retries, 2);

    // allow_from: "*" (anyone), [] (nobody).
    let allow = |v: &str| {
        only_service(&service(&format!("mesh.allow_from = {v}\n")))
            .mesh_settings()
            .allow_from
    };
    assert_eq!(allow("[\"*\"]"), Some(vec!["*".to_string()]));
    assert_eq!(allow("[]"), Some(vec![]));
    assert_eq!(allow("[\"hello\"]"), Some(vec!["hello".to_string()]));

    // retry_budget: floats and the integers 0 and 1, in thousandths.
    let budget = |v: &str| {
        only_service(&service(&format!("mesh.retry_budget = {v}\n")))
            .mesh_settings()
            .retry_budget_permille
    };
    assert_eq!(budget("0"), 0);
    assert_eq!(budget("1"), 1_000);
    assert_eq!(budget("0.0"), 0);
    assert_eq!(budget("1.0"), 1_000);
    assert_eq!(budget("0.1"), 100);
    assert_eq!(budget("0.001"), 1);

    let timeout = |v: &str| {
        only_service(&service(&format!("mesh.request_timeout = {v}\n")))
            .mesh_settings()
            .request_timeout_ms
    };
    assert_eq!(timeout("\"500ms\""), 500);
    assert_eq!(timeout("\"1ms\""), 1);
    assert_eq!(timeout("\"1h\""), 3_600_000);
    assert_eq!(timeout("\"1m 30s\""), 90_000);

    let s = only_service(&service("mesh.max_concurrent = 1\nmesh.retries = 5\n"));
    assert_eq!(
        (s.mesh_settings().max_concurrent, s.mesh_settings().retries),
        (1, 5)
    );

    // Absent and empty serialize differently, and absent is omitted (old hashes hold).
    let json = |s: &ServiceSpec| serde_json::to_value(s).unwrap();
    let plain = only_service(&service(""));
    assert!(json(&plain).get("mesh").is_none());
    let nobody = only_service(&service("mesh.allow_from = []\n"));
    assert_eq!(json(&nobody)["mesh"]["allow_from"], serde_json::json!([]));
    let back: ServiceSpec = serde_json::from_value(json(&nobody)).unwrap();
    assert_eq!(back, nobody);
    let defaults_only = only_service(&service("[service.hello.mesh]\n"));
    assert!(json(&defaults_only)["mesh"].get("allow_from").is_none());
    let back: ServiceSpec = serde_json::from_value(json(&defaults_only)).unwrap();
    assert_eq!(back, defaults_only);
    assert_ne!(plain.spec_hash(None), nobody.spec_hash(None));
}

#[test]
fn mesh_errors() {
    // (body under [service.hello], line, column, key, message, hint)
    let cases: [(&str, usize, usize, &str, &str, &str); 14] = [
        (
            "[service.hello.mesh]\nallow_from = [\"web\", \"Web_1\"]\n",
            4,
            22,
            "service.hello.mesh.allow_from",
            "`service.hello.mesh.allow_from`: `Web_1` is not a service name (lowercase letters, digits and -)",
            "did you mean \"web-1\"? A service name is a DNS label: lowercase letters, digits and `-`, starting with a letter, at most 63 characters; or \"*\" for any service",
        ),
        (
            "[service.hello.mesh]\nallow_from = [\"web-*\"]\n",
            4,
            15,
            "service.hello.mesh.allow_from",
            "`service.hello.mesh.allow_from`: `web-*` is not a service name (lowercase letters, digits and -)",
            "patterns are not supported: list each service by name, or write \"*\" alone for any service",
        ),
        (
            "[service.hello.mesh]\nallow_from = \"web\"\n",
            4,
            14,
            "service.hello.mesh.allow_from",
            "`service.hello.mesh.allow_from` must be an array of strings, found a string",
            "write a list: `allow_from = [\"web\"]`",
        ),
        (
            "[service.hello.mesh]\nallow_from = [\"web\", \"web\"]\n",
            4,
            22,
            "service.hello.mesh.allow_from",
            "\"web\" is listed twice in `service.hello.mesh.allow_from`",
            "remove one of them",
        ),
        (
            "[service.hello.mesh]\nallow_from = [\"*\", \"web\"]\n",
            4,
            15,
            "service.hello.mesh.allow_from",
            "`service.hello.mesh.allow_from` lists \"*\" (any service) and service names",
            "\"*\" already allows every service of the environment: write `allow_from = [\"*\"]`, or remove \"*\" to allow only the services named",
        ),
        (
            "[service.hello.mesh]\nrequest_timeout = \"0s\"\n",
            4,
            19,
            "service.hello.mesh.request_timeout",
            "`service.hello.mesh.request_timeout` must be between 1ms and 1h, found \"0s\"",
            "it is the deadline of a whole call, retries included; for example `request_timeout = \"10s\"`",
        ),
        (
            "[service.hello.mesh]\nrequest_timeout = \"2h\"\n",
            4,
            19,
            "service.hello.mesh.request_timeout",
            "`service.hello.mesh.request_timeout` must be between 1ms and 1h, found \"2h\"",
            "it is the deadline of a whole call, retries included; for example `request_timeout = \"10s\"`",
        ),
        (
            "[service.hello.mesh]\nrequest_timeout = 5\n",
            4,
            19,
            "service.hello.mesh.request_timeout",
            "`service.hello.mesh.request_timeout` must be a duration string, found an integer",
            "durations are strings with a unit: `request_timeout = \"5s\"` or `\"5ms\"`",
        ),
        (
            "[service.hello.mesh]\nretries = 9\n",
            4,
            11,
            "service.hello.mesh.retries",
            "`service.hello.mesh.retries` must be between 0 and 5, found 9",
            "retries is how many extra attempts a call may make on another instance, from 0 to 5",
        ),
        (
            "[service.hello.mesh]\nretry_budget = 20\n",
            4,
            16,
            "service.hello.mesh.retry_budget",
            "`service.hello.mesh.retry_budget` must be between 0.0 and 1.0, found 20",
            "it is a fraction, not a percentage: for 20% write `retry_budget = 0.2`",
        ),
        (
            "[service.hello.mesh]\nretry_budget = \"20%\"\n",
            4,
            16,
            "service.hello.mesh.retry_budget",
            "`service.hello.mesh.retry_budget` must be a number from 0.0 to 1.0, found a string",
            "write a fraction: `retry_budget = 0.2`",
        ),
        (
            "[service.hello.mesh]\nretry_budget = 0.0001\n",
            4,
            16,
            "service.hello.mesh.retry_budget",
            "`service.hello.mesh.retry_budget` is counted in thousandths, and 0.0001 rounds to 0",
            "write at least 0.001, or `retry_budget = 0` for no retries",
        ),
        (
            "[service.hello.mesh]\nmax_concurrent = 0\n",
            4,
            18,
            "service.hello.mesh.max_concurrent",
            "`service.hello.mesh.max_concurrent` must be at least 1, found 0",
            "max_concurrent is how many requests one node's proxy has in flight to this service before it answers 503, for example `max_concurrent = 1024`",
        ),
        (
            "mesh = [\"web\"]\n",
            3,
            8,
            "service.hello.mesh",
            "`service.hello.mesh` must be a table, found an array",
            "write `mesh.allow_from = [\"web\"]`",
        ),
    ];
    for (body, line, column, key, message, hint) in cases {
        let e = error(&service(body));
        assert_eq!(
            summary(&e),
            (line, column, Some(key), message, Some(hint)),
            "{body:?}"
        );
    }

    // Unknown keys: did you mean, and keys of a sibling table.
    let hint = |body: &str| error(&service(body)).hint.unwrap();
    let e = error(&service("[service.hello.mesh]\nretrys = 2\n"));
    assert_eq!(
        summary(&e),
        (
            4,
            1,
            Some("service.hello.mesh.retrys"),
            "unknown key `service.hello.mesh.retrys`",
            Some("did you mean `retries`?")
        )
    );
    assert_eq!(
        hint("[service.hello.mesh]\nallow-from = [\"web\"]\n"),
        "did you mean `allow_from`?"
    );
    assert_eq!(
        hint("[service.hello.mesh]\ntimeout = \"1s\"\n"),
        "did you mean `request_timeout`?"
    );
    assert_eq!(
        hint("[service.hello.mesh]\nmax_concurrency = 10\n"),
        "did you mean `max_concurrent`? (`max_concurrency`, the requests one wasm instance serves at once, belongs in [service.hello.wasm])"
    );
    assert_eq!(
        hint("[service.hello.mesh]\nxyzzy = 1\n"),
        "[service.hello.mesh] accepts `allow_from`, `request_timeout`, `retries`, `retry_budget` and `max_concurrent`"
    );
    assert_eq!(
        hint("[service.hello.mesh]\nreplicas = 1\n"),
        "`replicas` belongs in [service.hello.scale]"
    );
    assert_eq!(
        hint("retries = 2\n"),
        "`retries` belongs in [service.hello.mesh]: write `mesh.retries = 2` here, or put it under [service.hello.mesh]"
    );
    assert_eq!(
        hint("request_timeout = \"1s\"\n"),
        "`request_timeout` belongs in [service.hello.mesh] (the deadline of a call through the mesh) or, for a wasm service, in [service.hello.wasm] (the deadline of one request inside the instance)"
    );
    assert_eq!(
        hint("mesh.deny_from = [\"web\"]\n"),
        "there is no deny list: `allow_from` lists the services allowed to call this one (`allow_from = []`: none)"
    );
    let e =
        error("[service.web]\ndriver = \"wasm\"\nartifact = \"a.wasm\"\nwasm.max_concurrent = 2\n");
    assert_eq!(
        e.hint.as_deref(),
        Some("did you mean `max_concurrency`? (`max_concurrent`, the mesh's circuit breaker, belongs in [service.web.mesh])")
    );

    // Every bad value is reported, in order.
    let source = service(
        "[service.hello.mesh]\nallow_from = [\"A\", 1]\nrequest_timeout = \"soon\"\nretries = -1\nretry_budget = 1.5\nmax_concurrent = \"8\"\n",
    );
    let got: Vec<(usize, usize)> = errors(&source).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        got,
        vec![(4, 15), (4, 20), (5, 19), (6, 11), (7, 16), (8, 18)]
    );
}

#[test]
fn autoscale() {
    let scale = |body: &str| only_service(&service(body)).scale;
    let auto = |min, max, target_concurrency, scale_to_zero_after_ms| {
        Some(AutoscaleSpec {
            min,
            max,
            target_concurrency,
            scale_to_zero_after_ms,
        })
    };

    // `replicas` alone: a fixed count, as before.
    assert_eq!(
        scale("[service.hello.scale]\nreplicas = 3\n"),
        ScaleSpec::fixed(3)
    );

    // min and max only: start at min, the other keys take their defaults.
    assert_eq!(
        scale("[service.hello.scale]\nmin = 2\nmax = 5\n"),
        ScaleSpec {
            replicas: 2,
            autoscale: auto(2, 5, 10, 60_000),
        }
    );
    assert_eq!(
        (
            AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY,
            AutoscaleSpec::DEFAULT_SCALE_TO_ZERO_AFTER_MS
        ),
        (10, 60_000)
    );

    // replicas inside [min, max] is the starting count; bounds included.
    assert_eq!(
        scale("[service.hello.scale]\nreplicas = 3\nmin = 1\nmax = 8\ntarget_concurrency = 50\n"),
        ScaleSpec {
            replicas: 3,
            autoscale: auto(1, 8, 50, 60_000),
        }
    );
    assert_eq!(
        scale("scale = { replicas = 1, min = 1, max = 8 }\n").replicas,
        1
    );
    assert_eq!(
        scale("scale = { replicas = 8, min = 1, max = 8 }\n").replicas,
        8
    );
    assert_eq!(
        scale("scale = { min = 1, max = 1 }\n"),
        ScaleSpec {
            replicas: 1,
            autoscale: auto(1, 1, 10, 60_000),
        }
    );
    assert_eq!(
        scale("scale.min = 0\nscale.max = 1000\nscale.target_concurrency = 10000\n").autoscale,
        auto(0, 1000, 10_000, 60_000)
    );

    // min = 0: scale to zero, after the default or the time given.
    assert_eq!(
        scale("[service.hello.scale]\nmin = 0\nmax = 4\n"),
        ScaleSpec {
            replicas: 0,
            autoscale: auto(0, 4, 10, 60_000),
        }
    );
    assert_eq!(
        scale("[service.hello.scale]\nmin = 0\nmax = 4\nscale_to_zero_after = \"30s\"\n"),
        ScaleSpec {
            replicas: 0,
            autoscale: auto(0, 4, 10, 30_000),
        }
    );
    let zero_after = |v: &str| {
        scale(&format!(
            "scale = {{ min = 0, max = 2, scale_to_zero_after = {v} }}\n"
        ))
        .autoscale
        .unwrap()
        .scale_to_zero_after_ms
    };
    assert_eq!(zero_after("\"5m\""), 300_000);
    assert_eq!(zero_after("\"1s\""), 1_000);
    assert_eq!(zero_after("\"24h\""), 86_400_000);
    assert_eq!(zero_after("\"1m 30s\""), 90_000);
    assert_eq!(
        scale("scale = { replicas = 2, min = 0, max = 2, scale_to_zero_after = \"10m\" }\n"),
        ScaleSpec {
            replicas: 2,
            autoscale: auto(0, 2, 10, 600_000),
        }
    );

    // Absent autoscaling is omitted from the JSON; present, it round-trips.
    let json = |s: &ServiceSpec| serde_json::to_value(s).unwrap();
    let fixed = only_service(&service("scale.replicas = 2\n"));
    assert_eq!(json(&fixed)["scale"], serde_json::json!({ "replicas": 2 }));
    let auto_spec = only_service(&service("scale = { min = 1, max = 3 }\n"));
    assert_eq!(
        json(&auto_spec)["scale"],
        serde_json::json!({
            "replicas": 1,
            "autoscale": {
                "min": 1,
                "max": 3,
                "target_concurrency": 10,
                "scale_to_zero_after_ms": 60_000
            }
        })
    );
    let back: ServiceSpec = serde_json::from_value(json(&auto_spec)).unwrap();
    assert_eq!(back, auto_spec);
}

#[test]
fn autoscale_errors() {
    // (body under [service.hello], line, column, key, message, hint)
    let cases: &[(&str, usize, usize, &str, &str, &str)] = &[
        (
            "[service.hello.scale]\nmin = 2\n",
            4,
            1,
            "service.hello.scale.max",
            "`service.hello.scale` sets `min` without `max`: autoscaling needs both",
            "add `max`: write both bounds, like `min = 2` and `max = 10`",
        ),
        (
            "[service.hello.scale]\nreplicas = 2\nmax = 4\n",
            5,
            1,
            "service.hello.scale.min",
            "`service.hello.scale` sets `max` without `min`: autoscaling needs both",
            "add `min`: write both bounds, like `min = 1` and `max = 4`",
        ),
        (
            "[service.hello.scale]\nmin = 5\nmax = 3\n",
            4,
            7,
            "service.hello.scale.min",
            "`service.hello.scale`: min (5) is above max (3)",
            "min is the fewest instances and max the most: write `min = 3` and `max = 5`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 0\n",
            5,
            7,
            "service.hello.scale.max",
            "`service.hello.scale.max` must be between 1 and 1000, found 0",
            "max is the most instances the autoscaler runs, from 1 to 1000",
        ),
        (
            "[service.hello.scale]\nmin = 1\nmax = 1001\n",
            5,
            7,
            "service.hello.scale.max",
            "`service.hello.scale.max` must be between 1 and 1000, found 1001",
            "max is the most instances the autoscaler runs, from 1 to 1000",
        ),
        (
            "[service.hello.scale]\nmin = -1\nmax = 3\n",
            4,
            7,
            "service.hello.scale.min",
            "`service.hello.scale.min` must be between 0 and 1000, found -1",
            "min is the fewest instances the autoscaler keeps running, from 0 to 1000",
        ),
        (
            "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = 0\n",
            6,
            22,
            "service.hello.scale.target_concurrency",
            "`service.hello.scale.target_concurrency` must be between 1 and 10000, found 0",
            "target_concurrency is how many requests in flight per instance the autoscaler aims at, from 1 to 10000",
        ),
        (
            "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = 20000\n",
            6,
            22,
            "service.hello.scale.target_concurrency",
            "`service.hello.scale.target_concurrency` must be between 1 and 10000, found 20000",
            "target_concurrency is how many requests in flight per instance the autoscaler aims at, from 1 to 10000",
        ),
        (
            "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = \"10\"\n",
            6,
            22,
            "service.hello.scale.target_concurrency",
            "`service.hello.scale.target_concurrency` must be an integer, found a string",
            "write the number without quotes: `target_concurrency = 10`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"500ms\"\n",
            6,
            23,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` must be between 1s and 24h, found \"500ms\"",
            "it is how long without requests before the last instance stops; for example `scale_to_zero_after = \"5m\"`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"25h\"\n",
            6,
            23,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` must be between 1s and 24h, found \"25h\"",
            "it is how long without requests before the last instance stops; for example `scale_to_zero_after = \"5m\"`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = 30\n",
            6,
            23,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` must be a duration string, found an integer",
            "durations are strings with a unit: `scale_to_zero_after = \"30s\"` or `\"30ms\"`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"soon\"\n",
            6,
            23,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` is not a duration: \"soon\"",
            "write a number and a unit, like \"500ms\", \"5m\" or \"1m 30s\"",
        ),
        (
            "[service.hello.scale]\nmin = 2\nmax = 4\nscale_to_zero_after = \"5m\"\n",
            6,
            1,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` is only allowed with `min = 0`, and min is 2",
            "the last instance stops after a time without requests only when `min = 0`: set `min = 0`, or remove `scale_to_zero_after` to keep at least 2 running",
        ),
        (
            "[service.hello.scale]\nreplicas = 2\ntarget_concurrency = 5\n",
            5,
            1,
            "service.hello.scale.target_concurrency",
            "`service.hello.scale.target_concurrency` is set without `min` and `max`: autoscaling needs min and max",
            "to autoscale, add `min = 1` and `max = 10` to [service.hello.scale]; for a fixed count of instances, remove `target_concurrency` and set `replicas`",
        ),
        (
            "scale = { scale_to_zero_after = \"5m\" }\n",
            3,
            11,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` is set without `min` and `max`: autoscaling needs min and max",
            "to autoscale, add `min = 0` and `max = 10` to [service.hello.scale]; for a fixed count of instances, remove `scale_to_zero_after` and set `replicas`",
        ),
        (
            "[service.hello.scale]\nreplicas = 12\nmin = 2\nmax = 10\n",
            4,
            12,
            "service.hello.scale.replicas",
            "`service.hello.scale.replicas` must be between min (2) and max (10) when autoscaling, found 12",
            "with `min` and `max`, replicas is how many instances to start with: write a number from 2 to 10, or remove `replicas` to start at min",
        ),
        (
            "[service.hello.scale]\nreplicas = 0\nmin = 1\nmax = 3\n",
            4,
            12,
            "service.hello.scale.replicas",
            "`service.hello.scale.replicas` must be between min (1) and max (3) when autoscaling, found 0",
            "with `min` and `max`, replicas is how many instances to start with: write a number from 1 to 3, or remove `replicas` to start at min",
        ),
    ];
    for (body, line, column, key, message, hint) in cases {
        let source = service(body);
        let e = error(&source);
        assert_eq!(
            summary(&e),
            (*line, *column, Some(*key), *message, Some(*hint)),
            "\n{}",
            e.render(&source)
        );
    }

    // Unknown keys: did you mean, and keys written in the wrong table.
    let hint = |body: &str| error(&service(body)).hint.unwrap();
    // A misspelt bound is that one error, not also a missing bound.
    let e = error(&service("[service.hello.scale]\nmin = 1\nmaxx = 3\n"));
    assert_eq!(
        summary(&e),
        (
            5,
            1,
            Some("service.hello.scale.maxx"),
            "unknown key `service.hello.scale.maxx`",
            Some("did you mean `max`?")
        )
    );
    assert_eq!(
        hint("[service.hello.scale]\nmin_replicas = 1\nmax = 4\n"),
        "did you mean `min`?"
    );
    let hints: Vec<String> = errors(&service(
        "[service.hello.scale]\nmin_replicas = 1\nmax_replicas = 4\ntarget_concurrency = 5\n",
    ))
    .into_iter()
    .filter_map(|e| e.hint)
    .collect();
    assert_eq!(hints, ["did you mean `min`?", "did you mean `max`?"]);
    assert_eq!(
        hint("[service.hello.scale]\nmax_replicas = 1\n"),
        "did you mean `max`?"
    );
    assert_eq!(
        hint("[service.hello.scale]\nconcurrency = 1\n"),
        "did you mean `target_concurrency`?"
    );
    assert_eq!(
        hint("[service.hello.scale]\ntarget_concurency = 1\n"),
        "did you mean `target_concurrency`?"
    );
    assert_eq!(
        hint("[service.hello.scale]\nidle_timeout = \"1m\"\n"),
        "did you mean `scale_to_zero_after`?"
    );
    assert_eq!(
        hint("[service.hello.scale]\nxyzzy = 1\n"),
        "[service.hello.scale] accepts `replicas`, `min`, `max`, `target_concurrency` and `scale_to_zero_after`"
    );
    assert_eq!(
        hint("min = 1\n"),
        "`min` belongs in [service.hello.scale]: write `scale.min = 1` here, or put it under [service.hello.scale]"
    );
    assert_eq!(
        hint("autoscale = true\n"),
        "autoscaling is set in [service.hello.scale]: write `min` and `max` there, like `scale = { min = 1, max = 10 }`"
    );

    // Every bad value is reported, in order.
    let source = service(
        "[service.hello.scale]\nreplicas = \"x\"\nmin = -1\nmax = 0\ntarget_concurrency = 0\nscale_to_zero_after = 5\n",
    );
    let got: Vec<(usize, usize)> = errors(&source).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, vec![(4, 12), (5, 7), (6, 7), (7, 22), (8, 23)]);
}

#[test]
fn slo() {
    let slo = |body: &str| only_service(&service(body)).slo;
    assert_eq!(
        slo("[service.hello.slo]\np99_ms = 300\nerror_rate = 0.01\navailability = 0.999\n"),
        Some(SloSpec {
            p99_ms: Some(300),
            error_rate: Some(Ratio::from_ppm(10_000)),
            availability: Some(Ratio::from_ppm(999_000)),
        })
    );
    // Any one objective is enough; the others stay unset.
    assert_eq!(
        slo("[service.hello.slo]\navailability = 0.9995\n"),
        Some(SloSpec {
            availability: Some(Ratio::from_ppm(999_500)),
            ..SloSpec::default()
        })
    );
    assert_eq!(
        slo("slo = { p99_ms = 1 }\n"),
        Some(SloSpec {
            p99_ms: Some(1),
            ..SloSpec::default()
        })
    );
    assert_eq!(slo("slo.p99_ms = 600000\n").unwrap().p99_ms, Some(600_000));
    assert_eq!(
        slo("slo.error_rate = 0.000001\n").unwrap().error_rate,
        Some(Ratio::from_ppm(1))
    );
    assert_eq!(
        slo("slo.availability = 0.999999\n").unwrap().availability,
        Some(Ratio::from_ppm(999_999))
    );
    assert_eq!(slo(""), None);

    // Ratio: exact in millionths, a float in JSON, a percentage when displayed.
    let r = Ratio::from_ppm(999_000);
    assert_eq!((r.ppm(), r.as_f64()), (999_000, 0.999));
    assert_eq!(Ratio::from_ppm(2_000_000), Ratio::ONE);
    assert_eq!(Ratio::from_f64(0.01), Some(Ratio::from_ppm(10_000)));
    assert_eq!(Ratio::from_f64(1.5), None);
    assert_eq!(Ratio::from_f64(f64::NAN), None);
    assert!(Ratio::from_ppm(1) < Ratio::from_ppm(2));
    let shown: Vec<String> = [999_000, 10_000, 500, 1, 0, 1_000_000, 999_999]
        .iter()
        .map(|&ppm| Ratio::from_ppm(ppm).to_string())
        .collect();
    assert_eq!(
        shown,
        ["99.9%", "1%", "0.05%", "0.0001%", "0%", "100%", "99.9999%"]
    );
    assert_eq!(serde_json::to_string(&r).unwrap(), "0.999");
    assert_eq!(serde_json::from_str::<Ratio>("0.999").unwrap(), r);
    assert_eq!(serde_json::from_str::<Ratio>("1").unwrap(), Ratio::ONE);
    assert!(serde_json::from_str::<Ratio>("1.5").is_err());
    assert!(serde_json::from_str::<Ratio>("-0.1").is_err());
    assert!(serde_json::from_str::<Ratio>("\"0.5\"").is_err());

    // In the service's JSON: floats; absent objectives and an absent SLO are omitted.
    let json = |s: &ServiceSpec| serde_json::to_value(s).unwrap();
    let with = only_service(&service(
        "[service.hello.slo]\np99_ms = 300\nerror_rate = 0.01\navailability = 0.999\n",
    ));
    assert_eq!(
        json(&with)["slo"],
        serde_json::json!({ "p99_ms": 300, "error_rate": 0.01, "availability": 0.999 })
    );
    let back: ServiceSpec = serde_json::from_value(json(&with)).unwrap();
    assert_eq!(back, with);
    let partial = only_service(&service("slo.availability = 0.99\n"));
    assert_eq!(
        json(&partial)["slo"],
        serde_json::json!({ "availability": 0.99 })
    );
    let without = only_service(&service(""));
    assert!(json(&without).get("slo").is_none());
}

#[test]
fn slo_errors() {
    const SET_ONE: &str = "set at least one of `p99_ms` (milliseconds), `error_rate` and `availability` (fractions between 0 and 1), like `availability = 0.999`, or remove the table";
    const ERROR_RATE: &str = "error_rate is the largest fraction of requests that may fail, between 0 and 1 (exclusive): for example `error_rate = 0.01` (1%)";
    const AVAILABILITY: &str = "availability is the fraction of time the service must be up, between 0 and 1 (exclusive): for example `availability = 0.999` (99.9%)";
    const P99: &str = "p99_ms is the latency 99% of requests stay under, in milliseconds, from 1 to 600000 (10 minutes)";
    // (body under [service.hello], line, column, key, message, hint)
    let cases: &[(&str, usize, usize, &str, &str, &str)] = &[
        (
            "[service.hello.slo]\n",
            3,
            16,
            "service.hello.slo",
            "`service.hello.slo` sets no objective",
            SET_ONE,
        ),
        (
            "slo = {}\n",
            3,
            1,
            "service.hello.slo",
            "`service.hello.slo` sets no objective",
            SET_ONE,
        ),
        (
            "slo = 0.999\n",
            3,
            7,
            "service.hello.slo",
            "`service.hello.slo` must be a table, found a float",
            "write it as a table: `slo = { availability = 0.999 }`",
        ),
        (
            "[service.hello.slo]\np99_ms = 0\n",
            4,
            10,
            "service.hello.slo.p99_ms",
            "`service.hello.slo.p99_ms` must be between 1 and 600000, found 0",
            P99,
        ),
        (
            "[service.hello.slo]\np99_ms = 600001\n",
            4,
            10,
            "service.hello.slo.p99_ms",
            "`service.hello.slo.p99_ms` must be between 1 and 600000, found 600001",
            P99,
        ),
        (
            "[service.hello.slo]\np99_ms = \"300ms\"\n",
            4,
            10,
            "service.hello.slo.p99_ms",
            "`service.hello.slo.p99_ms` must be an integer, found a string",
            "p99_ms is a number of milliseconds: write `p99_ms = 300`",
        ),
        (
            "[service.hello.slo]\np99_ms = 2.5\n",
            4,
            10,
            "service.hello.slo.p99_ms",
            "`service.hello.slo.p99_ms` must be an integer, found a float",
            "for example `p99_ms = 300`",
        ),
        (
            "[service.hello.slo]\nerror_rate = 1\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be a float between 0 and 1, found an integer",
            ERROR_RATE,
        ),
        (
            "[service.hello.slo]\nerror_rate = 5\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be a float between 0 and 1, found an integer",
            "write a fraction with a decimal point: for 5% write `error_rate = 0.05`",
        ),
        (
            "[service.hello.slo]\nerror_rate = 0.0\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be between 0 and 1 (exclusive), found 0.0",
            ERROR_RATE,
        ),
        (
            "[service.hello.slo]\nerror_rate = 1.5\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be between 0 and 1 (exclusive), found 1.5",
            "it is a fraction, not a percentage: for 1.5% write `error_rate = 0.015`",
        ),
        (
            "[service.hello.slo]\nerror_rate = 1e-9\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` is counted in millionths, and 1e-9 rounds to 0",
            "write at least 0.000001; for example `error_rate = 0.01`",
        ),
        (
            "[service.hello.slo]\nerror_rate = \"1%\"\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be a float between 0 and 1, found a string",
            "write a fraction: `error_rate = 0.01`",
        ),
        (
            "[service.hello.slo]\navailability = 99.9\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be between 0 and 1 (exclusive), found 99.9",
            "it is a fraction, not a percentage: for 99.9% write `availability = 0.999`",
        ),
        (
            "[service.hello.slo]\navailability = 1.0\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be between 0 and 1 (exclusive), found 1.0",
            AVAILABILITY,
        ),
        (
            "[service.hello.slo]\navailability = 1\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be a float between 0 and 1, found an integer",
            AVAILABILITY,
        ),
        (
            "[service.hello.slo]\navailability = \"99.9%\"\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be a float between 0 and 1, found a string",
            "write a fraction: `availability = 0.999`",
        ),
        (
            "[service.hello.slo]\navailability = \"0.99\"\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be a float between 0 and 1, found a string",
            "write the number without quotes: `availability = 0.99`",
        ),
        (
            "[service.hello.slo]\navailability = 0.9999999\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` is counted in millionths, and 0.9999999 rounds to 1",
            "write at most 0.999999; for example `availability = 0.999`",
        ),
    ];
    for (body, line, column, key, message, hint) in cases {
        let source = service(body);
        let e = error(&source);
        assert_eq!(
            summary(&e),
            (*line, *column, Some(*key), *message, Some(*hint)),
            "\n{}",
            e.render(&source)
        );
    }

    // Unknown keys: did you mean, and keys written in the wrong table. A table holding only
    // an unknown key is that one error.
    let hint = |body: &str| error(&service(body)).hint.unwrap();
    let e = error(&service("[service.hello.slo]\np99 = 300\n"));
    assert_eq!(
        summary(&e),
        (
            4,
            1,
            Some("service.hello.slo.p99"),
            "unknown key `service.hello.slo.p99`",
            Some("did you mean `p99_ms`?")
        )
    );
    assert_eq!(
        hint("[service.hello.slo]\nerror-rate = 0.01\n"),
        "did you mean `error_rate`?"
    );
    assert_eq!(
        hint("[service.hello.slo]\nlatency = 300\n"),
        "did you mean `p99_ms`?"
    );
    assert_eq!(
        hint("[service.hello.slo]\nuptime = 0.99\n"),
        "did you mean `availability`?"
    );
    assert_eq!(
        hint("[service.hello.slo]\nxyzzy = 1\n"),
        "[service.hello.slo] accepts `p99_ms`, `error_rate` and `availability`"
    );
    assert_eq!(
        hint("[service.hello.slo]\nreplicas = 1\n"),
        "`replicas` belongs in [service.hello.scale]"
    );
    assert_eq!(
        hint("availability = 0.99\n"),
        "`availability` belongs in [service.hello.slo]: write `slo.availability = 0.99` here, or put it under [service.hello.slo]"
    );
    assert_eq!(hint("sla.availability = 0.99\n"), "did you mean `slo`?");

    // Every bad value is reported, in order.
    let source =
        service("[service.hello.slo]\np99_ms = -1\nerror_rate = 2\navailability = \"high\"\n");
    let got: Vec<(usize, usize)> = errors(&source).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, vec![(4, 10), (5, 14), (6, 16)]);
}

#[test]
fn scale_and_slo_leave_the_spec_hash_unchanged() {
    let base = only_service(&service(""));
    let hash = base.spec_hash(Some("sha256:aa"));
    for body in [
        "scale.replicas = 7\n",
        "scale = { min = 1, max = 5 }\n",
        "scale = { replicas = 3, min = 0, max = 9, target_concurrency = 50, scale_to_zero_after = \"2m\" }\n",
        "slo.availability = 0.999\n",
        "slo = { p99_ms = 200, error_rate = 0.01 }\n",
        "scale = { min = 2, max = 4 }\nslo.p99_ms = 100\n",
    ] {
        let spec = only_service(&service(body));
        assert_ne!(spec, base, "{body:?}");
        assert_eq!(spec.spec_hash(Some("sha256:aa")), hash, "{body:?}");
    }
    // The hash of a spec without autoscaling or SLO is what it was before they existed:
    // neither appears in its JSON.
    let json = serde_json::to_value(&base).unwrap();
    assert!(json.get("slo").is_none() && json["scale"].get("autoscale").is_none());
    // What runs still changes it: the artifact, its digest, an SLO beside another change.
    let other = only_service("[service.hello]\nartifact = \"build/other\"\n");
    assert_ne!(other.spec_hash(Some("sha256:aa")), hash);
    assert_ne!(base.spec_hash(Some("sha256:bb")), hash);
    let both = only_service(&service("slo.availability = 0.9\nargs = [\"-v\"]\n"));
    assert_ne!(both.spec_hash(Some("sha256:aa")), hash);
}

#[test]
fn units() {
    let cpu = |v: &str| {
        only_service(&service(&format!("resources.cpu = {v}\n")))
            .resources
            .cpu_millis
    };
    assert_eq!(cpu("2"), 2_000);
    assert_eq!(cpu("0.25"), 250);
    assert_eq!(cpu("\"1500m\""), 1_500);
    assert_eq!(cpu("\"1.5\""), 1_500);
    assert_eq!(cpu("1024"), 1_024_000);
    let memory = |v: &str| {
        only_service(&service(&format!("resources.memory = {v}\n")))
            .resources
            .memory_bytes
    };
    assert_eq!(memory("\"1Mi\""), 1 << 20);
    assert_eq!(memory("\"2Gi\""), 2 << 30);
    assert_eq!(memory("\"1.5Gi\""), 3 << 29);
    assert_eq!(memory("\"1Ti\""), 1 << 40);
    assert_eq!(memory("\"2048K\""), 2_048_000);
    assert_eq!(memory("\"2M\""), 2_000_000);
    assert_eq!(memory("\"3G\""), 3_000_000_000);
    assert_eq!(memory("\"1T\""), 1_000_000_000_000);
    assert_eq!(memory("\"2097152\""), 2 << 20);
    let stop = |v: &str| only_service(&service(&format!("stop_timeout = {v}\n"))).stop_timeout_ms;
    assert_eq!(stop("\"1m 30s\""), 90_000);
    assert_eq!(stop("\"250ms\""), 250);
    assert_eq!(stop("\"0s\""), 0);
}

#[test]
fn unknown_keys_point_at_the_key_and_suggest() {
    let e = error(&service("[service.hello.scale]\nreplcas = 2\n"));
    assert_eq!(
        summary(&e),
        (
            4,
            1,
            Some("service.hello.scale.replcas"),
            "unknown key `service.hello.scale.replcas`",
            Some("did you mean `replicas`?")
        )
    );

    let e = error(&service("  drivr = \"exec\"\n"));
    assert_eq!(
        summary(&e),
        (
            3,
            3,
            Some("service.hello.drivr"),
            "unknown key `service.hello.drivr`",
            Some("did you mean `driver`?")
        )
    );

    // Nothing close: the hint lists the table's keys.
    let e = error(&service("[service.hello.route]\nxyzzy = 1\n"));
    assert_eq!(
        summary(&e),
        (
            4,
            1,
            Some("service.hello.route.xyzzy"),
            "unknown key `service.hello.route.xyzzy`",
            Some("[service.hello.route] accepts `public` and `hosts`")
        )
    );

    let e = error(&service(
        "[service.hello.health]\npath = \"/\"\nintervall = \"1s\"\n",
    ));
    assert_eq!(
        (e.line, e.column, e.hint.as_deref()),
        (5, 1, Some("did you mean `interval`?"))
    );

    let e = error(&service("[service.hello.resources]\nmem = \"1Gi\"\n"));
    assert_eq!(
        (e.line, e.column, e.hint.as_deref()),
        (4, 1, Some("did you mean `memory`?"))
    );

    // Inside an inline table, at the key's column.
    let e = error(&service("scale = { replicas = 1, replica = 2 }\n"));
    assert_eq!(
        summary(&e),
        (
            3,
            25,
            Some("service.hello.scale.replica"),
            "unknown key `service.hello.scale.replica`",
            Some("did you mean `replicas`?")
        )
    );
}

#[test]
fn misplaced_keys_say_where_they_belong() {
    let e = error(&service("replicas = 3\n"));
    assert_eq!(
        summary(&e),
        (
            3,
            1,
            Some("service.hello.replicas"),
            "unknown key `service.hello.replicas`",
            Some("`replicas` belongs in [service.hello.scale]: write `scale.replicas = 3` here, or put it under [service.hello.scale]")
        )
    );
    let e = error(&service("[service.hello.scale]\ndriver = \"exec\"\n"));
    assert_eq!(
        e.hint.as_deref(),
        Some("`driver` belongs directly in [service.hello], not in [service.hello.scale]")
    );
    let e = error(&service("[service.hello.route]\nmemory = \"1Gi\"\n"));
    assert_eq!(
        e.hint.as_deref(),
        Some("`memory` belongs in [service.hello.resources]")
    );
}

#[test]
fn unknown_top_level_keys() {
    let e = error("name = \"x\"\n[service.hello]\nartifact = \"a\"\n");
    assert_eq!(
        summary(&e),
        (
            1,
            1,
            Some("name"),
            "unknown key `name`",
            Some("the only top-level table is `service`, as in [service.hello]")
        )
    );
    let e = error("[services.hello]\nartifact = \"a\"\n");
    assert_eq!(
        summary(&e),
        (
            1,
            2,
            Some("services"),
            "unknown key `services`",
            Some("did you mean `service`?")
        )
    );
    let e = error("[Hello]\nartifact = \"a\"\n");
    assert_eq!(
        e.hint.as_deref(),
        Some("services are declared under `service`: write [service.hello]")
    );
}

#[test]
fn environment_tables_only_hold_config() {
    let e = error(&service(
        "[service.hello.environments.prod]\nreplicas = 3\n",
    ));
    assert_eq!(
        summary(&e),
        (
            4,
            1,
            Some("service.hello.environments.prod.replicas"),
            "unknown key `service.hello.environments.prod.replicas`",
            Some("only `config` can be set per environment, as in [service.hello.environments.prod.config]")
        )
    );
    let e = error(&service(
        "[service.hello.environments.prod]\nGREETING = \"hi\"\n",
    ));
    assert_eq!(
        e.hint.as_deref(),
        Some("values for one environment go in its `config` table: write `config.GREETING = \"hi\"`, or put it under [service.hello.environments.prod.config]")
    );
    let e = error(&service(
        "[service.hello.environments.prod]\nconfg.A = \"hi\"\n",
    ));
    assert_eq!(e.hint.as_deref(), Some("did you mean `config`?"));
    let e = error(&service(
        "[service.hello.environments.Prod.config]\nA = 1\n",
    ));
    assert_eq!(
        summary(&e),
        (
            3,
            29,
            Some("service.hello.environments.Prod"),
            "invalid environment name `Prod`",
            Some("an environment name is a DNS label (lowercase letters, digits and `-`, starting with a letter), for example `prod`")
        )
    );
}

#[test]
fn wrong_types_point_at_the_value() {
    let e = error(&service("[service.hello.scale]\nreplicas = \"two\"\n"));
    assert_eq!(
        summary(&e),
        (
            4,
            12,
            Some("service.hello.scale.replicas"),
            "`service.hello.scale.replicas` must be an integer, found a string",
            Some("for example `replicas = 2`")
        )
    );
    let e = error(&service("[service.hello.scale]\nreplicas = \"3\"\n"));
    assert_eq!(
        e.hint.as_deref(),
        Some("write the number without quotes: `replicas = 3`")
    );
    let e = error(&service("port = true\n"));
    assert_eq!(
        summary(&e),
        (
            3,
            8,
            Some("service.hello.port"),
            "`service.hello.port` must be \"auto\" or an integer, found a boolean",
            Some("write `port = \"auto\"` (the node picks a port and sets PORT) or a number, like `port = 8080`")
        )
    );
    let e = error(&service("port = \"8080\"\n"));
    assert_eq!(
        e.hint.as_deref(),
        Some("write the number without quotes: `port = 8080`")
    );
    let e = error(&service("args = \"x\"\n"));
    assert_eq!(
        summary(&e),
        (
            3,
            8,
            Some("service.hello.args"),
            "`service.hello.args` must be an array of strings, found a string",
            Some("write a list: `args = [\"x\"]`")
        )
    );
    let e = error(&service("args = [\"a\", 2]\n"));
    assert_eq!(
        summary(&e),
        (
            3,
            14,
            Some("service.hello.args"),
            "`service.hello.args[1]` must be a string, found an integer",
            Some("quote it: `\"2\"`")
        )
    );
    let e = error(&service("stop_timeout = 5\n"));
    assert_eq!(
        summary(&e),
        (
            3,
            16,
            Some("service.hello.stop_timeout"),
            "`service.hello.stop_timeout` must be a duration string, found an integer",
            Some("durations are strings with a unit: `stop_timeout = \"5s\"` or `\"5ms\"`")
        )
    );
    let e = error(&service("[service.hello.route]\npublic = \"yes\"\n"));
    assert_eq!(
        (e.line, e.column, e.message.as_str(), e.hint.as_deref()),
        (
            4,
            10,
            "`service.hello.route.public` must be a boolean (`true` or `false`), found a string",
            Some("for example `public = true`")
        )
    );
    let e = error(&service("scale = 3\n"));
    assert_eq!(
        (e.line, e.column, e.message.as_str(), e.hint.as_deref()),
        (
            3,
            9,
            "`service.hello.scale` must be a table, found an integer",
            Some("write `scale.replicas = 3`")
        )
    );
    let e = error(&service("[service.hello.config]\nLIST = [1, 2]\n"));
    assert_eq!(
        summary(&e),
        (
            4,
            8,
            Some("service.hello.config.LIST"),
            "`service.hello.config.LIST` must be a string, number or boolean, found an array",
            Some("config values become environment variables; quote it to pass the text: `LIST = \"[1, 2]\"`")
        )
    );
    let e = error("[service.hello]\ndriver = 1\n");
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (
            2,
            10,
            "`service.hello.driver` must be a string, found an integer"
        )
    );
}

#[test]
fn bad_values_point_at_the_value() {
    type Expected<'a> = (usize, usize, &'a str, &'a str, &'a str);
    let cases: &[(&str, Expected)] = &[
        (
            "[service.hello.scale]\nreplicas = -1\n",
            (4, 12, "service.hello.scale.replicas",
             "`service.hello.scale.replicas` must be between 0 and 1000, found -1",
             "replicas is how many instances run, from 0 to 1000"),
        ),
        (
            "port = 70000\n",
            (3, 8, "service.hello.port",
             "`service.hello.port` must be between 1 and 65535, found 70000",
             "or let the node pick a free port: `port = \"auto\"`"),
        ),
        (
            "port = \"any\"\n",
            (3, 8, "service.hello.port",
             "`service.hello.port` must be \"auto\" or a port number, found \"any\"",
             "write `port = \"auto\"` (the node picks a port and sets PORT) or a number, like `port = 8080`"),
        ),
        (
            "[service.hello.resources]\nmemory = \"12Qi\"\n",
            (4, 10, "service.hello.resources.memory",
             "unknown memory unit `Qi` in `service.hello.resources.memory`",
             "units are Ki, Mi, Gi, Ti (powers of 1024) and K, M, G, T (powers of 1000), as in \"128Mi\""),
        ),
        (
            "[service.hello.resources]\nmemory = \"256MiB\"\n",
            (4, 10, "service.hello.resources.memory",
             "unknown memory unit `MiB` in `service.hello.resources.memory`",
             "did you mean \"256Mi\"? units are Ki, Mi, Gi, Ti (powers of 1024) and K, M, G, T (powers of 1000), as in \"128Mi\""),
        ),
        (
            "[service.hello.resources]\nmemory = \"512Ki\"\n",
            (4, 10, "service.hello.resources.memory",
             "`service.hello.resources.memory` must be at least 1Mi, found \"512Ki\"",
             "memory is in bytes unless it has a unit; for example `memory = \"64Mi\"`"),
        ),
        (
            "[service.hello.resources]\ncpu = 0\n",
            (4, 7, "service.hello.resources.cpu",
             "`service.hello.resources.cpu` must be more than 0, found 0",
             "for example `cpu = 0.5` (half a core) or `cpu = \"500m\"` (500 millicores)"),
        ),
        (
            "[service.hello.resources]\ncpu = 2000\n",
            (4, 7, "service.hello.resources.cpu",
             "`service.hello.resources.cpu` must be at most 1024 cores, found 2000",
             "for example `cpu = 0.5` (half a core) or `cpu = \"500m\"` (500 millicores)"),
        ),
        (
            "[service.hello.health]\npath = \"/\"\ninterval = \"fast\"\n",
            (5, 12, "service.hello.health.interval",
             "`service.hello.health.interval` is not a duration: \"fast\"",
             "write a number and a unit, like \"500ms\", \"1s\" or \"1m 30s\""),
        ),
        (
            "[service.hello.health]\npath = \"/\"\ninterval = \"10\"\n",
            (5, 12, "service.hello.health.interval",
             "`service.hello.health.interval` is not a duration: \"10\"",
             "add a unit: `interval = \"10s\"` or `\"10ms\"`"),
        ),
        (
            "[service.hello.health]\npath = \"/\"\ninterval = \"10ms\"\n",
            (5, 12, "service.hello.health.interval",
             "`service.hello.health.interval` must be at least 50ms, found \"10ms\"",
             "for example `interval = \"1s\"`"),
        ),
        (
            "[service.hello.health]\npath = \"/\"\ntimeout = \"2s\"\n",
            (5, 11, "service.hello.health.timeout",
             "`service.hello.health.timeout` (2s) must not be longer than the interval (1s)",
             "lower `timeout` or raise `interval`"),
        ),
        (
            "[service.hello.health]\npath = \"/\"\ntimeout = \"0s\"\n",
            (5, 11, "service.hello.health.timeout",
             "`service.hello.health.timeout` must be at least 1ms, found \"0s\"",
             "for example `timeout = \"500ms\"`"),
        ),
        (
            "[service.hello.health]\npath = \"healthz\"\n",
            (4, 8, "service.hello.health.path",
             "`service.hello.health.path` must start with `/`, found \"healthz\"",
             "write `path = \"/healthz\"`"),
        ),
        (
            "[service.hello.health]\npath = \"http://localhost/ready\"\n",
            (4, 8, "service.hello.health.path",
             "`service.hello.health.path` must be a path, not a URL",
             "write just the path: `path = \"/ready\"`"),
        ),
        (
            "[service.hello.health]\npath = \"/\"\nunhealthy_threshold = 101\n",
            (5, 23, "service.hello.health.unhealthy_threshold",
             "`service.hello.health.unhealthy_threshold` must be between 1 and 100, found 101",
             "unhealthy_threshold is how many consecutive checks must fail, from 1 to 100"),
        ),
        (
            "[service.hello.health]\ninterval = \"1s\"\n",
            (3, 16, "service.hello.health.path",
             "`service.hello.health` needs a `path`",
             "add `path = \"/healthz\"`, the URL path the health check requests"),
        ),
        (
            "[service.hello.route]\nhosts = [\"https://hello.example.com/x\"]\n",
            (4, 10, "service.hello.route.hosts",
             "`service.hello.route.hosts[0]` must be a host name, not a URL: \"https://hello.example.com/x\"",
             "write just the host name: \"hello.example.com\""),
        ),
        (
            "[service.hello.route]\nhosts = [\"a.com\", \"hello.example.com:8080\"]\n",
            (4, 19, "service.hello.route.hosts",
             "`service.hello.route.hosts[1]` must be a host name, without a port: \"hello.example.com:8080\"",
             "write just the host name: \"hello.example.com\""),
        ),
        (
            "[service.hello.route]\nhosts = [\"my_app.example.com\"]\n",
            (4, 10, "service.hello.route.hosts",
             "`service.hello.route.hosts[0]` is not a valid host name: \"my_app.example.com\"",
             "did you mean \"my-app.example.com\"?"),
        ),
        (
            "[service.hello.config]\nLOG-LEVEL = \"debug\"\n",
            (4, 1, "service.hello.config.LOG-LEVEL",
             "`LOG-LEVEL` is not a valid environment variable name",
             "config keys become environment variables: letters, digits and `_`, not starting with a digit, like `LOG_LEVEL`"),
        ),
        (
            "[service.hello.config]\nPORT = 80\n",
            (4, 1, "service.hello.config.PORT",
             "`PORT` is set by the platform and cannot be configured",
             "to choose the port, set `port = 8080` on the service"),
        ),
        (
            "[service.hello.config]\nSTRATA_CONTAINER_CAPABILITIES = \"SYS_ADMIN\"\n",
            (4, 1, "service.hello.config.STRATA_CONTAINER_CAPABILITIES",
             "`STRATA_CONTAINER_CAPABILITIES` is set by the platform and cannot be configured",
             "`HOST` and names starting with `STRATA_` are the platform's (`STRATA_SERVICE`, `STRATA_ENV`, ...); rename it"),
        ),
        (
            "[service.hello.environments.prod.config]\nHOST = \"0.0.0.0\"\n",
            (4, 1, "service.hello.environments.prod.config.HOST",
             "`HOST` is set by the platform and cannot be configured",
             "`HOST` and names starting with `STRATA_` are the platform's (`STRATA_SERVICE`, `STRATA_ENV`, ...); rename it"),
        ),
    ];
    for (body, (line, column, key, message, hint)) in cases {
        let source = service(body);
        let e = error(&source);
        assert_eq!(
            summary(&e),
            (*line, *column, Some(*key), *message, Some(*hint)),
            "\n{}",
            e.render(&source)
        );
    }
}

#[test]
fn placement_labels() {
    // Valid: every form gives the same constraints.
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let long = "a".repeat(63);
    let valid: &[(String, BTreeMap<String, String>)] = &[
        (
            "[service.hello.placement]\nlabels = { zone = \"eu-1\", disk = \"ssd\" }\n".into(),
            labels(&[("zone", "eu-1"), ("disk", "ssd")]),
        ),
        (
            "[service.hello.placement.labels]\nzone = \"eu-1\"\ndisk = \"ssd\"\n".into(),
            labels(&[("zone", "eu-1"), ("disk", "ssd")]),
        ),
        (
            "placement.labels.zone = \"eu-1\"\nplacement.labels.disk = \"ssd\"\n".into(),
            labels(&[("zone", "eu-1"), ("disk", "ssd")]),
        ),
        (
            "placement = { labels = { zone = \"eu-1\", disk = \"ssd\" } }\n".into(),
            labels(&[("zone", "eu-1"), ("disk", "ssd")]),
        ),
        (
            "[service.hello.placement]\nlabels = { \"example.com/tier\" = \"Web_1.x\", A-b_c = \"-\" }\n".into(),
            labels(&[("example.com/tier", "Web_1.x"), ("A-b_c", "-")]),
        ),
        (
            format!("[service.hello.placement.labels]\n{long} = \"{long}\"\n\"{long}/{long}\" = \"x\"\n"),
            labels(&[(&long, &long), (&format!("{long}/{long}"), "x")]),
        ),
        ("[service.hello.placement]\n".into(), BTreeMap::new()),
        ("placement.labels = {}\n".into(), BTreeMap::new()),
    ];
    for (body, expected) in valid {
        let source = service(body);
        assert_eq!(&only_service(&source).constraints, expected, "{source}");
    }

    // Errors: (line, column, key, message, hint).
    type Expected<'a> = (usize, usize, &'a str, &'a str, &'a str);
    let long_key = format!("{}x", long);
    let long_key_message = format!("`{long_key}` is not a valid node label key");
    let long_value_body = format!("placement.labels.zone = \"{long_key}\"\n");
    let long_value_message =
        format!("`service.hello.placement.labels.zone` is not a valid label value: \"{long_key}\"");
    let long_key_body = format!("placement.labels.{long_key} = \"x\"\n");
    let long_key_path = format!("service.hello.placement.labels.{long_key}");
    let cases: &[(&str, Expected)] = &[
        // Wrong types.
        (
            "[service.hello.placement]\nlabels = { zone = 1 }\n",
            (4, 19, "service.hello.placement.labels.zone",
             "`service.hello.placement.labels.zone` must be a string, found an integer",
             "quote it: `zone = \"1\"`"),
        ),
        (
            "[service.hello.placement.labels]\nssd = true\n",
            (4, 7, "service.hello.placement.labels.ssd",
             "`service.hello.placement.labels.ssd` must be a string, found a boolean",
             "quote it: `ssd = \"true\"`"),
        ),
        (
            "[service.hello.placement.labels]\n\"example.com/tier\" = 2\n",
            (4, 22, "service.hello.placement.labels.\"example.com/tier\"",
             "`service.hello.placement.labels.\"example.com/tier\"` must be a string, found an integer",
             "quote it: `\"example.com/tier\" = \"2\"`"),
        ),
        (
            "[service.hello.placement]\nlabels = { zone = [\"eu-1\"] }\n",
            (4, 19, "service.hello.placement.labels.zone",
             "`service.hello.placement.labels.zone` must be a string, found an array",
             "for example `zone = \"...\"`"),
        ),
        (
            "[service.hello.placement]\nlabels = \"zone=eu-1,disk=ssd\"\n",
            (4, 10, "service.hello.placement.labels",
             "`service.hello.placement.labels` must be a table, found a string",
             "write a table: `labels = { zone = \"eu-1\", disk = \"ssd\" }`"),
        ),
        (
            "[service.hello.placement]\nlabels = [\"zone=eu-1\"]\n",
            (4, 10, "service.hello.placement.labels",
             "`service.hello.placement.labels` must be a table, found an array",
             "write a table: `labels = { zone = \"eu-1\" }`"),
        ),
        (
            "[service.hello.placement]\nlabels = 3\n",
            (4, 10, "service.hello.placement.labels",
             "`service.hello.placement.labels` must be a table, found an integer",
             "for example `labels = { zone = \"eu-1\", disk = \"ssd\" }`"),
        ),
        (
            "placement = \"zone=eu-1\"\n",
            (3, 13, "service.hello.placement",
             "`service.hello.placement` must be a table, found a string",
             "write it as a table: [service.hello.placement] with `labels = { zone = \"eu-1\" }`"),
        ),
        // Bad labels.
        (
            "[service.hello.placement.labels]\n\"disk type\" = \"ssd\"\n",
            (4, 1, "service.hello.placement.labels.\"disk type\"",
             "`disk type` is not a valid node label key",
             "did you mean `disk-type`? a label key is 1 to 63 letters, digits, `.`, `_` and `-`, optionally after a prefix of the same and a `/`, like `zone` or `\"example.com/tier\"`"),
        ),
        (
            "[service.hello.placement.labels]\n\"a/b/c\" = \"x\"\n",
            (4, 1, "service.hello.placement.labels.\"a/b/c\"",
             "`a/b/c` is not a valid node label key",
             "did you mean `\"a/b-c\"`? a label key is 1 to 63 letters, digits, `.`, `_` and `-`, optionally after a prefix of the same and a `/`, like `zone` or `\"example.com/tier\"`"),
        ),
        (
            "[service.hello.placement.labels]\n\"/tier\" = \"x\"\n",
            (4, 1, "service.hello.placement.labels.\"/tier\"",
             "`/tier` is not a valid node label key",
             "did you mean `tier`? a label key is 1 to 63 letters, digits, `.`, `_` and `-`, optionally after a prefix of the same and a `/`, like `zone` or `\"example.com/tier\"`"),
        ),
        (
            &long_key_body,
            (3, 18, &long_key_path,
             &long_key_message,
             "a label key is at most 63 characters; this one has 64"),
        ),
        (
            "[service.hello.placement]\nlabels = { zone = \"eu 1\" }\n",
            (4, 19, "service.hello.placement.labels.zone",
             "`service.hello.placement.labels.zone` is not a valid label value: \"eu 1\"",
             "did you mean \"eu-1\"? a label value is 1 to 63 letters, digits, `.`, `_` and `-`, like \"eu-1\""),
        ),
        (
            "[service.hello.placement]\nlabels = { zone = \"\" }\n",
            (4, 19, "service.hello.placement.labels.zone",
             "`service.hello.placement.labels.zone` must not be empty",
             "a label value is 1 to 63 letters, digits, `.`, `_` and `-`, like \"eu-1\""),
        ),
        (
            "[service.hello.placement]\nlabels = { tier = \"web/api\" }\n",
            (4, 19, "service.hello.placement.labels.tier",
             "`service.hello.placement.labels.tier` is not a valid label value: \"web/api\"",
             "did you mean \"web-api\"? a label value is 1 to 63 letters, digits, `.`, `_` and `-`, like \"eu-1\""),
        ),
        (
            &long_value_body,
            (3, 25, "service.hello.placement.labels.zone",
             &long_value_message,
             "a label value is at most 63 characters; this one has 64"),
        ),
        // Unknown keys, with hints.
        (
            "[service.hello.placement]\nlables = { zone = \"eu-1\" }\n",
            (4, 1, "service.hello.placement.lables",
             "unknown key `service.hello.placement.lables`",
             "did you mean `labels`?"),
        ),
        (
            "placement = { label = { zone = \"eu-1\" } }\n",
            (3, 15, "service.hello.placement.label",
             "unknown key `service.hello.placement.label`",
             "did you mean `labels`?"),
        ),
        (
            "[service.hello.placement]\nnode_selector = { zone = \"eu-1\" }\n",
            (4, 1, "service.hello.placement.node_selector",
             "unknown key `service.hello.placement.node_selector`",
             "did you mean `labels`?"),
        ),
        (
            "[service.hello.placement]\nzone = \"eu-1\"\n",
            (4, 1, "service.hello.placement.zone",
             "unknown key `service.hello.placement.zone`",
             "node labels go in the `labels` table: write `labels.zone = \"eu-1\"`, or put it under [service.hello.placement.labels]"),
        ),
        (
            "[service.hello.placement]\nreplicas = 2\n",
            (4, 1, "service.hello.placement.replicas",
             "unknown key `service.hello.placement.replicas`",
             "`replicas` belongs in [service.hello.scale]"),
        ),
        (
            "labels = { zone = \"eu-1\" }\n",
            (3, 1, "service.hello.labels",
             "unknown key `service.hello.labels`",
             "`labels` belongs in [service.hello.placement]: write `placement.labels = { zone = \"eu-1\" }` here, or put it under [service.hello.placement]"),
        ),
        (
            "constraints = { zone = \"eu-1\" }\n",
            (3, 1, "service.hello.constraints",
             "unknown key `service.hello.constraints`",
             "node label constraints go in [service.hello.placement] as `labels = { zone = \"eu-1\" }`"),
        ),
        (
            "[service.hello.placment]\nlabels = {}\n",
            (3, 16, "service.hello.placment",
             "unknown key `service.hello.placment`",
             "did you mean `placement`?"),
        ),
        (
            "[service.hello.environments.prod]\nplacement.labels = { zone = \"eu-1\" }\n",
            (4, 1, "service.hello.environments.prod.placement",
             "unknown key `service.hello.environments.prod.placement`",
             "only `config` can be set per environment, as in [service.hello.environments.prod.config]"),
        ),
    ];
    for (body, (line, column, key, message, hint)) in cases {
        let source = service(body);
        let e = error(&source);
        assert_eq!(
            summary(&e),
            (*line, *column, Some(*key), *message, Some(*hint)),
            "\n{}",
            e.render(&source)
        );
    }

    // A bad key and a bad value are both reported.
    let errors = errors(&service(
        "[service.hello.placement.labels]\n\"a b\" = \"c d\"\nok = 1\n",
    ));
    let got: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, vec![(4, 1), (4, 9), (5, 6)]);
}

#[test]
fn empty_constraints_leave_the_json_and_hash_unchanged() {
    let mut spec = only_service("[service.hello]\nartifact = \"build/hello\"\n");
    let json = serde_json::to_value(&spec).unwrap();
    assert!(json.get("constraints").is_none(), "{json}");
    // JSON stored before `constraints` existed still reads.
    let read: ServiceSpec = serde_json::from_value(json).unwrap();
    assert_eq!(read, spec);
    let before = spec.spec_hash(None);
    spec.constraints.insert("zone".into(), "eu-1".into());
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["constraints"]["zone"], "eu-1");
    assert_eq!(serde_json::from_value::<ServiceSpec>(json).unwrap(), spec);
    // Placement is part of what defines a release.
    assert_ne!(spec.spec_hash(None), before);
}

#[test]
fn drivers_and_artifacts() {
    let e = error("[service.hello]\ndriver = \"docker\"\nartifact = \"x\"\n");
    assert_eq!(
        summary(&e),
        (
            2,
            10,
            Some("service.hello.driver"),
            "unknown driver `docker`",
            Some("the drivers are `exec`, `wasm` and `container`; to run an image, use `driver = \"container\"`")
        )
    );
    let e = error("[service.hello]\ndriver = \"wasn\"\nartifact = \"x\"\n");
    assert_eq!(
        e.hint.as_deref(),
        Some("did you mean `wasm`? The drivers are `exec`, `wasm` and `container`")
    );
    let e = error("[service.hello]\ndriver = \"lambda\"\nartifact = \"x\"\n");
    assert_eq!(
        e.hint.as_deref(),
        Some("the drivers are `exec`, `wasm` and `container`")
    );

    // Both: the artifact is the code the command runs in (its working directory).
    let both = parse(
        "strata.toml",
        "[service.hello]\nartifact = \"app\"\ncommand = [\"python3\", \"app.py\"]\n",
    )
    .unwrap();
    assert_eq!(both.services[0].artifact.as_deref(), Some("app"));
    assert_eq!(both.services[0].command, ["python3", "app.py"]);
    let e = error("[service.hello]\nport = 8080\n");
    assert_eq!(
        summary(&e),
        (
            1,
            10,
            Some("service.hello"),
            "`service.hello` needs an `artifact` or a `command`",
            Some("add `artifact = \"build/hello\"` (a program uploaded at deploy) or `command = [\"python3\", \"app.py\"]` (a program on the node)")
        )
    );
    let e = error("[service.hello]\ndriver = \"wasm\"\n");
    assert_eq!(
        summary(&e),
        (
            1,
            10,
            Some("service.hello.artifact"),
            "`service.hello` uses the `wasm` driver and needs an `artifact`",
            Some("add `artifact = \"build/hello.wasm\"`, a file uploaded at deploy")
        )
    );
    let e = error(
        "[service.hello]\ndriver = \"container\"\nartifact = \"a.tar\"\ncommand = [\"sh\"]\n",
    );
    assert_eq!(
        summary(&e),
        (
            4,
            1,
            Some("service.hello.command"),
            "`command` is only for the `exec` driver, and `service.hello` uses `container`",
            Some("a container service runs its `artifact`; remove `command`")
        )
    );
    let e = error("[service.hello]\ncommand = []\n");
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (2, 11, "`service.hello.command` must not be empty")
    );
    let e = error("[service.hello]\nartifact = \"\"\n");
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (2, 12, "`service.hello.artifact` must not be empty")
    );
}

#[test]
fn service_names_must_be_dns_labels() {
    let e = error("[service.Hello_World]\nartifact = \"x\"\n");
    assert_eq!(
        summary(&e),
        (
            1,
            10,
            Some("service.Hello_World"),
            "invalid service name `Hello_World`",
            Some("a service name is a DNS label (lowercase letters, digits and `-`, starting with a letter, at most 63 characters), for example `hello-world`")
        )
    );
    let e = error("[service.\"my app\"]\nartifact = \"x\"\n");
    assert_eq!(e.key.as_deref(), Some("service.\"my app\""));
    assert!(e.hint.unwrap().ends_with("for example `my-app`"));
    let e = error(&format!("[service.{}]\nartifact = \"x\"\n", "a".repeat(64)));
    assert_eq!((e.line, e.column), (1, 10));
    for good in ["a", "a1", "hello-world", &"a".repeat(63)] {
        parse("f", &format!("[service.{good}]\nartifact = \"x\"\n")).unwrap();
    }
}

#[test]
fn no_services() {
    for source in ["", "# nothing\n", "[service]\n"] {
        let e = error(source);
        assert_eq!(e.message, "no services defined; add a [service.NAME] table");
        assert_eq!(
            e.hint.as_deref(),
            Some("a minimal service is `[service.hello]` with `artifact = \"build/hello\"`")
        );
    }
    let e = error("[[service]]\nartifact = \"x\"\n");
    assert_eq!(
        summary(&e),
        (
            1,
            3,
            Some("service"),
            "`service` must be a table of named services, found an array of tables",
            Some("name each service: write [service.hello] instead of [[service]]")
        )
    );
    let e = error("[service]\ndriver = \"exec\"\n");
    assert_eq!(
        summary(&e),
        (
            2,
            10,
            Some("service.driver"),
            "`service.driver` must be a table, found a string",
            Some("`driver` belongs in a service's table: [service.NAME]")
        )
    );
}

#[test]
fn duplicate_service() {
    let source = "[service.hello]\nartifact = \"a\"\n\n[service.other]\nartifact = \"b\"\n\n  [service.hello]\nartifact = \"c\"\n";
    let e = error(source);
    assert_eq!(
        summary(&e),
        (
            7,
            12,
            Some("service.hello"),
            "service `hello` is defined twice",
            Some("rename one of them or merge the two tables")
        )
    );
    // Also when the first definition is dotted keys.
    let e = error("service.hello.artifact = \"a\"\n[service.hello]\n");
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (2, 10, "service `hello` is defined twice")
    );
    let e = error("[service.hello]\nartifact = \"a\"\nartifact = \"b\"\n");
    assert_eq!(
        summary(&e),
        (
            3,
            1,
            Some("service.hello.artifact"),
            "`service.hello.artifact` is set twice",
            Some("remove one of them")
        )
    );
    let e = error("[service.hello]\nscale.replicas = 1\nscale.replicas = 2\n");
    assert_eq!(
        (e.line, e.column, e.key.as_deref()),
        (3, 1, Some("service.hello.scale.replicas"))
    );
}

#[test]
fn syntax_errors() {
    let e = error("[service.hello]\ndriver = exec\n");
    assert_eq!(
        summary(&e),
        (
            2,
            10,
            None,
            "invalid string: expected `\"`, `'`",
            Some("strings are quoted in TOML: `driver = \"exec\"`")
        )
    );
    let e = error("[service.hello\nartifact = \"x\"\n");
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (1, 15, "invalid table header: expected `.`, `]`")
    );
    let e = error("[service.hello]\nartifact = \"x\ndriver = \"exec\"\n");
    assert_eq!(
        (e.line, e.column, e.message.as_str()),
        (2, 14, "invalid basic string")
    );
    let e = error("[service.hello]\nartifact\n");
    assert_eq!((e.line, e.column), (2, 9));
    assert!(!e.message.contains('\n'));
}

#[test]
fn all_errors_are_collected_in_order() {
    let source = r#"[service.web]
drivr = "exec"
artifact = "build/web"
port = 0

[service.Api]
command = ["./api"]

[service.Api.scale]
replicas = 5000

[service.web.resources]
memory = "lots"
"#;
    let errors = errors(source);
    let got: Vec<(usize, usize, Option<&str>)> = errors
        .iter()
        .map(|e| (e.line, e.column, e.key.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, 1, Some("service.web.drivr")),
            (4, 8, Some("service.web.port")),
            (6, 10, Some("service.Api")),
            (10, 12, Some("service.Api.scale.replicas")),
            (13, 10, Some("service.web.resources.memory")),
        ]
    );
}

#[test]
fn display_and_render() {
    let source = service("[service.hello.scale]\nreplcas = 2\n");
    let errors = parse("app/strata.toml", &source).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "app/strata.toml:4:1: unknown key `service.hello.scale.replcas`\n  hint: did you mean `replicas`?"
    );
    assert_eq!(
        errors.render(&source),
        "app/strata.toml:4:1: unknown key `service.hello.scale.replcas`\n   4 | replcas = 2\n     | ^^^^^^^\n  hint: did you mean `replicas`?"
    );
    let two = service("port = true\n\t[service.hello.scale]\nreplicas = \"x\"\n");
    let errors = parse("s.toml", &two).unwrap_err();
    assert_eq!(errors.0.len(), 2);
    assert_eq!(
        errors.to_string(),
        format!("{}\n\n{}", errors.0[0], errors.0[1])
    );
    assert!(errors
        .render(&two)
        .contains("   5 | replicas = \"x\"\n     |            ^^^\n"));
    let no_hint = SpecError::new("f", 1, 2, None, "m", None);
    assert_eq!(no_hint.to_string(), "f:1:2: m");
}

#[test]
fn positions_locate_and_at() {
    // Columns count characters, not bytes.
    let source = "# é\n[service.hello]\nartifact = \"é\" # ü\nargs = [\"ü\", 1]\n";
    let e = error(source);
    assert_eq!((e.line, e.column), (4, 14));

    // CRLF line endings.
    let source = "[service.hello]\r\nartifact = 1\r\n";
    let e = error(source);
    assert_eq!((e.line, e.column), (2, 12));
    assert!(e
        .render(source)
        .contains("   2 | artifact = 1\n     |            ^\n"));

    assert_eq!(
        locate(FULL, &["service", "hello", "artifact"]),
        Some((4, 1))
    );
    assert_eq!(locate(FULL, &["hello", "artifact"]), Some((4, 1)));
    assert_eq!(locate(FULL, &["service", "hello"]), Some((2, 10)));
    assert_eq!(
        locate(FULL, &["service", "hello", "scale", "replicas"]),
        Some((11, 1))
    );
    assert_eq!(
        locate(FULL, &["service", "static", "route", "public"]),
        Some((52, 11))
    );
    assert_eq!(locate(FULL, &["service", "hello", "nope"]), None);
    assert_eq!(locate("not toml [", &["service"]), None);
    assert_eq!(locate(FULL, &[]), None);

    let e = SpecError::at_key(
        "strata.toml",
        FULL,
        &["service", "hello", "artifact"],
        "artifact `build/hello` not found",
        Some("build it first".into()),
    );
    assert_eq!(
        e.to_string(),
        "strata.toml:4:1: artifact `build/hello` not found\n  hint: build it first"
    );
    assert_eq!(e.key.as_deref(), Some("service.hello.artifact"));
    let e = SpecError::at_key("f", FULL, &["hello", "artifact"], "m", None);
    assert_eq!(
        (e.line, e.column, e.key.as_deref()),
        (4, 1, Some("service.hello.artifact"))
    );

    let e = SpecError::at("f", "ab\ncé\nx", 7..8, None, "m", None);
    assert_eq!((e.line, e.column), (3, 1));
    let e = SpecError::at("f", "ab\ncé", 5..6, None, "m", None); // inside 'é'
    assert_eq!((e.line, e.column), (2, 2));
    let e = SpecError::at("f", "ab", 100..100, None, "m", None);
    assert_eq!((e.line, e.column), (1, 3));
}

#[test]
fn nothing_panics_on_malformed_input() {
    let mut inputs: Vec<String> = Vec::new();
    // Every prefix of a valid spec.
    for (i, _) in FULL.char_indices() {
        inputs.push(FULL[..i].to_string());
    }
    // Every line removed; every line duplicated.
    let lines: Vec<&str> = FULL.lines().collect();
    for i in 0..lines.len() {
        let mut without = lines.clone();
        without.remove(i);
        inputs.push(without.join("\n"));
        let mut twice = lines.clone();
        twice.insert(i, lines[i]);
        inputs.push(twice.join("\n"));
    }
    // A troublesome character inserted at every position.
    for (i, _) in FULL.char_indices().step_by(3) {
        for c in [
            "\"", "[", "]", "=", ".", "\n", "{", "'", "é", "\t", "#", "0",
        ] {
            inputs.push(format!("{}{c}{}", &FULL[..i], &FULL[i..]));
        }
    }
    inputs.extend(
        [
            "\u{feff}",
            "\0",
            "[",
            "]",
            "=",
            "[service.]",
            "[service.\"\"]\nartifact = \"x\"",
            "service = 1",
            "service = []",
            "service = [{}]",
            "service.hello = []",
            "service.hello = { scale = [] }",
            "[service.hello]\nscale.replicas = 99999999999999999999",
            "[service.hello]\nartifact = \"a\"\nport = -9223372036854775808",
            "[service.hello]\nartifact = \"a\"\nresources.cpu = nan",
            "[service.hello]\nartifact = \"a\"\nresources.cpu = inf",
            "[service.hello]\nartifact = \"a\"\nresources.cpu = 1e-9",
            "[service.hello]\nartifact = \"a\"\nresources.cpu = \"-5m\"",
            "[service.hello]\nartifact = \"a\"\nresources.cpu = \"m\"",
            "[service.hello]\nartifact = \"a\"\nresources.memory = \"99999999999999999999Ti\"",
            "[service.hello]\nartifact = \"a\"\nresources.memory = \"1e400Gi\"",
            "[service.hello]\nartifact = \"a\"\nresources.memory = \"9999999999999.5Ti\"",
            "[service.hello]\nartifact = \"a\"\nresources.memory = \".\"",
            "[service.hello]\nartifact = \"a\"\nresources.memory = -1",
            "[service.hello]\nartifact = \"a\"\nstop_timeout = \"99999999999999999999999y\"",
            "[service.hello]\nartifact = \"a\"\nhealth = \"/x\"",
            "[service.hello]\nartifact = \"a\"\nhealth.path = \"/\"\nhealth.interval = \"1000000000y\"",
            "[service.hello]\nartifact = \"a\"\nroute.hosts = [\"\", \".\", \"*.x\", \"a..b\", \"-a\", \"é.com\", \"://\"]",
            "[service.hello]\nartifact = \"a\"\n[service.hello.environments]\nprod = 1",
            "[service.hello]\nartifact = \"a\"\n[[service.hello.environments.prod.config]]",
            "[service.hello]\nartifact = \"a\"\nconfig = { \"\" = 1, \"1\" = 2, \"é\" = 3, T = 1979-05-27 }",
            "[[service.hello]]\nartifact = \"a\"",
            "[service.hello]\ncommand = [\"\"]",
            "[service.hello]\nartifact = \"a\"\nplacement = []",
            "[service.hello]\nartifact = \"a\"\nplacement.labels = \"=,=\"",
            "[service.hello]\nartifact = \"a\"\nplacement.labels = [1, \"a=b\"]",
            "[service.hello]\nartifact = \"a\"\nplacement.labels = { \"\" = \"\", \"/\" = \"/\", \"a/b/c\" = [], \"é\" = \"é\", \"-/-\" = \"-\" }",
            "[service.hello]\nartifact = \"a\"\n[[service.hello.placement.labels]]",
            "[service.hello]\ncommand = [[\"a\"]]",
            "[service.hello]\nartifact = \"a\"\nmesh.retry_budget = nan",
            "[service.hello]\nartifact = \"a\"\nmesh.retry_budget = -inf",
            "[service.hello]\nartifact = \"a\"\nmesh.retry_budget = 1e308",
            "[service.hello]\nartifact = \"a\"\nmesh.retry_budget = \"%\"",
            "[service.hello]\nartifact = \"a\"\nmesh.retry_budget = \"1e400%\"",
            "[service.hello]\nartifact = \"a\"\nmesh.max_concurrent = 99999999999",
            "[service.hello]\nartifact = \"a\"\nmesh.request_timeout = \"99999999999999999999y\"",
            "[service.hello]\nartifact = \"a\"\nmesh.allow_from = [[], {}, \"\", \"*\", \"*\", \"-\", \"é\"]",
            "[service.hello]\nartifact = \"a\"\n[[service.hello.mesh]]",
            "[service.hello]\nartifact = \"a\"\nmesh = 1",
            "[service.hello]\nartifact = \"a\"\nscale = { min = 99999999999999999999, max = -1 }",
            "[service.hello]\nartifact = \"a\"\nscale = { min = 0, max = 1, scale_to_zero_after = \"99999999999999999999y\" }",
            "[service.hello]\nartifact = \"a\"\nscale = { min = 0, max = 1, target_concurrency = 99999999999 }",
            "[service.hello]\nartifact = \"a\"\nscale = { min = \"a\", replicas = [] }",
            "[service.hello]\nartifact = \"a\"\nscale = { max = {}, scale_to_zero_after = [] }",
            "[service.hello]\nartifact = \"a\"\n[[service.hello.slo]]",
            "[service.hello]\nartifact = \"a\"\nslo = []",
            "[service.hello]\nartifact = \"a\"\nslo = { error_rate = nan, availability = inf }",
            "[service.hello]\nartifact = \"a\"\nslo = { error_rate = -inf, availability = 1e308 }",
            "[service.hello]\nartifact = \"a\"\nslo = { error_rate = \"%\", availability = \"1e400%\" }",
            "[service.hello]\nartifact = \"a\"\nslo = { error_rate = 9223372036854775807, availability = -9223372036854775808 }",
            "[service.hello]\nartifact = \"a\"\nslo = { p99_ms = \"99999999999999999999y\", error_rate = 1e-320 }",
            "a.b.c.d.e.f = 1\n\"\" = 2",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    for input in &inputs {
        let result = std::panic::catch_unwind(|| parse("f.toml", input));
        let result = result.unwrap_or_else(|_| panic!("parse panicked on {input:?}"));
        if let Err(errors) = result {
            assert!(!errors.0.is_empty(), "{input:?}");
            let sorted = errors
                .0
                .windows(2)
                .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column));
            assert!(sorted, "{input:?}");
            let _ = errors.render(input);
            let _ = errors.to_string();
        }
        let _ = locate(input, &["service", "hello", "artifact"]);
    }
}
