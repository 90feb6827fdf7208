//! End-to-end: services call each other by name through the node's mesh proxy, and who may
//! call whom is the platform's decision. `strata dev` with the example service three times:
//! `front` (public) calls `greeter` (not public: reachable only through the mesh) and `vault`
//! (`allow_from = ["admin"]`) with `GET /call/SERVICE`, which is a plain `http://SERVICE/`
//! request from an HTTP client honouring `HTTP_PROXY`.

mod common;

use std::time::Duration;

use common::*;

fn spec(dir: &std::path::Path) -> std::path::PathBuf {
    let hello = hello_bin();
    let service = |name: &str, greeting: &str, replicas: u32, extra: &str| {
        let more = format!("[service.{name}.scale]\nreplicas = {replicas}\n{extra}");
        service_toml(name, &hello, greeting, &more)
    };
    let text = [
        service("front", "Front", 1, ""),
        service(
            "greeter",
            "Hi from greeter",
            2,
            "[service.greeter.route]\npublic = false\n",
        ),
        service(
            "vault",
            "Secrets",
            1,
            "[service.vault.mesh]\nallow_from = [\"admin\"]\n",
        ),
    ]
    .concat();
    write_file(dir, "mesh.toml", text)
}

#[tokio::test(flavor = "multi_thread")]
async fn services_call_each_other_by_name_and_policy_decides_who_may() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let spec = spec(dir.path());
    dev.deploy(&spec, &[]);
    let client = dev.client(&["front.dev.localhost", "greeter.dev.localhost"]);
    let call = |service: &str| {
        let client = client.clone();
        let url = dev.url("front.dev.localhost", &format!("/call/{service}"));
        async move {
            let response = client.get(url).send().await.expect("front answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };

    // By name, through the mesh; the callee learns who called from the platform.
    let (status, body) = call("greeter").await;
    assert_eq!(status, 200, "{body}\n{}", dev.log());
    assert!(body.contains("Hi from greeter"), "{body}");
    assert!(body.contains("(called by front)"), "{body}");
    // greeter is not public: the ingress does not serve it.
    let outside = send(client.get(dev.url("greeter.dev.localhost", "/"))).await;
    assert_eq!(outside.status().as_u16(), 404);
    // A name that is no service of the environment.
    let (status, body) = call("nobody").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no service named `nobody`"), "{body}");

    // One greeter instance dies: callers see no error.
    let greeter = dev.status("greeter");
    let pids = instance_pids(&greeter);
    assert_eq!(pids.len(), 2, "{greeter:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for _ in 0..40 {
        let (status, body) = call("greeter").await;
        assert_eq!(status, 200, "a call failed after an instance died: {body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // vault allows only admin: 403 from the proxy, an audit event, and vault saw nothing.
    let (status, body) = call("vault").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("`front` may not call `vault`")
            && body.contains("vault.allow_from = [admin]"),
        "{body}"
    );
    dev.eventually(Duration::from_secs(10), "the policy.denied event", || {
        let events = stdout(&dev.cli(&["events", "--limit", "200"]));
        events.contains("policy.denied") && events.contains("front called vault: refused")
    })
    .await;
    let metrics = agent_metrics(&dev).await;
    assert!(
        !metrics.lines().any(
            |l| l.starts_with("strata_proxy_requests_total") && l.contains("service=\"vault\"")
        ),
        "a refused call reached vault:\n{metrics}"
    );

    // The environment's default: deny. greeter sets no allow_from, so front may no longer
    // call it; back to allow, it may again. Both changes are events.
    let set = dev.cli(&["env", "policy", "dev", "deny"]);
    assert!(set.status.success(), "{}", stderr(&set));
    let mut refused = false;
    for _ in 0..100 {
        let (status, body) = call("greeter").await;
        if status == 403 {
            assert!(
                body.contains("environment dev denies calls by default"),
                "{body}"
            );
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the deny default never applied");
    let set = dev.cli(&["env", "policy", "dev", "allow"]);
    assert!(set.status.success(), "{}", stderr(&set));
    let mut allowed = false;
    for _ in 0..100 {
        if call("greeter").await.0 == 200 {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(allowed, "the allow default never applied");
    let envs = stdout(&dev.cli(&["env", "ls"]));
    assert!(envs.contains("dev") && envs.contains("allow"), "{envs}");
    let events = stdout(&dev.cli(&["events", "--limit", "200"]));
    assert!(events.contains("env.policy"), "{events}");
}

/// The node's /metrics (the agent's API serves it).
async fn agent_metrics(dev: &Dev) -> String {
    let agent = dev.nodes().await.remove(0).agent_url;
    let client = dev.api_client_with(&dev.node_api_key());
    text_of(client.get(format!("{agent}/metrics"))).await
}
