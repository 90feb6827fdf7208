//! End-to-end: container services through `strata dev`. A JEOS image of the example service
//! (`strata image build --jeos`, saved with `strata image save`, rewritten as a `docker save`
//! archive) deploys with `driver = "container"` and serves through the ingress, and calls a
//! process service by name through the node's mesh proxy (its one way out); the memory
//! hog's image deploys as the OCI image layout `strata image save` writes; a memory hog's
//! kill is reported as an OOM kill in the events; a file that is not an image fails the
//! deploy and says so; a container service at zero instances serves its first request after
//! a cold start.
//!
//! Needs root, iproute2 and nftables (scripts/deps.sh test). Without them the test says
//! why and skips, unless STRATA_REQUIRE_ROOT=1 (CI), where skipping fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn can_run() -> bool {
    strata_testkit::containers_available("container e2e test")
}

/// Rewrites an OCI image layout tar (what `strata image save` writes) as a classic
/// `docker save` archive: `manifest.json` (Config, RepoTags, Layers), the config as
/// `<hex>.json`, each layer as `<hex>/layer.tar`; what users of Docker already have.
fn oci_to_docker_save(oci: &Path, docker: &Path, repo_tag: &str) {
    use std::collections::BTreeMap;
    use std::io::Read;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(oci).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    let blob = |digest: &str| {
        files[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))].clone()
    };
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let mut out = tar::Builder::new(std::fs::File::create(docker).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, name, bytes).unwrap();
    };
    let config_name = format!("{config_digest}.json");
    add(&config_name, &blob(config_digest));
    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let name = format!("{digest}/layer.tar");
        add(&name, &blob(digest));
        layers.push(name);
    }
    let docker_manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [repo_tag],
        "Layers": layers,
    }]);
    add("manifest.json", docker_manifest.to_string().as_bytes());
    out.finish().unwrap();
}

fn host_tool(name: &str) -> PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not on this host"))
}

