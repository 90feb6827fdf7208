//! A highly available control plane: several `strata server`s on a real etcd cluster (members
//! started by the test on loopback ports it picked). The leader is killed or frozen while
//! deploys and scale changes go on; etcd members die; a one-machine install moves onto etcd.

mod common;

use common::serial;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_core::api::ServiceStatus;
use strata_store::testing::{etcd_unavailable, EtcdServer};
use strata_testkit::{AgentProcess, ServerProcess};

const HOST: &str = "hello.dev.localhost";

fn server(dir: &Path, store: &str) -> ServerProcess {
    ServerProcess::start(&common::strata_bin(), dir, Some(store))
}

/// `count` servers on a new etcd cluster of `members` members (under the key prefix
/// `prefix`), each in its own directory of `root`. The etcd cluster must outlive them.
fn servers_on_etcd(
    root: &Path,
    members: usize,
    prefix: &str,
    count: usize,
) -> (EtcdServer, Vec<ServerProcess>) {
    let etcd = EtcdServer::cluster(members);
    let store = etcd.url(prefix);
    let servers = (0..count)
        .map(|i| server(&root.join(format!("s{i}")), &store))
        .collect();
    (etcd, servers)
}

/// Once `servers` elected a leader: their addresses (comma-separated) and an agent joined to
/// them all, in `root/agent`.
fn joined(root: &Path, servers: &[ServerProcess]) -> (String, AgentProcess) {
    let addrs = servers
        .iter()
        .map(|s| s.api.clone())
        .collect::<Vec<_>>()
        .join(",");
    wait_until(Duration::from_secs(20), "a leader is elected", || {
        leader_id(&servers[0].api, &servers[0]).is_some()
    });
    let agent = agent(&root.join("agent"), &addrs, &servers[0].token());
    (addrs, agent)
}

/// Runs `command`, which must succeed (`what` names it otherwise); its output.
#[track_caller]
fn run_ok(what: &str, command: &mut Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what}: {}",
        common::stderr(&output)
    );
    output
}

fn agent(dir: &Path, join: &str, token: &str) -> AgentProcess {
    AgentProcess::start(&common::strata_bin(), dir, join, token)
}

fn cli(addr: &str, args: &[&str]) -> std::process::Output {
    Command::new(common::strata_bin())
        .args(args)
        .env("STRATA_ADDR", addr)
        .output()
        .unwrap()
}

/// `curl -fsS` of an API path, with the admin token and CA of `with` (any server of the
/// cluster: they share the store, so the token and the CA).
fn curl_api(addr: &str, path: &str, with: &ServerProcess) -> Vec<u8> {
    Command::new("curl")
        .args([
            "-fsS",
            "-H",
            &format!("Authorization: Bearer {}", with.admin_token()),
        ])
        .arg("--cacert")
        .arg(with.dir.join("ca.pem"))
        .arg(format!("{addr}{path}"))
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default()
}

fn leader_id(addr: &str, with: &ServerProcess) -> Option<String> {
    let value: serde_json::Value =
        serde_json::from_slice(&curl_api(addr, "/v1/leader", with)).ok()?;
    value["server_id"].as_str().map(str::to_string)
}

fn wait_until(limit: Duration, what: &str, check: impl FnMut() -> bool) {
    wait_or_explain(limit, what, check, String::new);
}

/// Like `wait_until`, with `explain()` (logs) in the failure message.
fn wait_or_explain(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
    explain: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?}: {what}\n{}", explain());
}

fn logs_of(servers: &[ServerProcess], agent: Option<&AgentProcess>) -> String {
    let mut text = String::new();
    for server in servers {
        text.push_str(&format!(
            "--- server {} ---\n{}\n",
            server.id(),
            server.log()
        ));
    }
    if let Some(agent) = agent {
        let log = std::fs::read_to_string(agent.dir.join("agent.log")).unwrap_or_default();
        text.push_str(&format!("--- agent ---\n{log}\n"));
    }
    text
}

/// [`serial`]'s guard, or `None` where etcd is unavailable (the test says why and skips).
fn serial_with_etcd() -> Option<std::sync::MutexGuard<'static, ()>> {
    let serial = serial();
    if let Some(why) = etcd_unavailable() {
        eprintln!("SKIPPED: HA tests need etcd: {why}");
        return None;
    }
    Some(serial)
}

