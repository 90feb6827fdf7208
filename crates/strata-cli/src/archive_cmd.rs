//! `strata archive verify FILE`: a forensic archive checked offline, against the cluster CA's
//! certificate alone: the node's certificate, its signature, the control plane's
//! countersignature and every file (`strata_forensics`).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;

use crate::{CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
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

pub fn run(command: ArchiveCommand) -> CliResult {
    match command {
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
