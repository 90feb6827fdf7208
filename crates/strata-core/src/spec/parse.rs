//! Parsing a spec file: TOML text in, a validated [`SpecFile`] or every problem found out.
//!
//! The text is parsed with `toml_edit`, whose tree keeps the byte span of every key and value,
//! and then walked by hand: each table's keys are checked against the keys it allows, each value
//! against the type and range it must have. Every problem becomes a [`SpecError`] pointing at
//! the exact key or value, with a hint; all of them are collected in one pass and returned
//! sorted by position. docs/spec.md describes the format for users.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Key, TableLike, TomlError, Value};

use super::{
    AutoscaleSpec, ContainerSettings, DriverKind, HealthSpec, LivenessSpec, MeshSettings, PortSpec,
    Ratio, RouteSpec, ScaleSpec, ServiceSpec, SloSpec, SpecFile, WasmLimits, DEFAULT_MIN_READY_MS,
};
use crate::model::Resources;

const DEFAULT_STOP_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_INTERVAL_MS: u64 = 1_000;
const DEFAULT_TIMEOUT_MS: u64 = 500;
const MIN_INTERVAL_MS: u64 = 50;
const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;
const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
const MAX_THRESHOLD: i64 = 100;
const MAX_MIN_READY_MS: u64 = 3_600_000;
const DEFAULT_REPLICAS: u32 = 1;
const MAX_REPLICAS: i64 = 1_000;
const MAX_TARGET_CONCURRENCY: i64 = 10_000;
const MIN_SCALE_TO_ZERO_AFTER_MS: u64 = 1_000;
const MAX_SCALE_TO_ZERO_AFTER_MS: u64 = 24 * 3_600_000;
const MAX_SLO_P99_MS: i64 = 600_000;
const MAX_WASM_CONCURRENCY: i64 = 10_000;
const MAX_CONTAINER_PIDS: i64 = 1_000_000;
/// Linux capabilities (capabilities(7)), without the `CAP_` prefix.
const CAPABILITIES: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];
const MAX_WASM_REQUEST_TIMEOUT_MS: u64 = 3_600_000;
const MAX_MESH_REQUEST_TIMEOUT_MS: u64 = 3_600_000;
const MAX_MESH_RETRIES: i64 = 5;
const SERVICE_NAME_RULE: &str = "lowercase letters, digits and -";
const DEFAULT_CPU_MILLIS: u64 = 100;
const MAX_CPU_MILLIS: u64 = 1_024_000;
const MI: u64 = 1 << 20;
const DEFAULT_MEMORY_BYTES: u64 = 64 * MI;
const MIN_MEMORY_BYTES: u64 = MI;
const MAX_LABEL_LEN: usize = 63;
const LABEL_KEY_RULE: &str = "a label key is 1 to 63 letters, digits, `.`, `_` and `-`, optionally after a prefix of the same and a `/`, like `zone` or `\"example.com/tier\"`";
const LABEL_VALUE_RULE: &str =
    "a label value is 1 to 63 letters, digits, `.`, `_` and `-`, like \"eu-1\"";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One problem in a spec file, pointing at the key or value at fault.
