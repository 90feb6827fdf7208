//! End-to-end (root: instances in their own network namespaces): a service that speaks TCP
//! (`protocol = "tcp"`) is called by name. `strata dev` runs `echo` (the example in
//! `MODE=tcp-echo`: it answers each line) with `allow_from = ["front"]`, and `front` and
//! `other` (the example's HTTP server), whose `GET /call-tcp/echo:7000?send=LINE` dials
//! `echo:7000` as any program would: the name resolves through the node's resolver, the
//! connection goes through the node's TCP proxy, which knows the caller by its address.
//! Then across nodes of a real cluster (agents in network namespaces): the connection leaves
//! the caller's node over the inter-node port's mutual TLS.

mod common;

use std::time::Duration;

use common::*;

fn spec(dir: &std::path::Path) -> std::path::PathBuf {
    let hello = hello_bin();
    let echo = format!(
        r#"
[service.echo]
artifact = "{hello}"
protocol = "tcp"
port = 7000
[service.echo.config]
MODE = "tcp-echo"
GREETING = "Echo"
[service.echo.mesh]
allow_from = ["front"]
"#,
        hello = hello.display()
    );
    let text = [
        echo,
        service_toml("front", &hello, "Front", ""),
        service_toml("other", &hello, "Other", ""),
    ]
    .concat();
    write_file(dir, "tcp.toml", text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_service_is_called_by_name_and_policy_decides_who_may() {
    if !strata_testkit::containers_available("the tcp mesh test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let spec = spec(dir.path());
    dev.deploy(&spec, &[]);
    let client = dev.client(&["front.dev.localhost", "other.dev.localhost"]);
    let call = |from: &str, target: &str, line: &str| {
        let client = client.clone();
        let url = dev.url(
            &format!("{from}.dev.localhost"),
            &format!("/call-tcp/{target}?send={line}"),
        );
        async move {
            let response = client.get(url).send().await.expect("the caller answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };

    // By name, and by name in the environment: the echo answers through the mesh.
    let instance = dev.status("echo").instances[0].instance.id.to_string();
    for target in ["echo:7000", "echo.dev:7000"] {
        let (status, body) = call("front", target, "hello").await;
        assert_eq!(status, 200, "{target}: {body}\n{}", dev.log());
        assert_eq!(body.trim(), format!("Echo ({instance}): hello"), "{target}");
    }
    // A service of another name, and the right name on a port it does not take.
    let (status, body) = call("front", "nobody:7000", "x").await;
    assert_eq!(status, 502, "{body}");
    let (status, body) = call("front", "echo:7001", "x").await;
    assert_ne!(status, 200, "{body}");
    // An HTTP service has no TCP name.
    let (status, body) = call("front", "other:8000", "x").await;
    assert_eq!(status, 502, "{body}");

    // `other` is not in echo's allow_from: its connection is closed unanswered (reset, as it
    // had sent a line), and the refusal is an event.
    let (status, body) = call("other", "echo:7000", "secret").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("closed without an answer") || body.contains("reset"),
        "{body}"
    );
    dev.eventually(Duration::from_secs(10), "the policy.denied event", || {
        let events = stdout(&dev.cli(&["events", "--limit", "200"]));
        events.contains("policy.denied") && events.contains("other called echo: refused")
    })
    .await;
    // echo never saw it.
    let logs = stdout(&dev.cli(&["logs", "echo", "--tail", "100"]));
    assert!(!logs.contains("secret"), "{logs}");

    // Counted: connections by outcome, and the bytes each way.
    let metrics = agent_metrics(&dev).await;
    let value = |prefix: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix) && labels.iter().all(|label| l.contains(label)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} {labels:?} in:\n{metrics}"))
    };
    let echo = "service=\"echo\"";
    assert!(
        value(
            "strata_proxy_tcp_connections_total",
            &[echo, "outcome=\"opened\""]
        ) >= 2.0
    );
    assert!(
        value(
            "strata_proxy_tcp_connections_total",
            &[echo, "outcome=\"refused\""]
        ) >= 1.0
    );
    // "hello\r\n" twice went to echo; more came back.
    assert!(
        value(
            "strata_proxy_tcp_bytes_total",
            &[echo, "direction=\"to_service\""]
        ) >= 14.0
    );
    assert!(
        value(
            "strata_proxy_tcp_bytes_total",
            &[echo, "direction=\"from_service\""]
        ) > 14.0
    );
    assert_eq!(value("strata_proxy_tcp_connections_open", &[echo]), 0.0);

    // The instance is replaced (a redeploy with a new greeting): the name reaches the new one.
    let changed = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("GREETING = \"Echo\"", "GREETING = \"Echo 2\"");
    std::fs::write(&spec, changed).unwrap();
    dev.deploy(&spec, &[]);
    let mut answered = String::new();
    for _ in 0..100 {
        answered = call("front", "echo:7000", "again").await.1;
        if answered.contains("Echo 2 (") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered.contains("Echo 2 ("), "{answered}\n{}", dev.log());
}

/// `front` on node-0 dials `echo:7000`, whose only instance runs on node-1: the connection
/// crosses to node-1's inter-node port (mutual TLS), which delivers it (counted there);
/// `other` on node-0 is refused by node-0's proxy before anything leaves the node.
#[test]
fn a_tcp_connection_by_name_crosses_nodes_over_mutual_tls() {
    if let Some(why) = strata_testkit::unavailable() {
        eprintln!("SKIPPED: cluster tests {why}");
        return;
    }
    if !strata_testkit::containers_available("the tcp mesh cluster test") {
        return;
    }
    // The agents keep the host's mounts (its cgroups: instances run sandboxed, each in a
    // network namespace of its own on its node's bridge).
    let options = strata_testkit::Options {
        strata: strata_bin(),
        node_labels: vec!["zone=z0".into(), "zone=z1".into()],
        server_args: vec![],
    };
    let cluster = strata_testkit::Cluster::start_preparing(options, |node| node.host_mounts = true);
    let placed = |spec: String, service: &str, zone: &str| {
        format!("{spec}[service.{service}.placement]\nlabels = {{ zone = \"{zone}\" }}\n")
    };
    let text = std::fs::read_to_string(spec(cluster.root.path())).unwrap();
    let mut parts = text.split("\n[service.").map(str::to_string);
    let echo = parts.next().unwrap();
    let rest: Vec<String> = parts.map(|p| format!("\n[service.{p}")).collect();
    // The three services as in strata dev, echo on node-1, its callers on node-0.
    let mut sections = vec![placed(echo, "echo", "z1")];
    for part in rest {
        match part.trim_start().strip_prefix("[service.") {
            Some(head) if head.starts_with("front]") => sections.push(placed(part, "front", "z0")),
            Some(head) if head.starts_with("other]") => sections.push(placed(part, "other", "z0")),
            _ => sections.push(part),
        }
    }
    let spec = write_file(cluster.root.path(), "tcp-cluster.toml", sections.concat());
    common::cluster::deploy(&cluster, &spec);

    let ingress = cluster.nodes[0].ingress();
    let call = |from: &str, line: &str| {
        let output = std::process::Command::new("curl")
            .args(["-s", "--max-time", "8", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Host: {from}.dev.localhost"))
            .arg(format!("http://{ingress}/call-tcp/echo:7000?send={line}"))
            .output()
            .expect("curl runs");
        let text = stdout(&output);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        (status.to_string(), body.to_string())
    };
    // Routes reach every node within a watch round trip; a few tries at most.
    let mut last = (String::new(), String::new());
    for _ in 0..50 {
        last = call("front", "across");
        if last.0 == "200" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(last.0, "200", "{}\n{}", last.1, cluster.logs());
    assert!(last.1.starts_with("Echo (echo-"), "{}", last.1);
    assert!(last.1.trim_end().ends_with(": across"), "{}", last.1);

    // It went through node-1's inter-node port: node-1 counted a delivery for echo.
    let credential =
        std::fs::read_to_string(cluster.nodes[1].data_dir.join("node-credential")).unwrap();
    let api_key = strata_core::auth::node_api_key(credential.trim());
    let metrics = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(cluster.nodes[1].data_dir.join("tls/ca.crt"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {api_key}"))
        .arg(format!("https://{}:7701/metrics", cluster.nodes[1].ip))
        .output()
        .expect("curl runs");
    let metrics = stdout(&metrics);
    let delivered = metrics
        .lines()
        .find(|l| {
            l.starts_with("strata_proxy_peer_deliveries_total") && l.contains("service=\"echo\"")
        })
        .unwrap_or_else(|| panic!("node-1 counted no delivery for echo:\n{metrics}"));
    assert!(!delivered.ends_with(" 0"), "{delivered}");

    // `other` may not: refused on node-0, an event, nothing delivered on node-1 for it.
    let (status, body) = call("other", "secret");
    assert_eq!(status, "502", "{body}");
    common::cluster::wait_until(
        &cluster,
        Duration::from_secs(10),
        "the policy.denied event",
        || {
            let events = stdout(&cluster.cli(&["events", "--limit", "200"]));
            events.contains("policy.denied") && events.contains("other called echo: refused")
        },
    );
    let logs = stdout(&cluster.cli(&["logs", "echo", "--tail", "100"]));
    assert!(!logs.contains("secret"), "{logs}");
}

/// The node's /metrics (the agent's API serves it).
async fn agent_metrics(dev: &Dev) -> String {
    let agent = dev.nodes().await.remove(0).agent_url;
    let client = dev.api_client_with(&dev.node_api_key());
    text_of(client.get(format!("{agent}/metrics"))).await
}
