//! A node's trust in the control plane, and its identity there: the CA an HTTPS control
//! plane must present (checked against the join token's fingerprint), the node's credential
//! (got once with the join token), its certificate (got with the credential, renewed, and
//! presented from then on), and the TLS of the node's own API.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use strata_agent::client::ControlClient;
use strata_agent::AgentConfig;
use strata_control::credentials::write_private;
use strata_mesh::identity::{NodeIdentity, TlsConfigs};

use crate::Failure;

/// A client of the control plane as node `config` reaches it (its CA, if HTTPS).
pub(super) fn control_client(config: &AgentConfig, token: Option<&str>) -> ControlClient {
    ControlClient::trusting(&config.control_url, token, config.control_ca.as_deref())
}

/// The cluster CA an HTTPS control plane at `join` (one URL or several) must present: the one
/// kept in `AGENT_DIR/ca.pem`, or else fetched from the server and accepted only if its
/// SHA-256 is the fingerprint the join token carries. Nothing secret is sent before that
/// check. `None` for a plain-HTTP control plane (`strata dev`).
pub async fn control_plane_ca(
    join: &str,
    token: Option<&strata_core::auth::JoinToken>,
    data_dir: &Path,
) -> Result<Option<String>, Failure> {
    if !join
        .split(',')
        .any(|url| url.trim().starts_with("https://"))
    {
        return Ok(None);
    }
    let kept = data_dir.join("ca.pem");
    if let Ok(pem) = std::fs::read_to_string(&kept) {
        return Ok(Some(pem));
    }
    let Some(expected) = token.and_then(|t| t.ca_fingerprint.clone()) else {
        return Err(Failure::BadInput(anyhow!(
            "error: the join token carries no CA fingerprint, so the server at {join} cannot be verified\n  hint: use the token `strata server token` prints (sj1.FINGERPRINT.SECRET)"
        )));
    };
    tracing::info!(
        "joining {join}: fetching the cluster CA, to check it against the join token's fingerprint"
    );
    // The CA is public; its authenticity is the fingerprint's to prove, not the connection's.
    let probe = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| Failure::Failed(anyhow!("{error}")))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut attempts, mut told) = (0u32, String::new());
    loop {
        let mut last = String::new();
        for url in join.split(',').map(|u| u.trim().trim_end_matches('/')) {
            let fetched = async {
                probe
                    .get(format!("{url}/v1/ca"))
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await
            }
            .await;
            match fetched {
                Ok(pem) => {
                    let got = strata_mesh::identity::ca_fingerprint(&pem).unwrap_or_default();
                    if got != expected {
                        return Err(Failure::Failed(anyhow!(
                            "the server at {url} is not the cluster this join token is for: its CA has fingerprint {got}, the token expects {expected}\n  hint: check --join, and copy the token `strata server token` prints on that cluster"
                        )));
                    }
                    write_private(&kept, &pem)?;
                    return Ok(Some(pem));
                }
                Err(error) => last = format!("{url}: {}", strata_client::causes(&error)),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::Failed(anyhow!(
                "cannot fetch the cluster CA: {last}"
            )));
        }
        // Said at the first failure and every 5 s after (or when the cause changes).
        if attempts.is_multiple_of(10) || last != told {
            tracing::warn!(
                "joining: cannot fetch the cluster CA from {last}; asking again every 0.5 s for up to a minute"
            );
            told = last.clone();
        }
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// This node's credential: the one kept in `AGENT_DIR/node-credential` while the control
/// plane accepts it, otherwise asked for with the join token (once; kept, mode 0600).
/// Retried while the control plane does not answer, for a minute.
pub(super) async fn node_credential(config: &AgentConfig) -> Result<String, Failure> {
    let path = config.data_dir.join("node-credential");
    std::fs::create_dir_all(&config.data_dir)?;
    if let Ok(kept) = std::fs::read_to_string(&path) {
        let kept = kept.trim().to_string();
        let client = control_client(config, Some(&kept));
        if client.whoami().await.is_ok() {
            return Ok(kept);
        }
    }
    let client = control_client(config, config.token.as_deref());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut attempts = 0u32;
    loop {
        match client.credential(&config.name).await {
            Ok(credential) => {
                strata_control::credentials::write_private(&path, &credential)?;
                return Ok(credential);
            }
            Err(strata_agent::client::ClientError::Refused { status: 401, .. }) => {
                return Err(Failure::Failed(anyhow!(
                    "node {} cannot join {}: the join token is not this cluster's\n  hint: give the agent the token `strata server token` prints (--token-file FILE or STRATA_JOIN_TOKEN)",
                    config.name,
                    config.control_url
                )));
            }
            // The name is a live node's elsewhere: another --name, or wait until it is down.
            Err(strata_agent::client::ClientError::Refused {
                status: 409,
                message,
                ..
            }) => {
                return Err(Failure::Failed(anyhow!(
                    "node {} cannot join {}: {message}",
                    config.name,
                    config.control_url
                )));
            }
            Err(error) if error.is_permanent() || tokio::time::Instant::now() >= deadline => {
                return Err(Failure::Failed(anyhow!(
                    "node {} cannot join {}: {error}",
                    config.name,
                    config.control_url
                )));
            }
            Err(error) => {
                // Said at the first failure and every 5 s after.
                if attempts.is_multiple_of(10) {
                    tracing::warn!(
                        "joining {}: no node credential yet ({error}); asking again every 0.5 s for up to a minute",
                        config.control_url
                    );
                }
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// A node's certificate and key (PEM).
pub type NodePem = (String, String);

/// How a node's parts reach the control plane: its URL(s), the node's credential, the CA an
/// HTTPS control plane must present, one client shared by the agent, its reports and its
/// proxies (which presents the node's certificate once the node has one), and the node's
/// certificate as it is renewed, for parts with clients of their own (the route source).
#[derive(Clone)]
pub struct ControlAccess {
    pub url: String,
    pub credential: String,
    pub ca: Option<String>,
    pub client: ControlClient,
    pub certificates: tokio::sync::watch::Receiver<Option<NodePem>>,
}

/// The node's certificate, from the control plane (retried while it does not answer, for a
/// minute), kept current: renewed at two thirds of its life with a fresh key. Each one is
/// presented to the control plane from then on (mutual TLS: `client` and every clone of it,
/// and whoever watches `certificates`). The key, the certificate and the CA are also written
/// to `DATA_DIR/tls/` for operators to inspect.
///
/// With `present` false (a node with no inter-node port: `strata dev`), the certificate only
/// signs what the node archives (a quarantine); the node goes on with its credential.
pub(super) async fn node_identity(
    config: &AgentConfig,
    client: ControlClient,
    certificates: tokio::sync::watch::Sender<Option<NodePem>>,
    present: bool,
) -> Result<Arc<NodeIdentity>, Failure> {
    let present = move |client: &ControlClient,
                        certificates: &tokio::sync::watch::Sender<Option<NodePem>>,
                        pem: NodePem| {
        if present {
            self::present(client, certificates, pem)
        } else {
            certificates.send_replace(Some(pem));
            Ok(())
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (configs, issued_at, pem) = loop {
        match request_certificate(&client, config).await {
            Ok(got) => break got,
            // A wrong token, a refused request: asking again cannot help.
            Err(error)
                if error
                    .downcast_ref::<strata_agent::client::ClientError>()
                    .is_some_and(|error| error.is_permanent()) =>
            {
                return Err(Failure::Failed(anyhow!("{error}")));
            }
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "no node certificate yet; asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(Failure::Failed(anyhow!(
                    "cannot get this node's certificate from {}: {error}\n  hint: check that the server is up and --token is its join token",
                    config.control_url
                )))
            }
        }
    };
    present(&client, &certificates, pem)?;
    let identity = NodeIdentity::new(configs);
    let renewing = identity.clone();
    let config = config.clone();
    tokio::spawn(async move {
        let mut issued_at = issued_at;
        loop {
            let not_after = renewing.current().not_after;
            let renew_at = NodeIdentity::renew_at(issued_at, not_after);
            let wait = renew_at.saturating_sub(unix_now()).max(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            match request_certificate(&client, &config).await {
                Ok((configs, issued, pem)) => {
                    tracing::info!(not_after = configs.not_after, "node certificate renewed");
                    renewing.replace(configs);
                    issued_at = issued;
                    if let Err(error) = present(&client, &certificates, pem) {
                        let (Failure::BadInput(error) | Failure::Failed(error)) = error;
                        tracing::warn!(error = %format!("{error:#}"), "the renewed certificate cannot be presented");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "node certificate not renewed; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });
    Ok(identity)
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The TLS configuration of the node's own API: its current certificate (followed at every
/// renewal), asking clients for a certificate of the cluster CA (the control plane's) but
/// serving those without one too (`/healthz`, Prometheus with the API key).
pub(super) fn node_api_tls(
    agent_dir: &Path,
    mut certificates: tokio::sync::watch::Receiver<Option<NodePem>>,
) -> Result<strata_mesh::serve::CurrentTls, Failure> {
    let ca_file = agent_dir.join("tls/ca.crt");
    let ca = std::fs::read_to_string(&ca_file)
        .with_context(|| format!("cannot read {}", ca_file.display()))?;
    let build = move |pem: &NodePem| {
        strata_mesh::identity::api_server_config(&pem.0, &pem.1, Some(&ca)).map(Arc::new)
    };
    let first = certificates
        .borrow_and_update()
        .clone()
        .ok_or_else(|| Failure::Failed(anyhow!("the node has no certificate yet")))?;
    let current = Arc::new(std::sync::RwLock::new(
        build(&first).map_err(|error| Failure::Failed(anyhow!("{error}")))?,
    ));
    let updating = current.clone();
    tokio::spawn(async move {
        while certificates.changed().await.is_ok() {
            let pem = certificates.borrow_and_update().clone();
            match pem.as_ref().map(&build) {
                Some(Ok(config)) => *updating.write().expect("tls lock") = config,
                Some(Err(error)) => {
                    tracing::warn!(%error, "the renewed certificate cannot serve the node's API")
                }
                None => {}
            }
        }
    });
    Ok(Arc::new(move || current.read().expect("tls lock").clone()))
}

/// Presents `pem` (the node's certificate and key) to the control plane from now on.
pub(super) fn present(
    client: &ControlClient,
    certificates: &tokio::sync::watch::Sender<Option<NodePem>>,
    pem: NodePem,
) -> Result<(), Failure> {
    client
        .present_certificate(&pem.0, &pem.1)
        .map_err(|error| Failure::Failed(anyhow!("{error}")))?;
    certificates.send_replace(Some(pem));
    Ok(())
}

/// One certificate request with a fresh key; the TLS configurations, when it was issued, and
/// the certificate and key.
pub(super) async fn request_certificate(
    client: &ControlClient,
    config: &AgentConfig,
) -> anyhow::Result<(TlsConfigs, u64, NodePem)> {
    let (key, csr) = strata_mesh::identity::node_key_and_csr(&config.name)?;
    let signed = client
        .certificate(
            &config.name,
            &strata_core::api::CertificateRequest {
                csr,
                address: config.mesh_addr.clone(),
            },
        )
        .await?;
    let configs = TlsConfigs::new(&signed.certificate, &key, &signed.ca, signed.not_after)?;
    let dir = config.data_dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    write_private(&dir.join("node.key"), &key)?;
    std::fs::write(dir.join("node.crt"), &signed.certificate)?;
    std::fs::write(dir.join("ca.crt"), &signed.ca)?;
    Ok((configs, signed.issued_at, (signed.certificate, key)))
}
