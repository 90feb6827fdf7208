//! Importing real archives made here from a small root (OCI image layouts as a directory, a
//! tar and a gzip'd tar; `docker save` archives of the classic kind and of docker 25+), what
//! `lower_dirs` gives for them, export -> import round trips, and the refusals of broken
//! archives.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{gzip, is_root, merge_layers, sha256, tree, TarBuilder};
use serde_json::json;
use strata_image::{ImageError, ImageStore, ImportOptions, Platform, Tag};

/// The small root: a gzip'd base layer and a plain app layer (with a whiteout of the base's
/// /etc/hostname when running as root, since only root can unpack whiteouts).
struct Root {
    base: Vec<u8>,
    app: Vec<u8>,
}

impl Root {
    fn new() -> Root {
        let base = TarBuilder::new()
            .dir("etc", 0o755)
            .file("etc/hostname", b"base\n", 0o644)
            .file("etc/os-release", b"ID=strata-test\n", 0o644)
            .dir("usr", 0o755)
            .dir("usr/bin", 0o755)
            .file("usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755)
            .symlink("bin", "usr/bin")
            .finish();
        let mut app = TarBuilder::new()
            .dir("app", 0o755)
            .file("app/main.txt", b"app\n", 0o644)
            .symlink("app/current", "/app/main.txt");
        if is_root() {
            app = app.file("etc/.wh.hostname", b"", 0o644);
        }
        Root {
            base,
            app: app.finish(),
        }
    }

    fn diff_ids(&self) -> Vec<String> {
        vec![sha256(&self.base), sha256(&self.app)]
    }

    fn config(&self, diff_ids: &[String]) -> Vec<u8> {
        let platform = Platform::host();
        serde_json::to_vec(&json!({
            "created": "2024-05-01T12:00:00Z",
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {
                "Entrypoint": ["/usr/bin/hello"],
                "Cmd": ["--greet"],
                "Env": ["PATH=/usr/bin:/bin", "MODE=test"],
                "WorkingDir": "/app",
                "User": "1000:1000",
                "ExposedPorts": {"8080/tcp": {}, "9090/udp": {}},
                "Labels": {"org.example.team": "platform"}
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "test base"}, {"created_by": "test app"}]
        }))
        .unwrap()
    }
}

/// Writes an OCI image layout into `dir`: the base layer gzip'd, the app layer plain.
fn write_oci_layout(dir: &Path, root: &Root, annotations: serde_json::Value, config: &[u8]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let base_gz = gzip(&root.base);
    let put = |bytes: &[u8]| write_blob(dir, bytes);
    let base_digest = put(&base_gz);
    let app_digest = put(&root.app);
    let config_digest = put(config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len()
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": base_digest,
                "size": base_gz.len()
            },
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": app_digest,
                "size": root.app.len()
            }
        ]
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "annotations": annotations
            }]
        }))
        .unwrap(),
    )
    .unwrap();
    fs::write(
        dir.join("oci-layout"),
        br#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
}

/// Writes the OCI image layout of `root`, with its own config, into `dir`.
fn write_root_layout(dir: &Path, root: &Root, annotations: serde_json::Value) {
    write_oci_layout(dir, root, annotations, &root.config(&root.diff_ids()));
}

/// A scratch directory, the small root, and the root's OCI image layout (tagged
/// `demo/app:1.0`) at `layout` in the scratch directory.
fn demo_layout() -> (tempfile::TempDir, Root, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let root = Root::new();
    let layout = temp.path().join("layout");
    write_root_layout(
        &layout,
        &root,
        json!({"org.opencontainers.image.ref.name": "demo/app:1.0"}),
    );
    (temp, root, layout)
}

/// Where the blob of `digest` (`sha256:<hex>`) is in the OCI image layout at `dir`.
fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Writes `bytes` as a blob of the OCI image layout at `dir`; returns its digest.
fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    fs::write(blob_path(dir, &digest), bytes).unwrap();
    digest
}

/// The digest of the first manifest the `index.json` of the layout at `dir` lists, and the
/// path of its blob.
fn first_manifest(dir: &Path) -> (String, PathBuf) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = blob_path(dir, &digest);
    (digest, path)
}

/// A tar of everything under `dir` (paths relative to it).
fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir).unwrap();
    builder.into_inner().unwrap()
}

