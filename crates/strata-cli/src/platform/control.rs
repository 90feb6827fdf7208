//! A control plane as `strata dev` and `strata server` start it: its store (embedded or
//! etcd), identity (server id, join secret, credential key, CA, admin token), its API (HTTPS
//! with a certificate of the cluster CA, or plain HTTP on loopback for `strata dev`) and its
//! controllers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use strata_control::credentials::write_private;
use strata_control::{reconcile, ControlConfig, ControlPlane};
use strata_sched::liveness::LivenessThresholds;
use strata_store::etcd::EtcdTls;
use strata_store::{EtcdOptions, EtcdStore, RedbStore, Store, StoreError, Txn};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Failure;

/// The leader's lease on etcd: how soon another server takes over from a dead leader.
const SHARED_LEASE_TTL: Duration = Duration::from_secs(2);

/// The leader's lease on the embedded store, which one process holds (the file is locked):
/// no other server can take over, and a restarted server takes its own key back at once, so
/// a short lease buys nothing and a server starved of CPU for a second and a half (a
/// million instances placed on two cores) would lose its own leadership and plan
/// everything again.
const EMBEDDED_LEASE_TTL: Duration = Duration::from_secs(15);

/// An etcd store as the command line gives it: `--store URL` and its TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdArgs {
    /// `etcd://...` (plain text) or `etcds://...` (TLS).
    pub url: String,
    /// `--store-ca`: the CA that signed etcd's certificates (else the system's roots).
    pub ca: Option<PathBuf>,
    /// `--store-cert` and `--store-key`: the client certificate for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl EtcdArgs {
    /// `--store` and the `--store-ca`, `--store-cert` and `--store-key` flags: `None` (the
    /// embedded store) without `--store`. The TLS flags need `--store`, and the certificate
    /// and key go together.
    pub fn from_flags(
        url: Option<String>,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<EtcdArgs>, Failure> {
        let Some(url) = url else {
            if ca.is_some() || cert.is_some() || key.is_some() {
                return Err(Failure::BadInput(anyhow!(
                    "error: --store-ca, --store-cert and --store-key are for an etcd store over TLS\n  hint: add --store etcds://HOST:PORT[,HOST:PORT...]/NAMESPACE"
                )));
            }
            return Ok(None);
        };
        if cert.is_some() != key.is_some() {
            return Err(Failure::BadInput(anyhow!(
                "error: --store-cert and --store-key go together (mutual TLS needs the client certificate and its private key)"
            )));
        }
        Ok(Some(EtcdArgs { url, ca, cert, key }))
    }

    /// The etcd options: the URL, with the TLS files read.
    fn options(&self) -> Result<EtcdOptions, Failure> {
        let options = EtcdOptions::parse(&self.url)
            .map_err(|error| Failure::BadInput(anyhow!("error: --store: {error}")))?;
        if options.namespace.is_empty() {
            // Without one, the cluster's keys would sit at the root of etcd's keyspace, beside
            // whatever else uses it: a typo'd or forgotten namespace quietly makes a second,
            // empty cluster there.
            return Err(Failure::BadInput(anyhow!(
                "error: --store {} names no namespace, so Strata's keys would sit at the root of etcd's keyspace\n  hint: add one, the same for every server of the cluster: {}/strata",
                options.display_url(),
                options.display_url().trim_end_matches('/')
            )));
        }
        let files = [
            ("--store-ca", &self.ca),
            ("--store-cert", &self.cert),
            ("--store-key", &self.key),
        ];
        let given: Vec<&str> = files
            .iter()
            .filter(|(_, path)| path.is_some())
            .map(|(flag, _)| *flag)
            .collect();
        if given.is_empty() {
            return Ok(options);
        }
        if !options.uses_tls() {
            return Err(Failure::BadInput(anyhow!(
                "error: {} given, but --store {} is plain text (etcd://)\n  hint: use etcds://... to connect to etcd over TLS",
                given.join(", "),
                options.display_url()
            )));
        }
        let tls = EtcdTls::from_files(
            self.ca.as_deref(),
            self.cert.as_deref(),
            self.key.as_deref(),
        )
        .map_err(|error| match error {
            StoreError::Open { path, reason } => {
                let flag = files
                    .iter()
                    .find(|(_, file)| {
                        file.as_ref()
                            .is_some_and(|file| file.display().to_string() == path)
                    })
                    .map_or("--store-cert/--store-key", |(flag, _)| *flag);
                Failure::BadInput(anyhow!("error: {flag} {path}: {reason}"))
            }
            other => Failure::BadInput(anyhow!("error: {other}")),
        })?;
        options
            .with_tls(tls)
            .map_err(|error| Failure::BadInput(anyhow!("error: --store: {error}")))
    }
}

