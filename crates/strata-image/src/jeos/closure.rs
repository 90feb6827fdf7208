//! The closure of a program: its interpreter and every library it needs, found the way the
//! dynamic loader finds them (see the [parent module](super) for the order), each with the
//! path it goes to in the image.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::LibrarySearch;
use crate::build::image_relative;
use crate::elf::{elf_kind, parse_elf, ElfInfo};
use crate::error::{io_err, ImageError};

/// At most this many objects in a closure.
const MAX_OBJECTS: usize = 10_000;

/// Why a file is in a JEOS image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JeosFileKind {
    Program,
    Interpreter,
    Library,
    Include,
}

/// A file of a JEOS image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JeosFile {
    /// Where it is in the image (absolute).
    pub path: PathBuf,
    /// Where its content comes from on this machine (symbolic links resolved).
    pub source: PathBuf,
    pub size: u64,
    pub kind: JeosFileKind,
    /// When the same content is also at another path of the image: that path (the file is
    /// stored once, as a hard link).
    pub linked_to: Option<PathBuf>,
}

/// The files a program needs, before they are made into a layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JeosClosure {
    /// Image path -> file, sorted by path.
    pub files: BTreeMap<PathBuf, JeosFile>,
    /// Directories (in the image) to put in `LD_LIBRARY_PATH`, because the loader would not
    /// find their libraries without ld.so.cache.
    pub library_path: Vec<PathBuf>,
}

#[derive(Clone, Debug)]
struct SearchDir {
    host: PathBuf,
    image: PathBuf,
    /// From ld.so.conf and not a default directory: needs `LD_LIBRARY_PATH` in the image.
    needs_library_path: bool,
}

struct Object {
    host: PathBuf,
    image: PathBuf,
    info: ElfInfo,
    /// RPATH directories inherited from the objects that loaded this one.
    inherited_rpath: Vec<SearchDir>,
    /// How it was reached, for messages.
    chain: String,
}

/// `path` as an absolute, lexically normalized image path.
pub(super) fn image_abs(path: &Path) -> PathBuf {
    Path::new("/").join(image_relative(path))
}

/// Expands RPATH / RUNPATH entries for an object at (`host`, `image`).
fn expand(entries: &[String], host: &Path, image: &Path, search: &LibrarySearch) -> Vec<SearchDir> {
    let host_origin = host.parent().unwrap_or(Path::new("/"));
    let image_origin = image.parent().unwrap_or(Path::new("/"));
    let mut dirs = Vec::new();
    for entry in entries {
        if entry.contains("$LIB")
            || entry.contains("${LIB}")
            || entry.contains("$PLATFORM")
            || entry.contains("${PLATFORM}")
        {
            continue;
        }
        let origin_rest = entry
            .strip_prefix("$ORIGIN")
            .or_else(|| entry.strip_prefix("${ORIGIN}"));
        if let Some(rest) = origin_rest {
            if !(rest.is_empty() || rest.starts_with('/')) {
                continue;
            }
            let rest = rest.trim_start_matches('/');
            dirs.push(SearchDir {
                host: if rest.is_empty() {
                    host_origin.to_path_buf()
                } else {
                    host_origin.join(rest)
                },
                image: image_abs(&image_origin.join(rest)),
                needs_library_path: false,
            });
        } else if entry.starts_with('/') && !entry.contains('$') {
            dirs.push(SearchDir {
                host: search.host_path(Path::new(entry)),
                image: image_abs(Path::new(entry)),
                needs_library_path: false,
            });
        }
    }
    dirs
}

/// The first 20 bytes of a file (for its ELF class and machine).
pub(super) fn head(path: &Path) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(20);
    fs::File::open(path)
        .ok()?
        .take(20)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

pub(super) fn jeos_file(
    source_path: &Path,
    image: PathBuf,
    kind: JeosFileKind,
) -> Result<JeosFile, ImageError> {
    let source = fs::canonicalize(source_path).map_err(io_err("resolve", source_path))?;
    let size = fs::metadata(&source)
        .map_err(io_err("inspect", &source))?
        .len();
    Ok(JeosFile {
        path: image,
        source,
        size,
        kind,
        linked_to: None,
    })
}

pub(super) fn read_elf(path: &Path) -> Result<ElfInfo, ImageError> {
    let data = fs::read(path).map_err(io_err("read", path))?;
    parse_elf(&data).map_err(|detail| ImageError::Elf {
        path: path.to_path_buf(),
        detail,
    })
}