/// What the demo image's layers show merged (as root, the app layer's whiteout hides the
/// base's `etc/hostname`).
const MERGED_TREE: [&str; 9] = [
    "app/",
    "app/current",
    "app/main.txt",
    "bin",
    "etc/",
    "etc/os-release",
    "usr/",
    "usr/bin/",
    "usr/bin/hello",
];

/// Checks an imported demo image: its tags, layers, config, and what its layers show.
fn check_demo_image(store: &ImageStore, root: &Root, reference: &str, scratch: &Path) {
    let image = store.inspect(reference).unwrap();
    assert_eq!(
        image
            .manifest
            .layer_digests()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>(),
        root.diff_ids()
    );
    let config = &image.manifest.config;
    assert_eq!(config.entrypoint, ["/usr/bin/hello"]);
    assert_eq!(config.cmd, ["--greet"]);
    assert_eq!(config.env, ["PATH=/usr/bin:/bin", "MODE=test"]);
    assert_eq!(config.working_dir.as_deref(), Some("/app"));
    assert_eq!(config.user.as_deref(), Some("1000:1000"));
    assert_eq!(config.exposed_ports, ["8080/tcp", "9090/udp"]);
    assert_eq!(config.labels["org.example.team"], "platform");
    assert_eq!(
        image.manifest.created.as_deref(),
        Some("2024-05-01T12:00:00Z")
    );
    assert_eq!(
        image.manifest.size,
        (root.base.len() + root.app.len()) as u64
    );

    let lower = store.lower_dirs(reference).unwrap();
    assert_eq!(lower.len(), 2);
    // Top first.
    assert_eq!(lower[0], store.layer_dir(&image.manifest.layers[1].digest));
    assert_eq!(lower[1], store.layer_dir(&image.manifest.layers[0].digest));
    assert!(tree(&lower[1]).contains(&"usr/bin/hello".to_string()));
    assert!(tree(&lower[0]).contains(&"app/main.txt".to_string()));

    let merged = scratch.join(format!("merged-{}", image.digest.hex()));
    merge_layers(&lower, &merged);
    let mut expected = MERGED_TREE.to_vec();
    if !is_root() {
        expected.push("etc/hostname");
        expected.sort();
    }
    assert_eq!(tree(&merged), expected);
    assert_eq!(
        fs::read(merged.join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        fs::read_link(merged.join("app/current")).unwrap(),
        Path::new("/app/main.txt")
    );
}

#[test]
fn oci_layout_directory_tar_and_gzip_tar_import() {
    let (temp, root, layout) = demo_layout();

    let store = ImageStore::open(temp.path().join("store-dir")).unwrap();
    let imported = store.import(&layout, &ImportOptions::default()).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(
        imported[0].image.tags,
        [Tag::parse("demo/app:1.0").unwrap()]
    );
    check_demo_image(&store, &root, "demo/app:1.0", temp.path());
    let digest = imported[0].image.digest.clone();

    // The same layout as a tar, and as a gzip'd tar: the same image.
    let tar = tar_dir(&layout);
    let tar_path = temp.path().join("layout.tar");
    fs::write(&tar_path, &tar).unwrap();
    let gz_path = temp.path().join("layout.tar.gz");
    fs::write(&gz_path, gzip(&tar)).unwrap();
    for (name, path) in [("tar", &tar_path), ("tar.gz", &gz_path)] {
        let store = ImageStore::open(temp.path().join(format!("store-{name}"))).unwrap();
        let imported = store.import(path, &ImportOptions::default()).unwrap();
        assert_eq!(imported.len(), 1, "{name}");
        assert_eq!(imported[0].image.digest, digest, "{name}");
        check_demo_image(&store, &root, "demo/app:1.0", &temp.path().join(name));
        // Importing again changes nothing.
        let again = store.import(path, &ImportOptions::default()).unwrap();
        assert_eq!(again[0].image.digest, digest);
        assert_eq!(store.list().unwrap().len(), 1);
    }
}

#[test]
fn docker_save_archives_classic_and_docker_25() {
    let temp = tempfile::tempdir().unwrap();
    let root = Root::new();

    // Classic: <id>/layer.tar, <hex>.json configs, a second image whose layer is a symbolic
    // link to the first image's (as docker writes shared layers).
    let classic = temp.path().join("classic");
    fs::create_dir_all(&classic).unwrap();
    let config_a = root.config(&root.diff_ids());
    let config_b = root.config(&[sha256(&root.base)]);
    let hex = |d: String| d.trim_start_matches("sha256:").to_string();
    let (id1, id2, id3) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
    for id in [&id1, &id2, &id3] {
        fs::create_dir_all(classic.join(id)).unwrap();
        fs::write(classic.join(id).join("VERSION"), b"1.0").unwrap();
    }
    fs::write(classic.join(&id1).join("layer.tar"), gzip(&root.base)).unwrap();
    fs::write(classic.join(&id2).join("layer.tar"), &root.app).unwrap();
    std::os::unix::fs::symlink(
        format!("../{id1}/layer.tar"),
        classic.join(&id3).join("layer.tar"),
    )
    .unwrap();
    let config_a_name = format!("{}.json", hex(sha256(&config_a)));
    let config_b_name = format!("{}.json", hex(sha256(&config_b)));
    fs::write(classic.join(&config_a_name), &config_a).unwrap();
    fs::write(classic.join(&config_b_name), &config_b).unwrap();
    fs::write(
        classic.join("manifest.json"),
        serde_json::to_vec(&json!([
            {
                "Config": config_a_name,
                "RepoTags": ["demo/app:1.0", "demo/app:latest"],
                "Layers": [format!("{id1}/layer.tar"), format!("{id2}/layer.tar")]
            },
            {
                "Config": config_b_name,
                "RepoTags": ["demo/base:1", "Not A Valid:tag"],
                "Layers": [format!("{id3}/layer.tar")]
            }
        ]))
        .unwrap(),
    )
    .unwrap();
    fs::write(classic.join("repositories"), b"{}").unwrap();
    let classic_tar = temp.path().join("classic.tar");
    fs::write(&classic_tar, tar_dir(&classic)).unwrap();

    // docker 25+: an OCI layout with a manifest.json next to it naming blobs.
    let modern = temp.path().join("modern");
    write_oci_layout(
        &modern,
        &root,
        json!({
            "io.containerd.image.name": "docker.io/demo/app:1.0",
            "org.opencontainers.image.ref.name": "1.0"
        }),
        &config_a,
    );
    let (_, manifest_path) = first_manifest(&modern);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(manifest_path).unwrap()).unwrap();
    let blob =
        |d: &serde_json::Value| format!("blobs/sha256/{}", hex(d.as_str().unwrap().to_string()));
    fs::write(
        modern.join("manifest.json"),
        serde_json::to_vec(&json!([{
            "Config": blob(&manifest["config"]["digest"]),
            "RepoTags": ["demo/app:1.0"],
            "Layers": [blob(&manifest["layers"][0]["digest"]), blob(&manifest["layers"][1]["digest"])]
        }]))
        .unwrap(),
    )
    .unwrap();
    let modern_tar = temp.path().join("modern.tar");
    fs::write(&modern_tar, tar_dir(&modern)).unwrap();

    let mut digests = Vec::new();
    for (name, path) in [
        ("classic tar", &classic_tar),
        ("classic dir", &classic),
        ("docker 25 tar", &modern_tar),
    ] {
        let store = ImageStore::open(temp.path().join(format!("store {name}"))).unwrap();
        let imported = store.import(path, &ImportOptions::default()).unwrap();
        let app = imported
            .iter()
            .find(|i| i.image.tags.contains(&Tag::parse("demo/app:1.0").unwrap()))
            .unwrap_or_else(|| panic!("{name}: {imported:?}"));
        check_demo_image(&store, &root, "demo/app:1.0", &temp.path().join(name));
        digests.push(app.image.digest.clone());
        if name.starts_with("classic") {
            assert_eq!(imported.len(), 2, "{name}");
            assert_eq!(
                app.image.tags,
                [
                    Tag::parse("demo/app:1.0").unwrap(),
                    Tag::parse("demo/app:latest").unwrap()
                ]
            );
            let base = store.inspect("demo/base:1").unwrap();
            assert_eq!(
                base.manifest.layers[0].digest,
                app.image.manifest.layers[0].digest
            );
            let other = imported
                .iter()
                .find(|i| i.image.digest == base.digest)
                .unwrap();
            assert!(
                other
                    .unusable_names
                    .iter()
                    .any(|n| n.starts_with("Not A Valid:tag")),
                "{other:?}"
            );
        }
    }
    // The same image, whichever way it came.
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn export_then_import_round_trips() {
    let (temp, root, layout) = demo_layout();
    let first = ImageStore::open(temp.path().join("first")).unwrap();
    let original = first.import(&layout, &ImportOptions::default()).unwrap()[0]
        .image
        .clone();

    let mut exported = Vec::new();
    first
        .export_oci_layout("demo/app:1.0", &mut exported)
        .unwrap();
    let mut again = Vec::new();
    first
        .export_oci_layout(&original.digest, &mut again)
        .unwrap();
    assert!(exported == again, "exports of the same image differ");
    let file = temp.path().join("exported.tar");
    fs::write(&file, &exported).unwrap();

    // The archive is a plain OCI layout.
    let mut names = Vec::new();
    for entry in tar::Archive::new(&exported[..]).entries().unwrap() {
        names.push(entry.unwrap().path().unwrap().display().to_string());
    }
    assert!(names.contains(&"oci-layout".to_string()), "{names:?}");
    assert!(names.contains(&"index.json".to_string()), "{names:?}");
    for layer in &original.manifest.layers {
        assert!(names.contains(&format!("blobs/sha256/{}", layer.digest.hex())));
    }

    let second = ImageStore::open(temp.path().join("second")).unwrap();
    let imported = second.import(&file, &ImportOptions::default()).unwrap();
    assert_eq!(imported.len(), 1);
    let copy = &imported[0].image;
    assert_eq!(
        copy.manifest.layer_digests(),
        original.manifest.layer_digests()
    );
    assert_eq!(copy.digest, original.digest, "the same image digest");
    assert_eq!(copy.tags, original.tags);
    check_demo_image(&second, &root, "demo/app:1.0", temp.path());

    // Tags can be given instead of the archive's.
    let third = ImageStore::open(temp.path().join("third")).unwrap();
    let imported = third
        .import(
            &file,
            &ImportOptions {
                tags: Some(vec![Tag::parse("moved/app:2").unwrap()]),
            },
        )
        .unwrap();
    assert_eq!(imported[0].image.tags, [Tag::parse("moved/app:2").unwrap()]);
    assert!(third.inspect("demo/app:1.0").is_err());
}

#[test]
fn broken_archives_are_refused_naming_what_is_wrong() {
    let temp = tempfile::tempdir().unwrap();
    let root = Root::new();
    let store = ImageStore::open(temp.path().join("store")).unwrap();

    // A config whose diff_ids do not match the app layer.
    let mut wrong = root.diff_ids();
    wrong[1] = sha256(b"something else");
    let bad = temp.path().join("bad-diff-id");
    write_oci_layout(&bad, &root, json!({}), &root.config(&wrong));
    let error = store.import(&bad, &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(error, ImageError::DiffIdMismatch { index: 1, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "blobs/sha256/{}",
            sha256(&root.app).trim_start_matches("sha256:")
        )),
        "{message}"
    );
    assert!(message.contains(&wrong[1]), "{message}");

    // A zstd layer: refused, naming the media type.
    let zstd = temp.path().join("zstd");
    write_root_layout(&zstd, &root, json!({}));
    let (manifest_digest, manifest_path) = first_manifest(&zstd);
    let text = fs::read_to_string(&manifest_path)
        .unwrap()
        .replace("v1.tar+gzip", "v1.tar+zstd");
    // Point the index at the edited manifest.
    let new_digest = write_blob(&zstd, text.as_bytes());
    let index_text = fs::read_to_string(zstd.join("index.json"))
        .unwrap()
        .replace(&manifest_digest, &new_digest);
    fs::write(zstd.join("index.json"), index_text).unwrap();
    let message = store
        .import(&zstd, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{message}"
    );

    // A tampered manifest (its digest no longer matches the index).
    let tampered = temp.path().join("tampered");
    write_root_layout(&tampered, &root, json!({}));
    let (_, path) = first_manifest(&tampered);
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("\"schemaVersion\":2", "\"schemaVersion\": 2");
    fs::write(&path, text).unwrap();
    let message = store
        .import(&tampered, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("tampered with"), "{message}");

    // Not an image archive at all: a plain layer tar.
    let layer = temp.path().join("layer.tar");
    fs::write(&layer, &root.base).unwrap();
    let message = store
        .import(&layer, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("neither a `docker save` archive"),
        "{message}"
    );
    assert!(message.contains("`etc`"), "{message}");

    // A version-only ref.name gives an untagged image and says why.
    let untagged = temp.path().join("untagged");
    write_root_layout(
        &untagged,
        &root,
        json!({"org.opencontainers.image.ref.name": "latest"}),
    );
    let imported = store.import(&untagged, &ImportOptions::default()).unwrap();
    assert!(imported[0].image.tags.is_empty());
    assert!(
        imported[0].unusable_names[0].contains("version without a NAME"),
        "{:?}",
        imported[0].unusable_names
    );
}

/// The real thing: the imported layers mounted with overlayfs show the merged root, whiteout
/// included. Needs root and overlayfs; says why when it skips.
#[test]
fn lower_dirs_mount_as_overlayfs() {
    if !is_root() {
        eprintln!("not root: skipping the overlayfs mount");
        return;
    }
    let (temp, _root, layout) = demo_layout();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    store.import(&layout, &ImportOptions::default()).unwrap();
    let lower = store.lower_dirs("demo/app:1.0").unwrap();
    let (upper, work, merged) = (
        temp.path().join("upper"),
        temp.path().join("work"),
        temp.path().join("merged"),
    );
    for dir in [&upper, &work, &merged] {
        fs::create_dir(dir).unwrap();
    }
    let lowerdir: Vec<String> = lower.iter().map(|d| d.display().to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    let mounted = nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    );
    if let Err(e) = mounted {
        eprintln!("cannot mount overlayfs here ({e}): skipping the overlayfs check");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(merged.clone());
    assert_eq!(tree(&merged), MERGED_TREE);
    assert_eq!(
        fs::read(merged.join("bin/hello")).unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    // Writes go to the upper directory; the shared layers stay as they were.
    fs::write(merged.join("etc/os-release"), b"changed").unwrap();
    assert_eq!(
        fs::read(lower[1].join("etc/os-release")).unwrap(),
        b"ID=strata-test\n"
    );
    assert_eq!(fs::read(upper.join("etc/os-release")).unwrap(), b"changed");
}

#[test]
fn a_multi_platform_index_imports_this_machines_image() {
    let temp = tempfile::tempdir().unwrap();
    let root = Root::new();
    let host = Platform::host();
    let other_arch = if host.architecture == "s390x" {
        "riscv64"
    } else {
        "s390x"
    };
    for (name, with_host) in [("both", true), ("other-only", false)] {
        let layout = temp.path().join(name);
        write_root_layout(&layout, &root, json!({}));
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let mut host_manifest = index["manifests"][0].clone();
        host_manifest["platform"] = json!({"os": host.os, "architecture": host.architecture});
        // The other platform's manifest is never read: its blob does not even exist.
        let other = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(b"another platform"),
            "size": 16,
            "platform": {"os": "linux", "architecture": other_arch}
        });
        let mut children = vec![other];
        if with_host {
            children.push(host_manifest);
        }
        let nested = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children
        }))
        .unwrap();
        let nested_digest = write_blob(&layout, &nested);
        fs::write(
            layout.join("index.json"),
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": nested_digest,
                    "size": nested.len(),
                    "annotations": {"io.containerd.image.name": "multi/app:1"}
                }]
            }))
            .unwrap(),
        )
        .unwrap();
        let store = ImageStore::open(temp.path().join(format!("store-{name}"))).unwrap();
        let result = store.import(&layout, &ImportOptions::default());
        if with_host {
            let imported = result.unwrap();
            assert_eq!(imported.len(), 1);
            assert_eq!(imported[0].image.tags, [Tag::parse("multi/app:1").unwrap()]);
            check_demo_image(&store, &root, "multi/app:1", temp.path());
        } else {
            let message = result.unwrap_err().to_string();
            assert!(message.contains("no image for this machine"), "{message}");
            assert!(
                message.contains(&format!("linux/{other_arch}")),
                "{message}"
            );
        }
    }
}
