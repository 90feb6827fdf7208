//! Nothing left behind: counts what Strata makes on the host (cgroups in every hierarchy,
//! `strata-*` network namespaces and their registry, host-side veths, `mesh_ports` elements,
//! container root mounts) before and after a series of deploys, deletes, an OOM kill and
//! kill -9s of `strata dev`, including one whose data directory is then deleted, and finds the
//! same counts.
//!
//! Alone in its test binary: the counts are host-wide, and cargo runs test binaries one after
//! another. Needs root, iproute2 and nftables (scripts/deps.sh test); without them it says
//! why and skips, unless STRATA_REQUIRE_ROOT=1 (CI), where skipping fails.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// What Strata holds on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Footprint {
    cgroups: Vec<String>,
    namespaces: Vec<String>,
    registry: Vec<String>,
    veths: Vec<String>,
    mesh_ports: Vec<u64>,
    root_mounts: Vec<String>,
}

fn names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

fn footprint() -> Footprint {
    let mut cgroups = Vec::new();
    for hierarchy in names(Path::new("/sys/fs/cgroup"), "") {
        for cgroup in names(
            &Path::new("/sys/fs/cgroup").join(&hierarchy).join("strata"),
            "",
        ) {
            let dir = Path::new("/sys/fs/cgroup")
                .join(&hierarchy)
                .join("strata")
                .join(&cgroup);
            if dir.is_dir() {
                cgroups.push(format!("{hierarchy}/strata/{cgroup}"));
            }
        }
    }
    let listing = Command::new("nft")
        .args(["-j", "list", "set", "inet", "strata", "mesh_ports"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&listing).unwrap_or_default();
    let mesh_ports = json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["set"]["elem"].as_array())
        .flatten()
        .filter_map(|e| e.as_u64())
        .collect();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_mounts = mountinfo
        .lines()
        .filter(|l| l.contains("/work/container/rootfs") && l.contains(" - overlay "))
        .map(|l| l.split_whitespace().nth(4).unwrap_or_default().to_string())
        .collect();
    Footprint {
        cgroups,
        namespaces: names(Path::new("/var/run/netns"), "strata-"),
        registry: names(Path::new("/run/strata/netns"), "strata-"),
        veths: names(Path::new("/sys/class/net"), "sv"),
        mesh_ports,
        root_mounts,
    }
}

/// Kills every process in the instance cgroups of `instances` (a crash, or a reboot, of what
/// ran there), as the agent is not there to do it.
fn kill_containers(instances: &[String]) {
    for instance in instances {
        for hierarchy in ["memory", "pids"] {
            for cgroup in ["ctr", ""] {
                let procs = Path::new("/sys/fs/cgroup")
                    .join(hierarchy)
                    .join("strata")
                    .join(instance)
                    .join(cgroup)
                    .join("cgroup.procs");
                let pids = std::fs::read_to_string(procs).unwrap_or_default();
                for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

fn instance_ids(dev: &Dev, service: &str) -> Vec<String> {
    let status = dev.status(service);
    status
        .instances
        .iter()
        .map(|v| v.instance.id.to_string())
        .collect()
}

async fn until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_left_behind() {
    let Some((dir, tar)) = misbehave_image_dir("leak count test") else {
        return;
    };
    // A first start reaps what earlier, killed agents left; its orderly stop removes its own.
    let first = Dev::start(&dir.path().join("first"));
    first.nodes().await; // its drivers are up (the container driver reaps as it starts)
    drop(first);
    let before = footprint();

    // Deploys, an OOM kill, deletes, a kill -9 and a restart that re-adopts.
    let data = dir.path().join("a");
    let mut dev = Dev::start(&data);
    let web = container_spec(
        dir.path(),
        "web",
        &tar,
        &["serve"],
        "[service.web.scale]\nreplicas = 2\n",
    );
    dev.deploy(&web, &["--timeout", "60s"]);
    let hog = container_spec(
        dir.path(),
        "hog",
        &tar,
        &["eat-memory"],
        "min_ready = \"0s\"\n[service.hog.resources]\nmemory = \"32Mi\"\n",
    );
    let _ = dev.cli(&["deploy", hog.to_str().unwrap(), "--detach"]);
    until(Duration::from_secs(30), "the hog is OOM-killed", || {
        stdout(&dev.cli(&["events", "hog"])).contains("killed: memory limit 32Mi reached")
    })
    .await;
    let hog_ids = instance_ids(&dev, "hog");
    let deleting = Instant::now();
    dev.delete("hog");
    until(
        Duration::from_secs(30),
        "the hog's cgroups are gone",
        || {
            let cgroups = footprint().cgroups;
            !hog_ids
                .iter()
                .any(|id| cgroups.iter().any(|c| c.ends_with(&format!("/{id}"))))
        },
    )
    .await;
    eprintln!("OOM-killed container removed in {:?}", deleting.elapsed());
    assert!(
        deleting.elapsed() < Duration::from_secs(5),
        "removing the OOM-killed container took {:?}",
        deleting.elapsed()
    );
    dev.kill9();
    let dev = Dev::start(&data);
    assert!(dev.status("web").instances.len() >= 2);
    dev.delete("web");
    let data_path = data.display().to_string();
    until(
        Duration::from_secs(30),
        "web's containers are removed",
        || {
            !footprint()
                .root_mounts
                .iter()
                .any(|m| m.starts_with(&data_path))
        },
    )
    .await;
    drop(dev);

    // A kill -9 whose containers then die too (a crash, a reboot) and whose data directory
    // is deleted: the next agent to start reaps what it left.
    let abandoned = dir.path().join("b");
    let mut dev = Dev::start(&abandoned);
    dev.deploy(&web, &["--timeout", "60s"]);
    let ids = instance_ids(&dev, "web");
    dev.kill9();
    kill_containers(&ids);
    kill_instances(&abandoned);
    std::mem::forget(dev);
    // As an operator would: `rm -rf` goes on past what it cannot remove (a busy mount).
    let _ = Command::new("rm").arg("-rf").arg(&abandoned).status();
    // Cgroups are taken for abandoned once empty for a while (10 s), not to race an agent
    // that is setting one up.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let data = dir.path().join("c");
    let dev = Dev::start(&data);
    // Its node has registered, so its drivers are up: the container driver reaps at its start.
    dev.nodes().await;
    let log_c = data.join("dev.log");
    drop(dev);
    let after = footprint();
    assert_eq!(
        before,
        after,
        "what was left behind; the last strata dev's log:\n{}\nthe first's:\n{}",
        std::fs::read_to_string(log_c).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("a/dev.log")).unwrap_or_default()
    );
}
