//! JEOS ("just enough OS"): the smallest root that runs one program: the program, its ELF
//! interpreter, and the closure of its shared libraries, found the way the dynamic loader
//! finds them, plus whatever files the caller includes.
//!
//! For each object (the program, then every library found, breadth first, each name once), the
//! libraries named by `DT_NEEDED` are searched in the loader's order:
//!
//! 1. `DT_RPATH` of the object and of the objects that loaded it, then of the program — only
//!    when the object has no `DT_RUNPATH`;
//! 2. `DT_RUNPATH` of the object;
//! 3. the directories of `/etc/ld.so.conf` (and the files it includes), standing in for
//!    `/etc/ld.so.cache`;
//! 4. the loader's default directories: `/lib/<triplet>`, `/usr/lib/<triplet>`, `/lib64`,
//!    `/usr/lib64` (64-bit), `/lib`, `/usr/lib` (e.g. `x86_64-linux-gnu` on Debian).
//!
//! `$ORIGIN` (and `${ORIGIN}`) expands to the directory of the object: on this machine to find
//! the file, and in the image to decide where it goes (the program may be placed elsewhere than
//! it is here). At run time the loader finds the program's own `$ORIGIN` through
//! `/proc/self/exe`, so `/proc` must be mounted in the container (the runtime mounts it). Entries with `$LIB` or `$PLATFORM`, and relative entries (which the loader
//! takes relative to the working directory), are skipped. A candidate of another ELF class or
//! machine is skipped, as the loader does. `LD_LIBRARY_PATH` is not read, and hwcap
//! subdirectories (`glibc-hwcaps/x86-64-v3`) are not searched: the baseline library is used.
//!
//! Placement: every file is copied (its content, symbolic links resolved) to the path the
//! loader looks it up at: the interpreter at its `PT_INTERP` path, a library at `<dir>/<name>`
//! for the directory it was found in. Directories are real directories in the image (a host
//! with merged /usr, where `/lib` links to `usr/lib`, gives an image with both `/lib/...` and
//! `/usr/lib/...` paths as needed). A file needed at two paths (on Debian the interpreter is
//! also `DT_NEEDED` by libc under `/lib/x86_64-linux-gnu`) is stored once and hard linked. The
//! image has no `ld.so.cache`, so a library found only through an `ld.so.conf` directory that
//! is not a default one (e.g. `/usr/local/lib`) makes that directory part of the image's
//! `LD_LIBRARY_PATH`.
//!
//! The program goes to `/bin/<its file name>` unless `at` says otherwise, and becomes the
//! entrypoint when the config sets none. Includes are copied at their own absolute paths:
//! a file (a symbolic link given directly is followed), or a directory tree (links inside are
//! kept as links). An included ELF file's libraries are added too.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::build::{image_relative, LayerOptions, LayerTree, Node};
use crate::digest::LayerDigest;
use crate::elf::{elf_kind, parse_elf, ElfInfo};
use crate::error::{io_err, ImageError};
use crate::manifest::{now_rfc3339, Image, ImageConfigSpec, Platform};
use crate::reference::Tag;
use crate::store::ImageStore;

