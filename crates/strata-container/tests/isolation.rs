//! The container driver against the real kernel, with its shim (youki's libcontainer): what an
//! instance can see and do, and what is left when it ends.
//!
//! Needs root, iproute2 and nftables (scripts/deps.sh test installs them). Without them
//! each test says why and skips, unless STRATA_REQUIRE_ROOT=1 (CI), where skipping fails.
//!
//! The image is made here: one layer with a shell and a few tools from the host, each with the
//! closure of its shared libraries (read with `ldd`), nothing else.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{hello_bin, http_get, leased_address, shifted_copy};
use strata_container::{
    ContainerConfig, ContainerDriver, ContainerError, IdShift, ImageSource, ResolvedImage,
};
use strata_runtime::{ContainerSettings, Driver, DriverSettings, StartSpec};

/// One container test at a time: they share the node's bridge and firewall.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn can_run() -> bool {
    strata_testkit::containers_available("container tests")
}

/// Copies `binary` and the shared libraries `ldd` lists for it into `root`, at their paths.
fn install(root: &Path, binary: &Path, at: &str) {
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    };
    copy(binary, &root.join(at.trim_start_matches('/')));
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|word| word.starts_with('/'))
            .map(PathBuf::from);
        if let Some(path) = path {
            copy(&path, &root.join(path.strip_prefix("/").unwrap()));
        }
    }
}

fn host_tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is not on this host");
}

/// A root with a shell and a few tools; every test's container runs from it.
fn base_root(dir: &Path) -> PathBuf {
    let root = dir.join("layer");
    for tool in ["dash", "bash", "cat", "sleep", "timeout", "ls"] {
        install(&root, &host_tool(tool), &format!("/bin/{tool}"));
    }
    std::os::unix::fs::symlink("dash", root.join("bin/sh")).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    root
}

struct OneLayer(PathBuf);

impl ImageSource for OneLayer {
    fn resolve(
        &self,
        _artifact: &Path,
        shift: Option<IdShift>,
    ) -> Result<ResolvedImage, ContainerError> {
        let layer = match shift {
            None => self.0.clone(),
            Some(shift) => shifted_copy(&self.0, shift),
        };
        Ok(ResolvedImage {
            lower_dirs: vec![layer],
            ..ResolvedImage::default()
        })
    }
}

struct Node {
    dir: tempfile::TempDir,
    driver: ContainerDriver,
}

fn node() -> Node {
    node_with(&[])
}

/// A node whose image also holds each `(binary, at)` (with its libraries).
fn node_with(binaries: &[(&Path, &str)]) -> Node {
    node_allowing(binaries, &[])
}

/// The same, on a node that allows the capabilities `allowed` past the ordinary set.
fn node_allowing(binaries: &[(&Path, &str)], allowed: &[&str]) -> Node {
    node_configured(binaries, |config| {
        config.allowed_capabilities = allowed.iter().map(|c| c.to_string()).collect();
    })
}

/// A node whose image also holds `binaries`, configured by `configure`.
fn node_configured(
    binaries: &[(&Path, &str)],
    configure: impl FnOnce(&mut ContainerConfig),
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let root = base_root(dir.path());
    for (binary, at) in binaries {
        install(&root, binary, at);
    }
    let mut config = ContainerConfig::new(
        dir.path().join("state"),
        vec![env!("CARGO_BIN_EXE_strata-container-shim").to_string()],
    );
    configure(&mut config);
    let driver =
        ContainerDriver::new(config, Arc::new(OneLayer(root))).expect("container driver starts");
    Node { dir, driver }
}

/// A container's settings as a spec without `[container]` and `resources` makes them.
fn defaults() -> ContainerSettings {
    ContainerSettings {
        memory_bytes: 64 << 20,
        cpu_millis: 1000,
        pids: None,
        capabilities: Vec::new(),
        host_root: false,
        keep_writable_layer: false,
    }
}

