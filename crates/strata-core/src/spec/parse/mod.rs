//! Parsing a spec file: TOML text in, a validated [`SpecFile`] or every problem found out.
//!
//! The text is parsed with `toml_edit`, whose tree keeps the byte span of every key and value,
//! and then checked against the schema ([`schema`]: per table, the keys it allows with their
//! type, default, bounds and aliases). Each section of a service has its file (`service`,
//! `scale`, `probes`, `runtime`, `mesh`, `slo`, `forensics`, `placement`, `config`); typed values are read
//! in `values`. Every problem becomes a [`SpecError`] pointing at the exact key or value, with a
//! hint; all of them are collected in one pass and returned sorted by position. docs/spec.md
//! describes the format for users, and a test holds its key tables against the schema.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

pub use received::{check_received, ReceivedSpecError};
use toml_edit::{ImDocument, Item, Key, TableLike, TomlError, Value};

use super::error::{line_col, SpecError, SpecErrors};
use super::{
    AutoscaleSpec, ContainerSettings, DriverKind, HealthSpec, LivenessSpec, MeshSettings, PortSpec,
    Protocol, Ratio, RouteSpec, ScaleSpec, ServiceSpec, SloSpec, SpecFile, WasmLimits,
    DEFAULT_MIN_READY_MS,
};
use crate::model::Resources;

mod config;
mod forensics;
mod keys;
mod mesh;
mod names;
mod placement;
mod probes;
mod protocol;
mod received;
mod runtime;
mod scale;
mod schema;
mod secrets;
mod service;
mod slo;
mod syntax;
mod text;
mod units;
mod values;

#[cfg(test)]
mod tests;

use names::*;
use schema::*;
use text::*;
pub use units::parse_size;
use units::*;

const DEFAULT_STOP_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_INTERVAL_MS: u64 = 1_000;
const DEFAULT_TIMEOUT_MS: u64 = 500;
const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;
const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
const DEFAULT_REPLICAS: u32 = 1;
/// Whether `name` is a Linux capability as capabilities(7) names it, without `CAP_`.
pub fn is_capability(name: &str) -> bool {
    CAPABILITIES.contains(&name)
}

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
// Key paths
// ---------------------------------------------------------------------------------------------

/// A dotted key path; segments that are not bare TOML keys are quoted when displayed.
#[derive(Debug, Clone, Default)]
pub(in crate::spec) struct Path(Vec<String>);

impl Path {
    pub(in crate::spec) fn from_segments(segments: &[&str]) -> Path {
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

impl<'s> Checker<'s> {
    pub(super) fn push(
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

    pub(super) fn raw(&self, span: Option<Range<usize>>) -> Option<&'s str> {
        self.source.get(span?)
    }
}
