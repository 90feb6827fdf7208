//! `strata env`: list environments, set their call policy and their quota, protect them.

use clap::Subcommand;

use crate::api::Api;
use crate::{CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum EnvAction {
    /// List environments, their call policy and quota.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Set an environment's quota: the most its services may use together (an autoscaled
    /// service counts for its maximum). Checked at every deploy and scale change. Without a
    /// limit flag, removes the quota.
    Quota {
        env: String,
        /// Instances.
        #[arg(long)]
        instances: Option<u32>,
        /// Memory, e.g. 8Gi.
        #[arg(long, value_parser = crate::size_bytes)]
        memory: Option<u64>,
        /// CPU cores, e.g. 4 or 0.5.
        #[arg(long)]
        cpu: Option<f64>,
    },
    /// Set an environment's default for calls between its services: `allow` (any service may
    /// call any other) or `deny` (only what a service's `[mesh] allow_from` names).
    Policy {
        env: String,
        #[arg(value_parser = ["allow", "deny"])]
        policy: String,
    },
    /// Protect an environment: only `strata promote` changes it (a direct deploy needs an
    /// admin). Admins only.
    Protect { env: String },
    /// Open a protected environment to direct deploys again. Admins only.
    Unprotect { env: String },
}

pub async fn run(api: &Api, action: EnvAction) -> CliResult {
    match action {
        EnvAction::Ls { json } => {
            let envs: Vec<strata_core::Environment> = api.get("/v1/envs").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&envs)?);
                return Ok(());
            }
            println!(
                "{:<20} {:<8} {:<10} QUOTA",
                "ENVIRONMENT", "CALLS", "PROTECTED"
            );
            for env in envs {
                println!(
                    "{:<20} {:<8} {:<10} {}",
                    env.name,
                    env.default_policy,
                    if env.protected { "yes" } else { "no" },
                    show_quota(env.quota.as_ref())
                );
            }
            Ok(())
        }
        EnvAction::Quota {
            env,
            instances,
            memory,
            cpu,
        } => {
            if cpu.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
                return Err(Failure::BadInput(anyhow::anyhow!(
                    "error: --cpu must be a positive number of cores, e.g. 4 or 0.5"
                )));
            }
            let quota = strata_core::Quota {
                instances,
                memory_bytes: memory,
                cpu_millis: cpu.map(|c| (c * 1000.0).round() as u64),
            };
            let updated: strata_core::Environment =
                api.put(&format!("/v1/envs/{env}/quota"), &quota).await?;
            println!(
                "environment {}: quota {}",
                updated.name,
                show_quota(updated.quota.as_ref())
            );
            Ok(())
        }
        EnvAction::Policy { env, policy } => {
            let policy: strata_core::CallPolicy = policy
                .parse()
                .map_err(|e: String| Failure::BadInput(anyhow::anyhow!(e)))?;
            let updated: strata_core::Environment = api
                .put(
                    &format!("/v1/envs/{env}/policy"),
                    &strata_core::api::EnvPolicyRequest { policy },
                )
                .await?;
            println!(
                "environment {}: calls between services default to {}",
                updated.name, updated.default_policy
            );
            Ok(())
        }
        EnvAction::Protect { env } => protect(api, &env, true).await,
        EnvAction::Unprotect { env } => protect(api, &env, false).await,
    }
}

/// `strata env protect|unprotect ENV`.
async fn protect(api: &Api, env: &str, protected: bool) -> CliResult {
    let updated: strata_core::Environment = api
        .put(
            &format!("/v1/envs/{env}/protection"),
            &strata_core::api::ProtectionRequest { protected },
        )
        .await?;
    if updated.protected {
        println!(
            "environment {}: protected; only `strata promote` changes it (or an admin's deploy)",
            updated.name
        );
    } else {
        println!("environment {}: open to direct deploys", updated.name);
    }
    Ok(())
}

fn show_quota(quota: Option<&strata_core::Quota>) -> String {
    quota.map_or_else(|| "-".to_string(), ToString::to_string)
}
