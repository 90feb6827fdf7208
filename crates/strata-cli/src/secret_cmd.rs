//! `strata secret`: set, list and remove a service's secrets, and rotate the key-encryption
//! key. A value goes in (from stdin or a file, never an argument: arguments show in `ps` and
//! shell history) and never comes back out.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;
use strata_core::secret::{KeyRotated, SecretInfo, SecretSet, SetSecretRequest};

use crate::api::Api;
use crate::{CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Set a new version of a service's secret: the value from stdin (one trailing newline
    /// dropped) or --from-file (as is). A service running with the secret rolls out.
    Set {
        service: String,
        name: String,
        #[arg(long, default_value = "dev")]
        env: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// List a service's secrets: names, versions, who set them when. Never values.
    Ls {
        service: String,
        #[arg(long, default_value = "dev")]
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a service's secret (refused while its release runs with it).
    Rm {
        service: String,
        name: String,
        #[arg(long, default_value = "dev")]
        env: String,
    },
    /// Seal the secrets' data key under a fresh key-encryption key (added to the server's
    /// key file; the other servers copy it). Nothing restarts.
    RotateKey {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(api: &Api, action: SecretAction) -> CliResult {
    match action {
        SecretAction::Set {
            service,
            name,
            env,
            from_file,
        } => {
            let value = read_value(&name, from_file)?;
            let set: SecretSet = api
                .put(
                    &format!("/v1/envs/{env}/services/{service}/secrets/{name}"),
                    &SetSecretRequest { value },
                )
                .await?;
            match set.release {
                Some(release) => println!(
                    "secret {name} of {service} in {env}: version {}; release {release} rolls it out",
                    set.version
                ),
                None => println!(
                    "secret {name} of {service} in {env}: version {} (no release runs with it yet: name it in [service.{service}.secrets] and deploy)",
                    set.version
                ),
            }
            Ok(())
        }
        SecretAction::Ls { service, env, json } => {
            let secrets: Vec<SecretInfo> = api
                .get(&format!("/v1/envs/{env}/services/{service}/secrets"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&secrets)?);
                return Ok(());
            }
            if secrets.is_empty() {
                println!("{service} in {env} has no secrets; set one with `strata secret set {service} NAME --env {env}`");
                return Ok(());
            }
            println!("{:<32} {:>7} {:<20} SET AT", "NAME", "VERSION", "SET BY");
            for secret in secrets {
                println!(
                    "{:<32} {:>7} {:<20} {}",
                    secret.name,
                    secret.version,
                    secret.set_by,
                    crate::access_cmd::format_time(secret.set_at)
                );
            }
            Ok(())
        }
        SecretAction::Rm { service, name, env } => {
            api.delete(&format!("/v1/envs/{env}/services/{service}/secrets/{name}"))
                .await?;
            println!("secret {name} of {service} in {env}: removed");
            Ok(())
        }
        SecretAction::RotateKey { json } => {
            let rotated: KeyRotated = api.post("/v1/secrets/rotate-key", &()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rotated)?);
            } else {
                println!(
                    "the secrets' data key is sealed under {} now (was {}); keep a copy of the server's key file apart from the store",
                    rotated.kek, rotated.previous
                );
            }
            Ok(())
        }
    }
}

/// The value from `file`, or from stdin (which must not be a terminal: a typed value would
/// show on screen).
fn read_value(name: &str, file: Option<PathBuf>) -> Result<String, Failure> {
    let bytes = match &file {
        Some(path) => std::fs::read(path).map_err(|error| {
            Failure::BadInput(anyhow!("error: --from-file {}: {error}", path.display()))
        })?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Failure::BadInput(anyhow!(
                    "error: the value of secret {name} is read from stdin, which is a terminal\n  hint: pipe it in (`strata secret set SERVICE {name} < file`) or pass --from-file FILE"
                )));
            }
            let mut bytes = Vec::new();
            stdin.lock().read_to_end(&mut bytes)?;
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            bytes
        }
    };
    String::from_utf8(bytes).map_err(|_| {
        Failure::BadInput(anyhow!(
            "error: the value of secret {name} is not UTF-8 text\n  hint: encode binary values (base64) and decode them in the service"
        ))
    })
}