fn hello_spec(dir: &Path, replicas: u32, greeting: &str) -> PathBuf {
    common::hello_spec(dir, replicas, greeting)
}

/// Deploys through every server, by name, for tests that kill some of them.
fn deploy(addrs: &str, spec: &Path) -> std::process::Output {
    cli(addrs, &["deploy", spec.to_str().unwrap(), "--detach"])
}

#[test]
fn killing_the_leader_loses_no_acknowledged_write() {
    let Some(_serial) = serial_with_etcd() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (_etcd, mut servers) = servers_on_etcd(root.path(), 3, "/strata-ha", 3);
    let (addrs, agent) = joined(root.path(), &servers);

    // Deploys and scale changes go on while the leader is killed.
    let mut acknowledged: Vec<(u32, String)> = Vec::new();
    let mut killed = None;
    for round in 0..8u32 {
        if round == 3 {
            let leader = leader_id(&servers[0].api, &servers[0]).unwrap();
            let index = servers.iter().position(|s| s.id() == leader).unwrap();
            servers[index].kill9();
            killed = Some(index);
        }
        let replicas = 1 + round % 3;
        let greeting = format!("round {round}");
        let spec = hello_spec(root.path(), replicas, &greeting);
        let output = deploy(&addrs, &spec);
        if output.status.success() {
            acknowledged.push((replicas, greeting));
        } else {
            eprintln!(
                "deploy of round {round} not acknowledged: {}",
                common::stderr(&output)
            );
        }
    }
    let killed = killed.unwrap();
    let survivor = servers.iter().find(|s| s.is_running()).unwrap().api.clone();
    wait_or_explain(
        Duration::from_secs(30),
        "a new leader",
        || {
            leader_id(&survivor, &servers[(killed + 1) % 3])
                .is_some_and(|id| id != servers[killed].id())
        },
        || logs_of(&servers, Some(&agent)),
    );
    assert!(
        acknowledged.len() >= 6,
        "most deploys must be acknowledged: {acknowledged:?}"
    );

    // Every acknowledged change is there: the last one is the desired state, and each made
    // a release whose config is in the store.
    let (replicas, greeting) = acknowledged.last().unwrap().clone();
    let status: Vec<ServiceStatus> =
        serde_json::from_slice(&cli(&addrs, &["status", "hello", "--json"]).stdout).unwrap();
    assert_eq!(status[0].service.replicas, replicas);
    let releases = String::from_utf8_lossy(&curl_api(
        &survivor,
        "/v1/envs/dev/services/hello/releases",
        &servers[(killed + 1) % 3],
    ))
    .into_owned();
    let releases: Vec<strata_core::Release> = serde_json::from_str(&releases).unwrap();
    assert!(
        releases.len() >= acknowledged.len(),
        "{} releases for {} acknowledged deploys",
        releases.len(),
        acknowledged.len()
    );

    // The new leader converges the service to the last acknowledged state, and it serves.
    let client = curl::get_via(&agent.ingress);
    wait_or_explain(
        Duration::from_secs(90),
        "the last acknowledged deploy serves",
        || client("http://hello.dev.localhost/").is_some_and(|body| body.starts_with(&greeting)),
        || logs_of(&servers, Some(&agent)),
    );
}

/// Minimal blocking GET through an ingress (Host header set), for tests.
mod curl {
    pub fn get_via(ingress: &str) -> impl Fn(&str) -> Option<String> + '_ {
        move |url: &str| {
            let host = url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            let output = std::process::Command::new("curl")
                .args([
                    "-fsS",
                    "--max-time",
                    "5",
                    "-H",
                    &format!("Host: {host}"),
                    &format!("http://{ingress}/"),
                ])
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        }
    }
}