#[tokio::test(flavor = "multi_thread")]
async fn container_services_serve_and_report_oom_kills() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    // The example service, alone in its root.
    let built = build_jeos(&images, &hello_bin(), &[], "hello:1");
    assert!(built.contains("hello:1 sha256:"), "{built}");
    let oci_tar = dir.path().join("hello-oci.tar");
    save_image(&images, "hello:1", &oci_tar);
    // The service deploys the image as a `docker save` archive: the node imports that too.
    let hello_tar = dir.path().join("hello-docker.tar");
    oci_to_docker_save(&oci_tar, &hello_tar, "hello:docker");
    // A shell, for a program that eats memory.
    let cat = host_tool("cat");
    let include = ["--at", "/bin/sh", "--include", cat.to_str().unwrap()];
    build_jeos(&images, &host_tool("dash"), &include, "shell:1");
    let shell_tar = dir.path().join("shell.tar");
    save_image(&images, "shell:1", &shell_tar);

    let web = service_toml(
        "web",
        &hello_tar,
        "Hello from a container",
        r#"driver = "container""#,
    );
    let greeter = format!(
        r#"
[service.greeter]
artifact = "{process}"
[service.greeter.config]
GREETING = "Hi from a process"
[service.greeter.route]
public = false
"#,
        process = hello_bin().display()
    );
    let spec = write_file(dir.path(), "containers.toml", web + &greeter);
    let data = dir.path().join("data");
    let mut dev = Dev::start(&data);
    dev.deploy(&spec, &["--timeout", "60s"]);
    let host = "web.dev.localhost";
    let client = dev.client(&[host]);
    let body = text_of(client.get(dev.url(host, "/"))).await;
    assert!(body.contains("Hello from a container"), "{body}");
    // The container calls another service by name: its HTTP_PROXY is the node's mesh proxy
    // at the bridge's gateway, its one way out.
    let body = text_of(client.get(dev.url(host, "/call/greeter"))).await;
    assert!(
        body.contains("Hi from a process") && body.contains("(called by web)"),
        "{body}\n{}",
        dev.log()
    );

    // A memory hog: killed at its limit, and said so.
    let hog = write_file(
        dir.path(),
        "hog.toml",
        format!(
            "[service.hog]\ndriver = \"container\"\nartifact = \"{}\"\nargs = [\"-c\", \"x=$(cat /dev/urandom)\"]\n[service.hog.resources]\nmemory = \"32Mi\"\n",
            shell_tar.display()
        ),
    );
    let _ = dev.cli(&["deploy", hog.to_str().unwrap(), "--detach"]);
    // On this machine, after the rest of the suite, the first kill sometimes comes after
    // ~18 s and is not named (issue note of 2026-12-05): wait for a named one, restarts
    // included.
    let reached = "killed: memory limit 32Mi reached";
    let events = dev
        .events_until(&["hog"], reached, Duration::from_secs(60))
        .await;
    assert!(
        events.contains(reached),
        "{events}\n{}\nhog's log: {}",
        dev.log(),
        stdout(&dev.cli(&["logs", "hog", "--tail", "30"]))
    );

    // Not an image: refused at deploy (exit 2), saying what it is; web keeps serving.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not an archive at all").unwrap();
    let bad = write_file(
        dir.path(),
        "bad.toml",
        format!(
            "[service.web]\ndriver = \"container\"\nartifact = \"{}\"\n",
            junk.display()
        ),
    );
    let err = dev.deploy_fails(&bad, &[], 2);
    assert!(err.contains("is not an image"), "{err}");
    let body = text_of(client.get(dev.url(host, "/"))).await;
    assert!(body.contains("Hello from a container"), "{body}");

    // A container service that scales to zero starts at zero; its first request is held
    // while a container starts, then served.
    let lazy = write_file(
        dir.path(),
        "lazy.toml",
        format!(
            "[service.lazy]\ndriver = \"container\"\nartifact = \"{}\"\n[service.lazy.scale]\nmin = 0\nmax = 1\n[service.lazy.config]\nGREETING = \"Cold started\"\n[service.lazy.health]\npath = \"/healthz\"\ninterval = \"200ms\"\n",
            hello_tar.display()
        ),
    );
    dev.deploy(&lazy, &["--timeout", "60s"]);
    assert_eq!(dev.status("lazy").service.replicas, 0);
    let lazy_client = dev.client(&["lazy.dev.localhost"]);
    let cold = std::time::Instant::now();
    let response = send(lazy_client.get(dev.url("lazy.dev.localhost", "/"))).await;
    assert_eq!(response.status(), 200, "{}", dev.log());
    assert!(response.text().await.unwrap().contains("Cold started"));
    eprintln!("container cold start from zero: {:?}", cold.elapsed());
    assert_eq!(dev.status("lazy").service.replicas, 1);

    // kill -9 of the agent: the container keeps running (its shim and the container are not
    // in the agent's process group) and the next agent re-adopts it instead of starting another.
    let before = dev.status("web");
    let pid_before = before.instances[0].status.as_ref().and_then(|s| s.pid);
    dev.kill9();
    let dev = Dev::start(&data);
    assert!(
        dev.serves(host).await,
        "web did not serve after the agent restarted:\n{}",
        dev.log()
    );
    let after = dev.status("web");
    assert_eq!(
        after.instances[0].instance.id,
        before.instances[0].instance.id
    );
    assert_eq!(
        after.instances[0].status.as_ref().and_then(|s| s.pid),
        pid_before,
        "re-adopted, not restarted"
    );
    assert!(dev.log().contains("re-adopted"), "{}", dev.log());
}

/// A server nobody on the project wrote: Debian's redis-server, packaged with `--jeos` (its
/// binary and libraries, nothing else), deployed as a container service and used with
/// redis-cli through the node's port; and called by name, `redis:PORT`, by the example
/// service (sandboxed in its own network namespace) through the node's TCP proxy.
#[tokio::test(flavor = "multi_thread")]
async fn redis_packaged_with_jeos_serves_through_the_node() {
    if !can_run() {
        return;
    }
    let Some(redis) = ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        if std::env::var("STRATA_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
            panic!("redis-server is not installed (scripts/deps.sh test installs it)");
        }
        eprintln!("SKIPPED: redis example: redis-server is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let front = service_toml("front", &hello_bin(), "Front", "");
    let (spec, port) = redis_service(dir.path(), &redis, &front);
    let dev = Dev::start(&dir.path().join("data"));
    dev.deploy(&spec, &["--timeout", "60s"]);
    let cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let mut pong = String::new();
    for _ in 0..100 {
        pong = cli(&["ping"]);
        if pong == "PONG" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pong, "PONG", "{}", dev.log());
    assert_eq!(cli(&["set", "platform", "strata"]), "OK");
    assert_eq!(cli(&["get", "platform"]), "strata");

    // By name from another service: `GET platform` in redis' inline protocol.
    let client = dev.client(&["front.dev.localhost"]);
    let url = dev.url(
        "front.dev.localhost",
        &format!("/call-tcp/redis:{port}?send=GET%20platform"),
    );
    let mut answer = String::new();
    for _ in 0..50 {
        answer = text_of(client.get(&url)).await;
        if answer.starts_with('$') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bulk string's header: 6 bytes ("strata") follow.
    assert_eq!(answer.trim(), "$6", "{answer}\n{}", dev.log());
}
