//! `strata archive ls|get|verify`: the forensic archives the control plane keeps, listed and
//! fetched (operators), and one checked offline against the cluster CA's certificate alone:
//! the node's certificate, its signature, the control plane's countersignature and every
//! file (`strata_forensics`).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;

use crate::{CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// The archives the control plane keeps, oldest first.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Fetch archive ID (as `ls` names it) into FILE; verify it with `verify`.
    Get {
        id: String,
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Check an archive offline: both signatures and every file's hash; says which part or
    /// file fails (exit 1).
    Verify {
        file: PathBuf,
        /// The cluster CA's certificate (default: the file `STRATA_CA` names).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Accept an archive the control plane has not countersigned (yet).
        #[arg(long)]
        node_signed_only: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Fetches archive `id` into `output` (written beside it, then renamed into place).
pub async fn fetch(api: &crate::api::Api, id: &str, output: &std::path::Path) -> CliResult {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let response = api.stream(&format!("/v1/archives/{id}")).await?;
    let temp = output.with_extension("part");
    let mut file = tokio::fs::File::create(&temp)
        .await
        .map_err(|e| Failure::BadInput(anyhow!("error: {}: {e}", output.display())))?;
    let mut body = response.bytes_stream();
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| anyhow!("fetching archive {id}: {e}"))?;
        written += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    tokio::fs::rename(&temp, output).await?;
    eprintln!(
        "archive {id}: {written} bytes in {}; `strata archive verify {} --ca CA.pem` checks it",
        output.display(),
        output.display()
    );
    Ok(())
}

pub async fn run(api: &crate::api::Api, command: ArchiveCommand) -> CliResult {
    match command {
        ArchiveCommand::Ls { json } => {
            let records: Vec<strata_core::archive::ArchiveRecord> = api.get("/v1/archives").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
                return Ok(());
            }
            // Subjects name an instance (`failure:web-1-3f9a2c`): as wide as the widest.
            let subject_width = records
                .iter()
                .map(|r| r.subject.len())
                .max()
                .unwrap_or(0)
                .max("SUBJECT".len());
            println!(
                "{:<28}  {:<12}  {:<subject_width$}  {:>6}  {:>12}  {:<20}  {:<20}  DIGEST",
                "ID", "NODE", "SUBJECT", "FILES", "BYTES", "STORED", "EXPIRES"
            );
            for record in &records {
                let expires = match record.expires_at {
                    Some(at) => crate::access_cmd::format_time(at),
                    None => "never".to_string(),
                };
                println!(
                    "{:<28}  {:<12}  {:<subject_width$}  {:>6}  {:>12}  {:<20}  {:<20}  {}",
                    record.id,
                    record.node,
                    record.subject,
                    record.files,
                    record.bytes,
                    crate::access_cmd::format_time(record.stored_at),
                    expires,
                    record.digest.chars().take(19).collect::<String>()
                );
            }
            Ok(())
        }
        ArchiveCommand::Get { id, output } => fetch(api, &id, &output).await,
        ArchiveCommand::Verify {
            file,
            ca,
            node_signed_only,
            json,
        } => {
            let ca = ca
                .or_else(|| std::env::var_os("STRATA_CA").filter(|p| !p.is_empty()).map(PathBuf::from))
                .ok_or_else(|| {
                    Failure::BadInput(anyhow!(
                        "error: which CA? pass --ca FILE (the cluster CA's certificate, `strata ca` or the server's ca.pem) or set STRATA_CA"
                    ))
                })?;
            let ca_pem = std::fs::read_to_string(&ca)
                .map_err(|e| Failure::BadInput(anyhow!("error: --ca {}: {e}", ca.display())))?;
            if !file.is_file() {
                return Err(Failure::BadInput(anyhow!(
                    "error: {}: no such archive file",
                    file.display()
                )));
            }
            let verified =
                strata_forensics::verify(&file, &ca_pem, !node_signed_only).map_err(|error| {
                    Failure::Failed(anyhow!("{}: does not verify: {error}", file.display()))
                })?;
            let manifest = &verified.manifest;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "verified": true,
                        "countersigned": verified.countersigned,
                        "manifest": manifest,
                    }))?
                );
                return Ok(());
            }
            println!(
                "{}: verified: made by node {} ({}, kernel {}, strata {}) at {}, {} files, {} bytes; node's signature and {}",
                file.display(),
                manifest.origin.node,
                manifest.origin.subject,
                manifest.origin.kernel,
                manifest.origin.strata_version,
                crate::access_cmd::format_time(manifest.origin.created_at),
                manifest.files.len(),
                manifest.bytes,
                if verified.countersigned {
                    "the control plane's countersignature hold"
                } else {
                    "no countersignature (--node-signed-only)"
                }
            );
            Ok(())
        }
    }
}
