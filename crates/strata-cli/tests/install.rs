//! `strata install`: the units it writes run. A server and an agent are started from the
//! `ExecStart=` of the units it generated (as systemd would run them), and the agent joins.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn install(args: &[&str]) -> std::process::Output {
    Command::new(common::strata_bin())
        .arg("install")
        .args(args)
        .output()
        .unwrap()
}

/// The words of the unit's `ExecStart=` (the test's paths need no quoting).
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    line.split_whitespace().map(str::to_string).collect()
}

/// Runs a unit's command; the lines it announces with each prefix (30 s at most).
fn start(command: &[String], prefixes: &[&str], log: &std::path::Path) -> (Child, Vec<String>) {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = vec![String::new(); prefixes.len()];
    while found.iter().any(String::is_empty) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                panic!(
                    "{:?} did not announce {prefixes:?}: {}",
                    command,
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        for (i, prefix) in prefixes.iter().enumerate() {
            if let Some(rest) = line.strip_prefix(prefix) {
                found[i] = rest.to_string();
            }
        }
    }
    (child, found)
}

#[test]
fn the_units_install_writes_start_a_server_and_an_agent_that_joins() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("units");
    let server_dir = root.path().join("server");
    let output = install(&[
        "server",
        "--unit-dir",
        units.to_str().unwrap(),
        "--",
        "--data-dir",
        server_dir.to_str().unwrap(),
        "--api-addr",
        "127.0.0.1:0",
    ]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let mode = std::fs::metadata(&server_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let unit = std::fs::read_to_string(units.join("strata-server.service")).unwrap();
    for line in [
        "Restart=always",
        "WantedBy=multi-user.target",
        "After=network-online.target",
    ] {
        assert!(unit.contains(line), "{unit}");
    }
    let (mut server, said) = start(
        &exec_start(&unit),
        &["api: ", "join token: "],
        &root.path().join("server.log"),
    );
    let (api, token) = (said[0].clone(), said[1].clone());

    let token_file = root.path().join("join-token");
    std::fs::write(&token_file, &token).unwrap();
    let agent_dir = root.path().join("agent");
    let flags = [
        "agent",
        "--unit-dir",
        units.to_str().unwrap(),
        "--",
        "--join",
        &api,
        "--token-file",
        token_file.to_str().unwrap(),
        "--name",
        "installed",
        "--data-dir",
        agent_dir.to_str().unwrap(),
    ];
    let output = install(&[&flags[..], &common::AGENT_ON_LOOPBACK[..]].concat());
    assert!(output.status.success(), "{}", common::stderr(&output));
    let unit = std::fs::read_to_string(units.join("strata-agent.service")).unwrap();
    assert!(unit.contains("KillMode=process"), "{unit}");
    let (mut agent, _) = start(
        &exec_start(&unit),
        &["ingress: "],
        &root.path().join("agent.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let joined = loop {
        let listed = Command::new(common::strata_bin())
            .args(["node", "ls", "--json"])
            .env("STRATA_ADDR", &api)
            .output()
            .unwrap();
        let nodes: Vec<serde_json::Value> =
            serde_json::from_slice(&listed.stdout).unwrap_or_default();
        if nodes
            .iter()
            .any(|n| n["name"] == "installed" && n["state"] == "ready")
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for child in [&mut agent, &mut server] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        joined,
        "{}",
        std::fs::read_to_string(root.path().join("agent.log")).unwrap_or_default()
    );

    // A secret on the command line, an unknown flag: refused before anything is written.
    for flags in [
        vec![
            "agent", "--print", "--", "--join", &api, "--token", "sj1.x.y",
        ],
        vec!["server", "--print", "--", "--no-such-flag"],
    ] {
        let output = install(&flags);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flags:?}: {}",
            common::stderr(&output)
        );
    }
}

/// The Debian package the project's script builds: the binary, both units reading their
/// flags from /etc/default (kept across upgrades as conffiles), the docs, the shared
/// libraries' packages as dependencies; the flags it ships are ones the commands accept.
#[test]
fn the_debian_package_holds_the_binary_units_and_flags_that_parse() {
    let out = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/package-deb.sh");
    let built = Command::new("bash")
        .arg(&script)
        .arg("--binary")
        .arg(common::strata_bin())
        .arg("--out")
        .arg(out.path())
        .args(["--compress", "none"])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", common::stderr(&built));
    let package = common::stdout(&built).trim().to_string();
    assert!(package.ends_with(".deb"), "{package}");
    let field = |name: &str| {
        common::stdout(
            &Command::new("dpkg-deb")
                .args(["--field", &package, name])
                .output()
                .unwrap(),
        )
        .trim()
        .to_string()
    };
    assert_eq!(field("Package"), "strata");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert!(field("Depends").contains("libc6"), "{}", field("Depends"));

    let root = out.path().join("root");
    let extracted = Command::new("dpkg-deb")
        .args(["-x", &package])
        .arg(&root)
        .output()
        .unwrap();
    assert!(extracted.status.success(), "{}", common::stderr(&extracted));
    for role in ["server", "agent"] {
        let unit =
            std::fs::read_to_string(root.join(format!("lib/systemd/system/strata-{role}.service")))
                .unwrap();
        assert!(
            unit.contains(&format!("EnvironmentFile=/etc/default/strata-{role}"))
                && unit.contains(&format!(
                    "ExecStart=/usr/bin/strata {role} $STRATA_{}_FLAGS",
                    role.to_uppercase()
                )),
            "{unit}"
        );
        // The flags shipped parse as `strata ROLE` flags.
        let defaults =
            std::fs::read_to_string(root.join(format!("etc/default/strata-{role}"))).unwrap();
        let flags = defaults
            .lines()
            .find_map(|l| l.split_once("_FLAGS=").map(|(_, v)| v.trim_matches('"')))
            .unwrap();
        let mut args = vec![role.to_string(), "--print".into(), "--".into()];
        args.extend(flags.split_whitespace().map(str::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = install(&args);
        assert!(
            output.status.success(),
            "{role}: {flags}: {}",
            common::stderr(&output)
        );
    }
    let binary = root.join("usr/bin/strata");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert!(common::stdout(&version).contains(env!("CARGO_PKG_VERSION")));
    assert!(root.join("usr/share/doc/strata/operations.md").exists());
}
