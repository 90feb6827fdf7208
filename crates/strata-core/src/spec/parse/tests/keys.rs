//! Unknown, misplaced and mistyped keys and values: where each error points and what it hints.

use super::*;

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
             "an environment variable's name is letters, digits and `_`, not starting with a digit, like `LOG_LEVEL`"),
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
    for &(body, expected) in cases {
        assert_service_error(body, expected);
    }
}
