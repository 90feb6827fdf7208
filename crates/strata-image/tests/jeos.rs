//! JEOS images of real programs: a dynamically linked program of this machine runs under
//! `chroot` in the root made of its image (as root), and programs built here with gcc, whose
//! libraries are found through `$ORIGIN` RUNPATH / RPATH, run from another place in the image.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{is_root, merge_layers};
use strata_image::elf::parse_elf;
use strata_image::{ImageError, ImageStore, JeosFileKind, JeosOptions, Tag};

fn host_program() -> Option<PathBuf> {
    ["/usr/bin/ls", "/bin/ls", "/usr/bin/true", "/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Unmounts when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Copies the image's layers into one directory and runs `argv` chrooted into it. With
/// `proc`, /proc is mounted in the root first (the loader needs it for the program's
/// `$ORIGIN`, as in a container); `None` when it cannot be mounted here.
fn run_in_image(
    store: &ImageStore,
    image: &str,
    scratch: &Path,
    argv: &[&str],
    proc: bool,
) -> Option<String> {
    let lower = store.lower_dirs(image).unwrap();
    let root = scratch.join("root");
    merge_layers(&lower, &root);
    let _proc = if proc {
        let target = root.join("proc");
        fs::create_dir_all(&target).unwrap();
        if let Err(e) = nix::mount::mount(
            Some("proc"),
            &target,
            Some("proc"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ) {
            eprintln!("cannot mount /proc in the root ({e})");
            return None;
        }
        Some(Unmount(target))
    } else {
        None
    };
    let output = Command::new("chroot")
        .arg(&root)
        .args(argv)
        .output()
        .expect("run chroot");
    assert!(
        output.status.success(),
        "chroot {} {argv:?} failed: {}\n{}",
        root.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn jeos_of_a_host_program_runs_under_chroot() {
    let Some(program) = host_program() else {
        eprintln!("neither ls nor true on this machine: skipping");
        return;
    };
    let info = parse_elf(&fs::read(&program).unwrap()).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let extra = temp.path().join("conf");
    fs::create_dir_all(extra.join("sub")).unwrap();
    fs::write(extra.join("sub/app.toml"), b"answer = 42\n").unwrap();
    let report = store
        .build_jeos(
            &program,
            std::slice::from_ref(&extra),
            &JeosOptions {
                tag: Some(Tag::parse("jeos/ls:1").unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    for file in &report.files {
        eprintln!(
            "{:>10} {:?} {} <- {}{}",
            file.size,
            file.kind,
            file.path.display(),
            file.source.display(),
            file.linked_to
                .as_ref()
                .map(|l| format!(" (hard link to {})", l.display()))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "total {} bytes, image {} bytes",
        report.total_size, report.image_size
    );

    let name = program.file_name().unwrap().to_string_lossy().into_owned();
    let at = PathBuf::from("/bin").join(&name);
    let kinds = |kind: JeosFileKind| -> Vec<&Path> {
        report
            .files
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.path.as_path())
            .collect()
    };
    assert_eq!(kinds(JeosFileKind::Program), [at.as_path()]);
    if let Some(interp) = &info.interpreter {
        assert_eq!(kinds(JeosFileKind::Interpreter), [Path::new(interp)]);
        assert!(
            report.files.iter().any(|f| f.kind == JeosFileKind::Library
                && f.path.file_name().is_some_and(|n| n == "libc.so.6")),
            "no libc.so.6 in the image"
        );
    }
    let include = extra.join("sub/app.toml");
    assert!(kinds(JeosFileKind::Include).contains(&include.as_path()));
    let sizes: u64 = report
        .files
        .iter()
        .filter(|f| f.linked_to.is_none())
        .map(|f| f.size)
        .sum();
    assert_eq!(report.total_size, sizes);
    assert!(report.image_size >= report.total_size);
    assert_eq!(
        report.image.manifest.config.entrypoint,
        [at.display().to_string()]
    );
    assert_eq!(report.image.manifest.size, report.image_size);

    // The same program, the same image.
    let again = store
        .build_jeos(
            &program,
            std::slice::from_ref(&extra),
            &JeosOptions::default(),
        )
        .unwrap();
    assert_eq!(again.layer, report.layer);

    if !is_root() {
        eprintln!(
            "not root: skipping `chroot ROOT {}` (chroot needs root); the file list was checked",
            at.display()
        );
        return;
    }
    let output = run_in_image(
        &store,
        "jeos/ls:1",
        temp.path(),
        &[&at.display().to_string(), "/"],
        false,
    )
    .unwrap_or_default();
    if name == "ls" {
        assert!(output.lines().any(|l| l == "bin"), "{output}");
        assert!(
            output.lines().any(|l| l == "lib" || l == "lib64"),
            "{output}"
        );
    }
}

/// Builds `greet` as a shared library and `hello` linked to it, with the given linker flags
/// for the runtime search path. `None` when there is no C compiler.
fn build_c_program(dir: &Path, link_flags: &[&str]) -> Option<PathBuf> {
    let ok = Command::new("gcc")
        .arg("--version")
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::create_dir_all(dir.join("lib")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(
        dir.join("src/greet.c"),
        "const char *greet(void) { return \"hello from libgreet\"; }\n",
    )
    .unwrap();
    fs::write(
        dir.join("src/main.c"),
        "#include <stdio.h>\nconst char *greet(void);\nint main(void) { puts(greet()); return 0; }\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = Command::new("gcc").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "gcc {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let lib = dir.join("lib/libgreet.so.1");
    run(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libgreet.so.1",
        "-o",
        lib.to_str().unwrap(),
        dir.join("src/greet.c").to_str().unwrap(),
    ]);
    let program = dir.join("bin/hello");
    let mut args = vec![
        "-o".to_string(),
        program.display().to_string(),
        dir.join("src/main.c").display().to_string(),
        lib.display().to_string(),
    ];
    args.extend(link_flags.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args);
    Some(program)
}

#[test]
fn origin_runpath_and_rpath_follow_the_program_to_its_place_in_the_image() {
    let temp = tempfile::tempdir().unwrap();
    for (name, flags, tag_name) in [
        (
            "runpath",
            &["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--enable-new-dtags"][..],
            "DT_RUNPATH",
        ),
        (
            "rpath",
            &["-Wl,-rpath,$ORIGIN/../lib", "-Wl,--disable-new-dtags"][..],
            "DT_RPATH",
        ),
    ] {
        let dir = temp.path().join(name);
        let Some(program) = build_c_program(&dir, flags) else {
            eprintln!("no gcc on this machine: skipping the $ORIGIN test");
            return;
        };
        let info = parse_elf(&fs::read(&program).unwrap()).unwrap();
        let search = if tag_name == "DT_RUNPATH" {
            &info.runpath
        } else {
            &info.rpath
        };
        assert_eq!(search, &["$ORIGIN/../lib"], "{name}: {info:?}");
        assert!(
            info.needed.contains(&"libgreet.so.1".to_string()),
            "{info:?}"
        );

        let store = ImageStore::open(temp.path().join(format!("store-{name}"))).unwrap();
        let tag = format!("hello:{name}");
        let report = store
            .build_jeos(
                &program,
                &[],
                &JeosOptions {
                    at: Some(PathBuf::from("/opt/hello/bin/hello")),
                    tag: Some(Tag::parse(&tag).unwrap()),
                    ..Default::default()
                },
            )
            .unwrap();
        let greet = report
            .files
            .iter()
            .find(|f| f.path.file_name().is_some_and(|n| n == "libgreet.so.1"))
            .unwrap_or_else(|| panic!("{name}: {:?}", report.files));
        assert_eq!(
            greet.path,
            Path::new("/opt/hello/lib/libgreet.so.1"),
            "{name}"
        );
        assert_eq!(greet.kind, JeosFileKind::Library);
        assert!(report.library_path.is_empty());
        if is_root() {
            match run_in_image(
                &store,
                &tag,
                &temp.path().join(format!("run-{name}")),
                &["/opt/hello/bin/hello"],
                true,
            ) {
                Some(output) => assert_eq!(output, "hello from libgreet\n", "{name}"),
                None => eprintln!("skipping the chroot run of {name}: no /proc for $ORIGIN"),
            }
        } else {
            eprintln!("not root: skipping the chroot run of {name}");
        }
    }
}

#[test]
fn a_missing_library_is_named_with_the_program_that_needs_it() {
    let temp = tempfile::tempdir().unwrap();
    // No RUNPATH: libgreet.so.1 is in none of the directories the loader searches.
    let Some(program) = build_c_program(&temp.path().join("norpath"), &[]) else {
        eprintln!("no gcc on this machine: skipping");
        return;
    };
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let error = store
        .build_jeos(&program, &[], &JeosOptions::default())
        .unwrap_err();
    assert!(
        matches!(error, ImageError::MissingLibrary { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains("`libgreet.so.1`"), "{message}");
    assert!(message.contains("/bin/hello"), "{message}");
    assert!(message.contains("/usr/lib"), "{message}");
    // Nothing was stored.
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn jeos_refuses_what_is_not_a_program() {
    let temp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(temp.path().join("store")).unwrap();
    let script = temp.path().join("run.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let message = store
        .build_jeos(&script, &[], &JeosOptions::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("script"), "{message}");
    assert!(message.contains("run.sh"), "{message}");

    let Some(program) = host_program() else {
        return;
    };
    for bad_at in ["relative/bin", "/", "/bin/../etc/x"] {
        let message = store
            .build_jeos(
                &program,
                &[],
                &JeosOptions {
                    at: Some(PathBuf::from(bad_at)),
                    ..Default::default()
                },
            )
            .unwrap_err()
            .to_string();
        assert!(message.contains("absolute path"), "{bad_at}: {message}");
    }
    let message = store
        .build_jeos(
            &program,
            &[PathBuf::from("relative/include")],
            &JeosOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(message.contains("must be absolute"), "{message}");
}
