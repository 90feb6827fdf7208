//! A failed instance's archive (`[forensics] archive_on = "failure"`) through the control
//! plane, in-process (the harness, its clock by hand): kept for its release's `keep` and
//! listed with when it expires, then removed by the leader (its record, its blob's record and
//! this server's copy of its bytes, with an event saying so), while archives without a keep
//! stay.

mod common;

use common::forensics::{archive_of, body};
use common::harness::Harness;
use strata_control::replicate::BlobKind;
use strata_core::auth::{EnvScope, Principal, Role};
use strata_core::{EventKind, NodeName};
use strata_forensics::Origin;

const HOUR: u64 = 3_600_000;

/// The ids of the archives kept, oldest first.
async fn kept(h: &Harness) -> Vec<String> {
    let archives = h.plane.archives().await.unwrap();
    archives.into_iter().map(|a| a.id).collect()
}

/// Whether `path` is gone within 5 s.
async fn gone(path: &std::path::Path) -> bool {
    for _ in 0..100 {
        if !path.exists() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Removes what expired by the harness's clock: how many.
async fn prune(h: &Harness) -> usize {
    h.plane.prune_expired_archives(h.plane.now()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failures_archive_is_kept_for_its_releases_keep_then_removed_with_its_bytes() {
    let h = Harness::start(&["n1"]).await;
    h.deploy(concat!(
        "[service.web]\ncommand = [\"web\"]\n[service.web.forensics]\narchive_on = \"failure\"\nkeep = \"2h\"\n",
        "[service.api]\ncommand = [\"api\"]\n[service.api.forensics]\narchive_on = \"failure\"\nkeep = \"1m\"\n",
    ))
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
    // Only the release of the instance's own service and number counts: a node naming
    // another service's gets the default, not that service's keep.
    let misnamed = store(4, "failure:web-1-cccc", "dev/api#1").await;
    assert_eq!(
        misnamed.expires_at,
        Some(misnamed.stored_at + 7 * 24 * HOUR)
    );
    let api = store(5, "failure:api-1-dddd", "dev/api#1").await;
    assert_eq!(api.expires_at, Some(api.stored_at + 60_000));
    // A quarantine's archive is kept until removed by hand.
    let quarantine = store(3, "instance:web-1-aaaa", "dev/web#1").await;
    assert_eq!(quarantine.expires_at, None);
    // Its bytes go to other servers only (operators fetch it with `strata archive get`):
    // never to a node or a deployer, as an artifact would.
    let node_principal = Principal::Node { name: "n1".into() };
    let deployer = Principal::User {
        name: "ci".into(),
        role: Role::Deployer,
        envs: EnvScope::All,
    };
    let server = Principal::Server { id: "s2".into() };
    for refused in [&node_principal, &deployer] {
        let error = h
            .plane
            .may_serve_blob(&failure.digest, refused)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("forensic archive"), "{error}");
    }
    h.plane
        .may_serve_blob(&failure.digest, &server)
        .await
        .unwrap();
    let bytes = h.plane.blobs().path(&failure.digest).unwrap();
    assert!(bytes.exists());

    // Each goes at its keep's end, not a millisecond before: api's after a minute, web's
    // after two hours.
    h.advance(60_000 - 1);
    assert_eq!(prune(&h).await, 0);
    h.advance(1);
    assert_eq!(prune(&h).await, 1);
    h.advance(2 * HOUR - 60_000 - 1);
    assert_eq!(prune(&h).await, 0);
    h.advance(1);
    assert_eq!(prune(&h).await, 1);
    assert_eq!(
        kept(&h).await,
        [
            unnamed.id.clone(),
            quarantine.id.clone(),
            misnamed.id.clone()
        ]
    );
    assert!(!bytes.exists(), "this server's copy is wiped");
    let blob_key = format!("{}{}", strata_core::keys::BLOBS, failure.digest);
    assert!(h.plane.store().get(&blob_key).await.unwrap().is_none());
    assert!(h.plane.archive_file(&failure.id).await.is_err());
    assert!(h
        .plane
        .may_serve_blob(&failure.digest, &server)
        .await
        .is_err());
    let events = h.plane.events(None, 100).await.unwrap();
    let expired: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::ArchiveExpired)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(expired.len(), 2, "{expired:?}");
    assert!(
        expired.iter().any(|e| e.contains(&failure.id)),
        "{expired:?}"
    );
    assert!(expired.iter().any(|e| e.contains(&api.id)), "{expired:?}");
    // Again: nothing more to do.
    assert_eq!(prune(&h).await, 0);
    // The rest go at their own time; the quarantine's never.
    h.advance(7 * 24 * HOUR);
    assert_eq!(prune(&h).await, 2);
    assert_eq!(kept(&h).await, [quarantine.id]);
}

/// Every server wipes its copy of an archive past its keep: one that sees the delete at once,
/// /// one that was away when it lists the blobs again (the tombstone names it; a blob that no
/// record names and no tombstone either stays). A copy finished after its record went is not
/// recorded again.
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
            .note_blob_held(&record.digest, kept.len() as u64, BlobKind::Archive)
            .await
            .unwrap();
    }
    let near_copy = near.blobs().path(&record.digest).unwrap();
    let away_copy = away.blobs().path(&record.digest).unwrap();
    let replicating = tokio::spawn(strata_control::replicate::run(near.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(near_copy.exists());

    h.advance(HOUR);
    assert_eq!(prune(&h).await, 1);
    assert!(gone(&near_copy).await, "the server watching wipes its copy");
    // A copy that finishes now is not recorded again (nothing would ever remove it).
    let late = near
        .note_blob_copied(&record.digest, kept.len() as u64)
        .await;
    assert!(late.is_err(), "{late:?}");
    let blob_key = format!("{}{}", strata_core::keys::BLOBS, record.digest);
    assert!(h.store.get(&blob_key).await.unwrap().is_none());
    replicating.abort();

    // The server that was away: the tombstone names its copy. Beside it an old blob that no
    // record names (a store restored from an older backup, say): never wiped on that ground.
    let unrecorded = b"a blob no record names";
    let unrecorded_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(unrecorded))
    );
    away.blobs()
        .put(&unrecorded_digest, body(unrecorded.to_vec()), u64::MAX)
        .await
        .unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(away.blobs().path(&unrecorded_digest).unwrap())
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let replicating = tokio::spawn(strata_control::replicate::run(away.clone()));
    let wiped = gone(&away_copy).await;
    replicating.abort();
    assert!(wiped, "the server back wipes the copy the tombstone names");
    assert!(away.blobs().exists(&unrecorded_digest).await.unwrap());
}
