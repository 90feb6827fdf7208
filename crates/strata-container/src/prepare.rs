//! Preparing an instance to run in the shim: its root (an image's layers under an overlay, or
//! the host's root read-only for a sandboxed exec instance), cgroup, network namespace and
//! bundle (on a tmpfs, with its secret files), undone by [`Prepared::cleanup`] when anything
//! fails.
//!
//! A container runs in a user namespace unless its service opts out on a node that allows
//! it: its layers are the image store's shifted copies, and what the container's root must
//! reach on the host is its own (the directory of its mounts, its bundle, its upper layer's
//! root, its secret files), owned by the node range's first id.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use strata_runtime::{DriverSettings, StartSpec};

use crate::cgroup::{InstanceCgroup, Limits};
use crate::driver::{ContainerDriver, ContainerRecord, Prepared, DEFAULT_PIDS};
use crate::net::InstanceNetwork;
use crate::{bundle, ContainerError, IdShift};

/// What an instance's root is.
pub(crate) enum Root {
    /// Its image's layers, read-only below a per-instance upper directory (a container).
    Image,
    /// The host's root filesystem (that one mount, none below it), read-only (a sandboxed
    /// exec instance).
    Host(HostRoot),
}

/// How a sandboxed exec instance sees the host.
pub(crate) struct HostRoot {
    /// The unprivileged host user (and group) it runs as, its own.
    pub uid: u32,
    /// The directory its mounts are made in (below `reap::SANDBOXES`, outside the agent's
    /// data directory).
    pub dir: PathBuf,
    /// Directories of the host it must not see (the agent's data), each covered by an empty
    /// tmpfs; its own instance directory is bound back in.
    pub hidden: Vec<PathBuf>,
}

/// The parts of a bundle that depend on the root.
struct RootParts {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: String,
    uid: u32,
    gid: u32,
    capabilities: Vec<oci_spec::runtime::Capability>,
    mounts: Vec<oci_spec::runtime::Mount>,
    limits: Limits,
    /// The overlay's lower layers, or `None` for the host's root.
    lower_dirs: Option<Vec<PathBuf>>,
    image: String,
    /// The user namespace's mapping (`None`: the host's ids).
    userns: Option<IdShift>,
}

impl ContainerDriver {
    /// Makes everything `spec` needs to run on `root`; returns it, the record a later agent
    /// adopts it by, and the start of its shim.
    pub(crate) fn prepare(
        &self,
        spec: &StartSpec,
        root: &Root,
    ) -> Result<(Prepared, ContainerRecord, StartSpec), ContainerError> {
        let id = spec.instance_id.as_str();
        let parts = self.root_parts(spec, root)?;
        let port: u16 = spec
            .env
            .get("PORT")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| ContainerError::Config("the instance has no PORT".into()))?;
        let bind_host = spec
            .env
            .get("HOST")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        let listen: SocketAddr = format!("{bind_host}:{port}")
            .parse()
            .map_err(|_| ContainerError::Config(format!("cannot listen on {bind_host}:{port}")))?;
        // The instance's mounts (root, bundle) sit outside the agent's data directory, whose
        // path a container's root in a user namespace could not walk; a container's writable
        // layer sits in its working directory, on the node's disk.
        let dir = match root {
            Root::Image => self.mounts_dir().join(id),
            Root::Host(host) => host.dir.clone(),
        };
        let upper_dir = match root {
            Root::Image => Some(spec.work_dir.join("container")),
            Root::Host(_) => None,
        };
        let shift = parts.userns;
        let limits = parts.limits;
        let keep_writable_layer = matches!(
            &spec.settings,
            strata_runtime::DriverSettings::Container(c) if c.keep_writable_layer
        );
        let record_base = |network: InstanceNetwork| ContainerRecord {
            keep_writable_layer,
            exec: serde_json::Value::Null,
            network,
            memory_bytes: limits.memory_bytes,
            cpu_millis: limits.cpu_millis,
            pids: limits.pids,
            dir: dir.clone(),
            upper: upper_dir.clone(),
            listen,
            port,
            image: parts.image.clone(),
            uid: match root {
                Root::Image => None,
                Root::Host(host) => Some(host.uid),
            },
        };
        // A previous attempt of the same instance may have left things behind (a writable
        // layer kept for its failure's archive too: every start begins from the image).
        let mut stale = self.prepared(
            id,
            &record_base(InstanceNetwork {
                netns: String::new(),
                host_veth: String::new(),
                address: Ipv4Addr::UNSPECIFIED,
            }),
        );
        stale.keep_own_writable = false;
        stale.cleanup();

