//! The spec's schema, as data: every table of a service, and per table every key it allows with
//! its type and default (as docs/spec.md writes them), its bounds and the other words people use
//! for it. The checker runs from this table: which keys a table allows, where a misplaced key
//! belongs, "did you mean" for a known alias, and the bounds of every integer and duration; a
//! test holds docs/spec.md's key tables against it.

use crate::spec::{AutoscaleSpec, DriverKind};

/// The tables of a service, for checking keys and telling where a misplaced key belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Service,
    Scale,
    Route,
    Health,
    Liveness,
    Resources,
    Placement,
    Wasm,
    Container,
    Mesh,
    Slo,
    Rollout,
    Forensics,
    Environment,
}

/// One key of a table.
#[derive(Debug)]
pub(super) struct KeyDef {
    pub(super) name: &'static str,
    /// The type, as the Type column of docs/spec.md writes it (the docs test holds the two
    /// together).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) ty: &'static str,
    /// The default, as the Default column of docs/spec.md writes it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) default: &'static str,
    /// What the key is for, in one line.
    pub(super) doc: &'static str,
    pub(super) rule: Rule,
    /// Other names people write for this key; each gets "did you mean `name`?".
    pub(super) aliases: &'static [&'static str],
}

/// How a key's value is checked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rule {
    /// A whole number in `min..=max`; out of range, the message gives `hint`, and a value of
    /// another type gets `example` as the example.
    Integer {
        min: i64,
        max: i64,
        example: i64,
        hint: &'static str,
    },
    /// A duration string in `min_ms..=max_ms`; `example` is shown when the value is not a
    /// duration, `hint` when it is out of range.
    Duration {
        min_ms: u64,
        max_ms: u64,
        example: &'static str,
        hint: &'static str,
    },
    /// A table of the service with keys of its own ([`Section`]).
    Table,
    /// A value the section's own code checks (strings, lists, sizes, fractions, ...).
    Custom,
}

/// No upper bound on a duration.
const NO_MAX: u64 = u64::MAX;

const fn key(name: &'static str, ty: &'static str, default: &'static str) -> KeyDef {
    KeyDef {
        name,
        ty,
        default,
        doc: "",
        rule: Rule::Custom,
        aliases: &[],
    }
}

const fn table(name: &'static str, doc: &'static str) -> KeyDef {
    KeyDef {
        name,
        ty: "table",
        default: "none",
        doc,
        rule: Rule::Table,
        aliases: &[],
    }
}

impl KeyDef {
    const fn doc(mut self, doc: &'static str) -> KeyDef {
        self.doc = doc;
        self
    }

    const fn rule(mut self, rule: Rule) -> KeyDef {
        self.rule = rule;
        self
    }

    const fn aliases(mut self, aliases: &'static [&'static str]) -> KeyDef {
        self.aliases = aliases;
        self
    }
}

const fn threshold(
    name: &'static str,
    default: &'static str,
    example: i64,
    hint: &'static str,
) -> KeyDef {
    key(name, "integer", default)
        .doc("consecutive check results that decide")
        .rule(Rule::Integer {
            min: 1,
            max: 100,
            example,
            hint,
        })
}

const INTERVAL: KeyDef = key("interval", "duration", "`\"1s\"`")
    .doc("time between checks")
    .rule(Rule::Duration {
        min_ms: 50,
        max_ms: NO_MAX,
        example: "1s",
        hint: "for example `interval = \"1s\"`",
    });

const TIMEOUT: KeyDef = key("timeout", "duration", "`\"500ms\"`")
    .doc("how long one check may take")
    .rule(Rule::Duration {
        min_ms: 1,
        max_ms: NO_MAX,
        example: "500ms",
        hint: "for example `timeout = \"500ms\"`",
    });

const UNHEALTHY_THRESHOLD: KeyDef = threshold(
    "unhealthy_threshold",
    "`3`",
    3,
    "unhealthy_threshold is how many consecutive checks must fail, from 1 to 100",
);

