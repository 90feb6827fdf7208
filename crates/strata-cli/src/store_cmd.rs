//! `strata store export | verify | import`: back up a control plane's whole state and restore
//! it, or move a one-machine install (the embedded store) onto etcd.
//!
//! The file is [`strata_control::backup`]'s: JSON lines at one store revision, artifacts
//! included, an end line with a digest of it all, secrets sealed under a passphrase or left
//! out. An export goes through the servers (a live cluster: they fetch artifacts from each
//! other) unless told to read a store directly. It is written to a temporary file beside the
//! output, verified, and only then renamed into place, so a failed backup never replaces a
//! good one. An import verifies the whole file before it writes anything.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures::StreamExt;
use strata_control::backup::{
    BackupError, BackupRequest, Entry, Reader, SealKey, Sealer, Summary, Writer,
};
use strata_store::{Store, Txn};

use crate::api::Api;
use crate::platform::{self, open_store, server_id, EtcdArgs};
use crate::{ApiArgs, CliResult, Failure};

/// TLS to the etcd store (`--store etcds://...`).
#[derive(Debug, clap::Args)]
pub(crate) struct StoreTlsArgs {
    /// PEM file of the CA that signed the etcd members' certificates, for an etcds:// --store
    /// (default: the system's trust roots).
    #[arg(long, value_name = "FILE", requires = "store")]
    store_ca: Option<PathBuf>,
    /// PEM file of the client certificate to present to etcd: mutual TLS, for an etcd run with
    /// --client-cert-auth. Needs --store-key.
    #[arg(long, value_name = "FILE", requires_all = ["store", "store_key"])]
    store_cert: Option<PathBuf>,
    /// PEM file of the private key of --store-cert.
    #[arg(long, value_name = "FILE", requires_all = ["store", "store_cert"])]
    store_key: Option<PathBuf>,
}

impl StoreTlsArgs {
    /// The etcd store of `--store` with these files, or `None` for the embedded store.
    pub(crate) fn with_url(
        self,
        url: Option<String>,
    ) -> Result<Option<platform::EtcdArgs>, Failure> {
        platform::EtcdArgs::from_flags(url, self.store_ca, self.store_cert, self.store_key)
    }
}

/// Where `strata store` reads or writes a server's state.
#[derive(Debug, clap::Args)]
pub(crate) struct StateFlags {
    /// The server's data directory: its embedded store and its artifacts.
    #[arg(long, default_value = ".strata")]
    pub(crate) data_dir: PathBuf,
    /// The state is on etcd instead of the embedded store: etcd://HOST:PORT[,...]/NAMESPACE
    /// (etcds://... for TLS).
    #[arg(long)]
    pub(crate) store: Option<String>,
    #[command(flatten)]
    pub(crate) store_tls: StoreTlsArgs,
}

/// The passphrase that seals (or opens) a backup's secrets.
#[derive(Debug, clap::Args)]
pub(crate) struct PassphraseFlags {
    /// Read the passphrase from this file (its first line); else STRATA_BACKUP_PASSPHRASE.
    #[arg(long, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StoreAction {
    /// Back up the whole state, consistent at one store revision, with every artifact: from
    /// the servers at --addr (a live cluster), or, with --data-dir or --store, from the store
    /// itself. Instances, nodes and other runtime facts are left out: a restored cluster
    /// places its services afresh.
    Export {
        /// Read the store directly: this data directory's embedded store (stop its server
        /// first) and artifacts.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Read the store directly: etcd://HOST:PORT[,...]/NAMESPACE (etcds:// for TLS);
        /// artifacts come from --data-dir.
        #[arg(long)]
        store: Option<String>,
        #[command(flatten)]
        store_tls: StoreTlsArgs,
        /// Write here (mode 0600, after it verified) instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Also back up the cluster's secrets (join token, CA key, credential key, API token
        /// hashes), sealed with a passphrase, so a restore keeps its nodes and tokens.
        #[arg(long)]
        include_secrets: bool,
        #[command(flatten)]
        passphrase: PassphraseFlags,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Check a backup whole: format, every line, artifacts against their names, the end
    /// line's counts and digest, and, with the passphrase, the sealed secrets.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseFlags,
    },
    /// Restore a backup into a store (empty unless --force) and a server's data directory
    /// (made if missing). The whole file is verified before anything is written.
    Import {
        file: PathBuf,
        #[command(flatten)]
        state: StateFlags,
        /// Import even if the target already has services.
        #[arg(long)]
        force: bool,
        /// Restore a backup with sealed secrets without them (a server on it makes new ones,
        /// and nodes join again).
        #[arg(long)]
        without_secrets: bool,
        #[command(flatten)]
        passphrase: PassphraseFlags,
    },
}

