//! End-to-end: the real `strata` binary, real processes, real HTTP.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use strata_core::InstanceState;

const HOST: &str = "hello.dev.localhost";

fn running_of_release(status: &strata_core::api::ServiceStatus, release: u64) -> usize {
    status
        .instances
        .iter()
        .filter(|v| v.instance.release == release && v.is_routable())
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_serves_through_the_ingress_and_status_lists_running_instances() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let spec = hello_spec(dir.path(), 2, "Howdy");
    let output = dev.deploy(&spec, &[]);
    assert_eq!(
        stdout(&output).trim(),
        dev.url(HOST, "/"),
        "deploy prints the service's URL"
    );

    let client = dev.client(&[HOST]);
    let response = client.get(dev.url(HOST, "/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.starts_with("Howdy from hello-1-"), "{body}");
    assert!(body.contains("(release 1)"), "{body}");

    // The node's /metrics counts that request for the service, by status class.
    let nodes = dev.nodes().await;
    let node_client = dev.api_client_with(&dev.node_api_key());
    let metrics = text_of(node_client.get(format!("{}/metrics", nodes[0].agent_url))).await;
    assert!(
        metrics.contains(r#"strata_proxy_requests_total{env="dev",service="hello",code="2xx"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"strata_proxy_request_duration_seconds_count{env="dev",service="hello"} 1"#
        ),
        "{metrics}"
    );

    // ... and that request reaches the control plane in the node's per-second report.
    let mut served = 0;
    for _ in 0..50 {
        let traffic: strata_core::api::ServiceMetrics = dev
            .api_get("/v1/envs/dev/services/hello/metrics")
            .await
            .json()
            .await
            .unwrap();
        served = traffic.seconds.iter().map(|s| s.requests).sum::<u64>();
        if served > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served, 1, "the control plane has the node's traffic report");

    // The server's /metrics: the fleet as this server sees it.
    let server_metrics = dev.api_get("/metrics").await.text().await.unwrap();
    for line in [
        r#"strata_nodes{state="ready"} 1"#,
        r#"strata_instances{state="running"} 2"#,
        "strata_services 1",
        "strata_leader 1",
    ] {
        assert!(server_metrics.contains(line), "{line} in {server_metrics}");
    }

    let status = dev.status("hello");
    assert_eq!(status.service.desired_release, 1);
    assert_eq!(status.instances.len(), 2);
    for view in &status.instances {
        assert_eq!(view.instance.release, 1);
        assert_eq!(view.state(), InstanceState::Running);
        assert!(view.status.as_ref().unwrap().address.is_some());
    }
    let table = dev.cli(&["status"]);
    assert!(stdout(&table).contains("hello"), "{}", stdout(&table));
    assert!(stdout(&table).contains("2/2"), "{}", stdout(&table));

    // Logs of both instances, prefixed by instance id.
    let logs = dev.cli(&["logs", "hello"]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    let text = stdout(&logs);
    for view in &status.instances {
        assert!(
            text.contains(&format!("[{}] hello: listening", view.instance.id)),
            "{text}"
        );
    }

    // Deploying the same spec again changes nothing.
    let again = stderr(&dev.deploy(&spec, &[]));
    assert!(again.contains("release 1 unchanged"), "{again}");

    // Delete: instances stop, the host no longer routes.
    let pids = instance_pids(&status);
    dev.delete("hello");
    dev.eventually(
        Duration::from_secs(20),
        "instances of a deleted service stop",
        || pids.iter().all(|pid| !alive(*pid)),
    )
    .await;
    let gone = client.get(dev.url(HOST, "/")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn ingress_answers_404_for_unknown_hosts_and_503_without_healthy_instances() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let client = dev.client(&["nope.dev.localhost", "never.dev.localhost"]);
    let response = send(client.get(dev.url("nope.dev.localhost", "/"))).await;
    assert_eq!(response.status(), 404);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("no service is routed at host `nope.dev.localhost`"));

    // A service whose instances never become healthy (nothing listens on its port).
    let never = "[service.never]\ncommand = [\"sleep\", \"600\"]\n";
    let spec = write_file(dir.path(), "never.toml", never);
    dev.deploy(&spec, &["--detach"]);
    let mut last = String::new();
    for _ in 0..100 {
        let response = send(client.get(dev.url("never.dev.localhost", "/"))).await;
        last = format!("{} {}", response.status(), response.text().await.unwrap());
        if last.starts_with("503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.starts_with("503"), "{last}");
    assert!(
        last.contains("service `never` in environment `dev` has no healthy instance"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_instance_is_restarted_and_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev_serving_hello(dir.path(), 1, "Hi");
    let before = dev.status("hello");
    let pid = before.instances[0].status.as_ref().unwrap().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    dev.eventually(
        Duration::from_secs(20),
        "the killed instance runs again with a new pid",
        || {
            let status = dev.status("hello");
            status.instances.iter().any(|v| {
                v.state() == InstanceState::Running
                    && v.status
                        .as_ref()
                        .is_some_and(|s| s.pid != Some(pid) && s.restarts >= 1)
            })
        },
    )
    .await;
    let status = dev.status("hello");
    let crashed = status
        .instances
        .iter()
        .find(|v| v.state() == InstanceState::Running)
        .unwrap();
    let exit = crashed.status.as_ref().unwrap().last_exit.as_ref().unwrap();
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    let client = dev.client(&[HOST]);
    let response = client.get(dev.url(HOST, "/")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let events = stdout(&dev.cli(&["events", "hello"]));
    assert!(events.contains("instance.crashed"), "{events}");
    assert!(events.contains("killed by signal 9"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_release_rolls_out_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev_serving_hello(dir.path(), 2, "One");

    let client = dev.client(&[HOST]);
    let url = dev.url(HOST, "/");
    let stop = Arc::new(AtomicBool::new(false));
    let loop_task = request_loop(client, url, "(release 2)", stop.clone());
    let second = hello_spec(dir.path(), 2, "Two, changed");
    let err = stderr(&dev.deploy(&second, &[]));
    assert!(err.contains("release 2 created"), "{err}");
    // Keep the load on a little after the rollout, across the old instances' stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = loop_task.await.unwrap();
    assert!(
        seen.failures.is_empty(),
        "failed requests during rollout: {:?}\n{}",
        seen.failures,
        dev.log()
    );
    assert!(seen.marked > 0, "release 2 never served");
    assert!(seen.ok > 50, "the request loop barely ran");

    let status = dev.status("hello");
    assert_eq!(status.service.desired_release, 2);
    assert_eq!(running_of_release(&status, 2), 2);
    assert!(rolled_out_to(&status, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_of_strata_dev_a_restart_readopts_instances() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = dev_serving_hello(dir.path(), 2, "Persistent");
    let before = dev.status("hello");
    let mut pids = instance_pids(&before);
    pids.sort();
    assert_eq!(pids.len(), 2);

    dev.kill9();
    assert!(
        pids.iter().all(|pid| alive(*pid)),
        "instances outlive a kill -9 of strata dev"
    );

    // Same data dir, new ports: the service is back without a deploy, on the same processes.
    let dev = Dev::start(dir.path());
    assert!(
        dev.serves(HOST).await,
        "service not back after restart\n{}",
        dev.log()
    );
    let after = dev.status("hello");
    assert_eq!(after.service.desired_release, 1);
    let mut now = instance_pids(&after);
    now.sort();
    assert_eq!(
        now,
        pids,
        "the same processes were re-adopted\n{}",
        dev.log()
    );
    assert!(dev.log().contains("re-adopted"), "{}", dev.log());
    drop(dev);
    // An orderly stop stops what it adopted: nothing is left holding a port.
    for pid in pids {
        assert!(!alive(pid), "instance {pid} orphaned");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_cleans_up_instances_no_longer_wanted() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = dev_serving_hello(dir.path(), 1, "Temporary");
    let pid = dev.status("hello").instances[0]
        .status
        .as_ref()
        .unwrap()
        .pid
        .unwrap();
    dev.kill9();
    // While strata dev is down, forget the service in the store's eyes by removing its
    // instances' desired records: simulate with a fresh data dir sharing only the agent's
    // records, i.e. an agent that finds a process nobody assigned.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(fresh.path().join("agent")).unwrap();
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(dir.path().join("agent/instances"))
        .arg(fresh.path().join("agent/"))
        .status()
        .unwrap();
    assert!(status.success());
    let dev2 = Dev::start(fresh.path());
    dev2.eventually(
        Duration::from_secs(20),
        "the unassigned instance is stopped",
        || !alive(pid),
    )
    .await;
    assert!(dev2.log().contains("no longer assigned"), "{}", dev2.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_looping_release_fails_the_deploy_with_its_last_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let spec = write_file(
        dir.path(),
        "crash.toml",
        "[service.crashy]\ncommand = [\"sh\", \"-c\", \"echo starting up; echo 'fatal: no database' >&2; exit 3\"]\n",
    );
    let err = dev.deploy_fails(&spec, &["--timeout", "60s"], 1);
    assert!(err.contains("crash-looping"), "{err}");
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("fatal: no database"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_an_openapi_document_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let client = dev.api_client();
    let doc: serde_json::Value = json_of(client.get(format!("{}/openapi.json", dev.api))).await;
    for path in [
        "/v1/envs/{env}/deploy",
        "/v1/watch",
        "/v1/nodes",
        "/v1/events",
        "/v1/instances",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi.json"
        );
    }
    let response = send(client.get(format!("{}/v1/envs/dev/services/ghost", dev.api))).await;
    assert_eq!(response.status(), 404);
    let body: strata_core::api::ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error, "not_found");
    assert!(body.message.contains("service `ghost`"), "{body:?}");
    assert!(body.hint.is_some());

    let request = client
        .post(format!("{}/v1/envs/dev/deploy", dev.api))
        .header("content-type", "application/json")
        .body("{not json");
    let response = send(request).await;
    assert_eq!(response.status(), 400);
    let body: strata_core::api::ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error, "bad_request");

    // The watch streams changes as server-sent events.
    let mut watch = client
        .get(format!("{}/v1/watch?prefix=/envs/", dev.api))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.headers()["content-type"], "text/event-stream");
    let spec = hello_spec(dir.path(), 1, "Watched");
    dev.deploy(&spec, &["--detach"]);
    let chunk = tokio::time::timeout(Duration::from_secs(10), watch.chunk())
        .await
        .expect("a change arrives")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("\"key\":\"/envs/dev\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_follow_prints_new_events_as_they_are_recorded() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let mut follower = std::process::Command::new(strata_bin())
        .args(["events", "--follow", "hello"])
        .env("STRATA_ADDR", &dev.api)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the follower a moment to open its stream, then make events.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let spec = hello_spec(dir.path(), 1, "Followed");
    dev.deploy(&spec, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("instance.healthy")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("events --follow printed only: {seen:#?}"),
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("release.created")),
        "{seen:#?}"
    );
    let _ = follower.kill();
    let _ = follower.wait();
}

/// An instance that cannot even start (no such program) says so at once, in its status and
/// in an event, and the deploy fails with the reason instead of waiting out its timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_program_fails_the_deploy_at_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let ghost = "[service.ghost]\ncommand = [\"/nonexistent/prog\"]\n";
    let spec = write_file(dir.path(), "ghost.toml", ghost);
    let started = std::time::Instant::now();
    let err = dev.deploy_fails(&spec, &["--timeout", "60s"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the deploy waited {:?}",
        started.elapsed()
    );
    assert!(err.contains("cannot start /nonexistent/prog"), "{err}");
    let status = dev.status("ghost");
    let instance = &status.instances[0];
    let message = &instance.status.as_ref().expect("a reported status").message;
    assert!(message.contains("No such file or directory"), "{message}");
    let events = stdout(&dev.cli(&["events", "ghost"]));
    assert!(
        events.contains("cannot start /nonexistent/prog"),
        "{events}"
    );
}