const SERVICE: &[KeyDef] = &[
    key("driver", "string", "`\"exec\"`").doc("how instances run: exec, wasm or container"),
    key("artifact", "string", "none")
        .doc("the file uploaded at deploy")
        .aliases(&["image"]),
    key("command", "array of strings", "none")
        .doc("exec: the program and its arguments")
        .aliases(&["cmd", "entrypoint", "exec", "run"]),
    key("args", "array of strings", "`[]`")
        .doc("arguments appended")
        .aliases(&["arguments", "argv"]),
    key("port", "`\"auto\"` or integer", "`\"auto\"`").doc("where each instance listens"),
    key("protocol", "string", "`\"http\"`")
        .doc("what it speaks: http, or tcp for any protocol (callers dial NAME:PORT)")
        .aliases(&["proto"]),
    key("stop_timeout", "duration", "`\"5s\"`")
        .doc("time between SIGTERM and SIGKILL")
        .rule(Rule::Duration {
            min_ms: 0,
            max_ms: NO_MAX,
            example: "5s",
            hint: "for example `stop_timeout = \"10s\"`",
        }),
    key("min_ready", "duration", "`\"1s\"`")
        .doc("unbroken health before an instance counts as available")
        .rule(Rule::Duration {
            min_ms: 0,
            max_ms: 3_600_000,
            example: "1s",
            hint: "for example `min_ready = \"5s\"` (`\"0s\"` counts an instance at its first passed check)",
        }),
    table("scale", "how many instances run"),
    table("route", "how the ingress serves the service"),
    table("config", "environment variables of every instance"),
    table("environments", "config for one environment"),
    table("health", "the readiness check").aliases(&["healthcheck", "health_check", "check"]),
    table("liveness", "the check that restarts a stuck instance"),
    table("resources", "cpu and memory of one instance"),
    table("placement", "node labels an instance's node must carry"),
    table("wasm", "wasm limits"),
    table("container", "container settings"),
    table("mesh", "calls through the mesh"),
    table("slo", "objectives").aliases(&["sla", "slos", "objective", "objectives"]),
    table("rollout", "how a new release replaces the old one")
        .aliases(&["deploy", "deployment", "update", "strategy"]),
    table("secrets", "secrets an instance gets, and where").aliases(&["secret"]),
    table("forensics", "what is archived of an instance that fails")
        .aliases(&["forensic", "archive", "archives", "postmortem"]),
];

const SCALE: &[KeyDef] = &[
    key("replicas", "integer", "`1`")
        .doc("how many instances run (or start, when autoscaling)")
        .rule(Rule::Integer {
            min: 0,
            max: MAX_REPLICAS,
            example: 2,
            hint: "replicas is how many instances run, from 0 to 1000",
        })
        .aliases(&["instances", "count", "replica"]),
    key("min", "integer", "none")
        .doc("autoscaling: the fewest instances")
        .rule(Rule::Integer {
            min: 0,
            max: MAX_REPLICAS,
            example: 1,
            hint: "min is the fewest instances the autoscaler keeps running, from 0 to 1000",
        })
        .aliases(&[
            "min_replicas",
            "minimum",
            "min_instances",
            "min_count",
            "min_scale",
        ]),
    key("max", "integer", "none")
        .doc("autoscaling: the most instances")
        .rule(Rule::Integer {
            min: 1,
            max: MAX_REPLICAS,
            example: 10,
            hint: "max is the most instances the autoscaler runs, from 1 to 1000",
        })
        .aliases(&[
            "max_replicas",
            "maximum",
            "max_instances",
            "max_count",
            "max_scale",
        ]),
    key("target_concurrency", "integer", "`10`")
        .doc("autoscaling: requests in flight per instance aimed at")
        .rule(Rule::Integer {
            min: 1,
            max: 10_000,
            example: AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY as i64,
            hint: "target_concurrency is how many requests in flight per instance the autoscaler aims at, from 1 to 10000",
        })
        .aliases(&[
            "concurrency",
            "target",
            "target_requests",
            "requests_per_instance",
            "concurrency_target",
            "max_concurrency",
            "max_concurrent",
        ]),
    key("scale_to_zero_after", "duration", "`\"60s\"`")
        .doc("autoscaling with min = 0: idle time before the last instance stops")
        .rule(Rule::Duration {
            min_ms: 1_000,
            max_ms: 24 * 3_600_000,
            example: "5m",
            hint: "it is how long without requests before the last instance stops; for example `scale_to_zero_after = \"5m\"`",
        })
        .aliases(&[
            "scale_to_zero",
            "idle_timeout",
            "idle",
            "scale_down_after",
            "scale_to_zero_delay",
            "zero_after",
        ]),
];