///
/// `Display` prints `{file}:{line}:{column}: {message}` and, when there is a hint, a second line
/// `  hint: {hint}`. [`SpecError::render`] adds the offending source line with a caret under it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The spec file's path as shown to the user.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The dotted path of the key at fault, like `service.hello.scale.replicas`.
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl SpecError {
    /// An error at a known line and column (1-based).
    pub fn new(
        file: impl Into<String>,
        line: usize,
        column: usize,
        key: Option<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        SpecError {
            file: file.into(),
            line,
            column,
            key,
            message: message.into(),
            hint,
        }
    }

    /// An error at a byte span of `source` (only its start matters); the line and column are
    /// computed from it, the column counted in characters. Out-of-range offsets are clamped.
    pub fn at(
        file: &str,
        source: &str,
        byte_span: Range<usize>,
        key: Option<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        let (line, column) = line_col(source, byte_span.start);
        SpecError::new(file, line, column, key, message, hint)
    }

    /// An error at the key `key_path` (a dotted path split into segments, as for [`locate`]),
    /// for problems found after parsing, e.g. an artifact file that does not exist. Falls back
    /// to line 1, column 1 when the key is not in `source`.
    pub fn at_key(
        file: &str,
        source: &str,
        key_path: &[&str],
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        let (line, column) = locate(source, key_path).unwrap_or((1, 1));
        let key = if key_path.first() == Some(&"service") || key_path.is_empty() {
            Path::from_segments(key_path)
        } else {
            Path::from_segments(&[&["service"], key_path].concat())
        };
        SpecError::new(file, line, column, Some(key.to_string()), message, hint)
    }

    /// The error as the user should see it, with the source line it points at:
    ///
    /// ```text
    /// strata.toml:5:1: unknown key `service.hello.scale.replcas`
    ///    5 | replcas = 2
    ///      | ^^^^^^^
    ///   hint: did you mean `replicas`?
    /// ```
    pub fn render(&self, source: &str) -> String {
        let mut out = format!(
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        );
        if let Some(snippet) = snippet(source, self.line, self.column) {
            out.push('\n');
            out.push_str(&snippet);
        }
        if let Some(hint) = &self.hint {
            out.push_str("\n  hint: ");
            out.push_str(hint);
        }
        out
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a spec file, sorted by position; never empty when returned by
/// [`parse`]. `Display` prints each error, with a blank line between them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, SpecError> {
        self.0.iter()
    }

    /// Every error rendered with its source line (see [`SpecError::render`]), with a blank line
    /// between them. `source` is the text given to [`parse`].
    pub fn render(&self, source: &str) -> String {
        self.0
            .iter()
            .map(|e| e.render(source))
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "\n\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a SpecErrors {
    type Item = &'a SpecError;
    type IntoIter = std::slice::Iter<'a, SpecError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// 1-based line and column (in characters) of a byte offset, clamped to the text.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

/// `   5 | text` and a caret line under the token at `column`.
fn snippet(source: &str, line: usize, column: usize) -> Option<String> {
    let text = source.split('\n').nth(line.checked_sub(1)?)?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    let width = line.to_string().len().max(4);
    let pad: String = text
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let rest: String = text.chars().skip(column.saturating_sub(1)).collect();
    let carets = "^".repeat(token_len(&rest).max(1));
    Some(format!(
        "{line:>width$} | {text}\n{blank:>width$} | {pad}{carets}",
        blank = ""
    ))
}

/// How many characters the TOML token at the start of `rest` spans, roughly (for carets).
fn token_len(rest: &str) -> usize {
    let chars: Vec<char> = rest.chars().collect();
    let Some(&first) = chars.first() else {
        return 1;
    };
    match first {
        '"' | '\'' => {
            let mut escaped = false;
            for (i, &c) in chars.iter().enumerate().skip(1) {
                if escaped {
                    escaped = false;
                } else if c == '\\' && first == '"' {
                    escaped = true;
                } else if c == first {
                    return i + 1;
                }
            }
            chars.len()
        }
        '[' | '{' => {
            let close = if first == '[' { ']' } else { '}' };
            let mut depth = 0usize;
            let mut quote: Option<char> = None;
            for (i, &c) in chars.iter().enumerate() {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if c == '"' || c == '\'' => quote = Some(c),
                    None if c == first => depth += 1,
                    None if c == close => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    None => {}
                }
            }
            rest.trim_end().chars().count()
        }
        _ => {
            let numeric = first.is_ascii_digit() || first == '+' || first == '-';
            1 + chars[1..]
                .iter()
                .take_while(|&&c| {
                    !(c.is_whitespace()
                        || matches!(c, '=' | ',' | ']' | '}' | '[' | '{' | '#')
                        || (c == '.' && !numeric))
                })
                .count()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Key paths
// ---------------------------------------------------------------------------------------------

/// A dotted key path; segments that are not bare TOML keys are quoted when displayed.
#[derive(Debug, Clone, Default)]
struct Path(Vec<String>);

impl Path {
    fn from_segments(segments: &[&str]) -> Path {
        Path(segments.iter().map(|s| s.to_string()).collect())
    }

    fn child(&self, segment: &str) -> Path {
        let mut segments = self.0.clone();
        segments.push(segment.to_string());
        Path(segments)
    }

    fn index(&self, i: usize) -> String {
        format!("{self}[{i}]")
    }

    fn last(&self) -> &str {
        self.0.last().map_or("", String::as_str)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{}", display_key(segment))?;
        }
        Ok(())
    }
}

fn is_bare_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A key as it would be written in TOML: bare if possible, else quoted.
fn display_key(s: &str) -> String {
    if is_bare_key(s) {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

// ---------------------------------------------------------------------------------------------
// Locating keys after parsing
// ---------------------------------------------------------------------------------------------

/// Where a key of a service is written in the source (line, column, 1-based), for errors found
/// after parsing (e.g. a missing artifact file).
///
/// `key_path` is the dotted path split into segments, from the top of the file:
/// `["service", "hello", "artifact"]`. A path that does not start with `service` is also tried
/// relative to the `service` table (`["hello", "artifact"]`). Returns `None` when the key is not
/// written in the source or the source is not valid TOML.
pub fn locate(source: &str, key_path: &[&str]) -> Option<(usize, usize)> {
    let doc = ImDocument::parse(source).ok()?;
    let root: &dyn TableLike = doc.as_table();
    let span = find_key(root, key_path).or_else(|| {
        if key_path.first() == Some(&"service") {
            None
        } else {
            find_key(root.get("service")?.as_table_like()?, key_path)
        }
    })?;
    Some(line_col(source, span.start))
}

fn find_key(root: &dyn TableLike, key_path: &[&str]) -> Option<Range<usize>> {
    let (last, parents) = key_path.split_last()?;
    let mut table = root;
    for segment in parents {
        table = table.get(segment)?.as_table_like()?;
    }
    table.get_key_value(last)?.0.span()
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses a spec file. `file` is the path as shown to the user in errors; `source` is its text.
///
/// On success every default is filled in. On failure, every problem found (all of them, not
/// just the first) is returned sorted by position. Never panics.
pub fn parse(file: &str, source: &str) -> Result<SpecFile, SpecErrors> {
    let mut cx = Checker {
        file,
        source,
        errors: Vec::new(),
    };
    let services = match ImDocument::parse(source) {
        Ok(doc) => cx.document(doc.as_table()),
        Err(err) => {
            let error = cx.syntax_error(&err);
            cx.errors.push(error);
            Vec::new()
        }
    };
    if cx.errors.is_empty() {
        return Ok(SpecFile { services });
    }
    let mut errors = cx.errors;
    errors.sort_by_key(|e| (e.line, e.column));
    errors.dedup();
    Err(SpecErrors(errors))
}

/// The tables of a service, for checking keys and telling where a misplaced key belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
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
    const NESTED: [Section; 10] = [
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

    fn keys(self) -> &'static [&'static str] {
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
    fn name(self) -> &'static str {
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

/// The fields `[health]` and `[liveness]` share.
struct Probe {
    path: Option<String>,
    interval_ms: u64,
    timeout_ms: u64,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

struct Checker<'s> {
    file: &'s str,
    source: &'s str,
    errors: Vec<SpecError>,
}

/// Where to point for a problem with a value: the value itself if it is written inline, else
/// its key (a `[table]` header's span starts at the bracket, the key is more precise).
fn value_span(key: &Key, item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(v) => v.span().or_else(|| key.span()),
        _ => key.span(),
    }
}

/// "a string", "an integer", ... for "found ..." messages.
fn describe(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => describe_value(v),
    }
}

fn describe_value(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// The closest of `candidates` to `name`, if close enough to be a likely typo.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_lowercase().replace('-', "_");
    let mut best: Option<(usize, f64, &'a str)> = None;
    for &candidate in candidates {
        let distance = strsim::damerau_levenshtein(&lower, candidate);
        let similarity = strsim::jaro_winkler(&lower, candidate);
        let allowed = match candidate.chars().count().max(lower.chars().count()) {
            0..=3 => 1,
            4..=7 => 2,
            _ => 3,
        };
        if distance > allowed && similarity < 0.9 {
            continue;
        }
        let better = match best {
            None => true,
            Some((d, s, _)) => distance < d || (distance == d && similarity > s),
        };
        if better {
            best = Some((distance, similarity, candidate));
        }
    }
    best.map(|(_, _, candidate)| candidate)
}

/// "`a`, `b` and `c`".
fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{s}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// A valid DNS label resembling `s`.
fn suggest_label(s: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut label: String = out
        .trim_start_matches(|c: char| !c.is_ascii_lowercase())
        .chars()
        .take(63)
        .collect();
    while label.ends_with('-') {
        label.pop();
    }
    if label.is_empty() {
        fallback.to_string()
    } else {
        label
    }
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn suggest_env_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label value, or one side of a label key's `/`: 1 to 63 of `[A-Za-z0-9._-]`.
fn is_label_part(s: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A node label key: a name, or a prefix, `/` and a name (`example.com/tier`).
fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_label_part(prefix) && is_label_part(name),
        None => is_label_part(s),
    }
}

/// A valid label part resembling `s`: other characters become `-`, cut to 63 characters.
fn suggest_label_part(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.chars().take(MAX_LABEL_LEN).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// A valid label key resembling `s`, if there is one.
fn suggest_label_key(s: &str) -> Option<String> {
    let suggestion = match s.split_once('/') {
        Some((prefix, name)) => {
            let (prefix, name) = (suggest_label_part(prefix), suggest_label_part(name));
            match (prefix.is_empty(), name.is_empty()) {
                (false, false) => format!("{prefix}/{name}"),
                (true, _) => name,
                (false, true) => prefix,
            }
        }
        None => suggest_label_part(s),
    };
    (is_label_key(&suggestion) && suggestion != s).then_some(suggestion)
}

/// A host name, lowercased; or why it is not valid and a hint.
fn check_host(host: &str) -> Result<String, (String, String)> {
    let before = |s: &str, chars: &[char]| -> String {
        s.split(|c| chars.contains(&c))
            .next()
            .unwrap_or("")
            .to_string()
    };
    let just = |h: String| {
        if h.is_empty() {
            "a host name looks like \"hello.example.com\"".to_string()
        } else {
            format!("write just the host name: {}", quote(&h))
        }
    };
    if let Some((_, rest)) = host.split_once("://") {
        return Err((
            "must be a host name, not a URL".into(),
            just(before(rest, &['/', ':', '?'])),
        ));
    }
    if host.contains('/') {
        return Err((
            "must be a host name, without a path".into(),
            just(before(host, &['/', ':'])),
        ));
    }
    if host.contains(':') {
        return Err((
            "must be a host name, without a port".into(),
            just(before(host, &[':'])),
        ));
    }
    if host.starts_with("*.") {
        return Err((
            "cannot be a wildcard".into(),
            "list each host name, like \"hello.example.com\"".into(),
        ));
    }
    let lower = host.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower.len() <= 253
        && lower.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        });
    if valid {
        return Ok(lower);
    }
    let labels: Vec<String> = lower
        .split('.')
        .map(|l| suggest_label(l, ""))
        .filter(|l| !l.is_empty())
        .collect();
    let suggestion = labels.join(".");
    let hint = if suggestion.is_empty() || suggestion == lower {
        "a host name is labels of letters, digits and `-` separated by dots, like \"hello.example.com\"".to_string()
    } else {
        format!("did you mean {}?", quote(&suggestion))
    };
    Err(("is not a valid host name".into(), hint))
}

enum MemoryError {
    Invalid,
    Unit(String, Option<String>),
    TooLarge,
}

/// Bytes of a memory size: `"128Mi"`, `"1G"`, `"1.5Gi"`, `"1048576"`.
fn parse_memory(s: &str) -> Result<u64, MemoryError> {
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
fn format_memory(bytes: u64) -> String {
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

fn format_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// A TOML string literal for `s`.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// `["a", "b"]` from the words of a string.
fn words_array(s: &str) -> String {
    let words: Vec<String> = s.split_whitespace().map(quote).collect();
    format!("[{}]", words.join(", "))
}

/// `{ zone = "eu-1", disk = "ssd" }` from `zone=eu-1,disk=ssd` (as given to an agent's
/// `--labels`), if it is that form.
fn labels_table(s: &str) -> Option<String> {
    let pairs: Option<Vec<String>> = s
        .split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty()).then(|| format!("{} = {}", display_key(k), quote(v)))
        })
        .collect();
    Some(format!("{{ {} }}", pairs?.join(", ")))
}

/// The segments of a (possibly dotted) TOML key starting at byte `at` (after blanks), with the
/// byte span of each segment.
fn scan_key_path(source: &str, at: usize) -> Option<Vec<(String, Range<usize>)>> {
    let bytes = source.as_bytes();
    let mut i = at;
    let skip_blanks = |mut i: usize| {
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        i
    };
    let mut segments = Vec::new();
    loop {
        i = skip_blanks(i);
        let start = i;
        let name = match bytes.get(i)? {
            b'"' => {
                let mut name = String::new();
                let mut chars = source.get(i + 1..)?.char_indices();
                loop {
                    let (j, c) = chars.next()?;
                    match c {
                        '"' => {
                            i = i + 1 + j + 1;
                            break;
                        }
                        '\\' => {
                            let (_, escaped) = chars.next()?;
                            name.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        '\n' => return None,
                        c => name.push(c),
                    }
                }
                name
            }
            b'\'' => {
                let rest = source.get(i + 1..)?;
                let end = rest.find(['\'', '\n'])?;
                if !rest[end..].starts_with('\'') {
                    return None;
                }
                i = i + 1 + end + 1;
                rest[..end].to_string()
            }
            _ => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
                {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                source[start..i].to_string()
            }
        };
        segments.push((name, start..i));
        i = skip_blanks(i);
        if bytes.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some(segments);
        }
    }
}

impl<'s> Checker<'s> {
    fn push(
        &mut self,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: String,
        hint: Option<String>,
    ) {
        let span = span.unwrap_or(0..0);
        self.errors.push(SpecError::at(
            self.file,
            self.source,
            span,
            key,
            message,
            hint,
        ));
    }

    fn raw(&self, span: Option<Range<usize>>) -> Option<&'s str> {
        self.source.get(span?)
    }

    /// Turns toml_edit's syntax error into ours, rewording duplicates and adding hints.
    fn syntax_error(&self, err: &TomlError) -> SpecError {
        let message = err.message().trim();
        let span = err.span();
        if message.contains("duplicate key") {
            if let Some(error) = self.duplicate(message, span.clone()) {
                return error;
            }
        }
        let lines: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let text = if lines.is_empty() {
            "invalid TOML".to_string()
        } else {
            lines.join(": ")
        };
        let offset = span.map_or(0, |s| s.start);
        let hint = self.syntax_hint(message, offset);
        SpecError::at(self.file, self.source, offset..offset, None, text, hint)
    }

    fn syntax_hint(&self, message: &str, offset: usize) -> Option<String> {
        let offset = offset.min(self.source.len());
        let rest = self.source.get(offset..)?;
        let line_start = self.source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let before = &self.source[line_start..offset];
        if message.starts_with("invalid string") {
            let word: String = rest
                .chars()
                .take_while(|c| !(c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#')))
                .collect();
            if !word.is_empty() {
                return Some(format!(
                    "strings are quoted in TOML: `{}{}`",
                    before.trim_start(),
                    quote(&word)
                ));
            }
            return Some("a value is missing after `=`".into());
        }
        if message.starts_with("invalid basic string")
            || message.starts_with("invalid literal string")
        {
            return Some(
                "close the string with a quote on the same line (use \"\"\" for text over several lines)"
                    .into(),
            );
        }
        if message.starts_with("invalid table header") {
            return Some("a table header looks like `[service.hello]`".into());
        }
        if message.contains("expected `.`, `=`") {
            return Some("a key is followed by `=` and a value, like `replicas = 2`".into());
        }
        None
    }

    /// Rewords toml_edit's "duplicate key" errors.
    fn duplicate(&self, message: &str, span: Option<Range<usize>>) -> Option<SpecError> {
        let offset = span?.start;
        let rest = self.source.get(offset..)?;
        if rest.starts_with('[') {
            let inner = offset + if rest.starts_with("[[") { 2 } else { 1 };
            let segments = scan_key_path(self.source, inner)?;
            let (last, _) = segments.split_last()?;
            let names: Vec<&str> = segments.iter().map(|(s, _)| s.as_str()).collect();
            let path = Path::from_segments(&names);
            let (text, hint) = if names.len() == 2 && names[0] == "service" {
                (
                    format!("service `{}` is defined twice", names[1]),
                    "rename one of them or merge the two tables".to_string(),
                )
            } else {
                (
                    format!("table `{path}` is defined twice"),
                    format!("merge the two [{path}] tables into one"),
                )
            };
            return Some(SpecError::at(
                self.file,
                self.source,
                last.1.clone(),
                Some(path.to_string()),
                text,
                Some(hint),
            ));
        }
        let segments = scan_key_path(self.source, offset)?;
        let table: Vec<String> = if let Some(i) = message.find("in table `") {
            let inner = &message[i + "in table `".len()..];
            let inner = &inner[..inner.rfind('`')?];
            inner.split('.').map(str::to_string).collect()
        } else if message.contains("in document root") {
            Vec::new()
        } else {
            self.header_before(offset)
        };
        let mut names = table;
        names.extend(segments.iter().map(|(s, _)| s.clone()));
        let path = Path(names);
        Some(SpecError::at(
            self.file,
            self.source,
            segments.first()?.1.clone(),
            Some(path.to_string()),
            format!("`{path}` is set twice"),
            Some("remove one of them".into()),
        ))
    }

    /// The key path of the last `[table]` header before `offset`.
    fn header_before(&self, offset: usize) -> Vec<String> {
        let mut pos = 0;
        let mut header = Vec::new();
        for line in self.source[..offset.min(self.source.len())].split_inclusive('\n') {
            let trimmed = line.trim_start();
            if trimmed.starts_with('[') {
                let at = pos + (line.len() - trimmed.len());
                let inner = at + if trimmed.starts_with("[[") { 2 } else { 1 };
                if let Some(segments) = scan_key_path(self.source, inner) {
                    header = segments.into_iter().map(|(s, _)| s).collect();
                }
            }
            pos += line.len();
        }
        header
    }

    // -- documents and services ----------------------------------------------------------------

    fn document(&mut self, root: &dyn TableLike) -> Vec<ServiceSpec> {
        const NO_SERVICES: &str = "no services defined; add a [service.NAME] table";
        const MINIMAL: &str =
            "a minimal service is `[service.hello]` with `artifact = \"build/hello\"`";
        let mut services = Vec::new();
        let mut service_seen = false;
        let mut unknown_seen = false;
        for (name, _) in root.iter() {
            let Some((key, item)) = root.get_key_value(name) else {
                continue;
            };
            if name != "service" {
                self.unknown_top_level(name, key, item);
                unknown_seen = true;
                continue;
            }
            service_seen = true;
            let Some(table) = item.as_table_like() else {
                let hint = match item {
                    Item::ArrayOfTables(_) => {
                        "name each service: write [service.hello] instead of [[service]]".into()
                    }
                    _ => "declare each service as a table: [service.hello]".into(),
                };
                self.push(
                    value_span(key, item),
                    Some("service".into()),
                    format!(
                        "`service` must be a table of named services, found {}",
                        describe(item)
                    ),
                    Some(hint),
                );
                continue;
            };
            if table.is_empty() {
                self.push(
                    key.span(),
                    Some("service".into()),
                    NO_SERVICES.into(),
                    Some(MINIMAL.into()),
                );
                continue;
            }
            let mut entries: Vec<(&Key, &Item)> = table
                .iter()
                .filter_map(|(n, _)| table.get_key_value(n))
                .collect();
            entries.sort_by_key(|(k, _)| k.span().map_or(0, |s| s.start));
            for (key, item) in entries {
                if let Some(spec) = self.service(key, item) {
                    services.push(spec);
                }
            }
        }
        // An unknown top-level key's hint already tells where services go.
        if !service_seen && !unknown_seen {
            self.push(Some(0..0), None, NO_SERVICES.into(), Some(MINIMAL.into()));
        }
        services
    }

    fn unknown_top_level(&mut self, name: &str, key: &Key, item: &Item) {
        let hint = if let Some(s) = closest(name, &["service"]) {
            format!("did you mean `{s}`?")
        } else if Section::Service.keys().contains(&name)
            || Section::NESTED.iter().any(|s| s.keys().contains(&name))
        {
            format!("`{name}` belongs in a service's table, under [service.NAME]")
        } else if item.is_table_like() {
            format!(
                "services are declared under `service`: write [service.{}]",
                display_key(&suggest_label(name, "hello"))
            )
        } else {
            "the only top-level table is `service`, as in [service.hello]".into()
        };
        self.push(
            key.span(),
            Some(display_key(name)),
            format!("unknown key `{}`", display_key(name)),
            Some(hint),
        );
    }

    /// Checks that every key of `table` is allowed in `section`.
    fn check_keys(&mut self, table: &dyn TableLike, path: &Path, service: &Path, section: Section) {
        let allowed = section.keys();
        for (name, item) in table.iter() {
            if allowed.contains(&name) {
                continue;
            }
            let key = table.get_key_value(name).map(|(k, _)| k);
            let span = key.and_then(Key::span);
            let hint = self.unknown_key_hint(name, item, path, service, section);
            self.push(
                span,
                Some(path.child(name).to_string()),
                format!("unknown key `{}`", path.child(name)),
                Some(hint),
            );
        }
    }

    fn unknown_key_hint(
        &self,
        name: &str,
        item: &Item,
        path: &Path,
        service: &Path,
        section: Section,
    ) -> String {
        let raw = match item {
            Item::Value(v) => self.raw(v.span()),
            _ => None,
        };
        // Words people use for something the spec calls differently.
        let alias = match (section, name) {
            (Section::Service, "name") => {
                return "a service's name is its table key, as in [service.NAME]".into()
            }
            (Section::Service, "image") => Some("artifact"),
            (Section::Service, "cmd" | "entrypoint" | "exec" | "run") => Some("command"),
            (Section::Service, "arguments" | "argv") => Some("args"),
            (Section::Service, "env" | "vars" | "variables" | "environment_variables") => {
                return format!(
                    "environment variables go in [{service}.config]; values for one environment in [{service}.environments.ENV.config]"
                )
            }
            (Section::Service, "timeout") => {
                return format!(
                    "did you mean `stop_timeout`? (a health check's `timeout` belongs in [{service}.health])"
                )
            }
            (Section::Service, "healthcheck" | "health_check" | "check") => Some("health"),
            (Section::Service, "host" | "hostname" | "domain" | "domains") => {
                return format!("host names go in [{service}.route] as `hosts = [\"{}\"]`", "hello.example.com")
            }
            (Section::Service | Section::Scale, "instances" | "count" | "replica") => {
                if section == Section::Scale {
                    Some("replicas")
                } else {
                    return format!(
                        "the number of instances is `replicas`, in [{service}.scale]: write `scale.replicas = {}`",
                        raw.unwrap_or("2")
                    );
                }
            }
            (Section::Service, "autoscale" | "autoscaling" | "autoscaler") => {
                return format!(
                    "autoscaling is set in [{service}.scale]: write `min` and `max` there, like `scale = {{ min = 1, max = 10 }}`"
                )
            }
            (Section::Service, "sla" | "slos" | "objective" | "objectives") => Some("slo"),
            (
                Section::Scale,
                "min_replicas" | "minimum" | "min_instances" | "min_count" | "min_scale",
            ) => Some("min"),
            (
                Section::Scale,
                "max_replicas" | "maximum" | "max_instances" | "max_count" | "max_scale",
            ) => Some("max"),
            (
                Section::Scale,
                "concurrency" | "target" | "target_requests" | "requests_per_instance"
                | "concurrency_target" | "max_concurrency" | "max_concurrent",
            ) => Some("target_concurrency"),
            (
                Section::Scale,
                "scale_to_zero" | "idle_timeout" | "idle" | "scale_down_after"
                | "scale_to_zero_delay" | "zero_after",
            ) => Some("scale_to_zero_after"),
            (Section::Slo, "p99" | "latency" | "latency_ms" | "p99_latency" | "p99_latency_ms") => {
                Some("p99_ms")
            }
            (Section::Slo, "errors" | "error_ratio" | "max_error_rate" | "error_budget") => {
                Some("error_rate")
            }
            (Section::Slo, "uptime" | "available" | "target" | "objective") => {
                Some("availability")
            }
            (Section::Resources, "cpus" | "cores") => Some("cpu"),
            (Section::Resources, "mem" | "ram") => Some("memory"),
            (Section::Health, "url" | "endpoint") => Some("path"),
            (
                Section::Service,
                "constraints" | "constraint" | "node_selector" | "nodeSelector" | "affinity",
            ) => {
                return format!(
                    "node label constraints go in [{service}.placement] as `labels = {{ zone = \"eu-1\" }}`"
                )
            }
            (Section::Placement, "constraints" | "node_labels" | "node_selector" | "selector") => {
                Some("labels")
            }
            // `request_timeout` is a key of both [wasm] and [mesh], with different meanings.
            (Section::Service, "request_timeout") => {
                return format!(
                    "`request_timeout` belongs in [{service}.mesh] (the deadline of a call through the mesh) or, for a wasm service, in [{service}.wasm] (the deadline of one request inside the instance)"
                )
            }
            (Section::Mesh, "max_concurrency") => {
                return format!(
                    "did you mean `max_concurrent`? (`max_concurrency`, the requests one wasm instance serves at once, belongs in [{service}.wasm])"
                )
            }
            (Section::Wasm, "max_concurrent") => {
                return format!(
                    "did you mean `max_concurrency`? (`max_concurrent`, the mesh's circuit breaker, belongs in [{service}.mesh])"
                )
            }
            (Section::Mesh, "deny" | "deny_from" | "block" | "block_from") => {
                return "there is no deny list: `allow_from` lists the services allowed to call this one (`allow_from = []`: none)".into()
            }
            (Section::Mesh, "timeout" | "deadline" | "call_timeout") => Some("request_timeout"),
            (
                Section::Mesh,
                "allow" | "allowed" | "allow_list" | "allowlist" | "callers" | "allowed_callers"
                | "from",
            ) => Some("allow_from"),
            (Section::Mesh, "retry" | "max_retries" | "attempts" | "retry_attempts") => {
                Some("retries")
            }
            (Section::Mesh, "budget" | "retry_ratio" | "retry_percent") => Some("retry_budget"),
            (
                Section::Mesh,
                "concurrency" | "max_connections" | "max_requests" | "max_in_flight"
                | "circuit_breaker",
            ) => Some("max_concurrent"),
            _ => None,
        };
        if let Some(alias) = alias {
            return format!("did you mean `{alias}`?");
        }
        if section == Section::Environment {
            if let Some(suggestion) = closest(name, section.keys()) {
                return format!("did you mean `{suggestion}`?");
            }
            let service_key = Section::Service.keys().contains(&name)
                || Section::NESTED.iter().any(|s| s.keys().contains(&name));
            if !service_key && is_env_name(name) && item.is_value() {
                return format!(
                    "values for one environment go in its `config` table: write `config.{name} = {}`, or put it under [{path}.config]",
                    raw.unwrap_or("\"...\"")
                );
            }
            return format!("only `config` can be set per environment, as in [{path}.config]");
        }
        // A key of another table of the service, written in the wrong one.
        if section != Section::Service && Section::Service.keys().contains(&name) {
            return format!("`{name}` belongs directly in [{service}], not in [{path}]");
        }
        if let Some(home) = Section::NESTED
            .iter()
            .find(|s| **s != section && s.keys().contains(&name))
        {
            let table = service.child(home.name());
            return match (section, raw) {
                (Section::Service, Some(raw)) => format!(
                    "`{name}` belongs in [{table}]: write `{}.{name} = {raw}` here, or put it under [{table}]",
                    home.name()
                ),
                _ => format!("`{name}` belongs in [{table}]"),
            };
        }
        if let Some(suggestion) = closest(name, section.keys()) {
            return format!("did you mean `{suggestion}`?");
        }
        // A node label written directly in [placement].
        if section == Section::Placement && is_label_key(name) {
            if let Item::Value(Value::String(s)) = item {
                return format!(
                    "node labels go in the `labels` table: write `labels.{} = {}`, or put it under [{path}.labels]",
                    display_key(name),
                    self.raw(s.span()).map_or_else(|| quote(s.value()), str::to_string)
                );
            }
        }
        format!("[{path}] accepts {}", list(section.keys()))
    }

    fn service(&mut self, key: &Key, item: &Item) -> Option<ServiceSpec> {
        let name = key.get();
        let path = Path::from_segments(&["service", name]);
        let header = key.span();
        if !is_dns_label(name) {
            self.push(
                header.clone(),
                Some(path.to_string()),
                format!("invalid service name `{name}`"),
                Some(format!(
                    "a service name is a DNS label (lowercase letters, digits and `-`, starting with a letter, at most 63 characters), for example `{}`",
                    suggest_label(name, "hello")
                )),
            );
        }
        let Some(table) = item.as_table_like() else {
            let hint = if Section::Service.keys().contains(&name) {
                format!("`{name}` belongs in a service's table: [service.NAME]")
            } else {
                format!("declare the service as a table: [{path}]")
            };
            self.push(
                value_span(key, item),
                Some(path.to_string()),
                format!("`{path}` must be a table, found {}", describe(item)),
                Some(hint),
            );
            return None;
        };
        self.check_keys(table, &path, &path, Section::Service);
        let field = |n: &str| table.get_key_value(n);

        // driver
        let driver = match field("driver") {
            None => Some(DriverKind::Exec),
            Some((k, i)) => self.driver(&path.child("driver"), k, i),
        };

        // artifact / command
        let artifact = field("artifact").and_then(|(k, i)| {
            let p = path.child("artifact");
            let (s, span) =
                self.string(&p, k, i, "a string", "`artifact = \"build/hello\"`")?;
            if s.trim().is_empty() {
                self.push(
                    span,
                    Some(p.to_string()),
                    format!("`{p}` must not be empty"),
                    Some("give the path of a file, relative to the spec file, like `artifact = \"build/hello\"`".into()),
                );
                return None;
            }
            Some(s.to_string())
        });
        let command = field("command").and_then(|(k, i)| {
            let p = path.child("command");
            let (list, span) = self.string_list(&p, k, i, "command", "[\"python3\", \"-m\", \"http.server\"]")?;
            if list.is_empty() {
                self.push(
                    span,
                    Some(p.to_string()),
                    format!("`{p}` must not be empty"),
                    Some("give the program first, then its arguments: `command = [\"python3\", \"app.py\"]`".into()),
                );
                return None;
            }
            if list[0].trim().is_empty() {
                self.push(
                    span,
                    Some(p.index(0)),
                    format!("`{}` (the program) must not be empty", p.index(0)),
                    Some("the first element is the program to run, like `\"python3\"`".into()),
                );
                return None;
            }
            Some(list)
        });
        let artifact_entry = field("artifact");
        let command_entry = field("command");
        match driver {
            // With both, the artifact is the code the command runs in (a directory or a tar
            // of one, unpacked as the instance's working directory).
            Some(DriverKind::Exec) if artifact_entry.is_none() && command_entry.is_none() => {
                self.push(
                    header.clone(),
                    Some(path.to_string()),
                    format!("`{path}` needs an `artifact` or a `command`"),
                    Some("add `artifact = \"build/hello\"` (a program uploaded at deploy) or `command = [\"python3\", \"app.py\"]` (a program on the node)".into()),
                );
            }
            Some(DriverKind::Exec) => {}
            Some(kind @ (DriverKind::Wasm | DriverKind::Container)) => {
                if let Some((ck, _)) = command_entry {
                    self.push(
                        ck.span(),
                        Some(path.child("command").to_string()),
                        format!(
                            "`command` is only for the `exec` driver, and `{path}` uses `{}`",
                            kind.as_str()
                        ),
                        Some(format!(
                            "a {} service runs its `artifact`; remove `command`",
                            kind.as_str()
                        )),
                    );
                }
                if artifact_entry.is_none() {
                    let example = match kind {
                        DriverKind::Wasm => "build/hello.wasm",
                        _ => "build/hello.tar",
                    };
                    self.push(
                        header.clone(),
                        Some(path.child("artifact").to_string()),
                        format!(
                            "`{path}` uses the `{}` driver and needs an `artifact`",
                            kind.as_str()
                        ),
                        Some(format!(
                            "add `artifact = \"{example}\"`, a file uploaded at deploy"
                        )),
                    );
                }
            }
            None => {}
        }

        let args = field("args")
            .and_then(|(k, i)| {
                self.string_list(&path.child("args"), k, i, "args", "[\"--verbose\"]")
                    .map(|(list, _)| list)
            })
            .unwrap_or_default();

        let port = match field("port") {
            None => PortSpec::Auto,
            Some((k, i)) => self
                .port(&path.child("port"), k, i)
                .unwrap_or(PortSpec::Auto),
        };

        let stop_timeout_ms = match field("stop_timeout") {
            None => DEFAULT_STOP_TIMEOUT_MS,
            Some((k, i)) => self
                .duration(&path.child("stop_timeout"), k, i, "5s")
                .map_or(DEFAULT_STOP_TIMEOUT_MS, |(ms, _)| ms),
        };

        let scale = self.scale(field("scale"), &path);
        let route = self.route(field("route"), &path);
        let config = match field("config") {
            None => BTreeMap::new(),
            Some((k, i)) => self.config(&path.child("config"), k, i),
        };
        let env_config = match field("environments") {
            None => BTreeMap::new(),
            Some((k, i)) => self.environments(&path, k, i),
        };
        let min_ready_ms = match field("min_ready") {
            None => DEFAULT_MIN_READY_MS,
            Some((k, i)) => self
                .min_ready(&path.child("min_ready"), k, i)
                .unwrap_or(DEFAULT_MIN_READY_MS),
        };
        let health = field("health").and_then(|(k, i)| self.health(&path, k, i));
        let liveness = field("liveness").and_then(|(k, i)| self.liveness(&path, k, i));
        let resources = self.resources(field("resources"), &path);
        let constraints = self.placement(field("placement"), &path);
        let wasm = self.wasm(field("wasm"), &path, driver);
        let container = self.container(field("container"), &path, driver);
        let mesh = self.mesh(field("mesh"), &path);
        let slo = self.slo(field("slo"), &path);

        Some(ServiceSpec {
            name: name.to_string(),
            driver: driver.unwrap_or(DriverKind::Exec),
            artifact,
            command: command.unwrap_or_default(),
            args,
            port,
            scale,
            route,
            config,
            env_config,
            health,
            liveness,
            min_ready_ms,
            resources,
            constraints,
            stop_timeout_ms,
            wasm,
            container,
            mesh,
            slo,
        })
    }

    // -- typed values ---------------------------------------------------------------------------

    fn type_error(&mut self, path: &Path, key: &Key, item: &Item, expected: &str, hint: String) {
        self.push(
            value_span(key, item),
            Some(path.to_string()),
            format!("`{path}` must be {expected}, found {}", describe(item)),
            Some(hint),
        );
    }

    /// A string value, or a type error whose hint is `for example {example}`.
    fn string<'i>(
        &mut self,
        path: &Path,
        key: &Key,
        item: &'i Item,
        expected: &str,
        example: &str,
    ) -> Option<(&'i str, Option<Range<usize>>)> {
        match item {
            Item::Value(Value::String(s)) => Some((s.value().as_str(), s.span())),
            _ => {
                let hint = match (item, self.raw(item.span())) {
                    (
                        Item::Value(Value::Integer(_) | Value::Float(_) | Value::Boolean(_)),
                        Some(raw),
                    ) => {
                        format!("quote it: `{} = {}`", display_key(path.last()), quote(raw))
                    }
                    _ => format!("for example {example}"),
                };
                self.type_error(path, key, item, expected, hint);
                None
            }
        }
    }

    /// An array of strings. `example` is an array literal for the hint.
    fn string_list(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        name: &str,
        example: &str,
    ) -> Option<(Vec<String>, Option<Range<usize>>)> {
        let Some(array) = item.as_array() else {
            let hint = match item {
                Item::Value(Value::String(s)) => {
                    format!("write a list: `{name} = {}`", words_array(s.value()))
                }
                _ => format!("for example `{name} = {example}`"),
            };
            self.type_error(path, key, item, "an array of strings", hint);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, value) in array.iter().enumerate() {
            match value {
                Value::String(s) => out.push(s.value().clone()),
                other => {
                    ok = false;
                    let hint = match other {
                        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => self
                            .raw(other.span())
                            .map(|raw| format!("quote it: `{}`", quote(raw))),
                        _ => None,
                    }
                    .unwrap_or_else(|| format!("for example `{name} = {example}`"));
                    self.push(
                        other.span().or_else(|| key.span()),
                        Some(path.to_string()),
                        format!(
                            "`{}` must be a string, found {}",
                            path.index(i),
                            describe_value(other)
                        ),
                        Some(hint),
                    );
                }
            }
        }
        ok.then_some((out, array.span()))
    }

    fn integer(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        example: i64,
    ) -> Option<(i64, Option<Range<usize>>)> {
        match item {
            Item::Value(Value::Integer(i)) => Some((*i.value(), i.span())),
            _ => {
                let name = path.last();
                let hint = match item {
                    Item::Value(Value::String(s)) if s.value().trim().parse::<i64>().is_ok() => {
                        format!(
                            "write the number without quotes: `{name} = {}`",
                            s.value().trim()
                        )
                    }
                    Item::Value(Value::Float(f))
                        if f.value().fract() == 0.0 && f.value().is_finite() =>
                    {
                        format!("write a whole number: `{name} = {}`", *f.value() as i64)
                    }
                    _ => format!("for example `{name} = {example}`"),
                };
                self.type_error(path, key, item, "an integer", hint);
                None
            }
        }
    }

    /// An integer in `min..=max`.
    fn bounded(
        &mut self,
        path: &Path,
        (key, item): (&Key, &Item),
        min: i64,
        max: i64,
        example: i64,
        hint: &str,
    ) -> Option<u32> {
        let (value, span) = self.integer(path, key, item, example)?;
        if value < min || value > max {
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` must be between {min} and {max}, found {value}"),
                Some(hint.to_string()),
            );
            return None;
        }
        u32::try_from(value).ok()
    }

    fn boolean(&mut self, path: &Path, key: &Key, item: &Item, example: bool) -> Option<bool> {
        match item {
            Item::Value(Value::Boolean(b)) => Some(*b.value()),
            _ => {
                let name = path.last();
                let hint = match item {
                    Item::Value(Value::String(s))
                        if matches!(s.value().as_str(), "true" | "false") =>
                    {
                        format!("write it without quotes: `{name} = {}`", s.value())
                    }
                    _ => format!("for example `{name} = {example}`"),
                };
                self.type_error(path, key, item, "a boolean (`true` or `false`)", hint);
                None
            }
        }
    }

    /// A duration string, in milliseconds.
    fn duration(
        &mut self,
        path: &Path,
        key: &Key,
        item: &Item,
        example: &str,
    ) -> Option<(u64, Option<Range<usize>>)> {
        let name = path.last();
        match item {
            Item::Value(Value::String(s)) => {
                let text = s.value().trim();
                match humantime::parse_duration(text) {
                    Ok(d) => Some((u64::try_from(d.as_millis()).unwrap_or(u64::MAX), s.span())),
                    Err(_) => {
                        let hint = if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
                            format!("add a unit: `{name} = \"{text}s\"` or `\"{text}ms\"`")
                        } else {
                            format!("write a number and a unit, like \"500ms\", \"{example}\" or \"1m 30s\"")
                        };
                        self.push(
                            s.span(),
                            Some(path.to_string()),
                            format!("`{path}` is not a duration: {}", quote(s.value())),
                            Some(hint),
                        );
                        None
                    }
                }
            }
            _ => {
                let hint = match item {
                    Item::Value(Value::Integer(i)) => format!(
                        "durations are strings with a unit: `{name} = \"{}s\"` or `\"{}ms\"`",
                        i.value(),
                        i.value()
                    ),
                    _ => format!("for example `{name} = \"{example}\"`"),
                };
                self.type_error(path, key, item, "a duration string", hint);
                None
            }
        }
    }

    fn table<'i>(
        &mut self,
        path: &Path,
        key: &Key,
        item: &'i Item,
        hint: String,
    ) -> Option<&'i dyn TableLike> {
        match item.as_table_like() {
            Some(t) => Some(t),
            None => {
                let hint = if matches!(item, Item::ArrayOfTables(_)) {
                    format!("use single brackets: [{path}]")
                } else {
                    hint
                };
                self.type_error(path, key, item, "a table", hint);
                None
            }
        }
    }

    // -- fields ----------------------------------------------------------------------------------

    fn driver(&mut self, path: &Path, key: &Key, item: &Item) -> Option<DriverKind> {
        let (s, span) = self.string(path, key, item, "a string", "`driver = \"exec\"`")?;
        match s {
            "exec" => Some(DriverKind::Exec),
            "wasm" => Some(DriverKind::Wasm),
            "container" => Some(DriverKind::Container),
            other => {
                let drivers = ["exec", "wasm", "container"];
                let hint = match closest(other, &drivers) {
                    Some(d) => format!("did you mean `{d}`? The drivers are {}", list(&drivers)),
                    None if matches!(other, "docker" | "oci" | "podman" | "image") => format!(
                        "the drivers are {}; to run an image, use `driver = \"container\"`",
                        list(&drivers)
                    ),
                    None => format!("the drivers are {}", list(&drivers)),
                };
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("unknown driver `{other}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    fn port(&mut self, path: &Path, key: &Key, item: &Item) -> Option<PortSpec> {
        match item {
            Item::Value(Value::Integer(i)) => {
                let value = *i.value();
                match u16::try_from(value) {
                    Ok(port) if port >= 1 => Some(PortSpec::Fixed(port)),
                    _ => {
                        self.push(
                            i.span(),
                            Some(path.to_string()),
                            format!("`{path}` must be between 1 and 65535, found {value}"),
                            Some("or let the node pick a free port: `port = \"auto\"`".into()),
                        );
                        None
                    }
                }
            }
            Item::Value(Value::String(s)) if s.value() == "auto" => Some(PortSpec::Auto),
            Item::Value(Value::String(s)) => {
                let text = s.value().trim();
                let hint = if text.parse::<u16>().is_ok() {
                    format!("write the number without quotes: `port = {text}`")
                } else {
                    "write `port = \"auto\"` (the node picks a port and sets PORT) or a number, like `port = 8080`".into()
                };
                self.push(
                    s.span(),
                    Some(path.to_string()),
                    format!(
                        "`{path}` must be \"auto\" or a port number, found {}",
                        quote(s.value())
                    ),
                    Some(hint),
                );
                None
            }
            _ => {
                self.type_error(
                    path,
                    key,
                    item,
                    "\"auto\" or an integer",
                    "write `port = \"auto\"` (the node picks a port and sets PORT) or a number, like `port = 8080`".into(),
                );
                None
            }
        }
    }

    /// `[scale]`: a fixed `replicas`, or autoscaling between `min` and `max` (both required
    /// together), with `replicas` then the starting count (default `min`).
    fn scale(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> ScaleSpec {
        let mut scale = ScaleSpec::fixed(DEFAULT_REPLICAS);
        let Some((key, item)) = entry else {
            return scale;
        };
        let path = service.child("scale");
        let hint = match item {
            Item::Value(Value::Integer(i)) => format!("write `scale.replicas = {}`", i.value()),
            _ => format!("write it as a table: [{path}] with `replicas = 2`"),
        };
        let Some(table) = self.table(&path, key, item, hint) else {
            return scale;
        };
        self.check_keys(table, &path, service, Section::Scale);
        let replicas_entry = table.get_key_value("replicas");
        let min_entry = table.get_key_value("min");
        let max_entry = table.get_key_value("max");
        let target_entry = table.get_key_value("target_concurrency");
        let zero_entry = table.get_key_value("scale_to_zero_after");

        let replicas = replicas_entry.and_then(|(k, i)| {
            self.bounded(
                &path.child("replicas"),
                (k, i),
                0,
                MAX_REPLICAS,
                2,
                "replicas is how many instances run, from 0 to 1000",
            )
        });
        if let Some(n) = replicas {
            scale.replicas = n;
        }
        let min = min_entry.and_then(|(k, i)| {
            self.bounded(
                &path.child("min"),
                (k, i),
                0,
                MAX_REPLICAS,
                1,
                "min is the fewest instances the autoscaler keeps running, from 0 to 1000",
            )
        });
        let max = max_entry.and_then(|(k, i)| {
            self.bounded(
                &path.child("max"),
                (k, i),
                1,
                MAX_REPLICAS,
                10,
                "max is the most instances the autoscaler runs, from 1 to 1000",
            )
        });
        let target_concurrency = match target_entry {
            None => Some(AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY),
            Some((k, i)) => self.bounded(
                &path.child("target_concurrency"),
                (k, i),
                1,
                MAX_TARGET_CONCURRENCY,
                i64::from(AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY),
                "target_concurrency is how many requests in flight per instance the autoscaler aims at, from 1 to 10000",
            ),
        };
        let scale_to_zero_after_ms = match zero_entry {
            None => Some(AutoscaleSpec::DEFAULT_SCALE_TO_ZERO_AFTER_MS),
            Some((k, i)) => {
                let p = path.child("scale_to_zero_after");
                self.duration(&p, k, i, "5m").and_then(|(ms, span)| {
                    if (MIN_SCALE_TO_ZERO_AFTER_MS..=MAX_SCALE_TO_ZERO_AFTER_MS).contains(&ms) {
                        return Some(ms);
                    }
                    let span = span.or_else(|| value_span(k, i));
                    let found = self.raw(span.clone()).unwrap_or("").to_string();
                    self.push(
                        span,
                        Some(p.to_string()),
                        format!("`{p}` must be between 1s and 24h, found {found}"),
                        Some("it is how long without requests before the last instance stops; for example `scale_to_zero_after = \"5m\"`".into()),
                    );
                    None
                })
            }
        };

        // A misspelt bound (`maxx`, `max_replicas`) is already reported as an unknown key with
        // a "did you mean": do not also report it missing.
        let misspelt = |this: &Self, bound: &str| {
            let hint = format!("did you mean `{bound}`?");
            table.iter().any(|(name, item)| {
                !Section::Scale.keys().contains(&name)
                    && this.unknown_key_hint(name, item, &path, service, Section::Scale) == hint
            })
        };
        let min_entry = match (min_entry, max_entry) {
            (Some(entry), Some(_)) => entry,
            (None, None) if misspelt(self, "min") || misspelt(self, "max") => return scale,
            (Some(_), None) if misspelt(self, "max") => return scale,
            (None, Some(_)) if misspelt(self, "min") => return scale,
            (None, None) => {
                // Autoscaling keys without the bounds that turn autoscaling on.
                for (name, entry, example_min) in [
                    ("target_concurrency", target_entry, 1),
                    ("scale_to_zero_after", zero_entry, 0),
                ] {
                    let Some((k, _)) = entry else {
                        continue;
                    };
                    let p = path.child(name);
                    self.push(
                        k.span(),
                        Some(p.to_string()),
                        format!("`{p}` is set without `min` and `max`: autoscaling needs min and max"),
                        Some(format!(
                            "to autoscale, add `min = {example_min}` and `max = 10` to [{path}]; for a fixed count of instances, remove `{name}` and set `replicas`"
                        )),
                    );
                }
                return scale;
            }
            (Some((k, _)), None) | (None, Some((k, _))) => {
                // One bound without the other.
                let (present, missing) = if min_entry.is_some() {
                    ("min", "max")
                } else {
                    ("max", "min")
                };
                let (example_min, example_max) = match (min, max) {
                    (Some(n), _) => (
                        n,
                        if n < 10 {
                            10
                        } else {
                            n.saturating_mul(2).min(1_000)
                        },
                    ),
                    (_, Some(n)) => (n.min(1), n),
                    _ => (1, 10),
                };
                self.push(
                    k.span(),
                    Some(path.child(missing).to_string()),
                    format!("`{path}` sets `{present}` without `{missing}`: autoscaling needs both"),
                    Some(format!(
                        "add `{missing}`: write both bounds, like `min = {example_min}` and `max = {example_max}`"
                    )),
                );
                return scale;
            }
        };
        let (Some(min), Some(max)) = (min, max) else {
            return scale;
        };
        let mut ok = true;
        if min > max {
            ok = false;
            let (k, i) = min_entry;
            self.push(
                value_span(k, i),
                Some(path.child("min").to_string()),
                format!("`{path}`: min ({min}) is above max ({max})"),
                Some(format!(
                    "min is the fewest instances and max the most: write `min = {max}` and `max = {min}`"
                )),
            );
        }
        if let Some((k, _)) = zero_entry.filter(|_| min > 0) {
            ok = false;
            let p = path.child("scale_to_zero_after");
            self.push(
                k.span(),
                Some(p.to_string()),
                format!("`{p}` is only allowed with `min = 0`, and min is {min}"),
                Some(format!(
                    "the last instance stops after a time without requests only when `min = 0`: set `min = 0`, or remove `scale_to_zero_after` to keep at least {min} running"
                )),
            );
        }
        match (replicas_entry, replicas) {
            (Some((k, i)), Some(n)) if ok && !(min..=max).contains(&n) => {
                ok = false;
                self.push(
                    value_span(k, i),
                    Some(path.child("replicas").to_string()),
                    format!(
                        "`{path}.replicas` must be between min ({min}) and max ({max}) when autoscaling, found {n}"
                    ),
                    Some(format!(
                        "with `min` and `max`, replicas is how many instances to start with: write a number from {min} to {max}, or remove `replicas` to start at min"
                    )),
                );
            }
            (Some(_), Some(_)) => {}
            (Some(_), None) => ok = false,
            (None, _) => scale.replicas = min,
        }
        let (Some(target_concurrency), Some(scale_to_zero_after_ms), true) =
            (target_concurrency, scale_to_zero_after_ms, ok)
        else {
            return scale;
        };
        scale.autoscale = Some(AutoscaleSpec {
            min,
            max,
            target_concurrency,
            scale_to_zero_after_ms,
        });
        scale
    }

    fn route(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> RouteSpec {
        let mut route = RouteSpec {
            public: true,
            hosts: Vec::new(),
        };
        let Some((key, item)) = entry else {
            return route;
        };
        let path = service.child("route");
        let hint = match item {
            Item::Value(Value::Boolean(b)) => format!("write `route.public = {}`", b.value()),
            _ => format!("write it as a table: [{path}] with `public = true`"),
        };
        let Some(table) = self.table(&path, key, item, hint) else {
            return route;
        };
        self.check_keys(table, &path, service, Section::Route);
        if let Some((k, i)) = table.get_key_value("public") {
            if let Some(b) = self.boolean(&path.child("public"), k, i, true) {
                route.public = b;
            }
        }
        if let Some((k, i)) = table.get_key_value("hosts") {
            let p = path.child("hosts");
            if let Some(array) = i.as_array() {
                let mut seen = BTreeSet::new();
                for (n, value) in array.iter().enumerate() {
                    let Value::String(s) = value else {
                        self.push(
                            value.span(),
                            Some(p.to_string()),
                            format!(
                                "`{}` must be a string, found {}",
                                p.index(n),
                                describe_value(value)
                            ),
                            Some("for example `hosts = [\"hello.example.com\"]`".into()),
                        );
                        continue;
                    };
                    match check_host(s.value()) {
                        Ok(host) => {
                            if seen.insert(host.clone()) {
                                route.hosts.push(host);
                            } else {
                                self.push(
                                    s.span(),
                                    Some(p.to_string()),
                                    format!("host {} is listed twice in `{p}`", quote(&host)),
                                    Some("remove one of them".into()),
                                );
                            }
                        }
                        Err((why, hint)) => {
                            self.push(
                                s.span(),
                                Some(p.to_string()),
                                format!("`{}` {why}: {}", p.index(n), quote(s.value())),
                                Some(hint),
                            );
                        }
                    }
                }
            } else {
                let hint = match i {
                    Item::Value(Value::String(s)) => {
                        format!("write a list: `hosts = [{}]`", quote(s.value()))
                    }
                    _ => "for example `hosts = [\"hello.example.com\"]`".into(),
                };
                self.type_error(&p, k, i, "an array of host names", hint);
            }
        }
        route
    }

    /// A config table: environment variable names to string values.
    fn config(&mut self, path: &Path, key: &Key, item: &Item) -> BTreeMap<String, String> {
        let mut values = BTreeMap::new();
        let Some(table) = self.table(
            path,
            key,
            item,
            format!("write it as a table: [{path}] with lines like `GREETING = \"hello\"`"),
        ) else {
            return values;
        };
        for (name, value_item) in table.iter() {
            let Some((k, _)) = table.get_key_value(name) else {
                continue;
            };
            let p = path.child(name);
            if !is_env_name(name) {
                self.push(
                    k.span(),
                    Some(p.to_string()),
                    format!("`{name}` is not a valid environment variable name"),
                    Some(format!(
                        "config keys become environment variables: letters, digits and `_`, not starting with a digit, like `{}`",
                        suggest_env_name(name)
                    )),
                );
                continue;
            }
            if name == "PORT" {
                self.push(
                    k.span(),
                    Some(p.to_string()),
                    "`PORT` is set by the platform and cannot be configured".into(),
                    Some("to choose the port, set `port = 8080` on the service".into()),
                );
                continue;
            }
            if name == "HOST" || name.starts_with("STRATA_") {
                self.push(
                    k.span(),
                    Some(p.to_string()),
                    format!("`{name}` is set by the platform and cannot be configured"),
                    Some("`HOST` and names starting with `STRATA_` are the platform's (`STRATA_SERVICE`, `STRATA_ENV`, ...); rename it".into()),
                );
                continue;
            }
            let text = match value_item {
                Item::Value(Value::String(s)) => Some(s.value().clone()),
                Item::Value(Value::Integer(i)) => Some(i.value().to_string()),
                Item::Value(Value::Float(f)) => Some(
                    self.raw(f.span())
                        .map(|raw| raw.replace('_', ""))
                        .unwrap_or_else(|| format!("{:?}", f.value())),
                ),
                Item::Value(Value::Boolean(b)) => Some(b.value().to_string()),
                other => {
                    let hint = match other {
                        Item::Value(v @ (Value::Datetime(_) | Value::Array(_))) => format!(
                            "config values become environment variables; quote it to pass the text: `{name} = {}`",
                            quote(self.raw(v.span()).unwrap_or("..."))
                        ),
                        _ => format!(
                            "config values become environment variables; write text: `{name} = \"...\"`"
                        ),
                    };
                    self.type_error(&p, k, other, "a string, number or boolean", hint);
                    None
                }
            };
            if let Some(text) = text {
                values.insert(name.to_string(), text);
            }
        }
        values
    }

    fn environments(
        &mut self,
        service: &Path,
        key: &Key,
        item: &Item,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let path = service.child("environments");
        let Some(table) = self.table(
            &path,
            key,
            item,
            format!("write per-environment config as [{path}.prod.config]"),
        ) else {
            return out;
        };
        for (env, env_item) in table.iter() {
            let Some((env_key, _)) = table.get_key_value(env) else {
                continue;
            };
            let env_path = path.child(env);
            if !is_dns_label(env) {
                self.push(
                    env_key.span(),
                    Some(env_path.to_string()),
                    format!("invalid environment name `{env}`"),
                    Some(format!(
                        "an environment name is a DNS label (lowercase letters, digits and `-`, starting with a letter), for example `{}`",
                        suggest_label(env, "prod")
                    )),
                );
            }
            let Some(env_table) = self.table(
                &env_path,
                env_key,
                env_item,
                format!("write it as a table: [{env_path}.config]"),
            ) else {
                continue;
            };
            self.check_keys(env_table, &env_path, service, Section::Environment);
            if let Some((k, i)) = env_table.get_key_value("config") {
                let values = self.config(&env_path.child("config"), k, i);
                out.insert(env.to_string(), values);
            }
        }
        out
    }

    fn health(&mut self, service: &Path, key: &Key, item: &Item) -> Option<HealthSpec> {
        let probe = self.probe(service, key, item, Section::Health)?;
        Some(HealthSpec {
            path: probe.path?,
            interval_ms: probe.interval_ms,
            timeout_ms: probe.timeout_ms,
            healthy_threshold: probe.healthy_threshold,
            unhealthy_threshold: probe.unhealthy_threshold,
        })
    }

    fn liveness(&mut self, service: &Path, key: &Key, item: &Item) -> Option<LivenessSpec> {
        let probe = self.probe(service, key, item, Section::Liveness)?;
        Some(LivenessSpec {
            path: probe.path,
            interval_ms: probe.interval_ms,
            timeout_ms: probe.timeout_ms,
            unhealthy_threshold: probe.unhealthy_threshold,
        })
    }

    fn min_ready(&mut self, path: &Path, key: &Key, item: &Item) -> Option<u64> {
        let (ms, span) = self.duration(path, key, item, "1s")?;
        if ms > MAX_MIN_READY_MS {
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` must be at most 1h, found {}", format_ms(ms)),
                Some("for example `min_ready = \"5s\"` (`\"0s\"` counts an instance at its first passed check)".into()),
            );
            return None;
        }
        Some(ms)
    }

    /// A `[health]` or `[liveness]` table: what to check, how often, and how many results in
    /// a row decide. `[health]` requires a path; `[liveness]` without one connects to the port.
    fn probe(&mut self, service: &Path, key: &Key, item: &Item, section: Section) -> Option<Probe> {
        let path = service.child(section.name());
        let hint = match item {
            Item::Value(Value::String(s)) if s.value().starts_with('/') => {
                format!("write `{}.path = {}`", section.name(), quote(s.value()))
            }
            _ => format!("write it as a table: [{path}] with `path = \"/healthz\"`"),
        };
        let table = self.table(&path, key, item, hint)?;
        self.check_keys(table, &path, service, section);
        let mut ok = true;

        let path_value = match table.get_key_value("path") {
            None if section == Section::Liveness => Some(None),
            None => {
                self.push(
                    key.span(),
                    Some(path.child("path").to_string()),
                    format!("`{path}` needs a `path`"),
                    Some(
                        "add `path = \"/healthz\"`, the URL path the health check requests".into(),
                    ),
                );
                None
            }
            Some((k, i)) => {
                let p = path.child("path");
                self.string(&p, k, i, "a string", "`path = \"/healthz\"`")
                    .and_then(|(s, span)| {
                        let problem = if let Some((_, rest)) = s.split_once("://") {
                            let only = rest.find('/').map_or("/", |i| &rest[i..]);
                            Some((
                                format!("`{p}` must be a path, not a URL"),
                                format!("write just the path: `path = {}`", quote(only)),
                            ))
                        } else if !s.starts_with('/') {
                            Some((
                                format!("`{p}` must start with `/`, found {}", quote(s)),
                                format!("write `path = {}`", quote(&format!("/{}", s.trim()))),
                            ))
                        } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            Some((
                                format!("`{p}` must not contain spaces, found {}", quote(s)),
                                "percent-encode spaces as %20".into(),
                            ))
                        } else {
                            None
                        };
                        match problem {
                            Some((message, hint)) => {
                                self.push(span, Some(p.to_string()), message, Some(hint));
                                None
                            }
                            None => Some(Some(s.to_string())),
                        }
                    })
            }
        };
        ok &= path_value.is_some();

        let interval_ms = match table.get_key_value("interval") {
            None => Some(DEFAULT_INTERVAL_MS),
            Some((k, i)) => {
                let p = path.child("interval");
                self.duration(&p, k, i, "1s").and_then(|(ms, span)| {
                    if ms < MIN_INTERVAL_MS {
                        self.push(
                            span,
                            Some(p.to_string()),
                            format!("`{p}` must be at least 50ms, found {}", format_ms(ms)),
                            Some("for example `interval = \"1s\"`".into()),
                        );
                        None
                    } else {
                        Some(ms)
                    }
                })
            }
        };
        ok &= interval_ms.is_some();

        let timeout_ms = match table.get_key_value("timeout") {
            None => Some(DEFAULT_TIMEOUT_MS.min(interval_ms.unwrap_or(DEFAULT_INTERVAL_MS))),
            Some((k, i)) => {
                let p = path.child("timeout");
                self.duration(&p, k, i, "500ms").and_then(|(ms, span)| {
                    if ms == 0 {
                        self.push(
                            span,
                            Some(p.to_string()),
                            format!("`{p}` must be more than 0"),
                            Some("for example `timeout = \"500ms\"`".into()),
                        );
                        return None;
                    }
                    match interval_ms {
                        Some(interval) if ms > interval => {
                            self.push(
                                span,
                                Some(p.to_string()),
                                format!(
                                    "`{p}` ({}) must not be longer than the interval ({})",
                                    format_ms(ms),
                                    format_ms(interval)
                                ),
                                Some("lower `timeout` or raise `interval`".into()),
                            );
                            None
                        }
                        _ => Some(ms),
                    }
                })
            }
        };
        ok &= timeout_ms.is_some();

        let mut threshold = |name: &str, default: u32, meaning: &str| -> Option<u32> {
            match table.get_key_value(name) {
                None => Some(default),
                Some((k, i)) => self.bounded(
                    &path.child(name),
                    (k, i),
                    1,
                    MAX_THRESHOLD,
                    i64::from(default),
                    &format!("{name} is how many consecutive checks must {meaning}, from 1 to 100"),
                ),
            }
        };
        let healthy_threshold = threshold("healthy_threshold", DEFAULT_HEALTHY_THRESHOLD, "pass");
        let unhealthy_threshold =
            threshold("unhealthy_threshold", DEFAULT_UNHEALTHY_THRESHOLD, "fail");

        if !ok {
            return None;
        }
        Some(Probe {
            path: path_value?,
            interval_ms: interval_ms?,
            timeout_ms: timeout_ms?,
            healthy_threshold: healthy_threshold?,
            unhealthy_threshold: unhealthy_threshold?,
        })
    }

    fn resources(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> Resources {
        let mut resources = Resources {
            cpu_millis: DEFAULT_CPU_MILLIS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        };
        let Some((key, item)) = entry else {
            return resources;
        };
        let path = service.child("resources");
        let Some(table) = self.table(
            &path,
            key,
            item,
            format!("write it as a table: [{path}] with `cpu = 0.5` and `memory = \"128Mi\"`"),
        ) else {
            return resources;
        };
        self.check_keys(table, &path, service, Section::Resources);
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
    fn wasm(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
        driver: Option<DriverKind>,
    ) -> Option<WasmLimits> {
        let (key, item) = entry?;
        let path = service.child("wasm");
        let table = self.table(
            &path,
            key,
            item,
            format!("write it as a table: [{path}] with `request_timeout = \"10s\"` and `max_concurrency = 100`"),
        )?;
        if let Some(kind) = driver.filter(|d| *d != DriverKind::Wasm) {
            self.push(
                key.span(),
                Some(path.to_string()),
                format!(
                    "`[{path}]` sets wasm limits, and `{service}` uses the `{}` driver",
                    kind.as_str()
                ),
                Some("remove the table, or set `driver = \"wasm\"`".into()),
            );
            return None;
        }
        self.check_keys(table, &path, service, Section::Wasm);
        let mut limits = WasmLimits::default();
        if let Some((k, i)) = table.get_key_value("request_timeout") {
            let p = path.child("request_timeout");
            if let Some((ms, span)) = self.duration(&p, k, i, "10s") {
                if ms == 0 || ms > MAX_WASM_REQUEST_TIMEOUT_MS {
                    self.push(
                        span.or_else(|| value_span(k, i)),
                        Some(p.to_string()),
                        format!("`{p}` must be between 1ms and 1h"),
                        Some("for example `request_timeout = \"10s\"`".into()),
                    );
                } else {
                    limits.request_timeout_ms = Some(ms);
                }
            }
        }
        if let Some((k, i)) = table.get_key_value("max_concurrency") {
            limits.max_concurrency = self.bounded(
                &path.child("max_concurrency"),
                (k, i),
                1,
                MAX_WASM_CONCURRENCY,
                100,
                "max_concurrency is how many requests one instance serves at once, from 1 to 10000",
            );
        }
        Some(limits)
    }

    /// `[container]`: what a container service may do beyond the default isolation.
    fn container(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
        driver: Option<DriverKind>,
    ) -> Option<ContainerSettings> {
        let (key, item) = entry?;
        let path = service.child("container");
        let table = self.table(
            &path,
            key,
            item,
            format!("write it as a table: [{path}] with `capabilities = [\"NET_BIND_SERVICE\"]`"),
        )?;
        if let Some(kind) = driver.filter(|d| *d != DriverKind::Container) {
            self.push(
                key.span(),
                Some(path.to_string()),
                format!(
                    "`[{path}]` sets container settings, and `{service}` uses the `{}` driver",
                    kind.as_str()
                ),
                Some("remove the table, or set `driver = \"container\"`".into()),
            );
            return None;
        }
        self.check_keys(table, &path, service, Section::Container);
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
            settings.pids = self.bounded(
                &path.child("pids"),
                (k, i),
                1,
                MAX_CONTAINER_PIDS,
                1024,
                "pids is how many processes and threads an instance may have at once, from 1 to 1000000",
            );
        }
        Some(settings)
    }

    /// `[mesh]`: who may call the service through the mesh, and how every node's proxy calls
    /// it. Any driver; a key not set takes its default (see [`MeshSettings`]).
    fn mesh(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> Option<MeshSettings> {
        let (key, item) = entry?;
        let path = service.child("mesh");
        let hint = match item {
            Item::Value(v @ Value::Array(_)) => format!(
                "write `mesh.allow_from = {}`",
                self.raw(v.span()).unwrap_or("[\"web\"]")
            ),
            _ => format!(
                "write it as a table: [{path}] with `allow_from = [\"web\"]` and `retries = 1`"
            ),
        };
        let table = self.table(&path, key, item, hint)?;
        self.check_keys(table, &path, service, Section::Mesh);
        let mut settings = MeshSettings::default();
        if let Some((k, i)) = table.get_key_value("allow_from") {
            settings.allow_from = self.allow_from(&path.child("allow_from"), k, i);
        }
        if let Some((k, i)) = table.get_key_value("request_timeout") {
            let p = path.child("request_timeout");
            if let Some((ms, span)) = self.duration(&p, k, i, "10s") {
                if ms == 0 || ms > MAX_MESH_REQUEST_TIMEOUT_MS {
                    let span = span.or_else(|| value_span(k, i));
                    let found = self.raw(span.clone()).unwrap_or("").to_string();
                    self.push(
                        span,
                        Some(p.to_string()),
                        format!("`{p}` must be between 1ms and 1h, found {found}"),
                        Some("it is the deadline of a whole call, retries included; for example `request_timeout = \"10s\"`".into()),
                    );
                } else {
                    settings.request_timeout_ms = ms;
                }
            }
        }
        if let Some((k, i)) = table.get_key_value("retries") {
            if let Some(n) = self.bounded(
                &path.child("retries"),
                (k, i),
                0,
                MAX_MESH_RETRIES,
                1,
                "retries is how many extra attempts a call may make on another instance, from 0 to 5",
            ) {
                settings.retries = n;
            }
        }
        if let Some((k, i)) = table.get_key_value("retry_budget") {
            if let Some(permille) = self.retry_budget(&path.child("retry_budget"), k, i) {
                settings.retry_budget_permille = permille;
            }
        }
        if let Some((k, i)) = table.get_key_value("max_concurrent") {
            let p = path.child("max_concurrent");
            if let Some((n, span)) = self.integer(&p, k, i, 1024) {
                match u32::try_from(n) {
                    Ok(n) if n >= 1 => settings.max_concurrent = n,
                    _ => {
                        let message = if n < 1 {
                            format!("`{p}` must be at least 1, found {n}")
                        } else {
                            format!("`{p}` must be at most {}, found {n}", u32::MAX)
                        };
                        self.push(
                            span,
                            Some(p.to_string()),
                            message,
                            Some("max_concurrent is how many requests one node's proxy has in flight to this service before it answers 503, for example `max_concurrent = 1024`".into()),
                        );
                    }
                }
            }
        }
        Some(settings)
    }

    /// `[mesh] allow_from`: service names, or `"*"` alone.
    fn allow_from(&mut self, path: &Path, key: &Key, item: &Item) -> Option<Vec<String>> {
        // Reports a value that is not an array, and each element that is not a string; the
        // strings are checked all the same, so that every problem is reported at once.
        let mut ok = self
            .string_list(path, key, item, "allow_from", "[\"web\", \"worker\"]")
            .is_some();
        let array = item.as_array()?;
        let mut out: Vec<String> = Vec::new();
        let mut star = None;
        for value in array.iter() {
            let Value::String(s) = value else {
                continue;
            };
            let name = s.value();
            let span = value.span().or_else(|| key.span());
            if name == "*" {
                star = Some(span.clone());
            } else if name.is_empty() {
                ok = false;
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("`{path}` has an empty service name"),
                    Some("write a service name, like \"web\", or \"*\" for any service".into()),
                );
                continue;
            } else if !is_dns_label(name) {
                ok = false;
                let suggestion = suggest_label(name, "");
                let hint = if name.contains('*') {
                    "patterns are not supported: list each service by name, or write \"*\" alone for any service".to_string()
                } else if suggestion.is_empty() || suggestion == *name {
                    "a service name is a DNS label: lowercase letters, digits and `-`, starting with a letter, at most 63 characters; or \"*\" for any service".to_string()
                } else {
                    format!(
                        "did you mean {}? A service name is a DNS label: lowercase letters, digits and `-`, starting with a letter, at most 63 characters; or \"*\" for any service",
                        quote(&suggestion)
                    )
                };
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("`{path}`: `{name}` is not a service name ({SERVICE_NAME_RULE})"),
                    Some(hint),
                );
                continue;
            }
            if out.contains(name) {
                ok = false;
                self.push(
                    span,
                    Some(path.to_string()),
                    format!("{} is listed twice in `{path}`", quote(name)),
                    Some("remove one of them".into()),
                );
                continue;
            }
            out.push(name.clone());
        }
        if let Some(span) = star.filter(|_| out.len() > 1) {
            ok = false;
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` lists \"*\" (any service) and service names"),
                Some("\"*\" already allows every service of the environment: write `allow_from = [\"*\"]`, or remove \"*\" to allow only the services named".into()),
            );
        }
        ok.then_some(out)
    }

    /// `[mesh] retry_budget`: a fraction from 0.0 to 1.0, in thousandths.
    fn retry_budget(&mut self, path: &Path, key: &Key, item: &Item) -> Option<u32> {
        const MEANING: &str = "retry_budget is the most retries as a fraction of the requests over the last 10 s, from 0.0 to 1.0, for example `retry_budget = 0.2`";
        let fraction = |value: f64| format!("{}", (value * 1000.0).round() / 1000.0);
        let (value, span) = match item {
            Item::Value(Value::Float(f)) => (*f.value(), f.span()),
            Item::Value(Value::Integer(i)) => (*i.value() as f64, i.span()),
            _ => {
                let hint = match item {
                    Item::Value(Value::String(s)) => {
                        let text = s.value().trim();
                        let percent = text
                            .strip_suffix('%')
                            .and_then(|t| t.trim().parse::<f64>().ok())
                            .filter(|p| (0.0..=100.0).contains(p));
                        match (percent, text.parse::<f64>()) {
                            (Some(p), _) => {
                                format!(
                                    "write a fraction: `retry_budget = {}`",
                                    fraction(p / 100.0)
                                )
                            }
                            (None, Ok(_)) => {
                                format!("write the number without quotes: `retry_budget = {text}`")
                            }
                            _ => MEANING.to_string(),
                        }
                    }
                    _ => MEANING.to_string(),
                };
                self.type_error(path, key, item, "a number from 0.0 to 1.0", hint);
                return None;
            }
        };
        let found = self.raw(span.clone()).unwrap_or("").to_string();
        if !(0.0..=1.0).contains(&value) {
            let hint = if value > 1.0 && value <= 100.0 {
                format!(
                    "it is a fraction, not a percentage: for {found}% write `retry_budget = {}`",
                    fraction(value / 100.0)
                )
            } else {
                MEANING.to_string()
            };
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` must be between 0.0 and 1.0, found {found}"),
                Some(hint),
            );
            return None;
        }
        let permille = (value * 1000.0).round() as u32;
        if permille == 0 && value > 0.0 {
            self.push(
                span,
                Some(path.to_string()),
                format!("`{path}` is counted in thousandths, and {found} rounds to 0"),
                Some("write at least 0.001, or `retry_budget = 0` for no retries".into()),
            );
            return None;
        }
        Some(permille)
    }

    /// `[slo]`: the objectives the autoscaler defends and `strata status` reports against. At
    /// least one key; none has a default.
    fn slo(&mut self, entry: Option<(&Key, &Item)>, service: &Path) -> Option<SloSpec> {
        const SET_ONE: &str = "set at least one of `p99_ms` (milliseconds), `error_rate` and `availability` (fractions between 0 and 1), like `availability = 0.999`, or remove the table";
        let (key, item) = entry?;
        let path = service.child("slo");
        let hint = match item {
            Item::Value(Value::Float(f)) => format!(
                "write it as a table: `slo = {{ availability = {} }}`",
                self.raw(f.span()).unwrap_or("0.999")
            ),
            _ => format!(
                "write it as a table: [{path}] with `availability = 0.999` and `p99_ms = 300`"
            ),
        };
        let table = self.table(&path, key, item, hint)?;
        self.check_keys(table, &path, service, Section::Slo);
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
                    .bounded(
                        &p,
                        (k, i),
                        1,
                        MAX_SLO_P99_MS,
                        300,
                        "p99_ms is the latency 99% of requests stay under, in milliseconds, from 1 to 600000 (10 minutes)",
                    )
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
    fn ratio(
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

    /// `[placement]`: the node labels an instance's node must carry.
    fn placement(
        &mut self,
        entry: Option<(&Key, &Item)>,
        service: &Path,
    ) -> BTreeMap<String, String> {
        let mut constraints = BTreeMap::new();
        let Some((key, item)) = entry else {
            return constraints;
        };
        let path = service.child("placement");
        let Some(table) = self.table(
            &path,
            key,
            item,
            format!("write it as a table: [{path}] with `labels = {{ zone = \"eu-1\" }}`"),
        ) else {
            return constraints;
        };
        self.check_keys(table, &path, service, Section::Placement);
        let Some((k, i)) = table.get_key_value("labels") else {
            return constraints;
        };
        let path = path.child("labels");
        let hint = match i {
            Item::Value(Value::String(s)) => match labels_table(s.value()) {
                Some(inline) => format!("write a table: `labels = {inline}`"),
                None => "for example `labels = { zone = \"eu-1\", disk = \"ssd\" }`".into(),
            },
            Item::Value(Value::Array(a)) => {
                let pairs: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
                match pairs.and_then(|p| labels_table(&p.join(","))) {
                    Some(inline) => format!("write a table: `labels = {inline}`"),
                    None => "for example `labels = { zone = \"eu-1\", disk = \"ssd\" }`".into(),
                }
            }
            _ => "for example `labels = { zone = \"eu-1\", disk = \"ssd\" }`".into(),
        };
        let Some(labels) = self.table(&path, k, i, hint) else {
            return constraints;
        };
        for (name, value_item) in labels.iter() {
            let Some((label_key, _)) = labels.get_key_value(name) else {
                continue;
            };
            let p = path.child(name);
            let key_ok = is_label_key(name);
            if !key_ok {
                let too_long = name.split('/').any(|p| p.chars().count() > MAX_LABEL_LEN);
                let hint = if too_long && name.contains('/') {
                    "a label key's prefix and name are each at most 63 characters".to_string()
                } else if too_long {
                    format!(
                        "a label key is at most 63 characters; this one has {}",
                        name.chars().count()
                    )
                } else {
                    match suggest_label_key(name) {
                        Some(s) => format!("did you mean `{}`? {LABEL_KEY_RULE}", display_key(&s)),
                        None => LABEL_KEY_RULE.to_string(),
                    }
                };
                self.push(
                    label_key.span(),
                    Some(p.to_string()),
                    format!("`{name}` is not a valid node label key"),
                    Some(hint),
                );
            }
            let example = format!("`{} = \"...\"`", display_key(name));
            let Some((value, span)) = self.string(&p, label_key, value_item, "a string", &example)
            else {
                continue;
            };
            if value.is_empty() {
                self.push(
                    span,
                    Some(p.to_string()),
                    format!("`{p}` must not be empty"),
                    Some(LABEL_VALUE_RULE.into()),
                );
                continue;
            }
            if !is_label_part(value) {
                let hint = if value.chars().count() > MAX_LABEL_LEN {
                    format!(
                        "a label value is at most 63 characters; this one has {}",
                        value.chars().count()
                    )
                } else {
                    let suggestion = suggest_label_part(value);
                    if suggestion.is_empty() || suggestion == value {
                        LABEL_VALUE_RULE.to_string()
                    } else {
                        format!("did you mean {}? {LABEL_VALUE_RULE}", quote(&suggestion))
                    }
                };
                self.push(
                    span,
                    Some(p.to_string()),
                    format!("`{p}` is not a valid label value: {}", quote(value)),
                    Some(hint),
                );
                continue;
            }
            if key_ok {
                constraints.insert(name.to_string(), value.to_string());
            }
        }
        constraints
    }

    fn cpu(&mut self, path: &Path, key: &Key, item: &Item) -> Option<u64> {
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

    fn cores(&mut self, path: &Path, span: Option<Range<usize>>, cores: f64) -> Option<u64> {
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

    fn memory(&mut self, path: &Path, key: &Key, item: &Item) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

[service.hello.slo]
p99_ms = 250
error_rate = 0.001
availability = 0.999

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
                    name: "hello".into(),
                    driver: DriverKind::Exec,
                    artifact: Some("build/hello".into()),
                    command: vec![],
                    args: vec!["--verbose".into()],
                    port: PortSpec::Fixed(8080),
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
                },
                ServiceSpec {
                    name: "static".into(),
                    driver: DriverKind::Exec,
                    artifact: None,
                    command: vec!["python3".into(), "-m".into(), "http.server".into()],
                    args: vec![],
                    port: PortSpec::Auto,
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

    /// Every complete example in docs/spec.md (before its Errors section) parses, so the
    /// reference never shows a spec Strata refuses.
    #[test]
    fn the_examples_of_docs_spec_md_parse() {
        let doc = include_str!("../../../../docs/spec.md");
        let reference = &doc[..doc.find("## Errors").expect("an Errors section")];
        let mut checked = 0;
        for block in reference.split("```toml\n").skip(1) {
            let block = &block[..block.find("```").expect("closed block")];
            // Fragments (a layout, one table) are not whole specs.
            if !block.contains("[service.") || block.contains("NAME") {
                continue;
            }
            let blocks_service = block
                .lines()
                .any(|l| l.starts_with("[service.") && l.matches('.').count() == 1);
            let has_program = block.contains("artifact") || block.contains("command");
            if !blocks_service || !has_program {
                continue;
            }
            if let Err(errors) = parse("spec.md", block) {
                panic!(
                    "docs/spec.md example does not parse:\n{block}\n{}",
                    errors.render(block)
                );
            }
            checked += 1;
        }
        assert!(checked >= 3, "only {checked} examples found");
    }

    #[test]
    fn liveness_and_min_ready_problems() {
        let table = [
            (
                "min_ready = \"2h\"\n",
                "`service.hello.min_ready` must be at most 1h, found 2h",
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
                      [service.db.container]\ncapabilities = [\"net_bind_service\", \"CAP_CHOWN\"]\npids = 64\n";
        let spec = parse("strata.toml", source).unwrap();
        assert_eq!(
            spec.services[0].container,
            Some(ContainerSettings {
                capabilities: vec!["NET_BIND_SERVICE".into(), "CHOWN".into()],
                pids: Some(64),
            })
        );
        let cases = [
            ("driver = \"wasm\"\nartifact = \"a.wasm\"\ncontainer.pids = 2\n", "uses the `wasm` driver"),
            ("driver = \"container\"\nartifact = \"a.tar\"\ncontainer.capabilities = [\"NET_BIND\"]\n", "did you mean `NET_BIND_SERVICE`"),
            ("driver = \"container\"\nartifact = \"a.tar\"\ncontainer.pids = 0\n", "from 1 to 1000000"),
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
            let e = error(&service(body));
            assert_eq!(
                summary(&e),
                (line, column, Some(key), message, Some(hint)),
                "{body:?}"
            );
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
        let e = error(
            "[service.web]\ndriver = \"wasm\"\nartifact = \"a.wasm\"\nwasm.max_concurrent = 2\n",
        );
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
    fn autoscale() {
        let scale = |body: &str| only_service(&service(body)).scale;
        let auto = |min, max, target_concurrency, scale_to_zero_after_ms| {
            Some(AutoscaleSpec {
                min,
                max,
                target_concurrency,
                scale_to_zero_after_ms,
            })
        };

        // `replicas` alone: a fixed count, as before.
        assert_eq!(
            scale("[service.hello.scale]\nreplicas = 3\n"),
            ScaleSpec::fixed(3)
        );

        // min and max only: start at min, the other keys take their defaults.
        assert_eq!(
            scale("[service.hello.scale]\nmin = 2\nmax = 5\n"),
            ScaleSpec {
                replicas: 2,
                autoscale: auto(2, 5, 10, 60_000),
            }
        );
        assert_eq!(
            (
                AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY,
                AutoscaleSpec::DEFAULT_SCALE_TO_ZERO_AFTER_MS
            ),
            (10, 60_000)
        );

        // replicas inside [min, max] is the starting count; bounds included.
        assert_eq!(
            scale(
                "[service.hello.scale]\nreplicas = 3\nmin = 1\nmax = 8\ntarget_concurrency = 50\n"
            ),
            ScaleSpec {
                replicas: 3,
                autoscale: auto(1, 8, 50, 60_000),
            }
        );
        assert_eq!(
            scale("scale = { replicas = 1, min = 1, max = 8 }\n").replicas,
            1
        );
        assert_eq!(
            scale("scale = { replicas = 8, min = 1, max = 8 }\n").replicas,
            8
        );
        assert_eq!(
            scale("scale = { min = 1, max = 1 }\n"),
            ScaleSpec {
                replicas: 1,
                autoscale: auto(1, 1, 10, 60_000),
            }
        );
        assert_eq!(
            scale("scale.min = 0\nscale.max = 1000\nscale.target_concurrency = 10000\n").autoscale,
            auto(0, 1000, 10_000, 60_000)
        );

        // min = 0: scale to zero, after the default or the time given.
        assert_eq!(
            scale("[service.hello.scale]\nmin = 0\nmax = 4\n"),
            ScaleSpec {
                replicas: 0,
                autoscale: auto(0, 4, 10, 60_000),
            }
        );
        assert_eq!(
            scale("[service.hello.scale]\nmin = 0\nmax = 4\nscale_to_zero_after = \"30s\"\n"),
            ScaleSpec {
                replicas: 0,
                autoscale: auto(0, 4, 10, 30_000),
            }
        );
        let zero_after = |v: &str| {
            scale(&format!(
                "scale = {{ min = 0, max = 2, scale_to_zero_after = {v} }}\n"
            ))
            .autoscale
            .unwrap()
            .scale_to_zero_after_ms
        };
        assert_eq!(zero_after("\"5m\""), 300_000);
        assert_eq!(zero_after("\"1s\""), 1_000);
        assert_eq!(zero_after("\"24h\""), 86_400_000);
        assert_eq!(zero_after("\"1m 30s\""), 90_000);
        assert_eq!(
            scale("scale = { replicas = 2, min = 0, max = 2, scale_to_zero_after = \"10m\" }\n"),
            ScaleSpec {
                replicas: 2,
                autoscale: auto(0, 2, 10, 600_000),
            }
        );

        // Absent autoscaling is omitted from the JSON; present, it round-trips.
        let json = |s: &ServiceSpec| serde_json::to_value(s).unwrap();
        let fixed = only_service(&service("scale.replicas = 2\n"));
        assert_eq!(json(&fixed)["scale"], serde_json::json!({ "replicas": 2 }));
        let auto_spec = only_service(&service("scale = { min = 1, max = 3 }\n"));
        assert_eq!(
            json(&auto_spec)["scale"],
            serde_json::json!({
                "replicas": 1,
                "autoscale": {
                    "min": 1,
                    "max": 3,
                    "target_concurrency": 10,
                    "scale_to_zero_after_ms": 60_000
                }
            })
        );
        let back: ServiceSpec = serde_json::from_value(json(&auto_spec)).unwrap();
        assert_eq!(back, auto_spec);
    }

    #[test]
    fn autoscale_errors() {
        // (body under [service.hello], line, column, key, message, hint)
        let cases: &[(&str, usize, usize, &str, &str, &str)] = &[
            (
                "[service.hello.scale]\nmin = 2\n",
                4,
                1,
                "service.hello.scale.max",
                "`service.hello.scale` sets `min` without `max`: autoscaling needs both",
                "add `max`: write both bounds, like `min = 2` and `max = 10`",
            ),
            (
                "[service.hello.scale]\nreplicas = 2\nmax = 4\n",
                5,
                1,
                "service.hello.scale.min",
                "`service.hello.scale` sets `max` without `min`: autoscaling needs both",
                "add `min`: write both bounds, like `min = 1` and `max = 4`",
            ),
            (
                "[service.hello.scale]\nmin = 5\nmax = 3\n",
                4,
                7,
                "service.hello.scale.min",
                "`service.hello.scale`: min (5) is above max (3)",
                "min is the fewest instances and max the most: write `min = 3` and `max = 5`",
            ),
            (
                "[service.hello.scale]\nmin = 0\nmax = 0\n",
                5,
                7,
                "service.hello.scale.max",
                "`service.hello.scale.max` must be between 1 and 1000, found 0",
                "max is the most instances the autoscaler runs, from 1 to 1000",
            ),
            (
                "[service.hello.scale]\nmin = 1\nmax = 1001\n",
                5,
                7,
                "service.hello.scale.max",
                "`service.hello.scale.max` must be between 1 and 1000, found 1001",
                "max is the most instances the autoscaler runs, from 1 to 1000",
            ),
            (
                "[service.hello.scale]\nmin = -1\nmax = 3\n",
                4,
                7,
                "service.hello.scale.min",
                "`service.hello.scale.min` must be between 0 and 1000, found -1",
                "min is the fewest instances the autoscaler keeps running, from 0 to 1000",
            ),
            (
                "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = 0\n",
                6,
                22,
                "service.hello.scale.target_concurrency",
                "`service.hello.scale.target_concurrency` must be between 1 and 10000, found 0",
                "target_concurrency is how many requests in flight per instance the autoscaler aims at, from 1 to 10000",
            ),
            (
                "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = 20000\n",
                6,
                22,
                "service.hello.scale.target_concurrency",
                "`service.hello.scale.target_concurrency` must be between 1 and 10000, found 20000",
                "target_concurrency is how many requests in flight per instance the autoscaler aims at, from 1 to 10000",
            ),
            (
                "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = \"10\"\n",
                6,
                22,
                "service.hello.scale.target_concurrency",
                "`service.hello.scale.target_concurrency` must be an integer, found a string",
                "write the number without quotes: `target_concurrency = 10`",
            ),
            (
                "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"500ms\"\n",
                6,
                23,
                "service.hello.scale.scale_to_zero_after",
                "`service.hello.scale.scale_to_zero_after` must be between 1s and 24h, found \"500ms\"",
                "it is how long without requests before the last instance stops; for example `scale_to_zero_after = \"5m\"`",
            ),
            (
                "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"25h\"\n",
                6,
                23,
                "service.hello.scale.scale_to_zero_after",
                "`service.hello.scale.scale_to_zero_after` must be between 1s and 24h, found \"25h\"",
                "it is how long without requests before the last instance stops; for example `scale_to_zero_after = \"5m\"`",
            ),
            (
                "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = 30\n",
                6,
                23,
                "service.hello.scale.scale_to_zero_after",
                "`service.hello.scale.scale_to_zero_after` must be a duration string, found an integer",
                "durations are strings with a unit: `scale_to_zero_after = \"30s\"` or `\"30ms\"`",
            ),
            (
                "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"soon\"\n",
                6,
                23,
                "service.hello.scale.scale_to_zero_after",
                "`service.hello.scale.scale_to_zero_after` is not a duration: \"soon\"",
                "write a number and a unit, like \"500ms\", \"5m\" or \"1m 30s\"",
            ),
            (
                "[service.hello.scale]\nmin = 2\nmax = 4\nscale_to_zero_after = \"5m\"\n",
                6,
                1,
                "service.hello.scale.scale_to_zero_after",
                "`service.hello.scale.scale_to_zero_after` is only allowed with `min = 0`, and min is 2",
                "the last instance stops after a time without requests only when `min = 0`: set `min = 0`, or remove `scale_to_zero_after` to keep at least 2 running",
            ),
            (
                "[service.hello.scale]\nreplicas = 2\ntarget_concurrency = 5\n",
                5,
                1,
                "service.hello.scale.target_concurrency",
                "`service.hello.scale.target_concurrency` is set without `min` and `max`: autoscaling needs min and max",
                "to autoscale, add `min = 1` and `max = 10` to [service.hello.scale]; for a fixed count of instances, remove `target_concurrency` and set `replicas`",
            ),
            (
                "scale = { scale_to_zero_after = \"5m\" }\n",
                3,
                11,
                "service.hello.scale.scale_to_zero_after",
                "`service.hello.scale.scale_to_zero_after` is set without `min` and `max`: autoscaling needs min and max",
                "to autoscale, add `min = 0` and `max = 10` to [service.hello.scale]; for a fixed count of instances, remove `scale_to_zero_after` and set `replicas`",
            ),
            (
                "[service.hello.scale]\nreplicas = 12\nmin = 2\nmax = 10\n",
                4,
                12,
                "service.hello.scale.replicas",
                "`service.hello.scale.replicas` must be between min (2) and max (10) when autoscaling, found 12",
                "with `min` and `max`, replicas is how many instances to start with: write a number from 2 to 10, or remove `replicas` to start at min",
            ),
            (
                "[service.hello.scale]\nreplicas = 0\nmin = 1\nmax = 3\n",
                4,
                12,
                "service.hello.scale.replicas",
                "`service.hello.scale.replicas` must be between min (1) and max (3) when autoscaling, found 0",
                "with `min` and `max`, replicas is how many instances to start with: write a number from 1 to 3, or remove `replicas` to start at min",
            ),
        ];
        for (body, line, column, key, message, hint) in cases {
            let source = service(body);
            let e = error(&source);
            assert_eq!(
                summary(&e),
                (*line, *column, Some(*key), *message, Some(*hint)),
                "\n{}",
                e.render(&source)
            );
        }

        // Unknown keys: did you mean, and keys written in the wrong table.
        let hint = |body: &str| error(&service(body)).hint.unwrap();
        // A misspelt bound is that one error, not also a missing bound.
        let e = error(&service("[service.hello.scale]\nmin = 1\nmaxx = 3\n"));
        assert_eq!(
            summary(&e),
            (
                5,
                1,
                Some("service.hello.scale.maxx"),
                "unknown key `service.hello.scale.maxx`",
                Some("did you mean `max`?")
            )
        );
        assert_eq!(
            hint("[service.hello.scale]\nmin_replicas = 1\nmax = 4\n"),
            "did you mean `min`?"
        );
        let hints: Vec<String> = errors(&service(
            "[service.hello.scale]\nmin_replicas = 1\nmax_replicas = 4\ntarget_concurrency = 5\n",
        ))
        .into_iter()
        .filter_map(|e| e.hint)
        .collect();
        assert_eq!(hints, ["did you mean `min`?", "did you mean `max`?"]);
        assert_eq!(
            hint("[service.hello.scale]\nmax_replicas = 1\n"),
            "did you mean `max`?"
        );
        assert_eq!(
            hint("[service.hello.scale]\nconcurrency = 1\n"),
            "did you mean `target_concurrency`?"
        );
        assert_eq!(
            hint("[service.hello.scale]\ntarget_concurency = 1\n"),
            "did you mean `target_concurrency`?"
        );
        assert_eq!(
            hint("[service.hello.scale]\nidle_timeout = \"1m\"\n"),
            "did you mean `scale_to_zero_after`?"
        );
        assert_eq!(
            hint("[service.hello.scale]\nxyzzy = 1\n"),
            "[service.hello.scale] accepts `replicas`, `min`, `max`, `target_concurrency` and `scale_to_zero_after`"
        );
        assert_eq!(
            hint("min = 1\n"),
            "`min` belongs in [service.hello.scale]: write `scale.min = 1` here, or put it under [service.hello.scale]"
        );
        assert_eq!(
            hint("autoscale = true\n"),
            "autoscaling is set in [service.hello.scale]: write `min` and `max` there, like `scale = { min = 1, max = 10 }`"
        );

        // Every bad value is reported, in order.
        let source = service(
            "[service.hello.scale]\nreplicas = \"x\"\nmin = -1\nmax = 0\ntarget_concurrency = 0\nscale_to_zero_after = 5\n",
        );
        let got: Vec<(usize, usize)> = errors(&source).iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(got, vec![(4, 12), (5, 7), (6, 7), (7, 22), (8, 23)]);
    }

    #[test]
    fn slo() {
        let slo = |body: &str| only_service(&service(body)).slo;
        assert_eq!(
            slo("[service.hello.slo]\np99_ms = 300\nerror_rate = 0.01\navailability = 0.999\n"),
            Some(SloSpec {
                p99_ms: Some(300),
                error_rate: Some(Ratio::from_ppm(10_000)),
                availability: Some(Ratio::from_ppm(999_000)),
            })
        );
        // Any one objective is enough; the others stay unset.
        assert_eq!(
            slo("[service.hello.slo]\navailability = 0.9995\n"),
            Some(SloSpec {
                availability: Some(Ratio::from_ppm(999_500)),
                ..SloSpec::default()
            })
        );
        assert_eq!(
            slo("slo = { p99_ms = 1 }\n"),
            Some(SloSpec {
                p99_ms: Some(1),
                ..SloSpec::default()
            })
        );
        assert_eq!(slo("slo.p99_ms = 600000\n").unwrap().p99_ms, Some(600_000));
        assert_eq!(
            slo("slo.error_rate = 0.000001\n").unwrap().error_rate,
            Some(Ratio::from_ppm(1))
        );
        assert_eq!(
            slo("slo.availability = 0.999999\n").unwrap().availability,
            Some(Ratio::from_ppm(999_999))
        );
        assert_eq!(slo(""), None);

        // Ratio: exact in millionths, a float in JSON, a percentage when displayed.
        let r = Ratio::from_ppm(999_000);
        assert_eq!((r.ppm(), r.as_f64()), (999_000, 0.999));
        assert_eq!(Ratio::from_ppm(2_000_000), Ratio::ONE);
        assert_eq!(Ratio::from_f64(0.01), Some(Ratio::from_ppm(10_000)));
        assert_eq!(Ratio::from_f64(1.5), None);
        assert_eq!(Ratio::from_f64(f64::NAN), None);
        assert!(Ratio::from_ppm(1) < Ratio::from_ppm(2));
        let shown: Vec<String> = [999_000, 10_000, 500, 1, 0, 1_000_000, 999_999]
            .iter()
            .map(|&ppm| Ratio::from_ppm(ppm).to_string())
            .collect();
        assert_eq!(
            shown,
            ["99.9%", "1%", "0.05%", "0.0001%", "0%", "100%", "99.9999%"]
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), "0.999");
        assert_eq!(serde_json::from_str::<Ratio>("0.999").unwrap(), r);
        assert_eq!(serde_json::from_str::<Ratio>("1").unwrap(), Ratio::ONE);
        assert!(serde_json::from_str::<Ratio>("1.5").is_err());
        assert!(serde_json::from_str::<Ratio>("-0.1").is_err());
        assert!(serde_json::from_str::<Ratio>("\"0.5\"").is_err());

        // In the service's JSON: floats; absent objectives and an absent SLO are omitted.
        let json = |s: &ServiceSpec| serde_json::to_value(s).unwrap();
        let with = only_service(&service(
            "[service.hello.slo]\np99_ms = 300\nerror_rate = 0.01\navailability = 0.999\n",
        ));
        assert_eq!(
            json(&with)["slo"],
            serde_json::json!({ "p99_ms": 300, "error_rate": 0.01, "availability": 0.999 })
        );
        let back: ServiceSpec = serde_json::from_value(json(&with)).unwrap();
        assert_eq!(back, with);
        let partial = only_service(&service("slo.availability = 0.99\n"));
        assert_eq!(
            json(&partial)["slo"],
            serde_json::json!({ "availability": 0.99 })
        );
        let without = only_service(&service(""));
        assert!(json(&without).get("slo").is_none());
    }

    #[test]
    fn slo_errors() {
        const SET_ONE: &str = "set at least one of `p99_ms` (milliseconds), `error_rate` and `availability` (fractions between 0 and 1), like `availability = 0.999`, or remove the table";
        const ERROR_RATE: &str = "error_rate is the largest fraction of requests that may fail, between 0 and 1 (exclusive): for example `error_rate = 0.01` (1%)";
        const AVAILABILITY: &str = "availability is the fraction of time the service must be up, between 0 and 1 (exclusive): for example `availability = 0.999` (99.9%)";
        const P99: &str = "p99_ms is the latency 99% of requests stay under, in milliseconds, from 1 to 600000 (10 minutes)";
        // (body under [service.hello], line, column, key, message, hint)
        let cases: &[(&str, usize, usize, &str, &str, &str)] = &[
            (
                "[service.hello.slo]\n",
                3,
                16,
                "service.hello.slo",
                "`service.hello.slo` sets no objective",
                SET_ONE,
            ),
            (
                "slo = {}\n",
                3,
                1,
                "service.hello.slo",
                "`service.hello.slo` sets no objective",
                SET_ONE,
            ),
            (
                "slo = 0.999\n",
                3,
                7,
                "service.hello.slo",
                "`service.hello.slo` must be a table, found a float",
                "write it as a table: `slo = { availability = 0.999 }`",
            ),
            (
                "[service.hello.slo]\np99_ms = 0\n",
                4,
                10,
                "service.hello.slo.p99_ms",
                "`service.hello.slo.p99_ms` must be between 1 and 600000, found 0",
                P99,
            ),
            (
                "[service.hello.slo]\np99_ms = 600001\n",
                4,
                10,
                "service.hello.slo.p99_ms",
                "`service.hello.slo.p99_ms` must be between 1 and 600000, found 600001",
                P99,
            ),
            (
                "[service.hello.slo]\np99_ms = \"300ms\"\n",
                4,
                10,
                "service.hello.slo.p99_ms",
                "`service.hello.slo.p99_ms` must be an integer, found a string",
                "p99_ms is a number of milliseconds: write `p99_ms = 300`",
            ),
            (
                "[service.hello.slo]\np99_ms = 2.5\n",
                4,
                10,
                "service.hello.slo.p99_ms",
                "`service.hello.slo.p99_ms` must be an integer, found a float",
                "for example `p99_ms = 300`",
            ),
            (
                "[service.hello.slo]\nerror_rate = 1\n",
                4,
                14,
                "service.hello.slo.error_rate",
                "`service.hello.slo.error_rate` must be a float between 0 and 1, found an integer",
                ERROR_RATE,
            ),
            (
                "[service.hello.slo]\nerror_rate = 5\n",
                4,
                14,
                "service.hello.slo.error_rate",
                "`service.hello.slo.error_rate` must be a float between 0 and 1, found an integer",
                "write a fraction with a decimal point: for 5% write `error_rate = 0.05`",
            ),
            (
                "[service.hello.slo]\nerror_rate = 0.0\n",
                4,
                14,
                "service.hello.slo.error_rate",
                "`service.hello.slo.error_rate` must be between 0 and 1 (exclusive), found 0.0",
                ERROR_RATE,
            ),
            (
                "[service.hello.slo]\nerror_rate = 1.5\n",
                4,
                14,
                "service.hello.slo.error_rate",
                "`service.hello.slo.error_rate` must be between 0 and 1 (exclusive), found 1.5",
                "it is a fraction, not a percentage: for 1.5% write `error_rate = 0.015`",
            ),
            (
                "[service.hello.slo]\nerror_rate = 1e-9\n",
                4,
                14,
                "service.hello.slo.error_rate",
                "`service.hello.slo.error_rate` is counted in millionths, and 1e-9 rounds to 0",
                "write at least 0.000001; for example `error_rate = 0.01`",
            ),
            (
                "[service.hello.slo]\nerror_rate = \"1%\"\n",
                4,
                14,
                "service.hello.slo.error_rate",
                "`service.hello.slo.error_rate` must be a float between 0 and 1, found a string",
                "write a fraction: `error_rate = 0.01`",
            ),
            (
                "[service.hello.slo]\navailability = 99.9\n",
                4,
                16,
                "service.hello.slo.availability",
                "`service.hello.slo.availability` must be between 0 and 1 (exclusive), found 99.9",
                "it is a fraction, not a percentage: for 99.9% write `availability = 0.999`",
            ),
            (
                "[service.hello.slo]\navailability = 1.0\n",
                4,
                16,
                "service.hello.slo.availability",
                "`service.hello.slo.availability` must be between 0 and 1 (exclusive), found 1.0",
                AVAILABILITY,
            ),
            (
                "[service.hello.slo]\navailability = 1\n",
                4,
                16,
                "service.hello.slo.availability",
                "`service.hello.slo.availability` must be a float between 0 and 1, found an integer",
                AVAILABILITY,
            ),
            (
                "[service.hello.slo]\navailability = \"99.9%\"\n",
                4,
                16,
                "service.hello.slo.availability",
                "`service.hello.slo.availability` must be a float between 0 and 1, found a string",
                "write a fraction: `availability = 0.999`",
            ),
            (
                "[service.hello.slo]\navailability = \"0.99\"\n",
                4,
                16,
                "service.hello.slo.availability",
                "`service.hello.slo.availability` must be a float between 0 and 1, found a string",
                "write the number without quotes: `availability = 0.99`",
            ),
            (
                "[service.hello.slo]\navailability = 0.9999999\n",
                4,
                16,
                "service.hello.slo.availability",
                "`service.hello.slo.availability` is counted in millionths, and 0.9999999 rounds to 1",
                "write at most 0.999999; for example `availability = 0.999`",
            ),
        ];
        for (body, line, column, key, message, hint) in cases {
            let source = service(body);
            let e = error(&source);
            assert_eq!(
                summary(&e),
                (*line, *column, Some(*key), *message, Some(*hint)),
                "\n{}",
                e.render(&source)
            );
        }

        // Unknown keys: did you mean, and keys written in the wrong table. A table holding only
        // an unknown key is that one error.
        let hint = |body: &str| error(&service(body)).hint.unwrap();
        let e = error(&service("[service.hello.slo]\np99 = 300\n"));
        assert_eq!(
            summary(&e),
            (
                4,
                1,
                Some("service.hello.slo.p99"),
                "unknown key `service.hello.slo.p99`",
                Some("did you mean `p99_ms`?")
            )
        );
        assert_eq!(
            hint("[service.hello.slo]\nerror-rate = 0.01\n"),
            "did you mean `error_rate`?"
        );
        assert_eq!(
            hint("[service.hello.slo]\nlatency = 300\n"),
            "did you mean `p99_ms`?"
        );
        assert_eq!(
            hint("[service.hello.slo]\nuptime = 0.99\n"),
            "did you mean `availability`?"
        );
        assert_eq!(
            hint("[service.hello.slo]\nxyzzy = 1\n"),
            "[service.hello.slo] accepts `p99_ms`, `error_rate` and `availability`"
        );
        assert_eq!(
            hint("[service.hello.slo]\nreplicas = 1\n"),
            "`replicas` belongs in [service.hello.scale]"
        );
        assert_eq!(
            hint("availability = 0.99\n"),
            "`availability` belongs in [service.hello.slo]: write `slo.availability = 0.99` here, or put it under [service.hello.slo]"
        );
        assert_eq!(hint("sla.availability = 0.99\n"), "did you mean `slo`?");

        // Every bad value is reported, in order.
        let source =
            service("[service.hello.slo]\np99_ms = -1\nerror_rate = 2\navailability = \"high\"\n");
        let got: Vec<(usize, usize)> = errors(&source).iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(got, vec![(4, 10), (5, 14), (6, 16)]);
    }

    #[test]
    fn scale_and_slo_leave_the_spec_hash_unchanged() {
        let base = only_service(&service(""));
        let hash = base.spec_hash(Some("sha256:aa"));
        for body in [
            "scale.replicas = 7\n",
            "scale = { min = 1, max = 5 }\n",
            "scale = { replicas = 3, min = 0, max = 9, target_concurrency = 50, scale_to_zero_after = \"2m\" }\n",
            "slo.availability = 0.999\n",
            "slo = { p99_ms = 200, error_rate = 0.01 }\n",
            "scale = { min = 2, max = 4 }\nslo.p99_ms = 100\n",
        ] {
            let spec = only_service(&service(body));
            assert_ne!(spec, base, "{body:?}");
            assert_eq!(spec.spec_hash(Some("sha256:aa")), hash, "{body:?}");
        }
        // The hash of a spec without autoscaling or SLO is what it was before they existed:
        // neither appears in its JSON.
        let json = serde_json::to_value(&base).unwrap();
        assert!(json.get("slo").is_none() && json["scale"].get("autoscale").is_none());
        // What runs still changes it: the artifact, its digest, an SLO beside another change.
        let other = only_service("[service.hello]\nartifact = \"build/other\"\n");
        assert_ne!(other.spec_hash(Some("sha256:aa")), hash);
        assert_ne!(base.spec_hash(Some("sha256:bb")), hash);
        let both = only_service(&service("slo.availability = 0.9\nargs = [\"-v\"]\n"));
        assert_ne!(both.spec_hash(Some("sha256:aa")), hash);
    }

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
        let stop =
            |v: &str| only_service(&service(&format!("stop_timeout = {v}\n"))).stop_timeout_ms;
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
        type Expected<'a> = (usize, usize, &'a str, &'a str, &'a str);
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
                 "`service.hello.health.interval` must be at least 50ms, found 10ms",
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
                 "`service.hello.health.timeout` must be more than 0",
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
                 "config keys become environment variables: letters, digits and `_`, not starting with a digit, like `LOG_LEVEL`"),
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
        for (body, (line, column, key, message, hint)) in cases {
            let source = service(body);
            let e = error(&source);
            assert_eq!(
                summary(&e),
                (*line, *column, Some(*key), *message, Some(*hint)),
                "\n{}",
                e.render(&source)
            );
        }
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
        type Expected<'a> = (usize, usize, &'a str, &'a str, &'a str);
        let long_key = format!("{}x", long);
        let long_key_message = format!("`{long_key}` is not a valid node label key");
        let long_value_body = format!("placement.labels.zone = \"{long_key}\"\n");
        let long_value_message = format!(
            "`service.hello.placement.labels.zone` is not a valid label value: \"{long_key}\""
        );
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
        for (body, (line, column, key, message, hint)) in cases {
            let source = service(body);
            let e = error(&source);
            assert_eq!(
                summary(&e),
                (*line, *column, Some(*key), *message, Some(*hint)),
                "\n{}",
                e.render(&source)
            );
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
            Some((52, 11))
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
}
