//! What the container driver's tests and benchmarks share: the example service, plain HTTP
//! probes, an instance's leased address, and an image source for sandboxes (which need none).
//! Benchmarks include this file by path.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strata_container::{ContainerError, IdShift, ImageSource, ResolvedImage};

/// The example service's binary (`cargo build -p hello`, or `--release` for benchmarks).
pub fn hello_bin() -> PathBuf {
    strata_testkit::workspace_bin(
        "hello",
        "build it with `cargo build -p hello` (scripts/test.sh does)",
    )
}

/// `GET /` on `addr`, the whole answer (`Connection: close`).
pub fn http_get(addr: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: hello\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if answer.is_empty() {
        return Err(std::io::Error::other("empty answer"));
    }
    Ok(answer)
}

/// Whether `addr` answers `GET /healthz` with 200 now.
pub fn answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.1 200")
}

/// Milliseconds from `since` until `addr` answers 200 (polling every 0.5 ms, at most 10 s).
pub fn until_ready(since: Instant, addr: SocketAddr) -> f64 {
    let deadline = since + Duration::from_secs(10);
    while Instant::now() < deadline {
        if answers(addr) {
            return since.elapsed().as_secs_f64() * 1000.0;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    panic!("{addr} did not answer within 10 s");
}

/// The address the node's network leased to `instance`, from the driver's state directory.
pub fn leased_address(state: &Path, instance: &str) -> Option<String> {
    let mut dirs = vec![state.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if dir.file_name().is_some_and(|n| n == "leases")
                && std::fs::read_to_string(&path).is_ok_and(|text| text.contains(instance))
            {
                return Some(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    None
}

/// An image source with no image: a sandboxed exec instance runs on the host's root.
pub struct NoImages;

impl ImageSource for NoImages {
    fn resolve(
        &self,
        artifact: &Path,
        _shift: Option<IdShift>,
    ) -> Result<ResolvedImage, ContainerError> {
        Err(ContainerError::Image(format!(
            "no image {}",
            artifact.display()
        )))
    }
}

/// A copy of the layer `dir` beside it with every owner shifted by `shift` (as the image
/// store unpacks layers for a user namespace), made once; modes (setuid bits too) kept.
pub fn shifted_copy(dir: &Path, shift: IdShift) -> PathBuf {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let copy = dir.with_file_name(format!(
        "{}-ids-{}",
        dir.file_name().unwrap().to_string_lossy(),
        shift.base
    ));
    if copy.exists() {
        return copy;
    }
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {}", dir.display());
    let mut stack = vec![copy.clone()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let host = |id: u32| shift.host_id(id).expect("an id the namespace maps");
        std::os::unix::fs::lchown(&path, Some(host(meta.uid())), Some(host(meta.gid()))).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        if !meta.file_type().is_symlink() {
            // chown clears setuid and setgid: put the mode back.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .unwrap();
        }
    }
    copy
}
