//! [`SandboxedExec`]: the `exec` driver of a node that can run containers. An exec instance
//! runs its program as it would unsandboxed (the host's programs and libraries, its code in
//! its working directory), but in the box a container gets, as systemd's `DynamicUser`,
//! `ProtectSystem=strict` and `PrivateTmp`, and a network namespace, would put it:
//!
//! - its own unprivileged host user, from a range no account uses ([`SandboxConfig::uids`]),
//!   owning its working directory and nothing else;
//! - its own cgroup with the spec's memory and CPU and a pids limit (an OOM kill reported as a
//!   container's);
//! - its own mount namespace: the host's root filesystem read-only (that one mount: nothing
//!   mounted below it, so no `/run`, no other instance's root), `/tmp` and `/var/tmp`
//!   private, the agent's directories (credentials, keys, other instances) and home
//!   directories covered by empty tmpfs;
//! - its own PID, IPC and UTS namespaces (it sees its own processes only; no
//!   `/proc/PID/environ` of another instance or the agent);
//! - its own network namespace, reaching only the node's mesh proxy (at the bridge's
//!   gateway), its port forwarded from the node's address as a container's is;
//! - no capabilities, the containers' seccomp profile, `no_new_privs`.
//!
//! What it still shares with the host: the kernel, the host's files outside the hidden
//! directories, readable as any unprivileged user reads them, and CPU time beyond its quota's
//! share (docs/security.md).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use strata_core::spec::DriverKind;
use strata_runtime::{Driver, DriverError, Exit, InstanceHandle, StartSpec};

use crate::driver::ContainerRecord;
use crate::prepare::{HostRoot, Root};
use crate::ContainerDriver;

/// The host users sandboxed instances run as unless configured: 65,536 ids inside the range
/// systemd leaves to containers (524288-1879048191), far from accounts and from the
/// 100000-range `/etc/subuid` hands out.
pub const DEFAULT_UIDS: Range<u32> = 1_600_000_000..1_600_065_536;

/// How a node sandboxes exec instances.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The host users (and groups, the same ids) instances run as, one each.
    pub uids: Range<u32>,
    /// Host directories no instance may see (the agent's data directory, homes).
    pub hidden: Vec<PathBuf>,
}

impl SandboxConfig {
    /// The default range, hiding `agent_dir` and the home directories.
    pub fn new(agent_dir: impl Into<PathBuf>) -> SandboxConfig {
        let mut hidden = vec![agent_dir.into()];
        for home in ["/root", "/home"] {
            let home = PathBuf::from(home);
            if home.is_dir() {
                hidden.push(home);
            }
        }
        SandboxConfig {
            uids: DEFAULT_UIDS,
            hidden,
        }
    }
}

/// Which instance holds which user.
#[derive(Debug, Default)]
struct Uids {
    held: Mutex<BTreeMap<u32, String>>,
}

impl Uids {
    /// A free user of `range` for `instance`: the same one each time while it is free (by a
    /// hash of the id), the next free one otherwise; `None` when all are taken.
    fn take(&self, range: &Range<u32>, instance: &str) -> Option<u32> {
        let size = u64::from(range.end.saturating_sub(range.start));
        if size == 0 {
            return None;
        }
        let mut held = self.held.lock().expect("not poisoned");
        if let Some((uid, _)) = held.iter().find(|(_, who)| *who == instance) {
            return Some(*uid);
        }
        let hash = instance.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        for step in 0..size {
            let uid = range.start + ((hash + step) % size) as u32;
            if let std::collections::btree_map::Entry::Vacant(free) = held.entry(uid) {
                free.insert(instance.to_string());
                return Some(uid);
            }
        }
        None
    }

    /// `instance` holds `uid` (re-adopted after an agent restart).
    fn claim(&self, uid: u32, instance: &str) {
        self.held
            .lock()
            .expect("not poisoned")
            .insert(uid, instance.to_string());
    }

    fn release(&self, instance: &str) {
        self.held
            .lock()
            .expect("not poisoned")
            .retain(|_, who| who != instance);
    }
}

/// The sandboxed `exec` driver (see the module docs).
pub struct SandboxedExec {
    containers: Arc<ContainerDriver>,
    config: SandboxConfig,
    uids: Arc<Uids>,
    /// This agent's directory below `reap::SANDBOXES` (named by a hash of its container
    /// state directory: several agents may share a host).
    mounts: PathBuf,
}

impl SandboxedExec {
    pub fn new(containers: Arc<ContainerDriver>, config: SandboxConfig) -> SandboxedExec {
        let mounts = containers.mounts_dir();
        SandboxedExec {
            containers,
            config,
            uids: Arc::default(),
            mounts,
        }
    }
}

#[async_trait]
impl Driver for SandboxedExec {
    fn kind(&self) -> DriverKind {
        DriverKind::Exec
    }

