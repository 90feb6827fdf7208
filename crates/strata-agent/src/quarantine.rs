//! A quarantined instance's archive, made by its node before it is stopped: the instance is
//! frozen (the cgroup freezer, or SIGSTOP where it has no cgroup of its own), what its
//! processes are is read from `/proc` while they cannot change (their status, command line,
//! memory maps, open files, and the connections of their network namespaces), and its
//! directory (log, working directory, a container's writable layer) is archived with it,
//! signed by the node's key, and sent to the control plane (`strata_forensics`). Never read:
//! a process's environment (it holds the instance's secrets) or its memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use strata_core::api::Assignment;
use strata_core::decommission::Quarantine;
use strata_runtime::InstanceHandle;

use crate::supervisor::SupervisorContext;

/// What the archive says of the quarantine itself (`quarantine.json`).
#[derive(Debug, Serialize)]
struct QuarantineNote<'a> {
    instance: &'a str,
    service: String,
    release: u64,
    requested_by: &'a str,
    requested_at: u64,
    /// How the instance was frozen ("cgroup freezer (v1)", "SIGSTOP"), or why it was not.
    frozen_by: String,
    processes: Vec<ProcessEntry>,
}

/// One process of the instance, as `/proc` showed it frozen.
#[derive(Debug, Serialize)]
struct ProcessEntry {
    pid: u32,
    ppid: Option<u32>,
    name: String,
    state: String,
    uid: String,
    cmdline: Vec<String>,
}

/// The quarantine `assignment` asks for, while its archive is not kept yet.
pub(crate) fn pending(assignment: &Assignment) -> Option<Quarantine> {
    assignment
        .instance
        .quarantine
        .clone()
        .filter(|q| q.archive.is_none())
}

/// Freezes the instance, archives it and sends the archive: the archive's id. The instance
/// stays frozen (its caller thaws and stops it).
pub(crate) async fn archive_instance(
    ctx: &SupervisorContext,
    handle: &dyn InstanceHandle,
    assignment: &Assignment,
    order: &Quarantine,
) -> Result<String, String> {
    let instance = &assignment.instance;
    let id = instance.id.to_string();
    // Out of routing already: as a drain does, the nodes' proxies are given the time to
    // learn it before the instance stops answering.
    tokio::time::sleep(ctx.drain_delay).await;
    let frozen_by = match handle.freeze(true) {
        Ok(how) => how.to_string(),
        Err(why) => format!("not frozen: {why}"),
    };
    let processes = handle.processes();
    let (origin, certificate, key) = signed_as(ctx, "instance", assignment)?;
    let requested_by = order.requested_by.clone();
    let requested_at = order.requested_at;
    let service = format!("{}/{}", instance.env, instance.service);
    let release = instance.release;
    let instance_dir = ctx.dirs.instance(&id);
    let out = ctx
        .dirs
        .root
        .join(".quarantine")
        .join(format!("{id}-{}.strata-archive", origin.created_at));
    let building = out.clone();
    tokio::task::spawn_blocking(move || {
        let (entries, files) = snapshot(&processes);
        let note = QuarantineNote {
            instance: &id,
            service,
            release,
            requested_by: &requested_by,
            requested_at,
            frozen_by,
            processes: entries,
        };
        let note = serde_json::to_vec_pretty(&note).unwrap_or_default();
        let mut files = files;
        files.insert(0, ("quarantine.json".to_string(), note));
        build(&building, origin, &instance_dir, files, &certificate, &key)
    })
    .await
    .map_err(|e| format!("archiving: {e}"))?
    .map_err(|e| format!("archiving: {e}"))?;
    let sent = send(ctx, &out).await;
    // It holds what the instance held: wiped, not only removed.
    if let Err(error) = strata_forensics::wipe_file(&out) {
        tracing::warn!(%error, "cannot wipe the quarantine archive's local copy");
    }
    sent
}

/// What an archive of `assignment`'s instance says of its origin (its subject
/// `KIND:ID`, the release it ran), and the node's certificate and key to sign it with.
pub(crate) fn signed_as(
    ctx: &SupervisorContext,
    kind: &str,
    assignment: &Assignment,
) -> Result<(strata_forensics::Origin, String, String), String> {
    let Some((certificate, key)) = ctx.node_key.as_ref().and_then(|k| k.current()) else {
        return Err("this node has no certificate to sign an archive with".into());
    };
    let instance = &assignment.instance;
    let origin = crate::decommission::origin(
        ctx.node.as_str(),
        format!("{kind}:{}", instance.id),
        vec![format!(
            "{}/{}#{}",
            instance.env, instance.service, instance.release
        )],
    );
    Ok((origin, certificate, key))
}

