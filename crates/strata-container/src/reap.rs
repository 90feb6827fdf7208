//! Reaping what an agent killed before it cleaned up left on the host: the overlay root and
//! tmpfs bundle mounts of containers that are dead (their cgroup is gone, or has been empty for a while) and empty
//! cgroups. Network namespaces and mesh ports are
//! reaped by [`crate::net::NodeNetwork::reap_orphans`].
//!
//! Run when a container driver starts. Several agents may share a host (tests, `strata dev`
//! beside an agent), so nothing is taken that another agent may be setting up right now: an
//! instance's cgroup is made before its mount, and a mount is reaped only when the cgroup is
//! gone or has been empty for [`MIN_AGE`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroup::Hierarchy;

/// How long a cgroup must have been empty before it is taken for abandoned.
pub const MIN_AGE: Duration = Duration::from_secs(10);

/// An instance's root mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    pub instance: String,
    pub mount_point: PathBuf,
    /// The directory the mount is made in for the instance: a container's in its agent's data
    /// directory (`.../instances/<id>`), a sandboxed exec instance's below [`SANDBOXES`].
    pub instance_dir: PathBuf,
}

/// Where sandboxed exec instances' roots are mounted (`/run/strata/sandbox/AGENT/ID`): outside
/// every agent's data directory, so nothing walking one (a backup, `du`, `cp -a`) walks into
/// the host's root through an instance's.
pub const SANDBOXES: &str = "/run/strata/sandbox";

/// What a container driver mounts per instance: a container's overlay root and bundle tmpfs
/// below its directory in the agent's data directory, and a sandboxed exec instance's bind of
/// the host's root (whatever its filesystem) and bundle tmpfs below [`SANDBOXES`].
/// `(filesystem type, None for any; mount point below the instance's directory; the
/// instance's directory is below)`.
const INSTANCE_MOUNTS: [(Option<&str>, &str, Below); 4] = [
    (Some("overlay"), "work/container/rootfs", Below::Instances),
    (Some("tmpfs"), "work/container/bundle", Below::Instances),
    (None, "rootfs", Below::Sandboxes),
    (Some("tmpfs"), "bundle", Below::Sandboxes),
];

#[derive(Clone, Copy)]
enum Below {
    /// An agent's `instances` directory.
    Instances,
    /// An agent's directory in [`SANDBOXES`].
    Sandboxes,
}

/// The mounts of instances' roots and bundles (see `INSTANCE_MOUNTS`) in a mountinfo text.
/// Mount points are unescaped (`\040` is a space).
pub fn root_mounts(mountinfo: &str) -> Vec<RootMount> {
    mounts(mountinfo)
        .filter_map(|(mount_point, fs_type)| {
            let instance_dir = INSTANCE_MOUNTS.iter().find_map(|(kind, suffix, below)| {
                if !kind.is_none_or(|kind| kind == fs_type) {
                    return None;
                }
                let dir = mount_point.strip_suffix_path(suffix)?;
                let parent = dir.parent()?;
                let fits = match below {
                    Below::Instances => parent.file_name()? == "instances",
                    Below::Sandboxes => parent.parent()? == Path::new(SANDBOXES),
                };
                fits.then_some(dir)
            })?;
            let instance = instance_dir.file_name()?.to_str()?.to_string();
            Some(RootMount {
                instance,
                mount_point,
                instance_dir,
            })
        })
        .collect()
}

/// The mount points at or below `dir` in a mountinfo text.
pub fn mounted_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mounts(mountinfo)
        .map(|(point, _)| point)
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// Each mount of a mountinfo text: its mount point (unescaped) and filesystem type.
fn mounts(mountinfo: &str) -> impl Iterator<Item = (PathBuf, &str)> {
    mountinfo.lines().filter_map(|line| {
        let (mount, source) = line.split_once(" - ")?;
        let fs_type = source.split_whitespace().next()?;
        Some((
            PathBuf::from(unescape(mount.split_whitespace().nth(4)?)),
            fs_type,
        ))
    })
}

trait StripSuffixPath {
    fn strip_suffix_path(&self, suffix: &str) -> Option<PathBuf>;
}

impl StripSuffixPath for Path {
    fn strip_suffix_path(&self, suffix: &str) -> Option<PathBuf> {
        let mut path = self.to_path_buf();
        for part in suffix.rsplit('/') {
            if path.file_name()? != part {
                return None;
            }
            path.pop();
        }
        Some(path)
    }
}

fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.clone().take(3).collect();
            if let Ok(byte) = u8::from_str_radix(&code, 8) {
                out.push(byte as char);
                chars.nth(2);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Unmounts the roots of containers whose cgroup is abandoned, then removes empty old
/// cgroups. Returns how many mounts and cgroups it removed.
pub fn reap(cgroups: &Hierarchy) -> (usize, usize) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts = 0;
    for mount in root_mounts(&mountinfo) {
        // Its container is dead (a live one has processes in its cgroup): whoever owns the
        // mount either re-adopts nothing or makes a new one at the next start.
        if cgroups.abandoned(&mount.instance, MIN_AGE) {
            let unmounted =
                nix::mount::umount2(&mount.mount_point, nix::mount::MntFlags::MNT_DETACH);
            if unmounted.is_ok() {
                tracing::info!(instance = %mount.instance, mount = %mount.mount_point.display(), "unmounted an abandoned container root");
                mounts += 1;
            }
        }
    }
    reap_sandbox_dirs(cgroups);
    (mounts, cgroups.reap_empty(MIN_AGE))
}

/// Removes what agents killed before they cleaned up left below [`SANDBOXES`]: an instance's
/// directory once nothing is mounted below it and its cgroup is abandoned (one being set up
/// has a young cgroup), then each agent's directory left empty.
fn reap_sandbox_dirs(cgroups: &Hierarchy) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Ok(agents) = std::fs::read_dir(SANDBOXES) else {
        return;
    };
    for agent in agents.flatten() {
        if let Ok(instances) = std::fs::read_dir(agent.path()) {
            for instance in instances.flatten() {
                let id = instance.file_name().to_string_lossy().into_owned();
                if mounted_below(&mountinfo, &instance.path()).is_empty()
                    && cgroups.abandoned(&id, MIN_AGE)
                {
                    let _ = std::fs::remove_dir_all(instance.path());
                }
            }
        }
        let _ = std::fs::remove_dir(agent.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_roots_are_found_in_mountinfo() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
301 22 0:52 / /tmp/x/data/agent/instances/web-1-abc/work/container/rootfs rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
302 22 0:53 / /tmp/with\\040space/agent/instances/db-2-def/work/container/rootfs rw - overlay overlay rw
303 22 0:54 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
304 22 0:55 / /tmp/x/agent/instances/web-1-abc/work/container/rootfs rw - tmpfs tmpfs rw
305 22 0:56 / /tmp/x/other/web-1-abc/work/container/rootfs rw - overlay overlay rw
306 22 0:57 / /tmp/x/data/agent/instances/web-1-abc/work/container/bundle rw - tmpfs tmpfs rw,size=4096k
307 22 0:58 / /tmp/x/data/agent/instances/web-1-abc/work/container/bundle rw - overlay overlay rw
308 22 8:1 / /run/strata/sandbox/0a1b2c3d/job-3-ghi/rootfs ro - ext4 /dev/sda1 rw
309 22 0:59 / /run/strata/sandbox/0a1b2c3d/job-3-ghi/bundle rw - tmpfs tmpfs rw
310 22 8:1 / /run/strata/elsewhere/x/job-4/rootfs ro - ext4 /dev/sda1 rw
";
        let found = root_mounts(mountinfo);
        assert_eq!(
            found,
            vec![
                RootMount {
                    instance: "web-1-abc".into(),
                    mount_point: "/tmp/x/data/agent/instances/web-1-abc/work/container/rootfs"
                        .into(),
                    instance_dir: "/tmp/x/data/agent/instances/web-1-abc".into(),
                },
                RootMount {
                    instance: "db-2-def".into(),
                    mount_point: "/tmp/with space/agent/instances/db-2-def/work/container/rootfs"
                        .into(),
                    instance_dir: "/tmp/with space/agent/instances/db-2-def".into(),
                },
                RootMount {
                    instance: "web-1-abc".into(),
                    mount_point: "/tmp/x/data/agent/instances/web-1-abc/work/container/bundle"
                        .into(),
                    instance_dir: "/tmp/x/data/agent/instances/web-1-abc".into(),
                },
                RootMount {
                    instance: "job-3-ghi".into(),
                    mount_point: "/run/strata/sandbox/0a1b2c3d/job-3-ghi/rootfs".into(),
                    instance_dir: "/run/strata/sandbox/0a1b2c3d/job-3-ghi".into(),
                },
                RootMount {
                    instance: "job-3-ghi".into(),
                    mount_point: "/run/strata/sandbox/0a1b2c3d/job-3-ghi/bundle".into(),
                    instance_dir: "/run/strata/sandbox/0a1b2c3d/job-3-ghi".into(),
                },
            ]
        );
        assert_eq!(
            mounted_below(
                mountinfo,
                Path::new("/run/strata/sandbox/0a1b2c3d/job-3-ghi")
            )
            .len(),
            2
        );
        assert!(mounted_below(mountinfo, Path::new("/tmp/x/data/agent/instances/none")).is_empty());
    }
}
