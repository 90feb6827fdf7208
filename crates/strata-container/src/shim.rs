//! The container shim: the small process that creates one container with youki's
//! `libcontainer`, in-process, and then stands for it until it ends.
//!
//! The node runs it as `strata container-shim --root DIR --bundle DIR [--netns PATH]
//! [--forward LISTEN=TARGET] ID` (the `strata` binary
//! re-executing itself; tests use the `strata-container-shim` binary of this crate, which is
//! the same function). It is a process of its own because:
//! - libcontainer creates the container's processes with a raw `clone3`, which is only sound
//!   in a single-threaded process, and the agent is a multi-threaded tokio process;
//! - a container must outlive an agent restart and be re-adopted: the agent supervises the
//!   shim like any `exec` instance (process group, log file, pid record).
//!
//! What it does: enter the instance's network namespace (`--netns`, which the container then
//! inherits: libcontainer would enter a namespace named in the bundle only from inside the
//! container's user namespace, which may not enter the node's), create and start the
//! container from the bundle (namespaces, pivot_root into
//! the overlayfs root, capabilities, `no_new_privs`, seccomp, the `ctr` cgroup), then forward
//! SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the container's first process,
//! reap it, delete the container's state and exit with its status (`128 + signal` when a
//! signal ended it, as a shell reports it). A container that cannot be created exits 125 with
//! the reason on stderr, which is the instance's log.
//!
//! With `--forward LISTEN=TARGET` it also forwards the node's address for the instance
//! (`LISTEN`, bound before anything is created: a port taken fails the start) to the
//! container's (`TARGET`), for as long as the container runs. The forwarder lives here, not
//! in the agent, so that an agent replaced in place (`SIGHUP`, `--keep-instances`) leaves
//! every instance reachable while the next one starts.
//!
//! Why libcontainer rather than `runc run`: runc is a Go program that re-executes itself to
//! enter the namespaces (`runc init`); creating the same container from Rust in one process
//! saves most of that, which is what lets a node start a container faster than `runc run`
//! does (docs/benchmarks.md has the figures).

use std::net::SocketAddr;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The exit code of a shim that could not create or start its container (as `docker run`).
pub const EXIT_CANNOT_CREATE: i32 = 125;

/// Signals the shim passes on to the container.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs the shim with its command-line arguments (`--root DIR --bundle DIR ID`, the program
/// name already taken off); returns the process's exit code.
pub fn main_with_args(args: impl IntoIterator<Item = String>) -> i32 {
    let mut root = None;
    let mut bundle = None;
    let mut forward = None;
    let mut netns = None;
    let mut id = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = args.next(),
            "--bundle" => bundle = args.next(),
            "--forward" => forward = args.next(),
            "--netns" => netns = args.next(),
            _ if id.is_none() && !arg.starts_with('-') => id = Some(arg),
            other => {
                eprintln!("strata container-shim: unexpected argument `{other}`");
                return 2;
            }
        }
    }
    let (Some(root), Some(bundle), Some(id)) = (root, bundle, id) else {
        eprintln!(
            "usage: strata container-shim --root DIR --bundle DIR [--netns PATH] [--forward LISTEN=TARGET] ID"
        );
        return 2;
    };
    start(
        Path::new(&root),
        Path::new(&bundle),
        &id,
        netns.as_deref().map(Path::new),
        forward.as_deref(),
    )
}

