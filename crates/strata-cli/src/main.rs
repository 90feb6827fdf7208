//! `strata`: the single binary. The CLI (deploy, status, logs, delete) talks to the control
//! plane's HTTP API; `strata dev` runs a whole one-machine platform in one process.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad input (a spec error, a bad flag).

mod access_cmd;
mod api;
mod archive_cmd;
mod cluster;
mod commands;
mod context;
mod deploy_cmd;
mod dev;
mod env_cmd;
mod image_cmd;
mod install_cmd;
mod instance_cmd;
mod node_cmd;
mod platform;
mod release_cmd;
mod rollout_cmd;
mod secret_cmd;
mod store_cmd;

use store_cmd::StoreTlsArgs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use store_cmd::StoreAction;

/// Where the CLI finds the control plane.
const DEFAULT_ADDR: &str = "http://127.0.0.1:7700";

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Deliver services onto a fleet of small nodes, push-button."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How `server`, `agent` and `dev` write their log: text (coloured only on a terminal) or
    /// json (one object a line).
    #[arg(long, global = true, value_enum, env = "STRATA_LOG_FORMAT", default_value_t = platform::LogFormat::Text)]
    log_format: platform::LogFormat,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ApiArgs {
    /// The control plane's API.
    #[arg(long, env = "STRATA_ADDR", default_value = DEFAULT_ADDR, global = true)]
    pub(crate) addr: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a one-machine platform: control plane, node agent and ingress in one process,
    /// state in an embedded store.
    Dev {
        /// Where state, artifacts and instance logs live.
        #[arg(long, default_value = ".strata")]
        data_dir: PathBuf,
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:7700")]
        api_addr: String,
        /// Where the ingress listens (it serves http://SERVICE.ENV.localhost/).
        #[arg(long, default_value = "127.0.0.1:8080")]
        ingress_addr: String,
        /// Where the ingress serves HTTPS (HTTP/2 or HTTP/1.1), with a certificate for each
        /// `*.localhost` name made by a CA of this machine's (DATA_DIR/ingress-ca.crt).
        #[arg(long, default_value = "127.0.0.1:8443")]
        https_addr: String,
        /// Run exec instances sandboxed, as a cluster's nodes do: each as its own user, in its
        /// own cgroup, mount and network namespaces, the host read-only (needs root).
        #[arg(long, value_enum, default_value = "on")]
        exec_sandbox: platform::ExecSandbox,
        #[command(flatten)]
        plane: platform::PlaneFlags,
    },
    /// Run the control plane alone (nodes join it with `strata agent`). Prints the join token.
    Server {
        #[command(subcommand)]
        action: Option<ServerAction>,
        /// Where state, artifacts and the join token live.
        #[arg(long, default_value = ".strata-server", global = true)]
        data_dir: PathBuf,
        /// Where the API listens (agents on other hosts must reach it). It serves HTTPS with
        /// a certificate of the cluster CA.
        #[arg(long, default_value = "127.0.0.1:7700")]
        api_addr: String,
        /// Another name the API's certificate carries (a DNS name or IP other hosts reach it
        /// by; repeat for several). Its listen address, localhost and loopback always are.
        #[arg(long = "api-san", value_name = "NAME")]
        api_sans: Vec<String>,
        /// Serve the API with this certificate (PEM, with its chain) instead of one of the
        /// cluster CA. Needs --tls-key and --tls-ca.
        #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM).
        #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_ca"])]
        tls_key: Option<PathBuf>,
        /// The CA that clients verify --tls-cert with (PEM); the join token carries its
        /// fingerprint.
        #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
        tls_ca: Option<PathBuf>,
        /// Keep state on etcd, shared by every server given the same URL:
        /// etcd://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/NAMESPACE (required), or etcds://... for TLS
        /// (default: an embedded store in --data-dir).
        #[arg(long)]
        store: Option<String>,
        #[command(flatten)]
        store_tls: StoreTlsArgs,
        /// Silence after which a node is suspect (no new work).
        #[arg(long, default_value = "300ms", value_parser = humantime_duration)]
        suspect_after: std::time::Duration,
        /// Silence after which a node is down (its instances are replaced elsewhere).
        #[arg(long, default_value = "600ms", value_parser = humantime_duration)]
        down_after: std::time::Duration,
        /// How long nodes' certificates (mutual TLS between their proxies) are valid; nodes
        /// renew them at two thirds of it.
        #[arg(long, default_value = "24h", value_parser = humantime_duration)]
        node_cert_ttl: std::time::Duration,
        #[command(flatten)]
        plane: platform::PlaneFlags,
    },
    /// Run a node: join a control plane and run the instances it assigns, with an ingress.
    Agent(cluster::AgentArgs),
    /// Install `strata server` or `strata agent` as a systemd service with the flags after
    /// `--` (checked now), and make its data directory.
    Install(install_cmd::InstallArgs),
    /// Back up and restore the whole state (also: move a one-machine install onto etcd).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Container images: build (a directory, or --jeos BINARY), import, ls, inspect, rm,
    /// save (the file a container service deploys), gc.
    Image {
        #[command(subcommand)]
        action: image_cmd::ImageAction,
    },
    /// (Internal) The process a node runs for each container: creates it with youki's
    /// libcontainer and stands for it until it ends.
    #[command(hide = true)]
    ContainerShim {
        /// The runtime's state directory.
        #[arg(long)]
        root: PathBuf,
        /// The OCI bundle.
        #[arg(long)]
        bundle: PathBuf,
        /// Forward the node's address for the instance to the container's: LISTEN=TARGET.
        #[arg(long)]
        forward: Option<String>,
        /// The network namespace to create the container in (a path).
        #[arg(long)]
        netns: Option<PathBuf>,
        /// The container's id.
        id: String,
    },
    /// Environments: list them; set who may call whom by default.
    Env {
        #[command(subcommand)]
        action: env_cmd::EnvAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List, drain, undrain, remove and decommission nodes.
    Node {
        #[command(subcommand)]
        action: node_cmd::NodeAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deploy the services of a spec file: upload artifacts, create releases, roll them out
    /// and wait until every instance is healthy.
    Deploy {
        /// The spec file (TOML; see docs/spec.md).
        file: PathBuf,
        /// The environment to deploy to.
        #[arg(long, default_value = "dev")]
        env: String,
        /// Give up waiting for the rollout after this long (e.g. 90s, 5m).
        #[arg(long, default_value = "2m", value_parser = humantime_duration)]
        timeout: std::time::Duration,
        /// Return once the releases are created, without waiting for the rollout.
        #[arg(long)]
        detach: bool,
        /// Say what the deploy would change, service by service, and change nothing (as
        /// `strata diff`).
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// What deploying a spec file would change, service by service (nothing is changed).
    Diff {
        file: PathBuf,
        #[arg(long, default_value = "dev")]
        env: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show services, their releases and instances.
    Status {
        /// Only this service.
        service: Option<String>,
        /// Only this environment (default: all; `dev` when a service is named).
        #[arg(long)]
        env: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print the logs of every instance of a service.
    Logs {
        service: String,
        #[arg(long, default_value = "dev")]
        env: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end of each instance's log.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        /// Also the last lines of instances that are gone (replaced, or on a node that
        /// died), as the control plane kept them.
        #[arg(long, conflicts_with = "follow")]
        previous: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Change a service's scale by hand: a count, and/or autoscaling bounds (an event; the
    /// next `strata deploy` of its spec sets the spec's again).
    Scale {
        service: String,
        /// Instances to run now (within --min/--max when it is autoscaled).
        replicas: Option<u32>,
        /// Autoscale no lower than this (with --max, turns autoscaling on).
        #[arg(long)]
        min: Option<u32>,
        /// Autoscale no higher than this.
        #[arg(long)]
        max: Option<u32>,
        #[arg(long, default_value = "dev")]
        env: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a service; its instances are stopped.
    Delete {
        service: String,
        #[arg(long, default_value = "dev")]
        env: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A service's releases, newest first: who made each when, its artifact, configuration
    /// version and spec, and whether it runs, served or was rolled back from.
    Releases(release_cmd::ReleasesArgs),
    /// Roll a service back to one of its releases as it was (default: the newest that served
    /// in full before the one running), followed until it serves.
    Rollback(release_cmd::RollbackArgs),
    /// Promote a service's release from one environment into another: the artifact and spec
    /// as tested there, the target's configuration, secrets and scale.
    Promote(release_cmd::PromoteArgs),
    /// One instance taken out of service for investigation (quarantine).
    Instance {
        #[command(subcommand)]
        action: instance_cmd::InstanceAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Forensic archives of nodes and instances: ls, get, and verify one offline.
    Archive {
        #[command(subcommand)]
        action: archive_cmd::ArchiveCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A service's canary or blue-green rollout: status, pause, resume, abort.
    Rollout {
        #[command(subcommand)]
        action: rollout_cmd::RolloutCommand,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Services' secrets: set (the value from stdin), ls (never values), rm, rotate-key.
    Secret {
        #[command(subcommand)]
        action: secret_cmd::SecretAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// API tokens for people and CI: create (printed once), ls, revoke.
    Token {
        #[command(subcommand)]
        action: access_cmd::TokenAction,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The audit log: every change and every refused call, who made it and from where.
    Audit {
        /// Only calls about this environment.
        #[arg(long)]
        env: Option<String>,
        /// Only calls by this caller (a token's name, node:NAME).
        #[arg(long)]
        who: Option<String>,
        /// Only the last this long (e.g. 1h, 7d).
        #[arg(long, value_parser = humantime_duration)]
        since: Option<std::time::Duration>,
        /// The newest this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Use a token for an API from now on (records it as the CLI's context for that URL).
    Login {
        /// The API, e.g. https://10.0.0.1:7700.
        url: String,
        /// A file holding the token (`strata token create` printed it).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// For HTTPS: the cluster CA's certificate (the server's DATA_DIR/ca.pem). Without
        /// it, the CA is fetched from the server and its fingerprint shown (and checked
        /// against --ca-fingerprint when given).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// The CA's SHA-256 fingerprint to insist on (the middle part of a join token).
        #[arg(long, value_name = "HEX")]
        ca_fingerprint: Option<String>,
    },
    /// Show the event log.
    Events {
        /// Only events of this service.
        service: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of lines (one object a line with --follow).
        #[arg(long)]
        json: bool,
        /// Keep printing new events as they are recorded.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ServerAction {
    /// Print the join token agents need (from --data-dir).
    Token,
}

pub(crate) fn size_bytes(text: &str) -> Result<u64, String> {
    strata_core::spec::parse_size(text)
}

pub(crate) fn humantime_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 90s or 5m"))
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// The user's input is wrong (exit 2).
    BadInput(anyhow::Error),
    /// The operation failed (exit 1).
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Failed(error.into())
    }
}

pub type CliResult = Result<(), Failure>;

/// The binary's allocator: mimalloc, whose per-thread free lists suit a server that makes and
/// drops many small records per request (with glibc's malloc, allocation took about a sixth
/// of the server's CPU placing 100,000 instances; docs/benchmarks.md, "Fleet").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    // The shim creates processes with a raw clone3: it must stay single-threaded, so it runs
    // before (and instead of) the tokio runtime.
    if let Command::ContainerShim {
        root,
        bundle,
        forward,
        netns,
        id,
    } = &cli.command
    {
        let code =
            strata_container::shim::start(root, bundle, id, netns.as_deref(), forward.as_deref());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    platform::set_log_format(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(error)) => {
            eprintln!("{}", format_error(&error));
            ExitCode::from(2)
        }
        Err(Failure::Failed(error)) => {
            eprintln!("error: {}", format_error(&error));
            ExitCode::from(1)
        }
    }
}

fn format_error(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        text.push_str(&format!(": {cause}"));
    }
    text
}

async fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Dev {
            data_dir,
            api_addr,
            ingress_addr,
            https_addr,
            exec_sandbox,
            plane,
        } => {
            dev::run(dev::DevArgs {
                data_dir,
                api_addr,
                ingress_addr,
                https_addr,
                exec_sandbox,
                plane,
            })
            .await
        }
        Command::Server {
            action: Some(ServerAction::Token),
            data_dir,
            ..
        } => cluster::server_token(&data_dir),
        Command::Server {
            action: None,
            data_dir,
            api_addr,
            store,
            store_tls,
            suspect_after,
            down_after,
            node_cert_ttl,
            plane,
            api_sans,
            tls_cert,
            tls_key,
            tls_ca,
        } => {
            cluster::server(cluster::ServerArgs {
                api_sans,
                tls_files: match (tls_cert, tls_key, tls_ca) {
                    (Some(cert), Some(key), Some(ca)) => Some((cert, key, ca)),
                    _ => None,
                },
                data_dir,
                store: store_tls.with_url(store)?,
                api_addr,
                suspect_after,
                down_after,
                node_cert_ttl,
                plane,
            })
            .await
        }
        Command::Agent(args) => cluster::agent(args).await,
        Command::Install(args) => install_cmd::run(args),
        Command::Store {
            action:
                StoreAction::Export {
                    data_dir,
                    store,
                    store_tls,
                    output,
                    include_secrets,
                    passphrase,
                    api,
                },
        } => {
            let passphrase = include_secrets
                .then(|| store_cmd::passphrase(passphrase.passphrase_file.as_deref(), true))
                .transpose()?
                .flatten();
            let source = match (data_dir, store) {
                (None, None) => store_cmd::Source::Api(api::Api::new(&api.addr)),
                (data_dir, store) => store_cmd::Source::Store {
                    data_dir: data_dir.unwrap_or_else(|| PathBuf::from(".strata")),
                    store: store_tls.with_url(store)?,
                },
            };
            store_cmd::export(source, output.as_deref(), passphrase.as_deref()).await
        }
        Command::Store {
            action: StoreAction::Verify { file, passphrase },
        } => {
            let passphrase = store_cmd::passphrase(passphrase.passphrase_file.as_deref(), false)?;
            store_cmd::verify(&file, passphrase.as_deref())
        }
        Command::Store {
            action:
                StoreAction::Import {
                    file,
                    state,
                    force,
                    without_secrets,
                    passphrase,
                },
        } => {
            let passphrase = store_cmd::passphrase(passphrase.passphrase_file.as_deref(), false)?;
            let store = state.store_tls.with_url(state.store)?;
            store_cmd::import(
                &file,
                &state.data_dir,
                store.as_ref(),
                store_cmd::ImportOptions {
                    force,
                    without_secrets,
                    passphrase,
                },
            )
            .await
        }
        Command::Image { action } => image_cmd::run(action),
        Command::ContainerShim { .. } => unreachable!("the shim runs before the runtime starts"),
        Command::Env { action, api } => env_cmd::run(&api::Api::new(&api.addr), action).await,
        Command::Node { action, api } => node_cmd::run(&api::Api::new(&api.addr), action).await,
        Command::Deploy {
            file,
            env,
            timeout,
            detach,
            dry_run: false,
            api,
        } => deploy_cmd::deploy(&api::Api::new(&api.addr), &file, &env, timeout, detach).await,
        Command::Deploy { file, env, api, .. } | Command::Diff { file, env, api } => {
            deploy_cmd::preview(&api::Api::new(&api.addr), &file, &env).await
        }
        Command::Status {
            service,
            env,
            json,
            api,
        } => {
            commands::status(
                &api::Api::new(&api.addr),
                service.as_deref(),
                env.as_deref(),
                json,
            )
            .await
        }
        Command::Logs {
            service,
            env,
            follow,
            tail,
            previous,
            api,
        } => {
            let api = api::Api::new(&api.addr);
            commands::logs(&api, &service, &env, follow, tail, previous).await
        }
        Command::Scale {
            service,
            replicas,
            min,
            max,
            env,
            api,
        } => {
            let request = strata_core::api::ScaleRequest { replicas, min, max };
            commands::scale(&api::Api::new(&api.addr), &service, &env, request).await
        }
        Command::Delete { service, env, api } => {
            commands::delete(&api::Api::new(&api.addr), &service, &env).await
        }
        Command::Releases(args) => release_cmd::releases(args).await,
        Command::Rollback(args) => release_cmd::rollback(args).await,
        Command::Promote(args) => release_cmd::promote(args).await,
        Command::Events {
            service,
            limit,
            json,
            follow,
            api,
        } => {
            commands::events(
                &api::Api::new(&api.addr),
                service.as_deref(),
                limit,
                json,
                follow,
            )
            .await
        }
        Command::Secret { action, api } => secret_cmd::run(&api::Api::new(&api.addr), action).await,
        Command::Instance { action, api } => {
            instance_cmd::run(&api::Api::new(&api.addr), action).await
        }
        Command::Archive { action, api } => {
            archive_cmd::run(&api::Api::new(&api.addr), action).await
        }
        Command::Rollout { action, api } => {
            rollout_cmd::run(&api::Api::new(&api.addr), action).await
        }
        Command::Token { action, api } => {
            access_cmd::token(&api::Api::new(&api.addr), action).await
        }
        Command::Audit {
            env,
            who,
            since,
            limit,
            json,
            api,
        } => {
            access_cmd::audit(
                &api::Api::new(&api.addr),
                env.as_deref(),
                who.as_deref(),
                since,
                limit,
                json,
            )
            .await
        }
        Command::Login {
            url,
            token_file,
            ca_file,
            ca_fingerprint,
        } => {
            access_cmd::login(
                &url,
                &token_file,
                ca_file.as_deref(),
                ca_fingerprint.as_deref(),
            )
            .await
        }
    }
}
