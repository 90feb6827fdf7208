//! `strata token` (create, ls, revoke), `strata audit` and `strata login`.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use clap::Subcommand;
use strata_core::auth::{AuditList, CreateToken, CreatedToken, EnvScope, Role, TokenInfo};

use crate::api::Api;
use crate::{CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Make an API token; it is printed once, alone on the last line.
    Create {
        /// The token's name (lowercase letters, digits and `-`): how audit records name it.
        name: String,
        /// viewer (read), deployer (+ deploy, scale, delete, logs), operator (+ nodes,
        /// policies, audit), admin (+ tokens).
        #[arg(long, value_parser = ["viewer", "deployer", "operator", "admin"])]
        role: String,
        /// An environment it acts in (repeat for several; none: all).
        #[arg(long = "env")]
        envs: Vec<String>,
        /// Refused after this long (e.g. 30d, 12h; default: never).
        #[arg(long, value_parser = crate::humantime_duration)]
        expires: Option<Duration>,
    },
    /// List tokens (never their secrets).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: its next request, on any server, is refused.
    Revoke { name: String },
}

pub async fn token(api: &Api, action: TokenAction) -> CliResult {
    match action {
        TokenAction::Create {
            name,
            role,
            envs,
            expires,
        } => {
            let role = Role::parse(&role)
                .ok_or_else(|| Failure::BadInput(anyhow!("error: --role {role} is not a role")))?;
            let created: CreatedToken = api
                .post(
                    "/v1/tokens",
                    &CreateToken {
                        name,
                        role,
                        envs,
                        ttl_secs: expires.map(|d| d.as_secs()),
                    },
                )
                .await?;
            eprintln!(
                "token {} (role {}, {}{}) made; it is shown this once:",
                created.info.name,
                created.info.role,
                created.info.envs,
                created
                    .info
                    .expires_at
                    .map(|at| format!(", expires {}", format_time(at)))
                    .unwrap_or_default()
            );
            println!("{}", created.token);
            Ok(())
        }
        TokenAction::Ls { json } => {
            let tokens: Vec<TokenInfo> = api.get("/v1/tokens").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
                return Ok(());
            }
            println!(
                "{:<24} {:<9} {:<20} {:<22} {:<22} CREATED BY",
                "NAME", "ROLE", "ENVIRONMENTS", "CREATED", "EXPIRES"
            );
            for token in tokens {
                let envs = match &token.envs {
                    EnvScope::All => "*".to_string(),
                    EnvScope::Only(envs) => envs.iter().cloned().collect::<Vec<_>>().join(","),
                };
                println!(
                    "{:<24} {:<9} {:<20} {:<22} {:<22} {}",
                    token.name,
                    token.role,
                    envs,
                    format_time(token.created_at),
                    token.expires_at.map(format_time).unwrap_or("never".into()),
                    token.created_by
                );
            }
            Ok(())
        }
        TokenAction::Revoke { name } => {
            api.delete(&format!("/v1/tokens/{name}")).await?;
            println!("token {name} revoked");
            Ok(())
        }
    }
}

/// `strata audit`: who did what, when, from where, and how it ended.
pub async fn audit(
    api: &Api,
    env: Option<&str>,
    who: Option<&str>,
    since: Option<Duration>,
    limit: usize,
    json: bool,
) -> CliResult {
    let mut query = vec![format!("limit={limit}")];
    if let Some(env) = env {
        query.push(format!("env={env}"));
    }
    if let Some(who) = who {
        query.push(format!("who={who}"));
    }
    if let Some(since) = since {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        query.push(format!("since={}", now.saturating_sub(since).as_millis()));
    }
    let list: AuditList = api.get(&format!("/v1/audit?{}", query.join("&"))).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list.records)?);
        return Ok(());
    }
    println!(
        "{:<22} {:<20} {:<22} {:<6} {:<44} {:<8} SUMMARY",
        "WHEN", "WHO", "FROM", "STATUS", "ROUTE", "ENV"
    );
    for record in list.records {
        let summary = match &record.denied {
            Some(denied) => format!("{} (refused: {denied})", record.summary),
            None => record.summary.clone(),
        };
        println!(
            "{:<22} {:<20} {:<22} {:<6} {:<44} {:<8} {}",
            format_time(record.at),
            record.who,
            record.from,
            record.status,
            record.route,
            record.env.as_deref().unwrap_or("-"),
            summary.trim()
        );
    }
    Ok(())
}