/// Where a control plane keeps its state: the embedded redb file in its data directory
/// (`None`), or an etcd cluster (`etcd://HOST:PORT[,HOST:PORT...]/NAMESPACE`, `etcds://`
/// for TLS, with the CA and client certificate files of `store`).
pub async fn open_store(
    data_dir: &Path,
    store: Option<&EtcdArgs>,
) -> Result<Arc<dyn Store>, Failure> {
    match store {
        None => {
            let path = data_dir.join("store.redb");
            let store = RedbStore::open(&path)
                .await
                .with_context(|| format!("cannot open the state store {}", path.display()))?;
            Ok(Arc::new(store))
        }
        Some(etcd) => {
            let options = etcd.options()?;
            let shown = options.display_url();
            let store = EtcdStore::connect(options)
                .await
                .with_context(|| format!("cannot connect to the state store at {shown}"))?;
            Ok(Arc::new(store))
        }
    }
}

/// This server's stable identity, made on first start and kept in `DATA_DIR/server-id`.
pub fn server_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("server-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = format!("server-{:08x}", rand::random::<u32>());
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// The cluster's join secret: made once (32 random bytes, hex) and kept in the store, so
/// every server sharing the store has the same one.
pub async fn join_secret(store: &Arc<dyn Store>) -> anyhow::Result<String> {
    const KEY: &str = strata_core::keys::JOIN_TOKEN;
    if store.get(KEY).await?.is_none() {
        let bytes: [u8; 32] = rand::random();
        let fresh = hex::encode(bytes);
        // Only one server's token wins if several start at once.
        store
            .txn(Txn::new().when(KEY, 0).put(KEY, fresh.into_bytes()))
            .await?;
    }
    let stored = store
        .get(KEY)
        .await?
        .ok_or_else(|| anyhow!("the join token vanished from the store"))?;
    String::from_utf8(stored.value).context("the stored join token is not text")
}

/// How a control plane serves its API.
#[derive(Debug, Clone)]
pub enum ApiTls {
    /// Plain HTTP: `strata dev`, on loopback.
    Plain,
    /// HTTPS with a certificate of the cluster CA naming the API's address, `localhost`,
    /// loopback and these extra names (`--api-san`: DNS names or IP addresses).
    ClusterCa { extra_names: Vec<String> },
    /// HTTPS with the operator's certificate (and chain) and key, which clients verify with
    /// the operator's CA (`--tls-cert`, `--tls-key`, `--tls-ca`).
    Files {
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
    },
}

/// Reads an operator-given TLS file, or says which flag names a file that cannot be read.
fn read_tls_file(flag: &str, path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|error| Failure::BadInput(anyhow!("error: {flag} {}: {error}", path.display())))
}

/// The names an API certificate carries: DNS names and IP addresses.
fn api_certificate_names(
    addr: std::net::SocketAddr,
    extra: &[String],
) -> (Vec<String>, Vec<std::net::IpAddr>) {
    let mut dns = vec!["localhost".to_string()];
    let mut ips: Vec<std::net::IpAddr> = vec![
        std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::Ipv6Addr::LOCALHOST.into(),
    ];
    if !addr.ip().is_unspecified() {
        ips.push(addr.ip());
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_lowercase();
        if !host.is_empty() {
            dns.push(host);
        }
    }
    for name in extra {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(name.clone()),
        }
    }
    dns.dedup();
    ips.dedup();
    (dns, ips)
}

/// A started control plane.
pub struct ControlPlaneTasks {
    pub api_url: String,
    /// The cluster's join token (for a node's first credential only).
    pub token: String,
    pub api: JoinHandle<std::io::Result<()>>,
    /// The control plane itself (to resign the lead when the server stops).
    pub plane: Arc<strata_control::ControlPlane>,
}

/// How a control plane is started.
/// The control plane's flags that `strata dev` and `strata server` share.
#[derive(Debug, Clone, clap::Args)]
pub struct PlaneFlags {
    /// How long an autoscaled service's count holds before it may go down (the traffic
    /// of this window decides how far).
    #[arg(long, default_value = "30s", value_parser = crate::humantime_duration)]
    pub scale_down_window: Duration,
    /// How long a node stays listed once it is down, silent and holds nothing, before it is
    /// forgotten (with an event); 0 keeps it until `strata node rm`.
    #[arg(long, default_value = "24h", value_parser = crate::humantime_duration)]
    pub forget_down_after: Duration,
    /// The largest artifact the API takes (refused with 413 before it is read whole).
    #[arg(long, default_value = "1Gi", value_parser = crate::size_bytes)]
    pub max_artifact_size: u64,
    /// How long audit records are kept.
    #[arg(long, default_value = "90d", value_parser = crate::humantime_duration)]
    pub audit_retention: Duration,
    /// How long events are kept (`strata events`, what status explains with).
    #[arg(long, default_value = "1d", value_parser = crate::humantime_duration)]
    pub event_retention: Duration,
    /// The file of key-encryption keys services' secrets are sealed under, outside the
    /// store (made 0600 at the first start; default DATA_DIR/secrets.key). Keep a copy apart
    /// from the store and its backups: without it no secret opens.
    #[arg(long, value_name = "FILE")]
    pub secrets_key_file: Option<PathBuf>,
}