/// Where an export reads the state.
pub enum Source {
    /// The servers' API: a live cluster.
    Api(Api),
    /// A store read directly, with the artifacts in `data_dir`.
    Store {
        data_dir: PathBuf,
        store: Option<EtcdArgs>,
    },
}

/// The passphrase for a backup's secrets: the first line of `file`, else
/// `STRATA_BACKUP_PASSPHRASE`. `required`: having none is bad input.
pub fn passphrase(file: Option<&Path>, required: bool) -> Result<Option<Vec<u8>>, Failure> {
    let phrase = match file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|error| {
                Failure::BadInput(anyhow!(
                    "error: cannot read the passphrase file {}: {error}",
                    file.display()
                ))
            })?;
            Some(text.lines().next().unwrap_or_default().to_string())
        }
        None => std::env::var("STRATA_BACKUP_PASSPHRASE").ok(),
    };
    match phrase {
        Some(phrase) if phrase.len() >= 8 => Ok(Some(phrase.into_bytes())),
        Some(_) => Err(Failure::BadInput(anyhow!(
            "error: the backup passphrase is shorter than 8 characters\n  hint: use a long passphrase; it is all that protects the sealed CA key and tokens"
        ))),
        None if required => Err(Failure::BadInput(anyhow!(
            "error: --include-secrets seals the secrets with a passphrase, and none was given\n  hint: pass --passphrase-file FILE, or set STRATA_BACKUP_PASSPHRASE"
        ))),
        None => Ok(None),
    }
}

/// A file for the backup beside its destination (0600), renamed into place once verified.
struct Staged {
    file: tempfile::NamedTempFile,
}

impl Staged {
    fn beside(output: Option<&Path>) -> Result<Self, Failure> {
        let dir = match output.and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            Some(_) => PathBuf::from("."),
            None => std::env::temp_dir(),
        };
        // tempfile makes it 0600.
        let file = tempfile::Builder::new()
            .prefix(".strata-backup-")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        Ok(Self { file })
    }

    /// Verifies the staged file and moves it to `output` (or copies it to standard output).
    fn verify_and_keep(self, output: Option<&Path>) -> Result<Summary, Failure> {
        let reader = std::io::BufReader::new(self.file.reopen()?);
        let summary = Reader::open(reader, "the backup", None)
            .and_then(Reader::verify)
            .map_err(|error| Failure::Failed(anyhow!("the backup did not verify: {error}")))?;
        match output {
            Some(path) => {
                self.file
                    .persist(path)
                    .map_err(|error| anyhow!("cannot write {}: {}", path.display(), error.error))?;
            }
            None => {
                let mut file = self.file.reopen()?;
                std::io::copy(&mut file, &mut std::io::stdout().lock())?;
            }
        }
        Ok(summary)
    }
}