/// Runs the shim for container `id`: binds `forward`'s listening address (`LISTEN=TARGET`),
/// then [`run`]s the container in network namespace `netns` (a path, as `ip netns` binds
/// them; `None`: the shim's own). Returns the process's exit code.
pub fn start(
    root: &Path,
    bundle: &Path,
    id: &str,
    netns: Option<&Path>,
    forward: Option<&str>,
) -> i32 {
    let forward = match forward.map(parse_forward) {
        None => None,
        Some(Ok(pair)) => Some(pair),
        Some(Err(why)) => {
            eprintln!("strata container-shim: --forward: {why}");
            return 2;
        }
    };
    // Bound first (no thread yet: libcontainer's clone3 needs a single-threaded process), so a
    // port another process holds fails the start at once.
    let forward = match forward {
        None => None,
        Some((listen, target)) => match std::net::TcpListener::bind(listen) {
            Ok(listener) => Some((listener, target)),
            Err(error) => {
                eprintln!("strata container-shim: cannot listen on {listen}: {error}");
                return EXIT_CANNOT_CREATE;
            }
        },
    };
    run(root, bundle, id, netns, forward)
}

/// `LISTEN=TARGET`, both `IP:PORT`.
fn parse_forward(text: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let (listen, target) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not LISTEN=TARGET"))?;
    let address = |a: &str| {
        a.parse::<SocketAddr>()
            .map_err(|_| format!("`{a}` is not IP:PORT"))
    };
    Ok((address(listen)?, address(target)?))
}

/// Creates container `id` from `bundle` (state under `root`) in network namespace `netns`,
/// forwards `forward`'s listener to its target while it runs, runs it to its end and returns
/// the exit code to leave with.
pub fn run(
    root: &Path,
    bundle: &Path,
    id: &str,
    netns: Option<&Path>,
    forward: Option<(std::net::TcpListener, SocketAddr)>,
) -> i32 {
    // libcontainer reports through `tracing`; its errors belong in the instance's log. (Its
    // warnings, such as syscalls of the seccomp profile this architecture lacks, do not.)
    // STRATA_SHIM_LOG=debug shows every step, with timestamps, to see where a start goes.
    let level = std::env::var("STRATA_SHIM_LOG")
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(tracing::Level::ERROR);
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    let created = match netns.map(NetnsVisit::enter).transpose() {
        Ok(visit) => {
            let created = create_and_start(root, bundle, id);
            // Back home: the forwarder's connections leave from the node's namespace.
            if let Some(Err(reason)) = visit.map(NetnsVisit::leave) {
                eprintln!("strata container-shim: {reason}");
            }
            created
        }
        Err(reason) => Err(reason),
    };
    let mut container = match created {
        Ok(container) => container,
        Err(reason) => {
            eprintln!("strata container-shim: cannot start container {id}: {reason}");
            if root.join(id).join("state.json").exists() {
                if let Ok(mut container) = Container::load(root.join(id)) {
                    let _ = container.delete(true);
                }
            }
            return EXIT_CANNOT_CREATE;
        }
    };
    let Some(init) = container.pid() else {
        eprintln!("strata container-shim: container {id} started without a process");
        let _ = container.delete(true);
        return EXIT_CANNOT_CREATE;
    };
    // Signals are blocked before the forwarder's thread starts, so it inherits the mask and
    // every forwarded signal reaches `supervise`.
    let signals = block_signals();
    if let Some((listener, target)) = forward {
        if let Err(error) = std::thread::Builder::new()
            .name("forward".into())
            .spawn(move || serve_forward(listener, target))
        {
            eprintln!("strata container-shim: cannot forward the instance's port: {error}");
        }
    }
    let code = supervise(init, &signals);
    // Killed: the kernel counts an OOM kill only in the container's own cgroup, which the
    // delete below removes; say so in the bundle for the driver, which names the reason.
    if code == 128 + Signal::SIGKILL as i32 && container_oom_killed(bundle) {
        let _ = std::fs::write(bundle.join(OOM_KILLED_MARK), b"");
    }
    // The container's processes are gone with its pid namespace's first process; what is
    // left is its state directory and its `ctr` cgroup.
    if let Err(error) = container.delete(true) {
        eprintln!("strata container-shim: cannot delete container {id}: {error}");
    }
    code
}

/// The file the shim leaves in the bundle when the kernel killed the container for memory.
pub const OOM_KILLED_MARK: &str = "oom-killed";

