//! The `exec` driver: an instance is a host process.
//!
//! Each instance runs in its own process group (so stopping it reaches every process it
//! forked) and its own session-less group is not tied to the agent: when the agent dies, its
//! instances keep serving and the next agent re-adopts them. stdout and stderr go straight to
//! the instance's log file, not through a pipe, so nothing depends on the agent reading them.
//!
//! A re-adopted process is not the agent's child, so its exit is seen by polling `/proc`; the
//! process is identified by its pid *and* its start time, so a recycled pid is never mistaken
//! for it.

use std::fs::OpenOptions;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use strata_core::spec::DriverKind;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::{Driver, DriverError, Exit, InstanceHandle, StartSpec};

/// Runs instances as host processes.
#[derive(Debug, Default, Clone)]
pub struct ExecDriver;

#[derive(Debug, Serialize, Deserialize)]
struct ExecRecord {
    pid: u32,
    /// Field 22 of /proc/PID/stat: clock ticks after boot when the process started.
    start_time: u64,
}

#[async_trait]
impl Driver for ExecDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Exec
    }

    async fn start(&self, spec: &StartSpec) -> Result<Box<dyn InstanceHandle>, DriverError> {
        spec.refuse_secret_files("exec")
            .map_err(|message| DriverError::Spawn {
                instance: spec.instance_id.clone(),
                program: spec.program.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
            })?;
        let log_error = |source| DriverError::Log {
            instance: spec.instance_id.clone(),
            path: spec.log_path.display().to_string(),
            source,
        };
        if let Some(dir) = spec.log_path.parent() {
            std::fs::create_dir_all(dir).map_err(log_error)?;
        }
        std::fs::create_dir_all(&spec.work_dir).map_err(log_error)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .map_err(log_error)?;
        let log_err = log.try_clone().map_err(log_error)?;
        let program = named_program(spec).map_err(log_error)?;
        let mut command = Command::new(&program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(base_env())
            .envs(&spec.env)
            .current_dir(&spec.work_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        let child = command.spawn().map_err(|source| DriverError::Spawn {
            instance: spec.instance_id.clone(),
            program: spec.program.display().to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let start_time = proc_start_time(pid).unwrap_or_default();
        Ok(Box::new(ExecHandle {
            instance: spec.instance_id.clone(),
            pid,
            start_time,
            child: Arc::new(Mutex::new(Some(child))),
            exit: Arc::new(Mutex::new(None)),
        }))
    }

    async fn adopt(
        &self,
        instance_id: &str,
        record: &serde_json::Value,
    ) -> Result<Option<Box<dyn InstanceHandle>>, DriverError> {
        let record: ExecRecord =
            serde_json::from_value(record.clone()).map_err(|error| DriverError::Record {
                instance: instance_id.to_string(),
                reason: error.to_string(),
            })?;
        if !same_process_alive(record.pid, record.start_time) {
            return Ok(None);
        }
        Ok(Some(Box::new(ExecHandle {
            instance: instance_id.to_string(),
            pid: record.pid,
            start_time: record.start_time,
            child: Arc::new(Mutex::new(None)),
            exit: Arc::new(Mutex::new(None)),
        })))
    }
}

/// The path to run `spec`'s program by. An artifact is kept under its digest; it runs
/// through a link named after the service (in the instance's directory, beside its working
/// directory), so `ps` and `top` show `hello`, not `3f9a…`: the kernel names a process after
/// the file it was started by. A host command keeps its own name.
fn named_program(spec: &StartSpec) -> std::io::Result<std::path::PathBuf> {
    let digest_named = spec
        .program
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()));
    let named = strata_core::names::ServiceName::new(&spec.name).is_ok();
    let Some(instance_dir) = spec.work_dir.parent() else {
        return Ok(spec.program.clone());
    };
    if !digest_named || !named {
        return Ok(spec.program.clone());
    }
    let bin = instance_dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let link = bin.join(&spec.name);
    match std::fs::remove_file(&link) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::os::unix::fs::symlink(&spec.program, &link)?;
    Ok(link)
}

/// The environment every instance gets before its own: a sane PATH and nothing of the agent's.
fn base_env() -> Vec<(String, String)> {
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin".into());
    let mut env = vec![("PATH".to_string(), path)];
    for key in ["HOME", "LANG", "TZ"] {
        if let Ok(value) = std::env::var(key) {
            env.push((key.to_string(), value));
        }
    }
    env
}

struct ExecHandle {
    instance: String,
    pid: u32,
    start_time: u64,
    /// Our child, when we spawned it; `None` for an adopted process.
    child: Arc<Mutex<Option<Child>>>,
    exit: Arc<Mutex<Option<Exit>>>,
}

impl ExecHandle {
    fn signal_group(&self, signal: Signal) -> Result<(), DriverError> {
        if !same_process_alive(self.pid, self.start_time) && self.start_time != 0 {
            return Ok(());
        }
        match killpg(Pid::from_raw(self.pid as i32), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(errno) => Err(DriverError::Signal {
                instance: self.instance.clone(),
                pid: self.pid,
                reason: errno.desc().to_string(),
            }),
        }
    }
}

#[async_trait]
impl InstanceHandle for ExecHandle {
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    async fn wait(&self) -> Exit {
        if let Some(exit) = self.exit.lock().await.clone() {
            return exit;
        }
        let exit = {
            let mut child = self.child.lock().await;
            match child.as_mut() {
                Some(child) => match child.wait().await {
                    Ok(status) => {
                        use std::os::unix::process::ExitStatusExt;
                        Exit {
                            code: status.code(),
                            signal: status.signal(),
                            reason: None,
                        }
                    }
                    Err(_) => Exit {
                        code: None,
                        signal: None,
                        reason: None,
                    },
                },
                None => {
                    drop(child);
                    while same_process_alive(self.pid, self.start_time) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Exit {
                        code: None,
                        signal: None,
                        reason: None,
                    }
                }
            }
        };
        *self.exit.lock().await = Some(exit.clone());
        exit
    }

    async fn stop(&self, grace: Duration) -> Exit {
        if let Err(error) = self.signal_group(Signal::SIGTERM) {
            tracing::warn!(%error, "SIGTERM failed");
        }
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(exit) => {
                // The leader is gone; make sure nothing it forked outlives it.
                let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
                exit
            }
            Err(_) => {
                if let Err(error) = self.signal_group(Signal::SIGKILL) {
                    tracing::warn!(%error, "SIGKILL failed");
                }
                self.wait().await
            }
        }
    }

    fn record(&self) -> serde_json::Value {
        serde_json::to_value(ExecRecord {
            pid: self.pid,
            start_time: self.start_time,
        })
        .expect("record serializes")
    }
}