impl Node {
    /// A start of `script`, with settings as the agent makes them from a spec, and extra
    /// environment entries (the application's config).
    fn spec_with(
        &self,
        id: &str,
        script: &str,
        settings: ContainerSettings,
        config: &[(&str, &str)],
    ) -> StartSpec {
        let mut env = BTreeMap::from([
            ("PORT".to_string(), strata_testkit::free_port().to_string()),
            ("HOST".to_string(), "127.0.0.1".to_string()),
        ]);
        for (k, v) in config {
            env.insert(k.to_string(), v.to_string());
        }
        StartSpec {
            instance_id: id.to_string(),
            secret_files: Vec::new(),
            name: "isolated".into(),
            program: self.dir.path().join("image.tar"),
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env,
            log_path: self.dir.path().join(format!("{id}.log")),
            work_dir: self.dir.path().join(id),
            settings: DriverSettings::Container(settings),
        }
    }

    fn spec(&self, id: &str, script: &str, settings: ContainerSettings) -> StartSpec {
        self.spec_with(id, script, settings, &[])
    }

    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{id}.log"))).unwrap_or_default()
    }

    async fn run(&self, spec: &StartSpec) -> strata_runtime::Exit {
        let handle = self.driver.start(spec).await.expect("container starts");
        let exit = tokio::time::timeout(Duration::from_secs(60), handle.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} did not end within 60 s: {}",
                    spec.instance_id,
                    self.log(&spec.instance_id)
                )
            });
        assert_cleaned(&spec.instance_id, &spec.work_dir, &self.driver);
        exit
    }
}

