//! The tables of the file (see the [layout](super#layout)) and the reads every part of the
//! store makes of them: the meta counters, one record, a prefix scan.

use std::fmt;
use std::ops::Bound;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{MultimapTableDefinition, ReadableTable, TableDefinition};

use super::codec;
use crate::{KeyValue, Revision, StoreError};

pub(super) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub(super) const LEASES: TableDefinition<u64, (u64, u64)> = TableDefinition::new("leases");
pub(super) const LEASE_KEYS: MultimapTableDefinition<u64, &str> =
    MultimapTableDefinition::new("lease_keys");

/// `meta` keys.
pub(super) const META_SCHEMA: &str = "schema";
pub(super) const META_REVISION: &str = "revision";
pub(super) const META_OLDEST: &str = "oldest_event";
pub(super) const META_NEXT_LEASE: &str = "next_lease";

/// The version of the table layout and record encoding this code reads and writes.
pub(super) const SCHEMA_VERSION: u64 = 1;

/// Maps any redb error to [`StoreError::Backend`].
pub(super) fn backend(e: impl fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Wall-clock now, in unix milliseconds.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn meta_get(
    meta: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(meta.get(name).map_err(backend)?.map(|v| v.value()))
}

pub(super) fn current_revision(
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Revision, StoreError> {
    Ok(meta_get(meta, META_REVISION)?.unwrap_or(0))
}

/// The oldest revision still in the event log (1 until the log is first compacted).
pub(super) fn oldest_event(
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Revision, StoreError> {
    Ok(meta_get(meta, META_OLDEST)?.unwrap_or(1))
}

pub(super) fn read_kv(
    kv: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<KeyValue>, StoreError> {
    match kv.get(key).map_err(backend)? {
        Some(bytes) => codec::decode_kv(key, bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// Keys under `prefix` after `start_after`, at most `limit` (0: all), and whether more follow.
/// Every key under `/` but those under the `skipped` prefixes, jumping over each skipped
/// range instead of reading it.
pub(super) fn scan_skipping(
    kv: &impl ReadableTable<&'static str, &'static [u8]>,
    skipped: &[&str],
) -> Result<Vec<KeyValue>, StoreError> {
    let mut kvs = Vec::new();
    let mut lower = "/".to_string();
    loop {
        let mut resume_at = None;
        for entry in kv.range::<&str>(lower.as_str()..).map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let key = key.value();
            if !key.starts_with('/') {
                break;
            }
            if let Some(prefix) = skipped.iter().find(|prefix| key.starts_with(**prefix)) {
                resume_at = Some(past_prefix(prefix));
                break;
            }
            kvs.push(codec::decode_kv(key, value.value())?);
        }
        match resume_at {
            Some(next) => lower = next,
            None => return Ok(kvs),
        }
    }
}

/// The first string after every string that starts with `prefix` (an ASCII prefix).
fn past_prefix(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).expect("ASCII stays UTF-8");
        }
    }
    "\u{7f}".to_string()
}

pub(super) fn scan_prefix(
    kv: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<(Vec<KeyValue>, bool), StoreError> {
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut kvs = Vec::new();
    for entry in kv
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(backend)?
    {
        let (key, value) = entry.map_err(backend)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if limit > 0 && kvs.len() == limit {
            return Ok((kvs, true));
        }
        kvs.push(codec::decode_kv(key, value.value())?);
    }
    Ok((kvs, false))
}