        let cgroup = InstanceCgroup::create(&self.cgroups, id, limits)?;
        let instance_net = match self.network.attach(id) {
            Ok(net) => net,
            Err(error) => {
                cgroup.remove();
                return Err(error);
            }
        };
        // Who opens connections from this address, for the node's proxies.
        if let (Some(env), Some(service)) =
            (spec.env.get("STRATA_ENV"), spec.env.get("STRATA_SERVICE"))
        {
            if let Err(error) = self.network.name_caller(instance_net.address, env, service) {
                cgroup.remove();
                self.network.detach(&instance_net);
                return Err(error);
            }
        }
        // The node port leads to the instance in the kernel where it can (loopback); the
        // shim still holds the port, and forwards it itself where the kernel does not.
        if let Err(error) = self.network.forward_port(&instance_net, listen, port) {
            tracing::warn!(%error, instance = id, "the node port is forwarded in userspace");
        }
        let record = record_base(instance_net.clone());
        let prepared = self.prepared(id, &record);
        let made = (|| {
            // The agent's directory of instance mounts: passable (a container's root in a
            // user namespace walks to its own), not listable.
            if let Some(parent) = dir.parent() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o711)
                    .create(parent)
                    .map_err(|e| ContainerError::io("create", parent, e))?;
                // (Made 0700 by agents before user namespaces.)
                for passable in [parent, Path::new(crate::reap::SANDBOXES)] {
                    std::fs::set_permissions(passable, std::fs::Permissions::from_mode(0o711))
                        .map_err(|e| ContainerError::io("open the way through", passable, e))?;
                }
            }
            let rootfs = dir.join("rootfs");
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| ContainerError::io("create", &rootfs, e))?;
            // Only root (and the container's own root, in its user namespace) may enter it: a
            // host user must not reach the instance's files through the mounted root (a
            // setuid binary, a secret in a layer).
            restrict(&dir, shift)?;
            match (&parts.lower_dirs, &upper_dir) {
                (Some(lower), Some(upper_dir)) => {
                    let upper = upper_dir.join("upper");
                    let work = upper_dir.join("overlay-work");
                    for d in [&upper, &work] {
                        std::fs::create_dir_all(d)
                            .map_err(|e| ContainerError::io("create", d, e))?;
                    }
                    // The writable layer on disk is root's alone (it holds what the image's
                    // setuid binaries become when written); the root of the container's tree
                    // is its root's.
                    restrict(upper_dir, None)?;
                    if let Some(shift) = shift {
                        std::os::unix::fs::chown(&upper, Some(shift.base), Some(shift.base))
                            .map_err(|e| {
                                ContainerError::io("give to the container's root", &upper, e)
                            })?;
                    }
                    mount_overlay(lower, &upper, &work, &rootfs)?;
                }
                _ => bind_host_root(&rootfs)?,
            }
            let mut env = parts.env.clone();
            // Inside its own namespace the instance listens on every address it has.
            env.insert("HOST".into(), "0.0.0.0".into());
            // Its loopback is its own: the node's mesh proxy is at the bridge's gateway.
            for key in ["HTTP_PROXY", "http_proxy"] {
                if let Some(url) = env.get_mut(key) {
                    *url = url.replace("@127.0.0.1:", &format!("@{}:", self.network.gateway()));
                }
            }
            // The bundle holds the instance's environment (its secrets among it) and its
            // secret files: on a tmpfs only root enters, never on the node's disk.
            let bundle_dir = dir.join("bundle");
            std::fs::create_dir_all(&bundle_dir)
                .map_err(|e| ContainerError::io("create", &bundle_dir, e))?;
            mount_bundle_tmpfs(&bundle_dir, shift)?;
            let mut mounts = parts.mounts.clone();
            // Names resolve through the node's resolver at the gateway: TCP services by name.
            if let Some(resolver) = resolver_conf(&bundle_dir, &rootfs, self.network.gateway())? {
                mounts.push(resolver);
            }
            let (host_uid, host_gid) = match shift {
                None => (parts.uid, parts.gid),
                Some(shift) => (shift.base + parts.uid, shift.base + parts.gid),
            };
            mounts.extend(write_secret_files(
                &bundle_dir,
                &spec.secret_files,
                host_uid,
                host_gid,
            )?);
            let runtime_spec = bundle::runtime_spec(&bundle::BundleSpec {
                rootfs: rootfs.clone(),
                args: parts.args.clone(),
                env,
                cwd: parts.cwd.clone(),
                uid: parts.uid,
                gid: parts.gid,
                hostname: id.chars().take(63).collect(),
                userns: shift,
                cgroups_path: cgroup.runtime_path(),
                capabilities: parts.capabilities.clone(),
                extra_mounts: mounts,
                readonly_root: parts.lower_dirs.is_none(),
            })?;
            bundle::write(&bundle_dir, &runtime_spec)?;
            Ok(())
        })();
        if let Err(error) = made {
            prepared.cleanup();
            return Err(error);
        }
        let runtime_root = self.runtime_root();
        std::fs::create_dir_all(&runtime_root)
            .map_err(|e| ContainerError::io("create", &runtime_root, e))?;
        let mut args: Vec<String> = self.config.shim[1..].to_vec();
        args.extend([
            "--root".into(),
            runtime_root.display().to_string(),
            "--bundle".into(),
            dir.join("bundle").display().to_string(),
            "--netns".into(),
            instance_net.netns_path().display().to_string(),
            "--forward".into(),
            format!(
                "{listen}={}",
                SocketAddr::from((instance_net.address, port))
            ),
            id.to_string(),
        ]);
        let run = StartSpec {
            instance_id: id.to_string(),
            secret_files: Vec::new(),
            name: spec.name.clone(),
            program: PathBuf::from(&self.config.shim[0]),
            args,
            env: BTreeMap::new(),
            log_path: spec.log_path.clone(),
            work_dir: dir.join("bundle"),
            settings: DriverSettings::default(),
        };
        Ok((prepared, record, run))
    }

    /// What running `spec` on `root` takes: program and environment, user, limits, mounts.
    fn root_parts(&self, spec: &StartSpec, root: &Root) -> Result<RootParts, ContainerError> {
        let id = spec.instance_id.as_str();
        match root {
            Root::Image => {
                // Limits and privileges come from the spec, typed; the environment is the
                // application's and grants nothing.
                let DriverSettings::Container(settings) = &spec.settings else {
                    return Err(ContainerError::Config(format!(
                        "instance {id} has no container settings (is its service's driver `container`?)"
                    )));
                };
                // Before anything is made for it: a capability this node does not allow.
                let capabilities =
                    capabilities(&settings.capabilities, &self.config.allowed_capabilities)?;
                let userns = if settings.host_root {
                    if !self.config.allow_host_root {
                        return Err(ContainerError::Config(
                            "[container] userns = false: this node does not run containers as the host's root; its agent allows it only when started with --allow-host-root".into(),
                        ));
                    }
                    None
                } else {
                    self.config.userns
                };
                let image = self.images.resolve(&spec.program, userns)?;
                if image.lower_dirs.is_empty() {
                    return Err(ContainerError::Image(format!(
                        "{} has no layers",
                        spec.program.display()
                    )));
                }
                if let Some(shift) = userns {
                    if shift.host_id(image.uid).is_none() || shift.host_id(image.gid).is_none() {
                        return Err(ContainerError::Image(format!(
                            "{} runs as {}:{}, past the {} ids a container's user namespace maps; build it with a user below {}, or set `userns = false` on a node that allows it (--allow-host-root)",
                            spec.program.display(),
                            image.uid,
                            image.gid,
                            shift.size,
                            shift.size
                        )));
                    }
                }
                let mut env: BTreeMap<String, String> = BTreeMap::new();
                env.insert("PATH".into(), bundle::DEFAULT_PATH.into());
                env.extend(image.env.iter().cloned());
                env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                let args: Vec<String> = if spec.args.is_empty() {
                    image
                        .entrypoint
                        .iter()
                        .chain(image.cmd.iter())
                        .cloned()
                        .collect()
                } else if image.entrypoint.is_empty() {
                    spec.args.clone()
                } else {
                    image
                        .entrypoint
                        .iter()
                        .chain(spec.args.iter())
                        .cloned()
                        .collect()
                };
                if args.is_empty() {
                    return Err(ContainerError::Image(format!(
                        "{} names no program to run (no entrypoint or cmd) and the spec gives no args",
                        spec.program.display()
                    )));
                }
                Ok(RootParts {
                    args,
                    env,
                    cwd: image.working_dir.clone().unwrap_or_else(|| "/".into()),
                    uid: image.uid,
                    gid: image.gid,
                    capabilities,
                    mounts: Vec::new(),
                    limits: Limits {
                        memory_bytes: settings.memory_bytes,
                        cpu_millis: settings.cpu_millis,
                        pids: settings.pids.unwrap_or(DEFAULT_PIDS),
                    },
                    lower_dirs: Some(image.lower_dirs),
                    image: image.id,
                    userns,
                })
            }
            Root::Host(host) => self.host_parts(spec, host),
        }
    }

    /// A sandboxed exec instance: its program bound in where the exec driver names it, its
    /// working directory its own (and its user's), the agent's directories hidden, `/tmp`
    /// and `/var/tmp` private, everything else of the host read-only.
    fn host_parts(&self, spec: &StartSpec, host: &HostRoot) -> Result<RootParts, ContainerError> {
        let settings = match &spec.settings {
            DriverSettings::Exec(settings) => *settings,
            _ => strata_runtime::ExecSettings::default(),
        };
        let work = &spec.work_dir;
        std::fs::create_dir_all(work).map_err(|e| ContainerError::io("create", work, e))?;
        chown_tree(work, host.uid)?;
        let mut mounts = Vec::new();
        for dir in &host.hidden {
            mounts.push(bundle::tmpfs(dir, false, "64k")?);
        }
        for dir in ["/tmp", "/var/tmp"] {
            mounts.push(bundle::tmpfs(Path::new(dir), true, "256m")?);
        }
        mounts.push(bundle::bind(work, work, true, true)?);
        // An artifact is bound in at the name `ps` shows (as the exec driver links it); a
        // host command is found on the host's PATH.
        let program = if spec.program.is_absolute() {
            let named = work
                .parent()
                .unwrap_or(work)
                .join("bin")
                .join(spec.name.as_str());
            mounts.push(bundle::bind(&spec.program, &named, false, true)?);
            named.display().to_string()
        } else {
            spec.program.display().to_string()
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert(
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| bundle::DEFAULT_PATH.into()),
        );
        for key in ["LANG", "TZ"] {
            if let Ok(value) = std::env::var(key) {
                env.insert(key.into(), value);
            }
        }
        env.insert("HOME".into(), work.display().to_string());
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut args = vec![program];
        args.extend(spec.args.iter().cloned());
        Ok(RootParts {
            args,
            env,
            cwd: work.display().to_string(),
            uid: host.uid,
            gid: host.uid,
            capabilities: Vec::new(),
            mounts,
            limits: Limits {
                memory_bytes: settings.memory_bytes.unwrap_or(u64::MAX),
                cpu_millis: settings.cpu_millis.unwrap_or(0),
                pids: DEFAULT_PIDS,
            },
            lower_dirs: None,
            image: String::new(),
            userns: None,
        })
    }
}

