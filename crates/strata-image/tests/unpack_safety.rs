//! Unpacking is a security boundary: every malicious archive is refused, the error names the
//! offending entry, and nothing is left in the store's `layers/` directory (no `.tmp-*`, no
//! `layers/<hex>`) nor outside it. Also: a good layer unpacks with its modes, owners, times,
//! links and whiteouts; garbage is refused when added.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::{gzip, is_root, layers_dir_entries, TarBuilder};
use strata_image::{ImageError, ImageStore, LayerDigest, UnpackLimits};
use tar::EntryType;

struct Case {
    name: &'static str,
    tar: Vec<u8>,
    /// The entry the error must name.
    entry: String,
    /// A piece of the reason the error must give.
    reason: &'static str,
    /// Smaller limits, for the bombs.
    limits: Option<UnpackLimits>,
}

fn cases(outside: &Path) -> Vec<Case> {
    let outside = outside.display().to_string();
    let small = UnpackLimits {
        max_bytes: 1000,
        max_entries: 10,
        max_path_len: 200,
    };
    let long_path = format!("{}/file", "d".repeat(300));
    let mut many = TarBuilder::new();
    for i in 0..11 {
        many = many.file(&format!("f{i:02}"), b"x", 0o644);
    }
    vec![
        Case {
            name: "absolute path",
            tar: TarBuilder::new()
                .raw(b"/etc/evil", EntryType::Regular, None, b"x", 1)
                .finish(),
            entry: "/etc/evil".into(),
            reason: "absolute",
            limits: None,
        },
        Case {
            name: "dot-dot at the start",
            tar: TarBuilder::new()
                .raw(b"../evil", EntryType::Regular, None, b"x", 1)
                .finish(),
            entry: "../evil".into(),
            reason: "`..`",
            limits: None,
        },
        Case {
            name: "dot-dot in the middle, after good entries",
            tar: TarBuilder::new()
                .dir("a", 0o755)
                .file("a/ok", b"fine", 0o644)
                .raw(b"a/../../evil", EntryType::Regular, None, b"x", 1)
                .finish(),
            entry: "a/../../evil".into(),
            reason: "`..`",
            limits: None,
        },
        Case {
            name: "dot-dot directory",
            tar: TarBuilder::new()
                .raw(b"x/../../", EntryType::Directory, None, b"", 0)
                .finish(),
            entry: "x/../../".into(),
            reason: "`..`",
            limits: None,
        },
        Case {
            name: "write through an absolute symlink",
            tar: TarBuilder::new()
                .symlink("link", &outside)
                .file("link/evil", b"pwned", 0o644)
                .finish(),
            entry: "link/evil".into(),
            reason: "symbolic link",
            limits: None,
        },
        Case {
            name: "write through a symlink to a directory inside the layer",
            tar: TarBuilder::new()
                .dir("real", 0o755)
                .symlink("link", "real")
                .file("link/file", b"x", 0o644)
                .finish(),
            entry: "link/file".into(),
            reason: "symbolic link",
            limits: None,
        },
        Case {
            name: "directory through a symlink",
            tar: TarBuilder::new()
                .symlink("link", &outside)
                .dir("link/sub", 0o755)
                .finish(),
            entry: "link/sub".into(),
            reason: "symbolic link",
            limits: None,
        },
        Case {
            name: "symlink through a symlink",
            tar: TarBuilder::new()
                .symlink("link", &outside)
                .symlink("link/evil", "/etc/passwd")
                .finish(),
            entry: "link/evil".into(),
            reason: "symbolic link",
            limits: None,
        },
        Case {
            name: "hard link through a symlink",
            tar: TarBuilder::new()
                .file("target", b"x", 0o644)
                .symlink("link", &outside)
                .hardlink("link/evil", "target")
                .finish(),
            entry: "link/evil".into(),
            reason: "symbolic link",
            limits: None,
        },
        Case {
            name: "whiteout through a symlink",
            tar: TarBuilder::new()
                .symlink("link", &outside)
                .file("link/.wh.x", b"", 0o644)
                .finish(),
            entry: "link/.wh.x".into(),
            reason: "symbolic link",
            limits: None,
        },
        Case {
            name: "relative symlink climbing out",
            tar: TarBuilder::new()
                .dir("a", 0o755)
                .symlink("a/up", "../../etc/passwd")
                .finish(),
            entry: "a/up".into(),
            reason: "climbs above",
            limits: None,
        },
        Case {
            name: "symlink to ..",
            tar: TarBuilder::new().symlink("up", "..").finish(),
            entry: "up".into(),
            reason: "climbs above",
            limits: None,
        },
        Case {
            name: "symlink climbing out after going down",
            tar: TarBuilder::new().symlink("x", "a/b/../../../etc").finish(),
            entry: "x".into(),
            reason: "climbs above",
            limits: None,
        },
        Case {
            name: "symlink without a target",
            tar: TarBuilder::new()
                .raw(b"empty", EntryType::Symlink, Some(b""), b"", 0)
                .finish(),
            entry: "empty".into(),
            reason: "without a target",
            limits: None,
        },
        Case {
            name: "hard link to an absolute path",
            tar: TarBuilder::new()
                .raw(b"hl", EntryType::Link, Some(b"/etc/passwd"), b"", 0)
                .finish(),
            entry: "hl".into(),
            reason: "absolute",
            limits: None,
        },
        Case {
            name: "hard link with dot-dot",
            tar: TarBuilder::new()
                .file("a", b"x", 0o644)
                .raw(b"hl", EntryType::Link, Some(b"../a"), b"", 0)
                .finish(),
            entry: "hl".into(),
            reason: "`..`",
            limits: None,
        },
        Case {
            name: "hard link to nothing unpacked",
            tar: TarBuilder::new().hardlink("hl", "not/there").finish(),
            entry: "hl".into(),
            reason: "not a regular file unpacked earlier",
            limits: None,
        },
        Case {
            name: "hard link to a later file",
            tar: TarBuilder::new()
                .hardlink("hl", "later")
                .file("later", b"x", 0o644)
                .finish(),
            entry: "hl".into(),
            reason: "not a regular file unpacked earlier",
            limits: None,
        },
        Case {
            name: "hard link to a directory",
            tar: TarBuilder::new()
                .dir("d", 0o755)
                .hardlink("hl", "d")
                .finish(),
            entry: "hl".into(),
            reason: "not a regular file unpacked earlier",
            limits: None,
        },
        Case {
            name: "hard link to a symlink",
            tar: TarBuilder::new()
                .symlink("s", "/etc/passwd")
                .hardlink("hl", "s")
                .finish(),
            entry: "hl".into(),
            reason: "not a regular file unpacked earlier",
            limits: None,
        },
        Case {
            name: "hard link to a file later replaced by a symlink",
            tar: TarBuilder::new()
                .file("f", b"x", 0o644)
                .symlink("f", "/etc/shadow")
                .hardlink("hl", "f")
                .finish(),
            entry: "hl".into(),
            reason: "not a regular file unpacked earlier",
            limits: None,
        },
        Case {
            name: "hard link to itself",
            tar: TarBuilder::new()
                .file("f", b"x", 0o644)
                .hardlink("f", "f")
                .finish(),
            entry: "f".into(),
            reason: "itself",
            limits: None,
        },
        Case {
            name: "character device",
            tar: TarBuilder::new()
                .raw(b"dev/mem", EntryType::Char, None, b"", 0)
                .finish(),
            entry: "dev/mem".into(),
            reason: "character device",
            limits: None,
        },
        Case {
            name: "block device",
            tar: TarBuilder::new()
                .raw(b"dev/sda", EntryType::Block, None, b"", 0)
                .finish(),
            entry: "dev/sda".into(),
            reason: "block device",
            limits: None,
        },
        Case {
            name: "fifo",
            tar: TarBuilder::new()
                .raw(b"pipe", EntryType::Fifo, None, b"", 0)
                .finish(),
            entry: "pipe".into(),
            reason: "FIFO",
            limits: None,
        },
        Case {
            name: "file replacing a directory",
            tar: TarBuilder::new()
                .dir("d", 0o755)
                .file("d/inside", b"x", 0o644)
                .file("d", b"x", 0o644)
                .finish(),
            entry: "d".into(),
            reason: "replace a directory",
            limits: None,
        },
        Case {
            name: "size bomb (small limit)",
            tar: TarBuilder::new()
                .file("a", &[1u8; 600], 0o644)
                .file("b", &[2u8; 600], 0o644)
                .file("c", &[3u8; 600], 0o644)
                .finish(),
            entry: "b".into(),
            reason: "1000 bytes in all",
            limits: Some(small.clone()),
        },
        Case {
            name: "size bomb (default 8 GiB limit, the header lies and no data follows)",
            tar: TarBuilder::new()
                .file("ok", b"x", 0o644)
                .raw(b"huge", EntryType::Regular, None, b"", 9 << 30)
                .finish(),
            entry: "huge".into(),
            reason: "8589934592 bytes in all",
            limits: None,
        },
        Case {
            name: "too many entries",
            tar: many.finish(),
            entry: "f10".into(),
            reason: "10 entries",
            limits: Some(small.clone()),
        },
        Case {
            name: "path too long",
            tar: TarBuilder::new().file(&long_path, b"x", 0o644).finish(),
            entry: long_path[..150].to_string(),
            reason: "200 bytes for a path",
            limits: Some(small),
        },
    ]
}

