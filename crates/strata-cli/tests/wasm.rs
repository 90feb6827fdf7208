//! End-to-end: wasm services through `strata dev`: a `wasi:http/proxy` component deployed from
//! a spec serves through the ingress, calls another service by name through the platform's
//! outbound hook, is refused anything else, and a bad artifact fails the deploy with a message
//! that says what it is, with nothing running disturbed.

mod common;

use std::path::PathBuf;

use common::*;

/// The example guest, built by examples/hello-wasm/build.sh (scripts/test.sh runs it).
fn hello_wasm() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/hello-wasm/build/hello.wasm");
    assert!(
        path.exists(),
        "{} is missing: run examples/hello-wasm/build.sh (scripts/test.sh does)",
        path.display()
    );
    path.canonicalize().unwrap()
}

fn wasm_spec(dir: &std::path::Path, artifact: &std::path::Path) -> PathBuf {
    let greeter = service_toml(
        "greeter",
        artifact,
        "Hello from the greeter",
        "driver = \"wasm\"\n[service.greeter.wasm]\nrequest_timeout = \"500ms\"\nmax_concurrency = 4",
    );
    let front = format!(
        r#"
[service.front]
driver = "wasm"
artifact = "{artifact}"
[service.front.config]
GREETING = "Hello from the front"
"#,
        artifact = artifact.display()
    );
    write_file(dir, "wasm.toml", greeter + &front)
}

#[tokio::test(flavor = "multi_thread")]
async fn wasm_services_serve_call_each_other_by_name_and_bad_artifacts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let spec = wasm_spec(dir.path(), &hello_wasm());
    dev.deploy(&spec, &[]);

    let greeter = "greeter.dev.localhost";
    let front = "front.dev.localhost";
    let client = dev.client(&[greeter, front]);
    let body = text_of(client.get(dev.url(greeter, "/"))).await;
    assert_eq!(body, "Hello from wasm: Hello from the greeter\n");

    // A call by name, routed by the platform to a healthy greeter.
    let body = text_of(client.get(dev.url(front, "/call/greeter"))).await;
    assert!(body.contains("Hello from the greeter"), "{body}");

    // Anything else is refused to the guest.
    let body = text_of(client.get(dev.url(front, "/call/example.com"))).await;
    assert!(
        body.to_lowercase().contains("denied") || body.to_lowercase().contains("refused"),
        "{body}"
    );
    assert!(dev.log().contains("outbound call refused"), "{}", dev.log());
    // ... and recorded in the cluster's event log, naming caller and destination.
    let mut events = String::new();
    for _ in 0..50 {
        events = dev
            .api_get("/v1/events?service=front")
            .await
            .text()
            .await
            .unwrap();
        if events.contains("outbound.refused") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        events.contains("outbound.refused") && events.contains("front called http://example.com"),
        "{events}"
    );

    // `[service.greeter.wasm] request_timeout = "500ms"`: a guest that never returns is cut
    // off with 504 at its deadline while the same service answers other requests.
    let started = std::time::Instant::now();
    let looping = client.get(dev.url(greeter, "/loop")).send();
    let other = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        client.get(dev.url(greeter, "/")).send().await.unwrap()
    };
    let (looping, other) = tokio::join!(looping, other);
    let looping = looping.unwrap();
    assert_eq!(looping.status(), 504, "{:?}", looping.text().await);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "504 after {:?}, deadline was 500ms",
        started.elapsed()
    );
    assert_eq!(other.status(), 200);

    // Bad artifacts fail the deploy (exit 2) and say what they are; greeter keeps serving.
    let cases: &[(&str, &[u8], &str)] = &[
        ("random.wasm", b"definitely not wasm", "not"),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "core WebAssembly module, not a component",
        ),
    ];
    for (name, bytes, says) in cases {
        let artifact = write_file(dir.path(), name, bytes);
        let bad = write_file(
            dir.path(),
            &format!("{name}.toml"),
            format!(
                "[service.greeter]\ndriver = \"wasm\"\nartifact = \"{}\"\n",
                artifact.display()
            ),
        );
        let err = dev.deploy_fails(&bad, &["--timeout", "30s"], 2);
        assert!(err.contains(says), "{name}: {err}");
    }
    let status = dev.status("greeter");
    assert_eq!(
        status.service.desired_release, 1,
        "no release was made for a bad artifact"
    );
    let body = text_of(client.get(dev.url(greeter, "/"))).await;
    assert_eq!(body, "Hello from wasm: Hello from the greeter\n");

    // Restart `strata dev` on the same data directory: the instances come back from the
    // precompiled cache, nothing is compiled again.
    drop(dev);
    let log_before = std::fs::read_to_string(dir.path().join("dev.log")).unwrap_or_default();
    assert!(log_before.contains("wasm component compiled and cached"));
    let dev = Dev::start(dir.path());
    let served = dev.serves(greeter).await;
    let log_after = dev.log()[log_before.len()..].to_string();
    assert!(
        served,
        "greeter did not serve after a restart:\n{log_after}"
    );
    assert!(
        log_after.contains("loaded from the precompiled cache (no compilation)"),
        "{log_after}"
    );
    assert!(
        !log_after.contains("compiled and cached"),
        "recompiled after a restart:\n{log_after}"
    );
}
