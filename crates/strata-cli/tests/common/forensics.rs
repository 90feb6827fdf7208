//! What the forensics tests share: services that write known canary strings, and the files
//! of an archive's payload.

use std::path::{Path, PathBuf};

pub const CANARY_LOG: &str = "canary-4d1e-written-to-the-log";
pub const CANARY_FILE: &str = "canary-9b2c-written-to-a-work-file";

/// A spec of exec service `name` (2 replicas, the test kit's `misbehave` as its artifact,
/// so that it runs where the node keeps artifacts, sandboxed or not): each instance writes
/// [`CANARY_LOG`] to its log and [`CANARY_FILE`] to `notes.txt` in its working directory,
/// then serves.
pub fn canary_spec(dir: &Path, name: &str) -> PathBuf {
    let program = super::misbehave_bin();
    let spec = format!(
        r#"
[service.{name}]
artifact = "{}"
args = ["write-file", "notes.txt", "{CANARY_FILE}"]
[service.{name}.scale]
replicas = 2
[service.{name}.config]
SAY = "{CANARY_LOG}"
[service.{name}.health]
path = "/healthz"
interval = "200ms"
timeout = "200ms"
"#,
        program.display()
    );
    super::write_file(dir, &format!("{name}.toml"), spec)
}

/// The files of an archive's payload: path and bytes.
pub fn payload_files(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let mut outer = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in outer.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() != strata_forensics::parts::PAYLOAD {
            continue;
        }
        let mut inner = tar::Archive::new(zstd::Decoder::new(entry).unwrap());
        let mut files = Vec::new();
        for file in inner.entries().unwrap() {
            let mut file = file.unwrap();
            let path = file.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
            files.push((path, bytes));
        }
        return files;
    }
    panic!("no payload in {}", archive.display());
}

/// Fetches archive `id` to `file` with `strata archive get` and verifies it offline against
/// the dev server's CA; its payload's files.
pub fn fetched_and_verified(dev: &super::Dev, id: &str, file: &Path) -> Vec<(String, Vec<u8>)> {
    let got = dev.cli(&["archive", "get", id, "-o", file.to_str().unwrap()]);
    assert!(got.status.success(), "{}", super::stderr(&got));
    let ca = dev.data_dir.join("ca.pem");
    let verified = dev.cli(&[
        "archive",
        "verify",
        file.to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert!(verified.status.success(), "{}", super::stderr(&verified));
    payload_files(file)
}

/// Waits (30 s at most) until `service` has two routable instances, none of them `suspect`.
pub async fn replaced(dev: &super::Dev, service: &str, suspect: &str) {
    dev.eventually(
        std::time::Duration::from_secs(30),
        "the suspect stopped, a replacement serving",
        || {
            let now = dev.status(service);
            now.instances.iter().filter(|v| v.is_routable()).count() == 2
                && now.instances.iter().all(|v| v.instance.id != suspect)
        },
    )
    .await;
}
