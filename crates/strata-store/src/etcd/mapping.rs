//! The mapping between the store's keys and values and etcd's: the namespace prefix on the
//! way in and out, prefix ranges, revisions and lease ids, key-values and watch events.

use etcd_client::proto::{PbEvent, PbKeyValue, PbResponseHeader};

use super::Shared;
use crate::{KeyValue, LeaseId, Revision, StoreError, WatchEvent};

/// The end of the range of keys that start with `prefix` (`"\0"`: to the end of the keyspace).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether `key` lies before the range end `end` (`"\0"` is the end of the keyspace).
pub(super) fn before_end(key: &[u8], end: &[u8]) -> bool {
    end == [0] || key < end
}

pub(super) fn rev_out(revision: i64) -> Revision {
    Revision::try_from(revision).unwrap_or(0)
}

/// A revision for etcd; ones past `i64::MAX` cannot exist and saturate.
pub(super) fn rev_in(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

pub(super) fn lease_out(lease: i64) -> Option<LeaseId> {
    LeaseId::try_from(lease).ok().filter(|&id| id != 0)
}

/// A lease id for etcd, or `None` if no etcd lease can have it.
pub(super) fn lease_in(lease: LeaseId) -> Option<i64> {
    i64::try_from(lease).ok().filter(|&id| id > 0)
}

pub(super) fn header_revision(
    header: Option<&PbResponseHeader>,
    what: &str,
) -> Result<Revision, StoreError> {
    header
        .map(|h| rev_out(h.revision))
        .ok_or_else(|| StoreError::Backend(format!("etcd {what}: the response has no header")))
}

impl Shared {
    /// The etcd key of `key`.
    pub(super) fn key_in(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        if self.namespace.is_empty() {
            if key.is_empty() {
                return Err(StoreError::InvalidKey(
                    "etcd cannot store the empty key".to_owned(),
                ));
            }
            return Ok(key.as_bytes().to_vec());
        }
        if !key.starts_with('/') {
            return Err(StoreError::InvalidKey(format!(
                "key {key:?} does not start with '/', which every key of the etcd store \
                 namespaced {} must",
                self.namespace
            )));
        }
        let mut raw = Vec::with_capacity(self.namespace.len() + key.len());
        raw.extend_from_slice(self.namespace.as_bytes());
        raw.extend_from_slice(key.as_bytes());
        Ok(raw)
    }

    /// The store key of the etcd key `raw`.
    pub(super) fn key_out(&self, raw: &[u8]) -> Result<String, StoreError> {
        let key = raw.strip_prefix(self.namespace.as_bytes()).ok_or_else(|| {
            StoreError::Backend(format!(
                "etcd returned the key {:?}, outside the namespace {}",
                String::from_utf8_lossy(raw),
                self.namespace
            ))
        })?;
        String::from_utf8(key.to_vec()).map_err(|_| {
            StoreError::Backend(format!(
                "etcd key {:?} is not UTF-8",
                String::from_utf8_lossy(raw)
            ))
        })
    }

    pub(super) fn kv_out(&self, kv: PbKeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.key_out(&kv.key)?,
            value: kv.value,
            create_revision: rev_out(kv.create_revision),
            mod_revision: rev_out(kv.mod_revision),
            version: u64::try_from(kv.version).unwrap_or(0),
            lease: lease_out(kv.lease),
        })
    }

    pub(super) fn event_out(&self, event: PbEvent) -> Result<WatchEvent, StoreError> {
        let kv = event
            .kv
            .ok_or_else(|| StoreError::Backend("etcd sent a watch event without a key".into()))?;
        match event.r#type {
            0 => Ok(WatchEvent::Put(self.kv_out(kv)?)),
            1 => Ok(WatchEvent::Delete {
                key: self.key_out(&kv.key)?,
                revision: rev_out(kv.mod_revision),
                prev: event.prev_kv.map(|prev| self.kv_out(prev)).transpose()?,
            }),
            other => Err(StoreError::Backend(format!(
                "etcd sent a watch event of unknown type {other} for {:?}",
                String::from_utf8_lossy(&kv.key)
            ))),
        }
    }

    /// The etcd range `[key, end)` of the keys under `prefix`, or `None` if no key of this
    /// namespace can start with `prefix`.
    pub(super) fn range(&self, prefix: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.namespace.is_empty() {
            if prefix.is_empty() {
                return Some((vec![0], vec![0]));
            }
            let key = prefix.as_bytes().to_vec();
            let end = prefix_end(&key);
            return Some((key, end));
        }
        let key = match prefix {
            "" => format!("{}/", self.namespace),
            p if p.starts_with('/') => format!("{}{p}", self.namespace),
            _ => return None,
        }
        .into_bytes();
        let end = prefix_end(&key);
        Some((key, end))
    }

    /// A key for reads that only want the response header.
    pub(super) fn probe_key(&self) -> Vec<u8> {
        if self.namespace.is_empty() {
            b"/".to_vec()
        } else {
            self.namespace.as_bytes().to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
        assert!(before_end(b"zzz", &[0]));
        assert!(before_end(b"/a/zzz", b"/a0") && !before_end(b"/a0", b"/a0"));
    }

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(rev_in(u64::MAX), i64::MAX);
        assert_eq!(rev_out(-1), 0);
        assert_eq!(lease_out(0), None);
        assert_eq!(lease_in(0), None);
        assert_eq!(lease_in(u64::MAX), None);
        assert_eq!(lease_in(7), Some(7));
    }
}
