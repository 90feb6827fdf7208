//! Code shipped with a `command` service: a directory, a tar of one (`.tar`, `.tar.gz`,
//! `.tgz`) or a single file, which becomes the instance's working directory, where `command`
//! runs (`command = ["python3", "app.py"]` with `artifact = "app"`).
//!
//! At deploy the CLI packs a directory (or a single file) into a tar whose bytes depend only
//! on the files' names, contents and modes ([`pack`]: sorted, no times, no owners), so an
//! unchanged directory is an unchanged artifact and makes no new release. On the node the
//! agent unpacks it ([`unpack`]) into the instance's fresh working directory; the `tar`
//! crate refuses entries that would land outside it (`..`, absolute paths, links out).

use std::io::Read;
use std::path::Path;

/// Why code could not be packed or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a tar archive of code (plain or gzip): {source}")]
    NotAnArchive {
        path: String,
        source: std::io::Error,
    },
}

/// Whether `path` names a tar archive by its extension.
pub fn is_archive_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// Writes a deterministic tar of `source` (a directory's contents, or one file under its own
/// name) to `out`.
pub fn pack(source: &Path, out: &Path) -> Result<(), CodeError> {
    let write_error = |source| CodeError::Write {
        path: out.display().to_string(),
        source,
    };
    let file = std::fs::File::create(out).map_err(write_error)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut entries = Vec::new();
    if source.is_dir() {
        walk(source, Path::new(""), &mut entries)?;
    } else {
        let name = source
            .file_name()
            .map(Path::new)
            .unwrap_or(Path::new("artifact"));
        entries.push((name.to_path_buf(), source.to_path_buf()));
    }
    entries.sort();
    for (name, path) in entries {
        builder
            .append_path_with_name(&path, &name)
            .map_err(|source| CodeError::Read {
                path: path.display().to_string(),
                source,
            })?;
    }
    builder
        .into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(write_error)
}

fn walk(
    root: &Path,
    relative: &Path,
    out: &mut Vec<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<(), CodeError> {
    let dir = root.join(relative);
    let read_error = |source| CodeError::Read {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(&dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let name = relative.join(entry.file_name());
        let kind = entry.file_type().map_err(read_error)?;
        out.push((name.clone(), entry.path()));
        if kind.is_dir() {
            walk(root, &name, out)?;
        }
    }
    Ok(())
}

/// Unpacks the archive at `archive` (plain or gzip tar) into `into`, which is emptied first.
pub fn unpack(archive: &Path, into: &Path) -> Result<(), CodeError> {
    let read_error = |source| CodeError::Read {
        path: archive.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(archive).map_err(read_error)?;
    let mut magic = [0u8; 2];
    let gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = std::fs::File::open(archive).map_err(read_error)?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    if into.exists() {
        std::fs::remove_dir_all(into).map_err(|source| CodeError::Write {
            path: into.display().to_string(),
            source,
        })?;
    }
    std::fs::create_dir_all(into).map_err(|source| CodeError::Write {
        path: into.display().to_string(),
        source,
    })?;
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.unpack(into).map_err(|source| CodeError::NotAnArchive {
        path: archive.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_round_trips_and_packs_the_same_twice() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(app.join("lib")).unwrap();
        std::fs::write(app.join("app.py"), "print('hi')\n").unwrap();
        std::fs::write(app.join("lib/util.py"), "X = 1\n").unwrap();
        std::fs::write(app.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(app.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        pack(&app, &a).unwrap();
        // Later times change nothing.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(app.join("app.py"), "print('hi')\n").unwrap();
        pack(&app, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("stale"), "from a previous start").unwrap();
        unpack(&a, &work).unwrap();
        assert_eq!(
            std::fs::read_to_string(work.join("app.py")).unwrap(),
            "print('hi')\n"
        );
        assert_eq!(
            std::fs::read_to_string(work.join("lib/util.py")).unwrap(),
            "X = 1\n"
        );
        assert!(!work.join("stale").exists());
        let mode = std::fs::metadata(work.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "executable bits are kept");
    }

    #[test]
    fn a_single_file_is_packed_under_its_name_and_gzip_unpacks() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("server.py");
        std::fs::write(&script, "pass\n").unwrap();
        let tar_path = dir.path().join("one.tar");
        pack(&script, &tar_path).unwrap();
        let gz = dir.path().join("one.tar.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut std::fs::File::open(&tar_path).unwrap(), &mut encoder).unwrap();
        encoder.finish().unwrap();
        let work = dir.path().join("work");
        unpack(&gz, &work).unwrap();
        assert_eq!(
            std::fs::read_to_string(work.join("server.py")).unwrap(),
            "pass\n"
        );
        assert!(is_archive_name(&gz) && is_archive_name(Path::new("x.TGZ")));
        assert!(!is_archive_name(&script));
    }

    #[test]
    fn entries_that_escape_are_refused_and_garbage_is_not_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let evil = dir.path().join("evil.tar");
        {
            let mut builder = tar::Builder::new(std::fs::File::create(&evil).unwrap());
            let mut header = tar::Header::new_gnu();
            let body = b"owned";
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            // Written raw: the builder itself refuses `..` in names.
            header.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../escaped");
            header.set_cksum();
            builder.append(&header, &body[..]).unwrap();
            builder.finish().unwrap();
        }
        let work = dir.path().join("work");
        let _ = unpack(&evil, &work);
        assert!(!dir.path().join("escaped").exists());

        let junk = dir.path().join("junk.tar");
        std::fs::write(&junk, vec![7u8; 1024]).unwrap();
        let error = unpack(&junk, &work).unwrap_err().to_string();
        assert!(error.contains("is not a tar archive of code"), "{error}");
    }
}
