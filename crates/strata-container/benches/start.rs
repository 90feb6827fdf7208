//! Container start benchmark: from "start this instance" until it answers HTTP, for the
//! example service packaged with `--jeos`, against `runc run` of the same root in the same
//! run.
//!
//!   cargo build --release -p hello && cargo bench -p strata-container --bench start [-- RUNS]
//!
//! Needs root, runc, iproute2 and nftables (scripts/deps.sh bench). Strata's figure is the
//! whole path a node takes for a new instance: overlayfs root, cgroup with limits, network
//! namespace and veth, bundle, the container shim (youki's libcontainer), the process up and
//! answering through the node's port. The peer is `runc run -d` of a bundle over the same
//! unpacked layer, whose network namespace and parent cgroup were made once beforehand (so
//! runc does strictly less work per start), until the same server answers on the container's
//! address. A third row runs that same bundle in Strata's shim alone. Every container runs in
//! a user namespace, as a node runs them by default; two more rows start them without one
//! (`userns = false`), in Strata and in runc.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{hello_bin, until_ready};
use strata_container::bundle::{runtime_spec, BundleSpec};
use strata_container::net::NodeNetwork;
use strata_container::{ContainerConfig, ContainerDriver, StoreImages, DEFAULT_USERNS};
use strata_image::{ImageStore, JeosOptions, Tag};
use strata_runtime::{Driver, StartSpec};

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let runs = strata_testkit::bench_runs(20);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the container start benchmark needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let report = store
        .build_jeos(
            &hello_bin(),
            &[],
            &JeosOptions {
                tag: Some(Tag::parse("hello:bench").unwrap()),
                ..JeosOptions::default()
            },
        )
        .unwrap();
    let archive = dir.path().join("hello.tar");
    store
        .export_oci_layout("hello:bench", std::fs::File::create(&archive).unwrap())
        .unwrap();
    println!(
        "container start benchmark: {runs} runs; image hello:bench, {} files, {:.1} MiB; {}",
        report.files.len(),
        report.image_size as f64 / (1u64 << 20) as f64,
        String::from_utf8_lossy(
            &Command::new("runc")
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .lines()
        .next()
        .unwrap_or("runc")
    );

    // -- Strata: the driver's whole path, with and without a user namespace ---------------------
    let node_images = ImageStore::open(dir.path().join("node-images")).unwrap();
    let mut config = ContainerConfig::new(
        dir.path().join("state"),
        vec![env!("CARGO_BIN_EXE_strata-container-shim").to_string()],
    );
    config.allow_host_root = true;
    let driver = ContainerDriver::new(config, Arc::new(StoreImages::new(node_images))).unwrap();
    let mut strata_ms = Vec::new();
    let mut strata_host_root_ms = Vec::new();
    let mut first_ms = None;
    for run in 0..=runs {
        for host_root in [false, true] {
            let port = strata_testkit::free_port();
            let name = format!("bench-{run}-{}", if host_root { "root" } else { "userns" });
            let spec = StartSpec {
                instance_id: name.clone(),
                secret_files: Vec::new(),
                name: "bench".into(),
                program: archive.clone(),
                args: vec![],
                env: BTreeMap::from([
                    ("PORT".to_string(), port.to_string()),
                    ("HOST".to_string(), "127.0.0.1".to_string()),
                ]),
                log_path: dir.path().join(format!("{name}.log")),
                work_dir: dir.path().join(&name),
                settings: strata_runtime::DriverSettings::Container(
                    strata_runtime::ContainerSettings {
                        memory_bytes: 64 << 20,
                        cpu_millis: 1000,
                        pids: None,
                        capabilities: Vec::new(),
                        host_root,
                        keep_writable_layer: false,
                    },
                ),
            };
            let started = Instant::now();
            let handle = driver.start(&spec).await.expect("container starts");
            let ms = until_ready(started, SocketAddr::from(([127, 0, 0, 1], port)));
            // The first run also imports the image and unpacks its layer (once per range).
            match (run, host_root) {
                (0, false) => first_ms = Some(ms),
                (0, true) => {}
                (_, false) => strata_ms.push(ms),
                (_, true) => strata_host_root_ms.push(ms),
            }
            handle.stop(Duration::from_secs(5)).await;
        }
    }

    // -- runc run of the same roots ------------------------------------------------------------
    // The node's import is untagged: the build's store unpacks the same layer (and its copy
    // for the user namespace's range).
    let plain_layer = store.lower_dirs("hello:bench").unwrap().remove(0);
    let shifted_layer = store
        .lower_dirs_shifted("hello:bench", Some(DEFAULT_USERNS))
        .unwrap()
        .remove(0);
    // A container's root in its user namespace walks to its root: bind the layer where the
    // way is open (the store and this run's temporary directory are root's alone).
    let peer_root = Path::new("/run/strata/bench-start-peer").join(std::process::id().to_string());
    let shifted_root = peer_root.join("rootfs");
    std::fs::create_dir_all(&shifted_root).unwrap();
    for open in [peer_root.parent().unwrap(), &peer_root] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(open, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    nix::mount::mount(
        Some(&shifted_layer),
        &shifted_root,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let shifted_layer = shifted_root;
    let network = NodeNetwork::ensure(
        "strata0",
        "10.89.0.1".parse().unwrap(),
        16,
        &dir.path().join("state"),
    )
    .unwrap();
    let peer_net = network.attach("bench-runc-peer").unwrap();
    let runc_root = dir.path().join("runc-peer");
    let shim_root = dir.path().join("shim-peer");
    let mut runc_ms = Vec::new();
    let mut runc_host_root_ms = Vec::new();
    let mut shim_ms = Vec::new();
    for run in 0..runs {
        for userns in [Some(DEFAULT_USERNS), None] {
            let layer = if userns.is_some() {
                &shifted_layer
            } else {
                &plain_layer
            };
            let spec = runtime_spec(&BundleSpec {
                rootfs: layer.clone(),
                args: vec!["/bin/hello".into()],
                env: BTreeMap::from([
                    ("PORT".to_string(), "8080".to_string()),
                    ("HOST".to_string(), "0.0.0.0".to_string()),
                ]),
                cwd: "/".into(),
                uid: 0,
                gid: 0,
                hostname: "peer".into(),
                userns,
                cgroups_path: format!("/strata-bench-peer/{run}"),
                capabilities: vec![],
                extra_mounts: vec![],
                readonly_root: false,
            })
            .unwrap();
            let mut json = serde_json::to_value(&spec).unwrap();
            json["root"]["readonly"] = serde_json::Value::Bool(true);
            // The shim enters the network namespace itself (`--netns`); runc joins the one
            // its bundle names, before it makes the user namespace.
            let shim_bundle = dir.path().join(format!("shim-{run}"));
            if userns.is_some() {
                std::fs::create_dir_all(&shim_bundle).unwrap();
                std::fs::write(shim_bundle.join("config.json"), json.to_string()).unwrap();
            }
            json["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"type": "network", "path": peer_net.netns_path()}));
            let bundle_dir = dir.path().join(format!("peer-{run}-{}", userns.is_some()));
            std::fs::create_dir_all(&bundle_dir).unwrap();
            std::fs::write(bundle_dir.join("config.json"), json.to_string()).unwrap();
            let id = format!("peer-{run}");
            let started = Instant::now();
            // Its errors to a file: the detached container would hold a pipe open.
            let errors = bundle_dir.join("runc.err");
            let status = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["run", "-d", "--bundle"])
                .arg(&bundle_dir)
                .arg(&id)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&errors).unwrap())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "runc run failed: {}",
                std::fs::read_to_string(&errors).unwrap_or_default()
            );
            let ms = until_ready(started, SocketAddr::from((peer_net.address, 8080)));
            if userns.is_some() {
                runc_ms.push(ms);
            } else {
                runc_host_root_ms.push(ms);
            }
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["delete", "--force", &id])
                .status();
            if userns.is_none() {
                continue;
            }

            // The same bundle in Strata's shim alone (libcontainer), as runc ran it above.
            let id = format!("shim-{run}");
            let started = Instant::now();
            let mut shim = Command::new(env!("CARGO_BIN_EXE_strata-container-shim"))
                .arg("--root")
                .arg(&shim_root)
                .arg("--bundle")
                .arg(&shim_bundle)
                .arg("--netns")
                .arg(peer_net.netns_path())
                .arg(&id)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            shim_ms.push(until_ready(
                started,
                SocketAddr::from((peer_net.address, 8080)),
            ));
            let state: serde_json::Value = serde_json::from_slice(
                &std::fs::read(shim_root.join(&id).join("state.json")).unwrap(),
            )
            .unwrap();
            let pid = state["pid"].as_i64().expect("the shim's state has the pid") as i32;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = shim.wait();
        }
    }
    network.detach(&peer_net);
    network.close();
    let _ = nix::mount::umount2(&shifted_layer, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&shifted_layer);
    let _ = std::fs::remove_dir(&peer_root);
    let _ = std::fs::remove_dir(peer_root.parent().unwrap());
    drop(driver);
    for controller in [
        "memory", "cpu", "pids", "cpuset", "devices", "freezer", "blkio", "cpuacct", "systemd",
    ] {
        let _ = std::fs::remove_dir(
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join("strata-bench-peer"),
        );
    }

    let row = |name: &str, values: &mut Vec<f64>| {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} |",
            percentile(values, 0.5),
            percentile(values, 0.9),
            percentile(values, 1.0),
            values.len()
        );
    };
    println!("\n| start -> answering HTTP (ms) | median | p90 | max | runs |");
    println!("|---|---:|---:|---:|---:|");
    let strata_median = percentile(&mut strata_ms, 0.5);
    let runc_median = percentile(&mut runc_ms, 0.5);
    row(
        "Strata container driver (overlay root, cgroup, netns, bundle, shim, port), user namespace",
        &mut strata_ms,
    );
    row(
        "runc run -d, user namespace, same root, netns and cgroup parent made beforehand",
        &mut runc_ms,
    );
    row(
        "Strata's shim alone (libcontainer), the same bundle as runc",
        &mut shim_ms,
    );
    row(
        "Strata container driver, userns = false (the host's root)",
        &mut strata_host_root_ms,
    );
    row("runc run -d, no user namespace", &mut runc_host_root_ms);
    println!(
        "\nStrata / runc (median): {:.2}x; Strata's first start of the image (import + unpack): {:.1} ms",
        strata_median / runc_median,
        first_ms.unwrap_or_default()
    );
}
