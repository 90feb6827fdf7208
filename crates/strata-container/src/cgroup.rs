//! Per-instance cgroups that Strata owns: `strata/<instance>` in each hierarchy, holding the
//! instance's limits (memory, cpu, pids). The OCI runtime puts the container one level below,
//! in `strata/<instance>/ctr`, and removes that when the container ends; the parent stays
//! until the driver removes it. Whether the container was killed for memory is counted by the
//! kernel in `ctr` itself (v1 keeps no count of a removed child, and a parent's `oom_kill`
//! does not count descendants, nor does v1's `failcnt` reliably move), so the container shim
//! reads it before it removes `ctr` and leaves a mark in the bundle
//! ([`crate::shim::OOM_KILLED_MARK`]); the parent's counters are the fallback.
//!
//! Both layouts are handled: cgroup v1 (one hierarchy per controller, as on this project's
//! machines, with a cgroup2 mount beside them holding no controllers) and cgroup v2 (one
//! unified hierarchy with the controllers enabled for `strata/`).

use std::path::{Path, PathBuf};

use crate::ContainerError;

/// The limits of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// Thousandths of a CPU: 500 is half a core (CFS quota per 100 ms period).
    pub cpu_millis: u64,
    /// The most processes and threads the instance may have at once.
    pub pids: u64,
}

/// Where the host's cgroups are and which layout they have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// A directory per controller under `root` (`root/memory`, `root/cpu`, `root/pids`).
    V1 { root: PathBuf },
    /// One unified hierarchy at `root`.
    V2 { root: PathBuf },
}

const CFS_PERIOD_US: u64 = 100_000;

impl Hierarchy {
    /// Reads the layout of `/sys/fs/cgroup`.
    pub fn detect() -> Result<Self, ContainerError> {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    pub fn detect_at(root: &Path) -> Result<Self, ContainerError> {
        if root.join("memory/memory.limit_in_bytes").exists() {
            return Ok(Hierarchy::V1 {
                root: root.to_path_buf(),
            });
        }
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if ["memory", "pids", "cpu"]
            .iter()
            .all(|c| controllers.split_whitespace().any(|have| have == *c))
        {
            return Ok(Hierarchy::V2 {
                root: root.to_path_buf(),
            });
        }
        Err(ContainerError::Cgroups(format!(
            "{} has neither cgroup v1 memory, cpu and pids hierarchies nor a cgroup v2 hierarchy with those controllers; mount them (or boot with systemd.unified_cgroup_hierarchy=1)",
            root.display()
        )))
    }

    /// Every hierarchy a cgroup can be made in: with v1, each mounted controller (the OCI
    /// runtime makes the container's cgroup in all of them, not only the three Strata limits
    /// with), following no symbolic link (`cpu,cpuacct` aliases); with v2, the one.
    fn mounts(&self) -> Vec<PathBuf> {
        match self {
            Hierarchy::V1 { root } => {
                let mut mounts: Vec<PathBuf> = std::fs::read_dir(root)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|entry| entry.path())
                    .collect();
                mounts.sort();
                mounts
            }
            Hierarchy::V2 { root } => vec![root.clone()],
        }
    }

    /// Whether `strata/<instance>` is gone, or holds no process and is older than `min_age`
    /// (in the hierarchy that always has it: memory with v1, the unified one with v2).
    pub fn abandoned(&self, instance: &str, min_age: std::time::Duration) -> bool {
        let dir = match self {
            Hierarchy::V1 { root } => root.join("memory/strata").join(instance),
            Hierarchy::V2 { root } => root.join("strata").join(instance),
        };
        let Ok(metadata) = std::fs::metadata(&dir) else {
            return true;
        };
        let old_enough = metadata
            .modified()
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        old_enough
            && [dir.join("ctr"), dir.clone()].iter().all(|cgroup| {
                std::fs::read_to_string(cgroup.join("cgroup.procs"))
                    .map_or(true, |procs| procs.trim().is_empty())
            })
    }