/// Everything in `dir`, for the "nothing escaped" check.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_malicious_archive_is_refused_naming_the_entry_and_leaving_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let outside = temp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), b"untouched").unwrap();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let mut checked = 0;
    for case in cases(&outside) {
        // Straight into the blob store: unpacking must not rely on what add_layer checks.
        let digest = LayerDigest::parse(&common::sha256(&case.tar)).unwrap();
        fs::write(store.blob_path(&digest), &case.tar).unwrap();
        let unpacker = match &case.limits {
            Some(limits) => store.clone().with_limits(limits.clone()),
            None => store.clone(),
        };
        let error = unpacker
            .unpack(&digest)
            .expect_err(&format!("{}: the layer was unpacked", case.name));
        let message = error.to_string();
        eprintln!("{}: {message}", case.name);
        assert!(
            message.contains(&format!("`{}", case.entry)),
            "{}: the error does not name the entry `{}`: {message}",
            case.name,
            case.entry
        );
        assert!(
            message.contains(case.reason),
            "{}: the error does not say `{}`: {message}",
            case.name,
            case.reason
        );
        assert!(
            matches!(
                error,
                ImageError::UnsafeEntry { .. } | ImageError::LimitExceeded { .. }
            ),
            "{}: {error:?}",
            case.name
        );
        assert_eq!(
            layers_dir_entries(&store),
            Vec::<String>::new(),
            "{}: something was left in layers/",
            case.name
        );
        assert!(!store.layer_dir(&digest).exists(), "{}", case.name);
        assert_eq!(listing(&outside), ["keep"], "{}: wrote outside", case.name);
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"untouched");

        // With the small limits, the bomb is refused already when it is added.
        if let Some(limits) = &case.limits {
            let limited = ImageStore::open(temp.path().join("limited"))
                .unwrap()
                .with_limits(limits.clone());
            let error = limited.add_layer(&case.tar[..]).unwrap_err().to_string();
            assert!(
                error.contains(&format!("`{}", case.entry)) && error.contains(case.reason),
                "{}: add_layer: {error}",
                case.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 30);
}

