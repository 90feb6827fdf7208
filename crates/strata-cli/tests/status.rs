//! Honest status, end to end: what `strata deploy`, `strata status` and `strata events` say
//! about programs that misbehave (the test kit's `misbehave`), run by a real `strata dev`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{free_port, misbehave_bin, Dev};
use strata_core::api::ServiceStatus;
use strata_core::InstanceState;

/// A spec of one `misbehave` service, written into `dir`.
fn misbehave_spec(dir: &Path, name: &str, args: &[&str], extra: &str) -> PathBuf {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let spec = format!(
        "[service.{name}]\nartifact = \"{}\"\nargs = [{}]\n{extra}",
        misbehave_bin().display(),
        args.join(", ")
    );
    common::write_file(dir, &format!("{name}-{}.toml", rand_suffix()), spec)
}

/// The id of `status`'s instance of `release`.
fn id_of_release(status: &ServiceStatus, release: u64) -> String {
    let view = status
        .instances
        .iter()
        .find(|v| v.instance.release == release);
    view.unwrap().instance.id.to_string()
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A program that listens, passes its first checks, then exits after 200 ms is never called
/// serving: the deploy fails as a crash loop with its last words.
#[tokio::test(flavor = "multi_thread")]
async fn a_program_that_exits_soon_after_listening_is_never_serving() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let spec = misbehave_spec(dir.path(), "brief", &["exit-after", "200"], "");
    let err = dev.deploy_fails(&spec, &["--timeout", "60s"], 1);
    assert!(!err.contains("is serving"), "{err}");
    assert!(err.contains("crash-looping"), "{err}");
    assert!(err.contains("exited with code 1"), "{err}");
    assert!(err.contains("fatal: invalid configuration"), "{err}");
    assert_eq!(dev.status("brief").available, 0);
}

/// A program listening on another port than `PORT`: the deploy's timeout says, for the
/// instance, that nothing listens on its port and what it listens on instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_program_on_the_wrong_port_is_named_with_what_it_listens_on() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let wrong_port = free_port();
    let spec = misbehave_spec(
        dir.path(),
        "deaf",
        &["wrong-port", &wrong_port.to_string()],
        "",
    );
    let err = dev.deploy_fails(&spec, &["--timeout", "6s"], 1);
    assert!(
        err.contains("release 1 did not finish rolling out within 6s"),
        "{err}"
    );
    // On its address: 127.0.0.1 unsandboxed, 0.0.0.0 in its own network namespace.
    let expected = format!(":{wrong_port})");
    assert!(err.contains("nothing listens on PORT="), "{err}");
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("starting"), "{err}");
    let status = dev.status("deaf");
    let message = &status.instances[0].status.as_ref().unwrap().message;
    assert!(message.contains(&expected), "{message}");
}

/// A program that hangs while it keeps running is restarted by its liveness check (it was
/// only taken out of routing before).
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_program_is_restarted_by_its_liveness_check() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let spec = misbehave_spec(
        dir.path(),
        "hangs",
        &["hang-after", "1500"],
        "min_ready = \"0s\"\n[service.hangs.liveness]\npath = \"/alive\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\nunhealthy_threshold = 2\n",
    );
    dev.deploy(&spec, &["--timeout", "30s"]);
    let restarted = "restarted: liveness check failed 2 times in a row";
    let events = dev
        .events_until(
            &["hangs", "--limit", "100"],
            restarted,
            Duration::from_secs(20),
        )
        .await;
    assert!(events.contains(restarted), "{events}\n{}", dev.log());
    assert!(events.contains("timed out after 200 ms"), "{events}");
    // And it was started again, in place.
    let restarted = |dev: &Dev| {
        let status = dev.status("hangs");
        status.instances[0]
            .status
            .as_ref()
            .is_some_and(|s| s.restarts >= 1)
    };
    dev.eventually(
        Duration::from_secs(10),
        "the hung instance restarts",
        || restarted(&dev),
    )
    .await;
}

