//! Sandboxed exec instances against the real kernel: each escape an exec instance had tried
//! (reading the agent's files, another instance's environment, dialling another instance's
//! port, writing the host) fails, the memory limit holds and is reported, and nothing is
//! left behind.
//!
//! Needs root, iproute2 and nftables, like the container tests; without them each test says
//! why and skips, unless STRATA_REQUIRE_ROOT=1 (CI), where skipping fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{hello_bin, http_get, leased_address, NoImages};
use strata_container::sandbox::DEFAULT_UIDS;
use strata_container::{ContainerConfig, ContainerDriver, SandboxConfig, SandboxedExec};
use strata_runtime::{Driver, DriverSettings, ExecSettings, StartSpec};

/// One test at a time, from making its driver on: they share the node's bridge and firewall
/// (a driver starting sets the firewall's table afresh).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Node {
    dir: tempfile::TempDir,
    containers: Arc<ContainerDriver>,
    driver: SandboxedExec,
}

impl Node {
    fn start() -> Option<Node> {
        if !strata_testkit::containers_available("sandbox tests") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        std::fs::create_dir_all(agent.join("instances")).unwrap();
        std::fs::write(agent.join("node-credential"), "agent-s3cret").unwrap();
        let config = ContainerConfig::new(
            agent.join("containers"),
            vec![env!("CARGO_BIN_EXE_strata-container-shim").to_string()],
        );
        let containers =
            Arc::new(ContainerDriver::new(config, Arc::new(NoImages)).expect("driver starts"));
        let driver = SandboxedExec::new(containers.clone(), SandboxConfig::new(&agent));
        Some(Node {
            dir,
            containers,
            driver,
        })
    }

    fn agent(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    /// An exec instance of `program` with `args`, as the agent starts one.
    fn spec(&self, id: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> StartSpec {
        let mut environment = BTreeMap::from([
            ("PORT".to_string(), strata_testkit::free_port().to_string()),
            ("HOST".to_string(), "127.0.0.1".to_string()),
        ]);
        for (k, v) in env {
            environment.insert(k.to_string(), v.to_string());
        }
        StartSpec {
            instance_id: id.to_string(),
            name: "job".into(),
            program: PathBuf::from(program),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: environment,
            secret_files: Vec::new(),
            log_path: self.dir.path().join(format!("{id}.log")),
            work_dir: self.agent().join("instances").join(id).join("work"),
            settings: DriverSettings::Exec(ExecSettings {
                memory_bytes: Some(64 << 20),
                cpu_millis: Some(1000),
            }),
        }
    }

    fn shell(&self, id: &str, script: &str) -> StartSpec {
        self.spec(id, "sh", &["-c", script], &[])
    }

    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{id}.log"))).unwrap_or_default()
    }

    /// Runs `spec` to its end (bounded); its exit, with nothing of it left behind.
    async fn run(&self, spec: &StartSpec) -> strata_runtime::Exit {
        let handle = self.driver.start(spec).await.expect("the sandbox starts");
        let exit = tokio::time::timeout(Duration::from_secs(60), handle.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} ran on: {}",
                    spec.instance_id,
                    self.log(&spec.instance_id)
                )
            });
        assert_cleaned(&spec.work_dir);
        exit
    }
}

