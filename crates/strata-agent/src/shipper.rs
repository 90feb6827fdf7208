//! Log shipping: every [`SHIP_EVERY`] the agent sends what its instances wrote since the last
//! shipment to the control plane, which keeps the last lines of each instance
//! ([`strata_core::LogTail`]). So when a node dies, `strata logs` still shows what its
//! instances said last, instead of losing it with the node.
//!
//! Shipping is best effort and bounded: at most [`MAX_CHUNK`] per instance a shipment (a
//! chattier instance is cut to its latest output, which is what the control plane keeps
//! anyway); a failed shipment is retried from the same offsets next time.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use strata_core::api::{LogChunk, ShippedLogs};

use crate::client::ControlClient;
use crate::supervisor::AgentDirs;

/// How often output is shipped.
pub const SHIP_EVERY: Duration = Duration::from_secs(2);
/// The most output of one instance in one shipment (the control plane keeps 16 KiB).
pub const MAX_CHUNK: u64 = 16 * 1024;

/// What has been shipped of each instance's log: bytes up to this offset.
#[derive(Debug, Default)]
pub struct Offsets(BTreeMap<String, u64>);

impl Offsets {
    /// Reads what each instance under `dirs` wrote past its offset (the last [`MAX_CHUNK`] of
    /// it). Returns the chunks and the offsets they reach, applied by [`Offsets::advance`]
    /// once the control plane has them.
    pub fn collect(&self, dirs: &AgentDirs) -> (Vec<LogChunk>, BTreeMap<String, u64>) {
        let mut chunks = Vec::new();
        let mut reached = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(dirs.instances()) else {
            return (chunks, reached);
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let from = self.0.get(&id).copied().unwrap_or(0);
            let Some((data, end)) = read_new(&dirs.log(&id), from) else {
                continue;
            };
            reached.insert(id.clone(), end);
            if !data.is_empty() {
                chunks.push(LogChunk { instance: id, data });
            }
        }
        chunks.sort_by(|a, b| a.instance.cmp(&b.instance));
        (chunks, reached)
    }

    pub fn advance(&mut self, reached: BTreeMap<String, u64>) {
        // Instances whose directory is gone are forgotten with it.
        self.0.retain(|id, _| reached.contains_key(id));
        self.0.extend(reached);
    }
}

/// The output of `path` past `from`, at most its last [`MAX_CHUNK`] bytes, and the length it
/// reached. `None` when there is no log.
fn read_new(path: &Path, from: u64) -> Option<(String, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    // A log that shrank was replaced: start over.
    let from = if len < from { 0 } else { from };
    if len == from {
        return Some((String::new(), len));
    }
    let start = from.max(len.saturating_sub(MAX_CHUNK));
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(len - start).read_to_end(&mut bytes).ok()?;
    Some((String::from_utf8_lossy(&bytes).into_owned(), len))
}

/// Ships new output every [`SHIP_EVERY`] until the task is dropped.
pub async fn run(client: ControlClient, node: String, dirs: AgentDirs) {
    let mut offsets = Offsets::default();
    let mut tick = tokio::time::interval(SHIP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (chunks, reached) = {
            let dirs = dirs.clone();
            let offsets_now = std::mem::take(&mut offsets);
            let (result, back) = tokio::task::spawn_blocking(move || {
                let result = offsets_now.collect(&dirs);
                (result, offsets_now)
            })
            .await
            .unwrap_or_else(|_| ((Vec::new(), BTreeMap::new()), Offsets::default()));
            offsets = back;
            result
        };
        if chunks.is_empty() {
            offsets.advance(reached);
            continue;
        }
        match client.ship_logs(&node, &ShippedLogs { chunks }).await {
            Ok(()) => offsets.advance(reached),
            Err(error) => tracing::debug!(%error, "log shipment failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_output_is_shipped_once_and_cut_to_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = AgentDirs {
            root: dir.path().to_path_buf(),
        };
        std::fs::create_dir_all(dirs.instance("a")).unwrap();
        std::fs::create_dir_all(dirs.instance("b")).unwrap();
        std::fs::write(dirs.log("a"), "one\ntwo\n").unwrap();
        let mut offsets = Offsets::default();
        let (chunks, reached) = offsets.collect(&dirs);
        assert_eq!(
            chunks,
            vec![LogChunk {
                instance: "a".into(),
                data: "one\ntwo\n".into()
            }]
        );
        // Not acknowledged: the same again.
        assert_eq!(offsets.collect(&dirs).0, chunks);
        offsets.advance(reached);
        assert!(offsets.collect(&dirs).0.is_empty());
        std::fs::write(dirs.log("a"), "one\ntwo\nthree\n").unwrap();
        let big = "y".repeat(40 * 1024);
        std::fs::write(dirs.log("b"), &big).unwrap();
        let (chunks, reached) = offsets.collect(&dirs);
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].instance == "a" && chunks[0].data == "three\n");
        assert!(chunks[1].instance == "b" && chunks[1].data.len() as u64 == MAX_CHUNK);
        offsets.advance(reached);
        // A log that was replaced by a shorter one starts over.
        std::fs::write(dirs.log("a"), "new\n").unwrap();
        assert_eq!(offsets.collect(&dirs).0[0].data, "new\n");
        // An instance whose directory went is forgotten.
        std::fs::remove_dir_all(dirs.instance("b")).unwrap();
        let (_, reached) = offsets.collect(&dirs);
        offsets.advance(reached);
        assert!(!offsets.0.contains_key("b"));
    }
}
