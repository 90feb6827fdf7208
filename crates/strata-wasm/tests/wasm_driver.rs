//! The wasm driver end to end: real wasmtime, the real hello-wasm guest (built by
//! examples/hello-wasm/build.sh when missing), real HTTP on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use strata_runtime::{Driver, InstanceHandle};
use strata_wasm::{inspect_component, LoadSource, NoOutbound, WasmArtifactError, WasmDriver};

/// Every test ends within this, whatever happens.
const TEST_LIMIT: Duration = Duration::from_secs(240);

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("the test took too long");
}

fn driver() -> WasmDriver {
    WasmDriver::with_router(host(), Arc::new(NoOutbound))
}

async fn start(
    driver: &WasmDriver,
    dir: &std::path::Path,
    name: &str,
    config: &[(&str, &str)],
) -> (Box<dyn InstanceHandle>, u16) {
    let port = free_port();
    let handle = driver
        .start(&spec(dir, name, &hello_wasm(), port, config))
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    (handle, port)
}

/// `name` started with `config` by a driver of its own, in a new directory (kept as long as
/// the returned one is).
async fn start_alone(
    name: &str,
    config: &[(&str, &str)],
) -> (tempfile::TempDir, Box<dyn InstanceHandle>, u16) {
    let dir = tempfile::tempdir().unwrap();
    let (handle, port) = start(&driver(), dir.path(), name, config).await;
    (dir, handle, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_guest_with_its_config_and_nothing_else() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let driver = driver();
        let (handle, port) = start(
            &driver,
            dir.path(),
            "hello",
            &[
                ("GREETING", "hi from the test"),
                (LIMIT_DEADLINE_MS, "5000"),
            ],
        )
        .await;
        assert_eq!(handle.pid(), None);
        assert_eq!(handle.record(), serde_json::Value::Null);

        let reply = get(port, "/").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "Hello from wasm: hi from the test\n");
        let health = get(port, "/healthz").await;
        assert_eq!((health.status, health.body.as_str()), (200, "ok"));

        // The guest's environment is its config: not the driver's plumbing, not the agent's.
        let env = get(port, "/env").await.body;
        let names: Vec<&str> = env.lines().collect();
        assert!(names.contains(&"GREETING"), "{env}");
        assert!(names.contains(&"STRATA_SERVICE"), "{env}");
        for hidden in ["HOST", "PORT", "PATH", "HOME"] {
            assert!(
                !names.contains(&hidden),
                "{hidden} leaked into the guest: {env}"
            );
        }

        let exit = handle.stop(Duration::from_secs(5)).await;
        assert_eq!(exit.code, Some(0));
        assert_eq!(handle.wait().await, exit);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "still listening after stop"
        );
        adopted_is_none(&driver).await;
    })
    .await;
}

