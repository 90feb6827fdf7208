//! An agent upgraded in place: a new `strata agent` binary started on the running agent's
//! data directory takes the node over (its listening sockets by SCM_RIGHTS, then its
//! instances) while requests keep coming, and not one fails.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::api::ServiceStatus;
use strata_testkit::{request_loop, AgentProcess, ServerProcess};

const HOST: &str = "hello.dev.localhost";

fn cli(server: &ServerProcess, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::strata_bin())
        .args(args)
        .env("STRATA_ADDR", &server.api)
        .output()
        .unwrap()
}

/// The service's instances and the node's epoch.
fn instances_and_epoch(server: &ServerProcess) -> (Vec<String>, u64) {
    let status: Vec<ServiceStatus> =
        serde_json::from_slice(&cli(server, &["status", "hello", "--json"]).stdout).unwrap();
    let mut ids: Vec<String> = status[0]
        .instances
        .iter()
        .map(|v| v.instance.id.to_string())
        .collect();
    ids.sort();
    let nodes: Vec<serde_json::Value> =
        serde_json::from_slice(&cli(server, &["node", "ls", "--json"]).stdout).unwrap();
    (ids, nodes[0]["epoch"].as_u64().unwrap())
}

#[test]
fn replacing_the_agent_binary_under_load_fails_no_request() {
    let root = tempfile::tempdir().unwrap();
    // The binary running, and the one replacing it (then replaced in turn).
    let (server, binaries, mut running) = common::serving_hello_to_upgrade(root.path(), "upgraded");
    let agent_dir = root.path().join("agent");
    let before = instances_and_epoch(&server);
    assert_eq!(before.0.len(), 2);

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| request_loop(HOST, running.ingress.clone(), stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Twice: v1 -> v2, then v2 -> v1.
    for round in 0..2 {
        let started = Instant::now();
        let next = AgentProcess::start(
            &binaries[(round + 1) % 2],
            &agent_dir,
            &server.api,
            &server.token(),
        );
        assert_eq!(next.ingress, running.ingress, "the same listening socket");
        let exit = running.wait_exit(Duration::from_secs(30));
        assert!(
            exit.is_some_and(|status| status.success()),
            "the old agent hands over and exits: {exit:?}\n{}",
            std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default()
        );
        eprintln!("round {round}: takeover in {:?}", started.elapsed());
        running = next;
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    let (failures, ok) = strata_testkit::join_request_loops(loads);
    let log = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the upgrades: {:?}\n{log}",
        failures.len(),
        failures.len() + ok,
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "{ok} requests");
    // The same instances, never restarted, and the node kept its epoch (no re-registration
    // storm, no failover).
    assert_eq!(instances_and_epoch(&server), before, "{log}");
    let events = common::stdout(&cli(&server, &["events"]));
    assert!(!events.contains("node.down"), "{events}");
    assert!(!events.contains("instance.stopped"), "{events}");
}

/// The instances' processes, from the agent's records in `agent_dir`: (instance, pid).
fn recorded_pids(agent_dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(agent_dir.join("instances"))
        .unwrap()
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(entry.path().join("record.json")) else {
            continue;
        };
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        found.push((
            record["instance_id"].as_str().unwrap().to_string(),
            // An exec instance's own pid; a sandboxed one's shim's.
            record["process"]["pid"]
                .as_u64()
                .or_else(|| record["process"]["exec"]["pid"].as_u64())
                .unwrap(),
        ));
    }
    found.sort();
    found
}

