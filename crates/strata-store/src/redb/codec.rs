//! The binary encoding of records (little-endian, length-prefixed, versioned).
//!
//! - kv record: `FORMAT`, then a *record*.
//! - record: create_revision u64, mod_revision u64, version u64, lease flag u8 (+ u64),
//!   value length u64 + bytes.
//! - event log entry: `FORMAT`, event count u64, then per event a tag u8 and a key (length
//!   u64, UTF-8 bytes); tag 0 (put) is followed by a record, tag 1 (delete) by a flag u8
//!   and, if set, the previous record.

use crate::{KeyValue, Revision, StoreError, WatchEvent};

const FORMAT: u8 = 1;
const TAG_PUT: u8 = 0;
const TAG_DELETE: u8 = 1;

pub(super) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(42 + kv.value.len());
    out.push(FORMAT);
    put_record(&mut out, kv);
    out
}

pub(super) fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let decode = || {
        let mut r = Reader(bytes);
        r.format()?;
        let kv = r.record(key.to_owned())?;
        r.finish()?;
        Ok::<_, String>(kv)
    };
    decode().map_err(|reason| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    })
}

pub(super) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let mut out = vec![FORMAT];
    put_u64(&mut out, events.len() as u64);
    for event in events {
        match event {
            WatchEvent::Put(kv) => {
                out.push(TAG_PUT);
                put_bytes(&mut out, kv.key.as_bytes());
                put_record(&mut out, kv);
            }
            WatchEvent::Delete { key, prev, .. } => {
                out.push(TAG_DELETE);
                put_bytes(&mut out, key.as_bytes());
                match prev {
                    Some(prev) => {
                        out.push(1);
                        put_record(&mut out, prev);
                    }
                    None => out.push(0),
                }
            }
        }
    }
    out
}

pub(super) fn decode_events(
    revision: Revision,
    bytes: &[u8],
) -> Result<Vec<WatchEvent>, StoreError> {
    let decode = || {
        let mut r = Reader(bytes);
        r.format()?;
        let count = r.u64()?;
        let mut events = Vec::with_capacity(usize::try_from(count.min(1024)).unwrap_or(0));
        for _ in 0..count {
            let tag = r.u8()?;
            let key = r.string()?;
            events.push(match tag {
                TAG_PUT => WatchEvent::Put(r.record(key)?),
                TAG_DELETE => {
                    let prev = match r.u8()? {
                        0 => None,
                        1 => Some(r.record(key.clone())?),
                        other => return Err(format!("bad prev flag {other}")),
                    };
                    WatchEvent::Delete {
                        key,
                        revision,
                        prev,
                    }
                }
                other => return Err(format!("unknown event tag {other}")),
            });
        }
        r.finish()?;
        Ok(events)
    };
    decode().map_err(|e: String| {
        StoreError::Backend(format!(
            "corrupt event log entry at revision {revision}: {e}"
        ))
    })
}

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_record(out: &mut Vec<u8>, kv: &KeyValue) {
    put_u64(out, kv.create_revision);
    put_u64(out, kv.mod_revision);
    put_u64(out, kv.version);
    match kv.lease {
        Some(lease) => {
            out.push(1);
            put_u64(out, lease);
        }
        None => out.push(0),
    }
    put_bytes(out, &kv.value);
}

/// A cursor over an encoded record; every read checks the length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: needs {n} more bytes, {} left",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        let bytes: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| "short integer".to_owned())?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| format!("length {len} too large"))?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, String> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("key is not UTF-8: {e}"))
    }

    fn format(&mut self) -> Result<(), String> {
        match self.u8()? {
            FORMAT => Ok(()),
            other => Err(format!("unknown record format {other}")),
        }
    }

    fn record(&mut self, key: String) -> Result<KeyValue, String> {
        let create_revision = self.u64()?;
        let mod_revision = self.u64()?;
        let version = self.u64()?;
        let lease = match self.u8()? {
            0 => None,
            1 => Some(self.u64()?),
            other => return Err(format!("bad lease flag {other}")),
        };
        let value = self.bytes()?.to_vec();
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
            version,
            lease,
        })
    }

    fn finish(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.0.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LeaseId;

    fn kv(key: &str, value: &[u8], lease: Option<LeaseId>) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version: 2,
            lease,
        }
    }

    #[test]
    fn codec_round_trips() {
        let record = kv("/a", &[0, 255, 1], Some(9));
        let bytes = encode_kv(&record);
        assert_eq!(decode_kv("/a", &bytes).unwrap(), record);

        let events = vec![
            WatchEvent::Put(kv("/a", b"x", None)),
            WatchEvent::Delete {
                key: "/b".into(),
                revision: 7,
                prev: Some(kv("/b", b"", Some(1))),
            },
            WatchEvent::Delete {
                key: "/c".into(),
                revision: 7,
                prev: None,
            },
        ];
        let bytes = encode_events(&events);
        assert_eq!(decode_events(7, &bytes).unwrap(), events);
    }

    #[test]
    fn codec_rejects_garbage_without_panicking() {
        let good = encode_kv(&kv("/a", b"value", Some(1)));
        for len in 0..good.len() {
            assert!(decode_kv("/a", &good[..len]).is_err(), "prefix of {len}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_kv("/a", &trailing).is_err());
        let mut huge = vec![1];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_events(1, &huge).is_err());
        let err = decode_kv("/named", &[2, 0]).unwrap_err();
        assert!(err.to_string().contains("/named"), "{err}");
    }
}