/// The most instances a service runs.
const MAX_REPLICAS: i64 = 1_000;

const ROUTE: &[KeyDef] = &[
    key("public", "boolean", "`true`").doc("served by the ingress at SERVICE.ENV.localhost"),
    key("hosts", "array of strings", "`[]`").doc("extra host names routed to the service"),
];

const HEALTH: &[KeyDef] = &[
    key("path", "string", "required")
        .doc("the URL path requested")
        .aliases(&["url", "endpoint"]),
    INTERVAL,
    TIMEOUT,
    threshold(
        "healthy_threshold",
        "`1`",
        1,
        "healthy_threshold is how many consecutive checks must pass, from 1 to 100",
    ),
    UNHEALTHY_THRESHOLD,
];

const LIVENESS: &[KeyDef] = &[
    key("path", "string", "none").doc("the URL path requested; without it, a TCP connect"),
    INTERVAL,
    TIMEOUT,
    UNHEALTHY_THRESHOLD,
];

const RESOURCES: &[KeyDef] = &[
    key("cpu", "number, or string `\"Nm\"`", "`0.1`")
        .doc("CPU cores")
        .aliases(&["cpus", "cores"]),
    key("memory", "integer, or string with unit", "`\"64Mi\"`")
        .doc("bytes of memory")
        .aliases(&["mem", "ram"]),
];

const PLACEMENT: &[KeyDef] = &[key("labels", "table of string → string", "`{}`")
    .doc("node labels a node must carry")
    .aliases(&["constraints", "node_labels", "node_selector", "selector"])];

const WASM: &[KeyDef] = &[
    key("request_timeout", "duration", "`\"30s\"`")
        .doc("a request running longer is answered 504")
        .rule(Rule::Duration {
            min_ms: 1,
            max_ms: 3_600_000,
            example: "10s",
            hint: "for example `request_timeout = \"10s\"`",
        }),
    key("max_concurrency", "integer", "`100`")
        .doc("requests one instance serves at once")
        .rule(Rule::Integer {
            min: 1,
            max: 10_000,
            example: 100,
            hint:
                "max_concurrency is how many requests one instance serves at once, from 1 to 10000",
        }),
];

const CONTAINER: &[KeyDef] = &[
    key("capabilities", "array of strings", "`[]`").doc("Linux capabilities granted"),
    key("pids", "integer", "`1024`")
        .doc("processes and threads one instance may have")
        .rule(Rule::Integer {
            min: 1,
            max: 1_000_000,
            example: 1024,
            hint: "pids is how many processes and threads an instance may have at once, from 1 to 1000000",
        }),
    key("userns", "boolean", "`true`")
        .doc("root in the container is an unprivileged host user; `false` (host root) only on nodes started with --allow-host-root"),
];

const ROLLOUT: &[KeyDef] = &[
    key("strategy", "string", "`\"rolling\"`")
        .doc("`rolling`: new instances first, old ones stop once replacements serve; `recreate`: old ones stop first; `canary`: the new release takes a growing share of the traffic, analysed against the stable one; `blue-green`: the new release starts in full, then takes all the traffic at once")
        .aliases(&["type", "kind", "mode"]),
    key("steps", "array of percentages", "`[\"5%\", \"25%\", \"50%\", \"100%\"]`")
        .doc("canary: the new release's share of the traffic at each step, increasing, ending at 100%")
        .aliases(&["weights", "stages", "traffic"]),
    key("step_interval", "duration", "`\"30s\"`")
        .doc("canary, blue-green: how long each step's traffic is analysed before the next")
        .rule(Rule::Duration {
            min_ms: 1_000,
            max_ms: 86_400_000,
            example: "30s",
            hint: "it is how long each step is analysed, from 1s to 24h; for example `step_interval = \"1m\"`",
        })
        .aliases(&["interval", "step_duration", "pause", "analysis_interval"]),
    key("max_error_rate", "float", "the `[slo]` error_rate, else 0.01")
        .doc("canary, blue-green: the most the new release's error rate may exceed the stable release's by")
        .aliases(&["error_rate", "errors", "max_errors"]),
    key("max_p99_ms", "integer", "the `[slo]` p99_ms, else unset")
        .doc("canary, blue-green: the p99 latency the new release must stay under (unless the stable release is as slow)")
        .rule(Rule::Integer {
            min: 1,
            max: 600_000,
            example: 300,
            hint: "max_p99_ms is in milliseconds, from 1 to 600000",
        })
        .aliases(&["p99_ms", "p99", "max_p99", "latency_ms"]),
    key("min_requests", "integer", "`20`")
        .doc("canary, blue-green: requests the new release must answer in a step before it is judged")
        .rule(Rule::Integer {
            min: 1,
            max: 1_000_000,
            example: 100,
            hint: "min_requests is how many requests a step needs before it is judged, from 1 to 1000000",
        })
        .aliases(&["min_request_count", "minimum_requests", "requests"]),
];