#[test]
fn a_bomb_is_refused_when_added_before_it_fills_the_disk() {
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path())
        .unwrap()
        .with_limits(UnpackLimits {
            max_bytes: 1 << 20,
            ..UnpackLimits::default()
        });
    // 64 MiB of zeros compress to almost nothing.
    let mut tar = TarBuilder::new();
    for i in 0..64 {
        tar = tar.file(&format!("zeros{i}"), &vec![0u8; 1 << 20], 0o644);
    }
    let compressed = gzip(&tar.finish());
    assert!(compressed.len() < 1 << 20);
    let error = store.add_layer(&compressed[..]).unwrap_err().to_string();
    assert!(error.contains("`zeros1`"), "{error}");
    assert!(error.contains("max_bytes"), "{error}");
    let blobs: Vec<_> = fs::read_dir(temp.path().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "the refused blob was kept");
}

#[test]
fn garbage_is_not_a_layer() {
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path()).unwrap();
    let elf = fs::read(std::env::current_exe().unwrap()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "it is empty"),
        (
            "text",
            b"hello, this is not a tar archive at all\n".repeat(20),
            "looks like text",
        ),
        ("short text", b"hi".to_vec(), "not a tar archive"),
        ("json", br#"{"not": "a tar"}"#.to_vec(), "JSON"),
        ("elf", elf[..4096.min(elf.len())].to_vec(), "ELF"),
        (
            "gzip of text",
            gzip(&b"not a tar\n".repeat(100)),
            "after gzip decompression",
        ),
        (
            "zstd",
            vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0],
            "zstd-compressed",
        ),
        (
            "xz",
            vec![0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0],
            "xz-compressed",
        ),
    ];
    for (name, bytes, says) in cases {
        let error = store.add_layer(&bytes[..]).unwrap_err().to_string();
        eprintln!("{name}: {error}");
        assert!(error.contains(says), "{name}: {error}");
        assert!(
            error.contains("tar archive") || error.contains("gzip"),
            "{name}: the message should say what a layer must be: {error}"
        );
    }
    let blobs: Vec<_> = fs::read_dir(temp.path().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty());
}