/// No mount of the instance is left, nor its sandbox directory.
fn assert_cleaned(work_dir: &Path) {
    let instance_dir = work_dir.parent().unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&instance_dir.display().to_string()),
        "a mount left behind under {}",
        instance_dir.display()
    );
    assert!(
        !instance_dir.join("sandbox").exists(),
        "sandbox left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_is_its_own_user_sees_the_host_read_only_and_the_agent_not_at_all() {
    let _serial = SERIAL.lock().await;
    let Some(node) = Node::start() else {
        return;
    };
    let agent = node.agent();
    let script = format!(
        "echo uid=$(id -u) gid=$(id -g); \
         cat {agent}/node-credential 2>/dev/null || echo no-credential; \
         echo agent-dir: $(ls {agent}); \
         (echo x > /usr/strata-probe) 2>/dev/null && echo wrote-host || echo host-read-only; \
         (echo x > /tmp/probe) && echo tmp-writable; \
         (echo w > ./own) && echo work-writable; \
         echo home=$HOME pwd=$PWD; \
         echo processes: /proc/[0-9]*",
        agent = agent.display()
    );
    let first = node.shell("box-1", &script);
    let second = node.shell("box-2", &script);
    assert_eq!(
        node.run(&first).await.code,
        Some(0),
        "{}",
        node.log("box-1")
    );
    assert_eq!(
        node.run(&second).await.code,
        Some(0),
        "{}",
        node.log("box-2")
    );
    let uid = |log: &str| -> u32 {
        log.lines()
            .find_map(|l| l.strip_prefix("uid="))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no uid in {log}"))
    };
    let (log, other) = (node.log("box-1"), node.log("box-2"));
    assert!(DEFAULT_UIDS.contains(&uid(&log)), "{log}");
    assert!(DEFAULT_UIDS.contains(&uid(&other)), "{other}");
    assert_ne!(uid(&log), uid(&other), "each instance its own user");
    assert!(log.contains(&format!("gid={}", uid(&log))), "{log}");
    assert!(
        log.contains("no-credential") && !log.contains("agent-s3cret"),
        "{log}"
    );
    let listing = log.lines().find(|l| l.starts_with("agent-dir:")).unwrap();
    assert!(
        !listing.contains("node-credential") && !listing.contains("containers"),
        "{listing}"
    );
    assert!(
        log.contains("host-read-only") && !log.contains("wrote-host"),
        "{log}"
    );
    assert!(!Path::new("/usr/strata-probe").exists());
    assert!(
        log.contains("tmp-writable") && log.contains("work-writable"),
        "{log}"
    );
    let work = first.work_dir.display().to_string();
    assert!(log.contains(&format!("home={work} pwd={work}")), "{log}");
    let processes = log
        .lines()
        .find_map(|l| l.strip_prefix("processes: "))
        .unwrap();
    assert!(
        processes.split_whitespace().count() <= 3,
        "sees others: {processes}"
    );
    // Its working directory stays the agent's to clean, owned by the instance's user.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(first.work_dir.join("own")).unwrap().uid(),
        uid(&log)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_instances_environment_and_files_are_out_of_reach() {
    let _serial = SERIAL.lock().await;
    let Some(node) = Node::start() else {
        return;
    };
    let victim = node.spec(
        "victim",
        "sleep",
        &["30"],
        &[("API_TOKEN", "victim-s3cret")],
    );
    let running = node.driver.start(&victim).await.expect("starts");
    std::fs::write(victim.work_dir.join("data"), "victim-file-s3cret").unwrap();
    let script = format!(
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c s3cret; \
         cat {} 2>/dev/null || echo no-victim-file; \
         echo instances: $(ls {})",
        victim.work_dir.join("data").display(),
        node.agent().join("instances").display()
    );
    let prober = node.shell("prober", &script);
    let exit = node.run(&prober).await;
    let log = node.log("prober");
    let _ = running.stop(Duration::from_secs(5)).await;
    assert_eq!(exit.code, Some(0), "{log}");
    assert!(
        log.starts_with("0\n"),
        "another instance's environment: {log}"
    );
    assert!(
        log.contains("no-victim-file") && !log.contains("victim-file-s3cret"),
        "{log}"
    );
    assert!(
        log.contains("instances: prober\n"),
        "sees only its own: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_is_served_at_its_node_port_and_reaches_only_the_mesh_proxy() {
    let _serial = SERIAL.lock().await;
    let Some(node) = Node::start() else {
        return;
    };
    let hello = hello_bin();
    let web = node.spec(
        "web",
        hello.to_str().unwrap(),
        &[],
        &[("GREETING", "sandboxed hi")],
    );
    let port = web.env["PORT"].clone();
    let handle = node.driver.start(&web).await.expect("starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        if let Ok(answer) = http_get(&format!("127.0.0.1:{port}")) {
            break answer;
        }
        assert!(Instant::now() < deadline, "no answer: {}", node.log("web"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answer.contains("sandboxed hi"), "{answer}");
    // `ps` names it after its service, as the exec driver does.
    let pids = handle.processes();
    let named = pids.iter().any(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "job")
    });
    assert!(named, "{pids:?}");
    let address = leased_address(&node.agent().join("containers"), "web").expect("a lease");
    // The node port leads to it in the kernel (no process copies its bytes), until it stops.
    let translation = format!(
        "[{{\"concat\": [\"127.0.0.1\", {port}]}}, {{\"concat\": [\"{address}\", {port}]}}]"
    );
    assert!(translations().contains(&translation), "{}", translations());
    let gateway = node.containers.gateway();
    let proxy = std::net::TcpListener::bind((gateway, 0)).expect("gateway address");
    let proxy_port = proxy.local_addr().unwrap().port();
    node.containers.allow_mesh_proxy(proxy_port).unwrap();
    let probe = |target: &str, label: &str| {
        format!(
            "if timeout 3 bash -c 'echo hi > /dev/tcp/{target}' 2>/dev/null; then echo {label}-CONNECTED; else echo {label}-BLOCKED; fi; "
        )
    };
    let script = [
        probe(&format!("{gateway}/{proxy_port}"), "PROXY"),
        probe(&format!("127.0.0.1/{port}"), "LOOPBACK"),
        probe(&format!("{address}/{port}"), "PEER"),
    ]
    .concat();
    let prober = node.shell("prober", &script);
    let exit = node.run(&prober).await;
    let log = node.log("prober");
    let _ = handle.stop(Duration::from_secs(5)).await;
    assert_cleaned(&web.work_dir);
    assert!(!translations().contains(&translation), "{}", translations());
    assert_eq!(exit.code, Some(0), "{log}");
    assert!(log.contains("PROXY-CONNECTED"), "the mesh proxy: {log}");
    assert!(
        log.contains("LOOPBACK-BLOCKED"),
        "its loopback is its own: {log}"
    );
    assert!(
        log.contains("PEER-BLOCKED"),
        "another instance's address: {log}"
    );
}

/// The node ports' translations in the kernel (nftables' `node_ports` map, as JSON).
fn translations() -> String {
    let listing = std::process::Command::new("nft")
        .args(["-j", "list", "map", "inet", "strata", "node_ports"])
        .output()
        .expect("nft runs");
    String::from_utf8_lossy(&listing.stdout).into_owned()
}

/// A node port's translation left behind by an agent killed before it cleaned up (its
/// instance's lease gone) is removed by the next agent that starts on the host; a running
/// instance's, even another agent's, is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_translation_left_behind_is_reaped_and_a_live_ones_kept() {
    let _serial = SERIAL.lock().await;
    let Some(node) = Node::start() else {
        return;
    };
    let web = node.spec("web", hello_bin().to_str().unwrap(), &[], &[]);
    let port = web.env["PORT"].clone();
    let handle = node.driver.start(&web).await.expect("starts");
    let live = format!("[{{\"concat\": [\"127.0.0.1\", {port}]}}");
    assert!(translations().contains(&live), "{}", translations());
    // What a killed agent leaves: a translation whose owner's lease is gone.
    let orphan_port = strata_testkit::free_port();
    let added = std::process::Command::new("nft")
        .arg(format!(
            "add element inet strata node_ports {{ 127.0.0.1 . {orphan_port} : 10.89.250.250 . 80 }}"
        ))
        .status()
        .unwrap();
    assert!(added.success());
    let registry = std::path::Path::new("/run/strata/node-ports");
    std::fs::create_dir_all(registry).unwrap();
    std::fs::write(
        registry.join(format!("127.0.0.1:{orphan_port}")),
        node.dir
            .path()
            .join("gone/10.89.250.250")
            .display()
            .to_string(),
    )
    .unwrap();
    let orphan = format!("[{{\"concat\": [\"127.0.0.1\", {orphan_port}]}}");
    assert!(translations().contains(&orphan));
    // Another agent starts on the host (a driver of its own, its own data directory).
    let next = Node::start().expect("the host ran the first");
    assert!(!translations().contains(&orphan), "{}", translations());
    assert!(!registry.join(format!("127.0.0.1:{orphan_port}")).exists());
    assert!(translations().contains(&live), "{}", translations());
    drop(next);
    let _ = handle.stop(Duration::from_secs(5)).await;
    assert!(!translations().contains(&live), "{}", translations());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed_and_reported_as_such() {
    let _serial = SERIAL.lock().await;
    let Some(node) = Node::start() else {
        return;
    };
    let mut hog = node.shell("hog", "head -c 400000000 /dev/zero | tail");
    hog.settings = DriverSettings::Exec(ExecSettings {
        memory_bytes: Some(32 << 20),
        cpu_millis: Some(1000),
    });
    let exit = node.run(&hog).await;
    assert_eq!(
        exit.reason.as_deref(),
        Some("killed: memory limit 32Mi reached"),
        "{exit:?}: {}",
        node.log("hog")
    );
}
