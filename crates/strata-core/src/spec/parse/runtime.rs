//! `[resources]`, `[wasm]` and `[container]`: what an instance may use and do.

use super::*;
use crate::spec::{RolloutSpec, RolloutStrategy};

impl<'s> Checker<'s> {
    pub(super) fn resources(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> Resources {
        let mut resources = Resources {
            cpu_millis: DEFAULT_CPU_MILLIS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        };
        let Some((path, table)) = entry
            .and_then(|entry| self.open_section(entry, service, Section::Resources, None, None))
        else {
            return resources;
        };
        if let Some((k, i)) = table.get_key_value("cpu") {
            if let Some(millis) = self.cpu(&path.child("cpu"), k, i) {
                resources.cpu_millis = millis;
            }
        }
        if let Some((k, i)) = table.get_key_value("memory") {
            if let Some(bytes) = self.memory(&path.child("memory"), k, i) {
                resources.memory_bytes = bytes;
            }
        }
        resources
    }

    /// `[wasm]`: the per-request deadline and the cap on concurrent instances of a wasm
    /// service. Only meaningful for `driver = "wasm"`.
    pub(super) fn wasm(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
        driver: Option<DriverKind>,
    ) -> Option<WasmLimits> {
        let (path, table) = self.open_section(entry?, service, Section::Wasm, driver, None)?;
        let mut limits = WasmLimits::default();
        if let Some(entry) = table.get_key_value("request_timeout") {
            if let Some(ms) = self.duration_key(&path, entry, Section::Wasm, "request_timeout") {
                limits.request_timeout_ms = Some(ms);
            }
        }
        if let Some((k, i)) = table.get_key_value("max_concurrency") {
            limits.max_concurrency =
                self.integer_key(&path, (k, i), Section::Wasm, "max_concurrency");
        }
        Some(limits)
    }

    /// `[rollout]`: how a new release replaces the old one.
    pub(super) fn rollout(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
    ) -> Option<RolloutSpec> {
        let (path, table) = self.open_section(entry?, service, Section::Rollout, None, None)?;
        let mut rollout = RolloutSpec::default();
        if let Some((k, i)) = table.get_key_value("strategy") {
            let p = path.child("strategy");
            if let Some((s, span)) = self.string(&p, k, i, "a string", "`strategy = \"canary\"`") {
                match s {
                    "rolling" => rollout.strategy = RolloutStrategy::Rolling,
                    "recreate" => rollout.strategy = RolloutStrategy::Recreate,
                    "canary" => rollout.strategy = RolloutStrategy::Canary,
                    "blue-green" | "blue_green" | "bluegreen" => {
                        rollout.strategy = RolloutStrategy::BlueGreen
                    }
                    other => {
                        let strategies = ["rolling", "recreate", "canary", "blue-green"];
                        let hint = match closest(other, &strategies) {
                            Some(s) => format!(
                                "did you mean `{s}`? The strategies are {}",
                                list(&strategies)
                            ),
                            None => format!("the strategies are {}", list(&strategies)),
                        };
                        self.push(
                            span,
                            Some(p.to_string()),
                            format!("`{p}`: unknown strategy `{other}`"),
                            Some(hint),
                        );
                    }
                }
            }
        }
        let progressive = rollout.strategy.is_progressive();
        // The analysis keys mean something only to a progressive rollout.
        for name in [
            "steps",
            "step_interval",
            "max_error_rate",
            "max_p99_ms",
            "min_requests",
        ] {
            let Some((k, i)) = table.get_key_value(name) else {
                continue;
            };
            let p = path.child(name);
            let only_canary = name == "steps";
            if !progressive || (only_canary && rollout.strategy == RolloutStrategy::BlueGreen) {
                let (message, hint) = if only_canary {
                    (
                        format!(
                            "`{p}` applies to `strategy = \"canary\"`, not `{}`",
                            rollout.strategy.as_str()
                        ),
                        "steps are a canary's shares of the traffic; set `strategy = \"canary\"` or remove `steps` (blue-green switches all the traffic at once)",
                    )
                } else {
                    (
                        format!(
                            "`{p}` applies to `strategy = \"canary\"` or `\"blue-green\"`, not `{}`",
                            rollout.strategy.as_str()
                        ),
                        "the analysis judges a canary's or a blue-green's new release; set one of those strategies or remove the key",
                    )
                };
                self.push(
                    i.span().or_else(|| k.span()),
                    Some(p.to_string()),
                    message,
                    Some(hint.to_string()),
                );
                continue;
            }
            match name {
                "steps" => {
                    if let Some(steps) = self.traffic_steps(&p, k, i) {
                        rollout.steps = steps;
                    }
                }
                "step_interval" => {
                    if let Some(ms) =
                        self.duration_key(&path, (k, i), Section::Rollout, "step_interval")
                    {
                        rollout.step_interval_ms = ms;
                    }
                }
                "max_error_rate" => {
                    rollout.analysis.max_error_rate = self.ratio(
                        &p,
                        k,
                        i,
                        "0.01",
                        "max_error_rate is how much more of the new release's requests may fail than the stable release's, between 0 and 1 (exclusive): for example `max_error_rate = 0.01` (1%)",
                    );
                }
                "max_p99_ms" => {
                    rollout.analysis.max_p99_ms = self
                        .integer_key(&path, (k, i), Section::Rollout, "max_p99_ms")
                        .map(u64::from);
                }
                _ => {
                    if let Some(n) =
                        self.integer_key(&path, (k, i), Section::Rollout, "min_requests")
                    {
                        rollout.analysis.min_requests = n;
                    }
                }
            }
        }
        if rollout.strategy == RolloutStrategy::Canary && rollout.steps.is_empty() {
            rollout.steps = RolloutSpec::DEFAULT_CANARY_STEPS.to_vec();
        }
        Some(rollout)
    }

    /// A canary's `steps`: percentages (`"25%"` or `25`), each 1 to 100, increasing, the last
    /// 100.
    fn traffic_steps(&mut self, path: &Path, key: &Key, item: &Item) -> Option<Vec<u8>> {
        const EXAMPLE: &str = "`steps = [\"5%\", \"25%\", \"50%\", \"100%\"]`";
        let Some(array) = item.as_array() else {
            self.type_error(
                path,
                key,
                item,
                "an array of percentages",
                format!("for example {EXAMPLE}"),
            );
            return None;
        };
        let mut steps: Vec<u8> = Vec::new();
        for value in array.iter() {
            let span = value.span().or_else(|| item.span());
            let percent = match value {
                Value::String(s) => {
                    let text = s.value().trim();
                    text.strip_suffix('%')
                        .unwrap_or(text)
                        .trim()
                        .parse::<i64>()
                        .ok()
                }
                Value::Integer(n) => Some(*n.value()),
                _ => None,
            };
            let Some(percent) = percent.filter(|p| (1..=100).contains(p)) else {
                let shown = self.raw(value.span()).unwrap_or("?").to_string();
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("`{path}`: step {shown} is not a percentage from 1% to 100%"),
                    Some(format!("each step is the new release's share of the traffic; for example {EXAMPLE}")),
                );
                return None;
            };
            let percent = percent as u8;
            if let Some(&last) = steps.last() {
                if percent <= last {
                    self.push(
                        span,
                        Some(path.to_string()),
                        format!(
                            "`{path}`: the steps must increase, but {percent}% follows {last}%"
                        ),
                        Some(format!(
                            "list each share once, smallest first; for example {EXAMPLE}"
                        )),
                    );
                    return None;
                }
            }
            steps.push(percent);
        }
        if steps.last() != Some(&100) {
            let last = steps
                .last()
                .map_or("nothing".to_string(), |last| format!("{last}%"));
            self.push(
                item.span().or_else(|| key.span()),
                Some(path.to_string()),
                format!("`{path}` must end at 100%, but ends at {last}"),
                Some(format!(
                    "the last step gives the new release all the traffic; for example {EXAMPLE}"
                )),
            );
            return None;
        }
        Some(steps)
    }

