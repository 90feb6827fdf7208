//! `strata store export` / `strata store import`: back up and restore a control plane's whole
//! state, and move a one-machine install (the embedded store) onto etcd.
//!
//! The format is JSON lines: one `{"key": ..., "value": ...}` per key (the value as JSON when
//! it is JSON, else `"value_base64"`), then one `{"blob": DIGEST, "base64": ...}` per artifact
//! held in the data directory. Keys bound to a lease (the leader's) are not exported: they
//! belong to a running server.
//!
//! Both commands work on the store directly; stop the servers using it first (the embedded
//! store refuses to open while a server holds it).

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use strata_store::{Store, Txn};

use crate::platform::{open_store, server_id, EtcdArgs};
use crate::{CliResult, Failure};

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Key {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_base64: Option<String>,
    },
    Blob {
        blob: String,
        base64: String,
    },
}

/// The keys that hold the cluster's secrets: the join token and credential key, the CA
/// with its private key, API tokens' hashes. Exported only when asked.
const SECRET_PREFIXES: [&str; 3] = ["/cluster/", "/pki/", "/auth/"];

pub async fn export(
    data_dir: &Path,
    store: Option<&EtcdArgs>,
    output: Option<&Path>,
    include_secrets: bool,
) -> CliResult {
    let store: Arc<dyn Store> = open_store(data_dir, store).await?;
    let listing = store.list("/").await?;
    let mut out: Box<dyn Write> = match output {
        Some(path) => {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Box::new(std::io::BufWriter::new(file))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut keys = 0;
    let mut secrets_left_out = 0;
    for kv in listing.kvs.iter().filter(|kv| kv.lease.is_none()) {
        if !include_secrets && SECRET_PREFIXES.iter().any(|p| kv.key.starts_with(p)) {
            secrets_left_out += 1;
            continue;
        }
        let line = match serde_json::from_slice::<serde_json::Value>(&kv.value) {
            Ok(value) => Line::Key {
                key: kv.key.clone(),
                value: Some(value),
                value_base64: None,
            },
            Err(_) => Line::Key {
                key: kv.key.clone(),
                value: None,
                value_base64: Some(BASE64.encode(&kv.value)),
            },
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        keys += 1;
    }
    let mut blobs = 0;
    let blob_dir = data_dir.join("blobs/sha256");
    if let Ok(entries) = std::fs::read_dir(&blob_dir) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            let line = Line::Blob {
                blob: format!("sha256:{name}"),
                base64: BASE64.encode(&bytes),
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            blobs += 1;
        }
    }
    out.flush()?;
    eprintln!(
        "exported {keys} keys (at revision {}) and {blobs} artifacts",
        listing.revision
    );
    if secrets_left_out > 0 {
        eprintln!(
            "left out {secrets_left_out} secret keys (join token, CA key, credential key, token hashes): a server on the imported state makes new ones, and nodes join again; pass --include-secrets to keep them"
        );
    }
    Ok(())
}

pub async fn import(
    file: &Path,
    data_dir: &Path,
    store: Option<&EtcdArgs>,
    force: bool,
) -> CliResult {
    let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(|error| {
        Failure::BadInput(anyhow!("error: cannot read {}: {error}", file.display()))
    })?);
    let store: Arc<dyn Store> = open_store(data_dir, store).await?;
    if !force && !store.list_page("/services/", None, 1).await?.kvs.is_empty() {
        return Err(Failure::Failed(anyhow!(
            "the target store already has services; importing would mix two states\n  hint: import into an empty store, or pass --force to overwrite key by key"
        )));
    }
    let me = server_id(data_dir)?;
    let blob_store = strata_control::blobs::BlobStore::open(&data_dir.join("blobs"))?;
    let (mut keys, mut blobs) = (0usize, 0usize);
    let mut batch = Txn::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|error| {
            Failure::BadInput(anyhow!(
                "error: {}:{}: not an export line: {error}",
                file.display(),
                number + 1
            ))
        })?;
        match parsed {
            Line::Key {
                key,
                value,
                value_base64,
            } => {
                // The leader and this cluster's servers are runtime facts, not state to restore.
                if key.starts_with(strata_control::replicate::SERVERS) {
                    continue;
                }
                let bytes = match (value, value_base64) {
                    (Some(value), _) => serde_json::to_vec(&value)?,
                    (None, Some(encoded)) => BASE64.decode(&encoded).map_err(|error| {
                        Failure::BadInput(anyhow!(
                            "error: {}:{}: {error}",
                            file.display(),
                            number + 1
                        ))
                    })?,
                    (None, None) => {
                        return Err(Failure::BadInput(anyhow!(
                            "error: {}:{}: a key without a value",
                            file.display(),
                            number + 1
                        )))
                    }
                };
                let bytes = if key.starts_with(strata_control::replicate::BLOBS) {
                    // Artifacts are held by the importing server now.
                    let mut record: strata_control::replicate::BlobRecord =
                        serde_json::from_slice(&bytes)?;
                    record.holders = [me.clone()].into();
                    serde_json::to_vec(&record)?
                } else {
                    bytes
                };
                batch = batch.put(key, bytes);
                keys += 1;
                if batch.ops.len() >= 64 {
                    store.txn(std::mem::take(&mut batch)).await?;
                }
            }
            Line::Blob { blob, base64 } => {
                let bytes = BASE64.decode(&base64).map_err(|error| {
                    Failure::BadInput(anyhow!(
                        "error: {}:{}: artifact {blob}: {error}",
                        file.display(),
                        number + 1
                    ))
                })?;
                let stream =
                    futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
                blob_store.put(&blob, stream, u64::MAX).await?;
                blobs += 1;
            }
        }
    }
    if !batch.ops.is_empty() {
        store.txn(batch).await?;
    }
    eprintln!("imported {keys} keys and {blobs} artifacts");
    Ok(())
}
