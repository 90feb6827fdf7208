//! Building images from directories (deterministic layers, stacking on bases), naming them
//! (tags, digests, prefixes), removing them, and garbage collection.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::tree;
use strata_image::{
    BuildOptions, ImageConfigSpec, ImageError, ImageStore, LayerOptions, ManifestDigest, Owner, Tag,
};

fn make_app_dir(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("share/empty")).unwrap();
    fs::write(dir.join("bin/app"), b"#!/bin/sh\necho app\n").unwrap();
    fs::set_permissions(dir.join("bin/app"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(dir.join("share/data.txt"), b"data").unwrap();
    fs::hard_link(dir.join("share/data.txt"), dir.join("share/data-link.txt")).unwrap();
    std::os::unix::fs::symlink("bin/app", dir.join("start")).unwrap();
    std::os::unix::fs::symlink("/etc/hosts", dir.join("share/hosts")).unwrap();
}

fn options(tag: &str) -> BuildOptions {
    BuildOptions {
        tag: Some(Tag::parse(tag).unwrap()),
        created: Some("2024-01-01T00:00:00Z".into()),
        config: ImageConfigSpec {
            entrypoint: vec!["/bin/app".into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn build_from_dir_is_deterministic() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("app");
    make_app_dir(&dir);
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let first = store.build_from_dir(&dir, &options("app:1")).unwrap();
    let second = store.build_from_dir(&dir, &options("app:1")).unwrap();
    assert_eq!(first.layer, second.layer);
    assert_eq!(first.image.digest, second.image.digest);
    assert_eq!(first.entries, 8);
    let other_store = ImageStore::open(temp.path().join("other")).unwrap();
    let third = other_store.build_from_dir(&dir, &options("app:1")).unwrap();
    assert_eq!(first.layer, third.layer);
    assert_eq!(first.image.digest, third.image.digest);

    // A copy with other mtimes and owners gives the same layer when those are fixed.
    let copy = temp.path().join("copy");
    make_app_dir(&copy);
    filetime::set_file_mtime(
        copy.join("share/data.txt"),
        filetime::FileTime::from_unix_time(1, 0),
    )
    .unwrap();
    let fixed = BuildOptions {
        layer: LayerOptions {
            owner: Owner::Fixed { uid: 0, gid: 0 },
            fixed_mtime: Some(0),
        },
        ..options("app:fixed")
    };
    let a = store.build_from_dir(&dir, &fixed).unwrap();
    let b = store.build_from_dir(&copy, &fixed).unwrap();
    assert_eq!(a.layer, b.layer);
    assert_ne!(
        a.layer, first.layer,
        "the mtimes are part of the default layer"
    );

    // A change gives another layer.
    fs::write(dir.join("share/data.txt"), b"DATA").unwrap();
    let changed = store.build_from_dir(&dir, &options("app:2")).unwrap();
    assert_ne!(changed.layer, first.layer);

    // What was built unpacks to the same tree, hard link and setuid included.
    let unpacked = store.unpack(&first.layer).unwrap();
    assert_eq!(
        tree(&unpacked),
        [
            "bin/",
            "bin/app",
            "share/",
            "share/data-link.txt",
            "share/data.txt",
            "share/empty/",
            "share/hosts",
            "start"
        ]
    );
    let app = fs::metadata(unpacked.join("bin/app")).unwrap();
    assert_eq!(app.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(unpacked.join("share/data.txt"))
            .unwrap()
            .nlink(),
        2
    );
    assert_eq!(
        fs::read(unpacked.join("share/data-link.txt")).unwrap(),
        b"data"
    );
    assert_eq!(
        fs::read_link(unpacked.join("start")).unwrap(),
        Path::new("bin/app")
    );
}

#[test]
fn build_refuses_devices_fifos_and_sockets() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("app");
    fs::create_dir_all(dir.join("run")).unwrap();
    nix::unistd::mkfifo(&dir.join("run/pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let error = store
        .build_from_dir(&dir, &options("app:1"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("run/pipe"), "{error}");
    assert!(error.contains("FIFO"), "{error}");
}

#[test]
fn images_stack_on_bases_and_merge_configs() {
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let base_dir = temp.path().join("base");
    fs::create_dir_all(base_dir.join("etc")).unwrap();
    fs::write(base_dir.join("etc/os-release"), b"ID=base\n").unwrap();
    let base = store
        .build_from_dir(
            &base_dir,
            &BuildOptions {
                tag: Some(Tag::parse("base:1").unwrap()),
                config: ImageConfigSpec {
                    env: vec!["PATH=/bin".into(), "LANG=C".into()],
                    working_dir: Some("/".into()),
                    exposed_ports: vec!["80/tcp".into()],
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
    let app_dir = temp.path().join("app");
    make_app_dir(&app_dir);
    let mut opts = options("shop/app:1.0");
    opts.base = vec!["base:1".into()];
    opts.config.env = vec!["LANG=C.UTF-8".into()];
    let app = store.build_from_dir(&app_dir, &opts).unwrap();
    let layers = app.image.manifest.layer_digests();
    assert_eq!(layers, [base.layer.clone(), app.layer.clone()]);
    let config = &app.image.manifest.config;
    assert_eq!(config.env, ["PATH=/bin", "LANG=C.UTF-8"]);
    assert_eq!(config.working_dir.as_deref(), Some("/"));
    assert_eq!(config.exposed_ports, ["80/tcp"]);
    assert_eq!(config.entrypoint, ["/bin/app"]);
    let lower = store.lower_dirs("shop/app:1.0").unwrap();
    assert_eq!(
        lower,
        [store.layer_dir(&app.layer), store.layer_dir(&base.layer)]
    );
    assert!(lower[1].join("etc/os-release").is_file());
    assert!(lower[0].join("bin/app").is_file());

    // A base that does not exist is named.
    let mut missing = options("x:1");
    missing.base = vec!["base:2".into()];
    let error = store
        .build_from_dir(&app_dir, &missing)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("base:2") && error.contains("versions 1"),
        "{error}"
    );
}

#[test]
fn references_tags_and_remove() {
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let dir = temp.path().join("app");
    make_app_dir(&dir);
    let built = store
        .build_from_dir(&dir, &options("shop/api:1.0"))
        .unwrap();
    let digest = built.image.digest.clone();
    store
        .tag("shop/api:1.0", &Tag::parse("shop/api:stable").unwrap())
        .unwrap();
    assert_eq!(store.inspect(&digest).unwrap().tags.len(), 2);
    assert_eq!(store.inspect(&digest.to_string()).unwrap().digest, digest);
    assert_eq!(store.inspect(&digest.hex()[..12]).unwrap().digest, digest);
    assert_eq!(
        store
            .inspect(&format!("sha256:{}", &digest.hex()[..8]))
            .unwrap()
            .digest,
        digest
    );
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tags.len(), 2);

    let error = store.inspect("shop/api:9").unwrap_err().to_string();
    assert!(error.contains("has the versions 1.0, stable"), "{error}");
    let error = store.inspect("nothing:1").unwrap_err().to_string();
    assert!(error.contains("no image has that name"), "{error}");
    let error = store.inspect("Shop:1").unwrap_err().to_string();
    assert!(error.contains("lowercase"), "{error}");

    // Two images whose digests share a prefix make that prefix ambiguous: find one.
    let mut digests = vec![digest.clone()];
    let mut ambiguous = None;
    for i in 0..64 {
        fs::write(dir.join("share/data.txt"), format!("version {i}")).unwrap();
        let other = store
            .build_from_dir(&dir, &options(&format!("shop/api:v{i}")))
            .unwrap();
        for d in &digests {
            if d.hex()[..1] == other.image.digest.hex()[..1] {
                ambiguous = Some(d.hex()[..1].to_string());
            }
        }
        digests.push(other.image.digest.clone());
        if ambiguous.is_some() {
            break;
        }
    }
    let prefix = ambiguous.expect("64 digests always share a first hex digit");
    let error = store.inspect(&prefix).unwrap_err();
    assert!(
        matches!(error, ImageError::AmbiguousReference { .. }),
        "{error:?}"
    );

    // Removing one tag keeps the others; removing by digest removes them all.
    let report = store.remove("shop/api:stable").unwrap();
    assert_eq!(report.untagged, [Tag::parse("shop/api:stable").unwrap()]);
    assert_eq!(report.remaining_tags, [Tag::parse("shop/api:1.0").unwrap()]);
    store
        .tag(&digest, &Tag::parse("shop/api:stable").unwrap())
        .unwrap();
    let report = store.remove(&digest).unwrap();
    assert_eq!(report.untagged.len(), 2);
    assert!(report.remaining_tags.is_empty());
    // Still there (by digest) until gc.
    assert!(store.inspect(&digest).unwrap().tags.is_empty());
    assert!(store.inspect("shop/api:1.0").is_err());
}

#[test]
fn gc_frees_what_is_unreferenced_and_keeps_what_is_tagged_or_in_use() {
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let build = |name: &str, content: &str, tag: Option<&str>| {
        let dir = temp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("file"), content.repeat(1000)).unwrap();
        let built = store
            .build_from_dir(
                &dir,
                &BuildOptions {
                    tag: tag.map(|t| Tag::parse(t).unwrap()),
                    ..Default::default()
                },
            )
            .unwrap();
        store.unpack(&built.layer).unwrap();
        built
    };
    let shared_dir = temp.path().join("shared");
    fs::create_dir_all(&shared_dir).unwrap();
    fs::write(shared_dir.join("lib"), b"shared".repeat(1000)).unwrap();
    let shared = store
        .build_from_dir(
            &shared_dir,
            &BuildOptions {
                tag: Some(Tag::parse("shared:1").unwrap()),
                ..Default::default()
            },
        )
        .unwrap();

    let tagged = build("tagged", "a", Some("tagged:1"));
    let in_use = build("in-use", "b", None);
    let unused = build("unused", "c", None);
    let removed = build("removed", "d", Some("removed:1"));
    store.remove("removed:1").unwrap();
    // An untagged image on the tagged shared:1: its own layer goes, the shared one stays.
    let top_dir = temp.path().join("top");
    fs::create_dir_all(&top_dir).unwrap();
    fs::write(top_dir.join("top"), b"top".repeat(1000)).unwrap();
    let on_shared = store
        .build_from_dir(
            &top_dir,
            &BuildOptions {
                base: vec!["shared:1".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(store.lower_dirs(&on_shared.image.digest).unwrap().len(), 2);

    // Leftovers of interrupted writes.
    fs::write(store.root().join("blobs/sha256/.tmp-crashed"), b"partial").unwrap();
    fs::create_dir_all(store.root().join("layers/.tmp-abc-123/usr")).unwrap();
    fs::write(store.root().join("manifests/.tmp-x"), b"{").unwrap();

    let blob_bytes: u64 = [&unused, &removed, &on_shared]
        .iter()
        .map(|b| store.layer_size(&b.layer).unwrap())
        .sum();
    let missing = ManifestDigest::parse(&"0".repeat(64)).unwrap();
    let report = store
        .gc(&[in_use.image.digest.clone(), missing.clone()])
        .unwrap();
    let mut expected_manifests = vec![
        unused.image.digest.clone(),
        removed.image.digest.clone(),
        on_shared.image.digest.clone(),
    ];
    expected_manifests.sort();
    assert_eq!(report.manifests_removed, expected_manifests);
    let mut expected_layers = vec![
        unused.layer.clone(),
        removed.layer.clone(),
        on_shared.layer.clone(),
    ];
    expected_layers.sort();
    assert_eq!(report.blobs_removed, expected_layers);
    assert_eq!(report.layers_removed, expected_layers);
    assert_eq!(report.temporaries_removed, 3);
    assert_eq!(report.in_use_missing, [missing]);
    // The three blobs, the files of their unpacked trees (1000 + 1000 + 3000 bytes) and the
    // manifests.
    assert!(report.bytes_freed > blob_bytes + 5000, "{report:?}");

    // Kept: the tagged images, the one in use, and the shared layer (unpacked too).
    for kept in [&tagged, &in_use, &shared] {
        for layer in &kept.image.manifest.layers {
            assert!(store.has_layer(&layer.digest));
            assert!(store.layer_dir(&layer.digest).is_dir());
        }
        assert_eq!(
            store.inspect(&kept.image.digest).unwrap().digest,
            kept.image.digest
        );
    }
    for gone in [&unused, &removed, &on_shared] {
        let error = store.inspect(&gone.image.digest).unwrap_err();
        assert!(
            matches!(error, ImageError::ImageNotFound { .. }),
            "{error:?}"
        );
        assert!(!store.has_layer(&gone.layer));
        assert!(!store.layer_dir(&gone.layer).exists());
    }

    // Nothing more to do.
    let again = store
        .gc(std::slice::from_ref(&in_use.image.digest))
        .unwrap();
    assert_eq!(again.removed(), 0, "{again:?}");

    // Untag everything and stop using it: gc empties the store.
    store.remove("tagged:1").unwrap();
    store.remove("shared:1").unwrap();
    let last = store.gc(&[]).unwrap();
    assert_eq!(last.manifests_removed.len(), 3);
    assert!(store.list().unwrap().is_empty());
    for dir in ["blobs/sha256", "layers", "manifests", "tags"] {
        let left: Vec<_> = fs::read_dir(store.root().join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
}
