//! `strata image ...`: the local image store (build, import, list, inspect, remove, save,
//! gc). A container service deploys an image saved to a file (`strata image save`), an OCI
//! image layout or `docker save` archive, named by the spec's `artifact`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Subcommand;
use strata_image::{
    BuildOptions, ImageConfigSpec, ImageStore, ImportOptions, JeosOptions, LayerOptions, Owner, Tag,
};

use crate::{CliResult, Failure};

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Build an image: a directory as one layer on top of --base images, or with --jeos the
    /// smallest root that runs one program (it, its ELF interpreter and shared libraries).
    Build {
        /// The directory that becomes the image's top layer (not with --jeos).
        dir: Option<PathBuf>,
        /// NAME:VERSION of the new image.
        #[arg(long)]
        tag: String,
        /// Images to build on, bottom first (NAME:VERSION or sha256:DIGEST).
        #[arg(long)]
        base: Vec<String>,
        /// Build the smallest root that runs this program.
        #[arg(long, value_name = "BINARY", conflicts_with = "dir")]
        jeos: Option<PathBuf>,
        /// With --jeos: more files or directories to copy in, at the same absolute path.
        #[arg(long, value_name = "PATH", requires = "jeos")]
        include: Vec<PathBuf>,
        /// With --jeos: where the program goes in the image (default /bin/NAME).
        #[arg(long, value_name = "PATH", requires = "jeos")]
        at: Option<PathBuf>,
        /// The program and its arguments, e.g. --entrypoint /bin/hello (repeat for arguments).
        #[arg(long, value_name = "ARG")]
        entrypoint: Vec<String>,
        /// Default arguments.
        #[arg(long, value_name = "ARG")]
        cmd: Vec<String>,
        /// Environment of the program, NAME=VALUE (repeatable).
        #[arg(long, value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// The user the program runs as: UID or UID:GID.
        #[arg(long)]
        user: Option<String>,
        /// The program's working directory.
        #[arg(long)]
        workdir: Option<String>,
        /// Every file owned by root (0:0) instead of its owner on this machine.
        #[arg(long)]
        root_owned: bool,
        #[arg(long, env = "STRATA_IMAGES", value_name = "DIR")]
        images: Option<PathBuf>,
    },
    /// Import an OCI image layout (directory or tar) or a `docker save` archive.
    Import {
        file: PathBuf,
        /// Tag the (single) imported image NAME:VERSION instead of the archive's names.
        #[arg(long)]
        tag: Option<String>,
        #[arg(long, env = "STRATA_IMAGES", value_name = "DIR")]
        images: Option<PathBuf>,
    },
    /// List images.
    Ls {
        #[arg(long)]
        json: bool,
        #[arg(long, env = "STRATA_IMAGES", value_name = "DIR")]
        images: Option<PathBuf>,
    },
    /// Show an image: layers, size, run configuration (JSON).
    Inspect {
        reference: String,
        #[arg(long, env = "STRATA_IMAGES", value_name = "DIR")]
        images: Option<PathBuf>,
    },
    /// Untag an image (its layers go at the next gc unless another image uses them).
    Rm {
        reference: String,
        #[arg(long, env = "STRATA_IMAGES", value_name = "DIR")]
        images: Option<PathBuf>,
    },
    /// Write an image as an OCI image layout tar: the file a container service deploys.
    Save {
        reference: String,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, env = "STRATA_IMAGES", value_name = "DIR")]
        images: Option<PathBuf>,
    },
    /// Remove untagged images and the layers no image uses.
    Gc {
        #[arg(long, env = "STRATA_IMAGES", value_name = "DIR")]
        images: Option<PathBuf>,
    },
}

/// The local store: --images, $STRATA_IMAGES, or ~/.local/share/strata/images.
fn open(images: Option<PathBuf>) -> Result<ImageStore, Failure> {
    let dir = images.unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| ".".into());
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".local/share"))
            .join("strata/images")
    });
    ImageStore::open(&dir)
        .map_err(|e| Failure::Failed(anyhow!("image store {}: {e}", dir.display())))
}

fn bad(error: impl std::fmt::Display) -> Failure {
    Failure::BadInput(anyhow!("{error}"))
}

