//! What a `container` service's artifact must be: an image archive, told apart from its tar
//! headers alone (cheap enough for the control plane to check at every deploy).

use std::path::Path;

/// Why a file is not an image archive; each message says how to make a good one.
#[derive(Debug, thiserror::Error)]
pub enum ImageArchiveError {
    #[error("{0}")]
    NotAnImage(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// What kind of image archive a file is, read from its tar headers alone (cheap enough for
/// the control plane to run at deploy): `"OCI image layout"` or `"docker save archive"`.
/// Anything else is refused with what it is and how to make a good one; the node verifies
/// every digest when it imports the archive.
pub fn check_archive(path: &Path) -> Result<&'static str, ImageArchiveError> {
    let how = "make one with `strata image save NAME:VERSION -o FILE` (or `docker save`)";
    let file = std::fs::File::open(path).map_err(|source| ImageArchiveError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive
        .entries()
        .map_err(|e| ImageArchiveError::NotAnImage(format!("not a tar archive ({e}); {how}")))?;
    let (mut oci_layout, mut index, mut docker_manifest, mut seen) = (false, false, false, 0u64);
    for entry in entries {
        let entry = entry.map_err(|e| {
            ImageArchiveError::NotAnImage(format!("not a readable tar archive ({e}); {how}"))
        })?;
        seen += 1;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_string())
            .unwrap_or_default();
        match name.as_str() {
            "oci-layout" => oci_layout = true,
            "index.json" => index = true,
            "manifest.json" => docker_manifest = true,
            _ => {}
        }
        if (oci_layout && index) || docker_manifest || seen > 100_000 {
            break;
        }
    }
    if oci_layout && index {
        Ok("OCI image layout")
    } else if docker_manifest {
        Ok("docker save archive")
    } else if seen == 0 {
        Err(ImageArchiveError::NotAnImage(format!(
            "not a tar archive (no entries); {how}"
        )))
    } else {
        Err(ImageArchiveError::NotAnImage(format!(
            "a tar archive, but neither an OCI image layout (oci-layout and index.json) nor a docker save archive (manifest.json); {how}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let tar_of = |name: &str, files: &[&str]| {
            let path = dir.path().join(name);
            let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
            for file in files {
                let mut header = tar::Header::new_gnu();
                header.set_size(2);
                header.set_mode(0o644);
                header.set_cksum();
                builder.append_data(&mut header, file, &b"{}"[..]).unwrap();
            }
            builder.finish().unwrap();
            path
        };
        let oci = tar_of("oci.tar", &["oci-layout", "index.json", "blobs/sha256/ab"]);
        assert_eq!(check_archive(&oci).unwrap(), "OCI image layout");
        let docker = tar_of("docker.tar", &["abc/layer.tar", "manifest.json"]);
        assert_eq!(check_archive(&docker).unwrap(), "docker save archive");
        let other = tar_of("other.tar", &["etc/passwd"]);
        let error = check_archive(&other).unwrap_err().to_string();
        assert!(error.contains("neither an OCI image layout"), "{error}");
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"hello").unwrap();
        let error = check_archive(&junk).unwrap_err().to_string();
        assert!(
            error.contains("not a tar archive") || error.contains("not a readable tar"),
            "{error}"
        );
        assert!(error.contains("strata image save"), "{error}");
    }
}
