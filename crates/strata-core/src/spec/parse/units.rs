//! Sizes and durations as users write them (`"128Mi"`, `"1.5s"`) and as messages show them.

pub(super) enum MemoryError {
    Invalid,
    Unit(String, Option<String>),
    TooLarge,
}

/// Bytes of a memory size: `"128Mi"`, `"1G"`, `"1.5Gi"`, `"1048576"`.
pub(super) fn parse_memory(s: &str) -> Result<u64, MemoryError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(MemoryError::Invalid);
    }
    let multiplier: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => {
            // "mi" -> "Mi", "MB" -> "M", "MiB" -> "Mi"
            let mut fixed: String = other
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            if fixed.len() > 1 && fixed.ends_with('b') {
                fixed.pop();
            }
            let known = ["Ki", "Mi", "Gi", "Ti", "K", "M", "G", "T"];
            let suggestion = known
                .contains(&fixed.as_str())
                .then(|| format!("{number}{fixed}"));
            return Err(MemoryError::Unit(other.to_string(), suggestion));
        }
    };
    if number.contains('.') {
        let value: f64 = number.parse().map_err(|_| MemoryError::Invalid)?;
        let bytes = (value * multiplier as f64).round();
        if bytes >= u64::MAX as f64 {
            return Err(MemoryError::TooLarge);
        }
        Ok(bytes as u64)
    } else {
        let value: u64 = number.parse().map_err(|_| MemoryError::TooLarge)?;
        value.checked_mul(multiplier).ok_or(MemoryError::TooLarge)
    }
}

/// Bytes of a size as a flag gives it (`"1Gi"`, `"512Mi"`, `"1048576"`), or why not.
pub fn parse_size(text: &str) -> Result<u64, String> {
    parse_memory(text).map_err(|error| match error {
        MemoryError::Invalid => format!("`{text}` is not a size; write e.g. 512Mi or 1Gi"),
        MemoryError::Unit(unit, Some(fixed)) => {
            format!("`{text}`: unknown unit `{unit}`; did you mean {fixed}?")
        }
        MemoryError::Unit(unit, None) => {
            format!("`{text}`: unknown unit `{unit}`; use Ki, Mi, Gi, Ti (or K, M, G, T)")
        }
        MemoryError::TooLarge => format!("`{text}` is too large"),
    })
}

/// A memory size as the user would write it: `64Mi` when exact, else bytes.
pub(super) fn format_memory(bytes: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes / size * size == bytes {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

pub(super) fn format_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// A bound of a duration as docs/spec.md writes it: in the largest whole unit (`24h`, `1s`,
/// `50ms`).
pub(super) fn format_bound(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}