/// The closure of `roots`: (file on this machine, path in the image) of programs or
/// libraries; their interpreters and every library they need, found as the crate docs say.
/// `search` is the machine's ([`LibrarySearch::host`], for the first root's class and
/// machine) when `None`.
pub fn library_closure(
    roots: &[(PathBuf, PathBuf)],
    search: Option<&LibrarySearch>,
) -> Result<JeosClosure, ImageError> {
    let mut closure = JeosClosure::default();
    let mut queue: VecDeque<Object> = VecDeque::new();
    let mut owned_search = None;
    for (index, (host, image)) in roots.iter().enumerate() {
        let info = read_elf(host)?;
        if owned_search.is_none() && search.is_none() {
            owned_search = Some(LibrarySearch::host(info.class64, info.machine));
        }
        let kind = if index == 0 {
            JeosFileKind::Program
        } else {
            JeosFileKind::Include
        };
        let image = image_abs(image);
        closure
            .files
            .insert(image.clone(), jeos_file(host, image.clone(), kind)?);
        queue.push_back(Object {
            host: host.clone(),
            image: image.clone(),
            info,
            inherited_rpath: Vec::new(),
            chain: image.display().to_string(),
        });
    }
    let Some(search) = search.or(owned_search.as_ref()) else {
        return Ok(closure);
    };
    let mut resolved: HashMap<String, PathBuf> = HashMap::new();
    let mut library_path: Vec<PathBuf> = Vec::new();
    let mut visited = 0usize;
    while let Some(object) = queue.pop_front() {
        visited += 1;
        if visited > MAX_OBJECTS {
            return Err(ImageError::Elf {
                path: object.host,
                detail: format!("the library closure has more than {MAX_OBJECTS} objects"),
            });
        }
        if let Some(interp) = &object.info.interpreter {
            let image = image_abs(Path::new(interp));
            if !closure.files.contains_key(&image) {
                let host = search.host_path(Path::new(interp));
                if !host.is_file() {
                    return Err(ImageError::MissingLibrary {
                        library: interp.clone(),
                        needed_by: format!("{} (its ELF interpreter, PT_INTERP)", object.chain),
                        searched: host.display().to_string(),
                    });
                }
                closure.files.insert(
                    image.clone(),
                    jeos_file(&host, image, JeosFileKind::Interpreter)?,
                );
            }
        }
        let (class64, machine) = (object.info.class64, object.info.machine);
        let own_rpath = if object.info.runpath.is_empty() {
            expand(&object.info.rpath, &object.host, &object.image, search)
        } else {
            Vec::new()
        };
        let mut dirs: Vec<SearchDir> = Vec::new();
        if object.info.runpath.is_empty() {
            dirs.extend(own_rpath.iter().cloned());
            dirs.extend(object.inherited_rpath.iter().cloned());
        }
        dirs.extend(expand(
            &object.info.runpath,
            &object.host,
            &object.image,
            search,
        ));
        for dir in &search.conf_dirs {
            dirs.push(SearchDir {
                host: search.host_path(dir),
                image: dir.clone(),
                needs_library_path: !search.default_dirs.contains(dir),
            });
        }
        for dir in &search.default_dirs {
            dirs.push(SearchDir {
                host: search.host_path(dir),
                image: dir.clone(),
                needs_library_path: false,
            });
        }
        let children_rpath: Vec<SearchDir> = own_rpath
            .into_iter()
            .chain(object.inherited_rpath.iter().cloned())
            .collect();
        for name in &object.info.needed {
            if resolved.contains_key(name) {
                continue;
            }
            let found = if name.contains('/') {
                // A path, not a name: the loader opens it as it is.
                let image = image_abs(Path::new(name));
                let host = search.host_path(Path::new(name));
                (name.starts_with('/') && host.is_file()).then_some((host, image, false))
            } else {
                dirs.iter().find_map(|dir| {
                    let host = dir.host.join(name);
                    let ok = host.is_file()
                        && head(&host).and_then(|h| elf_kind(&h)) == Some((class64, machine));
                    ok.then(|| (host, dir.image.join(name), dir.needs_library_path))
                })
            };
            let Some((host, image, needs_library_path)) = found else {
                let mut searched: Vec<String> = Vec::new();
                for dir in &dirs {
                    let shown = dir.host.display().to_string();
                    if !searched.contains(&shown) {
                        searched.push(shown);
                    }
                }
                return Err(ImageError::MissingLibrary {
                    library: name.clone(),
                    needed_by: object.chain.clone(),
                    searched: searched.join(", "),
                });
            };
            if needs_library_path {
                if let Some(dir) = image.parent() {
                    if !library_path.iter().any(|d| d == dir) {
                        library_path.push(dir.to_path_buf());
                    }
                }
            }
            resolved.insert(name.clone(), image.clone());
            if closure.files.contains_key(&image) {
                continue;
            }
            let info = read_elf(&host)?;
            closure.files.insert(
                image.clone(),
                jeos_file(&host, image.clone(), JeosFileKind::Library)?,
            );
            queue.push_back(Object {
                chain: format!("{} (loaded by {})", image.display(), object.chain),
                host,
                image,
                info,
                inherited_rpath: children_rpath.clone(),
            });
        }
    }
    closure.library_path = library_path;
    Ok(closure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_expansion_uses_the_image_location() {
        let search = LibrarySearch {
            sysroot: PathBuf::from("/sys-root"),
            conf_dirs: vec![],
            default_dirs: vec![],
        };
        let dirs = expand(
            &[
                "$ORIGIN/../lib".into(),
                "${ORIGIN}".into(),
                "/opt/lib".into(),
                "$LIB/x".into(),
                "relative/dir".into(),
                "$ORIGINAL".into(),
            ],
            Path::new("/home/me/app/bin/app"),
            Path::new("/bin/app"),
            &search,
        );
        let pairs: Vec<(String, String)> = dirs
            .iter()
            .map(|d| (d.host.display().to_string(), d.image.display().to_string()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/home/me/app/bin/../lib".to_string(), "/lib".to_string()),
                ("/home/me/app/bin".to_string(), "/bin".to_string()),
                ("/sys-root/opt/lib".to_string(), "/opt/lib".to_string()),
            ]
        );
    }

    /// A fake sysroot with real host libraries copied in: RUNPATH wins over the defaults,
    /// a library only in an ld.so.conf directory lands in LD_LIBRARY_PATH, and a missing one
    /// is named with who needs it.
    #[test]
    fn closure_in_a_fake_sysroot() {
        let program = std::env::current_exe().unwrap();
        let info = read_elf(&program).unwrap();
        if info.interpreter.is_none() || info.needed.is_empty() {
            eprintln!("the test binary is not dynamically linked: skipping");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let host_search = LibrarySearch::host(info.class64, info.machine);
        // Copy the real closure's libraries into the fake root, moving the first needed one
        // to /opt/conf (only listed in ld.so.conf).
        let real = library_closure(
            &[(program.clone(), PathBuf::from("/bin/t"))],
            Some(&host_search),
        )
        .unwrap();
        let moved = info.needed[0].clone();
        for file in real.files.values() {
            let target = if file.path.file_name().is_some_and(|n| n == moved.as_str()) {
                root.path().join("opt/conf").join(&moved)
            } else {
                root.path().join(image_relative(&file.path))
            };
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            if file.kind != JeosFileKind::Program {
                fs::copy(&file.source, &target).unwrap();
            }
        }
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/ld.so.conf"), "/opt/conf\n").unwrap();
        let search = LibrarySearch::for_root(root.path(), info.class64, info.machine);
        assert_eq!(search.conf_dirs, [PathBuf::from("/opt/conf")]);
        let closure =
            library_closure(&[(program.clone(), PathBuf::from("/app/t"))], Some(&search)).unwrap();
        assert!(closure.files.contains_key(Path::new("/app/t")));
        assert_eq!(
            closure.files[Path::new("/app/t")].kind,
            JeosFileKind::Program
        );
        let interp = image_abs(Path::new(info.interpreter.as_deref().unwrap()));
        assert_eq!(closure.files[&interp].kind, JeosFileKind::Interpreter);
        assert!(
            closure
                .files
                .contains_key(&Path::new("/opt/conf").join(&moved)),
            "{closure:?}"
        );
        assert_eq!(closure.library_path, [PathBuf::from("/opt/conf")]);
        for file in closure.files.values() {
            if file.kind == JeosFileKind::Library || file.kind == JeosFileKind::Interpreter {
                assert!(file.source.starts_with(root.path()), "{file:?}");
            }
        }

        // Without /opt/conf in ld.so.conf the library is missing, and the error says who
        // needs it.
        fs::write(root.path().join("etc/ld.so.conf"), "").unwrap();
        let search = LibrarySearch::for_root(root.path(), info.class64, info.machine);
        let error = library_closure(&[(program, PathBuf::from("/app/t"))], Some(&search))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&moved), "{error}");
        assert!(error.contains("/app/t"), "{error}");
    }
}
