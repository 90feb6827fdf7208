//! What an instance listens on, read from `/proc`: the TCP sockets in the LISTEN state that
//! its processes hold. The supervisor uses it to say "nothing listens on PORT=8080 (listening
//! on: 0.0.0.0:3000)" instead of waiting in silence when a program binds the wrong port.
//!
//! A socket counts when one of the given processes holds its file descriptor; the socket
//! tables are read from each process's own network namespace, so a container's sockets are
//! found as well as a host process's.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use procfs::net::TcpState;
use procfs::process::{FDTarget, Process};

/// The TCP addresses the processes `pids` listen on, sorted and without duplicates. Processes
/// that are gone or unreadable are skipped (the answer is for a message, never a decision).
pub fn listening(pids: &[u32]) -> Vec<SocketAddr> {
    let mut inodes = BTreeSet::new();
    let mut processes = Vec::new();
    for pid in pids {
        let Ok(process) = Process::new(*pid as i32) else {
            continue;
        };
        if let Ok(fds) = process.fd() {
            for fd in fds.flatten() {
                if let FDTarget::Socket(inode) = fd.target {
                    inodes.insert(inode);
                }
            }
        }
        processes.push(process);
    }
    let mut found = BTreeSet::new();
    let mut namespaces_read = BTreeSet::new();
    for process in processes {
        // Processes in one network namespace share its tables: read them once.
        let namespace = std::fs::read_link(format!("/proc/{}/ns/net", process.pid)).ok();
        if !namespaces_read.insert(namespace) {
            continue;
        }
        let entries = process
            .tcp()
            .into_iter()
            .flatten()
            .chain(process.tcp6().into_iter().flatten());
        for entry in entries {
            if entry.state == TcpState::Listen && inodes.contains(&entry.inode) {
                found.insert(entry.local_address);
            }
        }
    }
    found.into_iter().collect()
}

/// `pid` and every process descended from it (a program's workers and helpers).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(all) = procfs::process::all_processes() {
        for process in all.flatten() {
            if let Ok(stat) = process.stat() {
                parents.push((stat.pid as u32, stat.ppid as u32));
            }
        }
    }
    let mut tree = vec![pid];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        for (child, _) in parents.iter().filter(|(_, p)| *p == parent) {
            if !tree.contains(child) {
                tree.push(*child);
            }
        }
        index += 1;
    }
    tree
}

/// How a message names a set of listening addresses: `0.0.0.0:3000, [::]:3000`, or `nothing`.
pub fn describe(addresses: &[SocketAddr]) -> String {
    if addresses.is_empty() {
        return "no TCP port".into();
    }
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_this_process_listens_on_and_nothing_else() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A connected (not listening) socket of ours does not count.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let found = listening(&[std::process::id()]);
        assert!(
            found.contains(&listener.local_addr().unwrap()),
            "{found:?} lacks 127.0.0.1:{port}"
        );
        assert!(found.iter().all(|a| a.port() != 0));
        drop(listener);
        let found = listening(&[std::process::id()]);
        assert!(found.iter().all(|a| a.port() != port), "{found:?}");
    }

    #[test]
    fn a_process_that_is_gone_holds_nothing() {
        assert!(listening(&[u32::MAX - 1]).is_empty());
    }

    #[test]
    fn the_tree_holds_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = process_tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.contains(&child.id()), "{tree:?}");
        assert_eq!(tree[0], std::process::id());
    }

    #[test]
    fn descriptions() {
        assert_eq!(describe(&[]), "no TCP port");
        let a: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        let b: SocketAddr = "[::]:3000".parse().unwrap();
        assert_eq!(describe(&[a, b]), "0.0.0.0:3000, [::]:3000");
    }
}