    /// `[container]`: what a container service may do beyond the default isolation.
    pub(super) fn container(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
        driver: Option<DriverKind>,
    ) -> Option<ContainerSettings> {
        let (path, table) = self.open_section(entry?, service, Section::Container, driver, None)?;
        let mut settings = ContainerSettings::default();
        if let Some((k, i)) = table.get_key_value("capabilities") {
            let p = path.child("capabilities");
            if let Some((names, span)) =
                self.string_list(&p, k, i, "capabilities", "[\"NET_BIND_SERVICE\"]")
            {
                for name in &names {
                    let upper = name.trim().to_ascii_uppercase();
                    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_string();
                    if CAPABILITIES.contains(&bare.as_str()) {
                        if !settings.capabilities.contains(&bare) {
                            settings.capabilities.push(bare);
                        }
                    } else {
                        let prefixed = CAPABILITIES
                            .iter()
                            .find(|c| !bare.is_empty() && c.starts_with(bare.as_str()))
                            .copied();
                        let hint = match prefixed.or_else(|| closest(&bare, &CAPABILITIES)) {
                            Some(c) => format!("did you mean `{c}`? Capabilities are named as in capabilities(7), without `CAP_`"),
                            None => "capabilities are named as in capabilities(7), e.g. `NET_BIND_SERVICE`".into(),
                        };
                        self.push(
                            span.clone(),
                            Some(p.to_string()),
                            format!("`{p}`: {} is not a Linux capability", quote(name)),
                            Some(hint),
                        );
                    }
                }
            }
        }
        if let Some((k, i)) = table.get_key_value("pids") {
            settings.pids = self.integer_key(&path, (k, i), Section::Container, "pids");
        }
        if let Some((k, i)) = table.get_key_value("userns") {
            settings.userns = self.boolean(&path.child("userns"), k, i, false);
        }
        Some(settings)
    }

