//! Each section's keys: probes, drivers' tables, the mesh, placement.

use super::*;

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
                  [service.db.container]\ncapabilities = [\"net_bind_service\", \"CAP_CHOWN\"]\npids = 64\nuserns = false\n";
    let spec = parse("strata.toml", source).unwrap();
    assert_eq!(
        spec.services[0].container,
        Some(ContainerSettings {
            capabilities: vec!["NET_BIND_SERVICE".into(), "CHOWN".into()],
            pids: Some(64),
            userns: Some(false),
        })
    );
    assert!(spec.services[0].container.as_ref().unwrap().host_root());
    let cases = [
        ("driver = \"wasm\"\nartifact = \"a.wasm\"\ncontainer.pids = 2\n", "uses the `wasm` driver"),
        ("driver = \"container\"\nartifact = \"a.tar\"\ncontainer.capabilities = [\"NET_BIND\"]\n", "did you mean `NET_BIND_SERVICE`"),
        ("driver = \"container\"\nartifact = \"a.tar\"\ncontainer.pids = 0\n", "from 1 to 1000000"),
        ("driver = \"container\"\nartifact = \"a.tar\"\ncontainer.userns = \"false\"\n", "write it without quotes: `userns = false`"),
        ("driver = \"container\"\nartifact = \"a.tar\"\ncontainer.usernamespace = false\n", "userns"),
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
        assert_service_error(body, (line, column, key, message, hint));
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
    for &(body, expected) in cases {
        assert_service_error(body, expected);
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