/// Gives `dir` and everything in it to `uid` (its group too): the instance's own files.
fn chown_tree(dir: &Path, uid: u32) -> Result<(), ContainerError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid))
            .map_err(|e| ContainerError::io("give to the instance's user", &path, e))?;
        let is_dir = std::fs::symlink_metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir {
            let entries =
                std::fs::read_dir(&path).map_err(|e| ContainerError::io("read", &path, e))?;
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

/// Binds the host's root filesystem (that one mount: nothing mounted below it, so no other
/// instance's root, no `/run`, no `/proc`) at `target`, its propagation cut from the host's.
fn bind_host_root(target: &Path) -> Result<(), ContainerError> {
    use nix::mount::MsFlags;
    let mount = |flags: MsFlags, what: &str| {
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(
            |errno| ContainerError::Mount {
                path: target.display().to_string(),
                reason: format!("{what}: {}", errno.desc()),
            },
        )
    };
    nix::mount::mount(
        Some("/"),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|errno| ContainerError::Mount {
        path: target.display().to_string(),
        reason: format!("bind of the host's root: {}", errno.desc()),
    })?;
    mount(MsFlags::MS_PRIVATE, "private propagation")?;
    mount(
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        "read-only",
    )
}

/// The spec's capability names (`NET_BIND_SERVICE`, with or without `CAP_`) as OCI's; one
/// past the ordinary set that this node does not allow is refused.
pub(crate) fn capabilities(
    names: &[String],
    allowed: &BTreeSet<String>,
) -> Result<Vec<oci_spec::runtime::Capability>, ContainerError> {
    names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .map(|name| {
            let bare = name.to_ascii_uppercase();
            let bare = bare.strip_prefix("CAP_").unwrap_or(&bare).to_string();
            let capability = bare.parse().map_err(|_| {
                ContainerError::Config(format!(
                    "[container] capabilities: `{name}` is not a Linux capability"
                ))
            })?;
            if strata_core::capability::needs_allowance(&bare) && !allowed.contains(&bare) {
                return Err(ContainerError::Config(format!(
                    "[container] capabilities: {bare} is not allowed on this node; its agent grants it only when started with --allow-capability {bare}"
                )));
            }
            Ok(capability)
        })
        .collect()
}

/// Makes `dir` enterable by root alone (mode 0700), or by the container's root too when its
/// user namespace is `shift` (then it owns it).
fn restrict(dir: &Path, shift: Option<IdShift>) -> Result<(), ContainerError> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ContainerError::io("restrict", dir, e))?;
    let owner = shift.map_or(0, |shift| shift.base);
    std::os::unix::fs::chown(dir, Some(owner), Some(owner))
        .map_err(|e| ContainerError::io("give to the container's root", dir, e))
}

