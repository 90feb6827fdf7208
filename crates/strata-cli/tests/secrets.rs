//! Secrets end to end, through the CLI and a real `strata dev` (server, agent, exec
//! instances): set from stdin, deploy, the instance sees the value (the example answers with
//! its `GREETING`), no API answer, log line or file of the platform holds it, a new value
//! rolls the service out, the key-encryption key rotates and a restarted server still opens
//! everything.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{hello_bin, stderr, stdout, strata_bin, write_file, Dev};

/// `strata secret set hello greeting` with `value` on stdin.
fn set_greeting(dev: &Dev, value: &str) -> Output {
    let mut child = Command::new(strata_bin())
        .args(["secret", "set", "hello", "greeting"])
        .env("STRATA_ADDR", &dev.api)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The example answering with the secret `greeting` as its `GREETING`.
fn spec(dir: &Path) -> std::path::PathBuf {
    let spec = format!(
        r#"
[service.hello]
artifact = "{}"
[service.hello.secrets]
greeting = {{ env = "GREETING" }}
[service.hello.health]
path = "/healthz"
interval = "200ms"
timeout = "200ms"
"#,
        hello_bin().display()
    );
    write_file(dir, "secret-hello.toml", spec)
}

/// Waits until hello answers with `greeting`.
async fn answers(dev: &Dev, greeting: &str) {
    let client = dev.client(&["hello.dev.localhost"]);
    let url = dev.url("hello.dev.localhost", "/");
    for _ in 0..300 {
        if let Ok(response) = client.get(&url).send().await {
            if response.text().await.unwrap_or_default().contains(greeting) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("hello never answered {greeting}:\n{}", dev.log());
}

/// Every file under `dir` whose bytes hold `needle` (not below a mount point: an instance's
/// root is no file of the platform's).
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts: Vec<std::path::PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(std::path::PathBuf::from)
        .collect();
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path != dir && mounts.contains(&path) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_set_from_stdin_reaches_the_instance_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let dev = Dev::start(&data);
    let set = set_greeting(&dev, "Psst-v1");
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(
        stdout(&set).contains("version 1 (no release runs with it yet"),
        "{}",
        stdout(&set)
    );
    dev.deploy(&spec(dir.path()), &[]);
    answers(&dev, "Psst-v1").await;

    // No answer of the API, log line or platform file holds the value.
    let listed = dev.cli(&["secret", "ls", "hello", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let infos: Vec<strata_core::secret::SecretInfo> =
        serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!((infos[0].name.as_str(), infos[0].version), ("greeting", 1));
    let table = stdout(&dev.cli(&["secret", "ls", "hello"]));
    assert!(
        table.contains("greeting") && table.contains("admin"),
        "{table}"
    );
    for args in [
        &["status", "hello", "--json"][..],
        &["events", "--json"],
        &["audit", "--json"],
        &["secret", "ls", "hello", "--json"],
    ] {
        let output = dev.cli(args);
        let text = format!("{}{}", stdout(&output), stderr(&output));
        assert!(
            !text.contains("Psst"),
            "`strata {}` shows it: {text}",
            args.join(" ")
        );
    }
    assert!(!dev.log().contains("Psst"), "the server or agent logged it");
    let holding = files_holding(&data, b"Psst");
    assert!(holding.is_empty(), "files holding the value: {holding:?}");

    // A new value rolls the service out.
    let set = set_greeting(&dev, "Psst-v2");
    assert!(
        stdout(&set).contains("version 2; release 2 rolls it out"),
        "{}",
        stdout(&set)
    );
    answers(&dev, "Psst-v2").await;

    // In use, it cannot be removed; a bad name is bad input.
    let rm = dev.cli(&["secret", "rm", "hello", "greeting"]);
    assert_eq!(rm.status.code(), Some(1), "{}", stderr(&rm));
    assert!(
        stderr(&rm).contains("without `secrets.greeting`"),
        "{}",
        stderr(&rm)
    );
    let bad = dev.cli(&["secret", "rm", "hello", "no/such"]);
    assert_ne!(bad.status.code(), Some(0));

    // The key-encryption key rotates; a restarted server opens the data key with it.
    let keyfile = std::fs::read_to_string(data.join("secrets.key")).unwrap();
    let rotated = dev.cli(&["secret", "rotate-key", "--json"]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let rotated: strata_core::secret::KeyRotated = serde_json::from_slice(&rotated.stdout).unwrap();
    assert!(!keyfile.contains(&rotated.kek) && keyfile.contains(&rotated.previous));
    drop(dev);
    let dev = Dev::start(&data);
    let set = set_greeting(&dev, "Psst-v3");
    assert!(set.status.success(), "{}", stderr(&set));
    answers(&dev, "Psst-v3").await;
    let holding = files_holding(&data, b"Psst");
    assert!(holding.is_empty(), "files holding a value: {holding:?}");

    // A backup carries them, sealed (no passphrase needed for that: the key file opens them).
    let backup = dir.path().join("backup.jsonl");
    let exported = dev.cli(&["store", "export", "--output", backup.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(
        stderr(&exported).contains("secrets key file"),
        "{}",
        stderr(&exported)
    );
    let text = std::fs::read_to_string(&backup).unwrap();
    assert!(text.contains("/secrets/dev/hello/greeting") && text.contains("/cluster/secrets-key"));
    assert!(!text.contains("Psst"));
}
