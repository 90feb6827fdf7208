//! The OCI runtime bundle of one instance: `config.json` (oci-spec's typed [`Spec`]) next to
//! the instance's root file system.
//!
//! What every container gets, whatever its image says: new pid, mount, uts, ipc and cgroup
//! namespaces, a user namespace unless its node lets it run as the host's root (its root is
//! then an unprivileged host user), and the instance's own network namespace (made by
//! [`crate::net`], which the shim enters before it creates the container); no
//! capabilities at all unless the service asks for some; `no_new_privs`; the default seccomp
//! profile ([`default_seccomp`]); a device cgroup that denies every device but the runtime's
//! standard set (null, zero, full, random, urandom, tty, ptmx); `/proc` paths that leak host
//! information masked. Limits are not in the bundle: they are on the instance's parent cgroup
//! ([`crate::cgroup`]), which outlives the runtime's own, so an OOM kill can be read after the
//! container is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{
    Arch, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, LinuxSeccomp,
    LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscallBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::{ContainerError, IdShift};

/// What the bundle is made from.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// The instance's merged root (the overlayfs mount point).
    pub rootfs: PathBuf,
    /// Program and arguments.
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// The user namespace's mapping: container id N is host id `base + N` (`None`: the
    /// host's ids, no user namespace).
    pub userns: Option<IdShift>,
    /// The runtime's cgroup, below the instance's parent cgroup.
    pub cgroups_path: String,
    /// Capabilities the service asked for, e.g. `CAP_NET_BIND_SERVICE`; none by default.
    pub capabilities: Vec<oci_spec::runtime::Capability>,
    /// Mounts past the defaults (`/proc`, `/dev`, ...), in order: secret files, and a
    /// sandboxed exec instance's own directories.
    pub extra_mounts: Vec<oci_spec::runtime::Mount>,
    /// The root is mounted read-only (a sandboxed exec instance sees the host's root so).
    pub readonly_root: bool,
}

/// Syscalls the default profile refuses with `EPERM`: the ones Docker's and Podman's default
/// profiles block for unprivileged containers (kernel modules, mounts, namespaces, tracing
/// other processes, clocks, keyrings, BPF, swap, reboot, ...). Everything else is allowed, so
/// ordinary programs run unchanged.
pub const SECCOMP_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "personality",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// The default seccomp profile: allow, except [`SECCOMP_DENIED`] (EPERM).
pub fn default_seccomp() -> Result<LinuxSeccomp, ContainerError> {
    let denied = LinuxSyscallBuilder::default()
        .names(
            SECCOMP_DENIED
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(libc_eperm())
        .build()
        .map_err(spec_error)?;
    let mut syscalls = vec![denied];
    // `clone` may not make namespaces (a user namespace would give the instance a root of
    // its own, from which the kernel's attack surface is wider; `unshare` and `setns` are
    // denied above): one rule a flag, as a condition compares one value.
    for flag in CLONE_NAMESPACE_FLAGS {
        let flag = flag.bits() as u64;
        let set = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(flag)
            .value_two(flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
            .map_err(spec_error)?;
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(libc_eperm())
                .args(vec![set])
                .build()
                .map_err(spec_error)?,
        );
    }
    // `clone3` takes its flags in memory a filter cannot read: it is "not implemented", and
    // the C library falls back to `clone`, which is filtered.
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(nix::errno::Errno::ENOSYS as u32)
            .build()
            .map_err(spec_error)?,
    );
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(syscalls)
        .build()
        .map_err(spec_error)
}

/// The `clone` flags that make a namespace.
const CLONE_NAMESPACE_FLAGS: [CloneFlags; 7] = [
    CloneFlags::CLONE_NEWNS,
    CloneFlags::CLONE_NEWCGROUP,
    CloneFlags::CLONE_NEWUTS,
    CloneFlags::CLONE_NEWIPC,
    CloneFlags::CLONE_NEWUSER,
    CloneFlags::CLONE_NEWPID,
    CloneFlags::CLONE_NEWNET,
];
fn libc_eperm() -> u32 {
    nix::errno::Errno::EPERM as u32
}

fn spec_error(error: oci_spec::OciSpecError) -> ContainerError {
    ContainerError::Bundle(error.to_string())
}

fn namespace(
    typ: LinuxNamespaceType,
    path: Option<&Path>,
) -> Result<LinuxNamespace, ContainerError> {
    let mut builder = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(path) = path {
        builder = builder.path(path.to_path_buf());
    }
    builder.build().map_err(spec_error)
}

