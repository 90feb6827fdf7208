//! `strata deploy` with bad specs: exit code 2 and a message with file:line:col, before any
//! contact with a control plane.

mod common;

use std::process::Command;

use common::*;

fn deploy(spec: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    std::fs::write(&path, spec).unwrap();
    let output = Command::new(strata_bin())
        .args(["deploy"])
        .arg(&path)
        // Nothing listens here: a spec error must be reported before any network call.
        .env("STRATA_ADDR", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let text = stderr(&output).replace(&path.display().to_string(), "strata.toml");
    (output.status.code(), text)
}

#[test]
fn bad_specs_exit_2_with_file_line_and_column() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "misspelt key",
            "[service.web]\ncommand = [\"x\"]\n[service.web.scale]\nreplcas = 2\n",
            &["strata.toml:4:1", "replcas", "did you mean `replicas`?"],
        ),
        (
            "wrong type",
            "[service.web]\ncommand = [\"x\"]\n[service.web.scale]\nreplicas = \"two\"\n",
            &["strata.toml:4:12", "replicas", "integer"],
        ),
        (
            "duplicate service",
            "[service.web]\ncommand = [\"x\"]\n\n[service.web]\ncommand = [\"y\"]\n",
            &["strata.toml:4:", "`web` is defined twice"],
        ),
        (
            "missing artifact",
            "[service.web]\nartifact = \"build/nothing-here\"\n",
            &[
                "strata.toml:2:",
                "artifact `build/nothing-here` does not exist",
            ],
        ),
    ];
    for (name, spec, wants) in cases {
        let (code, text) = deploy(spec);
        assert_eq!(code, Some(2), "{name}: {text}");
        for want in *wants {
            assert!(text.contains(want), "{name}: `{want}` not in:\n{text}");
        }
    }
}

#[test]
fn an_unreadable_spec_file_is_bad_input() {
    let output = Command::new(strata_bin())
        .args(["deploy", "/nonexistent/strata.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot read spec file /nonexistent/strata.toml"));
}

#[test]
fn an_unreachable_control_plane_is_an_operation_failure() {
    let output = Command::new(strata_bin())
        .args(["status"])
        .env("STRATA_ADDR", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot reach the control plane at http://127.0.0.1:9"));
}