pub struct ControlSettings<'a> {
    pub data_dir: &'a Path,
    /// `None`: the embedded store in `data_dir`.
    pub store: Option<&'a EtcdArgs>,
    pub liveness: LivenessThresholds,
    pub ingress_port: Option<u16>,
    pub node_cert_ttl: Duration,
    pub plane: PlaneFlags,
    /// Answer only requests addressed to the API's loopback address (`strata dev`).
    pub local_only: bool,
    pub tls: ApiTls,
}

/// Starts a control plane. Its data directory is made private (0700); it keeps an admin
/// token in `DATA_DIR/admin-token` and records it as the CLI's context for its API URL, so
/// the CLI on this machine works with no flag.
pub async fn start_control_plane(
    settings: ControlSettings<'_>,
    api_listener: TcpListener,
) -> Result<ControlPlaneTasks, Failure> {
    let data_dir = settings.data_dir;
    make_private_dir(data_dir)?;
    let api_addr = api_listener.local_addr()?;
    let scheme = match settings.tls {
        ApiTls::Plain => "http",
        ApiTls::ClusterCa { .. } | ApiTls::Files { .. } => "https",
    };
    // The CA clients verify the API with: the operator's, when it gives its own certificate.
    let operator_ca = match &settings.tls {
        ApiTls::Files { ca, .. } => Some(read_tls_file("--tls-ca", ca)?),
        _ => None,
    };
    let api_url = format!("{scheme}://{api_addr}");
    let store = open_store(data_dir, settings.store).await?;
    if settings.store.is_none() {
        make_private_file(&data_dir.join("store.redb"))?;
    }
    let secret = join_secret(&store).await?;
    let credential_key = strata_control::credentials::credential_key(&store)
        .await
        .context("cannot read or make the cluster's credential key")?;
    let server_id = server_id(data_dir)?;
    let plane = ControlPlane::new(
        store,
        ControlConfig {
            data_dir: data_dir.to_path_buf(),
            liveness: settings.liveness,
            ingress_port: settings.ingress_port,
            join_token: secret.clone(),
            credential_key,
            max_artifact_size: settings.plane.max_artifact_size,
            audit_retention: settings.plane.audit_retention,
            log_retention: strata_control::plane::DEFAULT_LOG_RETENTION,
            event_retention: settings.plane.event_retention,
            node_certificates_required: !matches!(settings.tls, ApiTls::Plain),
            api_ca_pem: operator_ca.clone(),
            liveness_tick: Duration::from_millis(50),
            server_id: server_id.clone(),
            api_url: api_url.clone(),
            lease_ttl: if settings.store.is_none() {
                EMBEDDED_LEASE_TTL
            } else {
                SHARED_LEASE_TTL
            },
            node_cert_ttl: settings.node_cert_ttl,
            scale_down_window: settings.plane.scale_down_window,
            forget_down_after_ms: settings.plane.forget_down_after.as_millis() as u64,
            secrets_key_file: settings
                .plane
                .secrets_key_file
                .clone()
                .unwrap_or_else(|| data_dir.join("secrets.key")),
        },
    )?;
    let ca = plane
        .identity()
        .cluster_ca()
        .await
        .context("cannot read or make the cluster CA")?;
    // What clients of the API trust (the context's, a joining node's): the API's CA.
    let api_ca_pem = operator_ca.clone().unwrap_or_else(|| ca.cert_pem.clone());
    let ca_file = data_dir.join("ca.pem");
    write_private(&ca_file, &api_ca_pem)
        .with_context(|| format!("cannot write {}", ca_file.display()))?;
    let tls = match &settings.tls {
        ApiTls::Plain => None,
        ApiTls::ClusterCa { extra_names } => {
            let (dns, ips) = api_certificate_names(api_addr, extra_names);
            let issued = ca
                .issue_api_server(&dns, &ips, Duration::from_secs(365 * 86_400))
                .context("cannot make the API's certificate")?;
            // Nodes may present their certificates (of the same CA): that is how they act.
            let config = strata_mesh::identity::api_server_config(
                &issued.cert_pem,
                &issued.key_pem,
                Some(&ca.cert_pem),
            )
            .context("cannot use the API's certificate")?;
            Some(Arc::new(config))
        }
        ApiTls::Files { cert, key, .. } => {
            let cert = read_tls_file("--tls-cert", cert)?;
            let key = read_tls_file("--tls-key", key)?;
            // Nodes still present certificates of the cluster CA.
            let config = strata_mesh::identity::api_server_config(&cert, &key, Some(&ca.cert_pem))
                .map_err(|error| {
                    Failure::BadInput(anyhow!(
                        "error: --tls-cert/--tls-key cannot serve HTTPS: {error}"
                    ))
                })?;
            Some(Arc::new(config))
        }
    };
    if tls.is_some() {
        // How this server proves to nodes' own APIs that it is the control plane.
        let client = ca
            .issue_server_client(&server_id, Duration::from_secs(365 * 86_400))
            .context("cannot make this server's client certificate")?;
        plane
            .identity()
            .use_client_certificate(&client.cert_pem, &client.key_pem)
            .await
            .context("cannot use this server's client certificate")?;
    }
    // The join token carries the CA's fingerprint when the API is HTTPS, so a joining node
    // checks the server before it sends the secret.
    let token = strata_core::auth::JoinToken {
        ca_fingerprint: match tls {
            Some(_) => Some(strata_mesh::identity::ca_fingerprint(&api_ca_pem).map_err(
                |error| Failure::BadInput(anyhow!("error: the API's CA is not usable: {error}")),
            )?),
            None => None,
        },
        secret,
    }
    .to_string();
    let token_file = data_dir.join("join-token");
    write_private(&token_file, &token)
        .with_context(|| format!("cannot write {}", token_file.display()))?;
    plane
        .credentials()
        .ensure_admin_token(data_dir, &server_id)
        .await
        .context("cannot keep the admin token")?;
    let admin_token = data_dir.join(strata_control::credentials::ADMIN_TOKEN_FILE);
    let trusted = tls.is_some().then_some(ca_file.as_path());
    if let Err(error) = crate::context::record(&api_url, &admin_token, trusted) {
        tracing::warn!(%error, "cannot record the CLI's context; use STRATA_TOKEN");
    }
    match plane.strip_config_from_releases().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(releases = n, "kept configuration apart from old releases"),
        Err(error) => tracing::warn!(%error, "cannot rewrite old releases without their config"),
    }
    plane.start_election();
    tokio::spawn(strata_control::replicate::run(plane.clone()));
    tokio::spawn(strata_control::secrets::follow_keys(plane.clone()));
    tokio::spawn(strata_control::audit::run_retention(plane.clone()));
    tokio::spawn(strata_control::logs::run_retention(plane.clone()));
    tokio::spawn(strata_control::event_log::run_retention(plane.clone()));
    tokio::spawn(strata_control::plane::archives::run_retention(
        plane.clone(),
    ));
    let mut router = strata_control::api::router(plane.clone());
    if settings.local_only {
        let port = api_addr.port();
        let guarded = plane.clone();
        router = router.layer(axum::middleware::from_fn(move |request, next| {
            strata_control::guard::local_only(guarded.clone(), port, request, next)
        }));
    }
    let api = match tls {
        Some(tls) => tokio::spawn(strata_mesh::serve::serve_tls(api_listener, tls, router)),
        None => tokio::spawn(async move {
            axum::serve(
                api_listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        }),
    };
    // Nodes' heartbeat datagrams come to the API's address over UDP; without it they beat
    // over HTTP.
    match tokio::net::UdpSocket::bind(api_addr).await {
        Ok(socket) => {
            tokio::spawn(strata_control::beats::serve(plane.clone(), socket));
        }
        Err(error) => tracing::warn!(
            %error,
            "cannot take heartbeat datagrams on UDP {api_addr}; nodes will beat over HTTP"
        ),
    }
    tokio::spawn(reconcile::run(plane.clone()));
    tokio::spawn(reconcile::run_liveness(plane.clone()));
    tokio::spawn(strata_control::autoscaler::run(plane.clone()));
    tokio::spawn(strata_control::rollouts::run(plane.clone()));
    Ok(ControlPlaneTasks {
        api_url,
        token,
        api,
        plane,
    })
}

/// Makes `dir` (and creates it) readable by its owner only.
pub fn make_private_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .with_context(|| format!("cannot make {} private", dir.display()))?;
    Ok(())
}

fn make_private_file(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(())
}