pub async fn export(source: Source, output: Option<&Path>, passphrase: Option<&[u8]>) -> CliResult {
    let started = Instant::now();
    let sealer = match passphrase {
        Some(phrase) => Some(Sealer::for_new_backup(phrase).map_err(|e| anyhow!("{e}"))?),
        None => None,
    };
    let mut staged = Staged::beside(output)?;
    let left_out = match source {
        Source::Api(api) => {
            let request = BackupRequest {
                seal: sealer.map(|(sealer, key)| SealKey {
                    key: BASE64.encode(key),
                    params: sealer.params(),
                }),
            };
            let sealed = request.seal.is_some();
            let response = api.post_stream("/v1/backup", &request).await?;
            let bar = progress();
            let mut body = response.bytes_stream();
            let file = staged.file.as_file_mut();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|error| {
                    anyhow!("the server stopped sending the backup part-way: {error}")
                })?;
                file.write_all(&chunk)?;
                bar.inc(chunk.len() as u64);
            }
            file.sync_all()?;
            bar.finish_and_clear();
            !sealed
        }
        Source::Store { data_dir, store } => {
            let store = open_store(&data_dir, store.as_ref()).await?;
            let file = std::io::BufWriter::new(staged.file.as_file_mut());
            let secrets_left_out =
                write_from_store(store, &data_dir, file, sealer.map(|(s, _)| s)).await?;
            staged.file.as_file().sync_all()?;
            secrets_left_out > 0
        }
    };
    let summary = staged.verify_and_keep(output)?;
    eprintln!(
        "backed up {} keys and {} artifacts at store revision {} ({} bytes, {:.1} s){}",
        summary.keys,
        summary.artifacts,
        summary.header.revision,
        summary.bytes,
        started.elapsed().as_secs_f64(),
        match output {
            Some(path) => format!(" to {}", path.display()),
            None => String::new(),
        }
    );
    eprintln!(
        "services' secrets are in it sealed under the servers' secrets key file (--secrets-key-file): a restore opens them only with that file; keep a copy of it apart from the backup"
    );
    if summary.sealed > 0 {
        eprintln!(
            "{} secret keys are sealed: keep the passphrase apart from the file",
            summary.sealed
        );
    } else if left_out {
        eprintln!(
            "secrets (join token, CA key, credential key, token hashes) are left out: a server on the restored state makes new ones, and nodes join again; pass --include-secrets to keep them, sealed"
        );
    }
    Ok(())
}

fn progress() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} backing up: {bytes} ({bytes_per_sec})")
            .expect("valid template"),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// Writes a backup of `store` (read at one revision) with the artifacts in `data_dir`; the
/// number of secret keys left out.
async fn write_from_store(
    store: Arc<dyn Store>,
    data_dir: &Path,
    out: impl Write,
    sealer: Option<Sealer>,
) -> Result<usize, Failure> {
    let page = store
        .snapshot_without(&strata_control::backup::format::RUNTIME_PREFIXES)
        .await?;
    let mut writer = Writer::start(out, page.revision, "store", sealer)?;
    let blob_store = strata_control::blobs::BlobStore::open(&data_dir.join("blobs"))?;
    let mut digests = Vec::new();
    for kv in &page.kvs {
        writer.key(&kv.key, &kv.value)?;
        if let Some(digest) = kv.key.strip_prefix(strata_core::keys::BLOBS) {
            digests.push(digest.to_string());
        }
    }
    let missing: Vec<&String> = {
        let mut missing = Vec::new();
        for digest in &digests {
            if !blob_store.exists(digest).await? {
                missing.push(digest);
            }
        }
        missing
    };
    if let Some(first) = missing.first() {
        return Err(Failure::Failed(anyhow!(
            "{} artifacts the state names are not in {} (the first: {first}): the servers that hold them are elsewhere\n  hint: back up a live cluster through its servers: `strata store export` without --store or --data-dir, with --addr or STRATA_ADDR",
            missing.len(),
            data_dir.display()
        )));
    }
    for digest in &digests {
        let path = blob_store.path(digest)?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        writer.artifact(digest, &bytes)?;
    }
    let left_out = writer.secrets_left_out;
    writer.finish()?;
    Ok(left_out)
}

fn open_backup(file: &Path, passphrase: Option<&[u8]>) -> Result<Reader<impl BufRead>, Failure> {
    let input = std::fs::File::open(file).map_err(|error| {
        Failure::BadInput(anyhow!("error: cannot read {}: {error}", file.display()))
    })?;
    Reader::open(
        std::io::BufReader::new(input),
        &file.display().to_string(),
        passphrase,
    )
    .map_err(bad_backup)
}

fn bad_backup(error: BackupError) -> Failure {
    Failure::BadInput(anyhow!("error: {error}"))
}