/// `strata login URL --token-file F`: checks the token against the API and records it as
/// the CLI's context for that URL. For HTTPS it trusts the CA of `--ca-file`, or the one the
/// server presents, showing its fingerprint (and refusing one that differs from
/// `--ca-fingerprint`).
pub async fn login(
    url: &str,
    token_file: &Path,
    ca_file: Option<&Path>,
    ca_fingerprint: Option<&str>,
) -> CliResult {
    let token = std::fs::read_to_string(token_file).map_err(|error| {
        Failure::BadInput(anyhow!(
            "error: cannot read --token-file {}: {error}",
            token_file.display()
        ))
    })?;
    let token = token.trim().to_string();
    let base = crate::context::normalize_url(url);
    let mut trusted: Option<std::path::PathBuf> = None;
    let mut ca_pem: Option<String> = None;
    if base.starts_with("https://") {
        let pem = match ca_file {
            Some(file) => std::fs::read_to_string(file).map_err(|error| {
                Failure::BadInput(anyhow!(
                    "error: cannot read --ca-file {}: {error}",
                    file.display()
                ))
            })?,
            None => fetch_ca(&base).await?,
        };
        let fingerprint = strata_mesh::identity::ca_fingerprint(&pem)
            .map_err(|error| Failure::Failed(anyhow!("the CA is not usable: {error}")))?;
        if let Some(expected) = ca_fingerprint {
            if !expected.eq_ignore_ascii_case(&fingerprint) {
                return Err(Failure::Failed(anyhow!(
                    "the server's CA has fingerprint {fingerprint}, not {expected}: not logging in"
                )));
            }
        }
        eprintln!("trusting the cluster CA with SHA-256 fingerprint {fingerprint}");
        ca_pem = Some(pem);
    }
    let api = Api::with_token(
        vec![base.clone()],
        Some(&token),
        ca_pem.as_deref().map(str::as_bytes),
    );
    let me: strata_control::api::WhoAmI = api.get("/v1/whoami").await?;
    if let Some(pem) = &ca_pem {
        let path = crate::context::ca_file_for(&base)
            .ok_or_else(|| Failure::Failed(anyhow!("no HOME to keep the CA in")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        strata_control::credentials::write_private(&path, pem)?;
        trusted = Some(path);
    }
    let path = crate::context::record(&base, token_file, trusted.as_deref())
        .map_err(|error| Failure::Failed(anyhow!("cannot record the context: {error}")))?;
    println!(
        "logged in to {base} as {} ({}{}); context: {}",
        me.name,
        me.role.map(|r| format!("role {r}")).unwrap_or(me.kind),
        me.envs
            .map(|e| format!(", environments {}", e.join(",")))
            .unwrap_or_default(),
        path.display()
    );
    Ok(())
}

/// The CA an HTTPS server presents at `/v1/ca` (public; trusted only by its fingerprint).
async fn fetch_ca(base: &str) -> Result<String, Failure> {
    let probe = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| Failure::Failed(anyhow!("{error}")))?;
    let response = probe
        .get(format!("{base}/v1/ca"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|error| Failure::Failed(anyhow!("cannot fetch the CA from {base}: {error}")))?;
    response
        .text()
        .await
        .map_err(|error| Failure::Failed(anyhow!("cannot fetch the CA from {base}: {error}")))
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_time(ms: u64) -> String {
    strata_core::utc_time(ms)
}