/// Sends the archive until the control plane keeps it or refuses it: while it cannot be
/// reached the instance stays frozen, its evidence kept, however long that is.
async fn send(ctx: &SupervisorContext, path: &Path) -> Result<String, String> {
    crate::decommission::until_answered("quarantine archive", || {
        ctx.client.put_archive(ctx.node.as_str(), path)
    })
    .await
    .map(|record| record.id)
    .map_err(|error| format!("the archive was not kept: {error}"))
}

/// Builds an instance's archive at `out`, signed with the node's `certificate` and `key`:
/// the instance's directory (under `instance/`) and `files` (what the archive says of itself:
/// `quarantine.json`, `failure.json`, a `/proc` snapshot).
pub(crate) fn build(
    out: &Path,
    origin: strata_forensics::Origin,
    instance_dir: &Path,
    files: Vec<(String, Vec<u8>)>,
    certificate: &str,
    key: &str,
) -> Result<PathBuf, strata_forensics::ForensicsError> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| strata_forensics::ForensicsError::io(dir.display(), e))?;
    }
    let signer = strata_forensics::Signer::from_pem("the node's key", certificate, key)?;
    let made_at = origin.created_at / 1000;
    let mut builder = strata_forensics::ArchiveBuilder::create(out, origin)?;
    if instance_dir.exists() {
        builder.add_path(instance_dir, "instance")?;
    }
    for (name, bytes) in files {
        builder.add_bytes(&name, &bytes, 0o644, made_at)?;
    }
    Ok(builder.finish(&signer)?.path)
}

/// What `/proc` says of `pids`: an entry for each, and the files to archive (under `proc/`:
/// each process's status, command line, memory maps and open files; under `net/`: the
/// connections of each network namespace they are in, once).
fn snapshot(pids: &[u32]) -> (Vec<ProcessEntry>, Vec<(String, Vec<u8>)>) {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    let mut namespaces: BTreeMap<String, u32> = BTreeMap::new();
    for &pid in pids {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let Ok(status) = std::fs::read_to_string(proc.join("status")) else {
            continue; // gone
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let cmdline: Vec<String> = std::fs::read(proc.join("cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect();
        entries.push(ProcessEntry {
            pid,
            ppid: field("PPid").parse().ok(),
            name: field("Name"),
            state: field("State"),
            uid: field("Uid"),
            cmdline,
        });
        files.push((format!("proc/{pid}/status"), status.into_bytes()));
        for part in ["maps", "cmdline"] {
            if let Ok(bytes) = std::fs::read(proc.join(part)) {
                files.push((format!("proc/{pid}/{part}"), bytes));
            }
        }
        files.push((format!("proc/{pid}/fd.txt"), open_files(&proc).into_bytes()));
        if let Ok(ns) = std::fs::read_link(proc.join("ns/net")) {
            namespaces
                .entry(ns.to_string_lossy().replace([':', '[', ']'], "-"))
                .or_insert(pid);
        }
    }
    for (ns, pid) in namespaces {
        for table in ["tcp", "tcp6", "udp", "udp6", "unix"] {
            if let Ok(bytes) = std::fs::read(format!("/proc/{pid}/net/{table}")) {
                files.push((format!("net/{}/{table}", ns.trim_matches('-')), bytes));
            }
        }
    }
    (entries, files)
}

/// `FD -> target` for each open file of the process at `proc` (sockets show as
/// `socket:[INODE]`, which `net/*` tables name).
fn open_files(proc: &Path) -> String {
    let Ok(fds) = std::fs::read_dir(proc.join("fd")) else {
        return String::new();
    };
    let mut lines: Vec<(u32, String)> = fds
        .flatten()
        .filter_map(|fd| {
            let number = fd.file_name().to_string_lossy().parse().ok()?;
            let target = std::fs::read_link(fd.path()).ok()?;
            Some((number, target.to_string_lossy().into_owned()))
        })
        .collect();
    lines.sort();
    lines
        .into_iter()
        .map(|(fd, target)| format!("{fd} -> {target}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_names_each_process_and_its_connections_and_never_its_environment() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let me = std::process::id();
        let (entries, files) = snapshot(&[me, u32::MAX]);
        assert_eq!(entries.len(), 1, "a process gone is left out");
        assert_eq!(entries[0].pid, me);
        assert!(!entries[0].cmdline.is_empty());
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        for part in ["status", "maps", "cmdline", "fd.txt"] {
            assert!(
                names.contains(&format!("proc/{me}/{part}").as_str()),
                "{names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.contains("environ")), "{names:?}");
        // The listening socket is in the namespace's tcp table, by its port in hex.
        let port = format!("{:04X}", listener.local_addr().unwrap().port());
        let tcp = files
            .iter()
            .find(|(n, _)| n.starts_with("net/") && n.ends_with("/tcp"))
            .expect("tcp table");
        assert!(String::from_utf8_lossy(&tcp.1).contains(&port));
        let fds = files
            .iter()
            .find(|(n, _)| n.ends_with("fd.txt"))
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .unwrap();
        assert!(fds.contains("socket:["), "{fds}");
    }
}
