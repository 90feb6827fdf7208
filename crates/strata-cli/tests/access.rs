//! End-to-end identity and trust through `strata dev` and the real CLI: tokens by role and
//! environment, revocation at once, the audit log, `strata login`, private files, the
//! loopback API's browser defences, and no secret in any response.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// Runs the CLI with `token` as STRATA_TOKEN.
fn cli_as(dev: &Dev, token: &str, args: &[&str]) -> Output {
    Command::new(strata_bin())
        .args(args)
        .env("STRATA_ADDR", &dev.api)
        .env("STRATA_TOKEN", token)
        .output()
        .expect("strata runs")
}

/// `strata token create` as the admin; the token is the last line of stdout.
fn create_token(dev: &Dev, args: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let output = dev.cli(&all);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let last = out.lines().last().unwrap().trim().to_string();
    assert!(last.starts_with("st."), "{out}");
    last
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_and_environments_decide_who_may_do_what() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let spec = hello_spec(dir.path(), 1, "Trusted");
    let spec = spec.to_str().unwrap();

    // The CLI on this machine works with no flag: strata dev recorded its context.
    let output = dev.cli(&["deploy", spec]);
    assert!(output.status.success(), "{}", stderr(&output));

    // A viewer reads, and cannot deploy or read logs.
    let viewer = create_token(&dev, &["ci-viewer", "--role", "viewer"]);
    let output = cli_as(&dev, &viewer, &["status", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("\"hello\""));
    let output = cli_as(&dev, &viewer, &["deploy", spec]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("role viewer") && err.contains("deployer"),
        "{err}"
    );
    let output = cli_as(&dev, &viewer, &["logs", "hello"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let output = cli_as(&dev, &viewer, &["token", "ls"]);
    assert_eq!(output.status.code(), Some(1), "a viewer cannot list tokens");

    // A deployer for dev deploys to dev, not to prod.
    let deployer = create_token(&dev, &["ci-dev", "--role", "deployer", "--env", "dev"]);
    let changed = hello_spec(dir.path(), 1, "Trusted by CI");
    let output = cli_as(
        &dev,
        &deployer,
        &[
            "deploy",
            changed.to_str().unwrap(),
            "--env",
            "dev",
            "--detach",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let output = cli_as(
        &dev,
        &deployer,
        &["deploy", spec, "--env", "prod", "--detach"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not to environment `prod`"),
        "{}",
        stderr(&output)
    );

    // Revoked: refused at the very next request.
    let output = dev.cli(&["token", "revoke", "ci-dev"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = cli_as(&dev, &deployer, &["status"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("not logged in") && err.contains("strata login"),
        "{err}"
    );

    // An expired token is refused too.
    let expired = create_token(&dev, &["short", "--role", "admin", "--expires", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let output = cli_as(&dev, &expired, &["status"]);
    assert!(stderr(&output).contains("expired"), "{}", stderr(&output));

    // No credential at all: 401 with the way in.
    let response = reqwest::get(format!("{}/v1/services", dev.api))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // `token ls` shows no secret; `audit` tells who did what, refusals included.
    let output = dev.cli(&["token", "ls", "--json"]);
    let listed = stdout(&output);
    assert!(
        listed.contains("ci-viewer") && !listed.contains("ci-dev"),
        "{listed}"
    );
    assert!(
        !listed.contains(viewer.rsplit('.').next().unwrap()),
        "{listed}"
    );
    let output = dev.cli(&["audit", "--json", "--limit", "1000"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let records: Vec<strata_core::auth::AuditRecord> =
        serde_json::from_slice(&output.stdout).unwrap();
    let refused = records
        .iter()
        .find(|r| r.who == "ci-viewer" && r.denied.is_some())
        .expect("the viewer's refused deploy (its artifact check) is audited");
    assert_eq!(refused.status, 403);
    assert!(refused.from.starts_with("127.0.0.1:"), "{refused:?}");
    let deployed = records
        .iter()
        .find(|r| r.who == "ci-dev" && r.status == 200)
        .expect("the deployer's deploy is audited");
    assert_eq!(deployed.env.as_deref(), Some("dev"));
    assert!(deployed.summary.contains("hello#"), "{deployed:?}");
    let output = dev.cli(&["audit", "--who", "ci-viewer"]);
    assert!(stdout(&output).contains("refused"), "{}", stdout(&output));
    // Events say who, too.
    let output = dev.cli(&["events", "hello"]);
    assert!(stdout(&output).contains("ci-dev"), "{}", stdout(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn login_records_a_context_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let viewer = create_token(&dev, &["reader", "--role", "viewer", "--env", "dev"]);
    let token_file = dir.path().join("reader.token");
    std::fs::write(&token_file, &viewer).unwrap();
    let config = dir.path().join("other-machine");
    let output = Command::new(strata_bin())
        .args(["login", &dev.api, "--token-file"])
        .arg(&token_file)
        .env("STRATA_CONFIG_DIR", &config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("as reader (role viewer, environments dev)"),
        "{}",
        stdout(&output)
    );
    let output = Command::new(strata_bin())
        .args(["status"])
        .env("STRATA_ADDR", &dev.api)
        .env("STRATA_CONFIG_DIR", &config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    // A wrong token is not recorded.
    std::fs::write(&token_file, "st.reader.0000").unwrap();
    let output = Command::new(strata_bin())
        .args(["login", &dev.api, "--token-file"])
        .arg(&token_file)
        .env("STRATA_CONFIG_DIR", dir.path().join("third"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!dir.path().join("third/contexts").exists());

    // The data directory and its secrets are the owner's alone.
    assert_eq!(mode(dir.path()), 0o700);
    for file in [
        "admin-token",
        "join-token",
        "store.redb",
        "agent/node-credential",
    ] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loopback_api_refuses_other_hosts_and_other_origins() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let port = dev.api.rsplit(':').next().unwrap().to_string();
    let client = dev.api_client();
    // DNS rebinding: a page at evil.example resolved to 127.0.0.1 sends Host: evil.example.
    let request = client
        .get(format!("{}/v1/services", dev.api))
        .header("host", format!("evil.example:{port}"));
    let response = send(request).await;
    assert_eq!(response.status(), 403);
    // A cross-site POST from a browser carries the page's Origin (and no credential).
    let request = reqwest::Client::new()
        .post(format!("{}/v1/envs/dev/deploy", dev.api))
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .body("{}");
    let response = send(request).await;
    assert_eq!(response.status(), 403);
    // The node's own API (logs, metrics) answers only the node's credential.
    let nodes = dev.nodes().await;
    let agent = &nodes[0].agent_url;
    let response = reqwest::get(format!("{agent}/metrics")).await.unwrap();
    assert_eq!(response.status(), 401);
    let response = reqwest::get(format!("{agent}/v1/instances/x/logs"))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = dev
        .api_client()
        .get(format!("{agent}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "not even with an admin's API token");
    // Its own names pass.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let request = client
            .get(format!("{}/v1/services", dev.api))
            .header("host", host);
        let response = send(request).await;
        assert_eq!(response.status(), 200);
    }
    // Both refusals are in the audit log, before anyone was authenticated.
    let audit = stdout(&dev.cli(&["audit", "--who", "anonymous", "--json"]));
    assert!(
        audit.contains("GET /v1/services") && audit.contains("evil.example"),
        "the refused Host is audited: {audit}"
    );
    assert!(
        audit.contains("POST /v1/envs/dev/deploy"),
        "the refused cross-site POST is audited: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_response_log_or_export_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dev_serving_hello(dir.path(), 1, "Quiet");
    let join = std::fs::read_to_string(dir.path().join("join-token")).unwrap();
    let admin = dev.admin_token();
    let admin_secret = admin.rsplit('.').next().unwrap().to_string();
    let node = std::fs::read_to_string(dir.path().join("agent/node-credential")).unwrap();
    let secrets = [
        "PRIVATE KEY",
        join.trim(),
        admin_secret.as_str(),
        node.trim(),
    ];
    // Every GET route of the API, as the admin.
    let doc: serde_json::Value = dev.api_get("/openapi.json").await.json().await.unwrap();
    let mut seen = String::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Streams (the watch, followed events, logs) are read below, for a while.
        if item.get("get").is_none()
            || path.contains("watch")
            || path.contains("logs")
            || path.contains("follow")
        {
            continue;
        }
        let path = path
            .replace("{env}", "dev")
            .replace("{service}", "hello")
            .replace("{name}", "local")
            .replace("{digest}", "sha256:00");
        seen.push_str(&dev.api_get(&path).await.text().await.unwrap());
    }
    // Every POST and PUT route, as the admin, with a body it cannot take: the error answers
    // (the drain and wake routes, which act without a body, are left out).
    let client = dev.api_client();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.contains("drain") || path.contains("wake") {
            continue;
        }
        let url = format!(
            "{}{}",
            dev.api,
            path.replace("{env}", "dev")
                .replace("{service}", "hello")
                .replace("{name}", "local")
                .replace("{id}", "hello-1-000000")
                .replace("{digest}", "sha256:00")
        );
        for method in ["post", "put"] {
            if item.get(method).is_none() {
                continue;
            }
            let request = client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .header("content-type", "application/json")
                .body("{\"not\": ");
            seen.push_str(&send(request).await.text().await.unwrap());
        }
    }
    for stream in ["/v1/watch?from=1", "/v1/events/follow"] {
        let mut stream = dev.api_get(stream).await;
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(std::time::Duration::from_millis(700), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    seen.push_str(&stdout(&dev.cli(&["logs", "hello"])));
    seen.push_str(&stdout(&dev.cli(&["events", "--limit", "1000"])));
    seen.push_str(&stdout(&dev.cli(&["audit", "--json", "--limit", "1000"])));
    assert!(seen.len() > 10_000, "the run saw the API's answers");
    for secret in secrets {
        assert!(
            !seen.contains(secret),
            "a response shows a secret ({secret})"
        );
    }
    drop(dev); // strata dev stops; its log is complete.
    let log = std::fs::read_to_string(dir.path().join("dev.log")).unwrap();
    for secret in secrets {
        assert!(!log.contains(secret), "the log shows a secret ({secret})");
    }

    // An export leaves the secrets out unless asked, and is the owner's alone.
    let export = dir.path().join("export.jsonl");
    let output = Command::new(strata_bin())
        .args(["store", "export", "--data-dir"])
        .arg(dir.path())
        .arg("--output")
        .arg(&export)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(mode(&export), 0o600);
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(text.contains("/services/dev/hello"));
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "the export shows a secret ({secret})"
        );
    }
    // Asked for, they are kept sealed under a passphrase, which must be given.
    let with_secrets = || {
        let mut command = Command::new(strata_bin());
        command
            .args(["store", "export", "--include-secrets", "--data-dir"])
            .arg(dir.path())
            .env_remove("STRATA_BACKUP_PASSPHRASE");
        command
    };
    let output = with_secrets().output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--passphrase-file"));
    let output = with_secrets()
        .env("STRATA_BACKUP_PASSPHRASE", "a long passphrase")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("\"sealed\"") && !text.contains("PRIVATE KEY"));
    for secret in secrets {
        assert!(!text.contains(secret), "a sealed export shows {secret}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_quota_refuses_deploys_and_scale_changes_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    // A deployer cannot give itself more room.
    let deployer = create_token(&dev, &["ci", "--role", "deployer", "--env", "dev"]);
    let output = cli_as(
        &dev,
        &deployer,
        &["env", "quota", "dev", "--instances", "100"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    let output = dev.cli(&["env", "quota", "dev", "--instances", "2", "--memory", "1Gi"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = dev.cli(&["env", "ls", "--json"]);
    let envs: Vec<strata_core::Environment> = serde_json::from_slice(&output.stdout).unwrap();
    let quota = envs
        .iter()
        .find(|e| e.name == "dev")
        .unwrap()
        .quota
        .unwrap();
    assert_eq!(quota.instances, Some(2));
    assert_eq!(quota.memory_bytes, Some(1 << 30));

    // Three instances do not fit in two: refused before anything is written, saying why.
    let three = hello_spec(dir.path(), 3, "Too many");
    let output = cli_as(&dev, &deployer, &["deploy", three.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("quota allows 2 instances; this would take 3 (hello 3)"),
        "{err}"
    );
    assert!(err.contains("strata env quota dev --instances 3"), "{err}");
    let output = dev.cli(&["status", "--json"]);
    assert_eq!(stdout(&output).trim(), "[]", "nothing was deployed");

    // Two fit; scaling to three by hand does not.
    let two = hello_spec(dir.path(), 2, "Fits");
    let output = cli_as(&dev, &deployer, &["deploy", two.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = cli_as(&dev, &deployer, &["scale", "hello", "3"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("quota allows 2 instances"),
        "{}",
        stderr(&output)
    );
    // Another environment has no quota.
    dev.deploy(&three, &["--env", "qa", "--detach"]);
}
