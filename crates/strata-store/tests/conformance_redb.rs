//! The store conformance suite against [`RedbStore`], plus what only the embedded backend
//! promises: durability across reopen and `kill -9`, leases that survive a restart, watches
//! that catch up after lagging.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use strata_store::conformance::{self, Harness};
use strata_store::redb::Options;
use strata_store::{RedbStore, Store, StoreError, Txn, WatchEvent};
use tempfile::TempDir;

/// Fresh stores, each in its own file under one temporary directory.
struct RedbHarness {
    dir: TempDir,
    count: AtomicUsize,
}

impl RedbHarness {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            count: AtomicUsize::new(0),
        }
    }

    fn open(&self, options: Options) -> BoxFuture<'_, Result<Arc<dyn Store>, StoreError>> {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("store-{n}/state.redb"));
        async move {
            let store = RedbStore::open_with(&path, options).await?;
            Ok(Arc::new(store) as Arc<dyn Store>)
        }
        .boxed()
    }
}

impl Harness for RedbHarness {
    fn fresh(&self) -> BoxFuture<'_, Result<Arc<dyn Store>, StoreError>> {
        self.open(Options::default())
    }

    fn fresh_with_history(
        &self,
        history: usize,
    ) -> Option<BoxFuture<'_, Result<Arc<dyn Store>, StoreError>>> {
        Some(self.open(Options {
            history,
            ..Options::default()
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_passes_the_conformance_suite() {
    let report = conformance::run_all(&RedbHarness::new()).await;
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    assert_eq!(report.passed.len(), conformance::checks().len() + 1);
}

fn store_path(dir: &TempDir) -> PathBuf {
    dir.path().join("data/nested/state.redb")
}

#[tokio::test]
async fn state_survives_reopen_and_revision_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let (last, kept) = {
        let store = RedbStore::open(&path).await.unwrap();
        store.put("/a", b"1".to_vec()).await.unwrap();
        store.put("/a", b"2".to_vec()).await.unwrap();
        store.put("/gone", b"x".to_vec()).await.unwrap();
        store
            .txn(Txn::new().put("/b", vec![0, 255]).delete("/gone"))
            .await
            .unwrap();
        let kept = store.get("/a").await.unwrap().unwrap();
        (store.revision().await.unwrap(), kept)
    };
    let store = RedbStore::open(&path).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), last);
    assert_eq!(store.get("/a").await.unwrap(), Some(kept));
    assert_eq!(store.get("/b").await.unwrap().unwrap().value, [0, 255]);
    assert_eq!(store.get("/gone").await.unwrap(), None);
    assert_eq!(store.put("/c", vec![]).await.unwrap(), last + 1);
    // The event log survives too: a watch can resume from before the restart.
    let mut watch = store.watch("/", last).await.unwrap();
    let event = next(&mut watch).await;
    assert_eq!((event.key(), event.revision()), ("/b", last));
}

#[tokio::test]
async fn open_reports_a_file_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.redb");
    std::fs::write(
        &path,
        b"this is not a redb file, not even close".repeat(200),
    )
    .unwrap();
    match RedbStore::open(&path).await {
        Err(StoreError::Open { path: p, .. }) => assert!(p.contains("garbage.redb")),
        other => panic!("expected an Open error, got {other:?}"),
    }
}

#[tokio::test]
async fn leases_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let (long, short) = {
        let store = RedbStore::open(&path).await.unwrap();
        let long = store.grant_lease(Duration::from_secs(60)).await.unwrap();
        let short = store.grant_lease(Duration::from_millis(300)).await.unwrap();
        store
            .txn(
                Txn::new()
                    .put_with_lease("/l/long", b"l".to_vec(), long)
                    .put_with_lease("/l/short", b"s".to_vec(), short),
            )
            .await
            .unwrap();
        (long, short)
    };
    // The short lease's deadline passes while the store is closed.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let store = RedbStore::open(&path).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get("/l/short").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the expired lease's key was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        store.get("/l/long").await.unwrap().unwrap().lease,
        Some(long)
    );
    store.keep_alive(long).await.unwrap();
    assert!(matches!(
        store.keep_alive(short).await,
        Err(StoreError::LeaseNotFound(id)) if id == short
    ));
    let fresh = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    assert!(fresh != long && fresh != short, "lease id {fresh} reused");
    store.revoke_lease(long).await.unwrap();
    assert_eq!(store.get("/l/long").await.unwrap(), None);
}

#[tokio::test]
async fn lagging_watch_catches_up_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        watch_buffer: 2,
        ..Options::default()
    };
    let store = RedbStore::open_with(&store_path(&dir), options)
        .await
        .unwrap();
    let mut watch = store.watch("/lag/", 0).await.unwrap();
    let mut revisions = Vec::new();
    for i in 0..50 {
        // Unrelated writes in between: the watch must skip them, not report a gap.
        store.put(&format!("/other/{i}"), vec![]).await.unwrap();
        revisions.push(store.put(&format!("/lag/{i:02}"), vec![i]).await.unwrap());
    }
    for (i, rev) in revisions.into_iter().enumerate() {
        let event = next(&mut watch).await;
        assert_eq!(event.key(), format!("/lag/{i:02}"));
        assert_eq!(event.revision(), rev);
    }
    let rev = store.put("/lag/live", vec![]).await.unwrap();
    assert_eq!(next(&mut watch).await.revision(), rev);
}

