//! Secrets through a real control plane on a real store: sealed at rest (no value anywhere
//! in the store), delivered only in the assignments of the node that runs the instance, a
//! new version rolling out as a new release, the key-encryption key rotated, and a server
//! lacking a key copying it from another over the API.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::harness::{dev, Harness};
use strata_control::ControlError;
use strata_core::{Actor, ServiceName};

const SPEC: &str = r#"
[service.web]
command = ["web"]
[service.web.secrets]
DB = { env = "DB_PASSWORD" }
"#;

fn web() -> ServiceName {
    ServiceName::from_static("web")
}

fn alice() -> Actor {
    Actor::User("alice".into())
}

/// Every key and value of the store, as text.
async fn store_text(harness: &Harness) -> String {
    let page = harness.store.list("/").await.unwrap();
    page.kvs
        .iter()
        .map(|kv| format!("{} {}\n", kv.key, String::from_utf8_lossy(&kv.value)))
        .collect()
}

/// What each node's assignments carry of secret values, by node.
async fn delivered(harness: &Harness) -> Vec<(String, String, u64, String)> {
    let mut found = Vec::new();
    for node in harness.agents.keys() {
        let name = strata_core::NodeName::new(node).unwrap();
        for assignment in harness.plane.assignments(&name).await.unwrap().assignments {
            for secret in assignment.secrets {
                found.push((node.clone(), secret.name, secret.version, secret.value));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_reaches_only_the_node_running_it_sealed_everywhere_else_and_a_new_version_rolls_out(
) {
    let mut harness = Harness::start(&["a", "b"]).await;
    let plane = harness.plane.clone();
    // Set before the service exists: nothing runs with it yet.
    let set = plane
        .set_secret(&dev(), &web(), "DB", "hunter2-v1", &alice())
        .await
        .unwrap();
    assert_eq!((set.version, set.release), (1, None));
    harness.deploy(SPEC).await;
    for _ in 0..5 {
        harness.step().await;
    }
    let running = harness.wanted("web").await;
    assert_eq!(running.len(), 1, "{running:?}");
    let node = running[0].1.clone();
    assert_eq!(
        delivered(&harness).await,
        vec![(node.clone(), "DB".to_string(), 1, "hunter2-v1".to_string())],
        "only the node running the instance gets the value"
    );
    // At rest, in releases, events and everything else the store holds: no value.
    let text = store_text(&harness).await;
    assert!(!text.contains("hunter2"), "a value in the store");
    assert!(
        text.contains("/secrets/dev/web/DB"),
        "the sealed record is there"
    );
    let listed = plane.list_secrets(&dev(), &web()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].version, listed[0].set_by.as_str()), (1, "alice"));
    assert!(!serde_json::to_string(&listed).unwrap().contains("hunter2"));

    // A new version is a new release, rolled out like a config change.
    let set = plane
        .set_secret(&dev(), &web(), "DB", "hunter2-v2", &alice())
        .await
        .unwrap();
    assert_eq!((set.version, set.release), (2, Some(2)));
    for _ in 0..10 {
        harness.step().await;
        harness.advance(1_000);
    }
    let running = harness.wanted("web").await;
    assert_eq!(running.iter().map(|(r, _)| *r).collect::<Vec<_>>(), vec![2]);
    let values: Vec<(u64, String)> = delivered(&harness)
        .await
        .into_iter()
        .map(|(_, _, version, value)| (version, value))
        .collect();
    assert_eq!(values, vec![(2, "hunter2-v2".to_string())]);
    let events = plane.events(None, 100).await.unwrap();
    let told: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == strata_core::EventKind::SecretSet)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        told,
        vec![
            "web: secret DB set (version 1)",
            "web: secret DB set (version 2); release 2 rolls it out"
        ]
    );
    assert!(!store_text(&harness).await.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_naming_an_unset_secret_is_refused_and_a_secret_in_use_is_not_removed() {
    let harness = Harness::start(&["a"]).await;
    Harness::elected(&harness.plane).await;
    let plane = harness.plane.clone();
    let spec = strata_core::spec::parse("s.toml", SPEC)
        .unwrap()
        .services
        .remove(0);
    let refused = plane
        .deploy(
            &dev(),
            strata_core::api::DeployRequest {
                services: vec![strata_core::api::DeployService {
                    spec,
                    artifact_digest: None,
                }],
            },
            &alice(),
        )
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("uses secret `DB`, which is not set")
            && refused
                .hint()
                .is_some_and(|h| h.contains("strata secret set web DB --env dev")),
        "{refused}"
    );
    assert!(
        plane.services(Some(&dev())).await.unwrap().is_empty(),
        "nothing written"
    );
    plane
        .set_secret(&dev(), &web(), "DB", "x", &alice())
        .await
        .unwrap();
    harness.deploy(SPEC).await;
    let in_use = plane
        .remove_secret(&dev(), &web(), "DB", &alice())
        .await
        .unwrap_err();
    assert!(matches!(in_use, ControlError::Conflict { .. }), "{in_use}");
    assert!(in_use.hint().unwrap().contains("without `secrets.DB`"));
    // Bad values and names are refused, never quoted back.
    for (name, value, words) in [
        ("DB", "", "is empty"),
        ("DB", "a\0b", "NUL"),
        ("../x", "v", "not a valid secret name"),
    ] {
        let error = plane
            .set_secret(&dev(), &web(), name, value, &alice())
            .await
            .unwrap_err();
        assert!(error.to_string().contains(words), "{error}");
    }
    let big = "x".repeat(strata_core::secret::MAX_VALUE_BYTES + 1);
    let error = plane
        .set_secret(&dev(), &web(), "DB", &big, &alice())
        .await
        .unwrap_err();
    assert!(matches!(error, ControlError::TooLarge { .. }), "{error}");
    // Unused, it goes; its numbers are never reused.
    plane
        .set_secret(&dev(), &web(), "OLD", "o", &alice())
        .await
        .unwrap();
    plane
        .remove_secret(&dev(), &web(), "OLD", &alice())
        .await
        .unwrap();
    let names: Vec<String> = plane
        .list_secrets(&dev(), &web())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["DB"]);
    let again = plane
        .set_secret(&dev(), &web(), "OLD", "o2", &alice())
        .await
        .unwrap();
    assert_eq!(again.version, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_encryption_key_rotates_and_a_server_lacking_it_copies_it_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn strata_store::Store> = Arc::new(
        strata_store::RedbStore::open(&dir.path().join("store.redb"))
            .await
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut first = common::config(dir.path(), "s1");
    first.api_url = format!("http://{}", listener.local_addr().unwrap());
    let s1 = strata_control::ControlPlane::new(store.clone(), first.clone()).unwrap();
    let router = strata_control::api::router(s1.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    s1.announce_server().await.unwrap();
    s1.set_secret(&dev(), &web(), "DB", "hunter2", &alice())
        .await
        .unwrap();
    let keyfile = std::fs::read_to_string(&first.secrets_key_file).unwrap();
    let rotated = s1.rotate_secrets_key(&alice()).await.unwrap();
    assert_ne!(rotated.kek, rotated.previous);
    let after = std::fs::read_to_string(&first.secrets_key_file).unwrap();
    assert!(after.contains(&rotated.kek) && after.contains(&rotated.previous));
    assert_ne!(keyfile, after);
    // The store's data key is sealed under the new key now; the value did not change.
    let sealed = store
        .get(strata_core::keys::SECRETS_KEY)
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&sealed.value).contains(&rotated.kek));

    // A restarted server with its key file opens it (and can set a new version).
    drop(s1.clone());
    let restarted =
        strata_control::ControlPlane::new(store.clone(), common::config(dir.path(), "s1")).unwrap();
    restarted
        .set_secret(&dev(), &web(), "DB", "hunter3", &alice())
        .await
        .unwrap();

    // A new server without the key copies it from s1 over the API (servers only).
    let s2 =
        strata_control::ControlPlane::new(store.clone(), common::config(dir.path(), "s2")).unwrap();
    let set = tokio::time::timeout(
        Duration::from_secs(10),
        s2.set_secret(&dev(), &web(), "DB", "hunter4", &alice()),
    )
    .await
    .expect("bounded")
    .unwrap();
    assert_eq!(set.version, 3);
    let s2_file =
        std::fs::read_to_string(common::config(dir.path(), "s2").secrets_key_file).unwrap();
    assert!(s2_file.contains(&rotated.kek), "copied");

    // With no server to copy from, the error names the key, the file and what to do.
    let lonely_store: Arc<dyn strata_store::Store> = Arc::new(
        strata_store::RedbStore::open(&dir.path().join("other.redb"))
            .await
            .unwrap(),
    );
    let sealed = store
        .get(strata_core::keys::SECRETS_KEY)
        .await
        .unwrap()
        .unwrap();
    lonely_store
        .put(strata_core::keys::SECRETS_KEY, sealed.value)
        .await
        .unwrap();
    let s3 =
        strata_control::ControlPlane::new(lonely_store, common::config(dir.path(), "s3")).unwrap();
    let error = s3
        .set_secret(&dev(), &web(), "DB", "x", &alice())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&rotated.kek)
            && error.contains("s3/secrets.key")
            && error.contains("copy the key file from s1"),
        "{error}"
    );
    assert!(!error.contains("hunter"));
}