const MESH: &[KeyDef] = &[
    key("allow_from", "array of strings", "unset")
        .doc("the services allowed to call this one")
        .aliases(&[
            "allow",
            "allowed",
            "allow_list",
            "allowlist",
            "callers",
            "allowed_callers",
            "from",
        ]),
    key("request_timeout", "duration", "`\"30s\"`")
        .doc("the deadline of a call, attempts included")
        .rule(Rule::Duration {
            min_ms: 1,
            max_ms: 3_600_000,
            example: "10s",
            hint: "it is the deadline of a whole call, retries included; for example `request_timeout = \"10s\"`",
        })
        .aliases(&["timeout", "deadline", "call_timeout"]),
    key("retries", "integer", "`1`")
        .doc("extra attempts on another instance")
        .rule(Rule::Integer {
            min: 0,
            max: 5,
            example: 1,
            hint: "retries is how many extra attempts a call may make on another instance, from 0 to 5",
        })
        .aliases(&["retry", "max_retries", "attempts", "retry_attempts"]),
    key("retry_budget", "number", "`0.2`")
        .doc("the most retries, as a fraction of requests")
        .aliases(&["budget", "retry_ratio", "retry_percent"]),
    key("max_concurrent", "integer", "`1024`")
        .doc("the circuit breaker: requests in flight from one node's proxy")
        .aliases(&[
            "concurrency",
            "max_connections",
            "max_requests",
            "max_in_flight",
            "circuit_breaker",
        ]),
];

const SLO: &[KeyDef] = &[
    key("p99_ms", "integer", "unset")
        .doc("the latency 99% of requests stay under")
        .rule(Rule::Integer {
            min: 1,
            max: 600_000,
            example: 300,
            hint: "p99_ms is the latency 99% of requests stay under, in milliseconds, from 1 to 600000 (10 minutes)",
        })
        .aliases(&["p99", "latency", "latency_ms", "p99_latency", "p99_latency_ms"]),
    key("error_rate", "float", "unset")
        .doc("the largest fraction of requests that may fail")
        .aliases(&["errors", "error_ratio", "max_error_rate", "error_budget"]),
    key("availability", "float", "unset")
        .doc("the fraction of time the service must be available")
        .aliases(&["uptime", "available", "target", "objective"]),
];

const FORENSICS: &[KeyDef] = &[
    key("archive_on", "string", "required")
        .doc("`\"failure\"`: archive an instance each time it crashes, is killed for its memory or restarted by its liveness check; `\"never\"`")
        .aliases(&["on", "when", "trigger", "archive"]),
    key("keep", "duration", "`\"7d\"`")
        .doc("how long the control plane keeps each such archive before it is removed")
        .rule(Rule::Duration {
            min_ms: 60_000,
            max_ms: 3_650 * 86_400_000,
            example: "7d",
            hint: "it is how long each archive is kept, from 1m to 87600h (ten years); for example `keep = \"30d\"`",
        })
        .aliases(&["retention", "retain", "ttl", "keep_for", "expire_after"]),
];

const ENVIRONMENT: &[KeyDef] = &[table("config", "environment variables in this environment")];