/// Whether the kernel's OOM killer killed a process of the bundle's container: the
/// `oom_kill` count of its cgroup (`linux.cgroupsPath`), in the v1 memory hierarchy or the
/// unified one.
fn container_oom_killed(bundle: &Path) -> bool {
    let Ok(spec) = oci_spec::runtime::Spec::load(bundle.join("config.json")) else {
        return false;
    };
    let Some(path) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) else {
        return false;
    };
    let relative = path.strip_prefix("/").unwrap_or(&path);
    let root = Path::new("/sys/fs/cgroup");
    let files = [
        root.join("memory")
            .join(relative)
            .join("memory.oom_control"),
        root.join(relative).join("memory.events"),
    ];
    // The kernel counts the kill just after it sends the signal: look again, briefly, before
    // saying it was not one.
    (0..5).any(|attempt| {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        files.iter().any(|file| {
            crate::cgroup::counts_oom_kills(&std::fs::read_to_string(file).unwrap_or_default())
        })
    })
}

/// The shim inside an instance's network namespace, for as long as it creates the container.
struct NetnsVisit {
    home: std::fs::File,
}

impl NetnsVisit {
    fn enter(netns: &Path) -> Result<NetnsVisit, String> {
        let home = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|error| format!("cannot open the shim's network namespace: {error}"))?;
        let target = std::fs::File::open(netns).map_err(|error| {
            format!(
                "cannot open the instance's network namespace {}: {error}",
                netns.display()
            )
        })?;
        nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| {
            format!(
                "cannot enter the instance's network namespace {}: {}",
                netns.display(),
                errno.desc()
            )
        })?;
        Ok(NetnsVisit { home })
    }

    fn leave(self) -> Result<(), String> {
        nix::sched::setns(&self.home, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| {
            format!(
                "cannot return to the node's network namespace: {}",
                errno.desc()
            )
        })
    }
}

fn create_and_start(root: &Path, bundle: &Path, id: &str) -> Result<Container, String> {
    std::fs::create_dir_all(root)
        .map_err(|error| format!("cannot create {}: {error}", root.display()))?;
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .validate_id()
        .and_then(|builder| builder.with_root_path(root))
        .map_err(|error| error.to_string())?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|error| error.to_string())?;
    container.start().map_err(|error| error.to_string())?;
    Ok(container)
}

/// Blocks the signals the shim forwards (and SIGCHLD): they queue up for [`supervise`]
/// instead of ending the shim. (The container was started before this, so it does not
/// inherit the mask.)
fn block_signals() -> SigSet {
    let mut signals = SigSet::empty();
    for signal in FORWARDED {
        signals.add(signal);
    }
    signals.add(Signal::SIGCHLD);
    if let Err(errno) = signals.thread_block() {
        eprintln!("strata container-shim: cannot block signals: {errno}");
    }
    signals
}

/// Forwards every connection `listener` takes to `target`, until the process ends.
fn serve_forward(listener: std::net::TcpListener, target: SocketAddr) {
    // One thread: two workers measured no faster on a loaded node (docs/benchmarks.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("strata container-shim: cannot forward the instance's port: {error}");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
        {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("strata container-shim: cannot forward the instance's port: {error}");
                return;
            }
        };
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = inbound.set_nodelay(true);
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

/// Forwards signals to `init` until it ends; returns its exit code (`128 + signal` if a
/// signal ended it).
fn supervise(init: Pid, signals: &SigSet) -> i32 {
    loop {
        // Reap every child that ended; the container's first process is the one that counts.
        loop {
            match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == init => return code,
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == init => {
                    return 128 + signal as i32
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                // No children at all: the first process is gone and was reaped elsewhere.
                Err(_) => return EXIT_CANNOT_CREATE,
            }
        }
        match signals.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(signal) => {
                let _ = nix::sys::signal::kill(init, signal);
            }
            Err(_) => {}
        }
    }
}
