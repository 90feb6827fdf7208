//! Where the loader looks for libraries besides RPATH and RUNPATH ([`LibrarySearch`]): the
//! directories of `/etc/ld.so.conf` (following its `include` lines) and the loader's default
//! directories for an ELF class and machine.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::build::image_relative;

/// How deep `include` lines of ld.so.conf may nest.
const MAX_CONF_DEPTH: usize = 8;

/// Where the loader looks for libraries (besides RPATH and RUNPATH).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibrarySearch {
    /// The root the absolute paths below are read under (`/` for this machine).
    pub sysroot: PathBuf,
    /// The directories of ld.so.conf, in order (standing in for ld.so.cache).
    pub conf_dirs: Vec<PathBuf>,
    /// The loader's built-in directories.
    pub default_dirs: Vec<PathBuf>,
}

impl LibrarySearch {
    /// This machine's search for programs of the given ELF class and machine.
    pub fn host(class64: bool, machine: u16) -> LibrarySearch {
        LibrarySearch::for_root(Path::new("/"), class64, machine)
    }

    /// The search of the system under `sysroot`: its `/etc/ld.so.conf` and the default
    /// directories for the class and machine.
    pub fn for_root(sysroot: &Path, class64: bool, machine: u16) -> LibrarySearch {
        LibrarySearch {
            sysroot: sysroot.to_path_buf(),
            conf_dirs: read_ld_so_conf(sysroot, Path::new("/etc/ld.so.conf")),
            default_dirs: default_dirs(class64, machine),
        }
    }

    pub(super) fn host_path(&self, image_path: &Path) -> PathBuf {
        self.sysroot.join(image_relative(image_path))
    }
}

/// The Debian/Ubuntu multiarch triplet of an ELF class and machine.
pub fn multiarch_triplet(class64: bool, machine: u16) -> Option<&'static str> {
    use object::elf::*;
    Some(match (machine, class64) {
        (EM_X86_64, true) => "x86_64-linux-gnu",
        (EM_X86_64, false) => "x86_64-linux-gnux32",
        (EM_386, false) => "i386-linux-gnu",
        (EM_AARCH64, true) => "aarch64-linux-gnu",
        (EM_ARM, false) => "arm-linux-gnueabihf",
        (EM_RISCV, true) => "riscv64-linux-gnu",
        (EM_PPC64, true) => "powerpc64le-linux-gnu",
        (EM_S390, true) => "s390x-linux-gnu",
        (EM_LOONGARCH, true) => "loongarch64-linux-gnu",
        (EM_MIPS, true) => "mips64el-linux-gnuabi64",
        _ => return None,
    })
}

/// The loader's default directories for a class and machine.
pub fn default_dirs(class64: bool, machine: u16) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(triplet) = multiarch_triplet(class64, machine) {
        dirs.push(PathBuf::from(format!("/lib/{triplet}")));
        dirs.push(PathBuf::from(format!("/usr/lib/{triplet}")));
    }
    if class64 {
        dirs.push(PathBuf::from("/lib64"));
        dirs.push(PathBuf::from("/usr/lib64"));
    }
    dirs.push(PathBuf::from("/lib"));
    dirs.push(PathBuf::from("/usr/lib"));
    dirs
}

/// The directories listed by an ld.so.conf file under `sysroot` (following `include`
/// lines, whose patterns may have `*` and `?` in their last component), in order, without
/// duplicates. Missing or unreadable files list nothing.
pub fn read_ld_so_conf(sysroot: &Path, file: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    read_conf(sysroot, file, 0, &mut dirs);
    let mut seen = HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn read_conf(sysroot: &Path, file: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_CONF_DEPTH {
        return;
    }
    let Ok(text) = fs::read_to_string(sysroot.join(image_relative(file))) else {
        return;
    };
    let base = file.parent().unwrap_or(Path::new("/"));
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(pattern) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with([' ', '\t']))
        {
            for pattern in pattern.split_whitespace() {
                let pattern = if pattern.starts_with('/') {
                    PathBuf::from(pattern)
                } else {
                    base.join(pattern)
                };
                for included in glob_last(sysroot, &pattern) {
                    read_conf(sysroot, &included, depth + 1, out);
                }
            }
            continue;
        }
        if line.starts_with("hwcap") {
            continue;
        }
        for dir in line.split(|c: char| c.is_whitespace() || c == ':' || c == ',') {
            // `dir=TYPE` is an old libc5 form.
            let dir = dir.split('=').next().unwrap_or_default();
            if dir.starts_with('/') {
                out.push(PathBuf::from("/").join(image_relative(Path::new(dir))));
            }
        }
    }
}

/// The files (absolute, as seen from inside `sysroot`) matching `pattern`, whose last
/// component may have `*` and `?`; sorted.
fn glob_last(sysroot: &Path, pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    if !name.contains(['*', '?']) {
        return vec![pattern.to_path_buf()];
    }
    let Ok(entries) = fs::read_dir(sysroot.join(image_relative(dir))) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
        .map(|e| dir.join(e.file_name()))
        .collect();
    found.sort();
    found
}

/// Shell-style matching of `*` and `?`.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "libc.conf"));
        assert!(wildcard("*.conf", ".conf"));
        assert!(!wildcard("*.conf", "libc.conf.bak"));
        assert!(wildcard("a?c*", "abcdef"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("?", ""));
    }

    #[test]
    fn default_dirs_for_x86_64() {
        let dirs = default_dirs(true, object::elf::EM_X86_64);
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib"
            ]
        );
        assert_eq!(
            default_dirs(false, 0),
            [PathBuf::from("/lib"), PathBuf::from("/usr/lib")]
        );
    }

    #[test]
    fn ld_so_conf_with_includes_and_comments() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        fs::create_dir_all(etc.join("ld.so.conf.d")).unwrap();
        fs::write(
            etc.join("ld.so.conf"),
            "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/first\n",
        )
        .unwrap();
        fs::write(
            etc.join("ld.so.conf.d/b.conf"),
            "/usr/local/lib  # trailing\n",
        )
        .unwrap();
        fs::write(
            etc.join("ld.so.conf.d/a.conf"),
            "/a/one:/a/two, /a/three\nhwcap 1 x\ninclude other.inc\n",
        )
        .unwrap();
        fs::write(
            etc.join("ld.so.conf.d/other.inc"),
            "/from/relative/include\n/opt/first\n",
        )
        .unwrap();
        fs::write(etc.join("ld.so.conf.d/ignored.txt"), "/not/me\n").unwrap();
        let dirs = read_ld_so_conf(root.path(), Path::new("/etc/ld.so.conf"));
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "/a/one",
                "/a/two",
                "/a/three",
                "/from/relative/include",
                "/opt/first",
                "/usr/local/lib"
            ]
        );
    }

    #[test]
    fn ld_so_conf_include_loop_is_bounded() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("ld.so.conf"), "include /etc/ld.so.conf\n/x\n").unwrap();
        assert_eq!(
            read_ld_so_conf(root.path(), Path::new("/etc/ld.so.conf")),
            [PathBuf::from("/x")]
        );
    }
}