    /// Removes the `strata/<instance>` cgroups, in every hierarchy, that hold no process and
    /// are older than `min_age` (so one another agent is setting up right now is left alone):
    /// what an agent killed before it cleaned up left behind. Returns how many it removed.
    pub fn reap_empty(&self, min_age: std::time::Duration) -> usize {
        let mut removed = 0;
        for mount in self.mounts() {
            let Ok(entries) = std::fs::read_dir(mount.join("strata")) else {
                continue;
            };
            for entry in entries.flatten() {
                let dir = entry.path();
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let old_enough = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|at| at.elapsed().ok())
                    .is_some_and(|age| age >= min_age);
                let empty = [dir.join("ctr"), dir.clone()].iter().all(|cgroup| {
                    std::fs::read_to_string(cgroup.join("cgroup.procs"))
                        .map_or(true, |procs| procs.trim().is_empty())
                });
                if old_enough && empty {
                    let _ = std::fs::remove_dir(dir.join("ctr"));
                    if std::fs::remove_dir(&dir).is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }
}

/// How to remount a cgroup2 file system with `favordynmods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remount {
    pub target: PathBuf,
    /// The mount's own flags, kept as they are (a remount applies the flags it is given).
    pub flags: nix::mount::MsFlags,
    /// The file system's options, with `favordynmods` added.
    pub data: String,
}

/// From `/proc/self/mountinfo`: the remount that turns on `favordynmods` for the cgroup2 file
/// system, or `None` when there is no cgroup2 mount or it already has it.
///
/// Why: every container start moves a process into cgroups, and by default the first move
/// after ~50 ms without one waits for an RCU grace period (6 to 20 ms on this project's
/// machines, more than the rest of a start). `favordynmods` makes moves cheap at a small cost
/// to fork and exit; the switch is global, so the cgroup2 mount of a hybrid host speeds up
/// moves in the v1 hierarchies as well. systemd turns it on for the same reason where it can.
pub fn favordynmods_remount(mountinfo: &str) -> Option<Remount> {
    use nix::mount::MsFlags;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT TARGET MOUNT-OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        let mut fs = fs.split(' ');
        if fs.next() != Some("cgroup2") {
            continue;
        }
        let super_options = fs.nth(1).unwrap_or("");
        let mut fields = mount.split(' ');
        let (Some(target), Some(mount_options)) = (fields.nth(4), fields.next()) else {
            continue;
        };
        let options: Vec<&str> = super_options
            .split(',')
            .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
            .collect();
        if options.contains(&"favordynmods") {
            return None;
        }
        let mut flags = MsFlags::MS_REMOUNT;
        for option in mount_options.split(',') {
            flags |= match option {
                "ro" => MsFlags::MS_RDONLY,
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                "relatime" => MsFlags::MS_RELATIME,
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                _ => MsFlags::empty(),
            };
        }
        let mut data = options.join(",");
        if !data.is_empty() {
            data.push(',');
        }
        data.push_str("favordynmods");
        // Octal escapes (`\040` for a space) as the kernel writes them.
        let target = target.replace("\\040", " ");
        return Some(Remount {
            target: PathBuf::from(target),
            flags,
            data,
        });
    }
    None
}

/// Turns on `favordynmods` ([`favordynmods_remount`]) if the host has a cgroup2 mount without
/// it. Returns what it did, for the log.
pub fn favor_dynamic_changes() -> Result<Option<String>, ContainerError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ContainerError::io("read", Path::new("/proc/self/mountinfo"), e))?;
    let Some(remount) = favordynmods_remount(&mountinfo) else {
        return Ok(None);
    };
    nix::mount::mount(
        None::<&str>,
        &remount.target,
        None::<&str>,
        remount.flags,
        Some(remount.data.as_str()),
    )
    .map_err(|errno| {
        ContainerError::Cgroups(format!(
            "cannot remount {} with {}: {}",
            remount.target.display(),
            remount.data,
            errno.desc()
        ))
    })?;
    Ok(Some(format!(
        "remounted {} with {} (cheap cgroup moves: faster container starts)",
        remount.target.display(),
        remount.data
    )))
}

/// The cgroup `strata/<instance>` in every hierarchy that limits it.
#[derive(Debug, Clone)]
pub struct InstanceCgroup {
    hierarchy: Hierarchy,
    name: String,
    limits: Limits,
}