/// Mounts a small tmpfs at `dir` (mode 0700: root only, or the container's root in its user
/// namespace `shift`, which binds its secret files from it; no devices, setuid or programs).
fn mount_bundle_tmpfs(dir: &Path, shift: Option<IdShift>) -> Result<(), ContainerError> {
    use nix::mount::MsFlags;
    let owner = shift.map_or(0, |shift| shift.base);
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("size=4m,mode=0700,uid={owner},gid={owner}").as_str()),
    )
    .map_err(|errno| ContainerError::Mount {
        path: dir.display().to_string(),
        reason: format!("tmpfs: {}", errno.desc()),
    })
}

/// Writes `resolv.conf` naming the node's resolver at `gateway` into the bundle's tmpfs, and
/// returns its read-only bind at `/etc/resolv.conf`; none when the instance's root has a
/// symbolic link there (a host using systemd-resolved: binding through it would reach into
/// directories the instance's root does not have), which is logged.
fn resolver_conf(
    bundle_dir: &Path,
    rootfs: &Path,
    gateway: Ipv4Addr,
) -> Result<Option<oci_spec::runtime::Mount>, ContainerError> {
    use std::os::unix::fs::PermissionsExt;
    let inside = rootfs.join("etc/resolv.conf");
    if inside
        .symlink_metadata()
        .is_ok_and(|meta| meta.file_type().is_symlink())
    {
        tracing::warn!(path = %inside.display(), "the instance's /etc/resolv.conf is a symbolic link: it does not resolve service names");
        return Ok(None);
    }
    let path = bundle_dir.join("resolv.conf");
    std::fs::write(
        &path,
        format!("nameserver {gateway}\noptions ndots:1 timeout:1 attempts:3\n"),
    )
    .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)))
    .map_err(|e| ContainerError::io("write", &path, e))?;
    Ok(Some(bundle::bind(
        &path,
        Path::new("/etc/resolv.conf"),
        false,
        false,
    )?))
}