/// `--keep-instances`: SIGTERM leaves the node's instances running, and the next agent on the
/// data directory re-adopts the very processes (a restart that keeps instances; the server
/// here gives the node 10 s before it would count as down).
#[test]
fn sigterm_with_keep_instances_leaves_the_processes_to_the_next_agent() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        &common::strata_bin(),
        &root.path().join("server"),
        None,
        &["--suspect-after", "5s", "--down-after", "10s"],
    );
    let agent_dir = root.path().join("agent");
    // The node's API at one address, as a host's is: a restart is the same node.
    let api_addr = format!("127.0.0.1:{}", strata_testkit::free_port());
    let agent = AgentProcess::start_with(
        &common::strata_bin(),
        &agent_dir,
        &server.api,
        &server.token(),
        &["--keep-instances", "--api-addr", &api_addr],
    );
    let spec = common::hello_spec(root.path(), 2, "kept");
    let deployed = cli(
        &server,
        &["deploy", spec.to_str().unwrap(), "--timeout", "60s"],
    );
    assert!(deployed.status.success(), "{}", common::stderr(&deployed));
    let before = instances_and_epoch(&server);
    let pids = recorded_pids(&agent_dir);
    assert_eq!(pids.len(), 2, "{pids:?}");

    drop(agent); // SIGTERM
    for (id, pid) in &pids {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{id} keeps running without its agent"
        );
    }
    let _next = AgentProcess::start_with(
        &common::strata_bin(),
        &agent_dir,
        &server.api,
        &server.token(),
        &["--api-addr", &api_addr],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let log = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default();
        if log.matches("re-adopted").count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default();
    assert_eq!(recorded_pids(&agent_dir), pids, "the same processes\n{log}");
    assert_eq!(
        instances_and_epoch(&server),
        before,
        "{log}\n{}",
        common::stdout(&cli(&server, &["events"]))
    );
}

/// What systemd would read from its notify socket within `limit`: the next message.
fn notified(socket: &std::os::unix::net::UnixDatagram, limit: Duration) -> String {
    socket.set_read_timeout(Some(limit)).unwrap();
    let mut buffer = [0u8; 4096];
    let length = socket.recv(&mut buffer).expect("a notification");
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}

/// `systemctl reload` (SIGHUP): the agent starts the binary now on disk (an upgrade replaced
/// it, as dpkg does: written beside it, renamed over it), which takes the node over and tells
/// systemd that it is the service's process now. No request fails; the instances and the
/// node's epoch stay.
#[test]
fn sighup_hands_the_node_to_the_binary_now_on_disk() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&common::strata_bin(), &root.path().join("server"), None);
    let versions = strata_testkit::binary_copies(&common::strata_bin(), root.path(), &["v1", "v2"]);
    let installed_dir = root.path().join("usr/bin");
    std::fs::create_dir_all(&installed_dir).unwrap();
    let installed = installed_dir.join("strata");
    std::fs::copy(&versions[0], &installed).unwrap();
    let socket_path = root.path().join("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    let agent_dir = root.path().join("agent");
    let mut agent = AgentProcess::start_with_env(
        &installed,
        &agent_dir,
        &server.api,
        &server.token(),
        &[],
        &[("NOTIFY_SOCKET", socket_path.as_path())],
    );
    let first = notified(&systemd, Duration::from_secs(10));
    assert!(
        first.contains("READY=1") && first.contains(&format!("MAINPID={}", agent.pid())),
        "{first}"
    );
    let spec = common::hello_spec(root.path(), 2, "reloaded");
    let deployed = cli(
        &server,
        &["deploy", spec.to_str().unwrap(), "--timeout", "60s"],
    );
    assert!(deployed.status.success(), "{}", common::stderr(&deployed));
    let before = instances_and_epoch(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| request_loop(HOST, agent.ingress.clone(), stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let staged = installed_dir.join("strata.dpkg-new");
    std::fs::copy(&versions[1], &staged).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let exit = agent.wait_exit(Duration::from_secs(30));
    let log = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default();
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{log}");
    let second = notified(&systemd, Duration::from_secs(10));
    let new_pid: i32 = second
        .lines()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{second}"));
    assert!(second.contains("READY=1"), "{second}");
    assert_ne!(new_pid as u32, agent.pid());
    let running = std::fs::read_link(format!("/proc/{new_pid}/exe")).unwrap();
    assert_eq!(running, installed, "the new binary, not the replaced one");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (failures, ok) = strata_testkit::join_request_loops(loads);
    let after = instances_and_epoch(&server);
    // The new agent is no child of this test: stopped by signal (it stops its instances,
    // being the only node), waited for by its /proc entry.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(new_pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let gone = || {
        std::fs::read_to_string(format!("/proc/{new_pid}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !gone() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(new_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(failures.is_empty(), "{failures:?}\n{log}");
    assert!(ok > 20, "{ok}");
    assert_eq!(after, before);
}
