//! The instance log: where the guest's stdout and stderr go, and the driver's own lines about
//! the instance (traps, deadlines, refused calls), so `strata logs` shows both.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use wasmtime_wasi::cli::OutputFile;

/// An instance's log file, opened for appending and shared by every request.
#[derive(Clone)]
pub(crate) struct InstanceLog {
    file: Arc<File>,
    /// What the guest writes to stdout and stderr: the same file, appended.
    output: OutputFile,
}

impl InstanceLog {
    pub(crate) fn open(path: &Path) -> std::io::Result<InstanceLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let output = OutputFile::new(file.try_clone()?);
        Ok(InstanceLog {
            file: Arc::new(file),
            output,
        })
    }

    /// The guest's stdout/stderr stream.
    pub(crate) fn output(&self) -> OutputFile {
        self.output.clone()
    }

    /// Appends one line from the driver, marked as such and timestamped.
    pub(crate) fn line(&self, message: &str) {
        let now = humantime::format_rfc3339_millis(SystemTime::now());
        let text = format!("[strata wasm {now}] {message}\n");
        // One write call per line: lines from concurrent requests do not interleave.
        if let Err(error) = (&*self.file).write_all(text.as_bytes()) {
            tracing::warn!(%error, "cannot write to an instance log");
        }
    }
}