/// A crash-looping release with a fixed port does not keep its replacement from being placed;
/// and a service that wants a port a serving instance holds is told which instance holds it.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_holds_no_port_and_a_port_conflict_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let port = free_port();
    let fixed = format!("port = {port}\n");
    let crashing = misbehave_spec(dir.path(), "fixed", &["exit-after", "100"], &fixed);
    dev.deploy(&crashing, &["--detach"]);
    dev.eventually(Duration::from_secs(20), "release 1 crash-loops", || {
        dev.status("fixed").instances.iter().any(|v| {
            v.state() == InstanceState::Backoff
                && v.status.as_ref().is_some_and(|s| s.restarts >= 2)
        })
    })
    .await;
    let fixed_spec = misbehave_spec(dir.path(), "fixed", &["serve"], &fixed);
    dev.deploy(&fixed_spec, &["--timeout", "30s"]);
    let status = dev.status("fixed");
    assert!(common::rolled_out_to(&status, 2));
    let holder = id_of_release(&status, 2);

    // Another service on the same fixed port of the only node.
    let other = misbehave_spec(dir.path(), "other", &["serve"], &fixed);
    let err = dev.deploy_fails(&other, &["--timeout", "20s"], 1);
    let expected = format!("port {port} is held by instance {holder} (dev/fixed release 2)");
    assert!(err.contains(&expected), "{err}");
}

/// `strata logs -f` follows the service, not the instances it started with: a rollout's new
/// instance joins the stream, the replaced one leaves it, each with a marker line.
#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_the_service_across_a_rollout() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let one = common::hello_spec(dir.path(), 1, "One");
    dev.deploy(&one, &[]);
    let first = dev.status("hello").instances[0].instance.id.clone();
    let mut follower = std::process::Command::new(common::strata_bin())
        .args(["logs", "-f", "hello"])
        .env("STRATA_ADDR", &dev.api)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let two = common::hello_spec(dir.path(), 1, "Two, changed");
    dev.deploy(&two, &[]);
    let second = id_of_release(&dev.status("hello"), 2);
    let wanted = [
        format!("[{first}] hello: listening on"),
        format!("--- {second} joined: release 2 on node "),
        format!("[{second}] hello: listening on"),
        format!("--- {first} left ---"),
    ];
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wanted
        .iter()
        .all(|w| seen.iter().any(|l: &String| l.starts_with(w)))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let still_following = follower.try_wait().unwrap().is_none();
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(still_following, "`strata logs -f` ended during the rollout");
    for w in &wanted {
        assert!(
            seen.iter().any(|l| l.starts_with(w)),
            "`strata logs -f` never printed {w:?}; it printed:\n{}",
            seen.join("\n")
        );
    }
}

/// A program that cannot start fails at once, saying why and what to fix, in the deploy's
/// error and the instance's status.
#[tokio::test(flavor = "multi_thread")]
async fn a_program_that_cannot_start_says_why() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    let plain = dir.path().join("notes.txt");
    std::fs::write(&plain, "not a program\n").unwrap();
    let foreign = dir.path().join("foreign");
    // An ELF header for another machine (s390, big-endian): executable, but not here.
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 2, 1, 0];
    elf.resize(64, 0);
    elf[18] = 0;
    elf[19] = 22;
    std::fs::write(&foreign, elf).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
    let table = [
        ("plain", plain, "it is not executable (chmod +x it)"),
        ("foreign", foreign, "not a program for this machine"),
    ];
    for (name, program, expected) in table {
        let spec = common::write_file(
            dir.path(),
            &format!("{name}.toml"),
            format!("[service.{name}]\ncommand = [\"{}\"]\n", program.display()),
        );
        let started = Instant::now();
        let err = dev.deploy_fails(&spec, &["--timeout", "60s"], 1);
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name}: the deploy waited {:?}",
            started.elapsed()
        );
        let status = dev.status(name);
        let message = &status.instances[0].status.as_ref().unwrap().message;
        assert!(message.contains(expected), "{name}: {message}");
    }
}