pub fn verify(file: &Path, passphrase: Option<&[u8]>) -> CliResult {
    let reader = open_backup(file, passphrase)?;
    let opens = reader.opens_secrets();
    let summary = reader
        .verify()
        .map_err(|error| Failure::Failed(anyhow!("{} does not verify: {error}", file.display())))?;
    let taken = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(summary.header.taken_at_ms),
    );
    println!(
        "{}: a good backup of {} keys and {} artifacts, at store revision {}, taken {taken} by {}",
        file.display(),
        summary.keys,
        summary.artifacts,
        summary.header.revision,
        summary.header.taken_by
    );
    match (summary.sealed, opens) {
        (0, _) => println!("secrets: left out"),
        (n, true) => println!("secrets: {n} sealed, and the passphrase opens every one"),
        (n, false) => {
            println!("secrets: {n} sealed (not checked: give the passphrase to check them)")
        }
    }
    Ok(())
}

/// How an import treats its target and the backup's secrets.
pub struct ImportOptions {
    pub force: bool,
    pub without_secrets: bool,
    pub passphrase: Option<Vec<u8>>,
}

pub async fn import(
    file: &Path,
    data_dir: &Path,
    store: Option<&EtcdArgs>,
    options: ImportOptions,
) -> CliResult {
    let started = Instant::now();
    // First the whole file is checked: a bad backup writes nothing.
    let reader = open_backup(file, options.passphrase.as_deref())?;
    if reader.header().seal.is_some() && !reader.opens_secrets() && !options.without_secrets {
        return Err(Failure::BadInput(anyhow!(
            "error: {}'s secrets are sealed and no passphrase was given\n  hint: pass --passphrase-file FILE or set STRATA_BACKUP_PASSPHRASE; or --without-secrets to restore all but them (nodes then join again)",
            file.display()
        )));
    }
    let summary = reader.verify().map_err(bad_backup)?;

    create_private_dir(data_dir)?;
    let store: Arc<dyn Store> = open_store(data_dir, store).await?;
    if !options.force && !store.list_page("/services/", None, 1).await?.kvs.is_empty() {
        return Err(Failure::Failed(anyhow!(
            "the target store already has services; importing would mix two states\n  hint: import into an empty store, or pass --force to overwrite key by key"
        )));
    }
    let me = server_id(data_dir)?;
    let blob_store = strata_control::blobs::BlobStore::open(&data_dir.join("blobs"))?;
    let mut reader = open_backup(file, options.passphrase.as_deref())?;
    let (mut keys, mut artifacts, mut skipped) = (0usize, 0usize, 0usize);
    let mut batch = Txn::new();
    while let Some(entry) = reader.next_entry().map_err(bad_backup)? {
        match entry {
            Entry::Key { key, value } => {
                let value = if key.starts_with(strata_core::keys::BLOBS) {
                    // Artifacts are held by the importing server now.
                    let mut record: strata_control::replicate::BlobRecord =
                        serde_json::from_slice(&value)
                            .with_context(|| format!("{key} is not an artifact record"))?;
                    record.holders = [me.clone()].into();
                    serde_json::to_vec(&record)?
                } else {
                    value
                };
                batch = batch.put(key, value);
                keys += 1;
                if batch.ops.len() >= 64 {
                    store.txn(std::mem::take(&mut batch)).await?;
                }
            }
            Entry::Sealed { .. } => skipped += 1,
            Entry::Artifact { digest, bytes } => {
                let stream =
                    futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
                blob_store.put(&digest, stream, u64::MAX).await?;
                artifacts += 1;
            }
        }
    }
    if !batch.ops.is_empty() {
        store.txn(batch).await?;
    }
    eprintln!(
        "restored {keys} keys and {artifacts} artifacts from store revision {} ({:.1} s)",
        summary.header.revision,
        started.elapsed().as_secs_f64()
    );
    if skipped > 0 {
        eprintln!("left out {skipped} sealed secret keys (--without-secrets)");
    }
    Ok(())
}

/// `dir` and its parents, made if missing; `dir` itself readable by its owner alone.
fn create_private_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(())
}
