//! A real cluster: `strata server` and `strata agent`s, each agent in its own network
//! namespace. Nodes are killed (`kill -9` of everything they run), frozen (SIGSTOP), cut off
//! (link down) and drained while a bounded request loop runs through a surviving node's
//! ingress: no request may fail, the service gets its replacement, and the returning node's
//! stale instance is fenced.
//!
//! These tests need root and network namespaces; without them they say why and skip.

mod common;

use common::cluster::{deploy, node_state, wait_until};

use common::serial;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata_core::api::ServiceStatus;
use strata_core::DesiredState;
use strata_testkit::{request_loop, Cluster, Options};

const HOST: &str = "hello.dev.localhost";

fn cluster(nodes: usize) -> Option<Cluster> {
    cluster_with(nodes, &[])
}

fn cluster_with(nodes: usize, server_args: &[&str]) -> Option<Cluster> {
    if let Some(why) = strata_testkit::unavailable() {
        eprintln!("SKIPPED: cluster tests {why}");
        return None;
    }
    let labels = (0..nodes).map(|i| format!("zone=z{i}")).collect();
    Some(Cluster::start(Options {
        strata: common::strata_bin(),
        node_labels: labels,
        server_args: server_args.iter().map(|s| s.to_string()).collect(),
    }))
}

fn deploy_hello(cluster: &Cluster, replicas: u32) {
    deploy(
        cluster,
        &common::hello_spec(cluster.root.path(), replicas, "Clustered"),
    );
}

