//! `[slo]`: the service's objectives, and fractions written as floats.

use super::*;

impl<'s> Checker<'s> {
    /// `[slo]`: the objectives the autoscaler defends and `strata status` reports against. At
    /// least one key; none has a default.
    pub(super) fn slo(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> Option<SloSpec> {
        const SET_ONE: &str = "set at least one of `p99_ms` (milliseconds), `error_rate` and `availability` (fractions between 0 and 1), like `availability = 0.999`, or remove the table";
        let (key, item) = entry?;
        let hint = match item {
            Item::Value(Value::Float(f)) => Some(format!(
                "write it as a table: `slo = {{ availability = {} }}`",
                self.raw(f.span()).unwrap_or("0.999")
            )),
            _ => None,
        };
        let (path, table) = self.open_section((key, item), service, Section::Slo, None, hint)?;
        if table.is_empty() {
            self.push(
                key.span(),
                Some(path.to_string()),
                format!("`{path}` sets no objective"),
                Some(SET_ONE.into()),
            );
            return None;
        }
        let mut ok = true;
        let mut slo = SloSpec::default();
        if let Some((k, i)) = table.get_key_value("p99_ms") {
            let p = path.child("p99_ms");
            if let Item::Value(Value::String(s)) = i {
                // A duration where milliseconds are expected.
                let millis = humantime::parse_duration(s.value().trim())
                    .ok()
                    .and_then(|d| u64::try_from(d.as_millis()).ok());
                let hint = match millis {
                    Some(ms) => {
                        format!("p99_ms is a number of milliseconds: write `p99_ms = {ms}`")
                    }
                    None if s.value().trim().parse::<u64>().is_ok() => format!(
                        "write the number without quotes: `p99_ms = {}`",
                        s.value().trim()
                    ),
                    None => "p99_ms is a number of milliseconds, for example `p99_ms = 300`".into(),
                };
                self.type_error(&p, k, i, "an integer", hint);
                ok = false;
            } else {
                slo.p99_ms = self
                    .integer_key(&path, (k, i), Section::Slo, "p99_ms")
                    .map(u64::from);
                ok &= slo.p99_ms.is_some();
            }
        }
        if let Some((k, i)) = table.get_key_value("error_rate") {
            slo.error_rate = self.ratio(
                &path.child("error_rate"),
                k,
                i,
                "0.01",
                "error_rate is the largest fraction of requests that may fail, between 0 and 1 (exclusive): for example `error_rate = 0.01` (1%)",
            );
            ok &= slo.error_rate.is_some();
        }
        if let Some((k, i)) = table.get_key_value("availability") {
            slo.availability = self.ratio(
                &path.child("availability"),
                k,
                i,
                "0.999",
                "availability is the fraction of time the service must be up, between 0 and 1 (exclusive): for example `availability = 0.999` (99.9%)",
            );
            ok &= slo.availability.is_some();
        }
        ok.then_some(slo)
    }

    /// A fraction strictly between 0 and 1, written as a float, counted in millionths.
    pub(super) fn ratio(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        example: &str,
        meaning: &str,
    ) -> Option<Ratio> {
        const EXPECTED: &str = "a float between 0 and 1";
        let name = path.last();
        let fraction = |value: f64| format!("{}", (value * 1e6).round() / 1e6);
        let percent_hint = |value: f64| {
            (value > 1.0 && value < 100.0).then(|| {
                format!(
                    "it is a fraction, not a percentage: for {value}% write `{name} = {}`",
                    fraction(value / 100.0)
                )
            })
        };
        let (value, span) = match item {
            Item::Value(Value::Float(f)) => (*f.value(), f.span()),
            Item::Value(Value::Integer(i)) => {
                let n = *i.value();
                let hint = match n {
                    2..=99 => format!(
                        "write a fraction with a decimal point: for {n}% write `{name} = {}`",
                        fraction(n as f64 / 100.0)
                    ),
                    _ => meaning.to_string(),
                };
                self.type_error(path, key, item, EXPECTED, hint);
                return None;
            }
            _ => {
                let hint = match item {
                    Item::Value(Value::String(s)) => {
                        let text = s.value().trim();
                        let percent = text
                            .strip_suffix('%')
                            .and_then(|t| t.trim().parse::<f64>().ok())
                            .filter(|p| *p > 0.0 && *p < 100.0);
                        match (percent, text.parse::<f64>()) {
                            (Some(p), _) => {
                                format!("write a fraction: `{name} = {}`", fraction(p / 100.0))
                            }
                            (None, Ok(v)) if v.is_finite() => {
                                format!("write the number without quotes: `{name} = {text}`")
                            }
                            _ => meaning.to_string(),
                        }
                    }
                    _ => meaning.to_string(),
                };
                self.type_error(path, key, item, EXPECTED, hint);
                return None;
            }
        };
        let found = self
            .raw(span.clone())
            .map_or_else(|| value.to_string(), str::to_string);
        if !(value > 0.0 && value < 1.0) {
            let hint = percent_hint(value).unwrap_or_else(|| meaning.to_string());
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` must be between 0 and 1 (exclusive), found {found}"),
                Some(hint),
            );
            return None;
        }
        let ratio = Ratio::from_f64(value)?;
        if ratio.ppm() == 0 || ratio == Ratio::ONE {
            let (rounds_to, bound) = if ratio.ppm() == 0 {
                ("0", "at least 0.000001")
            } else {
                ("1", "at most 0.999999")
            };
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` is counted in millionths, and {found} rounds to {rounds_to}"),
                Some(format!("write {bound}; for example `{name} = {example}`")),
            );
            return None;
        }
        Some(ratio)
    }
}
