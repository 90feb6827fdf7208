//! A failed instance's archive (`[forensics] archive_on = "failure"`) through the control
//! plane, in-process (the harness, its clock by hand): kept for its release's `keep` and
//! listed with when it expires, then removed by the leader (its record, its blob's record and
//! this server's copy of its bytes, with an event saying so), while archives without a keep
//! stay.

mod common;

use common::forensics::{archive_of, body};
use common::harness::Harness;
use strata_core::{EventKind, NodeName};
use strata_forensics::Origin;

const HOUR: u64 = 3_600_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_failures_archive_is_kept_for_its_releases_keep_then_removed_with_its_bytes() {
    let h = Harness::start(&["n1"]).await;
    h.deploy(
        "[service.web]\ncommand = [\"web\"]\n[service.web.forensics]\narchive_on = \"failure\"\nkeep = \"2h\"\n",
    )
    .await;
    let node = NodeName::new("n1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let made_at = strata_core::now_millis();
    let store = |n: u64, subject: &str, release: &str| {
        let origin = Origin {
            node: "n1".into(),
            subject: subject.into(),
            releases: vec![release.into()],
            created_at: made_at + n,
            ..Default::default()
        };
        let dir = dir.path().join(n.to_string());
        let h = &h;
        let node = node.clone();
        async move {
            std::fs::create_dir_all(&dir).unwrap();
            let bytes = archive_of(h, origin, &dir).await;
            h.plane
                .store_node_archive(&node, body(bytes))
                .await
                .unwrap()
        }
    };
    let failure = store(1, "failure:web-1-aaaa", "dev/web#1").await;
    assert_eq!(failure.expires_at, Some(failure.stored_at + 2 * HOUR));
    // A release that is not kept (or names no `keep`): the default, seven days.
    let unnamed = store(2, "failure:web-9-bbbb", "dev/nope#4").await;
    assert_eq!(unnamed.expires_at, Some(unnamed.stored_at + 7 * 24 * HOUR));
    // A quarantine's archive is kept until removed by hand.
    let quarantine = store(3, "instance:web-1-aaaa", "dev/web#1").await;
    assert_eq!(quarantine.expires_at, None);
    let bytes = h.plane.blobs().path(&failure.digest).unwrap();
    assert!(bytes.exists());

    // Before its keep ends, nothing goes.
    h.advance(2 * HOUR - 1);
    assert_eq!(
        h.plane.prune_expired_archives(h.plane.now()).await.unwrap(),
        0
    );
    h.advance(1);
    assert_eq!(
        h.plane.prune_expired_archives(h.plane.now()).await.unwrap(),
        1
    );
    let left: Vec<String> = h
        .plane
        .archives()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(left, [unnamed.id.clone(), quarantine.id.clone()]);
    assert!(!bytes.exists(), "this server's copy is wiped");
    let blob_key = format!("{}{}", strata_core::keys::BLOBS, failure.digest);
    assert!(h.plane.store().get(&blob_key).await.unwrap().is_none());
    assert!(h.plane.archive_file(&failure.id).await.is_err());
    let events = h.plane.events(None, 100).await.unwrap();
    let expired: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::ArchiveExpired)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert!(expired[0].contains(&failure.id), "{expired:?}");
    // Again: nothing more to do.
    assert_eq!(
        h.plane.prune_expired_archives(h.plane.now()).await.unwrap(),
        0
    );
    // The rest go at their own time; the quarantine's never.
    h.advance(7 * 24 * HOUR);
    assert_eq!(
        h.plane.prune_expired_archives(h.plane.now()).await.unwrap(),
        1
    );
    let left: Vec<String> = h
        .plane
        .archives()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(left, [quarantine.id]);
}

/// Every server wipes its copy of an archive past its keep: one that sees the delete at once,
/// one that was away when it lists the blobs again (a copy no record names, older than the
/// grace; a fresh one, maybe an upload between its bytes and its record, stays).
#[tokio::test(flavor = "multi_thread")]
async fn every_server_wipes_its_copy_of_an_expired_archive() {
    let h = Harness::start(&["n1"]).await;
    h.deploy(
        "[service.web]\ncommand = [\"web\"]\n[service.web.forensics]\narchive_on = \"failure\"\nkeep = \"1h\"\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin {
        node: "n1".into(),
        subject: "failure:web-1-aaaa".into(),
        releases: vec!["dev/web#1".into()],
        created_at: strata_core::now_millis(),
        ..Default::default()
    };
    let bytes = archive_of(&h, origin, dir.path()).await;
    let node = NodeName::new("n1").unwrap();
    let record = h
        .plane
        .store_node_archive(&node, body(bytes.clone()))
        .await
        .unwrap();
    let kept = std::fs::read(h.plane.blobs().path(&record.digest).unwrap()).unwrap();
    // Two more servers hold a copy (as their replicators would have fetched it).
    let (near_dir, away_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let near = Harness::server(&h.store, &h.clock, near_dir.path(), "s2").await;
    let away = Harness::server(&h.store, &h.clock, away_dir.path(), "s3").await;
    for server in [&near, &away] {
        server
            .blobs()
            .put(&record.digest, body(kept.clone()), u64::MAX)
            .await
            .unwrap();
        server
            .note_blob_held(&record.digest, kept.len() as u64)
            .await
            .unwrap();
    }
    let near_copy = near.blobs().path(&record.digest).unwrap();
    let away_copy = away.blobs().path(&record.digest).unwrap();
    let replicating = tokio::spawn(strata_control::replicate::run(near.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(near_copy.exists());

    h.advance(HOUR);
    assert_eq!(
        h.plane.prune_expired_archives(h.plane.now()).await.unwrap(),
        1
    );
    let mut wiped = false;
    for _ in 0..100 {
        wiped = !near_copy.exists();
        if wiped {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(wiped, "the server watching wipes its copy");
    replicating.abort();

    // The server that was away: its copy is older than the grace; beside it a fresh blob
    // no record names yet.
    let old = std::time::SystemTime::now() - strata_control::replicate::UNRECORDED_GRACE * 2;
    std::fs::File::options()
        .write(true)
        .open(&away_copy)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = b"an upload whose record is not written yet";
    let fresh_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(fresh))
    );
    away.blobs()
        .put(&fresh_digest, body(fresh.to_vec()), u64::MAX)
        .await
        .unwrap();
    let replicating = tokio::spawn(strata_control::replicate::run(away.clone()));
    let mut wiped = false;
    for _ in 0..100 {
        wiped = !away_copy.exists();
        if wiped {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    replicating.abort();
    assert!(wiped, "the server back wipes the copy no record names");
    assert!(away.blobs().exists(&fresh_digest).await.unwrap());
}