/// Writes each secret file into the bundle's tmpfs (readable by the instance's user only)
/// and returns the read-only bind of each at its path in the instance.
fn write_secret_files(
    bundle_dir: &Path,
    files: &[strata_runtime::SecretFile],
    uid: u32,
    gid: u32,
) -> Result<Vec<oci_spec::runtime::Mount>, ContainerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bound = Vec::with_capacity(files.len());
    if files.is_empty() {
        return Ok(bound);
    }
    let secrets = bundle_dir.join("secrets");
    std::fs::create_dir_all(&secrets).map_err(|e| ContainerError::io("create", &secrets, e))?;
    for (index, file) in files.iter().enumerate() {
        let host = secrets.join(index.to_string());
        let written = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o400)
            .open(&host)
            .and_then(|mut out| out.write_all(file.value.as_bytes()))
            .and_then(|()| std::os::unix::fs::chown(&host, Some(uid), Some(gid)));
        written.map_err(|e| ContainerError::io("write a secret file", &host, e))?;
        bound.push(bundle::bind(&host, Path::new(&file.path), false, false)?);
    }
    Ok(bound)
}

fn mount_overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), ContainerError> {
    let lowerdir: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    // No setuid binary of an image raises anyone's privileges through this mount, and no
    // device node in a layer opens a host device (the container's /dev is its own tmpfs).
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|errno| ContainerError::Mount {
        path: target.display().to_string(),
        reason: format!("overlayfs: {}", errno.desc()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_the_environment() {
        use oci_spec::runtime::Capability;
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let none = BTreeSet::new();
        assert_eq!(capabilities(&[], &none).unwrap(), vec![]);
        assert_eq!(
            capabilities(&names(&["NET_BIND_SERVICE", " cap_chown"]), &none).unwrap(),
            vec![Capability::NetBindService, Capability::Chown]
        );
        assert!(capabilities(&names(&["FLY"]), &none)
            .unwrap_err()
            .to_string()
            .contains("`FLY`"));
        // Past the ordinary set: only where the node allows it.
        let refused = capabilities(&names(&["SYS_ADMIN"]), &none).unwrap_err();
        assert!(refused.to_string().contains("--allow-capability SYS_ADMIN"));
        let allowed = BTreeSet::from(["SYS_ADMIN".to_string()]);
        assert_eq!(
            capabilities(&names(&["cap_sys_admin"]), &allowed).unwrap(),
            vec![Capability::SysAdmin]
        );
    }
}