fn status(cluster: &Cluster) -> ServiceStatus {
    let output = cluster.cli(&["status", "hello", "--json"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let mut list: Vec<ServiceStatus> = serde_json::from_slice(&output.stdout).unwrap();
    list.remove(0)
}

/// Nodes running a wanted, healthy instance of hello.
fn serving_nodes(cluster: &Cluster) -> Vec<String> {
    let mut nodes: Vec<String> = status(cluster)
        .instances
        .iter()
        .filter(|v| v.is_routable())
        .map(|v| v.instance.node.to_string())
        .collect();
    nodes.sort();
    nodes
}

fn node_index(cluster: &Cluster, name: &str) -> usize {
    cluster.nodes.iter().position(|n| n.name == name).unwrap()
}

/// How a node fails in a scenario.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Kill9,
    Freeze,
    CutLink,
}

fn failover(failure: Failure) {
    let _serial = serial();
    let Some(mut cluster) = cluster(3) else {
        return;
    };
    deploy_hello(&cluster, 2);
    let serving = serving_nodes(&cluster);
    assert_eq!(serving.len(), 2, "two replicas on two nodes: {serving:?}");
    assert_ne!(serving[0], serving[1], "replicas spread over nodes");
    let victim = node_index(&cluster, &serving[0]);
    let survivor = node_index(&cluster, &serving[1]);
    let spare = (0..3).find(|i| *i != victim && *i != survivor).unwrap();
    let victim_pids = cluster.nodes[victim].pids();

    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(HOST, cluster.nodes[survivor].ingress(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    match failure {
        Failure::Kill9 => cluster.kill_node(victim),
        Failure::Freeze => cluster.freeze_agent(victim, true),
        Failure::CutLink => cluster.cut_link(victim, true),
    }
    let spare_name = cluster.nodes[spare].name.clone();
    wait_until(
        &cluster,
        Duration::from_secs(20),
        "a replacement serves on the spare node",
        || serving_nodes(&cluster).contains(&spare_name),
    );
    std::thread::sleep(Duration::from_millis(500));

    // The node comes back: its stale instance is fenced, never left beside its replacement.
    match failure {
        Failure::Kill9 => cluster.start_agent(victim),
        Failure::Freeze => cluster.freeze_agent(victim, false),
        Failure::CutLink => cluster.cut_link(victim, false),
    }
    wait_until(
        &cluster,
        Duration::from_secs(20),
        "the returning node's old instance is stopped",
        || {
            let pids = cluster.nodes[victim].pids();
            let agent = cluster.nodes[victim].agent_pid();
            pids.iter()
                .all(|pid| Some(*pid) == agent || !victim_pids.contains(pid))
                && pids.iter().filter(|pid| Some(**pid) != agent).count() == 0
        },
    );
    if !matches!(failure, Failure::Kill9) {
        // The node that kept running learns it was declared down from the server's answer to
        // its first beat back ("register again"), not from its HTTP beat 30 s away.
        let victim_name = cluster.nodes[victim].name.clone();
        wait_until(
            &cluster,
            Duration::from_secs(10),
            "the returning node registers again",
            || node_state(&cluster, &victim_name) == "ready",
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (failures, ok) = load.join().unwrap();
    assert!(
        failures.is_empty(),
        "{failure:?}: {} failed requests: {failures:?}\n{}",
        failures.len(),
        cluster.logs()
    );
    assert!(ok > 50, "the request loop barely ran ({ok})");

    // Settled: exactly two wanted instances, both serving, none on a node twice.
    let status = status(&cluster);
    let wanted: Vec<_> = status
        .instances
        .iter()
        .filter(|v| v.instance.desired == DesiredState::Running)
        .collect();
    assert_eq!(wanted.len(), 2, "{:#?}", status.instances);
    let events =
        String::from_utf8_lossy(&cluster.cli(&["events", "--limit", "200"]).stdout).into_owned();
    assert!(events.contains("-> down"), "{events}");

    // The nodes beat by datagram (and none of theirs was refused as forged or unknown).
    let metrics = server_metrics(&cluster);
    let count = |outcome: &str| -> u64 {
        let line = format!("strata_heartbeat_datagrams_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line}in\n{metrics}"))
    };
    assert!(count("taken") > 50, "{metrics}");
    assert_eq!(count("refused"), 0, "{metrics}");
}

/// The server's `/metrics`, as its admin reads it.
fn server_metrics(cluster: &Cluster) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let response = cluster
            .api_client()
            .get(format!("{}/metrics", cluster.api))
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    })
}

#[test]
fn kill_9_of_a_node_fails_over_with_no_failed_request() {
    failover(Failure::Kill9);
}

#[test]
fn a_frozen_agent_is_detected_and_fenced_when_it_thaws() {
    failover(Failure::Freeze);
}

#[test]
fn a_cut_link_is_detected_and_fenced_when_it_heals() {
    failover(Failure::CutLink);
}

/// A node that dies takes its log files with it, but not what its instances said last: its
/// agent shipped their output to the control plane, and `strata logs --previous` shows it
/// after the instance was replaced elsewhere.
#[test]
fn a_dead_nodes_last_log_lines_stay_readable() {
    let _serial = serial();
    let Some(mut cluster) = cluster(2) else {
        return;
    };
    deploy_hello(&cluster, 1);
    let first = status(&cluster).instances[0].clone();
    let victim = node_index(&cluster, &first.instance.node);
    let other = cluster.nodes[1 - victim].name.clone();
    // Its first lines are shipped within a shipment period (2 s).
    std::thread::sleep(Duration::from_secs(3));
    cluster.kill_node(victim);
    wait_until(
        &cluster,
        Duration::from_secs(20),
        "a replacement serves on the other node",
        || serving_nodes(&cluster) == [other.clone()],
    );
    wait_until(
        &cluster,
        Duration::from_secs(10),
        "the dead node's instance is forgotten",
        || {
            status(&cluster)
                .instances
                .iter()
                .all(|v| v.instance.id != first.instance.id)
        },
    );
    let output = cluster.cli(&["logs", "hello", "--previous"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let logs = common::stdout(&output);
    let id = &first.instance.id;
    assert!(
        logs.contains(&format!(
            "[{id}] (gone: release 1 on node {}",
            first.instance.node
        )),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("[{id}] hello: listening on")),
        "{logs}"
    );
    // Without --previous, only the instances there are.
    let output = cluster.cli(&["logs", "hello"]);
    assert!(!common::stdout(&output).contains(&format!("[{id}]")));
}

#[test]
fn drain_moves_instances_with_no_failed_request() {
    let _serial = serial();
    let Some(cluster) = cluster(3) else { return };
    deploy_hello(&cluster, 2);
    let serving = serving_nodes(&cluster);
    let victim = node_index(&cluster, &serving[0]);
    let survivor = node_index(&cluster, &serving[1]);
    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(HOST, cluster.nodes[survivor].ingress(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let victim_name = cluster.nodes[victim].name.clone();
    let output = cluster.cli(&["node", "drain", &victim_name, "--timeout", "60s"]);
    assert!(
        output.status.success(),
        "drain failed: {}\n{}",
        common::stderr(&output),
        cluster.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (failures, ok) = load.join().unwrap();
    assert!(
        failures.is_empty(),
        "failed requests during drain: {failures:?}"
    );
    assert!(ok > 20);
    let serving = serving_nodes(&cluster);
    assert_eq!(serving.len(), 2);
    assert!(!serving.contains(&victim_name), "{serving:?}");

    let nodes = String::from_utf8_lossy(&cluster.cli(&["node", "ls"]).stdout).into_owned();
    assert!(nodes.contains("draining"), "{nodes}");
    assert!(cluster
        .cli(&["node", "undrain", &victim_name])
        .status
        .success());
    let nodes = String::from_utf8_lossy(&cluster.cli(&["node", "ls"]).stdout).into_owned();
    assert!(!nodes.contains("draining"), "{nodes}");
}

/// SIGTERM on an agent is a graceful leave: the control plane moves the node's instances
/// (here the service's only one) elsewhere, the replacement serving before the original
/// stops, so not one request fails; then the agent exits. Started again, the node takes
/// work again.
#[test]
fn sigterm_moves_a_nodes_instances_before_its_agent_stops() {
    let _serial = serial();
    let Some(mut cluster) = cluster(2) else {
        return;
    };
    deploy_hello(&cluster, 1);
    let serving = serving_nodes(&cluster);
    let victim = node_index(&cluster, &serving[0]);
    let survivor = 1 - victim;
    let stop = Arc::new(AtomicBool::new(false));
    let load = request_loop(HOST, cluster.nodes[survivor].ingress(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let exit = cluster.terminate_agent(victim, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (failures, ok) = load.join().unwrap();
    assert!(
        exit.is_some_and(|status| status.success()),
        "the agent exits by itself once its instances moved: {exit:?}\n{}",
        cluster.logs()
    );
    assert!(
        failures.is_empty(),
        "failed requests while the node left: {failures:?}\n{}",
        cluster.logs()
    );
    assert!(ok > 20);
    let survivor_name = cluster.nodes[survivor].name.clone();
    assert_eq!(serving_nodes(&cluster), [survivor_name]);
    let events = common::stdout(&cluster.cli(&["events"]));
    assert!(events.contains("node.leaving"), "{events}");
    let log = std::fs::read_to_string(cluster.nodes[victim].log_path()).unwrap();
    assert!(log.contains("every instance moved to other nodes"), "{log}");

    // Back, it takes work again.
    cluster.start_agent(victim);
    let name = cluster.nodes[victim].name.clone();
    wait_until(
        &cluster,
        Duration::from_secs(10),
        "the node takes work again",
        || {
            let listed = cluster.cli(&["node", "ls", "--json"]);
            let nodes: Vec<serde_json::Value> =
                serde_json::from_slice(&listed.stdout).unwrap_or_default();
            nodes
                .iter()
                .any(|n| n["name"] == name.as_str() && n["effective_state"] == "ready")
        },
    );
}

/// A `strata server` on loopback (no namespaces needed): its API URL and join token.
fn loopback_server(dir: &std::path::Path) -> (std::process::Child, String, String) {
    loopback_server_with(dir, &[])
}

/// [`loopback_server`] with more flags.
fn loopback_server_with(
    dir: &std::path::Path,
    flags: &[&std::ffi::OsStr],
) -> (std::process::Child, String, String) {
    let mut server = std::process::Command::new(common::strata_bin())
        .args(["server", "--data-dir"])
        .arg(dir)
        .args(["--api-addr", "127.0.0.1:0"])
        .args(flags)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let api = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("api: ")
        .unwrap()
        .to_string();
    let token_line = lines.next().unwrap().unwrap();
    let token = token_line.strip_prefix("join token: ").unwrap().to_string();
    (server, api, token)
}

/// `strata agent --join api` with `token` from a file; its output.
fn join(api: &str, token: &str, dir: &std::path::Path) -> std::process::Output {
    std::fs::create_dir_all(dir).unwrap();
    let token_file = dir.join("join-token");
    std::fs::write(&token_file, token).unwrap();
    std::process::Command::new(common::strata_bin())
        .args(["agent", "--join", api, "--name", "intruder", "--token-file"])
        .arg(&token_file)
        .args(common::AGENT_ON_LOOPBACK)
        .arg("--data-dir")
        .arg(dir.join("agent"))
        .output()
        .unwrap()
}

/// The API is HTTPS and the join token carries its CA's fingerprint: an agent refuses a
/// server of another cluster before it sends anything, a token without the fingerprint
/// cannot verify the server, and a wrong secret is refused by the server.
#[test]
fn an_agent_checks_the_server_and_a_wrong_token_is_refused() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api, token) = loopback_server(&dir.path().join("server"));
    let (mut other, other_api, _) = loopback_server(&dir.path().join("other"));
    assert!(api.starts_with("https://"), "{api}");
    assert!(token.starts_with("sj1."), "{token}");
    let shown = std::process::Command::new(common::strata_bin())
        .args(["server", "token", "--data-dir"])
        .arg(dir.path().join("server"))
        .output()
        .unwrap();
    assert_eq!(common::stdout(&shown).trim(), token);
    let joint = strata_core::auth::JoinToken::parse(&token);

    // The right fingerprint, a wrong secret: the server refuses.
    let wrong_secret = strata_core::auth::JoinToken {
        secret: "not-the-secret".into(),
        ..joint.clone()
    };
    let agent = join(&api, &wrong_secret.to_string(), &dir.path().join("a1"));
    assert_eq!(agent.status.code(), Some(1), "{}", common::stderr(&agent));
    let err = common::stderr(&agent);
    assert!(err.contains("join token is not this cluster's"), "{err}");
    assert!(err.contains("strata server token"), "{err}");

    // This cluster's token, another cluster's server: refused by the agent itself.
    let agent = join(&other_api, &token, &dir.path().join("a2"));
    assert_eq!(agent.status.code(), Some(1), "{}", common::stderr(&agent));
    let err = common::stderr(&agent);
    assert!(
        err.contains("not the cluster this join token is for"),
        "{err}"
    );
    assert!(!dir.path().join("a2/agent/ca.pem").exists());

    // A bare secret cannot verify an HTTPS server.
    let agent = join(&api, &joint.secret, &dir.path().join("a3"));
    assert_eq!(agent.status.code(), Some(2), "{}", common::stderr(&agent));
    assert!(common::stderr(&agent).contains("no CA fingerprint"));

    // Nothing listens at --join: the agent says at once what it tries and why it fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let said = join_for(
        &format!("https://127.0.0.1:{closed}"),
        &token,
        &dir.path().join("a4"),
        Duration::from_secs(3),
    );
    assert!(
        said.contains(&format!("joining https://127.0.0.1:{closed}")),
        "{said}"
    );
    assert!(said.to_lowercase().contains("connection refused"), "{said}");

    for child in [&mut server, &mut other] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Two agents with one name (a cloned machine): a second one is refused, told where the
/// node is, and stops, whether it comes with the join token or with a copy of the node's
/// credential; the node keeps its epoch and registered once (no re-registration storm).
#[test]
fn a_second_agent_with_a_live_nodes_name_is_refused_and_stops() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api, token) = loopback_server(&dir.path().join("server"));
    let first = strata_testkit::AgentProcess::start(
        &common::strata_bin(),
        &dir.path().join("first"),
        &api,
        &token,
    );
    let cli = |args: &[&str]| {
        std::process::Command::new(common::strata_bin())
            .args(args)
            .env("STRATA_ADDR", &api)
            .output()
            .unwrap()
    };
    // The node as the server lists it, once the first agent's registration shows (the agent
    // announces its ingress before it has registered).
    let node = || -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let nodes: Vec<serde_json::Value> =
                serde_json::from_slice(&cli(&["node", "ls", "--json"]).stdout).unwrap_or_default();
            if let Some(node) = nodes.into_iter().find(|n| n["name"] == "local") {
                return node;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node `local` never registered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let held_at = node()["agent_url"].as_str().unwrap().to_string();
    // A clone with the node's credential, as a copied data directory has it.
    let clone_dir = dir.path().join("clone/agent");
    std::fs::create_dir_all(&clone_dir).unwrap();
    std::fs::copy(
        dir.path().join("first/node-credential"),
        clone_dir.join("node-credential"),
    )
    .unwrap();
    for (what, data_dir) in [
        ("with the join token", dir.path().join("second/agent")),
        ("with the node's credential", clone_dir),
    ] {
        let mut second = std::process::Command::new(common::strata_bin())
            .args([
                "agent", "--join", &api, "--token", &token, "--name", "local",
            ])
            .args(common::AGENT_ON_LOOPBACK)
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = second.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = second.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut said = String::new();
        std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut said).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{what}: {said}");
        assert!(
            said.contains(&format!("is alive at {held_at}")),
            "{what}: {said}"
        );
    }
    let node = node();
    assert_eq!(node["epoch"], 1, "{node}");
    assert_eq!(node["state"], "ready", "{node}");
    let events = common::stdout(&cli(&["events"]));
    assert_eq!(events.matches("node.registered").count(), 1, "{events}");
    drop(first);
    let _ = server.kill();
    let _ = server.wait();
}

/// `strata agent --join api` with `token`, stopped after `time`: what it said by then.
fn join_for(api: &str, token: &str, dir: &std::path::Path, time: Duration) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("agent.log");
    let mut agent = std::process::Command::new(common::strata_bin())
        .args([
            "agent", "--join", api, "--name", "hopeful", "--token", token,
        ])
        .args(common::AGENT_ON_LOOPBACK)
        .arg("--data-dir")
        .arg(dir.join("agent"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(time);
    let _ = agent.kill();
    let _ = agent.wait();
    std::fs::read_to_string(&log).unwrap()
}

/// On the HTTPS API a node acts by its certificate (mutual TLS): its bearer credential only
/// gets it the certificate, and the certificate lets it act as itself alone.
#[test]
fn a_node_acts_by_its_certificate_and_only_as_itself() {
    let _serial = serial();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(node_by_certificate());
}

async fn node_by_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, api, token) = loopback_server(&dir.path().join("server"));
    let ca = std::fs::read(dir.path().join("server/ca.pem")).unwrap();
    let client = |identity: Option<reqwest::Identity>, bearer: Option<&str>| {
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        if let Some(bearer) = bearer {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {bearer}").parse().unwrap(),
            );
            builder = builder.default_headers(headers);
        }
        builder.build().unwrap()
    };
    // The join token gets node n9 its credential.
    let joining = client(None, Some(&token));
    let request = joining.post(format!("{api}/v1/nodes/n9/credential"));
    let credential: strata_core::auth::NodeCredential = common::json_of(request).await;
    let with_credential = client(None, Some(&credential.credential));
    // The credential gets the certificate ...
    let (key, csr) = strata_mesh::identity::node_key_and_csr("n9").unwrap();
    let request = with_credential
        .post(format!("{api}/v1/nodes/n9/certificate"))
        .json(&strata_core::api::CertificateRequest { csr, address: None });
    let signed: strata_core::api::NodeCertificate = common::json_of(request).await;
    // ... and nothing else.
    let beat = serde_json::json!({"epoch": 1});
    let heartbeat = |client: &reqwest::Client, node: &str| {
        common::send(
            client
                .post(format!("{api}/v1/nodes/{node}/heartbeat"))
                .json(&beat),
        )
    };
    let response = heartbeat(&with_credential, "n9").await;
    assert_eq!(response.status(), 403);
    let body: strata_core::api::ErrorBody = response.json().await.unwrap();
    assert!(
        body.message.contains("must present its node certificate"),
        "{body:?}"
    );

    // With the certificate: as itself, yes; as another node, or as a person, no.
    let identity =
        reqwest::Identity::from_pem(format!("{key}\n{}", signed.certificate).as_bytes()).unwrap();
    let node = client(Some(identity), None);
    let response = heartbeat(&node, "n9").await;
    assert!(response.status().is_success(), "{}", response.status());
    let who: serde_json::Value = common::json_of(node.get(format!("{api}/v1/whoami"))).await;
    assert_eq!(who["name"], "node:n9");
    let response = heartbeat(&node, "n8").await;
    assert_eq!(response.status(), 403);
    let response = node.get(format!("{api}/v1/services")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    // A certificate of another CA is not accepted by the TLS handshake itself.
    let other = strata_mesh::identity::ClusterCa::generate().unwrap();
    let (key, csr) = strata_mesh::identity::node_key_and_csr("n9").unwrap();
    let forged = other
        .sign_node(&csr, "n9", None, std::time::Duration::from_secs(60))
        .unwrap();
    let identity =
        reqwest::Identity::from_pem(format!("{key}\n{}", forged.cert_pem).as_bytes()).unwrap();
    let result = client(Some(identity), None)
        .post(format!("{api}/v1/nodes/n9/heartbeat"))
        .json(&beat)
        .send()
        .await;
    assert!(
        result.as_ref().is_err() || result.as_ref().unwrap().status() == 401,
        "{result:?}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// The operator gives the API's certificate (`--tls-cert`, `--tls-key`, `--tls-ca`): the
/// API presents it, the join token carries its CA's fingerprint, a node joins trusting that
/// CA, and still acts by its node certificate of the cluster CA.
#[test]
fn an_operator_given_certificate_serves_the_api() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let operator = strata_mesh::identity::ClusterCa::generate().unwrap();
    let issued = operator
        .issue_api_server(
            &["localhost".to_string()],
            &["127.0.0.1".parse().unwrap()],
            Duration::from_secs(3600),
        )
        .unwrap();
    let files = dir.path().join("tls");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("api.crt"), &issued.cert_pem).unwrap();
    std::fs::write(files.join("api.key"), &issued.key_pem).unwrap();
    std::fs::write(files.join("ca.crt"), &operator.cert_pem).unwrap();
    let flags: Vec<std::ffi::OsString> = vec![
        "--tls-cert".into(),
        files.join("api.crt").into(),
        "--tls-key".into(),
        files.join("api.key").into(),
        "--tls-ca".into(),
        files.join("ca.crt").into(),
    ];
    let flags: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_os_str()).collect();
    let (mut server, api, token) = loopback_server_with(&dir.path().join("server"), &flags);
    let fingerprint = strata_mesh::identity::ca_fingerprint(&operator.cert_pem).unwrap();
    assert_eq!(
        strata_core::auth::JoinToken::parse(&token).ca_fingerprint,
        Some(fingerprint)
    );
    // Only the operator's CA verifies the API.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let get_ca = |root: &str| {
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
            .build()
            .unwrap();
        runtime.block_on(async {
            client
                .get(format!("{api}/v1/ca"))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    assert!(get_ca(&operator.cert_pem).is_ok_and(|s| s.is_success()));
    // A node joins with the token, and becomes ready (acting by its node certificate).
    let agent = strata_testkit::AgentProcess::start(
        &common::strata_bin(),
        &dir.path().join("agent"),
        &api,
        &token,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let output = std::process::Command::new(common::strata_bin())
            .args(["node", "ls", "--json"])
            .env("STRATA_ADDR", &api)
            .output()
            .unwrap();
        if common::stdout(&output).contains("\"ready\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not become ready: {}\n{}",
            common::stderr(&output),
            std::fs::read_to_string(agent.dir.join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        agent.dir.join("tls/node.crt").exists(),
        "the node has its certificate"
    );
    // Its certificate is of the cluster CA, which does not verify the API.
    let cluster_ca = std::fs::read_to_string(agent.dir.join("tls/ca.crt")).unwrap();
    assert_ne!(cluster_ca, operator.cert_pem);
    assert!(get_ca(&cluster_ca).is_err());
    drop(agent);
    let _ = server.kill();
    let _ = server.wait();
}

/// Services call each other by name across nodes: `front` on node-0 calls `greeter` (not
/// public) on node-1 through node-0's mesh proxy, which reaches node-1's inter-node port over
/// mutual TLS with the certificate the node got when it joined; that port refuses plain text.
/// Certificates live 6 s here: nodes renew them (at 4 s) and calls go on.
#[test]
fn a_call_by_name_crosses_nodes_over_mutual_tls() {
    let _serial = serial();
    let Some(cluster) = cluster_with(2, &["--node-cert-ttl", "6s"]) else {
        return;
    };
    let hello = common::hello_bin();
    let service = |name: &str, greeting: &str, zone: &str, public: bool| {
        let more = format!(
            "[service.{name}.placement]\nlabels = {{ zone = \"{zone}\" }}\n\
             [service.{name}.route]\npublic = {public}"
        );
        common::service_toml(name, &hello, greeting, &more)
    };
    let spec = common::write_file(
        cluster.root.path(),
        "mesh.toml",
        [
            service("front", "Front", "z0", true),
            service("greeter", "Hi from node-1", "z1", false),
        ]
        .concat(),
    );
    deploy(&cluster, &spec);
    let runs_on = |service: &str| {
        let output = cluster.cli(&["status", service, "--json"]);
        let list: Vec<ServiceStatus> = serde_json::from_slice(&output.stdout).unwrap();
        list[0]
            .instances
            .iter()
            .filter(|v| v.is_routable())
            .map(|v| v.instance.node.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(runs_on("front"), ["node-0"]);
    assert_eq!(runs_on("greeter"), ["node-1"]);

    // Through node-0's ingress to front, which calls greeter by name.
    let ingress = cluster.nodes[0].ingress();
    let call = || {
        let mut last = String::new();
        // Routes reach every node within a watch round trip; a few tries at most.
        for _ in 0..50 {
            let output = std::process::Command::new("curl")
                .args(["-s", "--max-time", "5", "-H", "Host: front.dev.localhost"])
                .arg(format!("http://{ingress}/call/greeter"))
                .output()
                .expect("curl runs");
            last = common::stdout(&output);
            if last.contains("Hi from node-1") {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("front could not call greeter: {last}\n{}", cluster.logs());
    };
    let last = call();
    assert!(last.contains("(called by front)"), "{last}");
    // It went through node-1's inter-node port, not straight to the instance.
    // The node's API (HTTPS with its certificate) answers only its API key (the control
    // plane's to derive), not even the node's credential.
    let credential =
        std::fs::read_to_string(cluster.nodes[1].data_dir.join("node-credential")).unwrap();
    let api_key = strata_core::auth::node_api_key(credential.trim());
    let node_api = |path: &str, bearer: Option<&str>| {
        let mut command = std::process::Command::new("curl");
        command.args(["-s", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"]);
        command.arg(cluster.nodes[1].data_dir.join("tls/ca.crt"));
        if let Some(bearer) = bearer {
            command
                .arg("-H")
                .arg(format!("Authorization: Bearer {bearer}"));
        }
        let output = command
            .arg(format!("https://{}:7701{path}", cluster.nodes[1].ip))
            .output()
            .expect("curl runs");
        let text = common::stdout(&output);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        (status.to_string(), body.to_string())
    };
    assert_eq!(node_api("/metrics", Some(credential.trim())).0, "401");
    assert_eq!(node_api("/metrics", None).0, "401");
    let (status, metrics) = node_api("/metrics", Some(&api_key));
    assert_eq!(status, "200");
    let delivered = metrics
        .lines()
        .find(|l| {
            l.starts_with("strata_proxy_peer_deliveries_total") && l.contains("service=\"greeter\"")
        })
        .unwrap_or_else(|| panic!("node-1 counted no delivery for greeter:\n{metrics}"));
    assert!(!delivered.ends_with(" 0"), "{delivered}");
    // Instance logs there are for the control plane alone (its client certificate), not even
    // for the API key ...
    assert_eq!(node_api("/v1/instances/x/logs", Some(&api_key)).0, "401");
    // ... which reads them for `strata logs`.
    let output = cluster.cli(&["logs", "greeter", "--tail", "5"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let lines = common::stdout(&output);
    assert!(
        lines.contains("[greeter-") && !lines.contains("logs unavailable"),
        "{lines}"
    );

    // greeter's instance listens on node-1's loopback: its advertised address is only a name
    // for the proxies; from the network, a direct connection to it is refused.
    let output = cluster.cli(&["status", "greeter", "--json"]);
    let list: Vec<ServiceStatus> = serde_json::from_slice(&output.stdout).unwrap();
    let address = list[0]
        .instances
        .iter()
        .find_map(|v| v.status.as_ref().and_then(|s| s.address.clone()))
        .expect("greeter has an address");
    assert!(
        address.starts_with(&cluster.nodes[1].ip.to_string()),
        "{address}"
    );
    let direct =
        std::net::TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(2));
    assert!(
        direct.is_err(),
        "a direct connection to {address} was accepted"
    );

    // node-1 holds the certificate the cluster CA gave it, its key readable by root only.
    let tls = cluster.nodes[1].data_dir.join("tls");
    let cert = std::fs::read_to_string(tls.join("node.crt")).expect("node certificate");
    assert!(cert.contains("BEGIN CERTIFICATE"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(tls.join("node.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Renewal: both nodes get new certificates before the old ones expire; calls go on.
    let cert_0 = std::fs::read_to_string(cluster.nodes[0].data_dir.join("tls/node.crt")).unwrap();
    wait_until(
        &cluster,
        Duration::from_secs(15),
        "both nodes renewed their certificates",
        || {
            let now_0 =
                std::fs::read_to_string(cluster.nodes[0].data_dir.join("tls/node.crt")).unwrap();
            let now_1 = std::fs::read_to_string(tls.join("node.crt")).unwrap();
            now_0 != cert_0 && now_1 != cert
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    // The first certificates have expired by now (6 s): this call uses the renewed ones.
    let after = call();
    assert!(after.contains("(called by front)"), "{after}");

    // The inter-node port speaks mutual TLS only: plain HTTP gets no HTTP answer.
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect((cluster.nodes[1].ip, 7443)).expect("the port is open");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: greeter.dev.localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "plain text was answered: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// On another machine the CLI reaches an HTTPS server two ways: `STRATA_ADDR`, `STRATA_TOKEN`
/// and `STRATA_CA` (the CA file it trusts), or `strata login URL --token-file F`, which shows
/// the fingerprint of the CA it fetched and refuses one other than `--ca-fingerprint`. The
/// server's data directory and its credential files are private to it.
#[test]
fn the_cli_reaches_an_https_server_by_env_or_login_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let (mut server, api, _token) = loopback_server_with(&data, &[]);
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["ca.pem", "admin-token", "join-token"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let ca = data.join("ca.pem");
    let admin = std::fs::read_to_string(data.join("admin-token")).unwrap();
    // A CLI with no context of this server: what it is told, and nothing else.
    let cli = |config: &std::path::Path, env: &[(&str, &std::ffi::OsStr)], args: &[&str]| {
        let mut command = std::process::Command::new(common::strata_bin());
        command.args(args).env("STRATA_CONFIG_DIR", config);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let fresh = tempfile::tempdir().unwrap();
    let addr = std::ffi::OsString::from(&api);
    let token = std::ffi::OsString::from(admin.trim());
    let without_ca = cli(
        fresh.path(),
        &[("STRATA_ADDR", &addr), ("STRATA_TOKEN", &token)],
        &["status"],
    );
    assert!(!without_ca.status.success(), "an unknown CA is not trusted");
    let with_ca = cli(
        fresh.path(),
        &[
            ("STRATA_ADDR", &addr),
            ("STRATA_TOKEN", &token),
            ("STRATA_CA", ca.as_os_str()),
        ],
        &["status"],
    );
    assert!(with_ca.status.success(), "{}", common::stderr(&with_ca));

    // `strata login`: a fingerprint other than the server's is refused, nothing recorded.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, admin.trim()).unwrap();
    let token_path = token_file.to_str().unwrap();
    let wrong = cli(
        fresh.path(),
        &[],
        &[
            "login",
            &api,
            "--token-file",
            token_path,
            "--ca-fingerprint",
            &"0".repeat(64),
        ],
    );
    assert!(!wrong.status.success());
    assert!(
        common::stderr(&wrong).contains("not logging in"),
        "{}",
        common::stderr(&wrong)
    );
    let fingerprint =
        strata_mesh::identity::ca_fingerprint(&std::fs::read_to_string(&ca).unwrap()).unwrap();
    let login = cli(
        fresh.path(),
        &[],
        &["login", &api, "--token-file", token_path],
    );
    assert!(login.status.success(), "{}", common::stderr(&login));
    assert!(
        common::stderr(&login).contains(&fingerprint),
        "login shows the fingerprint it trusts: {}",
        common::stderr(&login)
    );
    let status = cli(fresh.path(), &[("STRATA_ADDR", &addr)], &["status"]);
    assert!(status.status.success(), "{}", common::stderr(&status));
    server.kill().unwrap();
    server.wait().unwrap();
}
