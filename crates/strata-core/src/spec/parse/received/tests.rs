use super::*;
use crate::secret::SecretTarget;
use crate::spec::{ContainerSettings, HealthSpec, LivenessSpec, WasmLimits};

/// Services the parser accepts, every section used.
const VALID: &str = r#"
[service.web]
command = ["web"]
min_ready = "2s"
stop_timeout = "10s"
[service.web.scale]
min = 0
max = 10
[service.web.route]
hosts = ["shop.example.com"]
[service.web.config]
GREETING = "hi"
[service.web.environments.prod.config]
GREETING = "hello"
[service.web.health]
path = "/healthz"
[service.web.liveness]
path = "/alive"
[service.web.resources]
cpu = "250m"
memory = "128Mi"
[service.web.placement]
labels = { zone = "a", "example.com/tier" = "front" }
[service.web.mesh]
allow_from = ["api"]
retries = 2
[service.web.slo]
p99_ms = 300
[service.web.secrets]
DB = { env = "DB_PASSWORD" }

[service.box]
driver = "container"
artifact = "box.tar"
[service.box.container]
capabilities = ["NET_BIND_SERVICE"]
pids = 64
[service.box.secrets]
tls = { file = "/run/secrets/tls" }

[service.fn]
driver = "wasm"
artifact = "fn.wasm"
[service.fn.wasm]
request_timeout = "10s"
max_concurrency = 50
"#;

