//! The limits a layer archive is checked against (entries, total size, path length) as it
//! streams, when it is added to the store and when it is unpacked; and how an entry's path is
//! shown in the errors that name it.

use std::io::Read;

use crate::error::ImageError;

/// Limits on one layer archive. A layer that crosses one is refused as soon as the entry that
/// crosses it is read, naming that entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// The sum of the entries' sizes, in bytes (default 8 GiB).
    pub max_bytes: u64,
    /// The number of entries (default 1,000,000).
    pub max_entries: u64,
    /// The length of an entry's path or link target, in bytes (default 4096, Linux's PATH_MAX).
    pub max_path_len: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 8 << 30,
            max_entries: 1_000_000,
            max_path_len: 4096,
        }
    }
}

/// An entry's path for messages: lossy UTF-8 with control characters escaped, cut after 300
/// characters (a path over the length limit can be long).
pub(crate) fn display_path(raw: &[u8]) -> String {
    const SHOWN: usize = 300;
    let text = String::from_utf8_lossy(raw);
    let mut shown = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == SHOWN {
            shown.push_str(&format!("... ({} bytes in all)", raw.len()));
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// Checks the limits that apply before an entry is looked at further; used both when a layer
/// is added to the store and when it is unpacked.
pub(crate) struct LimitCounter<'a> {
    limits: &'a UnpackLimits,
    what: &'a str,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

impl<'a> LimitCounter<'a> {
    pub(crate) fn new(limits: &'a UnpackLimits, what: &'a str) -> Self {
        LimitCounter {
            limits,
            what,
            entries: 0,
            bytes: 0,
        }
    }

    pub(crate) fn count<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry.path_bytes();
        let exceeded = |limit: String| ImageError::LimitExceeded {
            layer: self.what.to_string(),
            entry: display_path(&raw),
            limit,
        };
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(exceeded(format!(
                "{} entries (max_entries)",
                self.limits.max_entries
            )));
        }
        let link_len = entry.link_name_bytes().map(|l| l.len()).unwrap_or(0);
        if raw.len() > self.limits.max_path_len || link_len > self.limits.max_path_len {
            return Err(exceeded(format!(
                "{} bytes for a path or link target (max_path_len)",
                self.limits.max_path_len
            )));
        }
        self.bytes = self.bytes.saturating_add(entry.size());
        if self.bytes > self.limits.max_bytes {
            return Err(exceeded(format!(
                "{} bytes in all (max_bytes; the entries so far add up to {})",
                self.limits.max_bytes, self.bytes
            )));
        }
        Ok(())
    }
}
