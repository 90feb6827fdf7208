//! The document as a whole: drivers and artifacts, names, syntax, ordering, rendering, and
//! nothing panicking on any input.

use super::*;

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
        Some((59, 11))
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