/// A table of a service: its name, its keys, the keys a "write it as a table" hint shows, and
/// the driver it belongs to (with what it sets) when only one driver's services may have it.
pub(super) struct SectionDef {
    pub(super) section: Section,
    pub(super) name: &'static str,
    pub(super) keys: &'static [KeyDef],
    pub(super) example: &'static str,
    pub(super) driver: Option<(DriverKind, &'static str)>,
}

const fn section(
    section: Section,
    name: &'static str,
    keys: &'static [KeyDef],
    example: &'static str,
) -> SectionDef {
    SectionDef {
        section,
        name,
        keys,
        example,
        driver: None,
    }
}

/// Every table, in the order of [`Section`]'s variants (a test holds the two together).
pub(super) const SECTIONS: [SectionDef; 14] = [
    section(Section::Service, "", SERVICE, ""),
    section(Section::Scale, "scale", SCALE, "`replicas = 2`"),
    section(Section::Route, "route", ROUTE, "`public = true`"),
    section(Section::Health, "health", HEALTH, "`path = \"/healthz\"`"),
    section(
        Section::Liveness,
        "liveness",
        LIVENESS,
        "`path = \"/healthz\"`",
    ),
    section(
        Section::Resources,
        "resources",
        RESOURCES,
        "`cpu = 0.5` and `memory = \"128Mi\"`",
    ),
    section(
        Section::Placement,
        "placement",
        PLACEMENT,
        "`labels = { zone = \"eu-1\" }`",
    ),
    SectionDef {
        driver: Some((DriverKind::Wasm, "wasm limits")),
        ..section(
            Section::Wasm,
            "wasm",
            WASM,
            "`request_timeout = \"10s\"` and `max_concurrency = 100`",
        )
    },
    SectionDef {
        driver: Some((DriverKind::Container, "container settings")),
        ..section(
            Section::Container,
            "container",
            CONTAINER,
            "`capabilities = [\"NET_BIND_SERVICE\"]`",
        )
    },
    section(
        Section::Mesh,
        "mesh",
        MESH,
        "`allow_from = [\"web\"]` and `retries = 1`",
    ),
    section(
        Section::Slo,
        "slo",
        SLO,
        "`availability = 0.999` and `p99_ms = 300`",
    ),
    section(
        Section::Rollout,
        "rollout",
        ROLLOUT,
        "`strategy = \"recreate\"`",
    ),
    section(
        Section::Forensics,
        "forensics",
        FORENSICS,
        "`archive_on = \"failure\"` and `keep = \"7d\"`",
    ),
    // Per-environment values: `[service.NAME.environments.ENV]`.
    section(Section::Environment, "environments", ENVIRONMENT, ""),
];

impl Section {
    fn def(self) -> &'static SectionDef {
        &SECTIONS[self as usize]
    }

    /// The tables nested in a service's table, each with keys of its own.
    pub(super) fn nested() -> impl Iterator<Item = Section> {
        SECTIONS[1..]
            .iter()
            .map(|def| def.section)
            .filter(|s| *s != Section::Environment)
    }

    /// The keys this table allows.
    pub(super) fn keys(self) -> &'static [KeyDef] {
        self.def().keys
    }

    /// The names of the keys this table allows, in order.
    pub(super) fn names(self) -> Vec<&'static str> {
        self.keys().iter().map(|k| k.name).collect()
    }

    pub(super) fn allows(self, name: &str) -> bool {
        self.keys().iter().any(|k| k.name == name)
    }

    /// The definition of one of this table's keys.
    ///
    /// # Panics
    ///
    /// When the table has no such key: a mistake in the checker's code, never in the input
    /// (the schema test calls this for every key the checker asks for).
    pub(super) fn key(self, name: &str) -> &'static KeyDef {
        self.keys()
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("the schema of [{}] has no key `{name}`", self.name()))
    }

    /// The key this table has under another name people use for it.
    pub(super) fn alias(self, name: &str) -> Option<&'static str> {
        self.keys()
            .iter()
            .find(|k| k.aliases.contains(&name))
            .map(|k| k.name)
    }

    /// The key of this table in the service table.
    pub(super) fn name(self) -> &'static str {
        self.def().name
    }

    /// The keys to show in "write it as a table" when the section is not one.
    pub(super) fn example(self) -> &'static str {
        self.def().example
    }

    /// The driver a section belongs to, and what it sets, for a section of another driver's
    /// service.
    pub(super) fn driver(self) -> Option<(DriverKind, &'static str)> {
        self.def().driver
    }
}