/// At most this many objects in a closure.
const MAX_OBJECTS: usize = 10_000;
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

    fn host_path(&self, image_path: &Path) -> PathBuf {
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
fn image_abs(path: &Path) -> PathBuf {
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
fn head(path: &Path) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(20);
    fs::File::open(path)
        .ok()?
        .take(20)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

fn jeos_file(
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

fn read_elf(path: &Path) -> Result<ElfInfo, ImageError> {
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

/// What [`ImageStore::build_jeos`] makes.
#[derive(Clone, Debug, Default)]
pub struct JeosOptions {
    /// Where the program goes in the image (absolute); `/bin/<its file name>` when unset.
    pub at: Option<PathBuf>,
    /// The run configuration; the entrypoint defaults to the program.
    pub config: ImageConfigSpec,
    pub tag: Option<Tag>,
    pub layer: LayerOptions,
    /// The image's creation time (RFC 3339); now when unset.
    pub created: Option<String>,
    /// The library search; this machine's when unset.
    pub search: Option<LibrarySearch>,
}

/// What a JEOS build made, for the CLI to print.
#[derive(Clone, Debug)]
pub struct JeosReport {
    pub image: Image,
    pub layer: LayerDigest,
    /// Every regular file of the image, sorted by path.
    pub files: Vec<JeosFile>,
    /// The bytes of the files (each stored file counted once).
    pub total_size: u64,
    /// The size of the layer's tar (the image's size).
    pub image_size: u64,
    /// `LD_LIBRARY_PATH` set in the image's config, when needed.
    pub library_path: Vec<PathBuf>,
}

impl ImageStore {
    /// Builds the smallest image that runs `binary`: the program (at `options.at`, or
    /// `/bin/<name>`), its interpreter and library closure, and `includes` at their own
    /// absolute paths. See the module docs of `jeos` for the rules.
    pub fn build_jeos(
        &self,
        binary: &Path,
        includes: &[PathBuf],
        options: &JeosOptions,
    ) -> Result<JeosReport, ImageError> {
        let _lock = self.lock(false)?;
        let at = match &options.at {
            Some(at) => at.clone(),
            None => {
                let name = binary.file_name().ok_or_else(|| ImageError::InvalidPath {
                    what: "the program",
                    path: binary.display().to_string(),
                    reason: "it has no file name".into(),
                })?;
                Path::new("/bin").join(name)
            }
        };
        let at_text = at.display().to_string();
        if !at.is_absolute()
            || at
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            || image_relative(&at).as_os_str().is_empty()
        {
            return Err(ImageError::InvalidPath {
                what: "the program's place in the image",
                path: at_text,
                reason: "it must be an absolute path to a file, without `..`".into(),
            });
        }
        let meta = fs::metadata(binary).map_err(io_err("open", binary))?;
        if !meta.is_file() {
            return Err(ImageError::InvalidPath {
                what: "the program",
                path: binary.display().to_string(),
                reason: "it is not a regular file".into(),
            });
        }

        // Includes: ELF files join the closure; everything else is copied.
        let mut roots = vec![(binary.to_path_buf(), at.clone())];
        let mut include_dirs: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut include_files: Vec<(PathBuf, PathBuf)> = Vec::new();
        for include in includes {
            if !include.is_absolute() {
                return Err(ImageError::InvalidPath {
                    what: "an include",
                    path: include.display().to_string(),
                    reason: "it must be absolute (it is copied at the same path in the image)"
                        .into(),
                });
            }
            let image = image_abs(include);
            let meta = fs::metadata(include).map_err(io_err("open", include))?;
            if meta.is_dir() {
                include_dirs.push((include.clone(), image));
            } else if meta.is_file() {
                let is_dynamic_elf = head(include).and_then(|h| elf_kind(&h)).is_some()
                    && read_elf(include).is_ok_and(|i| i.dynamic);
                if is_dynamic_elf {
                    roots.push((include.clone(), image));
                } else {
                    include_files.push((include.clone(), image));
                }
            } else {
                return Err(ImageError::InvalidPath {
                    what: "an include",
                    path: include.display().to_string(),
                    reason: "it is neither a file nor a directory".into(),
                });
            }
        }
        let closure = library_closure(&roots, options.search.as_ref())?;
        let mut kinds: HashMap<PathBuf, JeosFileKind> = HashMap::new();
        let mut tree = LayerTree::new(options.layer.clone());
        for file in closure.files.values() {
            let meta = fs::metadata(&file.source).map_err(io_err("inspect", &file.source))?;
            let node = Node::File {
                source: file.source.clone(),
                size: meta.len(),
                inode: Some((meta.dev(), meta.ino())),
            };
            let item = tree.item(node, &meta);
            tree.insert(image_relative(&file.path), item);
            kinds.insert(file.path.clone(), file.kind);
        }
        for (host, image) in &include_files {
            let meta = fs::metadata(host).map_err(io_err("inspect", host))?;
            let node = Node::File {
                source: fs::canonicalize(host).map_err(io_err("resolve", host))?,
                size: meta.len(),
                inode: Some((meta.dev(), meta.ino())),
            };
            let item = tree.item(node, &meta);
            tree.insert(image_relative(image), item);
        }
        for (host, image) in &include_dirs {
            let meta = fs::metadata(host).map_err(io_err("inspect", host))?;
            let item = tree.item(Node::Dir, &meta);
            tree.insert(image_relative(image), item);
            tree.add_dir(host, &image_relative(image), self.limits().max_entries)?;
        }
        tree.link_duplicates();

        let mut config = options.config.clone();
        if config.entrypoint.is_empty() && config.cmd.is_empty() {
            config.entrypoint = vec![image_abs(&at).display().to_string()];
        }
        if !closure.library_path.is_empty()
            && !config.env.iter().any(|e| e.starts_with("LD_LIBRARY_PATH="))
        {
            let dirs: Vec<String> = closure
                .library_path
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            config
                .env
                .push(format!("LD_LIBRARY_PATH={}", dirs.join(":")));
        }

        let (layer, image_size, _) = self.store_tree(&tree)?;
        let manifest = self.manifest_for(
            std::slice::from_ref(&layer),
            &config,
            Platform::host(),
            Some(options.created.clone().unwrap_or_else(now_rfc3339)),
        )?;
        let tags: Vec<Tag> = options.tag.iter().cloned().collect();
        let image = self.put_manifest_unlocked(&manifest, &tags)?;

        let mut files = Vec::new();
        let mut total_size = 0u64;
        for (relative, item) in &tree.items {
            let path = Path::new("/").join(relative);
            let kind = kinds.get(&path).copied().unwrap_or(JeosFileKind::Include);
            match &item.node {
                Node::File { source, size, .. } => {
                    total_size += size;
                    files.push(JeosFile {
                        path,
                        source: source.clone(),
                        size: *size,
                        kind,
                        linked_to: None,
                    });
                }
                Node::HardLink { to } => {
                    if let Some(Node::File { source, size, .. }) =
                        tree.items.get(to).map(|i| &i.node)
                    {
                        files.push(JeosFile {
                            path,
                            source: source.clone(),
                            size: *size,
                            kind,
                            linked_to: Some(Path::new("/").join(to)),
                        });
                    }
                }
                Node::Dir | Node::Symlink { .. } => {}
            }
        }
        Ok(JeosReport {
            image,
            layer,
            files,
            total_size,
            image_size,
            library_path: closure.library_path,
        })
    }
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
