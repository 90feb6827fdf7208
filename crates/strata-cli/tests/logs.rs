//! The server's log, for machines and people: no colour codes when it is not written to a
//! terminal, fields as plain values, and one JSON object a line with `--log-format json`.

mod common;

use std::time::{Duration, Instant};

use strata_testkit::ServerProcess;

/// The server's log once it says `needle` (bounded: 30 s).
fn log_with(server: &ServerProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = server.log();
        if log.contains(needle) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_server_log_is_plain_off_a_terminal_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let text = ServerProcess::start(&common::strata_bin(), &dir.path().join("text"), None);
    let log = log_with(&text, "leads (term");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    assert!(
        !log.contains("Some(") && !log.contains("=None"),
        "Rust debug values in fields:\n{log}"
    );
    drop(text);

    let json = ServerProcess::start_with(
        &common::strata_bin(),
        &dir.path().join("json"),
        None,
        &["--log-format", "json"],
    );
    let log = log_with(&json, "leads (term");
    let mut lines = 0;
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["message"].is_string(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines >= 2, "{log}");
    assert!(
        log.contains(r#""kind":"leader.elected""#),
        "fields are the object's own keys:\n{log}"
    );
}
