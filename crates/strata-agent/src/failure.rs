//! An instance that fails, archived by its node before it starts again, when its service
//! says `[forensics] archive_on = "failure"`: its directory (log, working directory, a
//! container's writable layer, kept past its end for this) and `failure.json` (how it ended),
//! signed by the node's key like a quarantine's archive, under the subject `failure:ID`.
//!
//! The restart waits for the archive to be made, not for the control plane: it is made into
//! the node's outbox (`DATA_DIR/.outbox/`) and sent from there until it is kept, then wiped;
//! an agent that starts sends what its outbox still holds. A crash loop is archived at most
//! [`PER_WINDOW`] times in [`WINDOW`] per instance ([`FailureBudget`]), and nothing more is
//! archived while the outbox holds [`OUTBOX_LIMIT`] bytes.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use strata_core::api::Assignment;
use strata_core::NodeName;
use strata_runtime::Exit;

use crate::client::ControlClient;
use crate::supervisor::{AgentDirs, SupervisorContext};

/// Where archives wait to be sent, under the data directory.
pub const OUTBOX: &str = ".outbox";
/// The most the outbox holds: past it, failures are not archived until it is sent.
pub const OUTBOX_LIMIT: u64 = 1 << 30;
/// At most this many archives of one instance in any [`WINDOW`].
pub const PER_WINDOW: usize = 3;
pub const WINDOW: Duration = Duration::from_secs(600);

/// Which failures of one instance are archived: at most [`PER_WINDOW`] in any [`WINDOW`], so
/// that a crash loop does not fill the node's disk and the control plane's store with copies
/// of one failure; the failures left out are counted, and the next archive says how many.
#[derive(Debug, Default)]
pub(crate) struct FailureBudget {
    archived: VecDeque<Instant>,
    left_out: u32,
}

impl FailureBudget {
    /// Whether the failure at `now` is archived: if it is, how many failures were left out
    /// since the last one archived.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u32> {
        while self
            .archived
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= WINDOW)
        {
            self.archived.pop_front();
        }
        if self.archived.len() >= PER_WINDOW {
            self.left_out += 1;
            return None;
        }
        self.archived.push_back(now);
        Some(std::mem::take(&mut self.left_out))
    }
}

/// How the instance failed, as its supervisor saw it.
pub(crate) struct Failure<'a> {
    pub exit: &'a Exit,
    pub ran_for: Duration,
    /// Its restarts so far, this one included.
    pub restarts: u32,
    /// Failures not archived since the last one that was ([`FailureBudget`]).
    pub left_out: u32,
}

/// What the archive says of the failure (`failure.json`).
#[derive(Debug, Serialize)]
struct FailureNote<'a> {
    instance: &'a str,
    service: String,
    release: u64,
    node: &'a str,
    /// The exit as the driver told it: code, signal, and its reason when it knows better.
    code: Option<i32>,
    signal: Option<i32>,
    description: String,
    oom_killed: bool,
    ran_for_ms: u64,
    ended_at: u64,
    restarts: u32,
    failures_not_archived_before: u32,
}

/// Archives the failed instance into the node's outbox: the archive's path.
pub(crate) async fn archive(
    ctx: &SupervisorContext,
    assignment: &Assignment,
    failure: Failure<'_>,
) -> Result<PathBuf, String> {
    let (origin, certificate, key) = crate::quarantine::signed_as(ctx, "failure", assignment)?;
    let waiting = outbox_bytes(&ctx.dirs);
    if waiting >= OUTBOX_LIMIT {
        return Err(format!(
            "the node's outbox holds {waiting} bytes not yet sent (at most {OUTBOX_LIMIT}); is the control plane reachable?"
        ));
    }
    let instance = &assignment.instance;
    let id = instance.id.to_string();
    let note = FailureNote {
        instance: &id,
        service: format!("{}/{}", instance.env, instance.service),
        release: instance.release,
        node: ctx.node.as_str(),
        code: failure.exit.code,
        signal: failure.exit.signal,
        description: failure.exit.describe(),
        oom_killed: failure.exit.oom_killed(),
        ran_for_ms: failure.ran_for.as_millis() as u64,
        ended_at: strata_core::now_millis(),
        restarts: failure.restarts,
        failures_not_archived_before: failure.left_out,
    };
    let note = serde_json::to_vec_pretty(&note).unwrap_or_default();
    let out = outbox(&ctx.dirs).join(format!("{id}-{}.{ARCHIVE}", origin.created_at));
    let instance_dir = ctx.dirs.instance(&id);
    tokio::task::spawn_blocking(move || {
        // Made under another name and renamed once whole: what the outbox holds under
        // [`ARCHIVE`] is always complete.
        let partial = out.with_extension(format!("{ARCHIVE}.partial"));
        let files = vec![("failure.json".to_string(), note)];
        crate::quarantine::build(&partial, origin, &instance_dir, files, &certificate, &key)
            .map_err(|e| format!("archiving: {e}"))?;
        std::fs::rename(&partial, &out).map_err(|e| format!("archiving: {e}"))?;
        Ok(out)
    })
    .await
    .map_err(|e| format!("archiving: {e}"))?
}

/// Sends the archive at `path` until the control plane keeps (or refuses) it, then wipes
/// the node's copy. In the background: the instance's restart does not wait for it.
pub(crate) fn send_later(client: ControlClient, node: NodeName, path: PathBuf) {
    tokio::spawn(async move {
        let sent = crate::decommission::until_answered("failure archive", || {
            client.put_archive(node.as_str(), &path)
        })
        .await;
        match sent {
            Ok(record) => tracing::info!(archive = %record.id, "failure archive kept"),
            // Refused for good (it does not verify, or the node is revoked): nothing else
            // will take it.
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "failure archive refused; it is wiped")
            }
        }
        // It holds what the instance held: wiped, not only removed.
        if let Err(error) = strata_forensics::wipe_file(&path) {
            tracing::warn!(%error, "cannot wipe a failure archive's local copy");
        }
    });
}

/// At the agent's start: sends every archive its outbox still holds (made before it last
/// stopped, or while the control plane was out of reach).
pub(crate) fn send_outbox(client: &ControlClient, node: &NodeName, dirs: &AgentDirs) {
    let Ok(entries) = std::fs::read_dir(outbox(dirs)) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == ARCHIVE) {
            send_later(client.clone(), node.clone(), path);
        } else if path.is_file() {
            // An archive cut short by a stop (its payload, its partial file): never
            // signed, so never sendable.
            let _ = strata_forensics::wipe_file(&path);
        }
    }
}

/// The extension of a whole archive.
const ARCHIVE: &str = "strata-archive";

fn outbox(dirs: &AgentDirs) -> PathBuf {
    dirs.root.join(OUTBOX)
}

/// The bytes the outbox holds.
fn outbox_bytes(dirs: &AgentDirs) -> u64 {
    std::fs::read_dir(outbox(dirs))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_is_archived_at_most_three_times_in_ten_minutes() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        // (second of the failure, archived with how many left out before it)
        let table: &[(u64, Option<u32>)] = &[
            (0, Some(0)),
            (1, Some(0)),
            (3, Some(0)),
            (7, None),
            (15, None),
            // The first archive leaves the window: one more, saying two were left out.
            (600, Some(2)),
            (601, Some(0)),
            (602, None),
            // A quiet spell: all three again.
            (5_000, Some(1)),
            (5_001, Some(0)),
            (5_002, Some(0)),
            (5_003, None),
        ];
        let mut budget = FailureBudget::default();
        for &(second, expected) in table {
            assert_eq!(budget.admit(at(second)), expected, "at {second} s");
        }
    }
}