    pub(super) fn cpu(&mut self, path: &Path, key: &Key, item: &Item) -> Option<u64> {
        const EXAMPLE: &str =
            "for example `cpu = 0.5` (half a core) or `cpu = \"500m\"` (500 millicores)";
        let (cores, span) = match item {
            Item::Value(Value::Integer(i)) => (*i.value() as f64, i.span()),
            Item::Value(Value::Float(f)) => (*f.value(), f.span()),
            Item::Value(Value::String(s)) => {
                let text = s.value().trim();
                if let Some(m) = text.strip_suffix('m') {
                    match m.trim().parse::<u64>() {
                        Ok(millis) if (1..=MAX_CPU_MILLIS).contains(&millis) => {
                            return Some(millis)
                        }
                        Ok(millis) => {
                            self.push(
                                s.span(),
                                Some(path.to_string()),
                                format!("`{path}` must be between 1m and 1024000m (1024 cores), found {millis}m"),
                                Some(EXAMPLE.into()),
                            );
                            return None;
                        }
                        Err(_) => {}
                    }
                } else if let Ok(cores) = text.parse::<f64>() {
                    return self.cores(path, s.span(), cores);
                }
                self.push(
                    s.span(),
                    Some(path.to_string()),
                    format!("`{path}` is not a CPU amount: {}", quote(s.value())),
                    Some(EXAMPLE.into()),
                );
                return None;
            }
            _ => {
                self.type_error(
                    path,
                    key,
                    item,
                    "a number of cores or a string of millicores",
                    EXAMPLE.into(),
                );
                return None;
            }
        };
        self.cores(path, span, cores)
    }

    pub(super) fn cores(
        &mut self,
        path: &Path,
        span: Option<Range<usize>>,
        cores: f64,
    ) -> Option<u64> {
        let raw = self.raw(span.clone()).unwrap_or("").to_string();
        let problem = if !cores.is_finite() || cores <= 0.0 {
            Some(format!("`{path}` must be more than 0, found {raw}"))
        } else if cores > 1024.0 {
            Some(format!("`{path}` must be at most 1024 cores, found {raw}"))
        } else if (cores * 1000.0).round() < 1.0 {
            Some(format!(
                "`{path}` must be at least 0.001 (one millicore), found {raw}"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            self.push(
                span,
                Some(path.to_string()),
                message,
                Some(
                    "for example `cpu = 0.5` (half a core) or `cpu = \"500m\"` (500 millicores)"
                        .into(),
                ),
            );
            return None;
        }
        Some((cores * 1000.0).round() as u64)
    }

    pub(super) fn memory(&mut self, path: &Path, key: &Key, item: &Item) -> Option<u64> {
        const UNITS: &str =
            "units are Ki, Mi, Gi, Ti (powers of 1024) and K, M, G, T (powers of 1000), as in \"128Mi\"";
        let (bytes, span) = match item {
            Item::Value(Value::Integer(i)) => {
                let value = *i.value();
                let Ok(bytes) = u64::try_from(value) else {
                    self.push(
                        i.span(),
                        Some(path.to_string()),
                        format!("`{path}` must be more than 0, found {value}"),
                        Some("for example `memory = \"128Mi\"`".into()),
                    );
                    return None;
                };
                (bytes, i.span())
            }
            Item::Value(Value::String(s)) => match parse_memory(s.value()) {
                Ok(bytes) => (bytes, s.span()),
                Err(err) => {
                    let (message, hint) = match err {
                        MemoryError::Invalid => (
                            format!("`{path}` is not a memory size: {}", quote(s.value())),
                            format!("write a number and a unit; {UNITS}"),
                        ),
                        MemoryError::Unit(unit, Some(suggestion)) => (
                            format!("unknown memory unit `{unit}` in `{path}`"),
                            format!("did you mean {}? {UNITS}", quote(&suggestion)),
                        ),
                        MemoryError::Unit(unit, None) => (
                            format!("unknown memory unit `{unit}` in `{path}`"),
                            UNITS.to_string(),
                        ),
                        MemoryError::TooLarge => (
                            format!("`{path}` is too large: {}", quote(s.value())),
                            "for example `memory = \"128Mi\"`".into(),
                        ),
                    };
                    self.push(s.span(), Some(path.to_string()), message, Some(hint));
                    return None;
                }
            },
            _ => {
                self.type_error(
                    path,
                    key,
                    item,
                    "a number of bytes or a string like \"128Mi\"",
                    "for example `memory = \"128Mi\"`".into(),
                );
                return None;
            }
        };
        if bytes < MIN_MEMORY_BYTES {
            let found = self
                .raw(span.clone())
                .map_or_else(|| format_memory(bytes), str::to_string);
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` must be at least 1Mi, found {found}"),
                Some(
                    "memory is in bytes unless it has a unit; for example `memory = \"64Mi\"`"
                        .into(),
                ),
            );
            return None;
        }
        Some(bytes)
    }
}