#[test]
fn a_good_layer_unpacks_with_modes_owners_times_and_links() {
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path()).unwrap();
    let tar = TarBuilder::new()
        .dir("./", 0o755)
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file_owned(
            "usr/bin/tool",
            b"#!/bin/sh\necho hi\n",
            0o4755,
            0,
            0,
            1_600_000_000,
        )
        .file_owned("home/app/data", b"data", 0o640, 1234, 5678, 1_500_000_000)
        .dir("readonly", 0o555)
        .file("readonly/inside", b"x", 0o444)
        .symlink("bin", "usr/bin")
        .symlink("etc/abs", "/usr/lib/x")
        .symlink("usr/bin/rel", "../../home/app/data")
        .hardlink("usr/bin/tool-again", "usr/bin/tool")
        .file("replaced", b"first", 0o644)
        .file("replaced", b"second", 0o600)
        .finish();
    let digest = store.add_layer(&tar[..]).unwrap();
    let dir = store.unpack(&digest).unwrap();
    assert_eq!(dir, store.layer_dir(&digest));
    // Idempotent.
    assert_eq!(store.unpack(&digest).unwrap(), dir);
    assert_eq!(
        common::tree(&dir),
        [
            "bin",
            "etc/",
            "etc/abs",
            "home/",
            "home/app/",
            "home/app/data",
            "readonly/",
            "readonly/inside",
            "replaced",
            "usr/",
            "usr/bin/",
            "usr/bin/rel",
            "usr/bin/tool",
            "usr/bin/tool-again",
        ]
    );
    let tool = fs::metadata(dir.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(tool.mtime(), 1_600_000_000);
    assert_eq!(tool.nlink(), 2);
    assert_eq!(
        tool.ino(),
        fs::metadata(dir.join("usr/bin/tool-again")).unwrap().ino()
    );
    let data = fs::metadata(dir.join("home/app/data")).unwrap();
    assert_eq!(data.permissions().mode() & 0o7777, 0o640);
    if is_root() {
        assert_eq!((data.uid(), data.gid()), (1234, 5678));
    }
    assert_eq!(
        fs::metadata(dir.join("readonly"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o555
    );
    assert_eq!(
        fs::read_link(dir.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        fs::read_link(dir.join("etc/abs")).unwrap(),
        Path::new("/usr/lib/x")
    );
    assert_eq!(fs::read(dir.join("usr/bin/rel")).unwrap(), b"data");
    assert_eq!(fs::read(dir.join("replaced")).unwrap(), b"second");
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o755,
        "the layer's root"
    );
    assert_eq!(layers_dir_entries(&store), [digest.hex()]);
    // gc removes the tree (read-only directory included, also when not root).
    let report = store.gc(&[]).unwrap();
    assert_eq!(report.layers_removed, std::slice::from_ref(&digest));
    assert!(layers_dir_entries(&store).is_empty());
}

#[test]
fn whiteouts_become_overlayfs_whiteouts_as_root_and_are_refused_otherwise() {
    let temp = tempfile::tempdir().unwrap();
    let tar = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/.wh.hostname", b"", 0o644)
        .dir("var/cache", 0o755)
        .file("var/cache/.wh..wh..opq", b"", 0o644)
        .file("var/cache/new", b"fresh", 0o644)
        .file(".wh.kept", b"", 0o644)
        .file("kept", b"this layer's own file wins", 0o644)
        .file(".wh..wh.plnk/123.456", b"aufs", 0o644)
        .finish();

    // Acting as another user: refused, naming the entry, nothing left.
    let unprivileged = ImageStore::open(temp.path().join("a"))
        .unwrap()
        .with_privileged(false);
    let digest = unprivileged.add_layer(&tar[..]).unwrap();
    let error = unprivileged.unpack(&digest).unwrap_err();
    assert!(matches!(error, ImageError::NeedsRoot { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("`etc/.wh.hostname`"), "{message}");
    assert!(message.contains("needs root"), "{message}");
    assert!(layers_dir_entries(&unprivileged).is_empty());

    if !is_root() {
        eprintln!("not root: skipping the part that makes real whiteouts (mknod, trusted xattrs)");
        return;
    }
    let store = ImageStore::open(temp.path().join("b")).unwrap();
    let digest = store.add_layer(&tar[..]).unwrap();
    let dir = store.unpack(&digest).unwrap();
    let whiteout = fs::symlink_metadata(dir.join("etc/hostname")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(!dir.join("etc/.wh.hostname").exists());
    assert_eq!(
        xattr::get(dir.join("var/cache"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(fs::read(dir.join("var/cache/new")).unwrap(), b"fresh");
    assert_eq!(
        fs::read(dir.join("kept")).unwrap(),
        b"this layer's own file wins"
    );
    assert!(
        !dir.join(".wh..wh.plnk").exists(),
        "AUFS metadata is skipped"
    );
}

#[test]
fn a_corrupted_blob_is_refused_and_leaves_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path()).unwrap();
    let tar = TarBuilder::new().file("a", b"original", 0o644).finish();
    let digest = store.add_layer(&tar[..]).unwrap();
    let blob = store.blob_path(&digest);
    let mut bytes = fs::read(&blob).unwrap();
    let at = bytes.windows(8).position(|w| w == b"original").unwrap();
    bytes[at..at + 8].copy_from_slice(b"tampered");
    fs::write(&blob, &bytes).unwrap();
    let error = store.unpack(&digest).unwrap_err().to_string();
    assert!(error.contains("tampered with"), "{error}");
    assert!(layers_dir_entries(&store).is_empty());
}

/// A layer made by GNU tar (PAX format, long names, hard and symbolic links) unpacks to the
/// same tree. Skipped when there is no `tar` command.
#[test]
fn a_layer_made_by_gnu_tar_unpacks() {
    let temp = tempfile::tempdir().unwrap();
    let src = temp.path().join("src");
    let long = "a-rather-long-directory-name-".repeat(6);
    fs::create_dir_all(src.join(&long).join("deeper")).unwrap();
    fs::write(src.join(&long).join("deeper/file.txt"), b"long").unwrap();
    fs::write(src.join("plain"), b"plain").unwrap();
    fs::hard_link(src.join("plain"), src.join("plain-link")).unwrap();
    std::os::unix::fs::symlink(format!("{long}/deeper/file.txt"), src.join("to-long")).unwrap();
    fs::write(src.join("ünïcödé"), b"utf-8 name").unwrap();
    let layer = temp.path().join("layer.tar");
    let status = std::process::Command::new("tar")
        .args(["--format=posix", "--sort=name", "-C"])
        .arg(&src)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status();
    match status {
        Ok(status) if status.success() => {}
        other => {
            eprintln!("no GNU tar here ({other:?}): skipping");
            return;
        }
    }
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let digest = store.add_layer(fs::File::open(&layer).unwrap()).unwrap();
    assert_eq!(
        digest.to_string(),
        common::sha256(&fs::read(&layer).unwrap())
    );
    let dir = store.unpack(&digest).unwrap();
    assert_eq!(common::tree(&dir), common::tree(&src));
    assert_eq!(
        fs::read(dir.join(&long).join("deeper/file.txt")).unwrap(),
        b"long"
    );
    assert_eq!(fs::read(dir.join("to-long")).unwrap(), b"long");
    assert_eq!(
        fs::metadata(dir.join("plain")).unwrap().ino(),
        fs::metadata(dir.join("plain-link")).unwrap().ino()
    );
    // gzip'd by gzip itself: the same layer.
    let gz = temp.path().join("layer.tar.gz");
    let status = std::process::Command::new("gzip")
        .arg("-k")
        .arg(&layer)
        .status();
    if status.is_ok_and(|s| s.success()) {
        assert_eq!(
            store.add_layer(fs::File::open(&gz).unwrap()).unwrap(),
            digest
        );
    }
}

/// Unpacked layers keep setuid bits and owners: only the store's owner may enter them, even
/// in a store made before (opening it restricts the directory again).
#[test]
fn only_the_stores_owner_enters_its_layers() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("store");
    ImageStore::open(&root).unwrap();
    let layers = root.join("layers");
    assert_eq!(fs::metadata(&layers).unwrap().mode() & 0o777, 0o700);
    fs::set_permissions(&layers, fs::Permissions::from_mode(0o755)).unwrap();
    ImageStore::open(&root).unwrap();
    assert_eq!(fs::metadata(&layers).unwrap().mode() & 0o777, 0o700);
}

/// For containers in a user namespace: a layer unpacked for a host range has every owner
/// shifted into it (the directories the archive does not describe too: they are the image
/// root's), beside the unshifted tree; an owner past the range is refused, naming the entry
/// and the fix, and leaves nothing; garbage collection removes the shifted trees with the
/// layer.
#[test]
fn layers_for_a_user_namespace_have_their_owners_shifted_into_its_range() {
    if !is_root() {
        eprintln!("not root: skipping (shifting owners needs chown)");
        return;
    }
    use strata_image::{IdShift, ImageConfigSpec};
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let tar = TarBuilder::new()
        .file_owned("etc/app.conf", b"conf", 0o640, 0, 1000, 1_700_000_000)
        .file_owned("home/app/data", b"data", 0o600, 1000, 1000, 1_700_000_000)
        .finish();
    let layer = store.add_layer(&tar[..]).unwrap();
    let image = store
        .put_image(
            std::slice::from_ref(&layer),
            &ImageConfigSpec::default(),
            None,
        )
        .unwrap();
    let shift = IdShift {
        base: 1_700_000_000,
        size: 65536,
    };
    let shifted = store
        .lower_dirs_shifted(&image.digest, Some(shift))
        .unwrap();
    let plain = store.lower_dirs(&image.digest).unwrap();
    assert_eq!(plain, [store.layer_dir(&layer)]);
    assert_ne!(shifted, plain, "a tree of its own");
    let owner = |path: &Path| {
        let meta = fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.gid())
    };
    let root = &shifted[0];
    assert_eq!(
        owner(&root.join("etc/app.conf")),
        (1_700_000_000, 1_700_001_000)
    );
    assert_eq!(
        owner(&root.join("home/app/data")),
        (1_700_001_000, 1_700_001_000)
    );
    for undescribed in ["", "etc", "home", "home/app"] {
        assert_eq!(
            owner(&root.join(undescribed)),
            (1_700_000_000, 1_700_000_000),
            "`{undescribed}`"
        );
    }
    assert_eq!(owner(&plain[0].join("home/app/data")), (1000, 1000));
    // Asked again: the same tree.
    assert_eq!(
        store
            .lower_dirs_shifted(&image.digest, Some(shift))
            .unwrap(),
        shifted
    );

    // An owner the namespace does not map.
    let past = TarBuilder::new()
        .file_owned("srv/big", b"x", 0o644, 70000, 0, 1_700_000_000)
        .finish();
    let past_layer = store.add_layer(&past[..]).unwrap();
    let past_image = store
        .put_image(&[past_layer], &ImageConfigSpec::default(), None)
        .unwrap();
    let error = store
        .lower_dirs_shifted(&past_image.digest, Some(shift))
        .unwrap_err()
        .to_string();
    assert!(error.contains("`srv/big`"), "{error}");
    assert!(error.contains("uid 70000"), "{error}");
    assert!(error.contains("userns = false"), "{error}");
    assert!(
        !layers_dir_entries(&store)
            .iter()
            .any(|e| e.starts_with('.')),
        "nothing left of the refused unpack: {:?}",
        layers_dir_entries(&store)
    );

    // Collected with its layer.
    let report = store.gc(&[]).unwrap();
    assert!(report.layers_removed.contains(&layer), "{report:?}");
    assert!(!root.exists() && !plain[0].exists());
    assert_eq!(
        report
            .layers_removed
            .iter()
            .filter(|l| **l == layer)
            .count(),
        1,
        "one layer, however many trees"
    );
}