    async fn start(&self, spec: &StartSpec) -> Result<Box<dyn InstanceHandle>, DriverError> {
        let id = spec.instance_id.clone();
        let failed = |message: String| DriverError::Spawn {
            instance: id.clone(),
            program: spec.program.display().to_string(),
            source: std::io::Error::other(message),
        };
        // As the exec driver would: a program that is not there fails the start, saying so.
        if let Err(source) = find_program(spec) {
            return Err(DriverError::Spawn {
                instance: id.clone(),
                program: spec.program.display().to_string(),
                source,
            });
        }
        let uid = self.uids.take(&self.config.uids, &id).ok_or_else(|| {
            failed(format!(
                "no free user for a sandboxed instance: all {} of {}..{} are taken",
                self.config.uids.len(),
                self.config.uids.start,
                self.config.uids.end
            ))
        })?;
        let root = Root::Host(HostRoot {
            uid,
            dir: self.mounts.join(&id),
            hidden: self.config.hidden.clone(),
        });
        let prepared = {
            let containers = &self.containers;
            let spec = spec.clone();
            tokio::task::block_in_place(|| containers.prepare(&spec, &root))
        };
        let (prepared, record, run) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                self.uids.release(&id);
                return Err(failed(error.to_string()));
            }
        };
        let inner = match self.containers.exec.start(&run).await {
            Ok(inner) => inner,
            Err(error) => {
                prepared.cleanup();
                self.uids.release(&id);
                return Err(error);
            }
        };
        match self.containers.handle(inner, prepared, record) {
            Ok(handle) => Ok(Box::new(Sandboxed {
                inner: handle,
                uids: self.uids.clone(),
                id,
            })),
            Err(error) => {
                self.uids.release(&id);
                Err(error)
            }
        }
    }

    async fn shutdown(&self) {
        // This agent's directory of sandboxes, once none is left in it (kept instances are).
        let _ = std::fs::remove_dir(&self.mounts);
    }

    async fn adopt(
        &self,
        instance_id: &str,
        record: &serde_json::Value,
    ) -> Result<Option<Box<dyn InstanceHandle>>, DriverError> {
        let uid = serde_json::from_value::<ContainerRecord>(record.clone())
            .ok()
            .and_then(|record| record.uid);
        let Some(uid) = uid else {
            return Err(DriverError::Record {
                instance: instance_id.to_string(),
                reason: "not a sandboxed instance's record (no user)".into(),
            });
        };
        self.uids.claim(uid, instance_id);
        match Driver::adopt(&*self.containers, instance_id, record).await {
            Ok(Some(inner)) => Ok(Some(Box::new(Sandboxed {
                inner,
                uids: self.uids.clone(),
                id: instance_id.to_string(),
            }))),
            other => {
                self.uids.release(instance_id);
                other
            }
        }
    }
}

/// Where `spec`'s program is on the host: an absolute path, one relative to its working
/// directory, or a name on the agent's `PATH` (the instance's own `PATH` is the same).
fn find_program(spec: &StartSpec) -> std::io::Result<PathBuf> {
    let program = &spec.program;
    let found = if program.is_absolute() {
        Some(program.clone())
    } else if program.components().count() > 1 {
        Some(spec.work_dir.join(program))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
    };
    let path = match found {
        Some(path) if path.is_file() => path,
        _ => return Err(std::io::Error::from(nix::errno::Errno::ENOENT)),
    };
    // What the kernel would refuse at exec, refused here with its errno, so the start fails
    // with the same reason as an unsandboxed one (not inside the shim, as a crash).
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(&path)?.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::from(nix::errno::Errno::EACCES));
    }
    if elf_for_another_machine(&path) {
        return Err(std::io::Error::from(nix::errno::Errno::ENOEXEC));
    }
    Ok(path)
}

/// Whether `path` is an ELF file for another machine than this one.
fn elf_for_another_machine(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    let read = std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut header));
    if read.is_err() || !header.starts_with(b"\x7fELF") {
        return false;
    }
    let machine = match header[5] {
        2 => u16::from_be_bytes([header[18], header[19]]),
        _ => u16::from_le_bytes([header[18], header[19]]),
    };
    let ours = match std::env::consts::ARCH {
        "x86_64" => 62,
        "aarch64" => 183,
        "x86" => 3,
        "arm" => 40,
        "riscv64" => 243,
        "s390x" => 22,
        "powerpc64" => 21,
        _ => return false,
    };
    machine != ours
}

/// A sandboxed instance: a container's handle that gives its user back when it ends.
struct Sandboxed {
    inner: Box<dyn InstanceHandle>,
    uids: Arc<Uids>,
    id: String,
}

#[async_trait]
impl InstanceHandle for Sandboxed {
    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    async fn wait(&self) -> Exit {
        let exit = self.inner.wait().await;
        self.uids.release(&self.id);
        exit
    }

    async fn stop(&self, grace: Duration) -> Exit {
        let exit = self.inner.stop(grace).await;
        self.uids.release(&self.id);
        exit
    }

    fn record(&self) -> serde_json::Value {
        self.inner.record()
    }

    fn program_address(&self) -> Option<std::net::SocketAddr> {
        self.inner.program_address()
    }

    fn processes(&self) -> Vec<u32> {
        self.inner.processes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_holds_its_own_user_until_it_ends() {
        let uids = Uids::default();
        let range = 1000..1004;
        let a = uids.take(&range, "web-1").unwrap();
        assert_eq!(uids.take(&range, "web-1"), Some(a), "the same while held");
        let others: Vec<u32> = ["web-2", "web-3", "web-4"]
            .iter()
            .map(|id| uids.take(&range, id).unwrap())
            .collect();
        let mut all = others.clone();
        all.push(a);
        all.sort();
        assert_eq!(
            all,
            vec![1000, 1001, 1002, 1003],
            "all distinct, all in range"
        );
        assert_eq!(uids.take(&range, "web-5"), None, "none left");
        uids.release("web-2");
        assert_eq!(uids.take(&range, "web-5"), Some(others[0]));
        uids.claim(7, "adopted");
        assert_eq!(uids.take(&(7..8), "other"), None);
        assert_eq!(uids.take(&(0..0), "x"), None);
    }
}