impl InstanceCgroup {
    /// Creates (or takes over, after an agent restart) the instance's cgroup and sets its
    /// limits.
    pub fn create(
        hierarchy: &Hierarchy,
        instance: &str,
        limits: Limits,
    ) -> Result<Self, ContainerError> {
        let cgroup = Self::open(hierarchy, instance, limits);
        match hierarchy {
            Hierarchy::V1 { root } => {
                let memory = root.join("memory").join(&cgroup.name);
                let cpu = root.join("cpu").join(&cgroup.name);
                let pids = root.join("pids").join(&cgroup.name);
                for dir in [&memory, &cpu, &pids] {
                    mkdir(dir)?;
                }
                write(&memory.join("memory.limit_in_bytes"), limits.memory_bytes)?;
                // No swapping past the limit either, where the kernel accounts swap.
                let memsw = memory.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, limits.memory_bytes)?;
                }
                write(&cpu.join("cpu.cfs_period_us"), CFS_PERIOD_US)?;
                write(&cpu.join("cpu.cfs_quota_us"), cpu_quota(limits.cpu_millis))?;
                write(&pids.join("pids.max"), limits.pids)?;
            }
            Hierarchy::V2 { root } => {
                let strata = root.join("strata");
                mkdir(&strata)?;
                enable_controllers(root)?;
                enable_controllers(&strata)?;
                let dir = root.join(&cgroup.name);
                mkdir(&dir)?;
                enable_controllers(&dir)?;
                write(&dir.join("memory.max"), limits.memory_bytes)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, 0)?;
                }
                std::fs::write(
                    dir.join("cpu.max"),
                    format!("{} {CFS_PERIOD_US}", cpu_quota(limits.cpu_millis)),
                )
                .map_err(|e| ContainerError::io("set cpu.max", &dir, e))?;
                write(&dir.join("pids.max"), limits.pids)?;
            }
        }
        Ok(cgroup)
    }

    /// The cgroup of an instance, without touching the file system.
    pub fn open(hierarchy: &Hierarchy, instance: &str, limits: Limits) -> Self {
        Self {
            hierarchy: hierarchy.clone(),
            name: format!("strata/{instance}"),
            limits,
        }
    }

    /// The OCI runtime's `cgroupsPath`: a child of the instance's cgroup.
    pub fn runtime_path(&self) -> String {
        format!("/{}/ctr", self.name)
    }

    /// Whether the instance hit its memory limit and the kernel killed for it.
    pub fn oom_killed(&self) -> bool {
        match &self.hierarchy {
            Hierarchy::V1 { root } => {
                let dir = root.join("memory").join(&self.name);
                // Usage reached the limit (the peak is at it, or charges failed against it):
                // with the container killed by SIGKILL, that is the OOM killer at this
                // cgroup's limit.
                let failcnt = read_u64(&dir.join("memory.failcnt")).unwrap_or(0);
                let peak = read_u64(&dir.join("memory.max_usage_in_bytes")).unwrap_or(0);
                // The kernel charges in batches (up to 64 pages), so a peak can stop short
                // of the limit by a few hundred KiB when the charge that fails is a batch.
                let slack = (self.limits.memory_bytes / 32).max(1 << 20);
                failcnt > 0 || peak + slack >= self.limits.memory_bytes
            }
            Hierarchy::V2 { root } => counts_oom_kills(
                &std::fs::read_to_string(root.join(&self.name).join("memory.events"))
                    .unwrap_or_default(),
            ),
        }
    }

    /// Processes now in the instance (pids controller).
    pub fn pids_current(&self) -> Option<u64> {
        let path = match &self.hierarchy {
            Hierarchy::V1 { root } => root.join("pids").join(&self.name).join("pids.current"),
            Hierarchy::V2 { root } => root.join(&self.name).join("pids.current"),
        };
        read_u64(&path)
    }

    /// The processes in the instance's cgroup and its runtime's `ctr` child.
    pub fn processes(&self) -> Vec<u32> {
        let dir = match &self.hierarchy {
            Hierarchy::V1 { root } => root.join("pids").join(&self.name),
            Hierarchy::V2 { root } => root.join(&self.name),
        };
        [dir.join("ctr"), dir]
            .iter()
            .flat_map(|cgroup| {
                std::fs::read_to_string(cgroup.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|line| line.trim().parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Freezes (`frozen`) or thaws every process of the instance with the cgroup freezer, and
    /// waits (at most 2 s) until the kernel says it is done: what a quarantine does before it
    /// archives an instance. Says how.
    pub fn freeze(&self, frozen: bool) -> Result<&'static str, ContainerError> {
        let (state_file, want, how) = match &self.hierarchy {
            Hierarchy::V1 { root } => {
                let dir = root.join("freezer").join(&self.name);
                if frozen {
                    mkdir(&dir)?;
                    // The runtime's `ctr` child is under it already; any other process of
                    // the instance joins it.
                    let inside = format!("/{}", self.name);
                    for pid in self.processes() {
                        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                            .unwrap_or_default();
                        let frozen_with_it = cgroup.lines().any(|line| {
                            line.split(':').nth(1) == Some("freezer")
                                && line
                                    .split(':')
                                    .nth(2)
                                    .is_some_and(|p| p.starts_with(&inside))
                        });
                        if !frozen_with_it {
                            let _ = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
                        }
                    }
                }
                let state = dir.join("freezer.state");
                let value = if frozen { "FROZEN" } else { "THAWED" };
                std::fs::write(&state, value)
                    .map_err(|e| ContainerError::io("freeze the instance", &state, e))?;
                (state, value, "cgroup freezer (v1)")
            }
            Hierarchy::V2 { root } => {
                let dir = root.join(&self.name);
                let control = dir.join("cgroup.freeze");
                std::fs::write(&control, if frozen { "1" } else { "0" })
                    .map_err(|e| ContainerError::io("freeze the instance", &control, e))?;
                let want = if frozen { "frozen 1" } else { "frozen 0" };
                (dir.join("cgroup.events"), want, "cgroup freezer (v2)")
            }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let now = std::fs::read_to_string(&state_file).unwrap_or_default();
            if now.lines().any(|line| line.trim() == want) {
                return Ok(how);
            }
            if std::time::Instant::now() >= deadline {
                return Err(ContainerError::io(
                    "freeze the instance",
                    &state_file,
                    std::io::Error::other(format!("still `{}` after 2 s", now.trim())),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Removes the instance's cgroups in every hierarchy (and a `ctr` child the runtime left).
    /// Processes still in them are killed first. Idempotent.
    pub fn remove(&self) {
        let dirs: Vec<PathBuf> = self
            .hierarchy
            .mounts()
            .iter()
            .map(|mount| mount.join(&self.name))
            .collect();
        for dir in dirs {
            for cgroup in [dir.join("ctr"), dir.clone()] {
                if !cgroup.exists() {
                    continue;
                }
                // A frozen process cannot die: thaw first (a runtime that tried to freeze the
                // cgroup to kill it, e.g. during an OOM, may have left it frozen).
                let freezer = cgroup.join("freezer.state");
                if freezer.exists() {
                    let _ = std::fs::write(&freezer, "THAWED");
                }
                kill_all(&cgroup);
                for _ in 0..50 {
                    match std::fs::remove_dir(&cgroup) {
                        Ok(()) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    }
                }
            }
        }
    }
}

fn cpu_quota(cpu_millis: u64) -> u64 {
    // At least 1 ms per period: the kernel's minimum quota.
    (cpu_millis * CFS_PERIOD_US / 1000).max(1000)
}

fn kill_all(cgroup: &Path) {
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn enable_controllers(dir: &Path) -> Result<(), ContainerError> {
    std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids +cpu")
        .map_err(|e| ContainerError::io("enable the memory, pids and cpu controllers", dir, e))
}

fn mkdir(dir: &Path) -> Result<(), ContainerError> {
    std::fs::create_dir_all(dir).map_err(|e| ContainerError::io("create cgroup", dir, e))
}

fn write(path: &Path, value: u64) -> Result<(), ContainerError> {
    std::fs::write(path, value.to_string())
        .map_err(|e| ContainerError::io("write cgroup limit", path, e))
}

/// Whether a `memory.events` (v2) or `memory.oom_control` (v1) text counts an OOM kill.
pub fn counts_oom_kills(text: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("oom_kill ")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_per_period() {
        let table = [
            (1000, 100_000),
            (500, 50_000),
            (2500, 250_000),
            (1, 1000),
            (0, 1000),
        ];
        for (millis, quota) in table {
            assert_eq!(cpu_quota(millis), quota, "{millis}m");
        }
    }

    #[test]
    fn layouts_are_told_apart() {
        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v1.path().join("memory")).unwrap();
        std::fs::write(v1.path().join("memory/memory.limit_in_bytes"), "max").unwrap();
        assert!(matches!(
            Hierarchy::detect_at(v1.path()),
            Ok(Hierarchy::V1 { .. })
        ));
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(
            v2.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        assert!(matches!(
            Hierarchy::detect_at(v2.path()),
            Ok(Hierarchy::V2 { .. })
        ));
        let none = tempfile::tempdir().unwrap();
        std::fs::write(none.path().join("cgroup.controllers"), "\n").unwrap();
        let error = Hierarchy::detect_at(none.path()).unwrap_err().to_string();
        assert!(error.contains("neither cgroup v1"), "{error}");
    }

    #[test]
    fn oom_kills_are_read_from_v1_oom_control_and_v2_memory_events() {
        let table = [
            ("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", false),
            ("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n", true),
            ("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n", false),
            ("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n", true),
            ("oom_kill_disable 1\n", false),
            ("", false),
        ];
        for (text, killed) in table {
            assert_eq!(counts_oom_kills(text), killed, "{text:?}");
        }
    }

    /// The unified layout, on a directory laid out as cgroup2 is (this project's hosts bind
    /// every controller to v1, so the kernel's v2 cannot run here): which files get which
    /// values, and how an OOM kill is read back.
    #[test]
    fn cgroup_v2_limits_and_oom_kills() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpu memory pids io\n",
        )
        .unwrap();
        let hierarchy = Hierarchy::detect_at(root.path()).unwrap();
        let limits = Limits {
            memory_bytes: 64 << 20,
            cpu_millis: 250,
            pids: 100,
        };
        let cgroup = InstanceCgroup::create(&hierarchy, "web-1", limits).unwrap();
        let read = |path: &str| std::fs::read_to_string(root.path().join(path)).unwrap();
        for dir in ["", "strata/", "strata/web-1/"] {
            assert_eq!(
                read(&format!("{dir}cgroup.subtree_control")),
                "+memory +pids +cpu",
                "{dir}"
            );
        }
        assert_eq!(read("strata/web-1/memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("strata/web-1/cpu.max"), "25000 100000");
        assert_eq!(read("strata/web-1/pids.max"), "100");
        assert_eq!(cgroup.runtime_path(), "/strata/web-1/ctr");

        assert!(!cgroup.oom_killed(), "no memory.events yet");
        let events = root.path().join("strata/web-1/memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\n").unwrap();
        assert!(!cgroup.oom_killed(), "at the limit, but nothing killed");
        std::fs::write(&events, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n").unwrap();
        assert!(cgroup.oom_killed());
        std::fs::write(root.path().join("strata/web-1/pids.current"), "7\n").unwrap();
        assert_eq!(cgroup.pids_current(), Some(7));

        // Removal takes the instance's directory away (files first, as the kernel's vanish).
        for file in std::fs::read_dir(root.path().join("strata/web-1")).unwrap() {
            std::fs::remove_file(file.unwrap().path()).unwrap();
        }
        cgroup.remove();
        assert!(!root.path().join("strata/web-1").exists());
    }

    #[test]
    fn favordynmods_is_added_to_the_cgroup2_mount_keeping_its_options() {
        use nix::mount::MsFlags;
        let hybrid = "25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory";
        let remount = favordynmods_remount(hybrid).unwrap();
        assert_eq!(remount.target, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(remount.data, "nsdelegate,favordynmods");
        assert_eq!(
            remount.flags,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_RELATIME
        );
        let table = [
            // Already on: nothing to do.
            (
                "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,favordynmods",
                None,
            ),
            // v1 only: no cgroup2 mount.
            (
                "33 31 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
                None,
            ),
            // Pure v2 with no options of its own.
            (
                "35 25 0:30 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw",
                Some("favordynmods"),
            ),
            // Garbage is not a mount.
            ("not a mountinfo line", None),
        ];
        for (line, data) in table {
            assert_eq!(
                favordynmods_remount(line).map(|r| r.data),
                data.map(String::from),
                "{line}"
            );
        }
    }

    #[test]
    fn runtime_cgroup_is_a_child() {
        let cgroup = InstanceCgroup::open(
            &Hierarchy::V1 {
                root: "/sys/fs/cgroup".into(),
            },
            "web-1-abc",
            Limits {
                memory_bytes: 1,
                cpu_millis: 1,
                pids: 1,
            },
        );
        assert_eq!(cgroup.runtime_path(), "/strata/web-1-abc/ctr");
    }
}
