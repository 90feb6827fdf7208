//! The agent's own log, kept in its data directory as well as wherever the process logs
//! (standard error, the journal): `agent.log`, moved to `agent.log.1` once it passes 16 MiB.
//! A node's forensic archive holds it when the node is decommissioned. The file is opened
//! for each line (an agent logs little), so nothing holds it open; a decommission stops it
//! once its archive is kept, before the wipe.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Past this, `agent.log` becomes `agent.log.1` (the one before it goes).
const ROTATE_AT: u64 = 16 << 20;

static TARGET: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Keeps the log in `data_dir/agent.log` from now on.
pub fn keep_in(data_dir: &Path) {
    *TARGET.lock().unwrap_or_else(|e| e.into_inner()) = Some(data_dir.join("agent.log"));
}

/// Keeps it no more (the process's own log goes on).
pub fn stop() {
    *TARGET.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// A writer of one log record (what a `tracing` layer's writer is made of).
pub fn writer() -> OwnLogWriter {
    OwnLogWriter(TARGET.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Appends what it is given to the agent's log file, if it keeps one; never fails (a log
/// that cannot be written must not stop what is logged).
pub struct OwnLogWriter(Option<PathBuf>);

impl Write for OwnLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(path) = &self.0 {
            if std::fs::metadata(path).is_ok_and(|m| m.len() > ROTATE_AT) {
                let _ = std::fs::rename(path, path.with_extension("log.1"));
            }
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = file.write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_kept_rotated_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        keep_in(dir.path());
        writer().write_all(b"first line\n").unwrap();
        writer().write_all(b"second line\n").unwrap();
        let log = dir.path().join("agent.log");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "first line\nsecond line\n"
        );
        // Past the size: moved aside, a new one begun.
        std::fs::write(&log, vec![b'x'; ROTATE_AT as usize + 1]).unwrap();
        writer().write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
        assert!(dir.path().join("agent.log.1").exists());
        stop();
        writer().write_all(b"not kept\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
    }
}