/// The PATH of a container whose image and spec set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The runtime spec of one instance.
pub fn runtime_spec(bundle: &BundleSpec) -> Result<Spec, ContainerError> {
    let capabilities: std::collections::HashSet<_> = bundle.capabilities.iter().copied().collect();
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(capabilities.clone())
        .effective(capabilities.clone())
        .permitted(capabilities.clone())
        .inheritable(std::collections::HashSet::new())
        .ambient(capabilities)
        .build()
        .map_err(spec_error)?;
    let mut env: Vec<String> = bundle.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // The runtime looks the program up on PATH (and refuses to start without one).
    if !bundle.env.contains_key("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(bundle.args.clone())
        .env(env)
        .cwd(bundle.cwd.clone())
        .user(
            UserBuilder::default()
                .uid(bundle.uid)
                .gid(bundle.gid)
                .build()
                .map_err(spec_error)?,
        )
        .no_new_privileges(true)
        .capabilities(caps)
        .rlimits(
            oci_spec::runtime::Process::default()
                .rlimits()
                .clone()
                .unwrap_or_default(),
        )
        .build()
        .map_err(spec_error)?;
    // The network namespace is not here: the shim enters the instance's before it creates
    // the container, which inherits it. (libcontainer enters a namespace named by path only
    // after it made the user namespace, from which the node's namespace cannot be entered.)
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Uts, None)?,
        namespace(LinuxNamespaceType::Ipc, None)?,
        namespace(LinuxNamespaceType::Cgroup, None)?,
    ];
    if bundle.userns.is_some() {
        namespaces.insert(0, namespace(LinuxNamespaceType::User, None)?);
    }
    let deny_devices = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .map_err(spec_error)?;
    let mut linux = LinuxBuilder::default();
    if let Some(shift) = bundle.userns {
        let mapping = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(shift.base)
            .size(shift.size)
            .build()
            .map_err(spec_error)?;
        linux = linux
            .uid_mappings(vec![mapping])
            .gid_mappings(vec![mapping]);
    }
    let linux = linux
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&bundle.cgroups_path))
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![deny_devices])
                .build()
                .map_err(spec_error)?,
        )
        .seccomp(default_seccomp()?)
        .masked_paths(
            oci_spec::runtime::Linux::default()
                .masked_paths()
                .clone()
                .unwrap_or_default(),
        )
        .readonly_paths(
            oci_spec::runtime::Linux::default()
                .readonly_paths()
                .clone()
                .unwrap_or_default(),
        )
        .build()
        .map_err(spec_error)?;
    SpecBuilder::default()
        .version("1.0.2")
        .hostname(bundle.hostname.clone())
        .root(
            RootBuilder::default()
                .path(bundle.rootfs.clone())
                .readonly(bundle.readonly_root)
                .build()
                .map_err(spec_error)?,
        )
        .process(process)
        .mounts(mounts(bundle)?)
        .linux(linux)
        .build()
        .map_err(spec_error)
}

/// The default mounts (`/proc`, `/dev`, ...), then the bundle's own. In a user namespace,
/// `/sys` is the host's, bound read-only (recursively, without devices, setuid or programs):
/// the kernel lets only the owner of a network namespace mount a sysfs in it, and the node's
/// namespace for the instance is not the container's to own (what runc and rootless Podman
/// fall back to). The default `/sys/fs/cgroup` mount, after it, covers the host's cgroup
/// trees with the container's own cgroups.
fn mounts(bundle: &BundleSpec) -> Result<Vec<oci_spec::runtime::Mount>, ContainerError> {
    let mut mounts = oci_spec::runtime::get_default_mounts();
    if bundle.userns.is_some() {
        for mount in &mut mounts {
            if mount.typ().as_deref() == Some("sysfs") {
                *mount = oci_spec::runtime::MountBuilder::default()
                    .destination(PathBuf::from("/sys"))
                    .typ("none")
                    .source(PathBuf::from("/sys"))
                    .options(
                        ["rbind", "ro", "nosuid", "nodev", "noexec"]
                            .map(String::from)
                            .to_vec(),
                    )
                    .build()
                    .map_err(spec_error)?;
            }
        }
    }
    mounts.extend(bundle.extra_mounts.iter().cloned());
    Ok(mounts)
}

/// A bind of the host's `source` at `destination`: read-only unless `writable`; never devices
/// or setuid; programs only if `programs`.
pub fn bind(
    source: &Path,
    destination: &Path,
    writable: bool,
    programs: bool,
) -> Result<oci_spec::runtime::Mount, ContainerError> {
    let mut options = vec![
        "bind",
        if writable { "rw" } else { "ro" },
        "nosuid",
        "nodev",
    ];
    if !programs {
        options.push("noexec");
    }
    oci_spec::runtime::MountBuilder::default()
        .destination(destination.to_path_buf())
        .typ("bind")
        .source(source.to_path_buf())
        .options(options.into_iter().map(String::from).collect::<Vec<_>>())
        .build()
        .map_err(spec_error)
}