/// Nothing of an ended instance is left: cgroup, root mount, container directory.
fn assert_cleaned(id: &str, work_dir: &Path, driver: &ContainerDriver) {
    let mounts_of = driver.mounts_of(id);
    assert!(!mounts_of.exists(), "{} left behind", mounts_of.display());
    for controller in ["memory", "pids", "cpu"] {
        let cgroup = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("strata")
            .join(id);
        assert!(!cgroup.exists(), "{} left behind", cgroup.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for dir in [work_dir, &mounts_of] {
        assert!(
            !mounts.contains(&dir.display().to_string()),
            "mount left behind below {}",
            dir.display()
        );
    }
    assert!(
        !work_dir.join("container").exists(),
        "container directory left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_sees_only_its_own_processes_and_its_own_root() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node();
    let secret = std::env::temp_dir().join(format!("strata-secret-{}", std::process::id()));
    std::fs::write(&secret, "host secret").unwrap();
    let script = format!(
        "echo processes: /proc/[0-9]*; cat {} || echo no-host-file; ls /",
        secret.display()
    );
    let spec = node.spec("iso-1", &script, defaults());
    let exit = node.run(&spec).await;
    let log = node.log("iso-1");
    std::fs::remove_file(&secret).unwrap();
    assert_eq!(exit.code, Some(0), "{log}");
    let processes: Vec<&str> = log
        .lines()
        .find_map(|l| l.strip_prefix("processes: "))
        .expect("the script ran")
        .split_whitespace()
        .collect();
    assert!(processes.contains(&"/proc/1"), "{processes:?}");
    assert!(processes.len() <= 3, "sees other processes: {processes:?}");
    assert!(
        log.contains("no-host-file") && !log.contains("host secret"),
        "{log}"
    );
    assert!(
        !log.contains("home") && !log.contains("root\n"),
        "host root visible: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_reported_as_such() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node();
    let spec = node.spec(
        "hog-1",
        "x=$(cat /dev/urandom); echo survived",
        ContainerSettings {
            memory_bytes: 32 << 20,
            ..defaults()
        },
    );
    let exit = node.run(&spec).await;
    assert_eq!(
        exit.describe(),
        "killed: memory limit 32Mi reached",
        "{exit:?}: {}",
        node.log("hog-1")
    );
    assert!(!node.log("hog-1").contains("survived"));
    assert!(exit.oom_killed(), "{exit:?}");
}

/// A service whose failures are archived: its container's writable layer stays when it ends,
/// until it is discarded (once archived) or the instance starts again, which begins from the
/// image as ever; the rest of the container is cleaned up at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_writable_layer_stays_until_discarded_or_the_next_start() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node();
    let keep = ContainerSettings {
        keep_writable_layer: true,
        ..defaults()
    };
    let node = &node;
    let ended = |script: &str| {
        let spec = node.spec("keep-1", script, keep.clone());
        async move {
            let handle = node.driver.start(&spec).await.expect("container starts");
            let exit = tokio::time::timeout(Duration::from_secs(60), handle.wait())
                .await
                .expect("the container ends");
            (spec, handle, exit)
        }
    };
    let (spec, handle, exit) = ended("echo canary-kept > /written; exit 3").await;
    assert_eq!(exit.code, Some(3), "{}", node.log("keep-1"));
    let upper = spec.work_dir.join("container").join("upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("written")).unwrap(),
        "canary-kept\n"
    );
    assert!(!spec
        .work_dir
        .join("container")
        .join("overlay-work")
        .exists());
    assert!(!node.driver.mounts_of("keep-1").exists());
    handle.discard_writable_layer();
    assert_cleaned("keep-1", &spec.work_dir, &node.driver);

    // Kept again and not discarded: the next start does not see it.
    let (spec, _handle, _) = ended("echo canary-kept > /written; exit 3").await;
    assert!(spec.work_dir.join("container/upper/written").exists());
    let (spec, handle, exit) = ended("cat /written 2>/dev/null || echo fresh-root").await;
    assert_eq!(exit.code, Some(0));
    assert!(
        node.log("keep-1").ends_with("fresh-root\n"),
        "{}",
        node.log("keep-1")
    );
    handle.discard_writable_layer();
    assert_cleaned("keep-1", &spec.work_dir, &node.driver);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node();
    let spec = node.spec(
        "bomb-1",
        // The bomb runs in a subshell (dash gives up at the first refused fork); the
        // container's init stays, so the cgroups can be read while it runs.
        "(i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo spawned); exec sleep 30",
        ContainerSettings {
            pids: Some(16),
            ..defaults()
        },
    );
    let handle = node.driver.start(&spec).await.expect("container starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !node.log("bomb-1").contains("Cannot fork") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The pids controller counts the forks it refused (cgroup v1 counts them on the
    // forking cgroup, the runtime's child of the instance's; v2 on the limited one).
    let refused: u64 = ["pids.events", "ctr/pids.events"]
        .iter()
        .map(|file| {
            std::fs::read_to_string(Path::new("/sys/fs/cgroup/pids/strata/bomb-1").join(file))
                .unwrap_or_default()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("max ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
                .unwrap_or(0)
        })
        .sum();
    let log = node.log("bomb-1");
    let exit = handle.stop(Duration::from_secs(2)).await;
    assert_cleaned("bomb-1", &spec.work_dir, &node.driver);
    assert!(log.contains("Cannot fork"), "forks were refused: {log}");
    assert!(!log.contains("spawned"), "200 processes started: {log}");
    assert!(refused > 0, "the pids limit refused no fork");
    let _ = exit;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_cannot_connect_to_the_host_but_its_port_is_reached() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node();
    // A listener in the host's namespace, on the bridge's own address (made by the driver):
    // the host itself can connect to it; the instance must not.
    let listener = std::net::TcpListener::bind("10.89.0.1:0").expect("bridge address");
    let port = listener.local_addr().unwrap().port();
    assert!(std::net::TcpStream::connect(("10.89.0.1", port)).is_ok());
    let _ = listener.accept().unwrap();
    listener.set_nonblocking(true).unwrap();
    let script = format!(
        "if timeout 3 bash -c 'echo hi > /dev/tcp/10.89.0.1/{port}'; then echo CONNECTED; else echo BLOCKED; fi"
    );
    let spec = node.spec("net-1", &script, defaults());
    let exit = node.run(&spec).await;
    let log = node.log("net-1");
    assert_eq!(exit.code, Some(0), "{log}");
    assert!(
        log.contains("BLOCKED") && !log.contains("CONNECTED"),
        "{log}"
    );
    assert!(
        listener.accept().is_err(),
        "the host listener saw a connection"
    );
}

/// The example service's binary, built beside this test by `cargo build --workspace --bins`.
#[tokio::test(flavor = "multi_thread")]
async fn the_node_reaches_the_instance_port() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node_with(&[(&hello_bin(), "/hello")]);
    let mut spec = node.spec("web-1", "", defaults());
    spec.args = vec!["/hello".into()];
    spec.env
        .insert("GREETING".into(), "hello from a container".into());
    let port = spec.env["PORT"].clone();
    let handle = node.driver.start(&spec).await.expect("container starts");
    let mut answer = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && answer.is_none() {
        answer = http_get(&format!("127.0.0.1:{port}")).ok();
        if answer.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let exit = handle.stop(Duration::from_secs(5)).await;
    assert_cleaned("web-1", &spec.work_dir, &node.driver);
    let answer =
        answer.unwrap_or_else(|| panic!("no answer on port {port}: {}", node.log("web-1")));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("hello from a container"), "{answer}");
    assert_ne!(
        exit.reason.as_deref(),
        Some("killed: memory limit 64Mi reached")
    );
}

/// A file of the host only its root may read, which a container sees (through `/sys`).
fn host_root_only_file() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let slab = std::fs::read_dir("/sys/kernel/slab").expect("/sys/kernel/slab");
    slab.flatten()
        .map(|entry| entry.path().join("objects"))
        .find(|path| {
            std::fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o777 == 0o400)
        })
        .expect("a root-only file in /sys/kernel/slab")
}

/// The `Uid:` line of a `/proc/PID/status`: real, effective, saved, filesystem.
fn uids(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .map(|ids| {
            ids.split_whitespace()
                .map(|id| id.parse().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// A container's root is an unprivileged user of the host (its user namespace maps it to the
/// node's range): seen from the host its processes and the files it writes belong to the
/// range's first id, and with DAC_OVERRIDE granted it still cannot read a file only the host's
/// root may read, which a container run as the host's root (`userns = false`, on a node that
/// allows it) reads. Through the host's `/sys` (bound read-only in a user namespace) it sees
/// only its own cgroups. On a node that does not allow it, `userns = false` is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_containers_root_is_an_unprivileged_user_of_the_host() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let secret = host_root_only_file();
    let script = format!(
        "cat /proc/self/uid_map; cat /proc/self/status; echo x > /made-here; \
         echo \"cgroups: [$(ls -A /sys/fs/cgroup/memory /sys/fs/cgroup/pids)]\"; \
         (cat {} > /dev/null 2>&1) && echo 'host file: read' || echo 'host file: refused'; \
         echo ready; sleep 30",
        secret.display()
    );
    let allowing = node_configured(&[], |config| {
        config.allow_host_root = true;
        config.allowed_capabilities = ["DAC_OVERRIDE".to_string()].into();
    });
    let with_dac = |host_root| ContainerSettings {
        capabilities: vec!["DAC_OVERRIDE".into()],
        host_root,
        ..defaults()
    };
    let mut seen = Vec::new();
    for (id, host_root) in [("userns-1", false), ("hostroot-1", true)] {
        let spec = allowing.spec(id, &script, with_dac(host_root));
        let handle = allowing
            .driver
            .start(&spec)
            .await
            .expect("container starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !allowing.log(id).contains("ready") {
            assert!(
                Instant::now() < deadline,
                "never ready: {}",
                allowing.log(id)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = allowing.log(id);
        assert_eq!(uids(&log), [0, 0, 0, 0], "root inside: {log}");
        // Seen from the host.
        let pid = *handle.processes().first().expect("a process");
        let on_host = uids(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap());
        let made = std::fs::metadata(spec.work_dir.join("container/upper/made-here")).unwrap();
        use std::os::unix::fs::MetadataExt;
        seen.push((log, on_host, made.uid()));
        // Its first process is a shell, which ignores SIGTERM as a namespace's init.
        handle.stop(Duration::from_millis(300)).await;
    }
    let (userns_log, userns_uids, userns_file) = &seen[0];
    assert!(
        userns_log.starts_with("         0 1700000000      65536"),
        "{userns_log}"
    );
    assert_eq!(userns_uids, &[1_700_000_000; 4], "{userns_log}");
    assert_eq!(*userns_file, 1_700_000_000);
    assert!(userns_log.contains("host file: refused"), "{userns_log}");
    // Through the bind of the host's /sys it sees its own cgroups, not the node's.
    let cgroups = userns_log.split("cgroups: [").nth(1).unwrap();
    assert!(cgroups.contains("pids.max"), "{userns_log}");
    assert!(!cgroups.contains("strata"), "{userns_log}");
    let (host_log, host_uids, host_file) = &seen[1];
    assert!(
        host_log.starts_with("         0          0 4294967295"),
        "{host_log}"
    );
    assert_eq!(host_uids, &[0; 4], "{host_log}");
    assert_eq!(*host_file, 0);
    assert!(host_log.contains("host file: read"), "{host_log}");

    // A node that does not allow it refuses it, saying how.
    let strict = node();
    let spec = strict.spec("hostroot-2", "true", with_dac(true));
    let refused = strict.driver.start(&spec).await.err().expect("refused");
    assert!(
        refused.to_string().contains("--allow-host-root"),
        "{refused}"
    );
    assert_cleaned("hostroot-2", &spec.work_dir, &strict.driver);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_capabilities_unless_granted() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node();
    let effective = |log: &str| -> String {
        log.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no CapEff in {log}"))
    };
    let spec = node.spec("caps-1", "cat /proc/self/status", defaults());
    assert_eq!(node.run(&spec).await.code, Some(0));
    assert_eq!(effective(&node.log("caps-1")), "0000000000000000");
    // NET_BIND_SERVICE is capability 10: bit 0x400.
    let spec = node.spec(
        "caps-2",
        "cat /proc/self/status",
        ContainerSettings {
            capabilities: vec!["NET_BIND_SERVICE".into()],
            ..defaults()
        },
    );
    assert_eq!(node.run(&spec).await.code, Some(0));
    assert_eq!(effective(&node.log("caps-2")), "0000000000000400");
    // The application's config cannot grant one: an entry named like the old plumbing is
    // only an environment variable.
    let spec = node.spec_with(
        "caps-3",
        "cat /proc/self/status",
        defaults(),
        &[
            ("STRATA_CONTAINER_CAPABILITIES", "SYS_ADMIN"),
            ("STRATA_CONTAINER_PIDS", "100000"),
        ],
    );
    assert_eq!(node.run(&spec).await.code, Some(0));
    assert_eq!(effective(&node.log("caps-3")), "0000000000000000");
    // Past the ordinary set, only on a node that allows it: refused here...
    let sys_admin = || ContainerSettings {
        capabilities: vec!["SYS_ADMIN".into()],
        ..defaults()
    };
    let spec = node.spec("caps-4", "cat /proc/self/status", sys_admin());
    let refused = node.driver.start(&spec).await.err().expect("refused");
    assert!(
        refused.to_string().contains("--allow-capability SYS_ADMIN"),
        "{refused}"
    );
    // ...granted where the node allows it (SYS_ADMIN is capability 21: bit 0x200000).
    let allowing = node_allowing(&[], &["SYS_ADMIN"]);
    let spec = allowing.spec("caps-5", "cat /proc/self/status", sys_admin());
    assert_eq!(allowing.run(&spec).await.code, Some(0));
    assert_eq!(effective(&allowing.log("caps-5")), "0000000000200000");
    // And whatever it was granted, it cannot gain more, and its syscalls are filtered.
    let log = node.log("caps-1");
    let field = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {log}"))
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "2 is a seccomp filter");
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_forwards_sigterm_and_leaves_nothing_behind() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node();
    // The shell is the container's first process: it gets SIGTERM only if the shim passes
    // it on, and says so before it ends.
    let spec = node.spec(
        "stop-1",
        "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        defaults(),
    );
    let handle = node.driver.start(&spec).await.expect("container starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.log("stop-1").contains("ready") {
        assert!(
            Instant::now() < deadline,
            "never ready: {}",
            node.log("stop-1")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let exit = handle.stop(Duration::from_secs(10)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the container ended only at the grace period's end: {exit:?}"
    );
    assert_eq!(exit.code, Some(3), "{exit:?}: {}", node.log("stop-1"));
    assert!(node.log("stop-1").contains("got TERM"));
    let state = node.dir.path().join("state/runtime/stop-1");
    assert!(!state.exists(), "{} is left", state.display());

    // A shim killed outright (SIGKILL cannot be forwarded) leaves the container running;
    // the driver kills and removes it.
    let spec = node.spec("stop-2", "echo ready; exec sleep 1000", defaults());
    let handle = node.driver.start(&spec).await.expect("container starts");
    while !node.log("stop-2").contains("ready") {
        assert!(
            Instant::now() < deadline,
            "never ready: {}",
            node.log("stop-2")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shim = handle.pid().expect("the shim has a pid");
    let state = node.dir.path().join("state/runtime/stop-2/state.json");
    // The runtime rewrites its state in place as the container starts: read it until whole.
    let container_pid = loop {
        let state_json = std::fs::read_to_string(&state).unwrap_or_default();
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&state_json) {
            break value["pid"]
                .as_i64()
                .expect("the state names the container's pid");
        }
        assert!(
            Instant::now() < deadline,
            "no whole state in {}",
            state.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), handle.wait())
        .await
        .expect("the killed shim is seen to end");
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    let gone = Path::new("/proc").join(container_pid.to_string());
    let deadline = Instant::now() + Duration::from_secs(5);
    while gone.exists()
        && !std::fs::read_to_string(gone.join("stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "the container's process {container_pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!state.parent().unwrap().exists(), "runtime state is left");
}

#[tokio::test(flavor = "multi_thread")]
async fn unused_images_are_collected_and_running_ones_kept() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let root = base_root(dir.path());
    // An image made by the store itself, saved to the archive a service deploys.
    let build = strata_image::ImageStore::open(dir.path().join("build")).unwrap();
    build
        .build_from_dir(
            &root,
            &strata_image::BuildOptions {
                tag: Some(strata_image::Tag::parse("tools:1").unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    let archive = dir.path().join("tools.tar");
    build
        .export_oci_layout("tools:1", std::fs::File::create(&archive).unwrap())
        .unwrap();
    let node_store = dir.path().join("node-images");
    let driver = ContainerDriver::new(
        ContainerConfig::new(
            dir.path().join("state"),
            vec![env!("CARGO_BIN_EXE_strata-container-shim").to_string()],
        ),
        Arc::new(strata_container::StoreImages::new(
            strata_image::ImageStore::open(&node_store).unwrap(),
        )),
    )
    .unwrap();
    let node = Node { dir, driver };
    let layers = || {
        std::fs::read_dir(node_store.join("layers"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut spec = node.spec("gc-1", "exec sleep 30", defaults());
    spec.program = archive.clone();
    let handle = node.driver.start(&spec).await.expect("container starts");
    assert_eq!(layers(), 1, "the image's layer is unpacked");
    node.driver.collect_garbage(Duration::ZERO).unwrap();
    assert_eq!(layers(), 1, "an image a running instance uses is kept");
    handle.stop(Duration::from_secs(2)).await;
    node.driver
        .collect_garbage(Duration::from_secs(3600))
        .unwrap();
    assert_eq!(layers(), 1, "an image used within the grace period is kept");
    let summary = node.driver.collect_garbage(Duration::ZERO).unwrap();
    assert_eq!(layers(), 0, "an unused image is collected: {summary}");
    assert!(summary.contains("1 images"), "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_makes_cgroup_moves_cheap() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let mountinfo = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let cgroup2 = |text: &str| -> Option<String> {
        text.lines()
            .find(|line| line.contains(" - cgroup2 "))
            .map(str::to_string)
    };
    let Some(line) = cgroup2(&mountinfo()) else {
        eprintln!("skipped: this host has no cgroup2 mount to set favordynmods on");
        return;
    };
    // Take the option off (as a host that never had it), keeping the mount's other options.
    let without = line.replace(",favordynmods", "");
    let remount = strata_container::cgroup::favordynmods_remount(&without).unwrap();
    let data = remount
        .data
        .trim_end_matches("favordynmods")
        .trim_end_matches(',');
    nix::mount::mount(
        None::<&str>,
        &remount.target,
        None::<&str>,
        remount.flags,
        Some(data),
    )
    .unwrap();
    assert!(!cgroup2(&mountinfo()).unwrap().contains("favordynmods"));
    let _node = node();
    let after = cgroup2(&mountinfo()).unwrap();
    assert!(after.contains("favordynmods"), "{after}");
    // Nothing else about the mount changed.
    assert_eq!(after.replace(",favordynmods", ""), without);
}

/// The address leased to `instance` under the driver's state directory.
/// A container reaches the node's mesh proxy port on the gateway (the one way out) and
/// nothing else: not another instance, even on the same bridge (its bridge port is isolated,
/// and where the host passes bridged traffic through netfilter, the forward chain drops it
/// too).
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_reaches_the_mesh_proxy_but_not_another_instance() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node_with(&[(&hello_bin(), "/hello")]);

    // The other instance: an HTTP server on the bridge.
    let mut web = node.spec("peer-web", "", defaults());
    web.args = vec!["/hello".into()];
    let web_port = web.env["PORT"].clone();
    let web_handle = node.driver.start(&web).await.expect("container starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&format!("127.0.0.1:{web_port}")).is_err() {
        assert!(Instant::now() < deadline, "{}", node.log("peer-web"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let web_address = leased_address(&node.dir.path().join("state"), "peer-web")
        .expect("the instance has an address lease");

    // The mesh proxy stand-in: a listener at the gateway on a port the node allows.
    let gateway = node.driver.gateway();
    let proxy = std::net::TcpListener::bind((gateway, 0)).expect("gateway address");
    let proxy_port = proxy.local_addr().unwrap().port();
    node.driver.allow_mesh_proxy(proxy_port).unwrap();

    let probe = |target: &str, label: &str| {
        format!(
            "if timeout 3 bash -c 'echo hi > /dev/tcp/{target}'; then echo {label}-CONNECTED; else echo {label}-BLOCKED; fi; "
        )
    };
    let script = [
        probe(&format!("{gateway}/{proxy_port}"), "PROXY"),
        probe(&format!("{web_address}/{web_port}"), "PEER"),
    ]
    .concat();
    let spec = node.spec("prober", &script, defaults());
    let exit = node.run(&spec).await;
    let log = node.log("prober");
    let _ = web_handle.stop(Duration::from_secs(5)).await;
    assert_eq!(exit.code, Some(0), "{log}");
    assert!(
        log.contains("PROXY-CONNECTED"),
        "the mesh proxy port: {log}"
    );
    assert!(
        log.contains("PEER-BLOCKED") && !log.contains("PEER-CONNECTED"),
        "another instance's address {web_address}:{web_port}: {log}"
    );
}

/// A host user cannot use a running container's root: its directory is the agent's alone,
/// and the root is mounted nosuid and nodev, so an image's setuid-root binary raises no one
/// (the escape: an unprivileged host user runs `rootfs/bin/id` of an image where it is
/// setuid root).
#[tokio::test(flavor = "multi_thread")]
async fn a_host_user_cannot_run_an_images_setuid_binary() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node_with(&[(&host_tool("id"), "/bin/id")]);
    let setuid = node.dir.path().join("layer/bin/id");
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let spec = node.spec("suid-1", "echo ready; sleep 30", defaults());
    let handle = node.driver.start(&spec).await.expect("container starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.log("suid-1").contains("ready") {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = node.driver.mounts_of("suid-1");
    let rootfs = dir.join("rootfs");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(rootfs.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is not mounted", rootfs.display()));
    let options: Vec<&str> = line.split(' ').nth(5).unwrap().split(',').collect();
    assert!(options.contains(&"nosuid"), "{line}");
    assert!(options.contains(&"nodev"), "{line}");
    // As nobody: the directory cannot be entered.
    let as_nobody = |path: &Path| {
        use std::os::unix::process::CommandExt;
        Command::new(path).arg("-u").uid(65534).gid(65534).output()
    };
    let refused = as_nobody(&rootfs.join("bin/id")).expect_err("nobody entered the root");
    assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
    // Were the directory opened to everyone, the mount still gives no one root.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ran = as_nobody(&rootfs.join("bin/id")).expect("runs once the directory is open");
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "65534");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    handle.stop(Duration::from_secs(5)).await;
}

/// An instance cannot make namespaces: `unshare -U`, `clone` with a namespace flag (a user
/// namespace would give it a root of its own) and `clone3` (whose flags a filter cannot
/// read) are refused, while a plain `clone` (fork) works.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_cannot_make_namespaces() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node_with(&[
        (&host_tool("perl"), "/bin/perl"),
        (&host_tool("unshare"), "/bin/unshare"),
    ]);
    // clone is syscall 56 and clone3 435 on x86_64; 17 is SIGCHLD.
    let perl = r#"
        sub try_clone { my ($name, $flags) = @_;
            my $r = syscall(56, $flags | 17, 0, 0, 0, 0);
            exit 0 if $r == 0;
            if ($r > 0) { waitpid($r, 0); print "$name: made\n" } else { print "$name: $!\n" } }
        try_clone("clone NEWUSER", 0x10000000);
        try_clone("clone NEWNET", 0x40000000);
        try_clone("clone NEWNS", 0x00020000);
        try_clone("plain clone", 0);
        syscall(435, 0, 0); print "clone3: $!\n";
    "#;
    let script = format!("unshare -U true; echo \"unshare -U: $?\"; perl -e '{perl}'");
    let spec = node.spec("ns-1", &script, defaults());
    assert_eq!(node.run(&spec).await.code, Some(0), "{}", node.log("ns-1"));
    let log = node.log("ns-1");
    for refused in ["clone NEWUSER", "clone NEWNET", "clone NEWNS"] {
        assert!(
            log.contains(&format!("{refused}: Operation not permitted")),
            "{refused}: {log}"
        );
    }
    assert!(!log.contains("unshare -U: 0"), "{log}");
    assert!(log.contains("plain clone: made"), "{log}");
    assert!(log.contains("clone3: Function not implemented"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_the_instance_from_a_tmpfs_and_never_the_nodes_disk() {
    if !can_run() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let node = node();
    let mut spec = node.spec_with(
        "secret-1",
        "echo env=$DB_PASSWORD; cat /run/secrets/db; echo; ls -ln /run/secrets/db; \
         (echo x > /run/secrets/db) 2>/dev/null && echo writable || echo read-only; sleep 1",
        defaults(),
        &[("DB_PASSWORD", "env-s3cret")],
    );
    spec.secret_files = vec![strata_runtime::SecretFile {
        path: "/run/secrets/db".into(),
        value: "file-s3cret".into(),
    }];
    assert!(!format!("{spec:?}").contains("s3cret"), "{spec:?}");
    let handle = node.driver.start(&spec).await.expect("container starts");
    // While it runs, its bundle (config.json with the environment, the secret files) is a
    // tmpfs: nothing of it is on the node's disk.
    let bundle = node.driver.mounts_of("secret-1").join("bundle");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounted = mountinfo
        .lines()
        .find(|l| l.contains(&format!(" {} ", bundle.display())))
        .unwrap_or_else(|| panic!("no mount at {}", bundle.display()));
    assert!(mounted.contains(" - tmpfs "), "{mounted}");
    let exit = tokio::time::timeout(Duration::from_secs(60), handle.wait())
        .await
        .expect("ends");
    let log = node.log("secret-1");
    assert_eq!(exit.code, Some(0), "{log}");
    assert!(log.contains("env=env-s3cret"), "{log}");
    assert!(log.contains("file-s3cret"), "{log}");
    assert!(log.contains("-r-------- "), "only its user reads it: {log}");
    assert!(log.contains("read-only"), "{log}");
    assert_cleaned("secret-1", &spec.work_dir, &node.driver);
}