fn valid(name: &str) -> ServiceSpec {
    crate::spec::parse("web.toml", VALID)
        .unwrap()
        .services
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

#[test]
fn what_the_parser_accepts_is_accepted_when_received() {
    for name in ["web", "box", "fn"] {
        assert_eq!(check_received(&valid(name)), Ok(()), "{name}");
    }
}

#[test]
fn a_received_spec_is_refused_where_the_parser_would_refuse_its_text() {
    type Change = fn(&mut ServiceSpec);
    let table: Vec<(&str, &str, Change)> = vec![
        ("web", "scale.max", |s| {
            s.scale.autoscale.as_mut().unwrap().max = 100_000
        }),
        ("web", "scale.replicas", |s| {
            s.scale.autoscale = None;
            s.scale.replicas = 5_000;
        }),
        ("web", "scale.min", |s| {
            let a = s.scale.autoscale.as_mut().unwrap();
            (a.min, a.max) = (5, 2);
        }),
        ("web", "health.path", |s| {
            // The node would fetch another host: http://ADDRESS@127.0.0.1:9999/x
            s.health.as_mut().unwrap().path = "@127.0.0.1:9999/x".into()
        }),
        ("web", "health.path", |s| {
            s.health.as_mut().unwrap().path = "http://169.254.169.254/latest".into()
        }),
        ("web", "liveness.path", |s| {
            s.liveness.as_mut().unwrap().path = Some("@10.0.0.1/".into())
        }),
        ("web", "health.interval", |s| {
            s.health.as_mut().unwrap().interval_ms = 1
        }),
        ("web", "health.unhealthy_threshold", |s| {
            s.health.as_mut().unwrap().unhealthy_threshold = 0
        }),
        ("web", "min_ready", |s| s.min_ready_ms = 48 * 3_600_000),
        ("web", "rollout.steps", |s| {
            s.rollout = Some(canary(vec![0, 100]));
        }),
        ("web", "rollout.steps", |s| {
            s.rollout = Some(canary(vec![5]));
        }),
        ("web", "rollout.steps", |s| {
            s.rollout = Some(canary(vec![50, 25, 100]));
        }),
        ("web", "rollout.steps", |s| {
            s.rollout = Some(canary(vec![]));
        }),
        ("web", "rollout.min_requests", |s| {
            let mut rollout = canary(vec![100]);
            rollout.analysis.min_requests = 0;
            s.rollout = Some(rollout);
        }),
        ("web", "rollout.step_interval", |s| {
            let mut rollout = canary(vec![100]);
            rollout.step_interval_ms = 0;
            s.rollout = Some(rollout);
        }),
        ("web", "resources.cpu", |s| s.resources.cpu_millis = 0),
        ("web", "resources.memory", |s| s.resources.memory_bytes = 10),
        ("web", "route.hosts", |s| {
            s.route.hosts = vec!["evil.example.com/path".into()]
        }),
        ("web", "route.hosts", |s| {
            s.route.hosts = vec!["Shop.Example.com".into()]
        }),
        ("web", "config", |s| {
            s.config
                .insert("STRATA_CONTAINER_CAPABILITIES".into(), "SYS_ADMIN".into());
        }),
        ("web", "config", |s| {
            s.config.insert("NOT A NAME".into(), "x".into());
        }),
        ("web", "environments.prod.config", |s| {
            s.env_config
                .get_mut("prod")
                .unwrap()
                .insert("STRATA_SERVICE".into(), "other".into());
        }),
        ("web", "environments", |s| {
            s.env_config.insert("Prod!".into(), Default::default());
        }),
        ("web", "placement.labels", |s| {
            s.constraints.insert("zone".into(), "a b".into());
        }),
        ("web", "mesh.allow_from", |s| {
            s.mesh.as_mut().unwrap().allow_from = Some(vec!["Not_A_Service".into()])
        }),
        ("web", "mesh.retries", |s| {
            s.mesh.as_mut().unwrap().retries = 50
        }),
        ("web", "mesh.retry_budget", |s| {
            s.mesh.as_mut().unwrap().retry_budget_permille = 5_000
        }),
        ("web", "slo.p99_ms", |s| {
            s.slo.as_mut().unwrap().p99_ms = Some(0)
        }),
        ("box", "container.capabilities", |s| {
            s.container.as_mut().unwrap().capabilities = vec!["CAP_SYS_ADMIN".into()]
        }),
        ("box", "container.pids", |s| {
            s.container.as_mut().unwrap().pids = Some(0)
        }),
        ("web", "container", |s| {
            s.container = Some(ContainerSettings {
                capabilities: vec!["SYS_ADMIN".into()],
                pids: None,
                userns: None,
            })
        }),
        ("box", "wasm", |s| {
            s.wasm = Some(WasmLimits {
                request_timeout_ms: None,
                max_concurrency: None,
            })
        }),
        ("web", "secrets.DB", |s| {
            s.secrets
                .insert("DB".into(), SecretTarget::Env("STRATA_DB".into()));
        }),
        ("web", "secrets.DB", |s| {
            s.secrets
                .insert("DB".into(), SecretTarget::Env("GREETING".into()));
        }),
        ("web", "secrets.DB", |s| {
            s.secrets
                .insert("DB".into(), SecretTarget::File("/run/secrets/db".into()));
        }),
        ("web", "secrets", |s| {
            s.secrets
                .insert("../x".into(), SecretTarget::Env("X".into()));
        }),
        ("box", "secrets.tls", |s| {
            s.secrets
                .insert("tls".into(), SecretTarget::File("/proc/self/mem".into()));
        }),
        ("fn", "wasm.max_concurrency", |s| {
            s.wasm.as_mut().unwrap().max_concurrency = Some(0)
        }),
    ];
    for (service, key, change) in table {
        let mut spec = valid(service);
        change(&mut spec);
        let refused = check_received(&spec).expect_err(key);
        assert_eq!(refused.key, key, "{refused}");
        assert_eq!(refused.service, service);
        assert!(!refused.hint.is_empty(), "{refused:?}");
        assert!(refused
            .to_string()
            .contains(&format!("service `{service}`")));
    }
}

#[test]
fn probes_without_optional_parts_are_accepted() {
    let mut spec = valid("web");
    spec.liveness = Some(LivenessSpec {
        path: None,
        interval_ms: 1_000,
        timeout_ms: 500,
        unhealthy_threshold: 3,
    });
    spec.health = Some(HealthSpec {
        path: "//double/slash?q=1".into(),
        interval_ms: 50,
        timeout_ms: 1,
        healthy_threshold: 1,
        unhealthy_threshold: 100,
    });
    assert_eq!(check_received(&spec), Ok(()));
}

#[test]
fn the_examples_are_accepted_when_received() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let specs = [
        "hello/strata.toml",
        "hello-container/strata.toml",
        "hello-container/redis.toml",
        "hello-wasm/strata.toml",
    ];
    for path in specs {
        let text = std::fs::read_to_string(root.join(path)).unwrap();
        for spec in crate::spec::parse(path, &text).unwrap().services {
            assert_eq!(check_received(&spec), Ok(()), "{path}: {}", spec.name);
        }
    }
}

/// A canary rollout with `steps`, the rest its defaults.
fn canary(steps: Vec<u8>) -> crate::spec::RolloutSpec {
    crate::spec::RolloutSpec {
        strategy: crate::spec::RolloutStrategy::Canary,
        steps,
        ..crate::spec::RolloutSpec::default()
    }
}