/// A fresh tmpfs at `destination` (world-writable with the sticky bit, like `/tmp`, when
/// `shared`; else only its owner's), at most `size`.
pub fn tmpfs(
    destination: &Path,
    shared: bool,
    size: &str,
) -> Result<oci_spec::runtime::Mount, ContainerError> {
    let mode = if shared { "mode=1777" } else { "mode=0755" };
    oci_spec::runtime::MountBuilder::default()
        .destination(destination.to_path_buf())
        .typ("tmpfs")
        .source(PathBuf::from("tmpfs"))
        .options(
            ["nosuid", "nodev", mode, &format!("size={size}")]
                .map(String::from)
                .to_vec(),
        )
        .build()
        .map_err(spec_error)
}

/// Writes `config.json` into `dir`.
pub fn write(dir: &Path, spec: &Spec) -> Result<(), ContainerError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ContainerError::io("create the bundle directory", dir, e))?;
    let path = dir.join("config.json");
    spec.save(&path)
        .map_err(|e| ContainerError::Bundle(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> BundleSpec {
        BundleSpec {
            rootfs: "/x/rootfs".into(),
            args: vec!["/bin/hello".into()],
            env: BTreeMap::from([("PORT".to_string(), "8080".to_string())]),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            hostname: "hello-1".into(),
            userns: None,
            cgroups_path: "/strata/hello-1/ctr".into(),
            capabilities: vec![],
            extra_mounts: vec![],
            readonly_root: false,
        }
    }

    #[test]
    fn isolation_is_the_default() {
        let spec = runtime_spec(&example()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let process = &json["process"];
        assert_eq!(process["noNewPrivileges"], true);
        for set in [
            "bounding",
            "effective",
            "permitted",
            "ambient",
            "inheritable",
        ] {
            assert_eq!(process["capabilities"][set], serde_json::json!([]), "{set}");
        }
        assert_eq!(
            process["env"],
            serde_json::json!(["PORT=8080", format!("PATH={DEFAULT_PATH}")]),
            "a PATH is always set"
        );
        let namespaces: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for wanted in ["pid", "mount", "uts", "ipc", "cgroup"] {
            assert!(namespaces.contains(&wanted), "{wanted} in {namespaces:?}");
        }
        // The shim enters the network namespace; without a mapping, no user namespace.
        assert!(!namespaces.contains(&"network"), "{namespaces:?}");
        assert!(!namespaces.contains(&"user"), "{namespaces:?}");
        assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        let denied = &json["linux"]["seccomp"]["syscalls"][0];
        assert_eq!(denied["action"], "SCMP_ACT_ERRNO");
        for syscall in ["mount", "ptrace", "unshare", "setns", "bpf", "init_module"] {
            assert!(
                denied["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n == syscall),
                "{syscall} denied"
            );
        }
        assert_eq!(
            json["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": false, "access": "rwm"}])
        );
        assert!(json["linux"]["maskedPaths"].as_array().unwrap().len() > 3);
        assert_eq!(json["linux"]["cgroupsPath"], "/strata/hello-1/ctr");
    }

    #[test]
    fn a_user_namespace_maps_root_to_the_nodes_range_and_binds_sys() {
        let mut bundle = example();
        bundle.userns = Some(IdShift {
            base: 1_700_000_000,
            size: 65536,
        });
        let json = serde_json::to_value(runtime_spec(&bundle).unwrap()).unwrap();
        assert_eq!(json["linux"]["namespaces"][0]["type"], "user");
        let mapping =
            serde_json::json!([{"containerID": 0, "hostID": 1_700_000_000u32, "size": 65536}]);
        assert_eq!(json["linux"]["uidMappings"], mapping);
        assert_eq!(json["linux"]["gidMappings"], mapping);
        let sys = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert_eq!(sys["source"], "/sys");
        assert_eq!(
            sys["options"],
            serde_json::json!(["rbind", "ro", "nosuid", "nodev", "noexec"])
        );
        assert!(
            !json["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["type"] == "sysfs"),
            "no sysfs of its own"
        );
        // After the bind of /sys, the container's own cgroups cover the host's.
        let mounts = json["mounts"].as_array().unwrap();
        let at = |destination: &str| {
            mounts
                .iter()
                .position(|m| m["destination"] == destination)
                .unwrap()
        };
        assert!(at("/sys") < at("/sys/fs/cgroup"));
        assert_eq!(mounts[at("/sys/fs/cgroup")]["type"], "cgroup");
    }

    #[test]
    fn asked_capabilities_are_granted() {
        let mut bundle = example();
        bundle.capabilities = vec![oci_spec::runtime::Capability::NetBindService];
        let json = serde_json::to_value(runtime_spec(&bundle).unwrap()).unwrap();
        assert_eq!(
            json["process"]["capabilities"]["effective"],
            serde_json::json!(["CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(
            json["process"]["capabilities"]["inheritable"],
            serde_json::json!([])
        );
    }
}
