//! The tables of a service and the keys each allows.

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
    Environment,
}

impl Section {
    pub(super) const NESTED: [Section; 10] = [
        Section::Scale,
        Section::Route,
        Section::Health,
        Section::Liveness,
        Section::Resources,
        Section::Placement,
        Section::Wasm,
        Section::Container,
        Section::Mesh,
        Section::Slo,
    ];

    pub(super) fn keys(self) -> &'static [&'static str] {
        match self {
            Section::Service => &[
                "driver",
                "artifact",
                "command",
                "args",
                "port",
                "stop_timeout",
                "min_ready",
                "scale",
                "route",
                "config",
                "environments",
                "health",
                "liveness",
                "resources",
                "placement",
                "wasm",
                "container",
                "mesh",
                "slo",
            ],
            Section::Scale => &[
                "replicas",
                "min",
                "max",
                "target_concurrency",
                "scale_to_zero_after",
            ],
            Section::Route => &["public", "hosts"],
            Section::Health => &[
                "path",
                "interval",
                "timeout",
                "healthy_threshold",
                "unhealthy_threshold",
            ],
            Section::Liveness => &["path", "interval", "timeout", "unhealthy_threshold"],
            Section::Resources => &["cpu", "memory"],
            Section::Placement => &["labels"],
            Section::Wasm => &["request_timeout", "max_concurrency"],
            Section::Container => &["capabilities", "pids"],
            Section::Mesh => &[
                "allow_from",
                "request_timeout",
                "retries",
                "retry_budget",
                "max_concurrent",
            ],
            Section::Slo => &["p99_ms", "error_rate", "availability"],
            Section::Environment => &["config"],
        }
    }

    /// The key of this table in the service table.
    pub(super) fn name(self) -> &'static str {
        match self {
            Section::Service => "",
            Section::Scale => "scale",
            Section::Route => "route",
            Section::Health => "health",
            Section::Liveness => "liveness",
            Section::Resources => "resources",
            Section::Placement => "placement",
            Section::Wasm => "wasm",
            Section::Container => "container",
            Section::Mesh => "mesh",
            Section::Slo => "slo",
            Section::Environment => "environments",
        }
    }
}