async fn adopted_is_none(driver: &WasmDriver) {
    assert!(driver
        .adopt("hello-1", &serde_json::Value::Null)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_gets_504_at_its_deadline_while_others_are_served() {
    bounded(async {
        let deadline = Duration::from_millis(1500);
        let (dir, handle, port) = start_alone(
            "looper",
            &[("GREETING", "still here"), (LIMIT_DEADLINE_MS, "1500")],
        )
        .await;
        // Warm up (first request after start) so timings below are the guest's.
        assert_eq!(get(port, "/").await.status, 200);

        let started = Instant::now();
        let looping = tokio::spawn(async move { get(port, "/loop").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // While one instance spins, others are served.
        for _ in 0..3 {
            let reply = get(port, "/").await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_eq!(reply.body, "Hello from wasm: still here\n");
        }
        assert!(!looping.is_finished(), "the loop ended too early");

        let reply = looping.await.unwrap();
        let took = started.elapsed();
        assert_eq!(reply.status, 504, "{}", reply.body);
        assert!(reply.body.contains("deadline of 1500 ms"), "{}", reply.body);
        assert!(
            took >= deadline - Duration::from_millis(50),
            "504 after {took:?}"
        );
        assert!(
            took < deadline + Duration::from_secs(3),
            "504 only after {took:?}"
        );

        assert_eq!(get(port, "/").await.status, 200);
        log_contains(
            &dir.path().join("looper.log"),
            "exceeded the deadline of 1500 ms",
        )
        .await;
        handle.stop(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hungry_guest_is_stopped_at_its_limit() {
    bounded(async {
        let (dir, handle, port) = start_alone(
            "hungry",
            &[
                (LIMIT_MEMORY_BYTES, "16777216"),
                (LIMIT_DEADLINE_MS, "20000"),
            ],
        )
        .await;
        let reply = get(port, "/alloc").await;
        assert_eq!(reply.status, 500, "{}", reply.body);
        assert!(reply.body.contains("ran out of memory"), "{}", reply.body);
        assert!(
            reply.body.contains(&(16u64 << 20).to_string()),
            "{}",
            reply.body
        );
        let log = log_contains(&dir.path().join("hungry.log"), "memory limit reached").await;
        assert!(log.contains("resources.memory"), "{log}");
        // The service keeps serving.
        assert_eq!(get(port, "/").await.status, 200);
        assert_eq!(get(port, "/healthz").await.body, "ok");
        handle.stop(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_500_with_its_message_in_the_log() {
    bounded(async {
        let (dir, handle, port) = start_alone("trapper", &[]).await;
        let reply = get(port, "/trap").await;
        assert_eq!(reply.status, 500, "{}", reply.body);
        assert!(reply.body.contains("trapped"), "{}", reply.body);
        assert!(reply.body.contains("unreachable"), "{}", reply.body);
        let log_path = dir.path().join("trapper.log");
        // The guest's own panic message (its stderr) and the driver's line about the trap.
        let log = log_contains(&log_path, "/trap asked for a panic").await;
        let log = if log.contains("trap: ") {
            log
        } else {
            log_contains(&log_path, "trap: ").await
        };
        assert!(log.contains("GET /trap"), "{log}");
        assert_eq!(get(port, "/healthz").await.status, 200);
        handle.stop(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_call_each_other_by_name_and_nothing_else() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        // The callee: the same component, another config.
        let callee_driver = driver();
        let (callee, callee_port) = start(
            &callee_driver,
            dir.path(),
            "backend",
            &[("GREETING", "from the backend")],
        )
        .await;

        let router = TestRouter::new(&[(
            "backend",
            format!("127.0.0.1:{callee_port}").parse().unwrap(),
        )]);
        let caller_driver = WasmDriver::with_router(host(), router.clone());
        let (caller, port) = start(&caller_driver, dir.path(), "frontend", &[]).await;

        let reply = get(port, "/call/backend").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "Hello from wasm: from the backend\n");
        // Again: through the pooled connection.
        assert_eq!(get(port, "/call/backend").await.body, reply.body);

        for outside in ["1.1.1.1", "example.com"] {
            let reply = get(port, &format!("/call/{outside}")).await;
            assert_eq!(reply.status, 502, "{}", reply.body);
            assert!(reply.body.contains("HttpRequestDenied"), "{}", reply.body);
        }
        assert_eq!(
            *router.refused.lock().unwrap(),
            vec![
                "http://1.1.1.1".to_string(),
                "http://example.com".to_string()
            ]
        );
        log_contains(
            &dir.path().join("frontend.log"),
            "http://example.com refused",
        )
        .await;

        // A bare name no service answers to: not found, and not an outside address.
        let reply = get(port, "/call/nosuch").await;
        assert_eq!(reply.status, 502, "{}", reply.body);
        assert!(reply.body.contains("DestinationNotFound"), "{}", reply.body);
        assert_eq!(router.refused.lock().unwrap().len(), 2);

        caller.stop(Duration::from_secs(5)).await;
        callee.stop(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_cap_requests_wait() {
    bounded(async {
        let (_dir, handle, port) = start_alone(
            "single",
            &[(LIMIT_MAX_CONCURRENCY, "1"), (LIMIT_DEADLINE_MS, "1000")],
        )
        .await;
        assert_eq!(get(port, "/").await.status, 200);
        let looping = tokio::spawn(async move { get(port, "/loop").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let reply = get(port, "/").await;
        let waited = started.elapsed();
        assert_eq!(reply.status, 200, "{}", reply.body);
        // It could only run once the looping instance was discarded.
        assert!(
            waited >= Duration::from_millis(500),
            "served after {waited:?}"
        );
        assert_eq!(looping.await.unwrap().status, 504);
        handle.stop(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_requests_finish_within_grace_then_aborts() {
    bounded(async {
        let (dir, handle, port) = start_alone("stopper", &[(LIMIT_DEADLINE_MS, "60000")]).await;
        assert_eq!(get(port, "/").await.status, 200);
        let looping = tokio::spawn(async move {
            let client = client();
            let uri: http::Uri = format!("http://127.0.0.1:{port}/loop").parse().unwrap();
            client.get(uri).await.map(|r| r.status().as_u16())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let exit = handle.stop(Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert_eq!(exit.signal, Some(9), "{exit:?}");
        assert!(took < Duration::from_secs(5), "stop took {took:?}");
        assert_eq!(handle.wait().await, exit);
        // The aborted request got no answer, or a 503; never a hang.
        let outcome = tokio::time::timeout(Duration::from_secs(10), looping)
            .await
            .expect("the looping request hung")
            .unwrap();
        assert!(matches!(outcome, Err(_) | Ok(503)), "{outcome:?}");
        log_contains(&dir.path().join("stopper.log"), "were aborted").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_artifacts_get_messages_that_say_which_and_how_to_fix() {
    bounded(async {
        let host = host();

        let random: Vec<u8> = (0u32..4096)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let error = host.validate_component(&random).await.unwrap_err();
        assert!(
            matches!(error, WasmArtifactError::NotWasm { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("not WebAssembly"), "{error}");

        // (module (func (export "run")))
        let core_module: &[u8] = &[
            0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
            0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
            0x03, 0x02, 0x01, 0x00, // function section
            0x07, 0x07, 0x01, 0x03, b'r', b'u', b'n', 0x00, 0x00, // export "run"
            0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section
        ];
        let error = host.validate_component(core_module).await.unwrap_err();
        assert!(matches!(error, WasmArtifactError::CoreModule), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("wasm32-wasip2") && text.contains("wasm-tools component new"),
            "{text}"
        );

        let cli = std::fs::read(hello_cli_wasm()).unwrap();
        let error = host.validate_component(&cli).await.unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, WasmArtifactError::MissingHandler { .. }),
            "{text}"
        );
        assert!(
            text.contains("does not export wasi:http/incoming-handler"),
            "{text}"
        );
        assert!(text.contains("wasi:cli/run"), "{text}");
        assert!(text.contains("wasi:cli/command"), "{text}");
        assert!(text.contains("wasi:http/proxy"), "{text}");

        // A component cut short: a component header, then garbage.
        let hello = std::fs::read(hello_wasm()).unwrap();
        let mut broken = hello[..hello.len() / 2].to_vec();
        broken.truncate(broken.len().max(8));
        let error = host.validate_component(&broken).await.unwrap_err();
        assert!(
            matches!(error, WasmArtifactError::Invalid { .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("not valid or cannot be compiled"),
            "{error}"
        );

        // The real thing passes, and the static check sees its export.
        host.validate_component(&hello).await.unwrap();
        let info = inspect_component(&hello).unwrap();
        assert!(
            info.exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2")),
            "{info:?}"
        );

        // Through the driver, a bad artifact fails the start with the same message.
        let dir = tempfile::tempdir().unwrap();
        let driver = WasmDriver::with_router(host.clone(), Arc::new(NoOutbound));
        let port = free_port();
        let error = driver
            .start(&spec(dir.path(), "cli", &hello_cli_wasm(), port, &[]))
            .await
            .err()
            .expect("a command component must not start")
            .to_string();
        assert!(
            error.contains("does not export wasi:http/incoming-handler"),
            "{error}"
        );
        log_contains(
            &dir.path().join("cli.log"),
            "does not export wasi:http/incoming-handler",
        )
        .await;
        let junk = dir.path().join("junk.wasm");
        std::fs::write(&junk, b"#!/bin/sh\necho not wasm\n").unwrap();
        let error = driver
            .start(&spec(dir.path(), "junk", &junk, port, &[]))
            .await
            .err()
            .expect("junk must not start")
            .to_string();
        assert!(error.contains("not WebAssembly"), "{error}");
        // Nothing was left listening.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

        // Limits that make no sense are refused at start, naming the spec's key.
        let error = driver
            .start(&spec(
                dir.path(),
                "bad",
                &hello_wasm(),
                port,
                &[(LIMIT_MEMORY_BYTES, "1024")],
            ))
            .await
            .err()
            .expect("a bad limit must not start")
            .to_string();
        assert!(error.contains("resources.memory"), "{error}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_the_precompiled_component_without_compiling() {
    bounded(async {
        let cache = tempfile::tempdir().unwrap();
        let wasm = hello_wasm();
        let digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

        let first = host_at(cache.path());
        let (_, source) = first.load_with_source(digest, &wasm).await.unwrap();
        assert_eq!(source, LoadSource::Compiled);
        assert_eq!(first.stats().compiled, 1);
        let cached = first.cache_path(digest);
        assert!(cached.exists(), "no cache file at {}", cached.display());
        let name = cached.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(digest) && name.ends_with(".cwasm"),
            "{name}"
        );
        // Same host, same digest: the cache.
        let (_, source) = first.load_with_source(digest, &wasm).await.unwrap();
        assert_eq!(source, LoadSource::Cache);
        drop(first);

        // "After a restart": a new host on the same directory compiles nothing.
        let second = host_at(cache.path());
        assert_eq!(second.cache_path(digest), cached, "same engine, same key");
        let started = Instant::now();
        let (_, source) = second.load_with_source(digest, &wasm).await.unwrap();
        let took = started.elapsed();
        assert_eq!(source, LoadSource::Cache);
        assert_eq!(second.stats().compiled, 0);
        assert_eq!(second.stats().cache_hits, 1);
        assert!(took < Duration::from_secs(2), "cache load took {took:?}");

        // And the driver serves from it, saying so in the instance log.
        let dir = tempfile::tempdir().unwrap();
        let driver = WasmDriver::with_router(second.clone(), Arc::new(NoOutbound));
        let port = free_port();
        let mut start_spec = spec(dir.path(), "cached", &wasm, port, &[("GREETING", "cached")]);
        start_spec
            .env
            .insert(strata_wasm::ENV_ARTIFACT_DIGEST.into(), digest.into());
        let handle = driver.start(&start_spec).await.unwrap();
        assert_eq!(second.stats().compiled, 0);
        assert_eq!(get(port, "/").await.body, "Hello from wasm: cached\n");
        log_contains(
            &dir.path().join("cached.log"),
            "precompiled, from the cache",
        )
        .await;
        handle.stop(Duration::from_secs(5)).await;

        // A damaged cache file is not trusted: it is compiled again. It is even rewritten in
        // place while the previous host's component came from it: loads copy the file, so
        // nothing that runs can see it change.
        std::fs::write(&cached, b"garbage").unwrap();
        let third = host_at(cache.path());
        let (_, source) = third.load_with_source(digest, &wasm).await.unwrap();
        assert_eq!(source, LoadSource::Compiled);
        assert_eq!(third.stats().compiled, 1);
    })
    .await;
}

#[test]
fn the_two_service_example_spec_is_valid() {
    let path = example_dir().join("strata.toml");
    let source = std::fs::read_to_string(&path).unwrap();
    let spec = strata_core::spec::parse("examples/hello-wasm/strata.toml", &source)
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    for service in &spec.services {
        assert_eq!(service.driver, strata_core::spec::DriverKind::Wasm);
        assert_eq!(service.artifact.as_deref(), Some("build/hello.wasm"));
    }
}
