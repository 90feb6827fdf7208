//! Strata's `container` driver: an instance is an isolated Linux container run from an image's
//! content-addressed layers.
//!
//! For each instance the driver
//! 1. resolves the artifact to the image's unpacked layers and its config ([`ImageSource`]);
//! 2. mounts an overlayfs root: the layers read-only below, a per-instance upper dir on top;
//! 3. creates the instance's cgroup with its memory, cpu and pids limits ([`cgroup`]);
//! 4. makes its network namespace on the node's bridge ([`net`]);
//! 5. writes an OCI runtime bundle ([`bundle`]) and runs it in the container shim ([`shim`]:
//!    youki's libcontainer in a process of its own), supervised like
//!    an `exec` instance (its own process group, logs straight to the instance's log file,
//!    re-adopted after an agent restart);
//! 6. forwards the instance's port on the node (`HOST:PORT`, as for every driver) to the
//!    container's address, so the routing table works unchanged: on loopback in the kernel
//!    (nftables, [`net`]), otherwise in the shim. Health checks skip the
//!    forwarder and go to the container's own address (`program_address`): the forwarder
//!    accepts even when nothing listens inside.
//!
//! When the container ends, the driver reads whether the kernel killed it at its memory limit
//! (reported as "killed: memory limit 64Mi reached", not a bare exit status) and removes
//! everything it made: the runtime's state, the mount, the namespace, the cgroup.
//!
//! Why youki's libcontainer in a shim process: it is an OCI runtime written in Rust, used as
//! a library, so creating a container costs no Go runtime start and no re-execution into
//! `runc init`, which makes a node start containers faster than `runc run` (the benchmark in
//! docs/benchmarks.md measures both in one run). It runs in a process of its own, not in the
//! agent, because it creates processes with a raw `clone3` (unsound in a multi-threaded
//! process) and so that containers outlive an agent restart. runc stays the benchmark's
//! peer; Debian's crun refuses this project's hybrid cgroup v1 hosts.

pub mod bundle;
pub mod cgroup;
mod driver;
pub mod images;
pub mod net;
mod prepare;
pub mod reap;
pub mod sandbox;
pub mod shim;

use std::path::{Path, PathBuf};

pub use driver::{ContainerConfig, ContainerDriver, DEFAULT_USERNS};
pub use images::StoreImages;
pub use sandbox::{SandboxConfig, SandboxedExec};
pub use strata_image::IdShift;

/// What the driver needs of an image: its unpacked layers and how to run it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The image's identity in the source (its manifest digest), for garbage collection.
    pub id: String,
    /// Unpacked layer directories, TOP layer first (overlayfs `lowerdir` order).
    pub lower_dirs: Vec<PathBuf>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` pairs from the image.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub uid: u32,
    pub gid: u32,
}

/// Turns an instance's artifact (the file the node downloaded) into an image.
pub trait ImageSource: Send + Sync {
    /// The image of `artifact`, its layers' files owned as a user namespace that maps its ids
    /// by `shift` needs them (`None`: as the image says, for a container without one).
    fn resolve(
        &self,
        artifact: &Path,
        shift: Option<IdShift>,
    ) -> Result<ResolvedImage, ContainerError>;

    /// Frees every image but `keep` (ids from [`ResolvedImage::id`]) and what only they use;
    /// returns a summary for the log.
    fn collect(&self, keep: &[String]) -> Result<String, ContainerError> {
        let _ = keep;
        Ok(String::new())
    }
}

/// A container driver error: what failed, where, and how to fix it when we know.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cgroups: {0}")]
    Cgroups(String),
    #[error("container network: {0}")]
    Network(String),
    #[error("OCI bundle: {0}")]
    Bundle(String),
    #[error("image: {0}")]
    Image(String),
    #[error("cannot mount the instance's root at {path}: {reason}")]
    Mount { path: String, reason: String },
    #[error("{0}")]
    Config(String),
}

impl ContainerError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        ContainerError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}