/// The start time of a process (field 22 of /proc/PID/stat), if it exists and is not a zombie.
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 is fields[19].
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn same_process_alive(pid: u32, start_time: u64) -> bool {
    match proc_start_time(pid) {
        Some(found) => start_time == 0 || found == start_time,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DriverSettings;
    use std::collections::BTreeMap;

    fn spec(dir: &std::path::Path, script: &str) -> StartSpec {
        StartSpec {
            instance_id: "t-1".into(),
            secret_files: Vec::new(),
            name: "t".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
            log_path: dir.join("out.log"),
            work_dir: dir.join("work"),
            settings: DriverSettings::default(),
        }
    }

    #[tokio::test]
    async fn runs_with_env_and_logs_and_reports_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let handle = ExecDriver
            .start(&spec(dir.path(), "echo $GREETING; echo oops >&2; exit 3"))
            .await
            .unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(10), handle.wait())
            .await
            .unwrap();
        assert_eq!(exit.code, Some(3));
        let log = std::fs::read_to_string(dir.path().join("out.log")).unwrap();
        assert_eq!(log, "hi\noops\n");
    }

    /// An artifact is kept under its digest, and its process is still called after its
    /// service in `ps` (comm) and in its command line; a host command keeps its name.
    #[tokio::test]
    async fn an_artifact_process_is_named_after_its_service() {
        let dir = tempfile::tempdir().unwrap();
        let artifact = dir.path().join(format!("{:064x}", 0xabcdef_u64));
        std::fs::copy("/bin/sleep", &artifact).unwrap();
        let artifact_spec = StartSpec {
            name: "hello".into(),
            program: artifact.clone(),
            args: vec!["30".into()],
            ..spec(dir.path(), "")
        };
        // Twice: a restarted instance finds its link already there.
        for _ in 0..2 {
            let handle = ExecDriver.start(&artifact_spec).await.unwrap();
            let pid = handle.pid().unwrap();
            // Once it has exec'd (its command line is the program's).
            let mut cmdline = Vec::new();
            for _ in 0..100 {
                cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmdline.ends_with(b"30\0") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
            assert_eq!(comm.trim(), "hello");
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap();
            assert!(
                argv0.ends_with(b"/bin/hello"),
                "{:?}",
                String::from_utf8_lossy(argv0)
            );
            handle.stop(Duration::from_secs(5)).await;
        }
        let host = ExecDriver
            .start(&spec(dir.path(), "sleep 30"))
            .await
            .unwrap();
        let pid = host.pid().unwrap();
        for _ in 0..100 {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.starts_with(b"/bin/sh\0") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "sh");
        host.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn stop_kills_the_whole_group_after_grace() {
        let dir = tempfile::tempdir().unwrap();
        // Ignores SIGTERM and forks a child: both must be gone after stop.
        let handle = ExecDriver
            .start(&spec(
                dir.path(),
                "trap '' TERM; sleep 60 & echo $! > child.pid; wait",
            ))
            .await
            .unwrap();
        let child_pid_file = dir.path().join("work/child.pid");
        for _ in 0..100 {
            if child_pid_file.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let child_pid: u32 = std::fs::read_to_string(&child_pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let exit = tokio::time::timeout(
            Duration::from_secs(10),
            handle.stop(Duration::from_millis(200)),
        )
        .await
        .unwrap();
        assert_eq!(exit.signal, Some(9));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            proc_start_time(child_pid).is_none(),
            "forked child survived"
        );
    }

    #[tokio::test]
    async fn adopts_a_running_process_and_sees_it_end() {
        let dir = tempfile::tempdir().unwrap();
        let handle = ExecDriver
            .start(&spec(dir.path(), "sleep 60"))
            .await
            .unwrap();
        let record = handle.record();
        let adopted = ExecDriver
            .adopt("t-1", &record)
            .await
            .unwrap()
            .expect("still running");
        assert_eq!(adopted.pid(), handle.pid());
        let exit = tokio::time::timeout(
            Duration::from_secs(10),
            adopted.stop(Duration::from_secs(2)),
        )
        .await
        .unwrap();
        assert_eq!(exit.code, None);
        // Reap our own child so it is not a zombie, then adoption finds nothing.
        handle.wait().await;
        assert!(ExecDriver.adopt("t-1", &record).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_recycled_pid_is_not_adopted() {
        let record = serde_json::json!({ "pid": std::process::id(), "start_time": 1 });
        assert!(ExecDriver.adopt("t-1", &record).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path(), "");
        spec.program = "/nonexistent/program".into();
        let error = ExecDriver.start(&spec).await.err().unwrap().to_string();
        assert!(
            error.contains("cannot start /nonexistent/program"),
            "{error}"
        );
    }
}