#[tokio::test]
async fn watch_ends_with_closed_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let store = RedbStore::open(&path).await.unwrap();
    let mut watch = store.watch("/", 0).await.unwrap();
    drop(store);
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch ends");
    assert!(matches!(item, Some(Err(StoreError::Closed))), "{item:?}");
    assert!(watch.next().await.is_none());
    // An open watch does not keep the file open.
    RedbStore::open(&path).await.unwrap();
}

async fn next(watch: &mut strata_store::WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a watch event within 10s")
        .expect("the watch goes on")
        .expect("a watch event, not an error")
}

// ---------------------------------------------------------------------------------------
// kill -9: the child writer and the test that kills it.

/// Set to a store path, makes [`crash_writer`] run as the child writer.
const CRASH_WRITER_ENV: &str = "STRATA_STORE_CRASH_WRITER";
/// Which round of [`kill_9_keeps_every_acknowledged_write`] the child writes (its keys).
const CRASH_ROUND_ENV: &str = "STRATA_STORE_CRASH_ROUND";

/// The child half of [`kill_9_keeps_every_acknowledged_write`]: does nothing unless
/// [`CRASH_WRITER_ENV`] is set; then writes keys as fast as it can and prints `ACK i rev`
/// once each put has returned, until killed (or for at most a minute).
#[test]
fn crash_writer() {
    let Some(path) = std::env::var_os(CRASH_WRITER_ENV) else {
        return;
    };
    let round: u64 = std::env::var(CRASH_ROUND_ENV)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = RedbStore::open(Path::new(&path)).await.expect("open");
        let mut out = std::io::stdout().lock();
        let start = Instant::now();
        let mut i = 0u64;
        while start.elapsed() < Duration::from_secs(60) {
            let rev = store
                .put(&crash_key(round, i), i.to_le_bytes().to_vec())
                .await
                .expect("put");
            writeln!(out, "ACK {i} {rev}").expect("stdout");
            out.flush().expect("stdout");
            i += 1;
        }
    });
}

fn crash_key(round: u64, i: u64) -> String {
    format!("/crash/{round}/{i:08}")
}

/// Kills a writer with SIGKILL mid-stream, twice (the second time on a store recovered from
/// the first crash), and checks after each that every write it acknowledged is there.
#[test]
fn kill_9_keeps_every_acknowledged_write() {
    if std::env::var_os(CRASH_WRITER_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = store_path(&dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut acked: Vec<(u64, u64, u64)> = Vec::new(); // (round, i, revision)
    for round in 0..2 {
        acked.extend(
            write_until_killed(&path, round, 100)
                .into_iter()
                .map(|(i, rev)| (round, i, rev)),
        );
        runtime.block_on(async {
            let store = RedbStore::open(&path).await.expect("reopen after kill -9");
            for &(round, i, rev) in &acked {
                let kv = store
                    .get(&crash_key(round, i))
                    .await
                    .unwrap()
                    .unwrap_or_else(|| {
                        panic!("acknowledged write {round}/{i} (revision {rev}) lost")
                    });
                assert_eq!((kv.mod_revision, kv.value), (rev, i.to_le_bytes().to_vec()));
            }
            let last = acked.iter().map(|&(_, _, rev)| rev).max().unwrap();
            let current = store.revision().await.unwrap();
            assert!(
                current >= last,
                "revision went back from {last} to {current}"
            );
            assert_eq!(store.put("/after", vec![]).await.unwrap(), current + 1);
        });
    }
}

/// Runs [`crash_writer`] as a child on `path`, kills it with SIGKILL once it has
/// acknowledged `acks` writes, and returns every write it acknowledged (as `(i, revision)`).
fn write_until_killed(path: &Path, round: u64, acks: usize) -> Vec<(u64, u64)> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_WRITER_ENV, path)
        .env(CRASH_ROUND_ENV, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the writer");

    // Read the child's stdout on a thread, so that every wait here can be bounded.
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                // Only whole lines: a line cut by the kill was never acknowledged.
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    if lines.send(line).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < acks {
        match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => acked.extend(parse_ack(&line)),
            Err(_) => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("child output");
                panic!(
                    "the writer acknowledged only {} writes; its stderr:\n{}",
                    acked.len(),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
    child.kill().expect("kill -9 the writer"); // SIGKILL, mid-stream
    child.wait().expect("reap the writer");
    // Lines the child wrote before dying are acknowledged writes too.
    acked.extend(received.iter().filter_map(|line| parse_ack(&line)));
    reader.join().expect("reader thread");
    acked
}

fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let mut words = line.strip_prefix("ACK ")?.split_whitespace();
    let i = words.next()?.parse().ok()?;
    let rev = words.next()?.parse().ok()?;
    Some((i, rev))
}
