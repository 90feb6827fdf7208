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

mod closure;
mod search;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::build::{image_relative, LayerOptions, LayerTree, Node};
use crate::digest::LayerDigest;
use crate::elf::elf_kind;
use crate::error::{io_err, ImageError};
use crate::manifest::{now_rfc3339, Image, ImageConfigSpec, Platform};
use crate::reference::Tag;
use crate::store::ImageStore;
use closure::{head, image_abs, read_elf};

pub use closure::{library_closure, JeosClosure, JeosFile, JeosFileKind};
pub use search::{default_dirs, multiarch_triplet, read_ld_so_conf, LibrarySearch};

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
