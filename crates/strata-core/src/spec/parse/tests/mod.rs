//! The spec checker's tests: every key, every default, every problem and its hint.

use super::*;

mod document;
mod forensics;
mod keys;
mod protocol;
mod rollout;
mod scale;
mod schema;
mod secrets;
mod sections;

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

[service.hello.secrets]
API_KEY = { env = "API_KEY" }

[service.hello.slo]
p99_ms = 250
error_rate = 0.001
availability = 0.999

[service.hello.forensics]
archive_on = "failure"
keep = "14d"

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

/// `(line, column, key, message, hint)` of a spec's only error.
type Expected<'a> = (usize, usize, &'a str, &'a str, &'a str);

/// The only error of a service whose table holds `body` is `expected`.
fn assert_service_error(body: &str, expected: Expected) {
    let source = service(body);
    let e = error(&source);
    let (line, column, key, message, hint) = expected;
    assert_eq!(
        summary(&e),
        (line, column, Some(key), message, Some(hint)),
        "\n{}",
        e.render(&source)
    );
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
                name: crate::ServiceName::from_static("hello"),
                driver: DriverKind::Exec,
                artifact: Some("build/hello".into()),
                command: vec![],
                args: vec!["--verbose".into()],
                port: PortSpec::Fixed(8080),
                protocol: Protocol::Http,
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
                rollout: None,
                secrets: BTreeMap::from([(
                    "API_KEY".to_string(),
                    crate::secret::SecretTarget::Env("API_KEY".into()),
                )]),
                forensics: Some(crate::spec::ForensicsSpec {
                    archive_on: crate::spec::ArchiveOn::Failure,
                    keep_ms: 14 * 86_400_000,
                }),
            },
            ServiceSpec {
                name: crate::ServiceName::from_static("static"),
                driver: DriverKind::Exec,
                artifact: None,
                command: vec!["python3".into(), "-m".into(), "http.server".into()],
                args: vec![],
                port: PortSpec::Auto,
                protocol: Protocol::Http,
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
                rollout: None,
                secrets: BTreeMap::new(),
                forensics: None,
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