#[test]
fn a_frozen_leader_is_fenced_and_acts_no_more() {
    let Some(_serial) = serial_with_etcd() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (_etcd, servers) = servers_on_etcd(root.path(), 1, "/strata-fence", 2);
    wait_until(Duration::from_secs(20), "a leader is elected", || {
        leader_id(&servers[0].api, &servers[0]).is_some()
    });
    let old = leader_id(&servers[0].api, &servers[0]).unwrap();
    let old_index = servers.iter().position(|s| s.id() == old).unwrap();
    let other = &servers[1 - old_index];
    servers[old_index].freeze(true);
    wait_until(
        Duration::from_secs(20),
        "the other server takes over",
        || leader_id(&other.api, other).is_some_and(|id| id != old),
    );
    let taken_over = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Give the old leader work to do when it wakes: a deploy it would reconcile.
    let spec = hello_spec(root.path(), 1, "fenced");
    let output = cli(&other.api, &["deploy", spec.to_str().unwrap(), "--detach"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    servers[old_index].freeze(false);
    std::thread::sleep(Duration::from_secs(3));
    let events: strata_core::api::EventList =
        serde_json::from_slice(&curl_api(&other.api, "/v1/events?limit=1000", other)).unwrap();
    let late: Vec<_> = events
        .events
        .iter()
        .filter(|e| e.actor == strata_core::Actor::controller(old.as_str()) && e.at > taken_over)
        .collect();
    assert!(
        late.is_empty(),
        "the deposed leader acted after losing its lease: {late:#?}\n{}",
        servers[old_index].log()
    );
    assert!(
        events
            .events
            .iter()
            .any(|e| e.actor == strata_core::Actor::controller(other.id())
                && e.kind == strata_core::EventKind::PlacementFailed
                && e.service.as_deref() == Some("hello")),
        "the new leader reconciles the deploy (no node joined, so placement fails, as an event)"
    );
}

#[test]
fn the_fleet_goes_on_when_an_etcd_member_dies() {
    let Some(_serial) = serial_with_etcd() else {
        return;
    };
    let mut etcd = EtcdServer::cluster(3);
    let store = etcd.url("/strata-member");
    let root = tempfile::tempdir().unwrap();
    let server = server(&root.path().join("s0"), &store);
    wait_until(Duration::from_secs(20), "a leader is elected", || {
        leader_id(&server.api, &server).is_some()
    });
    etcd.kill(0);
    let spec = hello_spec(root.path(), 1, "one member down");
    let output = cli(&server.api, &["deploy", spec.to_str().unwrap(), "--detach"]);
    assert!(
        output.status.success(),
        "deploy with one etcd member down: {}\n{}",
        common::stderr(&output),
        server.log()
    );
    let status: Vec<ServiceStatus> =
        serde_json::from_slice(&cli(&server.api, &["status", "hello", "--json"]).stdout).unwrap();
    assert_eq!(status[0].service.desired_release, 1);
}

#[test]
fn a_one_machine_install_moves_onto_etcd() {
    let Some(_serial) = serial_with_etcd() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dev_dir = root.path().join("dev");
    {
        let dev = common::Dev::start(&dev_dir);
        let spec = hello_spec(root.path(), 1, "moved");
        dev.deploy(&spec, &[]);
    } // strata dev stops (SIGTERM) here.
    let backup = root.path().join("backup.jsonl");
    run_ok(
        "export",
        Command::new(common::strata_bin())
            .args(["store", "export", "--include-secrets", "--data-dir"])
            .arg(&dev_dir)
            .env("STRATA_BACKUP_PASSPHRASE", "moving day passphrase")
            .arg("--output")
            .arg(&backup),
    );

    let etcd = EtcdServer::cluster(1);
    let store = etcd.url("/strata-moved");
    let server_dir = root.path().join("server");
    let output = run_ok(
        "import",
        Command::new(common::strata_bin())
            .args(["store", "import"])
            .arg(&backup)
            .args(["--store", &store, "--data-dir"])
            .arg(&server_dir)
            .env("STRATA_BACKUP_PASSPHRASE", "moving day passphrase"),
    );
    let err = common::stderr(&output);
    assert!(err.contains("1 artifacts"), "{err}");

    let server = server(&server_dir, &store);
    let agent = agent(&root.path().join("agent"), &server.api, &server.token());
    let get = curl::get_via(&agent.ingress);
    wait_until(
        Duration::from_secs(30),
        "the imported service serves",
        || {
            get("http://hello.dev.localhost/")
                .is_some_and(|body| body.starts_with("moved from hello-1-"))
        },
    );
}

/// An etcd URL without a namespace would put the cluster's keys at the root of etcd's
/// keyspace (a forgotten namespace quietly makes a second, empty cluster): the server and the
/// store commands refuse it as bad input, with the URL to use. No etcd is reached.
#[test]
fn an_etcd_url_without_a_namespace_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["server", "--store", "etcd://127.0.0.1:1"],
        vec!["server", "--store", "etcd://127.0.0.1:1/"],
        vec![
            "store",
            "export",
            "--store",
            "etcd://127.0.0.1:1,127.0.0.1:2",
        ],
    ] {
        let output = Command::new(common::strata_bin())
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = common::stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("names no namespace") && stderr.contains("/strata"),
            "{args:?}: {stderr}"
        );
    }
}