fn failed(error: impl std::fmt::Display) -> Failure {
    Failure::Failed(anyhow!("{error}"))
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub fn run(action: ImageAction) -> CliResult {
    match action {
        ImageAction::Build {
            dir,
            tag,
            base,
            jeos,
            include,
            at,
            entrypoint,
            cmd,
            env,
            user,
            workdir,
            root_owned,
            images,
        } => {
            let store = open(images)?;
            let tag = Tag::parse(&tag).map_err(bad)?;
            for pair in &env {
                if !pair.contains('=') {
                    return Err(bad(format!("--env {pair}: write NAME=VALUE")));
                }
            }
            let config = ImageConfigSpec {
                entrypoint,
                cmd,
                env,
                working_dir: workdir,
                user,
                ..ImageConfigSpec::default()
            };
            let layer = LayerOptions {
                owner: if root_owned {
                    Owner::Fixed { uid: 0, gid: 0 }
                } else {
                    Owner::FromFiles
                },
                fixed_mtime: None,
            };
            match (dir, jeos) {
                (None, Some(binary)) => {
                    if !base.is_empty() {
                        return Err(bad("--jeos builds a root of its own; drop --base"));
                    }
                    eprintln!("building the smallest root that runs {}", binary.display());
                    let report = store
                        .build_jeos(
                            &binary,
                            &include,
                            &JeosOptions {
                                at,
                                config,
                                tag: Some(tag.clone()),
                                layer: LayerOptions {
                                    owner: Owner::Fixed { uid: 0, gid: 0 },
                                    ..layer
                                },
                                ..JeosOptions::default()
                            },
                        )
                        .map_err(failed)?;
                    for file in &report.files {
                        eprintln!("  {:>10}  {}", size(file.size), file.path.display());
                    }
                    println!(
                        "{tag} {} ({} files, {})",
                        report.image.digest,
                        report.files.len(),
                        size(report.image_size)
                    );
                }
                (Some(dir), None) => {
                    let built = store
                        .build_from_dir(
                            &dir,
                            &BuildOptions {
                                base,
                                config,
                                tag: Some(tag.clone()),
                                layer,
                                created: None,
                            },
                        )
                        .map_err(failed)?;
                    println!(
                        "{tag} {} ({} layers, top layer {} entries, {})",
                        built.image.digest,
                        built.image.manifest.layers.len(),
                        built.entries,
                        size(built.image.manifest.size)
                    );
                }
                (None, None) => return Err(bad("give a DIR to build from, or --jeos BINARY")),
                (Some(_), Some(_)) => return Err(bad("give either a DIR or --jeos, not both")),
            }
            Ok(())
        }
        ImageAction::Import { file, tag, images } => {
            let store = open(images)?;
            let tags = tag
                .map(|t| Tag::parse(&t).map(|t| vec![t]))
                .transpose()
                .map_err(bad)?;
            let imported = store
                .import(&file, &ImportOptions { tags })
                .map_err(failed)?;
            for one in imported {
                let names: Vec<String> = one.image.tags.iter().map(|t| t.to_string()).collect();
                println!(
                    "{} {} ({} layers, {})",
                    if names.is_empty() {
                        "<untagged>".into()
                    } else {
                        names.join(",")
                    },
                    one.image.digest,
                    one.image.manifest.layers.len(),
                    size(one.image.manifest.size)
                );
                for name in one.unusable_names {
                    eprintln!("note: {name}");
                }
            }
            Ok(())
        }
        ImageAction::Ls { json, images } => {
            let store = open(images)?;
            let list = store.list().map_err(failed)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list).context("json")?);
                return Ok(());
            }
            println!(
                "{:<32} {:<20} {:>7} {:>10}",
                "TAG", "DIGEST", "LAYERS", "SIZE"
            );
            for image in list {
                let digest = image.digest.to_string();
                let short = digest.get(..19).unwrap_or(&digest);
                let tags: Vec<String> = if image.tags.is_empty() {
                    vec!["<untagged>".into()]
                } else {
                    image.tags.iter().map(|t| t.to_string()).collect()
                };
                for tag in tags {
                    println!(
                        "{tag:<32} {short:<20} {:>7} {:>10}",
                        image.manifest.layers.len(),
                        size(image.manifest.size)
                    );
                }
            }
            Ok(())
        }
        ImageAction::Inspect { reference, images } => {
            let store = open(images)?;
            let image = store.inspect(reference.as_str()).map_err(failed)?;
            println!("{}", serde_json::to_string_pretty(&image).context("json")?);
            Ok(())
        }
        ImageAction::Rm { reference, images } => {
            let store = open(images)?;
            let report = store.remove(reference.as_str()).map_err(failed)?;
            println!(
                "untagged {reference} ({}); `strata image gc` frees its layers",
                report.digest
            );
            Ok(())
        }
        ImageAction::Save {
            reference,
            output,
            images,
        } => {
            let store = open(images)?;
            save(&store, &reference, &output)?;
            Ok(())
        }
        ImageAction::Gc { images } => {
            let store = open(images)?;
            let report = store.gc(&[]).map_err(failed)?;
            println!("removed {} items", report.removed());
            Ok(())
        }
    }
}

fn save(store: &ImageStore, reference: &str, output: &Path) -> CliResult {
    let tmp = output.with_extension("tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    store
        .export_oci_layout(reference, &mut writer)
        .map_err(failed)?;
    use std::io::Write;
    writer.flush().context("write")?;
    drop(writer);
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    let bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    println!(
        "saved {reference} to {} ({})",
        output.display(),
        size(bytes)
    );
    Ok(())
}