/// A backup of a live cluster, taken through a server while deploys go on, restores into a
/// fresh etcd namespace, and everything serves again: each service, the CA and the tokens
/// (the old admin token and CA file work on the restored server). A damaged copy of the file
/// is refused and writes nothing.
#[test]
fn a_live_cluster_backed_up_under_deploys_restores_and_serves() {
    use std::os::unix::fs::PermissionsExt;
    let Some(_serial) = serial_with_etcd() else {
        return;
    };
    const PASSPHRASE: &str = "a passphrase for the test";
    let root = tempfile::tempdir().unwrap();
    let (etcd, servers) = servers_on_etcd(root.path(), 1, "/strata-live", 2);
    let addrs = format!("{},{}", servers[0].api, servers[1].api);
    wait_until(Duration::from_secs(20), "a leader is elected", || {
        leader_id(&servers[0].api, &servers[0]).is_some()
    });
    let old_agent = agent(&root.path().join("agent"), &addrs, &servers[0].token());
    let services = ["alpha", "beta", "gamma"];
    let spec = |name: &str, greeting: &str| {
        common::write_file(
            root.path(),
            &format!("{name}-{}.toml", greeting.len()),
            common::service_toml(
                name,
                &common::hello_bin(),
                greeting,
                &format!("[service.{name}.scale]\nreplicas = 1"),
            ),
        )
    };
    for name in services {
        let output = cli(
            &servers[0].api,
            &[
                "deploy",
                spec(name, &format!("{name} says")).to_str().unwrap(),
            ],
        );
        assert!(
            output.status.success(),
            "{}\n{}",
            common::stderr(&output),
            logs_of(&servers, Some(&old_agent))
        );
    }

    // Deploys go on (through the first server) while the second takes the backup.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let backup = root.path().join("backups/live.jsonl");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let export = std::thread::scope(|scope| {
        let deploys = scope.spawn(|| {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && rounds < 50 {
                rounds += 1;
                let greeting = format!("alpha round {rounds:02}");
                let _ = deploy(&servers[0].api, &spec("alpha", &greeting));
            }
            rounds
        });
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let export = Command::new(common::strata_bin())
            .args(["store", "export", "--include-secrets", "--output"])
            .arg(&backup)
            .env("STRATA_ADDR", &servers[1].api)
            .env("STRATA_BACKUP_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap();
        eprintln!("export took {:?}", started.elapsed());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rounds = deploys.join().unwrap();
        assert!(rounds >= 1, "deploys went on during the export");
        export
    });
    assert!(
        export.status.success(),
        "{}\n{}",
        common::stderr(&export),
        logs_of(&servers, None)
    );
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&backup).unwrap();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("/instances/"));
    let verified = Command::new(common::strata_bin())
        .args(["store", "verify"])
        .arg(&backup)
        .env("STRATA_BACKUP_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout).into_owned();
    assert!(
        verified.status.success(),
        "{said}{}",
        common::stderr(&verified)
    );
    assert!(said.contains("the passphrase opens every one"), "{said}");
    let (old_admin, old_ca) = (servers[0].admin_token(), servers[0].dir.join("ca.pem"));
    drop(old_agent);
    drop(servers);

    // A damaged copy is refused (bad input) before anything is written.
    let restored = etcd.url("/strata-restored");
    let server_dir = root.path().join("restored/server");
    let damaged = root.path().join("damaged.jsonl");
    std::fs::write(&damaged, text.replacen("alpha says", "alpha lies", 1)).unwrap();
    let import = |file: &Path| {
        Command::new(common::strata_bin())
            .args(["store", "import"])
            .arg(file)
            .args(["--store", &restored, "--data-dir"])
            .arg(&server_dir)
            .env("STRATA_BACKUP_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap()
    };
    let refused = import(&damaged);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        common::stderr(&refused)
    );
    assert!(
        common::stderr(&refused).contains("altered"),
        "{}",
        common::stderr(&refused)
    );

    // The good one restores into the fresh namespace (the data directory is made), with no
    // --force: the refused import wrote nothing.
    let started = Instant::now();
    let imported = import(&backup);
    assert!(imported.status.success(), "{}", common::stderr(&imported));
    eprintln!("import took {:?}", started.elapsed());
    let server = server(&server_dir, &restored);
    let new_agent = agent(
        &root.path().join("restored/agent"),
        &server.api,
        &server.token(),
    );
    let get = curl::get_via(&new_agent.ingress);
    for name in services {
        wait_or_explain(
            Duration::from_secs(60),
            &format!("{name} serves on the restored cluster"),
            || {
                get(&format!("http://{name}.dev.localhost/"))
                    .is_some_and(|body| body.starts_with(&format!("{name} ")))
            },
            || logs_of(std::slice::from_ref(&server), Some(&new_agent)),
        );
    }
    // The CA and the tokens came back: the old admin token, checked against the old CA file.
    let whoami = Command::new("curl")
        .args(["-fsS", "-H", &format!("Authorization: Bearer {old_admin}")])
        .arg("--cacert")
        .arg(&old_ca)
        .arg(format!("{}/v1/whoami", server.api))
        .output()
        .unwrap();
    assert!(
        whoami.status.success() && String::from_utf8_lossy(&whoami.stdout).contains("admin"),
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
}

/// Servers upgraded one at a time (SIGTERM, started again on the same data directory and
/// address) while requests flow and deploys go on: not one request fails, every deploy is
/// acknowledged, and a leader that stops gives the lead up at once (it resigns rather than
/// letting its lease run out).
#[test]
fn servers_roll_one_at_a_time_with_no_failed_request() {
    let Some(_serial) = serial_with_etcd() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::cluster(1);
    let store = etcd.url("/strata-roll");
    let ports: Vec<u16> = (0..3).map(|_| strata_testkit::free_port()).collect();
    let start = |i: usize| {
        let addr = format!("127.0.0.1:{}", ports[i]);
        ServerProcess::start_with(
            &common::strata_bin(),
            &root.path().join(format!("s{i}")),
            Some(&store),
            &["--api-addr", &addr],
        )
    };
    let mut servers: Vec<ServerProcess> = (0..3).map(start).collect();
    let (addrs, agent) = joined(root.path(), &servers);
    let output = cli(
        &addrs,
        &[
            "deploy",
            hello_spec(root.path(), 2, "before the roll")
                .to_str()
                .unwrap(),
            "--timeout",
            "60s",
        ],
    );
    assert!(output.status.success(), "{}", common::stderr(&output));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = (0..2)
        .map(|_| strata_testkit::request_loop(HOST, agent.ingress.clone(), stop.clone()))
        .collect();
    let mut resigned = 0;
    for i in 0..3 {
        let leader = leader_id(&servers[(i + 1) % 3].api, &servers[(i + 1) % 3]);
        let was_leader = leader.as_deref() == Some(servers[i].id().as_str());
        let exit = servers[i].terminate(Duration::from_secs(10));
        assert!(
            exit.is_some_and(|s| s.success()),
            "server {i} stops: {exit:?}"
        );
        if was_leader {
            assert!(
                servers[i].log().contains("gave up the lead"),
                "{}",
                servers[i].log()
            );
            resigned += 1;
        }
        servers[i] = start(i);
        let greeting = format!("rolled {i}");
        let output = deploy(&addrs, &hello_spec(root.path(), 2, &greeting));
        assert!(
            output.status.success(),
            "a deploy while server {i} restarts: {}",
            common::stderr(&output)
        );
    }
    let get = curl::get_via(&agent.ingress);
    wait_or_explain(
        Duration::from_secs(60),
        "the last deploy serves",
        || get("http://hello.dev.localhost/").is_some_and(|body| body.starts_with("rolled 2")),
        || logs_of(&servers, Some(&agent)),
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (failures, ok) = strata_testkit::join_request_loops(loads);
    assert!(
        failures.is_empty(),
        "{} requests failed during the roll: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "{ok}");
    assert!(resigned >= 1, "a leader was stopped, and resigned");
}

/// A canary goes on where it was when the leader is killed mid-step: the rollout is in the
/// store, and the new leader's controller takes it from its step to the end.
#[test]
fn a_canary_survives_the_leaders_death_and_goes_on_at_its_step() {
    let Some(_serial) = serial_with_etcd() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (_etcd, mut servers) = servers_on_etcd(root.path(), 1, "/strata-canary", 3);
    let (addrs, agent) = joined(root.path(), &servers);
    let spec = |greeting: &str| {
        let toml = common::service_toml(
            "hello",
            &common::hello_bin(),
            greeting,
            "[service.hello.scale]\nreplicas = 2\n[service.hello.rollout]\nstrategy = \"canary\"\nsteps = [\"50%\", \"100%\"]\nstep_interval = \"4s\"\nmin_requests = 10",
        );
        common::write_file(
            root.path(),
            &format!("canary-{}.toml", greeting.len()),
            toml,
        )
    };
    run_ok(
        "deploy v1",
        Command::new(common::strata_bin())
            .args(["deploy", spec("One").to_str().unwrap()])
            .env("STRATA_ADDR", &addrs),
    );
    // Traffic, through the node's ingress, for the analysis to judge.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, ingress) = (stop.clone(), agent.ingress.clone());
        std::thread::spawn(move || {
            let client = curl::get_via(&ingress);
            let mut answered = 0u32;
            for _ in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                answered += u32::from(client("http://hello.dev.localhost/").is_some());
                std::thread::sleep(Duration::from_millis(10));
            }
            answered
        })
    };
    let deployed = deploy(&addrs, &spec("Two"));
    assert!(deployed.status.success(), "{}", common::stderr(&deployed));
    // Asked of any server still running (they share the store, the token and the CA).
    let rollout = |servers: &[ServerProcess]| -> Option<strata_core::Rollout> {
        let with = servers.iter().find(|s| s.is_running())?;
        let status: strata_core::api::RolloutStatus = serde_json::from_slice(&curl_api(
            &with.api,
            "/v1/envs/dev/services/hello/rollout",
            with,
        ))
        .ok()?;
        status.rollout
    };
    wait_or_explain(
        Duration::from_secs(30),
        "release 2 takes 50% of the traffic",
        || rollout(&servers).is_some_and(|r| r.weight == 50),
        || logs_of(&servers, Some(&agent)),
    );
    let before = rollout(&servers).unwrap();
    let leader = leader_id(&servers[0].api, &servers[0]).unwrap();
    let index = servers.iter().position(|s| s.id() == leader).unwrap();
    servers[index].kill9();
    let other = (index + 1) % 3;
    wait_or_explain(
        Duration::from_secs(30),
        "a new leader",
        || leader_id(&servers[other].api, &servers[other]).is_some_and(|id| id != leader),
        || logs_of(&servers, Some(&agent)),
    );
    // The new leader goes on from the step the old one reached, never from the start.
    let after = rollout(&servers).unwrap();
    assert_eq!(after.started_at, before.started_at, "the same rollout");
    assert!(
        after.step >= before.step && after.weight >= 50,
        "{before:?} then {after:?}"
    );
    wait_or_explain(
        Duration::from_secs(60),
        "the canary passes its steps under the new leader",
        || rollout(&servers).is_some_and(|r| r.phase == strata_core::RolloutPhase::Succeeded),
        || {
            format!(
                "{:?}\n{}",
                rollout(&servers),
                logs_of(&servers, Some(&agent))
            )
        },
    );
    let events = String::from_utf8_lossy(&cli(&addrs, &["events", "hello"]).stdout).into_owned();
    assert_eq!(events.matches("rollout.started").count(), 1, "{events}");
    let client = curl::get_via(&agent.ingress);
    wait_or_explain(
        Duration::from_secs(30),
        "release 2 serves alone",
        || client("http://hello.dev.localhost/").is_some_and(|body| body.starts_with("Two")),
        || logs_of(&servers, Some(&agent)),
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(load.join().unwrap() > 50, "the load was answered");
}
